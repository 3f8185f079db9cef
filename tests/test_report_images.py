"""Drawing unit images: bilinear upsampling, mask overlays, heatmaps, sheets (builder/report/images.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from builder.errors import DatasetError
from builder.report import images as im


@pytest.mark.parametrize("size_in, size_out", [(7, 128), (4, 48), (14, 224), (5, 5), (8, 3)])
def test_upsample_matches_torch_bilinear(size_in: int, size_out: int) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, size_in, size_in + 1)).astype(np.float16)
    ours = im.upsample(maps, (size_out, size_out + 2))
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(maps.astype(np.float32))[:, None], size=(size_out, size_out + 2), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert np.allclose(ours, theirs, atol=1e-5)


def test_boundary_is_a_band_around_the_edge_only() -> None:
    mask = np.zeros((1, 10, 10), bool)
    mask[0, 3:7, 3:7] = True
    edge = im.boundary(mask)[0]
    assert edge[3, 3] and edge[2, 4] and edge[6, 6] and edge[7, 5]
    assert not edge[5, 5] and not edge[0, 0]
    full = np.ones((1, 6, 6), bool)
    assert not im.boundary(full).any()  # the image border is not an edge


def test_overlay_keeps_the_mask_dims_the_rest_and_outlines() -> None:
    images = np.full((2, 20, 20, 3), 200, np.uint8)
    up = np.zeros((2, 20, 20), np.float32)
    up[0, 5:15, 5:15] = 1.0
    sheet = np.asarray(im.overlay(images, up, threshold=0.5))
    assert sheet.shape == (20, 40, 3)
    assert (sheet[10, 10] == 200).all()  # inside the mask: unchanged
    assert (sheet[1, 1] == int(200 * im.DIM)).all()  # outside: dimmed
    assert tuple(sheet[5, 10]) == im.OUTLINE  # on the edge: outline colour
    assert (sheet[:, 20:] == int(200 * im.DIM)).all()  # second image has no mask


def test_heatmap_ramp_ends_and_contour() -> None:
    up = np.linspace(0, 1, 50, dtype=np.float32).reshape(1, 1, 50).repeat(10, axis=1)
    sheet = np.asarray(im.heatmap(up, 0.0, 1.0))
    assert tuple(sheet[0, 0]) == im._RAMP[0][1] and tuple(sheet[0, -1]) == im._RAMP[-1][1]
    contoured = np.asarray(im.heatmap(up, 0.0, 1.0, threshold=0.5))
    assert (contoured == 255).all(axis=2).any()
    assert im.ramp_css().startswith("linear-gradient(90deg, rgb(12, 7, 38) 0%")


def test_sheet_lays_tiles_side_by_side() -> None:
    tiles = np.arange(3 * 2 * 2).reshape(3, 2, 2)
    assert im.sheet(tiles).tolist() == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11]]


def test_draw_unit_writes_sheet_and_strip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (6, 40, 40, 3), dtype=np.uint8)
    maps = rng.normal(size=(6, 5, 5)).astype(np.float16)
    drawn = im.draw_unit(images, maps, 0.8, tmp_path, "unit-0003")
    with Image.open(tmp_path / drawn.sheet) as sheet:
        assert sheet.size == (2 * 6 * 40, 40) and sheet.format == "JPEG"
    with Image.open(tmp_path / drawn.strip) as strip:
        assert strip.size == (im.STRIP_TILES * im.STRIP_PX, im.STRIP_PX)
    assert drawn.position(0) == "0.0000%" and drawn.position(11) == "100.0000%"
    assert drawn.low <= 0 < 0.8 <= drawn.high


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((30, 30), np.uint8),
        np.zeros((30, 30, 4), np.uint8),
        np.zeros((30, 30, 1), np.uint8),
        np.ones((30, 30, 3), np.float32),
        np.zeros((50, 40, 3), np.uint8),
    ],
)
def test_fit_image_accepts_common_layouts(image: np.ndarray) -> None:
    fitted = im.fit_image(image, (30, 30))
    assert fitted.shape == (30, 30, 3) and fitted.dtype == np.uint8


def test_cached_images_calls_the_source_once_per_image() -> None:
    calls: list[int] = []

    def source(run: object, index: int) -> np.ndarray:
        calls.append(index)
        return np.full((8, 8, 3), index, np.uint8)

    run = SimpleNamespace(slug="r", name="r", layers=[])
    cache = im.CachedImages(source, lambda run: (8, 8))
    batch = cache.batch(run, np.array([3, 4, 3]))
    cache.batch(run, np.array([4]))
    assert batch.shape == (3, 8, 8, 3) and batch[2, 0, 0, 0] == 3
    assert calls == [3, 4]


def test_cached_images_reports_a_failing_source_as_dataset_error() -> None:
    def source(run: object, index: int) -> np.ndarray:
        raise IndexError(index)

    cache = im.CachedImages(source, lambda run: (8, 8))
    with pytest.raises(DatasetError, match="probe image 7 cannot be read"):
        cache.batch(SimpleNamespace(slug="r", name="r", layers=[]), np.array([7]))


def test_cached_images_without_a_size_use_the_first_image_size() -> None:
    sizes = {1: (10, 12), 2: (20, 20)}

    def source(run: object, index: int) -> np.ndarray:
        return np.zeros((*sizes[index], 3), np.uint8)

    cache = im.CachedImages(source, lambda run: None)
    batch = cache.batch(SimpleNamespace(slug="r", name="r", layers=[]), np.array([1, 2]))
    assert batch.shape == (2, 10, 12, 3)

"""ImageFolderSource with a trivial fake segmenter, and the segmenter registry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from builder.datasets.sources.base import SourceConcept
from builder.datasets.sources.images import (ImageFolderSource, get_segmenter, list_segmenters,
                                             register_segmenter)
from builder.errors import BadSampleError, DatasetError, SpecError


class BrightnessSegmenter:
    """Pixels brighter than 128 are 'light' (1), the others 'dark' (2); scene 'day' (3) if the
    image is mostly light."""

    name = "test:brightness"

    def __init__(self):
        self.calls = 0

    def concepts(self):
        return [SourceConcept(1, "light", "object"), SourceConcept(2, "dark", "object"),
                SourceConcept(3, "day", "scene")]

    def segment(self, images):
        self.calls += 1
        out = []
        for image in images:
            gray = image.mean(axis=2)
            labels = np.where(gray > 128, 1, 2).astype(np.uint16)
            scene = np.full(gray.shape, 3 if (labels == 1).mean() > 0.5 else 0, np.uint16)
            out.append({"object": [labels], "scene": [scene]})
        return out

    def fingerprint(self):
        return "brightness-v1"


def _folder(root):
    (root / "sub").mkdir(parents=True)
    left_light = np.zeros((6, 8, 3), np.uint8)
    left_light[:, :4] = 250
    Image.fromarray(left_light).save(root / "a.png")
    Image.fromarray(np.full((5, 5, 3), 200, np.uint8)).save(root / "sub" / "b.jpg", quality=100)
    Image.fromarray(np.full((4, 4, 3), 10, np.uint8)).save(root / "sub" / "c.webp",
                                                           lossless=True)
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "broken.bmp").write_bytes(b"BMnot really")
    return left_light


def test_segmented_samples(tmp_path):
    left_light = _folder(tmp_path / "imgs")
    seg = BrightnessSegmenter()
    src = ImageFolderSource(tmp_path / "imgs", seg)
    assert len(src) == 4
    assert [c.name for c in src.concepts()] == ["light", "dark", "day"]
    a = src.sample(0)
    assert a.id == "a.png" and a.split is None
    np.testing.assert_array_equal(a.image, left_light)
    expected = np.where(left_light.mean(axis=2) > 128, 1, 2)
    np.testing.assert_array_equal(a.pixel["object"][0], expected)
    assert a.image_labels == {"scene": []}  # half light: no 'day'
    b = src.sample(1)
    assert b.id == "sub/b.jpg" and b.image_labels == {"scene": [3]}
    assert (b.pixel["object"][0] == 1).all()


def test_unreadable_image_is_a_bad_sample(tmp_path):
    _folder(tmp_path / "imgs")
    seg = BrightnessSegmenter()
    src = ImageFolderSource(tmp_path / "imgs", seg)
    assert src.files[2].name == "broken.bmp"
    with pytest.raises(BadSampleError, match="unreadable image"):
        src.sample(2)
    results = src.samples([0, 1, 2, 3])
    assert isinstance(results[2], BadSampleError)
    assert [r.id for i, r in enumerate(results) if i != 2] == ["a.png", "sub/b.jpg",
                                                               "sub/c.webp"]
    assert seg.calls == 1  # the bad image alone needs no call; the batch needs one


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(DatasetError, match="image folder not found"):
        ImageFolderSource(tmp_path / "nope", BrightnessSegmenter())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        ImageFolderSource(tmp_path / "empty", BrightnessSegmenter())


def test_fingerprint(tmp_path):
    _folder(tmp_path / "imgs")
    src = ImageFolderSource(tmp_path / "imgs", BrightnessSegmenter())
    before = src.fingerprint()
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "imgs" / "new.png")
    assert ImageFolderSource(tmp_path / "imgs", BrightnessSegmenter()).fingerprint() != before


def test_registry(monkeypatch):
    from builder.datasets.sources import images

    monkeypatch.setattr(images, "_SEGMENTERS", {})
    with pytest.raises(SpecError, match="none registered yet"):
        get_segmenter("test:brightness")
    register_segmenter("test:brightness", BrightnessSegmenter)
    assert list_segmenters() == ["test:brightness"]
    assert isinstance(get_segmenter("test:brightness"), BrightnessSegmenter)
    with pytest.raises(SpecError, match="already registered"):
        register_segmenter("test:brightness", BrightnessSegmenter)
    with pytest.raises(SpecError, match=r"unknown segmenter 'other' \(known: test:brightness\)"):
        get_segmenter("other")


def test_by_name(tmp_path, monkeypatch):
    from builder.datasets.sources import images

    monkeypatch.setattr(images, "_SEGMENTERS", {"test:brightness": BrightnessSegmenter})
    _folder(tmp_path / "imgs")
    src = ImageFolderSource(tmp_path / "imgs", "test:brightness")
    assert src.segmenter.name == "test:brightness"


def test_resolve_images(tmp_path, monkeypatch):
    from builder.datasets.sources import images, resolve_source

    monkeypatch.setattr(images, "_SEGMENTERS", {"test:brightness": BrightnessSegmenter})
    _folder(tmp_path / "imgs")
    src = resolve_source(f"images:{tmp_path / 'imgs'}", segmenter="test:brightness", colors=True)
    assert isinstance(src, ImageFolderSource) and len(src) == 4
    src = resolve_source(f"images:{tmp_path / 'imgs'}", segmenter=BrightnessSegmenter())
    assert src.segmenter.name == "test:brightness"
    with pytest.raises(SpecError, match="needs a segmenter"):
        resolve_source(f"images:{tmp_path / 'imgs'}")
    with pytest.raises(SpecError, match="unknown segmenter 'nope'"):
        resolve_source(f"images:{tmp_path / 'imgs'}", segmenter="nope")

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


@pytest.fixture
def only(monkeypatch):
    """Replace the registry by ``segmenters`` alone, with no plugin modules to import."""
    from builder.datasets.sources import images

    def use(segmenters: dict) -> None:
        monkeypatch.setattr(images, "_SEGMENTERS", dict(segmenters))
        monkeypatch.setattr(images, "PLUGIN_MODULES", ())

    return use


def test_registry(only):
    only({})
    with pytest.raises(SpecError, match="none registered yet"):
        get_segmenter("test:brightness")
    register_segmenter("test:brightness", BrightnessSegmenter)
    assert list_segmenters() == ["test:brightness"]
    assert isinstance(get_segmenter("test:brightness"), BrightnessSegmenter)
    with pytest.raises(SpecError, match="already registered"):
        register_segmenter("test:brightness", BrightnessSegmenter)
    with pytest.raises(SpecError, match=r"unknown segmenter 'other' \(known: test:brightness\)"):
        get_segmenter("other")


def test_by_name(tmp_path, only):
    only({"test:brightness": BrightnessSegmenter})
    _folder(tmp_path / "imgs")
    src = ImageFolderSource(tmp_path / "imgs", "test:brightness")
    assert src.segmenter.name == "test:brightness"


def test_resolve_images(tmp_path, only):
    from builder.datasets.sources import resolve_source

    only({"test:brightness": BrightnessSegmenter})
    _folder(tmp_path / "imgs")
    src = resolve_source(f"images:{tmp_path / 'imgs'}", segmenter="test:brightness", colors=True)
    assert isinstance(src, ImageFolderSource) and len(src) == 4
    src = resolve_source(f"images:{tmp_path / 'imgs'}", segmenter=BrightnessSegmenter())
    assert src.segmenter.name == "test:brightness"
    with pytest.raises(SpecError, match="needs a segmenter"):
        resolve_source(f"images:{tmp_path / 'imgs'}")
    with pytest.raises(SpecError, match="unknown segmenter 'nope'"):
        resolve_source(f"images:{tmp_path / 'imgs'}", segmenter="nope")


def test_lookup_imports_the_plugin_modules(tmp_path, monkeypatch):
    """A plugin module listed in PLUGIN_MODULES registers its segmenter before any lookup."""
    import sys

    from builder.datasets.sources import images

    (tmp_path / "my_seg_plugin.py").write_text(
        "from builder.datasets.sources.images import list_segmenters, register_segmenter\n"
        "from test_images_source import BrightnessSegmenter\n"
        "assert 'test:brightness' not in list_segmenters()  # a lookup while importing\n"
        "register_segmenter('test:brightness', BrightnessSegmenter)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_seg_plugin", raising=False)
    monkeypatch.setattr(images, "_SEGMENTERS", {})
    monkeypatch.setattr(images, "PLUGIN_MODULES", ("my_seg_plugin",))
    assert isinstance(get_segmenter("test:brightness"), BrightnessSegmenter)
    assert list_segmenters() == ["test:brightness"]  # imported once, not again


def test_cli_finds_the_demo_segmenter_in_a_fresh_process(tmp_path):
    """``dataset build images:DIR --segmenter demo:segmenter`` as a user runs it: nothing but
    the command has imported the segmenter modules."""
    import csv
    import os
    import subprocess
    import sys

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        image = np.random.default_rng(i).integers(0, 256, (24, 32, 3), np.uint8)
        Image.fromarray(image).save(folder / f"{i}.png")
    out = tmp_path / "labelled"
    done = subprocess.run(
        [sys.executable, "-m", "builder", "dataset", "build", f"images:{folder}",
         "--segmenter", "demo:segmenter", "--out", str(out), "--min-frequency", "1",
         "--workers", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "3 images" in done.stdout
    with open(out / "concepts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labelled = [r for r in rows if r["sources"] == "images"]  # the rest: the builder's colors
    assert labelled and {r["category"] for r in labelled} <= {"object", "part", "material"}

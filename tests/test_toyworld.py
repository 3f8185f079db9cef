"""Tests of the procedural toy world: contract, determinism, vocabulary and pixel-exact labels."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from builder.datasets.sources.base import CATEGORIES, IMAGE_CATEGORIES, SourceSample
from builder.datasets.sources.toyworld import (
    CODE, MATERIALS, OBJECTS, PART_OF, PARTS, SCENES, TEXTURES, ToyWorld, label_of, render,
    scene_primitives,
)
from builder.datasets.sources.toyworld_draw import is_convex


def _scene_indices(world: ToyWorld, count: int, start: int = 0) -> list[int]:
    out, i = [], start
    while len(out) < count:
        if world.scene_of(i) is not None:
            out.append(i)
        i += 1
    return out


@pytest.fixture(scope="module")
def survey() -> dict:
    """Render a few hundred small samples once and count what they contain."""
    world = ToyWorld(n=440, size=32, seed=3)
    by_code = {k.code: (k.category, k.name) for k in world.concepts()}
    seen: collections.Counter = collections.Counter()
    labels: collections.Counter = collections.Counter()
    with_parts: set[str] = set()
    scenes_of: dict[str, set] = collections.defaultdict(set)  # object name -> scenes it occurs in
    for i in range(len(world)):
        s = world.sample(i)
        for cat, codes in s.image_labels.items():
            labels.update(by_code[c] for c in codes)
            assert all(by_code[c][0] == cat for c in codes)
        if "scene" in s.image_labels:
            assert "texture" not in s.image_labels
            assert set(s.pixel) == {"object", "part", "material"}
            for cat, layers in s.pixel.items():
                for layer in layers:
                    for c in np.unique(layer):
                        if c:
                            assert by_code[int(c)][0] == cat
                            seen[by_code[int(c)]] += 1
            obj, part = s.pixel["object"][0], s.pixel["part"][0]
            with_parts |= {by_code[int(c)][1] for c in np.unique(obj[part > 0])}
            for c in np.unique(obj):
                scenes_of[by_code[int(c)][1]].add(world.scene_of(i))
        else:
            assert set(s.image_labels) == {"texture"} and len(s.image_labels["texture"]) == 1
            assert not any(s.pixel.values())  # swatches carry no pixel labels
    return {"seen": seen, "labels": labels, "with_parts": with_parts, "scenes_of": scenes_of}


# ----------------------------------------------------------------------------- contract
def test_sample_contract():
    world = ToyWorld(n=40, size=64, seed=0)
    assert world.name == "toyworld" and len(world) == 40
    for i in range(12):
        s = world.sample(i)
        assert isinstance(s, SourceSample)
        assert s.id == f"toyworld-0-{i:06d}" and s.split is None
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert set(s.image_labels) <= set(IMAGE_CATEGORIES) and len(s.image_labels) == 1
        for layers in s.pixel.values():
            for layer in layers:
                assert layer.shape == (64, 64) and layer.dtype == np.uint16


def test_index_errors():
    world = ToyWorld(n=5, size=32)
    with pytest.raises(IndexError):
        world.sample(5)
    with pytest.raises(IndexError):
        world.sample(-6)
    with pytest.raises(IndexError):
        ToyWorld(n=0).sample(0)
    assert world.sample(-1).id == world.sample(4).id


def test_bad_options():
    for kw in ({"n": -1}, {"size": 0}, {"texture_fraction": 1.5}):
        with pytest.raises(ValueError):
            ToyWorld(**kw)


@pytest.mark.parametrize("size", [32, 64, 128, 97])
def test_sizes(size):
    world = ToyWorld(n=50, size=size, seed=1)
    for i in _scene_indices(world, 3):
        s = world.sample(i)
        assert s.image.shape == (size, size, 3)
        assert all(m.shape == (size, size) for layers in s.pixel.values() for m in layers)


def test_large_size_renders():
    world = ToyWorld(n=10, size=512, seed=0)
    s = world.sample(_scene_indices(world, 1)[0])
    assert s.image.shape == (512, 512, 3) and (s.pixel["object"][0] > 0).all()


# ----------------------------------------------------------------------------- determinism
def test_determinism():
    a, b = ToyWorld(n=30, size=64, seed=7), ToyWorld(n=30, size=64, seed=7)
    order = [9, 3, 20, 3]
    for i in order:  # independent of what was rendered before and of the instance
        sa, sb = a.sample(i), b.sample(i)
        assert np.array_equal(sa.image, sb.image)
        assert sa.image_labels == sb.image_labels
        for cat in sa.pixel:
            assert all(np.array_equal(x, y) for x, y in zip(sa.pixel[cat], sb.pixel[cat]))
    assert np.array_equal(render(7, 9, 64)[0].image, a.sample(9).image)


def test_different_seed_or_index_differs():
    a, b = ToyWorld(n=10, size=64, seed=0), ToyWorld(n=10, size=64, seed=1)
    assert any(not np.array_equal(a.sample(i).image, b.sample(i).image) for i in range(3))
    assert not np.array_equal(a.sample(0).image, a.sample(1).image)


def test_size_does_not_change_the_scene():
    small, big = ToyWorld(n=20, size=32, seed=2), ToyWorld(n=20, size=128, seed=2)
    for i in range(20):
        assert small.label_of(i) == big.label_of(i)
        assert small.primitives(i) == big.primitives(i)


def test_label_of_is_cheap_and_consistent():
    world = ToyWorld(n=60, size=32, seed=5)
    for i in range(60):
        cat, name = world.label_of(i)
        assert world.sample(i).image_labels == {cat: [CODE[cat, name]]}
        assert world.scene_of(i) == (name if cat == "scene" else None)
        assert label_of(5, i) == (cat, name)


def test_fingerprint():
    base = ToyWorld(n=10, size=64, seed=0, texture_fraction=0.1).fingerprint()
    assert base.startswith("toyworld:v")
    assert base == ToyWorld(n=10, size=64, seed=0, texture_fraction=0.1).fingerprint()
    for kw in ({"n": 11}, {"size": 32}, {"seed": 1}, {"texture_fraction": 0.2}):
        opts = {"n": 10, "size": 64, "seed": 0, "texture_fraction": 0.1} | kw
        assert ToyWorld(**opts).fingerprint() != base


def test_texture_fraction():
    assert all(ToyWorld(n=50, texture_fraction=0.0).scene_of(i) is not None for i in range(50))
    assert all(ToyWorld(n=50, texture_fraction=1.0).scene_of(i) is None for i in range(50))
    tex = sum(ToyWorld(n=2000, seed=0).scene_of(i) is None for i in range(2000))
    assert 140 < tex < 260


def test_scenes_roughly_balanced():
    world = ToyWorld(n=4000, seed=0, texture_fraction=0.0)
    counts = collections.Counter(world.scene_of(i) for i in range(4000))
    expected = 4000 / len(SCENES)
    assert set(counts) == set(SCENES)
    assert all(0.75 * expected < v < 1.25 * expected for v in counts.values())


# ----------------------------------------------------------------------------- pixel-exact labels
def _reference_cover(shape: str, q: tuple[float, ...], size: int) -> np.ndarray:
    """Coverage of every pixel centre, written independently of the rasterizer (full frame)."""
    c = (np.arange(size, dtype=np.float64) + 0.5) / size
    X, Y = np.meshgrid(c, c)  # X varies along columns
    if shape == "rect":
        return (X >= q[0]) & (X < q[2]) & (Y >= q[1]) & (Y < q[3])
    if shape == "ellipse":
        return ((X - q[0]) / q[2]) ** 2 + ((Y - q[1]) / q[3]) ** 2 <= 1.0
    if shape == "poly":
        P = np.asarray(q).reshape(-1, 2)
        A, B = P, np.roll(P, -1, axis=0)
        cross = (B[:, 0, None, None] - A[:, 0, None, None]) * (Y - A[:, 1, None, None]) - \
                (B[:, 1, None, None] - A[:, 1, None, None]) * (X - A[:, 0, None, None])
        return (cross >= 0).all(axis=0)
    assert shape == "band"
    x0, x1, y1, k = q[0], q[1], q[2], np.asarray(q[3:])
    n = len(k) - 1
    t = (X - x0) / (x1 - x0) * n
    m = np.minimum(np.maximum(np.floor(t), 0), n - 1).astype(int)
    top = k[m] + (k[m + 1] - k[m]) * (t - m)
    return (X >= x0) & (X < x1) & (Y >= top) & (Y < y1)


@pytest.mark.parametrize("size", [64, 45])
def test_masks_match_primitives_exactly(size):
    world = ToyWorld(n=200, size=size, seed=11)
    for i in _scene_indices(world, 33 if size == 64 else 11):
        sample, prims = render(11, i, size)
        assert prims, "a scene has primitives"
        expect = {k: np.zeros((size, size), np.int64) for k in ("object", "part", "material")}
        for p in prims:  # painter's order: later primitives occlude earlier ones
            m = _reference_cover(p.shape, p.params, size)
            expect["object"][m], expect["part"][m], expect["material"][m] = p.obj, p.part, p.material
        for cat, ref in expect.items():
            got = sample.pixel[cat][0]
            assert np.array_equal(got, ref), f"{cat} mismatch in sample {i}: {(got != ref).sum()} px"
        assert (expect["object"] > 0).all(), "every pixel of a scene belongs to some object"
        assert (expect["material"] > 0).all(), "every pixel of a scene has a material"


def test_flat_colours_are_where_the_labels_say():
    # the image must agree with the masks: where the top primitive is flat-filled, so is the pixel
    size = 64
    world = ToyWorld(n=100, size=size, seed=4)
    checked = 0
    for i in _scene_indices(world, 12):
        sample, prims = render(4, i, size)
        top = np.full((size, size), -1)
        for k, p in enumerate(prims):
            top[_reference_cover(p.shape, p.params, size)] = k
        for k in np.unique(top):
            p = prims[k]
            if p.fill[0] == "flat":
                want = np.clip(np.asarray(p.fill[1], np.float32) + 0.5, 0, 255).astype(np.uint8)
                assert (sample.image[top == k] == want).all()
                checked += 1
    assert checked > 50


def test_polygons_are_convex_and_parts_belong_to_objects():
    by_code = {CODE[k]: k[1] for k in CODE}
    for i in range(300):
        cat, _, prims = scene_primitives(9, i)
        for p in prims:
            if p.shape == "poly":
                assert is_convex(p.params), (i, p)
            if p.part:
                assert by_code[p.part] in PART_OF[by_code[p.obj]]


# ----------------------------------------------------------------------------- vocabulary & content
def test_vocabulary_requirements():
    concepts = ToyWorld().concepts()
    codes = [k.code for k in concepts]
    assert sorted(codes) == list(range(1, len(codes) + 1))  # unique across categories
    assert all(k.category in CATEGORIES for k in concepts)
    assert "color" not in {k.category for k in concepts}  # the builder computes colour names
    per_cat = collections.Counter(k.category for k in concepts)
    assert per_cat["object"] == len(OBJECTS) >= 15
    assert per_cat["part"] == len(PARTS) and len([o for o in PART_OF if PART_OF[o]]) >= 4
    assert per_cat["material"] == len(MATERIALS) >= 6
    assert per_cat["texture"] == len(TEXTURES) >= 5
    assert per_cat["scene"] == len(SCENES) >= 8
    assert not set(PARTS) & set(OBJECTS)  # part names never shadow object names
    for cat in CATEGORIES:
        names = [k.name for k in concepts if k.category == cat]
        assert len(names) == len(set(names))


def test_everything_occurs(survey):
    seen, labels = survey["seen"], survey["labels"]
    assert {n for (c, n) in labels if c == "scene"} == set(SCENES)
    assert {n for (c, n) in labels if c == "texture"} == set(TEXTURES)
    for cat, names in (("object", OBJECTS), ("part", PARTS), ("material", MATERIALS)):
        missing = [n for n in names if seen[cat, n] == 0]
        assert not missing, f"{cat}s never drawn: {missing}"
    assert len(survey["with_parts"]) >= 4


def test_scenes_are_defined_by_objects(survey):
    # the common kinds occur in several scene classes, so no single one decides the scene
    where = survey["scenes_of"]
    for shared in ("house", "tree", "water", "person", "lamp", "window", "table", "sky", "grass", "mountain", "boat"):
        assert len(where[shared]) >= 2, (shared, where[shared])


def test_images_are_not_degenerate():
    world = ToyWorld(n=80, size=64, seed=6, texture_fraction=0.3)
    for i in range(40):
        img = world.sample(i).image.reshape(-1, 3)
        assert img.std() > 15
        assert len(np.unique(img, axis=0)) >= (8 if world.scene_of(i) is None else 20)

"""The dataset builder and reader: exact masks, vocabulary merge, splits, skipping, caching."""

from __future__ import annotations

import json

import numpy as np
import pytest

from builder.datasets import BuildOptions, ProbeSet, build_dataset
from builder.datasets.build import stable_split
from builder.datasets.colornames import COLOR_NAMES, name_colors
from builder.datasets.vocabulary import canonical_name, merge_vocabularies
from builder.datasets.sources.base import SourceConcept
from builder.errors import BadSampleError, ConfigError, DatasetError

from fake_sources import FakeSource


def opts(**kw) -> BuildOptions:
    base = dict(image_size=32, mask_size=32, min_frequency=1, workers=1, shard_size=5)
    return BuildOptions(**{**base, **kw})


def test_masks_round_trip_exactly(tmp_path):
    src = FakeSource(n=12)
    result = build_dataset([src], tmp_path / "ds", opts(), progress=False)
    probe = ProbeSet(result.path)
    assert len(probe) == 12 and not result.cached
    ids = {(c.category, c.name): c.id for c in probe.concepts}
    for i in range(12):
        a = probe.annotations(i)
        obj, part = src.masks(i)
        lut = np.zeros(6, np.uint16)
        lut[1], lut[2], lut[3] = ids["object", "box"], ids["object", "floor"], ids["part", "lid"]
        np.testing.assert_array_equal(a.pixel["object"][0], lut[obj])
        np.testing.assert_array_equal(a.pixel["part"][0], lut[part])
        assert a.image_labels["scene"] == [ids["scene", "room" if i % 2 == 0 else "hall"]]
        np.testing.assert_array_equal(a.image, src.sample(i).image)
        assert a.split == stable_split(a.id, 0.2)


def test_batches_match_annotations(tmp_path):
    src = FakeSource(n=9)
    probe = ProbeSet(build_dataset([src], tmp_path / "ds", opts(), progress=False).path)
    batches = list(probe.batches(np.arange(9), batch_size=4))
    assert [len(b.indices) for b in batches] == [4, 4, 1]
    b = batches[0]
    assert b.images.shape == (4, 3, 32, 32) and b.images.max() <= 1.0
    n_layers = sum(probe.layers.values())
    assert b.labels.shape == (4, n_layers, 32, 32)
    a = probe.annotations(1)
    layer = 0
    for cat in probe.pixel_categories:
        np.testing.assert_array_equal(b.labels[1, layer].numpy(), a.pixel[cat][0])
        layer += probe.layers[cat]
    cats = probe.categories
    assert b.has_category[:, cats.index("object")].all()
    assert b.has_category[:, cats.index("scene")].all()
    assert (b.image_labels[:, 0] > 0).all()


def test_colors_named_per_pixel(tmp_path):
    probe = ProbeSet(build_dataset([FakeSource(n=3)], tmp_path / "ds", opts(),
                                   progress=False).path)
    a = probe.annotations(0)
    names = {c.id: c.name for c in probe.concepts}
    color = a.pixel["color"][0]
    expected = np.array(COLOR_NAMES)[name_colors(a.image)]
    assert (np.vectorize(names.get)(color) == expected).all()
    assert {names[i] for i in np.unique(color)} <= {"black", "red", "green", "yellow"}


def test_bad_samples_skipped_and_counted(tmp_path):
    result = build_dataset([FakeSource(n=15, bad=True)], tmp_path / "ds", opts(),
                           progress=False)
    assert result.images == 13
    assert [s["index"] for s in result.skipped] == [3, 10]
    assert "corrupt on purpose" in result.skipped[0]["reason"]
    info = json.loads((result.path / "probe.json").read_text())
    assert info["counts"]["skipped"] == 2
    with pytest.raises(BadSampleError):
        build_dataset([FakeSource(n=15, bad=True)], tmp_path / "ds2", opts(strict=True),
                      progress=False)


def test_cache_hit_miss_and_force(tmp_path):
    out = tmp_path / "ds"
    first = build_dataset([FakeSource(n=6)], out, opts(), progress=False)
    again = build_dataset([FakeSource(n=6)], out, opts(), progress=False)
    assert again.cached and again.fingerprint == first.fingerprint
    changed = build_dataset([FakeSource(n=6)], out, opts(val_fraction=0.5), progress=False)
    assert not changed.cached and changed.fingerprint != first.fingerprint
    forced = build_dataset([FakeSource(n=6)], out, opts(val_fraction=0.5), force=True,
                           progress=False)
    assert not forced.cached


def test_default_cache_location_under_data(tmp_path):
    result = build_dataset([FakeSource(n=4)], None, opts(), progress=False)
    assert result.path.parent == (tmp_path / "data" / "datasets").resolve()
    assert build_dataset([FakeSource(n=4)], None, opts(), progress=False).cached


def test_min_frequency_drops_and_renumbers(tmp_path):
    probe = ProbeSet(build_dataset([FakeSource(n=8, rare=True)], tmp_path / "ds",
                                   opts(min_frequency=2), progress=False).path)
    names = [c.name for c in probe.concepts]
    assert "unicorn" not in names
    assert [c.id for c in probe.concepts] == list(range(1, len(names) + 1))
    assert probe.info["counts"]["dropped_rare_concepts"] >= 1
    ids = set(np.unique(probe.annotations(0).pixel["object"][0]).tolist())
    assert ids <= {0} | {c.id for c in probe.concepts if c.category == "object"}
    assert 0 in ids  # the rare pixel is now unlabelled


def test_interrupted_build_resumes_from_finished_shards(tmp_path, monkeypatch):
    import builder.datasets.build as build

    calls = {"n": 0}
    real = build._build_shard

    def flaky(job):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(build, "_build_shard", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_dataset([FakeSource(n=12)], tmp_path / "ds", opts(), progress=False)
    calls["n"] = 10  # no more failures; count the shards rebuilt
    result = build_dataset([FakeSource(n=12)], tmp_path / "ds", opts(), progress=False)
    assert calls["n"] - 10 == 2  # of 3 shards, the first survived the interruption
    uninterrupted = build_dataset([FakeSource(n=12)], tmp_path / "ref", opts(), progress=False)
    a, b = ProbeSet(result.path), ProbeSet(uninterrupted.path)
    assert a.column("id") == b.column("id") and a.column("concepts") == b.column("concepts")


def test_refuses_to_overwrite_unrelated_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(DatasetError, match="refusing"):
        build_dataset([FakeSource(n=3)], tmp_path / "mine", opts(), progress=False)


def test_options_validated():
    with pytest.raises(ConfigError, match="--mask-size"):
        BuildOptions(image_size=32, mask_size=64)
    with pytest.raises(ConfigError, match="--val-fraction"):
        BuildOptions(val_fraction=1.5)


def test_vocabulary_merges_synonyms_and_suffixes():
    a = [SourceConcept(1, "tree", "object"), SourceConcept(2, "street-s", "scene")]
    b = [SourceConcept(7, "Trees", "object"), SourceConcept(8, "people", "object"),
         SourceConcept(9, "tree", "part")]
    v = merge_vocabularies(["a", "b"], [a, b])
    names = [(c.category, c.name) for c in v.concepts]
    assert names.count(("object", "tree")) == 1 and ("part", "tree") in names
    assert ("scene", "street") in names and ("object", "person") in names
    tree = next(c for c in v.concepts if (c.category, c.name) == ("object", "tree"))
    assert v.luts[0][1] == v.luts[1][7] == tree.id and tree.sources == ["a", "b"]
    assert canonical_name("red-c", "color") == "red"
    cats = [c.category for c in v.concepts]
    assert cats == sorted(cats, key=["object", "part", "material", "color", "scene",
                                     "texture"].index)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="probe.json"):
        ProbeSet(tmp_path)


def test_parallel_build_equals_serial(tmp_path):
    serial = ProbeSet(build_dataset([FakeSource(n=14, bad=True)], tmp_path / "a", opts(),
                                    progress=False).path)
    parallel = ProbeSet(build_dataset([FakeSource(n=14, bad=True)], tmp_path / "b",
                                      opts(workers=2), progress=False).path)
    assert serial.column("id") == parallel.column("id")
    assert serial.info["skipped"] == parallel.info["skipped"]
    for i in range(len(serial)):
        a, b = serial.annotations(i), parallel.annotations(i)
        assert (a.image == b.image).all() and (a.pixel["object"][0] == b.pixel["object"][0]).all()

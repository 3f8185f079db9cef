"""BrodenSource: exact reading of a tiny Broden directory, and every kind of bad row skipped."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from builder.datasets.sources.base import SourceConcept
from builder.datasets.sources.broden import BrodenSource, strip_suffix
from builder.errors import BadSampleError, DatasetError, SpecError
from fixtures_broden import CODES, write_broden_fixture


@pytest.fixture
def fx(tmp_path):
    return write_broden_fixture(tmp_path / "broden")


def _check(sample, expected, with_color=True):
    assert sample.id == expected["id"]
    assert sample.split == expected["split"]
    np.testing.assert_array_equal(sample.image, expected["image"])
    want = dict(expected["pixel"])
    if with_color and expected["color"]:
        want["color"] = expected["color"]
    assert set(sample.pixel) == set(want)
    for cat, layers in want.items():
        assert len(sample.pixel[cat]) == len(layers), cat
        for got, exp in zip(sample.pixel[cat], layers):
            assert got.dtype == np.uint16
            np.testing.assert_array_equal(got, exp)
    assert sample.image_labels == expected["image_labels"]


def test_reads_good_rows_exactly(fx):
    src = BrodenSource(fx.root)
    assert len(src) == len(fx.good) + len(fx.bad)
    for i, expected in fx.good.items():
        _check(src.sample(i), expected)


def test_labels_above_255_and_two_part_layers(fx):
    sample = BrodenSource(fx.root).sample(0)
    assert len(sample.pixel["part"]) == 2
    assert 300 in sample.pixel["part"][0]  # R=44, G=1
    assert CODES[("part", 301)] in sample.pixel["part"][1]
    assert 702 in sample.pixel["material"][0]


def test_vocabulary(fx):
    concepts = {(c.category, c.code): c for c in BrodenSource(fx.root, colors=False).concepts()}
    assert ("color", 1) not in concepts  # colors=False: the builder names them
    assert concepts[("scene", 700)] == SourceConcept(700, "street", "scene", ("street-s",))
    assert concepts[("object", 2)].synonyms == ("heavens",)
    # a label in two categories: one concept per category, the main one keeps the number
    assert concepts[("object", 301)].name == concepts[("part", 703)].name == "door"
    assert concepts[("material", 702)].name == concepts[("object", 704)].name == "fabric"
    codes = [c.code for c in concepts.values()]
    assert len(codes) == len(set(codes))


def test_own_colors_by_default(fx):
    src = BrodenSource(fx.root)
    assert src.ships_colors and src.curated
    assert SourceConcept(1, "black", "color", ("black-c",)) in src.concepts()
    _check(src.sample(0), fx.good[0], with_color=True)


def test_colors_left_to_the_builder_on_request(fx):
    src = BrodenSource(fx.root, colors=False)
    assert not src.ships_colors
    assert all(c.category != "color" for c in src.concepts())
    _check(src.sample(0), fx.good[0], with_color=False)


def test_keeps_the_image_file_bytes_and_reports_its_size(fx):
    src = BrodenSource(fx.root)
    sample = src.sample(0)
    assert sample.encoded == (fx.root / "images" / "set" / "a.png").read_bytes()
    assert src.native_size() == (16, 8)


@pytest.mark.parametrize("row", [2, 3, 4, 5, 6, 7, 8])
def test_bad_rows_raise_bad_sample(fx, row):
    src = BrodenSource(fx.root)
    with pytest.raises(BadSampleError) as e:
        src.sample(row)
    assert "index.csv" in str(e.value) or "images" in str(e.value), fx.bad[row]


def test_bad_row_messages(fx):
    src = BrodenSource(fx.root)
    messages = {}
    for row in fx.bad:
        with pytest.raises(BadSampleError) as e:
            src.sample(row)
        messages[row] = str(e.value)
    assert "unreadable image" in messages[2]
    assert "index.csv says 8x8" in messages[3]
    assert "label 999 is missing from label.csv" in messages[4]
    assert "does not exist" in messages[5] and "does not exist" in messages[6]
    assert "is not listed in the object category" in messages[7]
    assert "label 999 is missing" in messages[8]


def test_index_out_of_range(fx):
    with pytest.raises(IndexError):
        BrodenSource(fx.root).sample(len(fx.good) + len(fx.bad))


def test_missing_directory_and_index(tmp_path):
    with pytest.raises(DatasetError, match="Broden directory not found: .*nowhere"):
        BrodenSource(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no index\.csv"):
        BrodenSource(tmp_path / "empty")


def test_bad_label_csv(fx):
    (fx.root / "label.csv").write_text("number,name,category\nabc,sky,object(1)\n")
    with pytest.raises(DatasetError, match="not an integer"):
        BrodenSource(fx.root)


def test_fingerprint_changes_with_the_csv_files(fx):
    src = BrodenSource(fx.root)
    before = src.fingerprint()
    assert before == BrodenSource(fx.root).fingerprint()
    with open(fx.root / "label.csv", "a") as f:
        f.write("800,lamp,object(1),1,0.1,\n")
    assert src.fingerprint() != before
    assert BrodenSource(fx.root, colors=False).fingerprint() != src.fingerprint()


def test_pickles_small_and_works_after(fx):
    src = BrodenSource(fx.root)
    blob = pickle.dumps(src)
    assert len(blob) < 1000  # the index is re-read, not shipped to every worker
    again = pickle.loads(blob)
    _check(again.sample(0), fx.good[0])


def test_strip_suffix():
    assert strip_suffix("street-s", "scene") == "street"
    assert strip_suffix("street-s", "object") == "street-s"
    assert strip_suffix("red-c", "color") == "red"
    assert strip_suffix("-s", "scene") == "-s"


# -- resolve_source: the broden forms, toyworld, and errors --------------------------------

def test_resolve_broden_forms(fx):
    from builder.datasets.sources import resolve_source

    for spec in (f"broden:{fx.root}", str(fx.root)):
        src = resolve_source(spec, segmenter=None, seed=None)
        assert isinstance(src, BrodenSource) and len(src) == len(fx.good) + len(fx.bad)
    assert resolve_source(f"broden:{fx.root}", colors=True, segmenter="x").colors
    with pytest.raises(DatasetError, match="Broden directory not found"):
        resolve_source(f"broden:{fx.root}-missing")


def test_resolve_toyworld_and_errors(tmp_path):
    from builder.datasets.sources import resolve_source

    world = resolve_source("toyworld", n=5, size=32, seed=3, segmenter="ignored")
    assert (world.name, len(world)) == ("toyworld", 5)
    with pytest.raises(SpecError, match="unknown dataset source 'coco'") as e:
        resolve_source("coco")
    assert "broden:PATH" in e.value.hint and "hf:NAME" in e.value.hint
    with pytest.raises(SpecError, match="unknown dataset source"):
        resolve_source(str(tmp_path))  # a directory without index.csv
    with pytest.raises(SpecError, match="unknown dataset option"):
        resolve_source("toyworld", colour="red")
    with pytest.raises(SpecError, match="needs a path"):
        resolve_source("broden:")


# -- export_broden: a concept dataset written as Broden reads back the same ----------------

class FakeProbe:
    """The reader API of a concept dataset (ProbeSet), held in memory."""

    def __init__(self):
        from builder.datasets.probe import Concept

        rng = np.random.default_rng(7)
        self.image_size, self.mask_size = 12, 6
        self.concepts = [Concept(1, "red", "color", "pixel", 2, 0.5),
                         Concept(5, "car", "object", "pixel", 2, 0.3, ("toy",), ("auto",)),
                         Concept(300, "wheel", "part", "pixel", 1, 0.1),
                         Concept(301, "window", "part", "pixel", 1, 0.1),
                         Concept(400, "glass", "material", "pixel", 1, 0.1),
                         Concept(600, "street", "scene", "image", 2, 1.0, (), ("street-s",)),
                         Concept(700, "striped", "texture", "image", 1, 1.0)]
        self.categories = ["object", "part", "material", "color", "scene", "texture"]
        self.samples = []
        for i in range(3):
            obj = np.where(rng.random((6, 6)) > 0.5, 5, 0).astype(np.uint16)
            part1 = np.where(obj > 0, 300, 0).astype(np.uint16)
            part2 = np.zeros((6, 6), np.uint16)
            part2[0, :3] = 301
            pixel = {"color": [np.ones((6, 6), np.uint16)], "object": [obj],
                     "part": [part1, part2] if i != 1 else [],
                     "material": [np.full((6, 6), 400, np.uint16)] if i == 0 else []}
            labels = {"scene": [600], "texture": [700] if i == 2 else []}
            from builder.datasets.sources.base import SourceSample

            self.samples.append(SourceSample(
                id=f"toy/{i:03d}" if i != 2 else "odd id/with:colon", split="train",
                image=rng.integers(0, 256, (12, 12, 3), np.uint8), pixel=pixel,
                image_labels=labels))

    def __len__(self):
        return len(self.samples)

    def image(self, i):
        return self.samples[i].image

    def annotations(self, i):
        return self.samples[i]


def _same_samples(probe, src):
    assert len(src) == len(probe)
    for i in range(len(probe)):
        want, got = probe.annotations(i), src.sample(i)
        assert got.split == want.split
        np.testing.assert_array_equal(got.image, want.image)
        want_pixel = {c: ls for c, ls in want.pixel.items() if len(ls)}
        assert set(got.pixel) == set(want_pixel)
        for cat, layers in want_pixel.items():
            assert len(got.pixel[cat]) == len(layers)
            for g, w in zip(got.pixel[cat], layers):
                np.testing.assert_array_equal(g, w)
        assert got.image_labels == {c: list(v) for c, v in want.image_labels.items() if len(v)}
    want = {(c.id, c.name, c.category, tuple(c.synonyms)) for c in probe.concepts}
    got = {(c.code, c.name, c.category, tuple(c.synonyms)) for c in src.concepts()}
    assert got == want


def test_export_round_trip_fake_probe(tmp_path):
    from builder.datasets.export import export_broden

    probe = FakeProbe()
    out = export_broden(probe, tmp_path / "export")
    header = (out / "index.csv").read_text().splitlines()[0]
    assert header == "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture"
    src = BrodenSource(out, colors=True)
    _same_samples(probe, src)
    assert [src.sample(i).id for i in range(3)] == ["toy/000", "toy/001", "odd_id/with_colon"]
    assert "toy/000_part_1.png;toy/000_part_2.png" in (out / "index.csv").read_text()
    assert (out / "c_part.csv").read_text().splitlines()[1:] == [
        "1,300,wheel,1,0.100000", "2,301,window,1,0.100000"]
    with pytest.raises(DatasetError, match="not empty"):
        export_broden(probe, out)
    export_broden(probe, out, overwrite=True)


def test_export_round_trip_built_dataset(tmp_path):
    from builder.datasets import BuildOptions, ProbeSet, build_dataset
    from builder.datasets.export import export_broden
    from fake_sources import FakeSource

    options = BuildOptions(image_size=32, mask_size=16, min_frequency=1, workers=1, shard_size=8)
    probe = ProbeSet(build_dataset([FakeSource(n=6)], tmp_path / "ds", options,
                                   progress=False).path)
    out = export_broden(probe, tmp_path / "broden")
    src = BrodenSource(out, colors=True)
    _same_samples(probe, src)
    assert [src.sample(i).id for i in range(6)] == [probe.annotations(i).id for i in range(6)]
    index = (out / "index.csv").read_text().splitlines()
    assert index[1].split(",")[2:6] == ["32", "32", "16", "16"]


def test_builds_into_a_concept_dataset(fx, tmp_path):
    from builder.datasets import BuildOptions, ProbeSet, build_dataset

    options = BuildOptions(image_size=16, mask_size=8, min_frequency=1, workers=1, shard_size=4)
    result = build_dataset([BrodenSource(fx.root)], tmp_path / "ds", options, progress=False)
    assert result.images == len(fx.good) and len(result.skipped) == len(fx.bad)
    probe = ProbeSet(result.path)
    names = {(c.category, c.name) for c in probe.concepts}
    assert {("object", "door"), ("part", "door"), ("part", "wheel"), ("scene", "street"),
            ("material", "fabric"), ("object", "fabric"), ("texture", "striped")} <= names
    a = probe.annotations(0)
    ids = {(c.category, c.name): c.id for c in probe.concepts}
    assert ids[("part", "wheel")] in a.pixel["part"][0]
    assert a.image_labels["scene"] == [ids[("scene", "street")]]

"""Hub adapters on local fixtures in each hub schema (offline), and hf: spec parsing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from builder.datasets.sources.base import SourceConcept
from builder.datasets.sources.hub import (ADE20KSource, DTDSource, PascalContextSource,
                                          PascalPartSource, SceneParse150Source, open_hub_source,
                                          parse_hub_spec)
from builder.errors import BadSampleError, DatasetError, SpecError
from fixtures_hub import (DTD_NAMES, SCENE_PARSE_SCENES, write_ade20k_fixture, write_dtd_fixture,
                          write_pascal_context_fixture, write_pascal_part_fixture,
                          write_scene_parse_fixture)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "hf-cache"


def _lut(pairs: dict[int, int], array: np.ndarray) -> np.ndarray:
    out = np.zeros(array.shape, np.uint16)
    for raw, code in pairs.items():
        out[array == raw] = code
    return out


def test_ade20k(tmp_path, cache):
    fx = write_ade20k_fixture(tmp_path / "ade")
    src = open_hub_source(f"ade20k?path={tmp_path / 'ade'}", cache_dir=cache)
    assert isinstance(src, ADE20KSource) and len(src) == 4
    assert src.concepts() == [
        SourceConcept(1, "door", "object", ("doorway",)), SourceConcept(2, "wall", "object"),
        SourceConcept(3, "door", "part", ("doorway",)), SourceConcept(4, "handle", "part",
                                                                     ("grip",)),
        SourceConcept(5, "knob", "part"), SourceConcept(6, "bathroom", "scene"),
        SourceConcept(7, "street", "scene")]
    s = src.sample(0)
    assert s.id == "ADE_val_00000001" and s.split is None
    np.testing.assert_array_equal(s.image, fx["images"][0])
    np.testing.assert_array_equal(s.pixel["object"][0], _lut({775: 1, 2978: 2}, fx["object"][0]))
    assert len(s.pixel["part"]) == 2  # part levels 1 and 2
    np.testing.assert_array_equal(s.pixel["part"][0], _lut({775: 3, 1200: 4}, fx["part"][0]))
    np.testing.assert_array_equal(s.pixel["part"][1], _lut({1400: 5}, fx["part"][1]))
    assert s.image_labels == {"scene": [7]}
    s1 = src.sample(1)
    assert set(s1.pixel) == {"object"} and s1.image_labels == {"scene": [6]}
    for row, message in fx["bad"].items():
        with pytest.raises(BadSampleError, match=message):
            src.sample(row)


def test_dtd_class_labels(tmp_path, cache):
    fx = write_dtd_fixture(tmp_path / "dtd")
    src = DTDSource(path=tmp_path / "dtd", cache_dir=cache)
    assert src.concepts() == [SourceConcept(i + 1, n, "texture") for i, n in enumerate(DTD_NAMES)]
    for i in fx["good"]:
        s = src.sample(i)
        np.testing.assert_array_equal(s.image, fx["images"][i])
        assert s.pixel == {} and s.image_labels == {"texture": [fx["labels"][i] + 1]}
        assert s.id == f"{DTD_NAMES[fx['labels'][i]]}_{i:04d}"
    with pytest.raises(BadSampleError, match="unreadable image"):
        src.sample(3)


def test_dtd_string_labels(tmp_path, cache):
    write_dtd_fixture(tmp_path / "dtd", string_labels=True)
    src = DTDSource(path=tmp_path / "dtd", cache_dir=cache)
    codes = {c.name: c.code for c in src.concepts()}
    assert sorted(codes) == sorted(DTD_NAMES)
    assert src.sample(1).image_labels == {"texture": [codes["zigzagged"]]}


def test_pascal_context(tmp_path, cache):
    fx = write_pascal_context_fixture(tmp_path / "pc")
    src = open_hub_source("pascal-context", path=str(tmp_path / "pc"), cache_dir=cache)
    assert isinstance(src, PascalContextSource)
    assert src.concepts() == [SourceConcept(1, "aeroplane", "object"),
                              SourceConcept(2, "wall", "object"), SourceConcept(3, "sky", "object")]
    s = src.sample(0)
    assert s.id == "2008_000000"
    np.testing.assert_array_equal(s.image, fx["images"][0])
    np.testing.assert_array_equal(s.pixel["object"][0], _lut({2: 1, 400: 2, 401: 3}, fx["label"]))
    for row, message in fx["bad"].items():
        with pytest.raises(BadSampleError, match=message):
            src.sample(row)


def test_pascal_part(tmp_path, cache):
    fx = write_pascal_part_fixture(tmp_path / "pp")
    src = PascalPartSource(path=tmp_path / "pp", cache_dir=cache)
    assert [(c.code, c.name, c.category) for c in src.concepts()] == [
        (1, "cat", "object"), (2, "person", "object"), (3, "head", "part"), (4, "torso", "part"),
        (5, "tail", "part")]
    s = src.sample(0)
    np.testing.assert_array_equal(s.pixel["object"][0], _lut({8: 1}, fx["object"][0]))
    np.testing.assert_array_equal(s.pixel["part"][0], _lut({1: 3, 2: 4}, fx["part"]))
    s1 = src.sample(1)
    assert set(s1.pixel) == {"object"}  # no part map: not annotated for parts
    np.testing.assert_array_equal(s1.pixel["object"][0], np.full((5, 6), 2))


def test_label_maps_need_a_copy(monkeypatch):
    with pytest.raises(SpecError, match="no public hub copy"):
        open_hub_source("pascal-part")


def test_missing_columns_and_paths(tmp_path, cache):
    write_dtd_fixture(tmp_path / "dtd")
    with pytest.raises(DatasetError, match="missing column.*segmentations"):
        ADE20KSource(path=tmp_path / "dtd", split="train", cache_dir=cache)
    with pytest.raises(DatasetError, match="local path not found"):
        DTDSource(path=tmp_path / "nowhere", cache_dir=cache)


def test_load_failure_is_one_dataset_error(monkeypatch, cache):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'tanganke/dtd' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DatasetError, match=r"hf:dtd \(tanganke/dtd@abc, split test\): cannot "
                                           r"load: ConnectionError"):
        open_hub_source("dtd@abc?split=test", cache_dir=cache)


def test_fingerprint_and_pickle(tmp_path, cache):
    write_dtd_fixture(tmp_path / "dtd")
    src = DTDSource(path=tmp_path / "dtd", cache_dir=cache)
    fp = src.fingerprint()
    assert fp == DTDSource(path=tmp_path / "dtd", cache_dir=cache).fingerprint()
    assert DTDSource(path=tmp_path / "dtd", cache_dir=cache, split="train[:2]").fingerprint() != fp
    again = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(again.sample(0).image, src.sample(0).image)
    write_dtd_fixture(tmp_path / "dtd2")
    parquet = next((tmp_path / "dtd2").rglob("*.parquet"))
    parquet.write_bytes(parquet.read_bytes())  # same bytes: same fingerprint
    other = DTDSource(path=tmp_path / "dtd2", cache_dir=cache)
    assert other.fingerprint() == fp
    write_dtd_fixture(tmp_path / "dtd2", string_labels=True)
    assert DTDSource(path=tmp_path / "dtd2", cache_dir=cache).fingerprint() != fp


def test_parse_hub_spec():
    assert parse_hub_spec("ade20k") == ("ade20k", {})
    assert parse_hub_spec("ade20k@v1.0?split=train&path=/data/ade") == (
        "ade20k", {"revision": "v1.0", "split": "train", "path": "/data/ade"})
    for bad in ("", "@rev", "dtd@", "dtd?colour=red", "dtd?split=a&split=b", "dtd?split="):
        with pytest.raises(SpecError):
            parse_hub_spec(bad)
    with pytest.raises(SpecError, match="unknown hub dataset 'coco'"):
        open_hub_source("coco")
    with pytest.raises(SpecError, match="both in the spec and as option"):
        open_hub_source("dtd?split=train", split="test")


def test_resolve_hf(tmp_path, cache):
    from builder.datasets.sources import resolve_source

    write_dtd_fixture(tmp_path / "dtd")
    src = resolve_source(f"hf:dtd?path={tmp_path / 'dtd'}", cache_dir=cache, segmenter="x",
                         n=None)
    assert isinstance(src, DTDSource) and len(src) == 4
    src = resolve_source("hf:dtd", path=str(tmp_path / "dtd"), split="train", cache_dir=cache)
    assert len(src) == 4


def test_single_parquet_file(tmp_path, cache):
    write_dtd_fixture(tmp_path / "dtd")
    parquet = next((tmp_path / "dtd").rglob("*.parquet"))
    assert len(DTDSource(path=parquet, split="train[:2]", cache_dir=cache)) == 2
    assert len(DTDSource(path=parquet, split="test", cache_dir=cache)) == 4


# -- hf:scene-parse-150 ------------------------------------------------------------------------

def test_scene_parse_150(tmp_path, cache):
    fx = write_scene_parse_fixture(tmp_path / "sp")
    src = open_hub_source(f"scene-parse-150?path={tmp_path / 'sp'}", cache_dir=cache)
    assert isinstance(src, SceneParse150Source) and len(src) == 6  # scene_parsing/validation
    assert src.config.data_dir == "scene_parsing"
    concepts = src.concepts()
    objects = [c for c in concepts if c.category == "object"]
    assert [c.code for c in objects] == list(range(1, 151))  # class index = local code
    assert objects[0] == SourceConcept(1, "wall", "object")
    assert objects[12] == SourceConcept(13, "person", "object", (
        "individual", "someone", "somebody", "mortal", "soul"))
    assert objects[149] == SourceConcept(150, "flag", "object")
    scenes = [(c.code, c.name) for c in concepts if c.category == "scene"]
    assert scenes == [(151, "airport_terminal"), (152, "art_gallery"), (153, "badlands"),
                      (155, "bathroom")]  # the scenes present, codes 151 + class index
    s = src.sample(0)
    assert s.id == "ADE_val_00000001"
    np.testing.assert_array_equal(s.image, fx["images"][0])
    assert s.pixel["object"][0].dtype == np.uint16
    np.testing.assert_array_equal(s.pixel["object"][0], fx["object"][0])
    assert s.image_labels == {"scene": [155]}
    assert src.sample(1).image_labels == {"scene": [151]}
    for row, message in fx["bad"].items():
        with pytest.raises(BadSampleError, match=message):
            src.sample(row)
    again = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(again.sample(0).pixel["object"][0], fx["object"][0])


def test_scene_parse_150_shipped_names_and_plain_indices(tmp_path, cache):
    """Without a ClassLabel (plain integers) the scene names come from the shipped list."""
    import datasets

    from builder.datasets.sources.sceneparse150_names import OBJECTS, SCENES

    assert len(OBJECTS) == 150 and len(SCENES) == 1055 and len(set(SCENES)) == 1055
    assert list(SCENES[:5]) == SCENE_PARSE_SCENES and SCENES[-1] == "chuck_wagon"
    assert OBJECTS[8] == "windowpane, window" and OBJECTS[-1] == "flag"
    write_scene_parse_fixture(tmp_path / "sp")
    parquet = tmp_path / "sp" / "scene_parsing" / "validation" / "0000.parquet"
    table = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(cache))
    plain = table.cast_column("scene_category", datasets.Value("int64"))
    plain.to_parquet(str(tmp_path / "plain.parquet"))
    src = SceneParse150Source(path=tmp_path / "plain.parquet", cache_dir=cache)
    assert src.config.data_dir is None  # a single file: no folder to look into
    names = {c.code: c.name for c in src.concepts() if c.category == "scene"}
    assert names == {151: "airport_terminal", 152: "art_gallery", 153: "badlands",
                     155: "bathroom"}
    beyond = plain.map(lambda row, i: {"scene_category": 1055 if i == 1 else
                                       row["scene_category"]}, with_indices=True)
    beyond.to_parquet(str(tmp_path / "beyond.parquet"))
    with pytest.raises(DatasetError, match="scene_category 1055 is not one of the 1055"):
        SceneParse150Source(path=tmp_path / "beyond.parquet", cache_dir=cache)


def test_scene_parse_150_test_split_is_unannotated(tmp_path, cache):
    write_scene_parse_fixture(tmp_path / "sp")
    with pytest.raises(DatasetError, match="no row has an annotation"):
        SceneParse150Source(path=tmp_path / "sp", split="test", cache_dir=cache)


def test_scene_parse_150_reads_the_parquet_branch(monkeypatch, cache):
    """From the hub: the parquet branch and its scene_parsing folder, unless told otherwise."""
    import datasets

    calls = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", record)
    with pytest.raises(DatasetError, match=r"hf:scene-parse-150 \(zhoubolei/scene_parse_150@"
                                           r"refs/convert/parquet, split validation\)"):
        open_hub_source("scene-parse-150", cache_dir=cache)
    args, kwargs = calls[-1]
    assert args == ("zhoubolei/scene_parse_150",)
    assert kwargs["revision"] == "refs/convert/parquet" and kwargs["data_dir"] == "scene_parsing"
    assert kwargs["split"] == "validation" and kwargs["data_files"] is None
    with pytest.raises(DatasetError):
        open_hub_source("scene-parse-150@abc123?split=train", cache_dir=cache)
    assert calls[-1][1]["revision"] == "abc123" and calls[-1][1]["data_dir"] == "scene_parsing"
    with pytest.raises(DatasetError):  # another copy: its own layout, its default branch
        open_hub_source("scene-parse-150?repo=me/ade150", cache_dir=cache)
    assert calls[-1][0] == ("me/ade150",)
    assert calls[-1][1]["revision"] is None and "data_dir" not in calls[-1][1]


def test_scene_parse_150_dataset_build_cli(tmp_path, capsys):
    """``unitdissect dataset build hf:scene-parse-150?path=DIR`` as a user runs it."""
    from builder.cli import main
    from builder.datasets import ProbeSet

    fx = write_scene_parse_fixture(tmp_path / "sp")
    out = tmp_path / "ade150"
    assert main(["dataset", "build", f"hf:scene-parse-150?path={tmp_path / 'sp'}",
                 "--out", str(out), "--image-size", "12", "--mask-size", "12",
                 "--image-format", "png", "--min-frequency", "1", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "(2 images" in printed and "skipped 4 bad sample(s)" in printed
    probe = ProbeSet(out)
    ids = {(c.category, c.name): c.id for c in probe.concepts}
    assert {("object", n) for n in ("wall", "sky", "flag", "person")} <= set(ids)
    assert {("scene", "bathroom"), ("scene", "airport terminal")} <= set(ids)
    assert not any(c.category == "part" for c in probe.concepts)
    person = next(c for c in probe.concepts if c.name == "person")
    assert "individual" in person.synonyms
    rows = {probe.annotations(i).id: probe.annotations(i) for i in range(len(probe))}
    first = rows["ADE_val_00000001"]
    lut = np.zeros(151, np.int64)
    for code, name in ((1, "wall"), (3, "sky"), (150, "flag"), (13, "person")):
        lut[code] = ids["object", name]
    np.testing.assert_array_equal(first.pixel["object"][0], lut[fx["object"][0]])
    np.testing.assert_array_equal(first.image, fx["images"][0])
    assert first.image_labels["scene"] == [ids["scene", "bathroom"]]
    second = rows["ADE_val_00000002"]
    np.testing.assert_array_equal(second.pixel["object"][0], lut[fx["object"][1]])
    assert second.image_labels["scene"] == [ids["scene", "airport terminal"]]
    reasons = " | ".join(item["reason"] for item in probe.skipped)
    assert "outside 0..150" in reasons and "no annotation" in reasons

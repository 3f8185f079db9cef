"""Reading run directories into the site model (builder/report/gather.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from builder.errors import DatasetError
from builder.report.gather import gather_site, read_run, slugify
from report_fixtures import CLASSES, CONCEPTS, EVIL, write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path, "toy")


def test_read_run_layers_units_and_concepts(run_dir: Path) -> None:
    run = read_run(run_dir)
    assert [layer.name for layer in run.layers] == ["layer3", "layer4"]
    layer = run.layers[1]
    assert len(layer.units) == 14 and [u.index for u in layer.units] == list(range(14))
    assert len(run.concepts) == len(CONCEPTS)
    unit = layer.units[0]
    assert unit.label == EVIL and unit.concept_id == CONCEPTS.index((EVIL, "object", "pixel")) + 1
    assert unit.path == "toy/layer4/unit-0000.html"
    assert unit.strip_path == "toy/layer4/img/unit-0000-strip.jpg"
    assert layer.topk is not None and layer.topk.k == 6 and layer.topk.map_shape == (4, 4)
    assert layer.histogram is not None and layer.histogram[0].shape == (14, 33)
    assert layer.shape == [14, 4, 4]


def test_top_concepts_are_the_best_columns_of_iou(run_dir: Path) -> None:
    layer = read_run(run_dir).layers[0]
    assert layer.iou is not None and layer.top_concepts is not None
    for u in range(len(layer.units)):
        expected = np.argsort(-layer.iou[u], kind="stable")[:10]
        assert np.allclose(layer.iou[u, layer.top_concepts[u]], layer.iou[u, expected])
        assert layer.top_concepts[u, 0] == layer.units[u].concept_id


def test_detector_summary_matches_units(run_dir: Path) -> None:
    layer = read_run(run_dir).layers[1]
    detectors = [u for u in layer.units if u.detector]
    assert layer.detector_count == len(detectors) == sum(layer.detectors.values())
    assert sum(layer.unique_detectors.values()) == len({(u.label, u.category) for u in detectors})
    assert list(layer.detectors) == [c for c in ("object", "part", "material", "color", "scene", "texture") if c in layer.detectors]


def test_ablation_and_generator_sections(run_dir: Path) -> None:
    run = read_run(run_dir)
    assert [c.name for c in run.classes] == CLASSES
    assert len({c.slug for c in run.classes}) == len(CLASSES)
    layer = run.layers[1]
    ablation = layer.ablation
    assert ablation is not None and ablation.single_unit.shape == (14, len(CLASSES))
    assert np.allclose(ablation.drops, ablation.baseline[None, :] - ablation.single_unit)
    assert set(ablation.curves[0]) == {"top", "rest"}
    assert ablation.accuracy == pytest.approx(0.533)
    assert run.layers[0].ablation is None
    generator = run.layers[0].generator
    assert generator is not None and generator.concepts == ["tree", EVIL, "door"]
    assert [r["n_removed"] for r in generator.ablation["tree"]] == [0, 5, 10, 20]
    assert run.layers[1].generator is None
    assert generator.science is not None and generator.science["pass"] is True
    assert [u for u, _ in generator.ranking["tree"]] == [2, 0, 1]
    assert [s.file for s in generator.strips] == ["ablation-tree.png", "insertion-evil.png"]  # no PNG: dropped
    assert [s.file for s in generator.strips_with(0)] == ["ablation-tree.png"]
    assert generator.strips[1].added_fraction == [0.5, 1.0]


def test_gallery_file_names_must_be_plain(run_dir: Path) -> None:
    path = run_dir / "generator" / "layer3" / "gallery" / "gallery.json"
    path.write_text(json.dumps({"strips": [{"file": "../../manifest.json", "units": []}]}))
    with pytest.raises(DatasetError, match="must be a plain .png name"):
        read_run(run_dir)


def test_site_concepts_merge_runs_by_name_and_category(tmp_path: Path) -> None:
    a = write_run(tmp_path, "a")
    b = write_run(tmp_path, "b", seed=3, ablation=False, generator=False)
    site = gather_site([a, b])
    assert len(site.concepts) == len(CONCEPTS)
    evil = next(c for c in site.concepts if c.name == EVIL)
    assert evil.slug == "img-src-x-onerror-alert-1"
    assert {s.layer.run.name for s in evil.layers} == {"a", "b"}
    assert all(u.label == EVIL and u.detector for u in evil.detector_units)
    assert len(site.units) == 2 * (10 + 14)
    assert [c.name for c in site.classes] == CLASSES


def test_run_slugs_are_unique_and_avoid_site_folders(tmp_path: Path) -> None:
    first = write_run(tmp_path / "x", "static")
    second = write_run(tmp_path / "y", "static")
    site = gather_site([first, second])
    slugs = [run.slug for run in site.runs]
    assert len(set(slugs)) == 2 and "static" not in slugs


def test_slugify() -> None:
    assert slugify("Ski Resort") == "ski-resort"
    assert slugify("<>") == "item"
    assert slugify("café/../x") == "cafe-x"


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: (r / "manifest.json").unlink(), "no manifest.json"),
        (lambda r: (r / "manifest.json").write_text("{nope"), "not valid JSON"),
        (lambda r: _edit_manifest(r, format_version=99), "newer than this unitdissect"),
        (lambda r: _edit_manifest(r, format="other"), "not a unitdissect run manifest"),
        (lambda r: (r / "concepts.csv").unlink(), "no concepts.csv"),
        (lambda r: (r / "layers" / "layer3" / "units.csv").unlink(), "no units.csv"),
        (lambda r: np.save(r / "layers" / "layer3" / "iou.npy", np.zeros((3, 4), np.float32)), "does not match 10 units"),
        (lambda r: _edit_units(r, "iou", "high"), "iou is not a number"),
        (lambda r: _edit_manifest(r, model={"spec": "x", "layers": ["layer3", "layer9"]}), "layers/layer9/ is missing"),
        (lambda r: (r / "layers" / "layer4" / "topk.npz").write_bytes(b"junk"), "not a readable .npz"),
        (lambda r: np.save(r / "ablation" / "layer4" / "single_unit.npy", np.zeros((2, 2))), "single_unit.npy"),
    ],
)
def test_invalid_run_directories_raise_one_line_dataset_errors(run_dir: Path, breakage, message: str) -> None:
    breakage(run_dir)
    with pytest.raises(DatasetError, match=message) as info:
        read_run(run_dir)
    assert "\n" not in str(info.value)


def test_missing_run_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="run directory not found"):
        gather_site([tmp_path / "nowhere"])
    with pytest.raises(DatasetError, match="no run directory"):
        gather_site([])


def test_run_given_twice_is_refused(run_dir: Path) -> None:
    with pytest.raises(DatasetError, match="given twice"):
        gather_site([run_dir, run_dir])


def test_optional_files_may_be_absent(run_dir: Path) -> None:
    for name in ("topk.npz", "histogram.npz", "layer.json"):
        (run_dir / "layers" / "layer3" / name).unlink()
    layer = read_run(run_dir).layers[0]
    assert layer.topk is None and layer.histogram is None and layer.shape is None
    assert layer.units[0].strip_path is None


def _edit_manifest(run: Path, **changes: object) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(changes)
    (run / "manifest.json").write_text(json.dumps(manifest))


def _edit_units(run: Path, column: str, value: str) -> None:
    path = run / "layers" / "layer3" / "units.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index(column)] = value
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")

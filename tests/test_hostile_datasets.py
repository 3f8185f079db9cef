"""Mistaken and hostile dataset inputs, run through the CLI as a user runs them (issue 23):
each is one line on stderr (exit 2) or a named, counted skip, never a traceback."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from builder.cli import main
from builder.datasets.sources.base import SourceConcept
from builder.datasets.sources.images import register_segmenter

from fixtures_broden import write_broden_fixture


class ShapeSegmenter:
    """Labels every pixel 'thing' and records the shapes of the images it is given."""

    name = "test:shapes"
    seen: list[tuple[int, ...]] = []

    def concepts(self):
        return [SourceConcept(1, "thing", "object")]

    def segment(self, images):
        ShapeSegmenter.seen += [im.shape for im in images]
        return [{"object": [np.ones(im.shape[:2], np.uint16)]} for im in images]

    def fingerprint(self):
        return "shapes-v1"


@pytest.fixture(autouse=True)
def _segmenter():
    register_segmenter(ShapeSegmenter.name, ShapeSegmenter, replace=True)
    ShapeSegmenter.seen = []


def _error(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI, expect exit 2 and one ``unitdissect: error:`` line holding ``needles``."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if not line.startswith("  hint:")]
    assert len(lines) == 1 and lines[0].startswith("unitdissect: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return err


def _build(capsys, *argv: str) -> str:
    """Run ``dataset build`` in this process; expect success and return its stdout."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["dataset", "build", *argv, "--workers", "1", "--min-frequency", "0"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "DecompressionBomb" not in out + err
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    return out


def _photos(root: Path, big: tuple[int, int], mode: str = "1", fmt: str = "PNG") -> Path:
    """A folder with one small good image and one ``big`` image (cheap to write in mode 1)."""
    root.mkdir()
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(root / "a_small.png")
    Image.new(mode, big).save(root / f"b_big.{fmt.lower()}", format=fmt)
    return root


# -- 1. images bounded before decoding ----------------------------------------------------------
def test_a_huge_image_is_a_named_skip_before_decoding(tmp_path, capsys):
    folder = _photos(tmp_path / "photos", (10_000, 10_000))
    out = _build(capsys, f"images:{folder}", "--segmenter", ShapeSegmenter.name,
                 "--image-size", "32", "--mask-size", "16", "--out", str(tmp_path / "ds"))
    assert "(1 images" in out and "skipped 1 bad sample" in out
    assert "b_big.png: image of 10000x10000 = 100,000,000 pixels, above the limit of " \
        "50,000,000 (max_pixels)" in out
    assert all(max(shape[:2]) <= 64 for shape in ShapeSegmenter.seen)


def test_max_pixels_is_a_spec_option(tmp_path, capsys):
    folder = _photos(tmp_path / "photos", (100, 50), mode="RGB")
    out = _build(capsys, f"images:{folder}?max_pixels=4000", "--segmenter",
                 ShapeSegmenter.name, "--image-size", "32", "--out", str(tmp_path / "ds"))
    assert "skipped 1 bad sample" in out and "b_big.png: image of 100x50" in out
    assert "above the limit of 4,000" in out
    _error(capsys, ["dataset", "build", f"images:{folder}?max_pixel=4", "--segmenter",
                    ShapeSegmenter.name], "unknown option 'max_pixel'")
    _error(capsys, ["dataset", "build", f"images:{folder}?max_pixels=-4", "--segmenter",
                    ShapeSegmenter.name], "max_pixels must be a positive whole number")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_large_images_are_reduced_while_decoding(tmp_path, capsys, fmt):
    folder = _photos(tmp_path / "photos", (2000, 1200), mode="RGB", fmt=fmt)
    out = _build(capsys, f"images:{folder}", "--segmenter", ShapeSegmenter.name,
                 "--image-size", "64", "--mask-size", "16", "--out", str(tmp_path / "ds"))
    assert "(2 images" in out and "skipped" not in out
    big = [shape for shape in ShapeSegmenter.seen if shape[1] > 64]
    # decoded at a reduced scale, its shorter side still at least the kept side
    assert big and all(64 <= min(s[:2]) < 128 for s in big), big


def test_a_huge_broden_image_is_a_named_skip(tmp_path, capsys):
    fx = write_broden_fixture(tmp_path / "broden")
    Image.new("1", (10_000, 10_000)).save(fx.root / "images" / "set" / "a.png")
    out = _build(capsys, f"broden:{fx.root}", "--out", str(tmp_path / "ds"))
    assert "a.png: image of 10000x10000" in out


# -- 2. label numbers a mask cannot hold -------------------------------------------------------
def _rewrite(path: Path, edit) -> None:
    """Rewrite a csv file with ``edit(rows)`` applied to its rows (header first)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    edit(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_a_huge_label_number_in_label_csv_names_file_and_line(tmp_path, capsys):
    fx = write_broden_fixture(tmp_path / "broden")
    _rewrite(fx.root / "label.csv", lambda rows: rows[3].__setitem__(0, "3000000000"))
    _error(capsys, ["dataset", "build", f"broden:{fx.root}"],
           "label.csv:4:", "3000000000", "outside 0..65535")


def test_a_huge_label_number_in_c_csv_names_file_and_line(tmp_path, capsys):
    fx = write_broden_fixture(tmp_path / "broden")
    _rewrite(fx.root / "c_object.csv", lambda rows: rows[1].__setitem__(1, "3000000000"))
    _error(capsys, ["dataset", "build", f"broden:{fx.root}"], "c_object.csv:2:", "3000000000")


def test_a_huge_label_number_in_index_csv_is_a_named_skip(tmp_path, capsys):
    fx = write_broden_fixture(tmp_path / "broden")
    _rewrite(fx.root / "index.csv", lambda rows: rows[2].__setitem__(10, "3000000000"))
    out = _build(capsys, f"broden:{fx.root}", "--out", str(tmp_path / "ds"))
    assert "index.csv row 3: scene label 3000000000 is outside 0..65535" in out
    _rewrite(fx.root / "index.csv", lambda rows: rows[2].__setitem__(10, "9" * 40))
    assert "outside 0..65535" in _build(capsys, f"broden:{fx.root}", "--out",
                                        str(tmp_path / "ds2"))


# -- 3. a byte order mark ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["index.csv", "label.csv", "c_object.csv"])
def test_csv_files_with_a_byte_order_mark_are_read(tmp_path, capsys, name):
    fx = write_broden_fixture(tmp_path / "broden")
    path = fx.root / name
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    out = _build(capsys, f"broden:{fx.root}", "--out", str(tmp_path / "ds"))
    assert f"({len(fx.good)} images" in out


# -- 4. control characters quoted, not printed -------------------------------------------------
def test_nul_bytes_of_a_malformed_row_are_escaped(tmp_path, capsys):
    fx = write_broden_fixture(tmp_path / "broden")
    _rewrite(fx.root / "label.csv", lambda rows: rows[2].__setitem__(0, "7\x00\x1b[31m"))
    err = _error(capsys, ["dataset", "build", f"broden:{fx.root}"], "label.csv:3:",
                 "\\x00", "\\x1b")
    assert "\x00" not in err and "\x1b" not in err


def test_nul_bytes_in_a_header_and_a_file_path_are_escaped(tmp_path, capsys):
    fx = write_broden_fixture(tmp_path / "broden")
    _rewrite(fx.root / "index.csv", lambda rows: rows[2].__setitem__(0, "set/b\x00.png"))
    out = _build(capsys, f"broden:{fx.root}", "--out", str(tmp_path / "ds"))
    assert "\\x00" in out and "\x00" not in out
    _rewrite(fx.root / "index.csv", lambda rows: rows[0].__setitem__(0, "im\x00age"))
    err = _error(capsys, ["dataset", "build", f"broden:{fx.root}"], "missing column(s) image",
                 "im\\x00age")
    assert "\x00" not in err


# -- 5. a malformed concepts.csv --------------------------------------------------------------
@pytest.fixture
def built(tmp_path, capsys) -> Path:
    fx = write_broden_fixture(tmp_path / "broden")
    _build(capsys, f"broden:{fx.root}", "--out", str(tmp_path / "ds"))
    return tmp_path / "ds"


def test_a_concepts_csv_without_a_column_is_one_line(built, capsys):
    path = built / "concepts.csv"
    _rewrite(path, lambda rows: [r.pop(5) for r in rows])
    err = _error(capsys, ["dataset", "info", str(built)], "concepts.csv", "coverage")
    assert "rebuild the dataset" in err


@pytest.mark.parametrize("edit, needle", [
    (lambda rows: rows.__setitem__(2, rows[2][:3]), "concepts.csv:3: row has no"),
    (lambda rows: rows[1].__setitem__(5, "lots"), "concepts.csv:2: malformed row"),
    (lambda rows: rows[1].__setitem__(2, "weather"), "concepts.csv:2: unknown category"),
])
def test_a_malformed_concepts_csv_row_is_one_line(built, capsys, edit, needle):
    _rewrite(built / "concepts.csv", edit)
    err = _error(capsys, ["dataset", "info", str(built)], needle)
    assert "rebuild the dataset" in err


# -- 6. a missing checkpoint ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["progan", "stylegan2"])
def test_a_missing_generator_checkpoint_says_not_found(tmp_path, capsys, kind):
    missing = tmp_path / "nonexistent.pth"
    _error(capsys, ["layers", f"{kind}:{missing}"], f"weights file not found: {missing}")
    _error(capsys, ["gan", "--model", f"{kind}:{missing}", "--layers", "x", "--out",
                    str(tmp_path / "run")], f"weights file not found: {missing}")
    _error(capsys, ["layers", f"{kind}:{tmp_path}"], "a folder, not a file")

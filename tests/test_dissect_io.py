"""Tests of the atomic, deterministic file writers (builder/io.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from builder import io


def test_writers_are_atomic_and_deterministic(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.ones(4, np.float16)}
    first = io.write_npz(tmp_path / "x.npz", **arrays).read_bytes()
    second = io.write_npz(tmp_path / "y.npz", **arrays).read_bytes()
    assert first == second
    loaded = np.load(tmp_path / "x.npz")
    assert np.array_equal(loaded["a"], arrays["a"]) and loaded["b"].dtype == np.float16
    io.write_npy(tmp_path / "z.npy", arrays["a"])
    assert np.array_equal(np.load(tmp_path / "z.npy"), arrays["a"])
    io.write_csv(tmp_path / "t.csv", ["x", "y"], [[1, "a,b"], [2, ""]])
    assert (tmp_path / "t.csv").read_text() == 'x,y\n1,"a,b"\n2,\n'
    io.write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"b": 1, "a": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.json", "t.csv", "x.npz", "y.npz", "z.npy"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_remove_partial_takes_only_the_unfinished_writes_of_that_file(tmp_path):
    # what a kill -9 in the middle of atomic_open leaves: the temporary file, never renamed
    for name in (".iou.npy.k2j3a.tmp", ".iou.npy.zz.tmp", ".units.csv.q1.tmp", "iou.npy",
                 ".iou.npy.k2j3a"):
        (tmp_path / name).write_bytes(b"x")
    io.remove_partial(tmp_path / "iou.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".iou.npy.k2j3a", ".units.csv.q1.tmp", "iou.npy"]

"""Tests of the ``unitdissect dissect`` command."""

from __future__ import annotations

import json

import pytest

from builder.cli import main
from builder.cli.dissect import parse_size, parse_triple
from builder.errors import ConfigError

MODEL = """
from torch import nn

def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1))
"""


def test_sizes_and_triples():
    assert parse_size("1GiB", "--x") == 2**30 and parse_size("512MB", "--x") == 512 * 10**6
    assert parse_size("4096", "--x") == 4096 and parse_size("1.5 kib", "--x") == 1536
    assert parse_triple("0.5,0.4,0.3", "--mean") == (0.5, 0.4, 0.3)
    assert parse_triple(None, "--mean") is None
    for bad in ("lots", "1XB", "-1"):
        with pytest.raises(ConfigError, match="--cache-memory"):
            parse_size(bad, "--cache-memory")
    with pytest.raises(ConfigError, match="--std"):
        parse_triple("1,2", "--std")


@pytest.mark.parametrize("option,flag", [
    (["--quantile", "2"], "--quantile"), (["--batch-size", "0"], "--batch-size"),
    (["--mean", "a,b,c"], "--mean"), (["--split", "test"], "--split"),
    (["--layers", " , "], "--layers"), (["--quantile-memory", "huge"], "--quantile-memory")])
def test_bad_options_give_one_line_errors(capsys, option, flag):
    argv = ["dissect", "--model", "m.py:make", "--layers", "0", "--dataset", "toyworld",
            "--out", "run"]
    assert main(argv + option) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


def test_dissect_command_end_to_end(tmp_path, capsys):
    (tmp_path / "tiny_model.py").write_text(MODEL)
    argv = ["dissect", "--model", f"{tmp_path / 'tiny_model.py'}:make", "--layers", "0,3",
            "--dataset", "toyworld:n=12,size=32", "--out", str(tmp_path / "run"),
            "--device", "cpu", "--quantile", "0.02", "--topk", "3", "--batch-size", "5",
            "--no-category-aware"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "0: " in out and "3: " in out and "results in" in out
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["options"]["category_aware"] is False
    assert manifest["options"]["quantile"] == 0.02 and manifest["options"]["topk"] == 3
    assert manifest["dataset"]["spec"] == "toyworld:n=12,size=32"
    assert manifest["command"][:2] == ["unitdissect", "dissect"]
    assert "--no-category-aware" in manifest["command"]
    for layer in ("0", "3"):
        assert (run / "layers" / layer / "units.csv").is_file()
    before = (run / "layers" / "3" / "iou.npy").read_bytes()
    assert main(argv) == 0  # finished layers are skipped; nothing changes
    assert (run / "layers" / "3" / "iou.npy").read_bytes() == before


@pytest.mark.parametrize("kill_after", [1, 10, 30])
def test_killed_with_sigkill_resumes_to_identical_files(tmp_path, kill_after):
    """A real ``kill -9`` at some checkpoint, then the same command again: the run resumes
    (its activations kept on disk are read back) and writes the files an uninterrupted run
    writes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "tiny_model.py").write_text(MODEL)
    spec = "toyworld:n=60,size=48"
    assert main(["dataset", "build", spec]) == 0  # built once, shared through ./data

    def argv(out: str) -> list[str]:
        return ["dissect", "--model", f"{tmp_path / 'tiny_model.py'}:make", "--layers", "0,3",
                "--dataset", spec, "--out", str(tmp_path / out), "--device", "cpu",
                "--batch-size", "2", "--checkpoint-every", "1", "--cache-memory", "0"]

    assert main(argv("whole")) == 0
    command = [sys.executable, "-m", "builder"] + argv("killed")
    checkpoints = tmp_path / "killed" / "checkpoints"
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ,
                                                               "OMP_NUM_THREADS": "1"})
    try:  # kill it once it has written ``kill_after`` checkpoints (counted by their files)
        seen: set[float] = set()
        while process.poll() is None and len(seen) < kill_after:
            for path in checkpoints.glob("*.pt"):
                try:
                    seen.add(path.stat().st_mtime_ns)
                except FileNotFoundError:
                    pass
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert main(argv("killed")) == 0
    for layer in ("0", "3"):
        for name in ("units.csv", "iou.npy", "topk.npz", "histogram.npz"):
            assert (tmp_path / "killed" / "layers" / layer / name).read_bytes() == \
                (tmp_path / "whole" / "layers" / layer / name).read_bytes(), (layer, name)
    assert not checkpoints.exists()

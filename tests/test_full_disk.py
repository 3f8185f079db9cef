"""A full disk or a folder that may not be written, in every stage of a build: one line naming
the file and what to do, exit 2, and a rerun (space freed) that resumes to the files of a build
that never failed."""

from __future__ import annotations

import builtins
import errno
import io
import os
import re
import stat
from pathlib import Path

import pytest

from builder.cli import main
from builder.io import write_json
from builder.workspace.pipeline import STATE_FILE

from fixtures_workspace import WORKSPACE, reference, results  # noqa: F401 - a fixture

#: The stage a failing write stops, and a file that stage writes (matched on its name).
STAGES = [("dataset", "probe.json"), ("dissect:classifier", "iou.npy"),
          ("ablate:classifier:features.conv5_3", "curves.csv"), ("gan:gen", "ablation.csv"),
          ("render", "index.html")]

class _Refused:
    """A file object whose writes fail as a full disk's do: ENOSPC, no file name."""

    def __init__(self, f, error: OSError) -> None:
        self._f, self._error = f, error

    def write(self, data) -> int:
        raise self._error

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def __iter__(self):
        return iter(self._f)


def _name_of(file) -> str:
    if isinstance(file, int):  # os.fdopen of mkstemp's descriptor: builder.io's writers
        return os.readlink(f"/proc/self/fd/{file}")
    return os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""


def fail_writes(monkeypatch, name: str, error: OSError) -> None:
    """Make every write to a file whose name contains ``name`` fail with ``error``."""
    real = io.open

    def open_(file, mode="r", *args, **kwargs):
        f = real(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+") and name in os.path.basename(_name_of(file)):
            return _Refused(f, error)
        return f

    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(builtins, "open", open_)


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("unitdissect: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name a file")
def test_a_full_disk_in_each_stage_is_one_line_and_the_rerun_resumes(
        tmp_path, monkeypatch, capsys, reference):
    (tmp_path / "unitdissect.toml").write_text(WORKSPACE)
    done: list[str] = []
    for stage, file in STAGES:
        with monkeypatch.context() as m:
            fail_writes(m, file, OSError(errno.ENOSPC, "No space left on device"))
            assert main(["build"]) == 2, stage
        line = _one_line(capsys.readouterr().err)
        assert re.search(rf"no space left on the device writing \S*{re.escape(file)}", line), \
            (stage, line)
        state = STATE_FILE.read_text() if STATE_FILE.exists() else "{}"
        assert all(f'"{name}"' in state for name in done), (stage, state)  # finished: kept
        assert f'"{stage}"' not in state
        assert not list(tmp_path.rglob("*.tmp")), "a failed write left its temporary file"
        done.append(stage)
    assert main(["build"]) == 0  # space freed: everything finished is reused
    out = capsys.readouterr().err
    assert "[dataset] up to date" in out and "[dissect:classifier] up to date" in out
    assert results(tmp_path) == reference


def test_a_full_disk_when_archiving_names_the_archive(tmp_path, monkeypatch, capsys,
                                                       reference):
    (tmp_path / "unitdissect.toml").write_text(WORKSPACE)
    assert main(["build"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:
        fail_writes(m, "shared.tar.gz", OSError(errno.EDQUOT, "Disk quota exceeded"))
        assert main(["archive", "--out", "shared.tar.gz"]) == 2
    err = capsys.readouterr().err
    assert "disk quota exceeded writing" in _one_line(err) and "shared.tar.gz" in err
    assert "hint: free some space" in err
    assert not (tmp_path / "shared.tar.gz").exists() and not list(tmp_path.glob(".*.tmp"))
    assert main(["archive", "--out", "shared.tar.gz"]) == 0


def test_a_folder_that_may_not_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    # injected: the tests may run as root, whom chmod does not stop
    (tmp_path / "unitdissect.toml").write_text(WORKSPACE)
    with monkeypatch.context() as m:
        fail_writes(m, "probe.json", PermissionError(errno.EACCES, "Permission denied"))
        assert main(["build"]) == 2
    err = capsys.readouterr().err
    assert "permission denied: " in _one_line(err) and "probe.json" in err
    assert "choose a folder you can write" in err


def test_storage_errors_outside_the_writers_are_one_line_too(tmp_path, monkeypatch, capsys):
    """A write that is not ``builder.io``'s (a library's, say) reaches the CLI as a plain
    OSError; the CLI still prints one line."""
    import builder.cli.verify as verify_cli

    def full(args):
        raise RuntimeError("a library's wrapper") from OSError(
            errno.ENOSPC, "No space left on device", str(tmp_path / "big.arrow"))

    monkeypatch.setattr(verify_cli, "run", full)
    code = main(["verify", "x.tar.gz"])
    err = capsys.readouterr().err
    assert code == 2 and "big.arrow" in _one_line(err)


def test_written_files_have_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        import importlib

        import builder.io

        importlib.reload(builder.io)
        path = builder.io.write_json(tmp_path / "a.json", {})
    finally:
        os.umask(old)
        importlib.reload(builder.io)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(write_json(tmp_path / "b.json", {}).stat().st_mode) == 0o666 & ~old

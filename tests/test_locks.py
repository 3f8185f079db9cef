"""One writer per workspace, run directory and site: a second command waits (or refuses at
once), a killed one's lock is taken over; Ctrl-C in any stage is one line, exit 130, and the
rerun resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from builder.cli import main
from builder.lock import LOCK_NAME, BusyError, hold_folder

from fixtures_workspace import WORKSPACE, reference, results  # noqa: F401 - a fixture

#: A process that takes a folder's lock, says so, and keeps it until killed.
HOLDER = """\
import sys, time
from builder.lock import hold_folder
with hold_folder(sys.argv[1], wait=False):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_held_folder_is_refused_naming_its_owner_and_taken_over_once_it_dies(tmp_path):
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(BusyError, match=rf"is being written by pid {holder.pid} "):
            with hold_folder(tmp_path / "run", wait=False):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup: its lock file stays behind
        holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).exists()
    with hold_folder(tmp_path / "run", wait=False):  # the kernel released the dead one's lock
        with hold_folder(tmp_path / "run", wait=False):  # re-entered by the same process
            pass
        assert (tmp_path / "run" / LOCK_NAME).exists()
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # the last holder leaves no trace


def test_a_waiting_command_says_so_and_goes_on_when_the_folder_is_free(tmp_path):
    holder = _holder(tmp_path / "ws")
    said: list[str] = []
    threading.Timer(1.0, holder.kill).start()
    started = time.monotonic()
    with hold_folder(tmp_path / "ws", "the workspace", log=said.append):
        assert time.monotonic() - started >= 0.9
    holder.wait()
    assert len(said) == 1 and said[0].startswith(f"waiting for pid {holder.pid} (")
    assert "to finish writing the workspace" in said[0]


def test_dissect_into_a_run_being_written_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNITDISSECT_NO_WAIT", "1")
    holder = _holder(tmp_path / "run")
    try:
        code = main(["dissect", "--model", "demo:classifier", "--layers", "features.conv5_3",
                     "--dataset", "toyworld:n=8,size=64", "--out", "run", "--device", "cpu"])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"the run directory run is being written by pid {holder.pid}" in err
    assert not (tmp_path / "run" / "layers").exists()


def _build(workspace: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "builder", "build"], cwd=workspace,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_builds_of_one_workspace_take_turns(tmp_path, reference):  # noqa: F811
    (tmp_path / "unitdissect.toml").write_text(WORKSPACE)
    first, second = _build(tmp_path), _build(tmp_path)
    errs = [p.communicate(timeout=600)[1] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], errs
    waited = [e for e in errs if "waiting for pid" in e]
    assert len(waited) == 1, errs
    assert "to finish writing the workspace" in waited[0]
    assert "Traceback" not in "".join(errs)
    assert results(tmp_path) == reference


def _interrupt(workspace: Path, stage: str) -> tuple[int, str]:
    """Start a build, Ctrl-C it (the whole process group, as a terminal does) soon after
    ``stage`` starts; return its exit code and stderr."""
    process = _build(workspace)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr))
    reader.start()
    while process.poll() is None and not any(f"[{stage}] ..." in line for line in lines):
        time.sleep(0.01)
    time.sleep(0.2)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=300)
    reader.join()
    return process.returncode, "".join(lines)


def test_ctrl_c_in_each_stage_is_one_line_and_the_rerun_resumes(tmp_path, reference):  # noqa: F811
    (tmp_path / "unitdissect.toml").write_text(WORKSPACE)
    stages = ["dataset", "dissect:classifier", "ablate:classifier:features.conv5_3",
              "gan:gen", "render"]
    interrupted = 0
    for stage in stages:
        code, err = _interrupt(tmp_path, stage)
        assert "Traceback" not in err and "Process " not in err, (stage, err)
        if code == 0:  # the stage and the rest ended before the signal came: nothing to test
            break
        assert code == 130, (stage, err)
        assert "unitdissect: error: interrupted; rerun the same command to resume" in err
        interrupted += 1
    assert interrupted >= 3  # most stages last long enough to be interrupted
    assert main(["build"]) == 0
    assert results(tmp_path) == reference
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(LOCK_NAME))

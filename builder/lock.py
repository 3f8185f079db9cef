"""One writer per folder: a lock file holding its owner's pid, taken with ``flock``.

A workspace, a run directory, a site or a dataset being built is written by one command at a
time. The kernel releases an ``flock`` when its process dies, so the lock of a killed command
(``kill -9``, a crash, a reboot) is taken over by the next one with no stale-lock cleanup; the
pid and command written into the file only serve the message of whoever has to wait.

Locks are re-entrant inside one process (the build holds the workspace and its stages hold
their run directories), and the file is removed when its last holder lets go, so finished
folders carry no trace of it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import ConfigError, UnitDissectError

try:
    import fcntl
except ImportError:  # Windows: no flock; folders are then not locked
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "BusyError", "hold", "hold_folder", "lock_wait_default"]

#: The lock file's name inside a locked folder (render and archive leave it alone).
LOCK_NAME = ".unitdissect.lock"
#: Seconds between two tries while waiting for another process.
POLL_SECONDS = 0.2

_held: dict[Path, tuple[int, int]] = {}  # lock file -> (fd, holders) of this process
_guard = threading.Lock()


class BusyError(UnitDissectError):
    """Another process is writing the folder (and the caller asked not to wait)."""


def lock_wait_default() -> bool:
    """Whether commands wait for a busy folder: yes, unless ``UNITDISSECT_NO_WAIT=1``."""
    return os.environ.get("UNITDISSECT_NO_WAIT", "") in ("", "0")


def _owner(path: Path) -> str:
    """Who holds the lock, in words, from what the holder wrote into the file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process"
    return f"pid {info['pid']} ({info.get('command', '?')}, since {info.get('since', '?')})"


def _try_lock(path: Path) -> int | None:
    """The fd of ``path`` locked by this process, or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # the previous holder may have removed the file between our open and our lock:
        # then we hold a lock nobody else sees, and must lock the file now at the path
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _record(fd: int) -> None:
    since = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    command = " ".join(["unitdissect", *sys.argv[1:3]]) if sys.argv else "python"
    data = json.dumps({"pid": os.getpid(), "command": command, "since": since}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data + b"\n", 0)


@contextlib.contextmanager
def hold(path: str | Path, what: str, wait: bool | None = None,
         log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock file ``path`` while the block runs; ``what`` names the folder in messages.

    When another process holds it: wait (saying so once through ``log``, by default on
    stderr) or, with ``wait=False``, raise ``BusyError`` naming that process.
    """
    if fcntl is None:
        yield
        return
    path = Path(path).absolute()
    wait = lock_wait_default() if wait is None else wait
    with _guard:
        if path in _held:  # re-entered by this process
            fd, count = _held[path]
            _held[path] = (fd, count + 1)
            fd = -1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = _try_lock(path)
    if fd is None:
        if not wait:
            raise BusyError(f"{what} is being written by {_owner(path)}",
                            hint="wait for it to finish, or stop it; a killed command's lock "
                                 "is taken over at once")
        say = log or (lambda s: print(s, file=sys.stderr, flush=True))
        say(f"waiting for {_owner(path)} to finish writing {what} (Ctrl-C to stop) ...")
        while fd is None:
            time.sleep(POLL_SECONDS)
            with _guard:
                fd = _try_lock(path)
    if fd >= 0:
        with _guard:
            _record(fd)
            _held[path] = (fd, 1)
    try:
        yield
    finally:
        with _guard:
            fd, count = _held[path]
            if count > 1:
                _held[path] = (fd, count - 1)
            else:
                del _held[path]
                # unlink while still locked: a waiter then finds the path gone and retries
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                os.close(fd)


def hold_folder(folder: str | Path, what: str | None = None, wait: bool | None = None,
                log: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager:
    """``hold`` the lock file inside ``folder`` (created if missing)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: is a file, not a folder", hint="choose another folder")
    return hold(folder / LOCK_NAME, what or str(folder), wait=wait, log=log)

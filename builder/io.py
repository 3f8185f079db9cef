"""Atomic file writers: a temporary file in the target's folder, then ``os.replace``.

A process killed at any moment leaves either the old file or the new one, never a half-written
one. Every writer here is deterministic (same content → same bytes), so reruns can be compared
byte for byte; ``.npz`` archives carry a fixed timestamp for that reason.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .errors import storage_cause, storage_error

__all__ = ["atomic_open", "remove_partial", "reporting", "write_bytes", "write_csv", "write_json",
           "write_npy", "write_npz", "write_text", "write_torch"]

#: The timestamp of every member of the ``.npz`` files written here (the zip format's epoch).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The mode of written files: what ``open`` would give them (``mkstemp`` makes them 0600).
_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, size_hint: int | None = None,
                **kwargs: Any) -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success it replaces ``path``, else vanishes.

    A full disk or a folder that may not be written raises a ``StorageError`` naming ``path``
    (``size_hint``: the bytes to write, for its message)."""
    path = Path(path)
    tmp = None
    with reporting(path, size_hint):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            if hasattr(os, "fchmod"):
                os.fchmod(fd, _FILE_MODE)
            with os.fdopen(fd, mode, **kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name points to it
            os.replace(tmp, path)
        except BaseException:
            if tmp is not None:  # a failed write frees what it took at once
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise


@contextlib.contextmanager
def reporting(path: str | Path, size_hint: int | None = None) -> Iterator[None]:
    """Turn a full disk or a refused write inside the block into a one-line ``StorageError``
    naming ``path`` (when the error names no file of its own)."""
    try:
        yield
    except OSError as e:
        cause = storage_cause(e)
        if cause is None:
            raise
        raise storage_error(cause, path, needed=size_hint) from e


def remove_partial(path: str | Path) -> None:
    """Remove what ``atomic_open`` left of writes to ``path`` that a kill cut short (a killed
    process never reaches its cleanup)."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb", size_hint=len(data)) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (newlines as given)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (keys in the given order, a final newline) atomically."""
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file (``\\n`` line ends, minimal quoting) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    """Write one array as ``.npy`` atomically (no pickles)."""
    return write_bytes(path, _npy_bytes(np.asarray(array)))


def write_npz(path: str | Path, compress: bool = True, **arrays: np.ndarray) -> Path:
    """Write arrays as an ``.npz`` archive atomically; byte-identical for identical arrays."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy_bytes(np.asarray(array)))
    return write_bytes(path, buf.getvalue())


def write_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` ``obj`` atomically (read it back with ``torch.load(weights_only=True)``)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)

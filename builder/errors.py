"""The exceptions unitdissect raises; only the CLI turns them into one-line messages."""

from __future__ import annotations

import errno
import os


class UnitDissectError(Exception):
    """Base class of every error caused by a user's input or environment."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(UnitDissectError, ValueError):
    """An option, spec or config value is invalid."""


class SpecError(ConfigError):
    """A model, dataset or segmenter spec cannot be parsed or resolved."""


class DatasetError(UnitDissectError, ValueError):
    """A dataset directory or file is missing, malformed or inconsistent."""


class BadSampleError(DatasetError):
    """One sample (image or mask) is unreadable or inconsistent; builders may skip it."""


class LayerError(UnitDissectError, KeyError):
    """A layer name does not exist in the model."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class WeightsError(UnitDissectError, ValueError):
    """A weights file is unreadable, unsafe, or does not fit the model."""


class ArchiveError(UnitDissectError, ValueError):
    """An archive is missing, corrupt, unsafe or fails verification."""


class StorageError(UnitDissectError, OSError):
    """A file or folder cannot be written: the disk is full, a quota is reached, or the
    folder is read-only or not ours. An ``OSError`` still, for code that handles those."""

    def __str__(self) -> str:  # OSError would format errno and file name its own way
        return str(self.args[0])


#: What each errno of a failed write means to a user, and what to do about it.
_STORAGE_ERRNOS = {
    errno.ENOSPC: ("no space left on the device", "space"),
    errno.EDQUOT: ("disk quota exceeded", "space"),
    errno.EFBIG: ("file too large for the file system", "space"),
    errno.EROFS: ("read-only file system", "permission"),
    errno.EACCES: ("permission denied", "permission"),
    errno.EPERM: ("operation not permitted", "permission"),
}


def storage_cause(exc: BaseException) -> OSError | None:
    """The full-disk or permission ``OSError`` behind ``exc`` (itself, its cause or its
    context), or None when it is something else."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, OSError) and (exc.errno in _STORAGE_ERRNOS or
                                         "No space left on device" in str(exc)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _megabytes(n: float) -> str:
    return f"{max(n, 0) / 2**20:,.0f} MB" if n >= 2**20 else f"{max(n, 0) / 2**10:,.0f} KB"


def storage_error(exc: OSError, path: str | os.PathLike | None = None,
                  needed: int | None = None) -> StorageError:
    """The one-line ``StorageError`` for a failed write of ``path`` (else the error's own
    file name): what went wrong, how much is free, what to do."""
    if isinstance(exc, StorageError):
        return exc
    target = exc.filename or path
    code = exc.errno if exc.errno in _STORAGE_ERRNOS else errno.ENOSPC
    reason, kind = _STORAGE_ERRNOS[code]
    where = f" writing {os.fspath(target)}" if target else ""
    resume = "then rerun the same command: what finished is kept and the run resumes"
    if kind == "space":
        free = _free_bytes(target)
        status = f" ({_megabytes(free)} free)" if free is not None else ""
        more = f"at least {_megabytes(needed)} more " if needed else "some space "
        hint = f"free {more}on that disk or choose another output folder (--out), {resume}"
        message = f"{reason}{where}{status}"
    else:
        hint = f"choose a folder you can write (--out) or change its permissions, {resume}"
        message = f"{reason}: {os.fspath(target)}" if target else reason
    error = StorageError(message, hint=hint)
    error.errno, error.filename = code, os.fspath(target) if target else None
    return error


def _free_bytes(target: str | os.PathLike | None) -> int | None:
    """Free bytes on the disk of ``target`` (its nearest existing folder), or None."""
    import shutil

    if not target:
        return None
    folder = os.path.abspath(os.fspath(target))
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None

"""Paths as published files may name them: never an absolute path of the machine that made them.

A manifest or a page names a file relative to the working folder when it lies inside it, else
by its file name (its content hash, recorded beside it, says which file it was). Specs that
carry a path (``broden:/data/broden1_224``, ``/home/me/net.py:build``) keep their form.
``output_folder`` and ``output_file`` refuse an output that is not what a command may write.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath
from typing import Any

from .errors import ConfigError

__all__ = ["output_file", "output_folder", "portable_path", "portable_spec", "portable_text",
           "portable_tree", "run_relative"]

# an absolute POSIX path inside free text: a slash after a start, a space, '=', ':' or a quote
_ABSOLUTE = re.compile(r"(?:(?<=^)|(?<=[\s=:'\"(]))(/(?!/)[^\s'\"<>()]+)")
_SPEC_PREFIXES = ("broden:", "images:", "progan:", "stylegan2:", "samples:")


def portable_path(path: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """``path`` relative to ``base`` (default: the working folder) if inside it, else its name."""
    p = PurePath(path)
    if not p.is_absolute():
        return p.as_posix()
    root = Path(base if base is not None else os.getcwd()).resolve()
    try:
        return Path(p).resolve().relative_to(root).as_posix() or "."
    except (ValueError, OSError):
        return p.name or p.as_posix()


def portable_spec(spec: str, base: str | os.PathLike | None = None) -> str:
    """A model or dataset spec with its path (if any) made portable; the form is kept."""
    text = str(spec)
    for prefix in _SPEC_PREFIXES:
        if text.startswith(prefix):
            return prefix + portable_path(text[len(prefix):], base)
    head, arguments = _split_arguments(text)
    target, colon, attr = head.rpartition(":")
    if colon and target.endswith(".py"):
        return f"{portable_path(target, base)}:{attr}{arguments}"
    return portable_path(text, base) if PurePath(text).is_absolute() else text


def _split_arguments(text: str) -> tuple[str, str]:
    """A spec's head and its ``(k=v, ...)`` arguments (kept as written)."""
    from .errors import SpecError
    from .models.spec import split_arguments

    try:
        head, _ = split_arguments(text)
    except SpecError:
        return text, ""
    return head, text[len(head):]


def portable_text(text: str, base: str | os.PathLike | None = None) -> str:
    """Free text with every absolute path in it made portable."""
    return _ABSOLUTE.sub(lambda m: portable_path(m.group(1), base), str(text))


def portable_tree(value: Any, base: str | os.PathLike | None = None) -> Any:
    """A JSON-like value (a manifest) with every absolute path in its strings made portable."""
    if isinstance(value, dict):
        return {k: portable_tree(v, base) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_tree(v, base) for v in value]
    if isinstance(value, str):
        return portable_text(value, base)
    return value


def run_relative(path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """``path`` relative to a run directory (``../../data/x``): a locator with no machine
    prefix, valid wherever the run and its data move together."""
    return Path(os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())).as_posix()


def output_folder(path: str | os.PathLike, option: str = "--out",
                  dataset: bool = False) -> Path:
    """``path`` as a folder a command may write into: refused in one line when it is a file
    (``/dev/null`` included), lies inside one, or is a concept dataset (unless ``dataset``:
    the command writes datasets)."""
    folder = Path(path)
    hint = f"choose a folder for {option}"
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder}: is a file, not a folder", hint=hint)
    inside = next((p for p in folder.absolute().parents if p.exists() and not p.is_dir()), None)
    if inside is not None:
        raise ConfigError(f"{option} {folder}: {inside} is a file, not a folder", hint=hint)
    if not dataset and (folder / "probe.json").is_file():
        raise ConfigError(f"{option} {folder}: is a concept dataset; writing into it would "
                          "overwrite its files", hint=hint)
    return folder


def output_file(path: str | os.PathLike, option: str = "--out", example: str = "out") -> Path:
    """``path`` as a file a command may write: refused in one line when it is a folder or lies
    inside a file."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{option} {target}: is a folder; give the file's name",
                          hint=f"e.g. {option} {target / example}")
    inside = next((p for p in target.absolute().parents if p.exists() and not p.is_dir()), None)
    if inside is not None:
        raise ConfigError(f"{option} {target}: {inside} is a file, not a folder")
    return target

"""What a workspace config reaches: the paths it names and the specs that import Python.

``named_paths`` lists every path-valued key of a config (dataset sources, model files, weights,
class lists, checkpoints, segmenter folders, the site's folder, run and layer folder names),
``path_problems`` names those that are absolute or leave the workspace, and ``code_specs``
names the model and segmenter specs that would import Python. ``verify --rerun`` and
``build --confine`` refuse both before anything runs; ``archive`` carries the inputs that
``carried_inputs`` finds. See docs/workspace.md, "Threat model".
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator
from urllib.parse import parse_qsl

from ..errors import ConfigError, SpecError
from .config import WorkspaceConfig

__all__ = ["NamedPath", "named_paths", "has_control_characters", "problem", "path_problems",
           "code_specs", "imports_python", "model_label", "check_confined", "check_trusted",
           "carried_inputs", "archive_path", "working_directory"]

#: Options of ``hf:NAME?...`` dataset specs that name a local file or folder (``repo`` too:
#: ``datasets.load_dataset`` reads a local folder of that name when there is one).
HUB_PATH_OPTIONS = ("path", "data_files", "labels", "repo", "cache_dir")
#: Segmenter spec forms that load tensors and configs only, never Python.
_DATA_SEGMENTERS = ("demo:", "torchvision:", "hf:")


@dataclass(frozen=True)
class NamedPath:
    """One path a config names."""

    key: str  # the config key, e.g. "[[dissect]] weights" or "[dataset] sources[0]"
    value: str  # what the key says (a whole spec for spec-embedded paths)
    path: str  # the path in it
    role: str  # "input" (read), "output" (a folder written), "name" (one folder component)
    carried: bool = False  # an input an archive carries (model files, weights, class lists)
    entry: str = ""  # the [[section]] entry's name, when it has one
    folder: bool = False  # a folder of files (a segmenter's), not one file

    def label(self) -> str:
        """``KEY = VALUE`` with the entry's name, for messages."""
        where = f" (entry {self.entry!r})" if self.entry else ""
        return f"{self.key} = {self.value!r}{where}"


# -- what a config names ------------------------------------------------------------------------

def _model_paths(key: str, spec: str, entry: str, generator: bool = False) -> list[NamedPath]:
    """The file of a ``file.py:CALLABLE`` spec, or of a ``progan:`` / ``stylegan2:`` one."""
    kind, colon, target = spec.partition(":")
    if generator and colon and kind in ("progan", "stylegan2"):
        return [NamedPath(key, spec, target, "input", True, entry)] if target else []
    parsed = _parse_model(key, spec, entry)
    if parsed.source == "file":
        return [NamedPath(key, spec, parsed.target, "input", True, entry)]
    return []


def _parse_model(key: str, spec: str, entry: str):
    """The ModelSpec of ``spec`` (the parser the build uses); its errors name the key."""
    from ..models.spec import parse_spec

    try:
        return parse_spec(spec)
    except SpecError as e:
        where = f" (entry {entry!r})" if entry else ""
        raise ConfigError(f"{key}{where}: {e}", hint=e.hint) from None


def _source_paths(index: int, spec: str) -> list[NamedPath]:
    """The local paths of one dataset source spec (``broden:``, ``images:``, ``hf:...?path=``,
    or a bare folder); the toy world names none."""
    key = f"[dataset] sources[{index}]"
    kind, colon, rest = spec.strip().partition(":")
    if kind == "toyworld":
        return []
    if colon and kind in ("broden", "images"):
        folder = rest.partition("?")[0] if kind == "images" else rest  # images:DIR?max_pixels=N
        return [NamedPath(key, spec, folder, "input")] if folder else []
    if colon and kind == "hf":
        query = rest.partition("?")[2]
        return [NamedPath(key, spec, value, "input")
                for name, value in parse_qsl(query, keep_blank_values=True)
                if name in HUB_PATH_OPTIONS and value]
    # anything else is opened as a folder (a Broden directory) by the build
    return [NamedPath(key, spec, spec, "input")]


def _segmenter_paths(key: str, spec: str, entry: str) -> list[NamedPath]:
    """``hf:PATH``: a local model folder when there is one (else a name in the hub cache)."""
    kind, colon, rest = spec.partition(":")
    if colon and kind == "hf" and rest:
        return [NamedPath(key, spec, rest, "input", True, entry, folder=True)]
    return []


def named_paths(config: WorkspaceConfig) -> list[NamedPath]:
    """Every path the config names, in the config's order; a model spec that does not parse
    (the build would refuse it too) raises a ConfigError naming its key."""
    found: list[NamedPath] = []
    for i, spec in enumerate(config.dataset.sources):
        found += _source_paths(i, spec)
    if config.dataset.segmenter:  # labels images: sources; hf:PATH is a local folder
        found += _segmenter_paths("[dataset] segmenter", config.dataset.segmenter, "")
    for d in config.dissect:
        found.append(NamedPath("[[dissect]] name", d.name, d.name, "name", entry=d.name))
        found += _model_paths("[[dissect]] model", d.model, d.name)
        if d.weights:
            found.append(NamedPath("[[dissect]] weights", d.weights, d.weights, "input", True,
                                   d.name))
        if d.dataset:
            found.append(NamedPath("[[dissect]] dataset", d.dataset, d.dataset, "input",
                                   entry=d.name))
        found += [NamedPath(f"[[dissect]] layers[{j}]", layer, layer, "name", entry=d.name)
                  for j, layer in enumerate(d.layers)]
    for a in config.ablate:
        entry = f"{a.run}/{a.layer}"
        found.append(NamedPath("[[ablate]] layer", a.layer, a.layer, "name", entry=entry))
        if a.classes:
            found.append(NamedPath("[[ablate]] classes", a.classes, a.classes, "input", True,
                                   entry))
    for g in config.gan:
        found.append(NamedPath("[[gan]] name", g.name, g.name, "name", entry=g.name))
        found += _model_paths("[[gan]] model", g.model, g.name, generator=True)
        if g.weights:
            found.append(NamedPath("[[gan]] weights", g.weights, g.weights, "input", True,
                                   g.name))
        found += _segmenter_paths("[[gan]] segmenter", g.segmenter, g.name)
        found += [NamedPath(f"[[gan]] layers[{j}]", layer, layer, "name", entry=g.name)
                  for j, layer in enumerate(g.layers)]
    found.append(NamedPath("[site] out", config.site.out, config.site.out, "output"))
    return found


# -- confinement --------------------------------------------------------------------------------

def has_control_characters(text: str) -> bool:
    """Whether ``text`` has control characters (C0, DEL, C1) or undecodable bytes (lone
    surrogates), which a terminal would act on or a file system would refuse."""
    return any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 or 0xd800 <= ord(c) < 0xe000
               for c in text)


def _lexical_problem(item: NamedPath) -> str | None:
    """Why a path leaves the workspace as written (no file is looked at), or None."""
    path = item.path
    if has_control_characters(path):
        return "control characters in the path"
    if item.role == "name":
        if not path or path in (".", "..") or "/" in path or "\\" in path:
            return "not a plain folder name"
        return None
    if path.startswith("~"):
        return "a path in the home folder ('~')"
    if path.startswith(("/", "\\")) or PureWindowsPath(path).drive:
        return "an absolute path"
    norm = posixpath.normpath(path.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        return "a path that leaves the workspace ('..')"
    if item.role == "output" and norm == ".":
        return "the workspace itself"
    return None


def _resolved_problem(item: NamedPath, root: Path) -> str | None:
    """Why a path that stays inside as written still resolves outside (a symbolic link)."""
    if item.role == "name":
        return None
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, item.path))
    if os.path.commonpath([real_root, target]) != real_root:
        return "resolves outside the workspace (through a symbolic link)"
    return None


def problem(item: NamedPath, root: str | Path | None = None) -> str | None:
    """Why ``item`` is absolute or leaves the workspace, or None; with ``root`` (the
    workspace), also when it leaves through a symbolic link."""
    why = _lexical_problem(item)
    if why is None and root is not None:
        why = _resolved_problem(item, Path(root))
    return why


def path_problems(config: WorkspaceConfig, root: str | Path | None = None) -> list[str]:
    """One ``KEY = VALUE: why`` line for each path of the config that ``problem`` refuses."""
    return [f"{item.label()}: {why}" for item in named_paths(config)
            if (why := problem(item, root)) is not None]


def code_specs(config: WorkspaceConfig) -> list[str]:
    """``KEY = SPEC`` for each model or segmenter spec that would import Python
    (``file.py:CALLABLE``, ``module:CALLABLE``, a segmenter of any other form than ``demo:``,
    ``torchvision:`` and ``hf:``); those, and the checkpoint adapters (``progan:``,
    ``stylegan2:``), load data with unitdissect's own code."""
    found = [model_label(key, spec, entry) for key, spec, entry, generator in (
                 [("[[dissect]] model", d.model, d.name, False) for d in config.dissect]
                 + [("[[gan]] model", g.model, g.name, True) for g in config.gan])
             if imports_python(key, spec, entry, generator)]
    for g in config.gan:
        if not g.segmenter.startswith(_DATA_SEGMENTERS):
            found.append(model_label("[[gan]] segmenter", g.segmenter, g.name))
    return found


def imports_python(key: str, spec: str, entry: str, generator: bool = False) -> bool:
    """Whether loading the model ``spec`` (of config ``key``) imports Python; the checkpoint
    adapters of generators (``progan:``, ``stylegan2:``) read tensors only."""
    kind, colon, _ = spec.partition(":")
    if generator and colon and kind in ("progan", "stylegan2"):
        return False
    return _parse_model(key, spec, entry).source in ("file", "module")


def model_label(key: str, spec: str, entry: str) -> str:
    """``KEY = 'SPEC' (entry 'NAME')``, as messages name a model spec."""
    return NamedPath(key, spec, "", "input", entry=entry).label()


def check_confined(config: WorkspaceConfig, root: str | Path | None, what: str) -> None:
    """Raise one one-line ConfigError naming every path of the config that leaves ``root``."""
    problems = path_problems(config, root)
    if problems:
        raise ConfigError(f"{what}: {'; '.join(problems)}",
                          hint="every path of the config must be relative and stay inside "
                               "the workspace")


def check_trusted(config: WorkspaceConfig, trust: bool, what: str) -> None:
    """Raise a one-line ConfigError naming the specs that would run code, unless ``trust``."""
    specs = code_specs(config)
    if specs and not trust:
        raise ConfigError(f"{what}: the config would run Python code: {'; '.join(specs)}",
                          hint="read that code; pass --trust to run it")


# -- what an archive carries --------------------------------------------------------------------

def carried_inputs(config: WorkspaceConfig) -> list[NamedPath]:
    """The inputs an archive carries: model ``.py`` files, weights, checkpoints, class lists,
    local segmenter folders (only those ``problem`` accepts can be carried)."""
    return [p for p in named_paths(config) if p.carried]


def archive_path(item: NamedPath) -> str:
    """The input's path in an archive: POSIX, normalised, relative to the top folder."""
    return str(PurePosixPath(posixpath.normpath(item.path.replace("\\", "/"))))


@contextlib.contextmanager
def working_directory(folder: str | Path) -> Iterator[Path]:
    """Run the block in ``folder``, so that what resolves from the current folder (``hf:``
    options, hub names that are local folders) resolves inside it; restored afterwards."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield Path(folder)
    finally:
        os.chdir(before)

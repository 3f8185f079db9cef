"""Probe datasets: sources, the concept dataset format, building and reading.

A *source* (``sources/``) yields images with labels in its own vocabulary; ``build`` merges
sources into one *concept dataset* on disk (docs/dataset-format.md); ``probe`` reads it back
as tensors for dissection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import SpecError
from .build import BuildOptions, BuildResult, build_dataset
from .probe import Concept, ProbeBatch, ProbeSet

__all__ = ["BuildOptions", "BuildResult", "Concept", "ProbeBatch", "ProbeSet", "build_dataset",
           "default_build_options", "open_sources", "resolve_probe_set"]

#: Where datasets built from a spec are cached, relative to the working folder.
DEFAULT_CACHE = Path("data") / "datasets"


def _parse_options(text: str, spec: str) -> dict:
    options = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SpecError(f"dataset spec {spec!r}: expected key=value options after ':', "
                            f"got {item!r}", hint="e.g. toyworld:n=2000,seed=1")
        options[key.strip()] = _number(value.strip())
    return options


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def open_sources(specs: Sequence[str], **options) -> list:
    """Open each source spec (``toyworld[:n=..,seed=..,size=..]``, ``broden:PATH``, ``hf:NAME``,
    ``images:PATH``) as a Source."""
    from .sources import resolve_source

    opened = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        try:
            if name == "toyworld":
                opened.append(resolve_source("toyworld",
                                             **{**options, **_parse_options(rest, spec)}))
            else:
                opened.append(resolve_source(spec, **options))
        except (TypeError, ValueError) as e:
            if isinstance(e, SpecError):
                raise
            raise SpecError(f"dataset spec {spec!r}: {e}") from None
    return opened


def default_build_options(sources: Sequence, **overrides) -> BuildOptions:
    """Build options with sizes natural to the sources: the toy world's own size, else 224/112."""
    sizes = {getattr(s, "size", None) for s in sources}
    if all(s.name == "toyworld" for s in sources) and len(sizes) == 1:
        size = int(sizes.pop())
        defaults = {"image_size": size, "mask_size": size, "image_format": "png"}
    else:
        defaults = {"image_size": 224, "mask_size": 112, "image_format": "jpeg"}
    given = {k: v for k, v in overrides.items() if v is not None}
    if "image_size" in given and "mask_size" not in given:
        given["mask_size"] = min(defaults["mask_size"], given["image_size"])
    return BuildOptions(**{**defaults, **given})


def resolve_probe_set(spec: str | Path, cache_dir: str | Path = DEFAULT_CACHE,
                      progress: bool = True) -> ProbeSet:
    """Open a ``--dataset`` spec: a concept dataset folder, or a source spec built and cached."""
    path = Path(spec)
    if path.is_dir() and (path / "probe.json").is_file():
        return ProbeSet(path)
    sources = open_sources([str(spec)])
    result = build_dataset(sources, None, default_build_options(sources), progress=progress,
                           cache_dir=cache_dir)
    return ProbeSet(result.path)

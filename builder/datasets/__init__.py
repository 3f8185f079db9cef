"""Probe datasets: sources, the concept dataset format, building and reading.

A *source* (``sources/``) yields images with labels in its own vocabulary; ``build`` merges
sources into one *concept dataset* on disk (docs/dataset-format.md); ``probe`` reads it back
as tensors for dissection.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from ..errors import SpecError
from .build import BuildOptions, BuildResult, build_dataset
from .probe import Concept, ProbeBatch, ProbeSet

__all__ = ["BuildOptions", "BuildResult", "Concept", "ProbeBatch", "ProbeSet", "build_dataset",
           "default_build_options", "open_sources", "report_skipped", "resolve_probe_set"]

log = logging.getLogger(__name__)

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
    """Build options that keep the sources as they ship (docs/sources.md, "What a build keeps").

    Sizes: the size every source ships at (a Broden release's index.csv, the toy world's
    ``size``), else 224/112; sources of different sizes are normalised to 224/112, with a
    warning. Images: the source's own bytes where no resize is needed. Concepts: all of a
    curated release (Broden), else those in at least 10 images, as Broden was made.
    """
    from .build import native_size

    natives = {native_size(s) for s in sources}
    defaults: dict = {"image_format": "original",
                      "min_frequency": 0 if all(getattr(s, "curated", False) for s in sources)
                      else 10}
    if len(natives) == 1 and None not in natives:
        defaults["image_size"], defaults["mask_size"] = natives.pop()
    else:
        defaults["image_size"], defaults["mask_size"] = 224, 112
    given = {k: v for k, v in overrides.items() if v is not None}
    if "image_size" in given and "mask_size" not in given:
        given["mask_size"] = min(defaults["mask_size"], given["image_size"])
    options = BuildOptions(**{**defaults, **given})
    built = (options.image_size, options.mask_size)
    # a source of one size that is resized says so (sources of varying sizes always are)
    changed = [f"{s.name} ({native_size(s)[0]}/{native_size(s)[1]} px)" for s in sources
               if native_size(s) not in (None, built)]
    if changed:
        why = ("as asked" if "image_size" in given or "mask_size" in given
               else "to merge sources of different sizes (--image-size/--mask-size choose)")
        log.warning("images and masks of %s are resized to %d/%d px %s",
                    ", ".join(changed), *built, why)
    return options


def report_skipped(skipped: Sequence[dict], where: str | Path, shown: int = 5) -> None:
    """Name the first skipped samples and their count on the terminal (a warning)."""
    if not skipped:
        return
    lines = [f"  {item['source']}[{item['index']}]: {item['reason']}"
             for item in skipped[:shown]]
    more = (f"\n  ... and {len(skipped) - shown} more" if len(skipped) > shown else "")
    log.warning("%d bad sample(s) skipped in %s (all listed in its probe.json):\n%s%s",
                len(skipped), where, "\n".join(lines), more)


def resolve_probe_set(spec: str | Path, cache_dir: str | Path = DEFAULT_CACHE,
                      progress: bool = True) -> ProbeSet:
    """Open a ``--dataset`` spec: a concept dataset folder, or a source spec built and cached."""
    path = Path(spec)
    if path.is_dir() and (path / "probe.json").is_file():
        probe = ProbeSet(path)
    else:
        sources = open_sources([str(spec)])
        result = build_dataset(sources, None, default_build_options(sources),
                               progress=progress, cache_dir=cache_dir)
        probe = ProbeSet(result.path)
    report_skipped(probe.skipped, spec)
    return probe

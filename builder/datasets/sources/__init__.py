"""Probe-data sources: each yields images with concept labels in its own vocabulary.

``resolve_source(spec)`` opens one from a dataset spec:

- ``toyworld``: the built-in procedural scenes (options ``n``, ``size``, ``seed``);
- ``broden:PATH``, or the path of a directory holding ``index.csv``: a Broden release;
- ``hf:NAME[@REVISION][?split=...&path=...]``: a hub dataset adapter (``hub.ADAPTERS``);
- ``images:PATH``: a folder of images labelled by a segmenter (option ``segmenter``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import SpecError
from .base import (CATEGORIES, IMAGE_CATEGORIES, PIXEL_CATEGORIES, Source, SourceConcept,
                   SourceSample)

__all__ = ["CATEGORIES", "IMAGE_CATEGORIES", "PIXEL_CATEGORIES", "SOURCE_FORMS", "Source",
           "SourceConcept", "SourceSample", "resolve_source"]

#: The dataset spec forms, as listed in error messages.
SOURCE_FORMS = ("toyworld", "broden:PATH", "hf:NAME[@REVISION][?split=...]",
                "images:PATH (with a segmenter)", "a Broden directory (one with index.csv)")

_TOYWORLD_OPTIONS = ("n", "size", "seed", "texture_fraction")
_BRODEN_OPTIONS = ("colors",)
_IMAGES_OPTIONS = ("segmenter",)


def _known_options() -> tuple[str, ...]:
    from .hub import HUB_OPTIONS

    return _TOYWORLD_OPTIONS + _BRODEN_OPTIONS + _IMAGES_OPTIONS + HUB_OPTIONS


def _pick(options: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in names}


def resolve_source(spec: str, **options: Any) -> Source:
    """Open the source named by ``spec``; options that do not apply to its form are ignored.

    Options left at None are dropped; an option no form knows is a SpecError.
    """
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(_known_options()))
    if unknown:
        raise SpecError(f"unknown dataset option(s) {', '.join(unknown)}",
                        hint=f"known: {', '.join(_known_options())}")
    text = str(spec).strip()
    kind, colon, rest = text.partition(":")
    if text == "toyworld":
        from .toyworld import ToyWorld

        return ToyWorld(**_pick(options, _TOYWORLD_OPTIONS))
    if colon and kind == "broden":
        if not rest:
            raise SpecError("broden: needs a path, e.g. broden:data/broden1_224")
        from .broden import BrodenSource

        return BrodenSource(rest, **_pick(options, _BRODEN_OPTIONS))
    if colon and kind == "hf":
        from .hub import HUB_OPTIONS, open_hub_source

        return open_hub_source(rest, **_pick(options, HUB_OPTIONS))
    if colon and kind == "images":
        if not rest:
            raise SpecError("images: needs a folder, e.g. images:photos/")
        if "segmenter" not in options:
            raise SpecError(f"{text}: an images source needs a segmenter to label it",
                            hint="pass --segmenter NAME")
        from .images import ImageFolderSource

        return ImageFolderSource(rest, options["segmenter"])
    path = Path(text).expanduser()
    if text and path.is_dir() and (path / "index.csv").is_file():
        from .broden import BrodenSource

        return BrodenSource(path, **_pick(options, _BRODEN_OPTIONS))
    raise SpecError(f"unknown dataset source {text!r}",
                    hint="expected one of: " + "; ".join(SOURCE_FORMS))

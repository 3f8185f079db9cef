"""The registry of ``demo:NAME`` models: an architecture, where its weights live, its defaults.

Demo models are registered by the modules that define them (``register_demo``); this file only
holds the registry and the location of the shipped weights (``data/demo/``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from ..errors import SpecError

#: Normalisation most torchvision-style classifiers expect (ImageNet statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: What a model produces; the dissection engine treats generators and classifiers differently.
MODEL_KINDS = ("classifier", "generator", "segmenter", "other")


@dataclass(frozen=True)
class DemoModel:
    """One registered demo model: how to build it and what it expects."""

    name: str
    factory: Callable[[], nn.Module]
    weights_file: str | None  # relative to ``demo_data_dir()``; None: random initialisation
    input_size: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    kind: str = "other"
    #: Shape of one input without the batch dimension when it is not an image
    #: (a generator's latent, e.g. ``(512,)``); None means ``(3, input_size, input_size)``.
    input_shape: tuple[int, ...] | None = None
    description: str = ""

    def weights_path(self) -> Path | None:
        """The absolute path of this model's weights file, or None when it has none."""
        if self.weights_file is None:
            return None
        return demo_data_dir() / self.weights_file


_REGISTRY: dict[str, DemoModel] = {}


def demo_data_dir() -> Path:
    """The folder of the shipped demo weights (the wheel's copy, else the repo's ``data/demo``)."""
    package_root = Path(__file__).resolve().parents[1]  # .../builder
    candidates = (
        package_root / "demo_weights",  # installed from a wheel
        package_root.parent / "data" / "demo",  # a source checkout or editable install
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def register_demo(
    name: str,
    factory: Callable[[], nn.Module],
    weights_file: str | None,
    *,
    input_size: int | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    kind: str = "other",
    input_shape: tuple[int, ...] | None = None,
    description: str = "",
) -> DemoModel:
    """Register ``demo:NAME``; a programming error (duplicate, bad kind) raises ValueError."""
    if not name or ":" in name:
        raise ValueError(f"invalid demo model name {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"demo model {name!r} is already registered")
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, not {kind!r}")
    entry = DemoModel(
        name=name,
        factory=factory,
        weights_file=weights_file,
        input_size=input_size,
        mean=tuple(mean),
        std=tuple(std),
        kind=kind,
        input_shape=tuple(input_shape) if input_shape is not None else None,
        description=description,
    )
    _REGISTRY[name] = entry
    return entry


def _register_builtins() -> None:
    # Imported on first use: the built-in demos need the toy world's vocabulary.
    from . import demo_registry  # noqa: F401  (registers on import)


def list_demos() -> list[str]:
    """The names of all registered demo models, sorted."""
    _register_builtins()
    return sorted(_REGISTRY)


def get_demo(name: str) -> DemoModel:
    """The registered demo model ``name``; an unknown name raises SpecError listing known ones."""
    _register_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    known = list_demos()
    close = difflib.get_close_matches(name, known, n=3)
    message = f"unknown demo model {name!r}"
    if close:
        message += f"; did you mean {', '.join('demo:' + c for c in close)}?"
    listing = ", ".join(known) if known else "none are registered"
    raise SpecError(message, hint=f"known demo models: {listing}")

"""Parse ``--model`` specs and load the model they name, with its weights and defaults.

Forms: ``torchvision:NAME``, ``demo:NAME``, ``PACKAGE.MODULE:CALLABLE`` and
``path/to/file.py:CALLABLE`` (the callable returns an ``nn.Module``; a module instance is
accepted as is). Nothing is ever ``eval``-ed; weights are never downloaded.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import SpecError, WeightsError
from .demo import IMAGENET_MEAN, IMAGENET_STD, get_demo
from .weights import load_weights, state_dict_sha256

SPEC_FORMS = "torchvision:NAME, demo:NAME, PACKAGE.MODULE:CALLABLE or path/to/file.py:CALLABLE"

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_TORCHVISION_DEFAULT_SIZE = 224
_LIST_TORCHVISION = (
    'python -c "import torchvision as tv; print(tv.models.list_models(module=tv.models))"'
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``source`` is torchvision, demo, module or file."""

    source: str
    target: str  # the torchvision or demo name, the module path, or the file path
    attr: str | None  # the callable's (dotted) name for the module and file forms
    text: str  # the spec as written


@dataclass
class LoadedModel:
    """A model ready for dissection (eval mode) with where it came from and what it expects."""

    module: nn.Module
    spec: str
    weights: Path | None  # the weights file loaded; None: random initialisation under ``seed``
    weights_sha256: str  # of the weights file, or of the canonical state dict (random init)
    input_size: int | None  # default image side, when known
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: str  # "classifier" | "generator" | "segmenter" | "other"
    seed: int = 0
    input_shape: tuple[int, ...] | None = None  # one non-image input (e.g. a latent), no batch

    def example_input(self, batch: int = 1, input_size: int | None = None) -> torch.Tensor:
        """Zeros shaped like ``batch`` inputs (images of ``input_size`` or the declared shape)."""
        if self.input_shape is not None and input_size is None:
            shape: tuple[int, ...] = self.input_shape
        else:
            side = input_size or self.input_size or _TORCHVISION_DEFAULT_SIZE
            shape = (len(self.mean) or 3, side, side)
        reference = next(iter(self.module.parameters()), None)
        device = reference.device if reference is not None else torch.device("cpu")
        return torch.zeros(batch, *shape, device=device)


def parse_spec(spec: str) -> ModelSpec:
    """Parse a ``--model`` spec; a malformed one raises SpecError."""
    text = spec.strip() if isinstance(spec, str) else ""
    if not text:
        raise SpecError("empty model spec", hint=f"use {SPEC_FORMS}")
    for source in ("torchvision", "demo"):
        if text.startswith(source + ":"):
            name = text[len(source) + 1 :]
            pattern = _IDENTIFIER if source == "torchvision" else _NAME.pattern
            if not re.fullmatch(pattern, name):
                raise SpecError(f"malformed model spec {text!r}: bad {source} model name")
            return ModelSpec(source, name, None, text)
    if ":" not in text:
        raise SpecError(f"malformed model spec {text!r}", hint=_bare_name_hint(text))
    target, _, attr = text.rpartition(":")
    if not _DOTTED.fullmatch(attr):
        raise SpecError(
            f"malformed model spec {text!r}: {attr!r} is not a Python name",
            hint=f"use {SPEC_FORMS}",
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        return ModelSpec("file", target, attr, text)
    if _DOTTED.fullmatch(target):
        return ModelSpec("module", target, attr, text)
    raise SpecError(
        f"malformed model spec {text!r}: {target!r} is neither a module path nor a .py file",
        hint=f"use {SPEC_FORMS}",
    )


def load_model(
    spec: str | ModelSpec,
    weights: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Build the model a spec names, load ``weights`` (or its shipped or random ones), eval mode."""
    parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
    input_shape: tuple[int, ...] | None = None
    demo_weights: Path | None = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if parsed.source == "torchvision":
            module = _build_torchvision(parsed.target)
            input_size: int | None = _torchvision_input_size(parsed.target, module)
            mean, std, kind = IMAGENET_MEAN, IMAGENET_STD, "classifier"
        elif parsed.source == "demo":
            entry = get_demo(parsed.target)
            module = _checked_module(_call(entry.factory, parsed.text), parsed.text)
            input_size, mean, std, kind = entry.input_size, entry.mean, entry.std, entry.kind
            input_shape = entry.input_shape
            demo_weights = entry.weights_path()
        else:
            target = _import_attr(parsed)
            module = _checked_module(
                target if isinstance(target, nn.Module) else _call(target, parsed.text),
                parsed.text,
            )
            input_size, mean, std, kind = None, IMAGENET_MEAN, IMAGENET_STD, "other"
    weights_path = Path(weights) if weights is not None else demo_weights
    if weights_path is not None:
        if weights is None and not weights_path.is_file():
            raise WeightsError(
                f"the weights of {parsed.text} are missing: {weights_path}",
                hint="reinstall unitdissect, or pass --weights FILE",
            )
        sha256 = load_weights(module, weights_path)
    else:
        sha256 = state_dict_sha256(module.state_dict())
    module.to(device)
    module.eval()
    return LoadedModel(
        module=module,
        spec=parsed.text,
        weights=weights_path,
        weights_sha256=sha256,
        input_size=input_size,
        mean=tuple(mean),
        std=tuple(std),
        kind=kind,
        seed=seed,
        input_shape=input_shape,
    )


def torchvision_names() -> list[str]:
    """The torchvision classification models ``torchvision:NAME`` accepts."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _build_torchvision(name: str) -> nn.Module:
    import torchvision

    names = torchvision_names()
    if name not in names:
        if name in torchvision.models.list_models():
            raise SpecError(
                f"torchvision model {name!r} is not a classification model",
                hint=f"list the classification models with: {_LIST_TORCHVISION}",
            )
        close = difflib.get_close_matches(name, names, n=3)
        message = f"unknown torchvision model {name!r}"
        if close:
            message += f"; did you mean {', '.join('torchvision:' + c for c in close)}?"
        raise SpecError(message, hint=f"list them all with: {_LIST_TORCHVISION}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The default weight initialization")
        return torchvision.models.get_model(name, weights=None)


def _torchvision_input_size(name: str, module: nn.Module) -> int:
    """The model's own image size (ViTs), else its default weights' crop size, else 224."""
    image_size = getattr(module, "image_size", None)
    if isinstance(image_size, int):
        return image_size
    import torchvision

    try:  # reads the weights' metadata only; nothing is downloaded
        crop = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size
        return int(crop[0])
    except Exception:  # a model without a weights enum, or an unusual transform
        return _TORCHVISION_DEFAULT_SIZE


def _import_attr(parsed: ModelSpec) -> object:
    if parsed.source == "module":
        try:
            container = importlib.import_module(parsed.target)
        except ModuleNotFoundError as exc:
            if exc.name and (parsed.target + ".").startswith(exc.name + "."):
                raise SpecError(
                    f"cannot import module {parsed.target!r} of model spec {parsed.text!r}",
                    hint="is the package installed, or is its folder on PYTHONPATH?",
                ) from exc
            raise SpecError(f"importing {parsed.target!r} failed: {exc}") from exc
        except Exception as exc:
            raise SpecError(
                f"importing {parsed.target!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    else:
        container = _import_file(Path(parsed.target).expanduser(), parsed.text)
    found: object = container
    for part in (parsed.attr or "").split("."):
        if not hasattr(found, part):
            public = [n for n in dir(found) if not n.startswith("_")]
            close = difflib.get_close_matches(part, public, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else None
            raise SpecError(f"{parsed.target!r} has no attribute {parsed.attr!r}", hint=hint)
        found = getattr(found, part)
    return found


def _import_file(path: Path, text: str) -> object:
    if not path.is_file():
        raise SpecError(f"model file not found: {path} (from model spec {text!r})")
    if path.suffix != ".py":
        raise SpecError(f"model file {path} is not a .py file")
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_unitdissect_user_{stem}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise SpecError(f"cannot import model file {path}")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # lets dataclasses and pickling inside the file find it
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise SpecError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _call(factory: object, text: str) -> object:
    if not callable(factory):
        raise SpecError(f"{text!r} names a {type(factory).__name__}, not a callable")
    try:
        return factory()
    except Exception as exc:
        raise SpecError(
            f"building the model {text!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _checked_module(built: object, text: str) -> nn.Module:
    if not isinstance(built, nn.Module):
        raise SpecError(
            f"{text!r} returned a {type(built).__name__}, not a torch.nn.Module"
        )
    return built


def _bare_name_hint(text: str) -> str:
    try:
        if text in torchvision_names():
            return f"did you mean torchvision:{text}?"
    except Exception:  # torchvision unavailable: fall back to the general hint
        pass
    return f"use {SPEC_FORMS}"

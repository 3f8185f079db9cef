"""Parse ``--model`` specs and load the model they name, with its weights and defaults.

Forms: ``torchvision:NAME``, ``demo:NAME``, ``PACKAGE.MODULE:CALLABLE`` and
``path/to/file.py:CALLABLE`` (the callable returns an ``nn.Module``; a module instance is
accepted as is). Nothing is ever ``eval``-ed; weights are never downloaded.

Constructor arguments: ``torchvision:NAME``, ``PACKAGE.MODULE:CALLABLE`` and
``FILE.py:CALLABLE`` may end in a call with keyword arguments whose values are Python
literals, e.g. ``places365.py:vgg16_places365(num_classes=365)`` or
``torchvision:vgg16(num_classes=365)``. Each value is read by ``ast.literal_eval`` (numbers,
strings, bytes, True/False/None, tuples, lists, dicts, sets): no name is looked up and nothing
is called. Positional arguments, ``*args``/``**kwargs``, repeated names and
non-literal values are refused; ``demo:`` models and module instances take no arguments, and
``torchvision:`` ones no ``weights`` (use ``--weights FILE``).

Random weights: ``LoadedModel.random_weights`` is True for ``torchvision:`` without weights,
and for a callable (or ``demo:`` model) without weights whose tensors change when it is built
under another seed (it is built twice to find out; the one built under the requested seed is
kept). A callable that loads its own weights, or seeds itself, builds the same tensors twice
and counts as not random.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import importlib.util
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SpecError, WeightsError
from .demo import IMAGENET_MEAN, IMAGENET_STD, get_demo
from .weights import load_weights_info, state_dict_sha256

SPEC_FORMS = "torchvision:NAME, demo:NAME, PACKAGE.MODULE:CALLABLE or path/to/file.py:CALLABLE"
ARGUMENTS_EXAMPLE = "file.py:build(num_classes=365, layout='pnas')"

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_TORCHVISION_DEFAULT_SIZE = 224
#: What precedes a trailing argument list: ``...:NAME`` (a callable, torchvision or demo name).
_CALL_HEAD = re.compile(r":[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
#: torchvision keywords that would download weights.
_DOWNLOADING_KEYWORDS = ("weights", "weights_backbone")
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
    # constructor keyword arguments; None: those written in ``text`` (so a copy made with a
    # changed target keeps them)
    kwargs: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.kwargs is None:
            object.__setattr__(self, "kwargs", split_arguments(self.text)[1])
        else:
            object.__setattr__(self, "kwargs", dict(self.kwargs))


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
    # True: the weights are an initialisation (no weights file, and they depend on the seed)
    random_weights: bool = False
    weights_layout: str | None = None  # the foreign layout the weights were renamed from

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
    """Parse a ``--model`` spec (with optional constructor arguments); SpecError if malformed."""
    text = spec.strip() if isinstance(spec, str) else ""
    if not text:
        raise SpecError("empty model spec", hint=f"use {SPEC_FORMS}")
    head, kwargs = split_arguments(text)
    for source in ("torchvision", "demo"):
        if head.startswith(source + ":"):
            name = head[len(source) + 1 :]
            pattern = _IDENTIFIER if source == "torchvision" else _NAME.pattern
            if not re.fullmatch(pattern, name):
                raise SpecError(f"malformed model spec {text!r}: bad {source} model name")
            if source == "demo" and kwargs:
                raise SpecError(f"model spec {text!r}: demo models take no arguments")
            return ModelSpec(source, name, None, text, kwargs)
    if ":" not in head:
        raise SpecError(f"malformed model spec {text!r}", hint=_bare_name_hint(head))
    target, _, attr = head.rpartition(":")
    kind = head.partition(":")[0]
    if kind in ("progan", "stylegan2"):  # a generator checkpoint given where a model goes
        raise SpecError(f"model spec {text!r}: {kind}: names a generator checkpoint",
                        hint="dissect a generator with `unitdissect gan --model "
                             f"{text}` (or a [[gan]] entry of a workspace)")
    if not _DOTTED.fullmatch(attr):
        raise SpecError(
            f"malformed model spec {text!r}: {attr!r} is not a Python name",
            hint=f"use {SPEC_FORMS}",
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        return ModelSpec("file", target, attr, text, kwargs)
    if _DOTTED.fullmatch(target):
        return ModelSpec("module", target, attr, text, kwargs)
    raise SpecError(
        f"malformed model spec {text!r}: {target!r} is neither a module path nor a .py file",
        hint=f"use {SPEC_FORMS}",
    )


def split_arguments(text: str) -> tuple[str, dict[str, Any]]:
    """``HEAD(k=v, ...)`` -> (HEAD, {k: v}), the values read by ``ast.literal_eval`` only.

    A spec that does not end in ``)`` has no arguments. Otherwise the argument list is the
    first ``(`` after a ``:NAME`` from which the rest of the text parses as one call, so
    parentheses and colons inside a path or a string value are fine.
    """
    if not text.endswith(")"):
        return text, {}
    for match in re.finditer(r"\(", text):
        head = text[: match.start()]
        if not _CALL_HEAD.search(head):
            continue
        call = _parse_call(text[match.start():])
        if call is not None:
            return head, _literal_kwargs(call, text)
    raise SpecError(
        f"malformed model spec {text!r}: cannot read its arguments",
        hint=f"give keyword arguments with literal values, e.g. {ARGUMENTS_EXAMPLE}",
    )


def _parse_call(arguments: str) -> ast.Call | None:
    """The call node of ``_f`` + ``arguments`` when that is exactly one call, else None."""
    try:
        tree = ast.parse("_f" + arguments, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    call = tree.body
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_f":
        return call
    return None


def _literal_kwargs(call: ast.Call, text: str) -> dict[str, Any]:
    hint = f"give keyword arguments with literal values, e.g. {ARGUMENTS_EXAMPLE}"
    if call.args:
        raise SpecError(f"model spec {text!r}: positional arguments are not accepted; name "
                        "each one (NAME=VALUE)", hint=hint)
    kwargs: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise SpecError(f"model spec {text!r}: **kwargs is not accepted", hint=hint)
        if keyword.arg in kwargs:
            raise SpecError(f"model spec {text!r}: argument {keyword.arg!r} is given twice")
        try:
            kwargs[keyword.arg] = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise SpecError(
                f"model spec {text!r}: the value of {keyword.arg!r} is not a Python literal "
                "(numbers, strings, True/False/None, tuples, lists, dicts, sets)",
                hint="names and calls are never evaluated; quote strings") from None
    return kwargs


@dataclass
class _Built:
    """A freshly built module and what its spec says about its inputs and weights."""

    module: nn.Module
    input_size: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: str
    input_shape: tuple[int, ...] | None = None
    demo_weights: Path | None = None
    factory: object = None  # the callable that built it (None: torchvision, or an instance)


def load_model(
    spec: str | ModelSpec,
    weights: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Build the model a spec names, load ``weights`` (or its shipped or random ones), eval mode."""
    parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
    built = _build(parsed, seed)
    module = built.module
    weights_path = Path(weights) if weights is not None else built.demo_weights
    layout: str | None = None
    if weights_path is not None:
        if weights is None and not weights_path.is_file():
            raise WeightsError(
                f"the weights of {parsed.text} are missing: {weights_path}",
                hint="reinstall unitdissect, or pass --weights FILE",
            )
        sha256, layout = load_weights_info(module, weights_path)
        random_weights = False
    else:
        sha256 = state_dict_sha256(module.state_dict())
        random_weights = parsed.source == "torchvision" or _depends_on_seed(parsed, built, seed)
    module.to(device)
    module.eval()
    return LoadedModel(
        module=module,
        spec=parsed.text,
        weights=weights_path,
        weights_sha256=sha256,
        input_size=built.input_size,
        mean=tuple(built.mean),
        std=tuple(built.std),
        kind=built.kind,
        seed=seed,
        input_shape=built.input_shape,
        random_weights=random_weights,
        weights_layout=layout,
    )


def _build(parsed: ModelSpec, seed: int, fresh: bool = False) -> _Built:
    """Build the spec's module under ``seed``, leaving the caller's RNG state alone.

    ``fresh`` runs the spec's file or module again as a separate copy (``sys.modules`` keeps
    the first), so an instance it holds is built again under this seed.
    """
    kwargs = dict(parsed.kwargs or {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if parsed.source == "torchvision":
            module = _build_torchvision(parsed.target, kwargs, parsed.text)
            size = _torchvision_input_size(parsed.target, module)
            return _Built(module, size, IMAGENET_MEAN, IMAGENET_STD, "classifier")
        if parsed.source == "demo":
            entry = get_demo(parsed.target)
            module = _checked_module(_call(entry.factory, parsed.text), parsed.text)
            return _Built(module, entry.input_size, entry.mean, entry.std, entry.kind,
                          entry.input_shape, entry.weights_path(), entry.factory)
        target = _import_attr(parsed, fresh=fresh)
        if isinstance(target, nn.Module):
            if kwargs:
                raise SpecError(f"{parsed.text!r}: {parsed.attr} is a module instance, which "
                                "takes no arguments")
            return _Built(target, None, IMAGENET_MEAN, IMAGENET_STD, "other")
        module = _checked_module(_call(target, parsed.text, kwargs), parsed.text)
        return _Built(module, None, IMAGENET_MEAN, IMAGENET_STD, "other", factory=target)


def _depends_on_seed(parsed: ModelSpec, built: _Built, seed: int) -> bool:
    """Whether building the spec under another seed gives other tensors (a random init): the
    same callable is called again, or an instance's file or module run again."""
    if built.factory is None:
        other = _build(parsed, seed + 1, fresh=True).module
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            other = _checked_module(_call(built.factory, parsed.text, parsed.kwargs),
                                    parsed.text)
    if other is built.module:  # the very same object: nothing was built again
        return False
    return not _same_tensors(built.module, other)


def _same_tensors(first: nn.Module, second: nn.Module) -> bool:
    a, b = first.state_dict(), second.state_dict()
    if a.keys() != b.keys():
        return False
    return all(torch.equal(a[key], b[key].to(a[key].device)) for key in a)


def torchvision_names() -> list[str]:
    """The torchvision classification models ``torchvision:NAME`` accepts."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _build_torchvision(name: str, kwargs: Mapping[str, Any] | None = None,
                       text: str | None = None) -> nn.Module:
    import torchvision

    kwargs = dict(kwargs or {})
    downloading = [key for key in _DOWNLOADING_KEYWORDS if key in kwargs]
    if downloading:
        raise SpecError(f"model spec {text!r}: {downloading[0]!r} is not accepted (weights are "
                        "never downloaded)", hint="pass the weights file with --weights FILE")

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
        if not kwargs:
            return torchvision.models.get_model(name, weights=None)
        try:
            return torchvision.models.get_model(name, weights=None, **kwargs)
        except Exception as exc:  # a wrong keyword or value for this architecture
            raise SpecError(
                f"building the model {text!r} failed: {type(exc).__name__}: {exc}") from exc


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


def _import_attr(parsed: ModelSpec, fresh: bool = False) -> object:
    if parsed.source == "module":
        try:
            container = (_fresh_module(parsed.target) if fresh
                         else importlib.import_module(parsed.target))
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
        container = _import_file(Path(parsed.target).expanduser(), parsed.text, keep=not fresh)
    found: object = container
    for part in (parsed.attr or "").split("."):
        if not hasattr(found, part):
            public = [n for n in dir(found) if not n.startswith("_")]
            close = difflib.get_close_matches(part, public, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else None
            raise SpecError(f"{parsed.target!r} has no attribute {parsed.attr!r}", hint=hint)
        found = getattr(found, part)
    return found


def _fresh_module(name: str) -> object:
    """A new copy of module ``name``, executed again (not put in ``sys.modules``)."""
    importlib.import_module(name)  # its parents, and errors, as a normal import gives them
    found = importlib.util.find_spec(name)
    if found is None or found.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def _import_file(path: Path, text: str, keep: bool = True) -> object:
    """Execute a model file as a module; ``keep=False`` gives back ``sys.modules`` the entry it
    had (a second copy, run only to compare, must not replace the first one's classes)."""
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
    previous = sys.modules.get(name)
    sys.modules[name] = module  # lets dataclasses and pickling inside the file find it
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise SpecError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if not keep and previous is not None:
            sys.modules[name] = previous
    return module


def _call(factory: object, text: str, kwargs: Mapping[str, Any] | None = None) -> object:
    if not callable(factory):
        raise SpecError(f"{text!r} names a {type(factory).__name__}, not a callable")
    try:
        return factory(**dict(kwargs or {}))
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

"""Layer names (dotted module paths), their output shapes, and checking names a user gave."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..errors import LayerError

#: How many valid names an unknown-layer error lists before pointing to ``unitdissect layers``.
_LISTED_NAMES = 30


@dataclass(frozen=True)
class LayerInfo:
    """One named module: its path, class name and output shape (no batch dim; None: not run)."""

    name: str
    type: str
    shape: tuple[int, ...] | None


def layer_names(model: nn.Module) -> list[str]:
    """Every module path of ``model`` in definition order (the root itself excluded)."""
    return [name for name, _ in model.named_modules() if name]


def first_tensor(output: object) -> torch.Tensor | None:
    """The first tensor in a module output (itself, or the first one inside a tuple/list/dict)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; restore each module's own train/eval flag on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def example_input(
    model: nn.Module, input_size: int | tuple[int, int] = 224, in_channels: int = 3
) -> torch.Tensor:
    """A zero image batch of one, on the device and floating dtype of the model's parameters."""
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    reference = next(iter(model.parameters()), None)
    if reference is None:
        reference = next(iter(model.buffers()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else None
    return torch.zeros(1, in_channels, height, width, device=device, dtype=dtype)


def list_layers(
    model: nn.Module,
    input_size: int | tuple[int, int] = 224,
    in_channels: int = 3,
    example: torch.Tensor | None = None,
) -> list[LayerInfo]:
    """Every named module with its output shape, from one dummy forward pass (batch 1).

    ``example`` replaces the zero image (e.g. a latent vector for a generator). A module
    called several times reports its last call; one never called has ``shape=None``.
    """
    if example is None:
        example = example_input(model, input_size, in_channels)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            tensor = first_tensor(output)
            if tensor is not None:
                shapes[name] = tuple(tensor.shape[1:])

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        with eval_mode(model), torch.no_grad():
            model(example)
    finally:
        for handle in reversed(handles):
            handle.remove()
    return [
        LayerInfo(name, type(module).__name__, shapes.get(name))
        for name, module in model.named_modules()
        if name
    ]


def resolve_layers(model: nn.Module, names: str | Iterable[str]) -> list[str]:
    """Check layer names (a list, or one comma-separated string); return them de-duplicated.

    An unknown name raises LayerError naming it, suggesting close matches and listing the
    valid names (the first 30 for big models).
    """
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
    valid = layer_names(model)
    known = set(valid)
    resolved: list[str] = []
    for name in names:
        if name not in known:
            raise _unknown_layer(name, valid)
        if name not in resolved:
            resolved.append(name)
    return resolved


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path ``name``; LayerError if there is none."""
    return model.get_submodule(resolve_layers(model, [name])[0])


def _unknown_layer(name: str, valid: Sequence[str]) -> LayerError:
    if not valid:
        return LayerError(f"unknown layer {name!r}: the model has no named submodules")
    message = f"unknown layer {name!r}" if name else "empty layer name"
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    if close:
        message += f" (did you mean {', '.join(repr(c) for c in close)}?)"
    shown = ", ".join(valid[:_LISTED_NAMES])
    if len(valid) > _LISTED_NAMES:
        message += f"; valid layers include {shown}, ... ({len(valid) - _LISTED_NAMES} more)"
    else:
        message += f"; valid layers: {shown}"
    return LayerError(message, hint="`unitdissect layers MODEL` lists every layer with its shape")

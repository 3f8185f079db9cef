"""Capture and edit the outputs of named layers during a forward pass, with forward hooks.

    with LayerTrace(model, ["layer3", "layer4"]) as trace:
        model(x)
    feats = trace["layer4"]            # [B, C, H, W]

``stop=True`` ends the forward pass once every traced layer has run; the exception that does
so is swallowed by the ``with`` block, so code after ``model(x)`` inside the block is skipped:
prefer ``trace.run(x)``, which swallows it right there. ``edit(output, layer)`` may replace a
layer's output; the rest of the network then runs on the edited output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from types import TracebackType

import torch
from torch import nn

from ..errors import LayerError
from .layers import first_tensor, resolve_layers

#: ``edit(output, layer_name)`` returns the output to use instead (None: keep the same object,
#: e.g. after an in-place change).
EditFn = Callable[[object, str], object]

#: Token counts beyond the H*W patch grid that ``to_maps`` tries (class, distillation and
#: register tokens), smallest first.
_MAX_EXTRA_TOKENS = 16


class _StopForward(Exception):
    """Raised inside a hook to end the forward pass once every traced layer has run."""


def to_maps(output: object) -> torch.Tensor:
    """A layer output as feature maps ``[B, C, H, W]``.

    4-D tensors are returned as they are (assumed channels-first); a tuple, list or dict gives
    its first tensor; ``[B, C]`` becomes ``[B, C, 1, 1]``; transformer tokens ``[B, T, C]``
    (batch first) with ``T = extra + H*W``, ``H == W``, lose the ``extra`` leading class /
    register tokens and become ``[B, C, H, W]``.
    """
    tensor = first_tensor(output)
    if tensor is None:
        raise LayerError(f"the layer output ({type(output).__name__}) holds no tensor")
    if tensor.dim() == 4:
        return tensor
    if tensor.dim() == 2:
        return tensor[:, :, None, None]
    if tensor.dim() == 3:
        batch, tokens, channels = tensor.shape
        grid = _token_grid(tokens)
        if grid is not None:
            extra, side = grid
            patches = tensor[:, extra:, :].transpose(1, 2)
            return patches.reshape(batch, channels, side, side)
    raise LayerError(
        f"a layer output of shape {tuple(tensor.shape)} cannot be read as feature maps",
        hint="choose a layer whose output is [B, C, H, W], [B, C] or ViT tokens [B, T, C]",
    )


def _token_grid(tokens: int) -> tuple[int, int] | None:
    """(extra tokens, grid side) with ``tokens == extra + side**2``, smallest extra first."""
    for extra in range(min(_MAX_EXTRA_TOKENS, tokens - 1) + 1):
        side = math.isqrt(tokens - extra)
        if side > 0 and side * side == tokens - extra:
            return extra, side
    return None


class LayerTrace:
    """A context manager that records (and optionally edits) the outputs of named layers.

    Hooks are registered on construction and removed, in reverse order, by ``close()`` or on
    leaving the ``with`` block, also after an exception. Captured tensors are detached (and,
    with ``clone=True``, copied so later in-place operations cannot change them) unless
    ``retain_grad=True``, which keeps them in the autograd graph with ``.grad`` retained.
    A module called several times in one pass keeps its last output (with ``stop=True``, its
    first: the pass ends once every traced layer has run once).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | Iterable[str],
        stop: bool = False,
        edit: EditFn | None = None,
        retain_grad: bool = False,
        clone: bool = True,
    ) -> None:
        self.model = model
        self.layers = resolve_layers(model, layers)
        if not self.layers:
            raise LayerError("no layer to trace was given")
        self.stop = stop
        self.edit = edit
        self.retain_grad = retain_grad
        self.clone = clone
        self.outputs: dict[str, object] = {}
        self._pending = set(self.layers)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        try:
            self._handles.append(model.register_forward_pre_hook(self._on_model_call))
            for name in self.layers:
                module = model.get_submodule(name)
                self._handles.append(module.register_forward_hook(self._make_hook(name)))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> LayerTrace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self.close()
        return exc_type is not None and issubclass(exc_type, _StopForward)

    def close(self) -> None:
        """Remove every hook (in reverse order of registration); safe to call twice."""
        while self._handles:
            self._handles.pop().remove()

    def run(self, *args: object, **kwargs: object) -> object:
        """Call the model; return its output, or None when ``stop`` ended the pass early."""
        try:
            return self.model(*args, **kwargs)
        except _StopForward:
            return None

    def raw(self, name: str) -> object:
        """The captured output of layer ``name`` as the module returned it (maybe a tuple)."""
        if name not in self.layers:
            raise LayerError(
                f"layer {name!r} is not traced; traced layers: {', '.join(self.layers)}"
            )
        if name not in self.outputs:
            raise LayerError(f"layer {name!r} did not run in the last forward pass")
        return self.outputs[name]

    def __getitem__(self, name: str) -> torch.Tensor:
        """The captured output of layer ``name`` as feature maps ``[B, C, H, W]``."""
        output = self.raw(name)
        try:
            return to_maps(output)
        except LayerError as exc:
            raise LayerError(f"layer {name!r}: {exc}", hint=exc.hint) from exc

    def __contains__(self, name: object) -> bool:
        return name in self.outputs

    def keys(self) -> list[str]:
        """The traced layers that produced an output, in the order they were requested."""
        return [name for name in self.layers if name in self.outputs]

    def _on_model_call(self, module: nn.Module, inputs: object) -> None:
        self.outputs.clear()
        self._pending = set(self.layers)

    def _make_hook(self, name: str) -> Callable[[nn.Module, object, object], object]:
        def hook(module: nn.Module, inputs: object, output: object) -> object:
            if self.edit is not None:
                edited = self.edit(output, name)
                if edited is not None:
                    output = edited
            self.outputs[name] = self._keep(output)
            self._pending.discard(name)
            if self.stop and not self._pending:
                raise _StopForward()
            return output

        return hook

    def _keep(self, output: object) -> object:
        if isinstance(output, torch.Tensor):
            if self.retain_grad:
                if output.requires_grad and not output.is_leaf:
                    output.retain_grad()
                return output
            kept = output.detach()
            return kept.clone() if self.clone else kept
        if isinstance(output, list) or type(output) is tuple:
            return type(output)(self._keep(item) for item in output)
        return output  # other containers (dicts, named tuples) are kept as they are


def split_at(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module] | None:
    """``(head, tail)`` with ``tail(head(x)) == model(x)`` and ``head`` ending at ``layer``.

    Only models whose forward is known to be a chain are split: ``nn.Sequential`` (nested
    ones too) and torchvision's VGG and AlexNet; anything else gives None. The two halves
    share the model's modules (no copies).
    """
    resolve_layers(model, [layer])
    steps = _chain(model, "")
    head: list[nn.Module] = []
    while steps is not None:
        for index, (name, module) in enumerate(steps):
            if name == layer:
                head += [m for _, m in steps[: index + 1]]
                return nn.Sequential(*head), nn.Sequential(*[m for _, m in steps[index + 1 :]])
            if name is not None and layer.startswith(name + "."):
                head += [m for _, m in steps[:index]]
                inner = _chain(module, name + ".")
                steps = None if inner is None else inner + steps[index + 1 :]
                break
        else:
            return None
    return None


def _chain(module: nn.Module, prefix: str) -> list[tuple[str | None, nn.Module]] | None:
    """The modules whose composition is ``module.forward``, with their paths; None if unknown."""
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        return [(prefix + name, child) for name, child in module.named_children()]
    from torchvision.models import VGG, AlexNet

    known = {VGG: VGG.forward, AlexNet: AlexNet.forward}
    for cls, forward in known.items():
        if isinstance(module, cls) and type(module).forward is forward:
            return [
                (prefix + "features", module.features),
                (prefix + "avgpool", module.avgpool),
                (None, nn.Flatten(1)),
                (prefix + "classifier", module.classifier),
            ]
    return None

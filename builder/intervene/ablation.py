"""Switch units of a layer off (or set or scale them) during the forward pass.

    with Ablation(model, "features.conv5_3", [12, 40]):
        logits = model(x)                 # units 12 and 40 forced to zero
    logits = model(x)                     # the model is untouched again

``BatchedAblation`` runs many different ablations in one batch: the input is repeated K times
(``repeat_batch``) and copy k of the batch gets its own unit mask ``masks[k]``.
``apply_unit_masks`` does the same on activations already computed (the cached output of the
layer), which is how the sweeps avoid running the network up to the layer again.

Units are channels: dimension 1 of ``[B, C, H, W]`` and ``[B, C]`` outputs, the last dimension
of transformer tokens ``[B, T, C]``. A layer returning a tuple has its first tensor edited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType

import torch
from torch import nn

from ..errors import ConfigError, LayerError
from ..models.trace import LayerTrace

__all__ = ["MODES", "Ablation", "BatchedAblation", "apply_unit_masks", "channel_dim",
           "repeat_batch", "unit_mask"]

#: How chosen units are changed: forced to 0, forced to ``value``, or multiplied by ``value``.
MODES = ("zero", "set", "scale")

Value = float | Sequence[float] | torch.Tensor


def channel_dim(tensor: torch.Tensor) -> int:
    """The dimension that indexes units: 1 for [B, C, ...] maps, -1 for [B, T, C] tokens."""
    if tensor.dim() == 3:
        return -1
    if tensor.dim() >= 2:
        return 1
    raise LayerError(f"a layer output of shape {tuple(tensor.shape)} has no unit dimension")


def unit_mask(units: Iterable[int] | torch.Tensor, num_units: int,
              device: torch.device | str | None = None) -> torch.Tensor:
    """A bool vector [num_units] that is True at ``units`` (ConfigError for a unit out of range)."""
    index = torch.as_tensor(list(units) if not isinstance(units, torch.Tensor) else units,
                            dtype=torch.long).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_units):
        raise ConfigError(f"unit indices must be in 0..{num_units - 1}, got "
                          f"{sorted(set(index.tolist()))[:8]}")
    mask = torch.zeros(num_units, dtype=torch.bool, device=device)
    mask[index.to(mask.device)] = True
    return mask


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"ablation mode must be one of {', '.join(MODES)}, got {mode!r}")


def _values(value: Value, masks: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a tensor broadcastable to ``masks`` ([K, C]), in ``like``'s dtype/device."""
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if tensor.dim() == 0:
        return tensor
    if tensor.shape[-1] != masks.shape[-1]:
        raise ConfigError(f"ablation values have {tensor.shape[-1]} entries; the layer has "
                          f"{masks.shape[-1]} units")
    return tensor


def _mask_groups(groups: torch.Tensor, masks: torch.Tensor, mode: str, value: Value,
                 dim: int) -> torch.Tensor:
    """``groups`` [K or 1, B, ...] with mask k applied to group k; ``dim``: unit dim of one item."""
    k, units = masks.shape
    shape = [k, 1] + [1] * (groups.dim() - 2)
    shape[dim + 1 if dim >= 0 else groups.dim() + dim] = units
    where = masks.reshape(shape)
    fill = _values(0.0 if mode == "zero" else value, masks, groups)
    if fill.dim():
        fill = fill.expand(k, units).reshape(shape)
    replaced = groups * fill if mode == "scale" else fill
    return torch.where(where, replaced, groups)


def _checked_masks(masks: torch.Tensor, units: int, device: torch.device) -> torch.Tensor:
    masks = torch.as_tensor(masks).to(device=device, dtype=torch.bool)
    if masks.dim() == 1:
        masks = masks[None]
    if masks.dim() != 2 or masks.shape[1] != units:
        raise ConfigError(f"unit masks must be [K, {units}], got {list(masks.shape)}")
    return masks


def apply_unit_masks(acts: torch.Tensor, masks: torch.Tensor, mode: str = "zero",
                     value: Value = 0.0) -> torch.Tensor:
    """Activations [B, ...] with each of K unit masks [K, C] applied: [K * B, ...], mask-major.

    Row ``k * B + b`` is image b with the units of ``masks[k]`` zeroed (``mode="zero"``), set
    to ``value`` (``"set"``) or multiplied by ``value`` (``"scale"``); ``value`` is a number or
    per-unit values [C] or [K, C]. One vectorised ``torch.where``, no loop over masks.
    """
    _check_mode(mode)
    dim = channel_dim(acts)
    masks = _checked_masks(masks, acts.shape[dim], acts.device)
    out = _mask_groups(acts.unsqueeze(0), masks, mode, value, dim)
    return out.reshape(masks.shape[0] * acts.shape[0], *acts.shape[1:])


def repeat_batch(x: torch.Tensor, times: int) -> torch.Tensor:
    """``x`` [B, ...] repeated ``times`` times along the batch, copy-major: [times * B, ...]."""
    return x.repeat(times, *([1] * (x.dim() - 1)))


def _edit_first_tensor(output: object, edit) -> object:  # noqa: ANN001 - a tensor function
    if isinstance(output, torch.Tensor):
        return edit(output)
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return type(output)([edit(output[0]), *output[1:]])
    raise LayerError(f"cannot ablate a layer output of type {type(output).__name__}",
                     hint="choose a layer whose output is a tensor")


class _LayerEdit:
    """Shared machinery: a LayerTrace whose edit function rewrites one layer's output."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model = model
        self.layer = layer
        self._trace = LayerTrace(model, [layer], edit=self._edit, clone=False)

    def _edit(self, output: object, name: str) -> object:
        return _edit_first_tensor(output, self._edit_tensor)

    def _edit_tensor(self, tensor: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> _LayerEdit:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks; the model computes as before. Safe to call twice."""
        self._trace.close()
        self._trace.outputs.clear()


class Ablation(_LayerEdit):
    """Context manager: units of ``layer`` are zeroed, set to ``value`` or scaled by ``value``.

    The hooks are removed on leaving the ``with`` block (also after an exception) or by
    ``close()``; nothing of the model is modified.
    """

    def __init__(self, model: nn.Module, layer: str, units: Iterable[int] | torch.Tensor,
                 mode: str = "zero", value: Value = 0.0) -> None:
        _check_mode(mode)
        self.units = torch.as_tensor(list(units) if not isinstance(units, torch.Tensor)
                                     else units, dtype=torch.long).reshape(-1)
        self.mode, self.value = mode, value
        super().__init__(model, layer)

    def _edit_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        units = tensor.shape[channel_dim(tensor)]
        mask = unit_mask(self.units, units, tensor.device)
        value = self.value
        if self.mode != "zero":
            values = torch.as_tensor(value, dtype=tensor.dtype, device=tensor.device)
            if values.dim():  # one value per chosen unit -> one value per unit
                if values.numel() != self.units.numel():
                    raise ConfigError(f"{values.numel()} ablation values for "
                                      f"{self.units.numel()} units")
                full = torch.zeros(units, dtype=tensor.dtype, device=tensor.device)
                full[self.units.to(tensor.device)] = values
                value = full
        return apply_unit_masks(tensor, mask[None], self.mode, value)


class BatchedAblation(_LayerEdit):
    """Context manager: K ablations in one batch; copy k of a [K * B] batch gets ``masks[k]``.

    Feed ``repeat_batch(x, K)``; the layer's output [K * B, ...] is edited so that rows
    ``k * B .. (k + 1) * B - 1`` have the units of ``masks[k]`` ([K, C] bool) changed.
    """

    def __init__(self, model: nn.Module, layer: str, masks: torch.Tensor, mode: str = "zero",
                 value: Value = 0.0) -> None:
        _check_mode(mode)
        masks = torch.as_tensor(masks, dtype=torch.bool)
        if masks.dim() != 2:
            raise ConfigError(f"unit masks must be [K, units], got {list(masks.shape)}")
        self.masks, self.mode, self.value = masks, mode, value
        super().__init__(model, layer)

    def _edit_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        k = self.masks.shape[0]
        if tensor.shape[0] % k:
            raise ConfigError(f"a batch of {tensor.shape[0]} cannot hold {k} ablated copies",
                              hint="feed repeat_batch(x, K)")
        dim = channel_dim(tensor)
        masks = _checked_masks(self.masks, tensor.shape[dim], tensor.device)
        groups = tensor.reshape(k, tensor.shape[0] // k, *tensor.shape[1:])
        return _mask_groups(groups, masks, self.mode, self.value, dim).reshape(tensor.shape)

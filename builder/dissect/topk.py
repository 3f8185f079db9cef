"""Running per-unit statistics of the raw activation maps: top-k images, value range, histogram.

All three share one protocol (``add``, ``state_dict`` / ``load_state_dict``, ``merge``) and
are exact: merging the statistics of two disjoint image sets gives exactly the statistics of
their union, whatever the order. Ties between equal scores go to the lower dataset index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["Histogram", "TopK", "ValueRange"]

_FP16_MAX = 65504.0


class TopK:
    """The k images with the highest score (max of the raw map) per unit, with their maps."""

    def __init__(self, units: int, k: int, map_shape: tuple[int, int],
                 device: str | torch.device = "cpu") -> None:
        self.units, self.k, self.map_shape = units, k, tuple(map_shape)
        self.device = torch.device(device)
        self.index = torch.empty(units, 0, dtype=torch.int64, device=self.device)
        self.score = torch.empty(units, 0, dtype=torch.float32, device=self.device)
        self.maps = torch.empty(units, 0, *self.map_shape, dtype=torch.float32, device=self.device)

    def add(self, scores: torch.Tensor, indices: torch.Tensor, maps: torch.Tensor) -> None:
        """Offer a batch: ``scores`` [B, U], dataset ``indices`` [B], raw ``maps`` [B, U, h, w]."""
        self._absorb(scores.t().to(self.device, torch.float32),
                     indices.to(self.device, torch.int64)[None, :].expand(self.units, -1),
                     lambda unit, pos: maps[pos, unit])

    def _absorb(self, scores: torch.Tensor, indices: torch.Tensor, get_maps) -> None:
        """Keep the best k of the current entries and new ones (scores/indices [U, n])."""
        old = self.score.shape[1]
        cand_score = torch.cat([self.score, scores], 1)
        cand_index = torch.cat([self.index, indices], 1)
        # order by index, then (stably) by score: ties go to the lower index
        by_index = torch.sort(cand_index, dim=1, stable=True).indices
        by_score = torch.sort(torch.gather(cand_score, 1, by_index), dim=1, descending=True,
                              stable=True).indices
        keep = torch.gather(by_index, 1, by_score)[:, :self.k]
        unit = torch.arange(self.units, device=self.device)[:, None].expand_as(keep)
        new_maps = torch.empty(self.units, keep.shape[1], *self.map_shape, device=self.device)
        from_old = keep < old
        new_maps[from_old] = self.maps[unit[from_old], keep[from_old]]
        new_maps[~from_old] = get_maps(unit[~from_old], keep[~from_old] - old).to(
            self.device, torch.float32)
        self.score = torch.gather(cand_score, 1, keep)
        self.index = torch.gather(cand_index, 1, keep)
        self.maps = new_maps

    def result(self) -> dict[str, np.ndarray]:
        """``index`` int64 [U, k], ``score`` float32 [U, k], ``maps`` float16 [U, k, h, w]."""
        maps = torch.nan_to_num(self.maps, nan=0.0).clamp(-_FP16_MAX, _FP16_MAX)
        return {"index": self.index.cpu().numpy(), "score": self.score.cpu().numpy(),
                "maps": maps.to(torch.float16).cpu().numpy()}

    def state_dict(self) -> dict[str, Any]:
        """The kept entries as CPU tensors."""
        return {"kind": "TopK", "k": self.k, "index": self.index.cpu(),
                "score": self.score.cpu(), "maps": self.maps.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output."""
        if state.get("kind") != "TopK" or state["k"] != self.k or \
                tuple(state["maps"].shape[2:]) != self.map_shape:
            raise ValueError("state does not belong to a TopK of this shape")
        self.index = state["index"].to(self.device)
        self.score = state["score"].to(self.device)
        self.maps = state["maps"].to(self.device)

    def merge(self, other: TopK) -> None:
        """Absorb ``other``'s entries (from other images)."""
        self._absorb(other.score.to(self.device), other.index.to(self.device),
                     lambda unit, pos: other.maps.to(self.device)[unit, pos])


class ValueRange:
    """Smallest and largest finite value per unit."""

    def __init__(self, units: int, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.low = torch.full((units,), float("inf"), device=self.device)
        self.high = torch.full((units,), float("-inf"), device=self.device)

    def add(self, maps: torch.Tensor, bad: torch.Tensor | None = None) -> None:
        """Include maps [B, U, ...]; ``bad`` marks entries to ignore."""
        flat = maps.transpose(0, 1).reshape(maps.shape[1], -1).float()
        low, high = flat, flat
        if bad is not None:
            mask = bad.transpose(0, 1).reshape(flat.shape)
            low, high = flat.masked_fill(mask, float("inf")), flat.masked_fill(mask, float("-inf"))
        if flat.shape[1]:
            self.low = torch.minimum(self.low, low.amin(1))
            self.high = torch.maximum(self.high, high.amax(1))

    def state_dict(self) -> dict[str, Any]:
        """Low and high as CPU tensors."""
        return {"kind": "ValueRange", "low": self.low.cpu(), "high": self.high.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output."""
        self.low, self.high = state["low"].to(self.device), state["high"].to(self.device)

    def merge(self, other: ValueRange) -> None:
        """Widen to include ``other``'s range."""
        self.low = torch.minimum(self.low, other.low.to(self.device))
        self.high = torch.maximum(self.high, other.high.to(self.device))


class Histogram:
    """Per-unit histogram of values with per-unit equal-width bins over [low, high]."""

    def __init__(self, units: int, bins: int, low: torch.Tensor, high: torch.Tensor,
                 device: str | torch.device = "cpu") -> None:
        self.units, self.bins = units, bins
        self.device = torch.device(device)
        # edges in float64 on the CPU (not every device has it), then float32 on the device
        low, high = low.cpu().double(), high.cpu().double()
        empty = ~torch.isfinite(low) | ~torch.isfinite(high)  # a unit without finite values
        low = torch.where(empty, torch.zeros_like(low), low)
        high = torch.where(empty | (high <= low), low + 1.0, high)
        steps = torch.arange(bins + 1, dtype=torch.float64) / bins
        self.edges = (low[:, None] + (high - low)[:, None] * steps[None, :]).float().to(
            self.device)
        self.low = self.edges[:, 0].contiguous()
        self.scale = (bins / (high - low)).float().to(self.device)
        self.counts = torch.zeros(units, bins, dtype=torch.int64, device=self.device)

    def add(self, maps: torch.Tensor, bad: torch.Tensor | None = None) -> None:
        """Count the values of maps [B, U, ...]; ``bad`` marks entries to ignore."""
        # in the maps' own layout [B, U, pixels] (no transposed copy): each unit's bins offset
        flat = maps.reshape(maps.shape[0], self.units, -1).float()
        pos = ((flat - self.low[:, None]) * self.scale[:, None]).floor_()
        pos = pos.clamp_(0, self.bins - 1).long()
        pos += torch.arange(self.units, device=self.device)[:, None] * self.bins
        if bad is not None:
            pos = pos[~bad.reshape(pos.shape)]
        self.counts += torch.bincount(pos.reshape(-1), minlength=self.units * self.bins).view(
            self.units, self.bins)

    def result(self) -> dict[str, np.ndarray]:
        """``edges`` float32 [U, bins + 1] and ``counts`` int64 [U, bins]."""
        return {"edges": self.edges.cpu().numpy(), "counts": self.counts.cpu().numpy()}

    def state_dict(self) -> dict[str, Any]:
        """Edges and counts as CPU tensors."""
        return {"kind": "Histogram", "edges": self.edges.cpu(), "counts": self.counts.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output (the edges must match)."""
        if state.get("kind") != "Histogram" or not torch.equal(state["edges"], self.edges.cpu()):
            raise ValueError("state does not belong to a Histogram with these edges")
        self.counts = state["counts"].to(self.device)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts (same edges)."""
        if not torch.equal(other.edges.cpu(), self.edges.cpu()):
            raise ValueError("cannot merge histograms with different edges")
        self.counts += other.counts.to(self.device)

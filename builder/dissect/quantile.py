"""Per-unit top quantiles of activations: exact, or from a mergeable sampling sketch.

The dissection threshold T_k is the (1 - q) quantile of unit k's values over every pixel of
every probe image, with linear interpolation between order statistics (numpy's default
``method="linear"``). Only the top ``q`` tail of the values decides it, so ``TailQuantile``
keeps, per unit, just the largest values seen (a ``[units, capacity]`` buffer on the
activations' device) instead of all of them:

* **exact** while ``capacity`` holds the tail: T_k is then exactly numpy's quantile.
* **sampled** otherwise: every value carries a *level* from a hash of (seed, image index,
  pixel index), with P(level >= j) = 2^-j; the sketch keeps the tail of the values of level
  >= j (a Bernoulli sample at rate 2^-j) and raises j whenever that tail would overflow. T_k is
  then the exact (1 - q) quantile of the sample.

The sample depends only on the data and the seed, never on the order of the stream, so
``merge(a, b)`` (and any checkpoint / resume / split over machines) gives exactly the
threshold of the concatenated stream.

Error bound of the sampled mode. Let ``m = q * n_s`` be the number of sampled values above the
estimate (``n_s`` values sampled). The fraction of *all* values above the estimate (the
achieved coverage, which the dissection also counts exactly) has relative standard deviation
about ``1/sqrt(m)``, and by a multiplicative Chernoff bound

    P(|coverage / q - 1| > delta) <= 2 exp(-m delta^2 / 3),

so with probability 0.999 the relative error is at most ``sqrt(3 ln 2000 / m) ≈ 4.78/sqrt(m)``
(``rel_error()`` gives it per unit). The rank error in units of the stream length is ``q``
times that. When the stream length is known (``expected_count``) the rate is fixed upfront so
that ``m`` lies between ``capacity/4`` and ``capacity/2``; ``capacity = 2**17`` values per
unit then gives a relative error below 2.7% (a rank error below 1.3e-4 at q = 0.005), at any
stream length. (Without ``expected_count`` the rate adapts, keeping ``m`` between
``capacity/3`` and ``2*capacity/3``.) For the tail of a distribution this is far tighter than a
KLL sketch of the same memory, whose rank error is uniform over the distribution.

A planned rate also keeps the sketch exact in the face of any order of the stream: the floor
below which values are dropped is always justified by ``capacity`` sampled values at the
final rate. An adaptive rate is order-independent too, but a floor set before the rate halved
may, on adversarially ordered data, end up above the quantile; ``quantile_values`` then
reports the unit as not determined.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["LEVELS", "TailQuantile", "needed_top", "sample_levels", "upper_quantile"]

#: Number of sampling levels: a value's level is in [0, LEVELS - 1].
LEVELS = 54
#: The rate halves when the tail would need more than this fraction of the buffer.
_FILL = 2.0 / 3.0
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def needed_top(n: int, quantile: float) -> int:
    """How many of the largest of ``n`` values fix the linear (1 - quantile) quantile."""
    if n <= 0:
        return 0
    lo = math.floor((n - 1) * (1.0 - quantile))
    return n - lo


def upper_quantile(values: torch.Tensor, quantile: float) -> torch.Tensor:
    """Exact (1 - quantile) quantile of each row of ``values`` [U, n] (numpy's linear method)."""
    n = values.shape[-1]
    if n == 0:
        return torch.full(values.shape[:-1], float("inf"), dtype=values.dtype,
                          device=values.device)
    pos = (n - 1) * (1.0 - quantile)
    lo = math.floor(pos)
    frac = pos - lo
    top = torch.topk(values, n - lo, dim=-1).values  # descending: [..., -1] is rank lo
    v_lo = top[..., -1].cpu().double()
    v_hi = top[..., -2].cpu().double() if n - lo >= 2 else v_lo
    return (v_lo + (v_hi - v_lo) * frac).to(values.dtype).to(values.device)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_levels(image_indices: np.ndarray | torch.Tensor, num_pixels: int,
                  seed: int = 0) -> np.ndarray:
    """Sampling levels uint8 [B, num_pixels] of (image, pixel) pairs: P(level >= j) = 2^-j."""
    images = np.asarray(image_indices.cpu() if isinstance(image_indices, torch.Tensor)
                        else image_indices, dtype=np.int64).astype(np.uint64)
    pixels = np.arange(num_pixels, dtype=np.uint64)
    key = (images[:, None] << np.uint64(32)) | pixels[None, :]
    salt = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    bits = _splitmix64(key ^ salt) >> np.uint64(11)  # 53 uniform bits, exact in float64
    _, exponent = np.frexp(bits.astype(np.float64))  # bit length; 0 for 0
    return (53 - exponent).astype(np.uint8)


class TailQuantile:
    """Streaming per-unit (1 - q) quantile: exact while the tail fits, else a sampling sketch.

    Feed it with ``add_counts`` (how many values were seen, by level) and ``add_candidates``
    (values above ``floor`` with level >= ``rate_level``; anything else may be left out), or
    with ``update`` for a plain dense block of values.
    """

    def __init__(self, units: int, quantile: float, capacity: int, seed: int = 0,
                 device: str | torch.device = "cpu", expected_count: int | None = None) -> None:
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        if capacity < 8:
            raise ValueError(f"capacity must be at least 8, got {capacity}")
        self.units, self.quantile, self.capacity, self.seed = units, quantile, capacity, seed
        self.device = torch.device(device)
        self.values = torch.empty(units, 0, device=self.device)
        self.levels = torch.empty(units, 0, dtype=torch.uint8, device=self.device)
        self.floor = torch.full((units,), float("-inf"), device=self.device)
        # the rate level at which each floor was set: >= capacity sampled values at that
        # level are >= the floor, so a rank within the capacity that falls under it equals it
        self.floor_level = torch.zeros(units, dtype=torch.int64, device=self.device)
        self.expected_count = expected_count
        self.rate_level = 0 if expected_count is None else self.planned_level(
            expected_count, quantile, capacity)
        self.level_counts = torch.zeros(LEVELS, dtype=torch.int64, device=self.device)
        self.excluded = torch.zeros(units, LEVELS, dtype=torch.int64, device=self.device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pending_width = 0

    @staticmethod
    def planned_level(expected_count: int, quantile: float, capacity: int) -> int:
        """The sampling level fixed upfront for a stream of ``expected_count`` values per unit:
        0 (exact) if the buffer holds the whole tail, else the first level whose sample's tail
        fills at most half of it."""
        if needed_top(expected_count, quantile) <= capacity:
            return 0
        level = 1
        while level < LEVELS - 1 and needed_top(expected_count >> level, quantile) > capacity / 2:
            level += 1
        return level

    # -- feeding --------------------------------------------------------------------
    def add_counts(self, level_counts: torch.Tensor, excluded: torch.Tensor | None = None) -> None:
        """Count values seen: ``level_counts`` [LEVELS] for every unit, less ``excluded``
        [U, LEVELS] per unit."""
        self.level_counts += level_counts.to(self.device, torch.int64)
        if excluded is not None:
            self.excluded += excluded.to(self.device, torch.int64)
        self._thin()

    def add_candidates(self, values: torch.Tensor, levels: torch.Tensor,
                       floor: torch.Tensor | None = None) -> None:
        """Offer values [U, W] (-inf = none) with their levels [U, W]; counted by ``add_counts``.

        ``floor`` [U] may raise the floor: the caller guarantees that every sampled value
        above it is offered, and that at least ``capacity`` sampled values are >= it.
        """
        if floor is not None:
            self._raise_floor(floor.to(self.device, torch.float32))
        if values.shape[1] == 0:
            return
        self._pending.append((values.to(self.device, torch.float32),
                              levels.to(self.device, torch.uint8)))
        self._pending_width += values.shape[1]
        if self._pending_width >= self.capacity // 2:
            self._flush()

    def update(self, values: torch.Tensor, levels: torch.Tensor | None = None) -> None:
        """Add a dense block ``values`` [U, n] (non-finite values are excluded); ``levels`` [n]."""
        values = values.to(self.device, torch.float32)
        n = values.shape[1]
        if levels is None:
            levels = torch.zeros(n, dtype=torch.uint8, device=self.device)
        levels = levels.to(self.device, torch.int64)
        bad = ~torch.isfinite(values)
        excluded = None
        if bool(bad.any()):
            units, cols = bad.nonzero(as_tuple=True)
            excluded = torch.zeros(self.units * LEVELS, dtype=torch.int64, device=self.device)
            excluded.index_add_(0, units * LEVELS + levels[cols],
                                torch.ones_like(units))
            excluded = excluded.view(self.units, LEVELS)
        self.add_counts(torch.bincount(levels, minlength=LEVELS), excluded)
        keep = (~bad) & (values > self.floor[:, None]) & (levels >= self.rate_level)[None, :]
        width = int(keep.sum(1).max()) if n else 0
        if width == 0:
            return
        masked = torch.where(keep, values, float("-inf"))
        if width < n:
            top = torch.topk(masked, width, dim=1)
            self.add_candidates(top.values, levels[top.indices].to(torch.uint8))
        else:
            self.add_candidates(masked, levels.to(torch.uint8).expand(self.units, n))

    # -- the sketch ----------------------------------------------------------------
    def counts(self) -> torch.Tensor:
        """Values counted per unit at the current sampling rate (int64 [U])."""
        return self.level_counts[self.rate_level:].sum() - self.excluded[:, self.rate_level:].sum(1)

    @property
    def rate(self) -> float:
        """The sampling rate: 1.0 while the quantile is exact."""
        return 2.0 ** -self.rate_level

    def _thin(self) -> None:
        """Halve the rate while the tail of the fullest unit would overflow the buffer."""
        changed = False
        # a planned rate only changes if the stream outgrows the buffer (more values than
        # expected); an adaptive one keeps a third of the buffer spare
        limit = self.capacity if self.expected_count is not None else _FILL * self.capacity
        while self.rate_level < LEVELS - 1:
            n = int(self.counts().max()) if self.units else 0
            if needed_top(n, self.quantile) <= limit:
                break
            self.rate_level += 1
            changed = True
        if changed:
            self._flush()

    def preset_floor(self, floor: torch.Tensor) -> None:
        """Raise the floor to a guess [U] (e.g. a lower estimate of the quantile) without the
        usual guarantee: values at or below it are dropped from now on, and a quantile that
        falls under it is reported as not determined (``quantile_values``)."""
        floor = floor.to(self.device, torch.float32)
        higher = floor > self.floor
        self.floor_level = torch.where(higher, torch.full_like(self.floor_level, -1),
                                       self.floor_level)
        self.floor = torch.maximum(self.floor, floor)

    def _raise_floor(self, floor: torch.Tensor, level: int | torch.Tensor | None = None) -> None:
        level = self.rate_level if level is None else level
        higher = floor > self.floor
        same = (floor == self.floor) & (floor > float("-inf"))
        self.floor_level = torch.where(higher, level, torch.where(
            same, torch.maximum(self.floor_level, torch.as_tensor(level, device=self.device)),
            self.floor_level))
        self.floor = torch.maximum(self.floor, floor)

    def _flush(self) -> None:
        """Merge pending candidates into the buffer, keeping each unit's largest ``capacity``."""
        values = torch.cat([self.values, *(v for v, _ in self._pending)], dim=1)
        levels = torch.cat([self.levels, *(lv for _, lv in self._pending)], dim=1)
        self._pending, self._pending_width = [], 0
        keep = (values >= self.floor[:, None]) & (values > float("-inf")) & \
            (levels >= self.rate_level)
        width = int(keep.sum(1).max()) if values.numel() else 0
        values = torch.where(keep, values, float("-inf"))
        if width > self.capacity:
            top = torch.topk(values, self.capacity + 1, dim=1)
            # every dropped value is <= the (capacity+1)-th: all kept values above it are complete
            self._raise_floor(top.values[:, -1])
            self.values = top.values[:, :-1].contiguous()
            self.levels = torch.gather(levels, 1, top.indices[:, :-1])
        elif width < values.shape[1]:
            top = torch.topk(values, width, dim=1)
            self.values = top.values.contiguous()
            self.levels = torch.gather(levels, 1, top.indices)
        else:
            self.values, self.levels = values, levels

    # -- results ---------------------------------------------------------------------
    def quantile_values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (1 - q) quantile per unit (float32 [U]; +inf with no values) and whether it is
        fully determined by the kept values (bool [U]; False only if the buffer ran short)."""
        self._flush()
        # float64 arithmetic on the CPU (not every device has it); the result moves back
        n = self.counts().cpu()
        values, floor = self.values.cpu(), self.floor.cpu()
        ordered = torch.sort(values, dim=1, descending=True).values
        complete = ((values >= floor[:, None]) & (values > float("-inf"))).sum(1)
        pos = (n - 1).clamp(min=0).double() * (1.0 - self.quantile)
        lo = torch.floor(pos)
        frac = pos - lo
        d_lo = n - 1 - lo.long()  # descending index of ascending rank lo
        d_hi = (d_lo - 1).clamp(min=0)
        width = ordered.shape[1]

        def value_at(d: torch.Tensor) -> torch.Tensor:
            if width == 0:
                return floor.double()
            got = torch.gather(ordered, 1, d.clamp(0, width - 1)[:, None])[:, 0].double()
            return torch.where(d < complete, got, floor.double())

        v_lo, v_hi = value_at(d_lo), value_at(d_hi)
        result = (v_lo + (v_hi - v_lo) * frac).float()
        result = torch.where(n > 0, result, torch.full_like(result, float("inf")))
        determined = (d_lo < complete) | (n <= 0) | (
            (self.floor_level.cpu() >= self.rate_level) & (d_lo < self.capacity))
        return result.to(self.device), determined.to(self.device)

    def quantile_threshold(self) -> torch.Tensor:
        """The (1 - q) quantile per unit, float32 [U]."""
        return self.quantile_values()[0]

    @property
    def exact(self) -> bool:
        """True when every unit's quantile is exact (rate 1 and a sufficient buffer)."""
        return self.rate_level == 0 and bool(self.quantile_values()[1].all())

    def tail_samples(self) -> torch.Tensor:
        """Sampled values above the quantile per unit (``m`` of the error bound), float64 [U]
        on the CPU."""
        return self.counts().cpu().double() * self.quantile

    def rel_error(self, confidence: float = 0.999) -> torch.Tensor:
        """Bound on |coverage/q - 1| holding with ``confidence`` per unit (0 when exact),
        float64 [U] on the CPU."""
        if self.rate_level == 0:
            return torch.zeros(self.units, dtype=torch.float64)
        m = self.tail_samples().clamp(min=1.0)
        return torch.sqrt(3.0 * math.log(2.0 / (1.0 - confidence)) / m)

    # -- checkpointing and merging ---------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"units": self.units, "quantile": self.quantile, "capacity": self.capacity,
                "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue or merge, as CPU tensors and plain numbers."""
        self._flush()
        return {**self._meta(), "kind": "TailQuantile", "rate_level": self.rate_level,
                "values": self.values.cpu(), "levels": self.levels.cpu(),
                "floor": self.floor.cpu(), "floor_level": self.floor_level.cpu(),
                "level_counts": self.level_counts.cpu(),
                "excluded": self.excluded.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output (its settings must match this sketch's)."""
        meta = self._meta()
        if state.get("kind") != "TailQuantile" or {k: state[k] for k in meta} != meta:
            raise ValueError("state does not belong to a TailQuantile with these settings")
        self.rate_level = int(state["rate_level"])
        self.values = state["values"].to(self.device, torch.float32)
        self.levels = state["levels"].to(self.device, torch.uint8)
        self.floor = state["floor"].to(self.device, torch.float32)
        self.floor_level = state["floor_level"].to(self.device, torch.int64)
        self.level_counts = state["level_counts"].to(self.device, torch.int64)
        self.excluded = state["excluded"].to(self.device, torch.int64)
        self._pending, self._pending_width = [], 0

    def merge(self, other: TailQuantile) -> None:
        """Absorb ``other`` (the same settings, a disjoint set of images)."""
        if other._meta() != self._meta():
            raise ValueError("cannot merge TailQuantile sketches with different settings")
        other._flush()
        self._flush()
        self.rate_level = max(self.rate_level, other.rate_level)
        self._raise_floor(other.floor.to(self.device), other.floor_level.to(self.device))
        self.level_counts += other.level_counts.to(self.device)
        self.excluded += other.excluded.to(self.device)
        self._pending = [(other.values.to(self.device), other.levels.to(self.device))]
        self._thin()
        self._flush()

"""Exact per-unit top quantiles of the upsampled maps, by radix selection in sparse sweeps.

The threshold T_k is the (1 - q) quantile of unit k's upsampled values S_k over every pixel of
every probe image (numpy's linear method): a blend of the r-th and (r-1)-th largest values,
r = ``needed_top(n, q)``. ``ThresholdSearch`` finds both exactly without ever upsampling a map
densely and without keeping values:

1. **Bracket** (during the forward pass). Every upsampled value lies between the lowest and the
   highest of the four corner activations of its cell (the pixels that blend the same 2 x 2
   block of the layer's grid). Histograms of those cell bounds, weighted by the cells' pixel
   counts, over 4,096 coarse bins of the float's order (sign, exponent, top mantissa bits),
   give per unit an interval of float keys that holds both order statistics: at least r
   pixels lie above its lower end, fewer than r - 1 above its upper end. The first sweep
   searches a tighter guess, taken from a sample of the cells' values (each cell's surface
   at its four quarter points): a floor with about 1.5 r sampled values above it and, where
   segments are long, a ceiling with about 2/3 r above it, whose values are counted by
   segment without being computed. Where the guess misses, the next sweep searches between
   it and the guaranteed end.
2. **Radix sweeps** (over the cached activations). Only pixels above the interval's lower end
   are computed (``Upsampler.above``: cells that cannot reach it are skipped); their float
   keys are counted in a 4,096-bin histogram of the interval. The bins holding the two order
   statistics become the next interval, 4,096 times narrower. The values above the new
   interval are counted already, so later sweeps compute only the values inside it (a ceiling
   in ``Upsampler.above``). Bins of one key each settle them exactly, typically on the second
   or third sweep.

On the CPU, ``add_bounds`` and ``add_maps`` run compiled kernels (``kernels.py``) that count
exactly what the PyTorch path (``Upsampler.cell_bounds``, ``Upsampler.above`` and
``add_values``) counts, without materialising the values.

Keys are the float32 bit patterns mapped to integers in the order of the values, so every
comparison is exact and no rounding can misplace a value. Every statistic is a count, so runs
merge (histograms add) and checkpoint as a few tensors. Memory: two histograms of
``units x 4096`` and ``units x 2 x 4096`` counts.

Layers whose units are never negative (post-ReLU) usually have T_k = 0 for sparse units: there
the search counts only positive values and the rest are zeros, so those units stay sparse.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from . import kernels
from .iou import _BOUND_SLACK, Upsampler

__all__ = ["ThresholdSearch", "float_keys", "key_floats"]

log = logging.getLogger(__name__)

#: Coarse bins: the top 12 bits of a float's key.
_COARSE_SHIFT = 20
_COARSE_BINS = 1 << (32 - _COARSE_SHIFT)
#: Bins of each radix sweep (a power of two).
_BINS_LOG2 = 12
_BINS = 1 << _BINS_LOG2
#: Key units of slack at both ends of the bracket: covers the interpolation's rounding (the
#: computed S may leave the hull of its corners by a few ulps, about 2^-22 relative).
_MARGIN = 1 << 6
#: The keys of -inf and +inf: every other key is a NaN.
_KEY_MIN, _KEY_MAX = -2139095041, 2139095040
#: The shortest segments for which the first sweep guesses a ceiling: cutting a segment at it
#: costs a binary search, which saves little where segments are short (measured on ResNet-18
#: at 224 px: layer4, 32-pixel segments, 12.4 s -> 11.3 s; layer2, 8 pixels, 7.0 s -> 6.4 s;
#: layer1, 4 pixels, 7.9 s -> 9.2 s).
_CEILING_MIN_SEGMENT = 8
#: Ranks per unit: the r-th and the (r-1)-th largest value.
_TARGETS = 2


def float_keys(values: torch.Tensor, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Integer keys in the order of the float32 values (-0.0 just below +0.0); int64 unless
    ``dtype`` is torch.int32 (they fit; int64 leaves room for arithmetic on them)."""
    bits = values.float().contiguous().view(torch.int32)
    keys = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return keys if dtype == torch.int32 else keys.to(dtype)


def key_floats(keys: torch.Tensor) -> torch.Tensor:
    """The float32 values of keys made by ``float_keys``."""
    k = keys.clamp(_KEY_MIN, _KEY_MAX).to(torch.int32)  # never a NaN
    return (k ^ ((k >> 31) & 0x7FFFFFFF)).view(torch.float32)


class ThresholdSearch:
    """Exact (1 - q) quantiles of each unit's upsampled values: feed ``add_bounds`` with every
    batch, then sweep with ``add_values`` until ``done``; ``thresholds()`` gives T [U]."""

    def __init__(self, units: int, quantile: float, upsampler: Upsampler,
                 device: str | torch.device = "cpu") -> None:
        self.units, self.quantile, self.up = units, quantile, upsampler
        self.device = torch.device(device)
        # the weight of each entry of a batch's cell bounds (low, high: the pixels behind the
        # cell; each quarter-point sample: a quarter of them), fixed for the run. Most cells
        # have the same area: where they are most of the entries, the histograms count them
        # unweighted and correct the others with a small weighted count
        area = upsampler.bound_area.to(upsampler.device, torch.float64)
        share = torch.tensor([1.0, 1.0] + [0.25] * 4, dtype=torch.float64, device=area.device)
        self.area = area.mode().values if area.numel() else area.new_zeros(())
        odd = (area != self.area).nonzero()[:, 0]
        self.bound_weights = (share[:, None] * area).reshape(-1)  # [6 * cells]
        self.common_weights = (share * self.area).to(self.device)  # per entry kind
        # the entries whose area is not the common one, and their difference
        self.odd_entries = (odd + area.numel() * torch.arange(6, device=area.device)[:, None]
                            ).reshape(-1)
        self.odd_weights = (share[:, None] * (area[odd] - self.area)).reshape(-1)
        self.few_odd = odd.numel() * 4 <= area.numel()
        z = lambda *s, dtype=torch.int64: torch.zeros(s, dtype=dtype, device=self.device)  # noqa: E731
        self.low_hist = torch.zeros(units * _COARSE_BINS, dtype=torch.float64, device=self.device)
        self.high_hist = torch.zeros_like(self.low_hist)
        self.mean_hist = torch.zeros_like(self.low_hist)
        self.excluded = z(units)  # pixels left out (non-finite activations)
        self.nonnegative = torch.ones(units, dtype=torch.bool, device=self.device)
        self.images = 0
        # the search, per (unit, target): key interval [lo, hi), bin width 2^shift, values at
        # or above hi counted in this sweep, the answer once found
        self.lo, self.hi, self.shift = z(units, _TARGETS), z(units, _TARGETS), z(units, _TARGETS)
        self.fallback = z(units, _TARGETS)  # the guaranteed lower end, if lo is a guess
        self.above, self.found = z(units, _TARGETS), z(units, _TARGETS)
        # whether ``above`` already holds every value at or above hi (after the first sweep,
        # from the previous sweep's counts): then the sweep needs no value there
        self.above_known = torch.zeros(units, _TARGETS, dtype=torch.bool, device=self.device)
        # the first sweep's ceiling is a guess too: the values above it are left out but
        # counted (``add_values``' ``skipped``); if the guess proves low, the next sweep
        # searches between it and the guaranteed upper end, ``ceiling_fallback``
        self.counting = torch.zeros(units, _TARGETS, dtype=torch.bool, device=self.device)
        self.ceiling_fallback = z(units, _TARGETS)
        self.done = torch.zeros(units, _TARGETS, dtype=torch.bool, device=self.device)
        self.rank = z(units, _TARGETS)
        self.hist = z(units * _TARGETS * _BINS)
        self.started = False
        self.rounds = 0
        self.inexact = 0

    # -- pass 1 ------------------------------------------------------------------------
    def add_bounds(self, maps: torch.Tensor, excluded: torch.Tensor | None = None) -> None:
        """Count one batch's cell bounds; ``maps`` [B, U, h, w] finite, ``excluded``
        [B, U, H*W] the pixels left out (or None)."""
        batch, units = maps.shape[:2]
        self.nonnegative &= (maps.amin((0, 2, 3)) >= 0).to(self.device)
        self.images += batch
        if excluded is not None:
            self.excluded += excluded.sum((0, 2)).to(self.device, torch.int64)
        if kernels.enabled(maps, self.up, excluded):
            low, high, sample = (h.view(-1).to(self.device) for h in
                                 kernels.bound_counts(self.up, maps, _COARSE_SHIFT, _COARSE_BINS))
            self.low_hist += low
            self.high_hist += high
            self.mean_hist += sample
            return
        bounds = self.up.cell_bounds(maps)  # low, high, then the 4 quarter-point samples
        # int32 keys and bins (the coarse bin is the key's top 12 bits): half the memory
        # traffic; one bincount for the three histograms (low, high, sample)
        span = units * _COARSE_BINS
        offset = (torch.arange(units, device=maps.device, dtype=torch.int32) * _COARSE_BINS
                  + _COARSE_BINS // 2)[None, :, None]
        bins = torch.cat([(float_keys(b, torch.int32) >> _COARSE_SHIFT)
                          + (offset + span * min(i, 2)) for i, b in enumerate(bounds)], 2)

        def weighted(entries: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            weights = weights.to(entries.device).expand(batch, units, -1).reshape(-1)
            return torch.bincount(entries.reshape(-1), weights, 3 * span).to(self.device) \
                .view(3, span)

        if self.few_odd:
            # most cells have the common area: count unweighted, then add the difference of
            # the others, weighted
            counts = torch.bincount(bins.reshape(-1), minlength=3 * span).to(self.device)
            hist = counts.view(3, span) * self.common_weights[[0, 1, 2], None]
            hist += weighted(bins.index_select(2, self.odd_entries.to(bins.device)),
                             self.odd_weights)
        else:  # few cells, many at the edge (deep layers): weigh every one
            hist = weighted(bins, self.bound_weights)
        self.low_hist += hist[0]
        self.high_hist += hist[1]
        self.mean_hist += hist[2]

    def counts(self) -> torch.Tensor:
        """Values per unit (int64 [U])."""
        return self.images * self.up.pixels - self.excluded

    def start(self) -> None:
        """Fix each unit's bracket from the bounds (after pass 1)."""
        n = self.counts()
        pos = (n - 1).clamp(min=0).double() * (1.0 - self.quantile)
        d_lo = n - 1 - torch.floor(pos).long()  # descending index of the lower order statistic
        self.rank = torch.stack([d_lo + 1, d_lo.clamp(min=1)], 1).clamp(min=1)
        # at least rank values lie above the low bound's bin; fewer above the high one's
        def bin_of(hist: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
            from_top = hist.view(self.units, _COARSE_BINS).flip(1).cumsum(1).flip(1)
            return (from_top[:, None, :] >= rank[:, :, None]).sum(2) - 1 - _COARSE_BINS // 2

        self.lo = (bin_of(self.low_hist, self.rank) << _COARSE_SHIFT) - _MARGIN
        self.hi = ((bin_of(self.high_hist, self.rank) + 1) << _COARSE_SHIFT) + _MARGIN
        # the guaranteed lower end is often far too low (one zero corner makes a cell's low
        # bound 0): start from a guess, where about 1.5 times the rank lie above a sample of the
        # cells' surfaces (each at its 4 quarter points, a quarter of its pixels each), and
        # fall back to the guaranteed end only where the guess proves too high
        # (one guess for both order statistics, from the larger rank: they share a sweep)
        guess = self._guess((self.rank * 3 // 2).minimum(n[:, None])).amin(1, keepdim=True)
        # a unit with non-finite values: no bounds hold, search every value
        odd = (self.excluded > 0)[:, None].expand_as(self.lo)
        self.lo = torch.where(odd, torch.full_like(self.lo, _KEY_MIN), self.lo)
        self.hi = torch.where(odd, torch.full_like(self.hi, _KEY_MAX + 1), self.hi)
        # never-negative units: count positive values only, the others are zeros
        self.lo = torch.where(self.nonnegative[:, None], self.lo.clamp(min=1), self.lo)
        self.fallback = self.lo.clone()
        self.lo = torch.where(odd, self.lo, torch.maximum(self.lo, guess))
        self.hi = torch.maximum(self.hi, self.lo + 1)
        # and a ceiling where about 2/3 of the rank lie above the sample: the first sweep
        # computes only the values between the two guesses (the rest of its values are
        # counted by segment, not one by one)
        self.ceiling_fallback = self.hi.clone()
        ceiling = self._guess((self.rank * 2 // 3).clamp(min=1)).amax(1, keepdim=True)
        self.counting = (~odd & (ceiling > self.lo) & (ceiling < self.hi)
                         & (self.up.seg_len >= _CEILING_MIN_SEGMENT))
        self.hi = torch.where(self.counting, ceiling.expand_as(self.hi), self.hi)
        self.done = (n <= 0)[:, None].expand(-1, _TARGETS).clone()
        self.found.zero_()
        self.above.zero_()
        self.above_known.zero_()
        self._set_shift()
        self.started = True
        # the coarse histograms have served: free them (and keep them out of checkpoints)
        self.low_hist = self.high_hist = self.mean_hist = self.low_hist.new_zeros(0)

    def _guess(self, rank: torch.Tensor) -> torch.Tensor:
        """The key above which about ``rank`` [U, T] of the sampled values lie: the coarse bin
        that holds the rank, interpolated linearly inside it (a bin spans 1/8 octave)."""
        hist = self.mean_hist.view(self.units, _COARSE_BINS)
        from_top = hist.flip(1).cumsum(1).flip(1)  # sampled pixels at or above each bin
        pick = (from_top[:, None, :] >= rank[:, :, None]).sum(2) - 1  # [U, T]; -1: none
        at = pick.clamp(min=0)
        above = torch.where(at + 1 < _COARSE_BINS,
                            from_top.gather(1, (at + 1).clamp(max=_COARSE_BINS - 1)),
                            torch.zeros_like(from_top[:, :1]))
        inside = hist.gather(1, at)
        share = ((rank - above) / inside.clamp(min=1e-9)).clamp(0, 1)  # of the bin, from its top
        top = (pick - _COARSE_BINS // 2 + 1) << _COARSE_SHIFT
        return top - (share * (1 << _COARSE_SHIFT)).ceil().long()

    def _set_shift(self) -> None:
        width = (self.hi - self.lo - 1).clamp(min=0)
        bits = torch.zeros_like(width)
        # bit length of the width, vectorised (keys span at most 2^33)
        for b in range(34):
            bits = torch.where(width >= (1 << b), torch.full_like(bits, b + 1), bits)
        self.shift = (bits - _BINS_LOG2).clamp(min=0)
        self.hist.zero_()  # each sweep counts its interval afresh

    @property
    def shared(self) -> torch.Tensor:
        """Units whose two order statistics share one interval (the usual case: they are
        neighbours): a sweep counts the first only and copies its counts to the second."""
        return ((self.lo[:, 0] == self.lo[:, 1]) & (self.hi[:, 0] == self.hi[:, 1])
                & (self.shift[:, 0] == self.shift[:, 1]) & (self.done[:, 0] == self.done[:, 1]))

    # -- the sweeps ----------------------------------------------------------------------
    @property
    def done_all(self) -> bool:
        """Whether every order statistic is found."""
        return self.started and bool(self.done.all())

    def sweep_thresholds(self) -> torch.Tensor:
        """Per unit, the value every pixel of the next sweep must exceed (float32 [U])."""
        idle = _KEY_MAX + 1  # a unit with nothing left to find
        lo = torch.where(self.done, torch.full_like(self.lo, idle), self.lo).amin(1)
        # key - 1 as a float; below key 0 (+0.0) step over -0.0, which compares equal to it
        floor = key_floats(torch.where(lo == 0, lo - 2, lo - 1))
        return torch.where(lo == idle, torch.full_like(floor, torch.finfo(torch.float32).max),
                           floor)

    def sweep_ceilings(self) -> torch.Tensor:
        """Per unit, the value from which the next sweep needs no pixel (float32 [U]; +inf
        where the sweep must count them): every one is already counted in ``above``."""
        idle = torch.full_like(self.hi, _KEY_MIN)
        hi = torch.where(self.done, idle, self.hi).amax(1)
        known = (self.above_known | self.counting | self.done).all(1) & ~self.done.all(1)
        # the float of key hi, except that +0.0 would also take -0.0 (key -1): use the
        # smallest positive float there
        ceiling = key_floats(torch.where(hi == 0, torch.ones_like(hi), hi))
        return torch.where(known, ceiling, torch.full_like(ceiling, float("inf")))

    def add_maps(self, maps: torch.Tensor, excluded: torch.Tensor | None = None) -> None:
        """Count one batch of a sweep from the layer's maps [B, U, h, w] (``excluded``
        [B, U, H*W] the pixels left out, or None): the compiled kernel on the CPU, else
        ``Upsampler.above`` and ``add_values``; both give the same counts."""
        floor, ceilings = self.sweep_thresholds(), self.sweep_ceilings()
        if not kernels.enabled(maps, self.up, excluded):
            skipped = torch.zeros(maps.shape[1], dtype=torch.int64, device=maps.device)
            _, u, _, values = self.up.above(maps, floor, excluded, values=True, positions=False,
                                            ceilings=ceilings, skipped=skipped)
            self.add_values(u, values, skipped)
            return
        # the same counts as ``add_values``: a unit's second target only where it does not
        # share the first one's interval; values at or above hi counted unless known already
        active = ~self.done
        active[:, 1:] &= ~self.shared[:, None]
        hist, over, skipped = kernels.sweep_counts(
            self.up, maps, floor, ceilings, self.lo, self.hi, self.shift, active,
            ~self.above_known, _BINS, _BOUND_SLACK)
        self.hist += hist.view(-1).to(self.device)
        self.above += over.to(self.device)
        self._add_skipped(skipped)

    def _add_skipped(self, skipped: torch.Tensor) -> None:
        """Count the values a sweep left out at its ceilings [U]: above each order statistic
        whose ceiling is the first sweep's guess (the others know theirs already)."""
        self.above += torch.where(self.counting, skipped.to(self.device)[:, None], 0)

    def add_values(self, u: torch.Tensor, values: torch.Tensor,
                   skipped: torch.Tensor | None = None) -> None:
        """Count one batch of a sweep: unit ``u`` and value of pixels above the sweep's
        thresholds (more may be given; they are filtered), and ``skipped`` [U], the pixels
        at or above the sweep's ceilings that were left out (None: none was)."""
        if skipped is not None:
            self._add_skipped(skipped)
        bins = self.hist.numel()
        dump = bins + self.units  # one bincount: interval bins, then per-unit "above", then this
        # int32 arithmetic (half the memory traffic) unless an interval is wider than int32
        # can count; a key far outside its interval may wrap, but it is sent to "above" or
        # the dump by comparisons of the keys themselves, never of their differences
        live = ~self.done
        wide = bool(((self.hi - self.lo)[live] >= 2 ** 31 - 1).any()) if bool(live.any()) else False
        dtype = torch.int64 if wide else torch.int32
        key = float_keys(values.to(self.device), dtype)
        u = u.to(self.device)
        units = torch.arange(self.units, device=self.device)
        shared = self.shared
        for t in range(_TARGETS):
            # a unit's second target usually shares the first one's counts (see ``shared``)
            searching = ~self.done[:, t] if t == 0 else ~self.done[:, t] & ~shared
            if not bool(searching.any()):
                continue
            uu, kk = u, key
            if t and not bool(searching.all()):
                pick = searching.index_select(0, u).nonzero()[:, 0]
                uu, kk = u.index_select(0, pick), key.index_select(0, pick)
            # per-unit tables gathered once per value: a unit not searching has an empty
            # interval; values at or above hi go to the unit's "above" count, unless the
            # previous sweep already counted them
            lo = torch.where(searching, self.lo[:, t], _KEY_MAX + 1).to(dtype).index_select(0, uu)
            hi = self.hi[:, t].to(dtype).index_select(0, uu)
            over = torch.where(self.above_known[:, t], dump, bins + units).to(dtype)
            base = ((units * _TARGETS + t) << _BINS_LOG2).to(dtype).index_select(0, uu)
            shift = self.shift[:, t].to(dtype).index_select(0, uu)
            slot = base.add_((kk - lo).bitwise_right_shift_(shift))
            slot = torch.where(kk >= hi, over.index_select(0, uu), slot).masked_fill_(kk < lo, dump)
            counts = torch.bincount(slot, minlength=dump + 1)
            self.hist += counts[:bins]
            self.above[:, t] += counts[bins:dump]

    def end_sweep(self) -> None:
        """Narrow each interval to the bin of its order statistic."""
        hist = self.hist.view(self.units, _TARGETS, _BINS)
        shared = self.shared  # as during the sweep: the intervals change below
        hist[shared, 1] = hist[shared, 0]
        self.above[shared, 1] = self.above[shared, 0]
        # a ceiling guessed too low: the order statistic lies above it; search between it and
        # the guaranteed upper end next (counting every value there)
        low_ceiling = self.counting & ~self.done & (self.above >= self.rank)
        from_top = hist.flip(2).cumsum(2).flip(2) + self.above[:, :, None]
        pick = (from_top >= self.rank[:, :, None]).sum(2) - 1
        # values at or above each bin's upper end: the next sweep's ``above``
        beyond = torch.cat([from_top[:, :, 1:], self.above[:, :, None]], 2)
        short = (pick < 0) & ~self.done & ~low_ceiling
        # a guess that was too high: search again from the guaranteed end, below it
        retry = short & (self.lo > self.fallback)
        self.hi = torch.where(retry, self.lo, self.hi)
        self.lo = torch.where(retry, self.fallback, self.lo)
        short &= ~retry
        # values not counted by a never-negative unit are zeros
        zero = short & self.nonnegative[:, None]
        if bool((short & ~zero).any()):
            self.inexact += int((short & ~zero).sum())
            log.warning("threshold search: %d order statistics fell below their bracket; "
                        "using the bracket's end", int((short & ~zero).sum()))
        pick = pick.clamp(min=0)
        start = self.lo + (pick << self.shift)
        settled = ~self.done & ~short & ~retry & ~low_ceiling & (self.shift == 0)
        self.found = torch.where(settled, start, self.found)
        self.found = torch.where(zero, torch.zeros_like(self.found), self.found)
        self.found = torch.where(short & ~zero, self.lo, self.found)
        narrow = ~self.done & ~short & ~settled & ~retry & ~low_ceiling
        self.above = torch.where(narrow, beyond.gather(2, pick[:, :, None])[:, :, 0],
                                 torch.where(retry, from_top[:, :, 0], self.above))
        self.above = torch.where(low_ceiling, torch.zeros_like(self.above), self.above)
        self.above_known = (self.above_known | narrow | retry) & ~low_ceiling
        self.hi = torch.where(narrow, start + (1 << self.shift), self.hi)
        self.lo = torch.where(narrow, start, self.lo)
        self.lo = torch.where(low_ceiling, self.hi, self.lo)
        self.hi = torch.where(low_ceiling, self.ceiling_fallback, self.hi)
        self.counting = torch.zeros_like(self.counting)
        self.done = self.done | settled | short
        self.rounds += 1
        self._set_shift()

    def thresholds(self) -> torch.Tensor:
        """T per unit (float32 [U]; +inf for a unit without values)."""
        n = self.counts().cpu()
        pos = (n - 1).clamp(min=0).double() * (1.0 - self.quantile)
        frac = pos - torch.floor(pos)
        values = key_floats(self.found.cpu()).double()
        v_lo, v_hi = values[:, 0], values[:, 1]
        result = (v_lo + (v_hi - v_lo) * frac).float()
        return torch.where(n > 0, result, torch.full_like(result, float("inf"))).to(self.device)

    # -- checkpointing and merging -------------------------------------------------------
    _FIELDS = ("low_hist", "high_hist", "mean_hist", "excluded", "nonnegative", "lo", "hi",
               "fallback", "shift", "above", "above_known", "found", "done", "rank", "hist",
               "counting", "ceiling_fallback")

    def state_dict(self) -> dict[str, Any]:
        """Every count and the search's state, as CPU tensors."""
        return {"kind": "ThresholdSearch", "units": self.units, "quantile": self.quantile,
                "images": self.images, "started": self.started, "rounds": self.rounds,
                "inexact": self.inexact, **{f: getattr(self, f).cpu() for f in self._FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output."""
        if state.get("kind") != "ThresholdSearch" or state["units"] != self.units or \
                state["quantile"] != self.quantile:
            raise ValueError("state does not belong to a ThresholdSearch with these settings")
        for f in self._FIELDS:
            if f in ("above_known", "counting") and f not in state:  # older checkpoints
                setattr(self, f, torch.zeros_like(self.done))  # count them again
                continue
            if f == "ceiling_fallback" and f not in state:  # older: hi was never guessed
                self.ceiling_fallback = state["hi"].to(self.device).clone()
                continue
            setattr(self, f, state[f].to(self.device).clone())  # never alias the state
        self.images, self.started = int(state["images"]), bool(state["started"])
        self.rounds, self.inexact = int(state["rounds"]), int(state["inexact"])

    def merge(self, other: ThresholdSearch) -> None:
        """Add ``other``'s counts (other images, the same stage of the search)."""
        if (other.units, other.quantile, other.started) != (self.units, self.quantile,
                                                           self.started):
            raise ValueError("cannot merge threshold searches at different stages")
        if self.started and not (torch.equal(self.lo, other.lo.to(self.device)) and
                                 torch.equal(self.hi, other.hi.to(self.device))):
            raise ValueError("cannot merge threshold searches with different intervals")
        for f in ("low_hist", "high_hist", "mean_hist", "excluded", "above", "hist"):
            getattr(self, f).add_(getattr(other, f).to(self.device))
        self.nonnegative &= other.nonnegative.to(self.device)
        self.images += other.images

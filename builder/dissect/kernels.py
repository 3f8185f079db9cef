"""Compiled CPU kernels (numba) for the hot loops of a dissection: the cell bounds of the
threshold search's pass 1, one sweep of the search, the IoU count, and the largest values of
the one-pass quantile statistic (``Upsampler.tail``), the last three over the upsampled
pixels that can pass a unit's threshold.

The PyTorch path (``Upsampler.above`` and friends) runs these loops as chains of vectorised
operations, each a pass over tens of millions of values; on a CPU that costs several times a
forward pass. Here one loop per unit does all of it while the values are in registers: for
each cell it reads the four corner activations, skips the cell when none of its pixels can
matter, and otherwise blends its columns (the horizontal pass) and then its pixels. Every value
is computed with exactly the float32 operations of the PyTorch path (``a * w0 + b * w1`` for
each of the two passes, no fused multiply-add), so both give the same bits and the same
counts, which the tests check. The PyTorch path stays the one for GPUs, for batches with
non-finite activations, and where numba is not installed. An upsampler with zeros beyond the
edges (``padding="zeros"``) gives the kernels its zero-padded maps (``Upsampler.grid``), so
they run unchanged; the IoU count can also note which categories each mask overlaps (the
``overlap`` union).

Units are spread over threads (``prange``): each thread writes only its units' rows of the
outputs, so no two threads touch the same count.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import numpy as np
import torch

__all__ = ["bound_counts", "enabled", "mask_counts", "sweep_counts", "tail_values"]

#: Off with UNITDISSECT_KERNELS=0 (the PyTorch path everywhere; tests compare the two).
ENABLED = os.environ.get("UNITDISSECT_KERNELS", "1") != "0"


def enabled(maps: torch.Tensor, up: Any, excluded: torch.Tensor | None) -> bool:
    """Whether the kernels can serve this batch: on the CPU, numba present, finite maps,
    and a real upsampling (the identity keeps -0.0 apart from +0.0, which a blend would not)."""
    return (ENABLED and maps.device.type == "cpu" and excluded is None and not up.identity
            and _HAVE_NUMBA)


#: numba is a dependency; without it (an unusual platform) the PyTorch path runs.
_HAVE_NUMBA = importlib.util.find_spec("numba") is not None


@functools.cache
def _compiled() -> tuple[Any, ...]:
    """The kernels, compiled on first use (numba caches the machine code on disk)."""
    import numba

    def jit(fn: Any) -> Any:
        try:
            return numba.njit(parallel=True, cache=True, nogil=True)(fn)
        except RuntimeError:  # no writable cache location: compile in every process instead
            return numba.njit(parallel=True, nogil=True)(fn)

    @jit
    def _bounds(maps, geometry, shift, half, low_hist, high_hist, sample_hist
                ):  # pragma: no cover - compiled
        gy0, gy1, row0, length, w0, w1, gx0, gx1, col0, col_len, wx0, wx1 = geometry
        batch, units = maps.shape[:2]
        q1, q3, zero = np.float32(0.25), np.float32(0.75), np.float32(0.0)
        for u in numba.prange(units):
            buf = np.empty(6, np.float32)
            keys = buf.view(np.int32)
            for b in range(batch):
                m = maps[b, u]
                for g in range(gy0.size):
                    r0, r1 = gy0[g], gy1[g]
                    for k in range(gx0.size):
                        p00, p01, p10, p11 = m[r0, gx0[k]], m[r0, gx1[k]], m[r1, gx0[k]], m[r1, gx1[k]]
                        # (+ 0.0: -0.0 becomes +0.0, as on the PyTorch path)
                        buf[0] = min(min(p00, p01), min(p10, p11)) + zero
                        buf[1] = max(max(p00, p01), max(p10, p11)) + zero
                        # the cell's surface at its four quarter points
                        top_l, top_r = p00 * q3 + p10 * q1, p01 * q3 + p11 * q1
                        bot_l, bot_r = p00 * q1 + p10 * q3, p01 * q1 + p11 * q3
                        buf[2], buf[3] = top_l * q3 + top_r * q1, top_l * q1 + top_r * q3
                        buf[4], buf[5] = bot_l * q3 + bot_r * q1, bot_l * q1 + bot_r * q3
                        area = np.float64(length[g] * col_len[k])
                        for i in range(6):
                            bits = np.int64(keys[i])
                            coarse = ((bits ^ ((bits >> 31) & 0x7FFFFFFF)) >> shift) + half
                            if i == 0:
                                low_hist[u, coarse] += area
                            elif i == 1:
                                high_hist[u, coarse] += area
                            else:
                                sample_hist[u, coarse] += area * 0.25

    @jit
    def _sweep(maps, geometry, floor, low, ceiling, high, lo, hi, shift, active, count_over,
               hist, over, skipped):  # pragma: no cover - compiled
        gy0, gy1, row0, length, w0, w1, gx0, gx1, col0, col_len, wx0, wx1 = geometry
        batch, units = maps.shape[:2]
        targets = lo.shape[1]
        for u in numba.prange(units):
            fl, lw, ce, cw = floor[u], low[u], ceiling[u], high[u]
            buf = np.empty(w0.shape[1], np.float32)
            keys = buf.view(np.int32)  # the bits of the values, for their keys
            for b in range(batch):
                m = maps[b, u]
                for g in range(gy0.size):
                    r0, r1, n = gy0[g], gy1[g], length[g]
                    for k in range(gx0.size):
                        # a cell's values lie between its corners (up to rounding: the slack)
                        p00, p01, p10, p11 = m[r0, gx0[k]], m[r0, gx1[k]], m[r1, gx0[k]], m[r1, gx1[k]]
                        if not max(max(p00, p01), max(p10, p11)) > lw:
                            continue
                        if min(min(p00, p01), min(p10, p11)) > cw:
                            skipped[u] += n * col_len[k]  # all at or above the ceiling
                            continue
                        for x in range(col0[k], col0[k] + col_len[k]):
                            a = p00 * wx0[x] + p01 * wx1[x]  # the horizontal pass
                            c = p10 * wx0[x] + p11 * wx1[x]
                            if not max(a, c) > lw:
                                continue
                            if min(a, c) > cw:
                                skipped[u] += n
                                continue
                            for r in range(n):
                                buf[r] = a * w0[g, r] + c * w1[g, r]
                            for r in range(n):
                                v = buf[r]
                                if not v > fl:
                                    continue
                                if v >= ce:
                                    skipped[u] += 1
                                    continue
                                bits = np.int64(keys[r])
                                key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
                                for t in range(targets):
                                    if not active[u, t] or key < lo[u, t]:
                                        continue
                                    if key >= hi[u, t]:
                                        if count_over[u, t]:
                                            over[u, t] += 1
                                        continue
                                    hist[u, t, (key - lo[u, t]) >> shift[u, t]] += 1

    @jit
    def _count(maps, geometry, thr, low, labels, out_width, intersection, per_image, category,
               touched):  # pragma: no cover - compiled
        gy0, gy1, row0, length, w0, w1, gx0, gx1, col0, col_len, wx0, wx1 = geometry
        batch, units = maps.shape[:2]
        layers = labels.shape[1]
        track = touched.shape[0] > 0  # which categories each mask overlaps, per image
        for u in numba.prange(units):
            t, lw = thr[u], low[u]
            for b in range(batch):
                m = maps[b, u]
                inside = 0
                for g in range(gy0.size):
                    r0, r1, n, row = gy0[g], gy1[g], length[g], row0[g]
                    for k in range(gx0.size):
                        p00, p01, p10, p11 = m[r0, gx0[k]], m[r0, gx1[k]], m[r1, gx0[k]], m[r1, gx1[k]]
                        if not max(max(p00, p01), max(p10, p11)) > lw:
                            continue
                        for x in range(col0[k], col0[k] + col_len[k]):
                            a = p00 * wx0[x] + p01 * wx1[x]
                            c = p10 * wx0[x] + p11 * wx1[x]
                            if not max(a, c) > lw:
                                continue
                            for r in range(n):
                                if a * w0[g, r] + c * w1[g, r] > t:
                                    inside += 1
                                    p = (row + r) * out_width + x
                                    for layer in range(layers):
                                        label = labels[b, layer, p]
                                        intersection[u, label] += 1
                                        if track and category[label] >= 0:
                                            touched[b, u, category[label]] = 1
                per_image[b, u] = inside

    @jit
    def _tail(maps, geometry, floor, slack, limit, levels, min_level, sampled, out_width,
              packed, values_out, levels_out, counts, floor_out):  # pragma: no cover - compiled
        gy0, gy1, row0, length, w0, w1, gx0, gx1, col0, col_len, wx0, wx1 = geometry
        batch, units = maps.shape[:2]
        cap = packed.shape[1]
        for u in numba.prange(units):
            fl = floor[u]
            buf = np.empty(w0.shape[1], np.float32)
            keys = buf.view(np.int32)
            back = np.empty(1, np.int32)  # a key's bits, to read back as a float
            back_value = back.view(np.float32)
            if fl == -np.inf:
                # a unit's first batch: a floor under at least ``limit`` sampled values, from
                # the cells' lowest corners (weighted by their sampled pixels), so that the
                # pass below keeps only a few times ``limit`` values
                hist = np.zeros(4096, np.float64)
                for b in range(batch):
                    m = maps[b, u]
                    for g in range(gy0.size):
                        r0, r1 = gy0[g], gy1[g]
                        for k in range(gx0.size):
                            low = min(min(m[r0, gx0[k]], m[r0, gx1[k]]),
                                      min(m[r1, gx0[k]], m[r1, gx1[k]])) + np.float32(0.0)
                            buf[0] = low
                            bits = np.int64(keys[0])
                            hist[((bits ^ ((bits >> 31) & 0x7FFFFFFF)) >> 20) + 2048] += \
                                sampled[b, g, k]
                seen = 0.0
                for i in range(4095, -1, -1):
                    seen += hist[i]
                    if seen >= limit:
                        key = max((np.int64(i) - 2048) << 20, -2139095041)
                        back[0] = np.int32(key ^ ((key >> 31) & 0x7FFFFFFF))
                        edge = back_value[0]
                        fl = edge - abs(edge) * slack  # (the values may round below a corner)
                        break
            low = fl - abs(fl) * slack
            filled = 0
            for b in range(batch):
                m = maps[b, u]
                for g in range(gy0.size):
                    r0, r1, n, row = gy0[g], gy1[g], length[g], row0[g]
                    for k in range(gx0.size):
                        p00, p01, p10, p11 = m[r0, gx0[k]], m[r0, gx1[k]], m[r1, gx0[k]], m[r1, gx1[k]]
                        if not max(max(p00, p01), max(p10, p11)) > low:
                            continue
                        for x in range(col0[k], col0[k] + col_len[k]):
                            a = p00 * wx0[x] + p01 * wx1[x]
                            c = p10 * wx0[x] + p11 * wx1[x]
                            if not max(a, c) > low:
                                continue
                            for r in range(n):
                                buf[r] = a * w0[g, r] + c * w1[g, r]
                                if not buf[r] > fl:
                                    continue
                                level = levels[b, (row + r) * out_width + x]
                                if level < min_level:
                                    continue
                                if filled == cap:
                                    # full: keep the ``limit`` largest; the largest dropped
                                    # is the new floor
                                    part = np.partition(packed[u], cap - limit - 1)
                                    packed[u, :limit] = part[cap - limit:]
                                    key = part[cap - limit - 1] >> 8
                                    back[0] = np.int32(key ^ ((key >> 31) & 0x7FFFFFFF))
                                    fl = max(fl, back_value[0])
                                    filled, low = limit, fl - abs(fl) * slack
                                    if not buf[r] > fl:
                                        continue
                                # value and level in one integer, in the order of the values
                                bits = np.int64(keys[r])
                                key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
                                packed[u, filled] = (key << 8) | np.int64(level)
                                filled += 1
            if filled > limit:  # the same, to return at most ``limit``
                part = np.partition(packed[u, :filled], filled - limit - 1)
                packed[u, :limit] = part[filled - limit:]
                key = part[filled - limit - 1] >> 8
                back[0] = np.int32(key ^ ((key >> 31) & 0x7FFFFFFF))
                fl = max(fl, back_value[0])
                filled = limit
            for i in range(filled):
                key = packed[u, i] >> 8
                back[0] = np.int32(key ^ ((key >> 31) & 0x7FFFFFFF))
                values_out[u, i] = back_value[0]
                levels_out[u, i] = packed[u, i] & 0xFF
            values_out[u, filled:] = -np.inf
            counts[u] = filled
            floor_out[u] = fl

    return _bounds, _sweep, _count, _tail


def _kernel(index: int) -> Any:
    """Kernel ``index`` of ``_compiled()``, run on as many threads as PyTorch uses."""
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    return _compiled()[index]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _geometry(up: Any) -> tuple[np.ndarray, ...]:
    """The upsampler's row groups, their blend weights, and its column groups and weights."""
    return tuple(_np(t) for t in (up.gy0, up.gy1, up.row0, up.length, up.seg_w0, up.seg_w1,
                                  up.gx0, up.gx1, up.col0, up.col_length, up.wx0, up.wx1))


def _low(thresholds: torch.Tensor, slack: float) -> np.ndarray:
    """The value a segment's higher end must exceed to hold a pixel above the threshold:
    the threshold less the rounding slack (the PyTorch path's ``low_thr``)."""
    return _np(thresholds - thresholds.abs() * slack)


def _high(ceilings: torch.Tensor, slack: float) -> np.ndarray:
    """The value a segment's lower end must exceed for all its pixels to be at or above the
    ceiling: the ceiling plus the rounding slack."""
    return _np(ceilings + ceilings.abs() * slack)


def bound_counts(up: Any, maps: torch.Tensor, shift: int, bins: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pass 1 of the threshold search for one batch: per unit, histograms over ``bins``
    coarse bins (a key's top bits: ``key >> shift``, centred) of each cell's lowest corner,
    highest corner and four quarter-point samples, weighted by the pixels each stands for
    (float64 [U, bins] each; the same counts as ``Upsampler.cell_bounds`` gives)."""
    units = maps.shape[1]
    hists = tuple(np.zeros((units, bins), np.float64) for _ in range(3))
    _kernel(0)(_np(up.grid(maps).float()), _geometry(up), shift, bins // 2, *hists)
    return tuple(torch.from_numpy(h) for h in hists)


def tail_values(up: Any, maps: torch.Tensor, floor: torch.Tensor, limit: int,
                levels: torch.Tensor, min_level: int, slack: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``Upsampler.tail`` for one batch, with its guarantees: per unit at most ``limit`` of
    its largest values S > floor of level >= ``min_level`` (``levels`` [B, H*W]), float32
    [U, W] -inf padded, their levels uint8 [U, W], and the raised floor [U] (every such value
    above it is among those returned; at least ``limit`` are at or above it unless it is
    ``floor``)."""
    units = maps.shape[1]
    # room for as many again as kept: the kernel drops the excess whenever it is full
    packed = np.empty((units, 2 * limit + 16), np.int64)
    values = np.empty((units, limit), np.float32)
    value_levels = np.zeros((units, limit), np.uint8)
    counts = np.zeros(units, np.int64)
    raised = np.empty(units, np.float32)
    _kernel(3)(_np(up.grid(maps).float()), _geometry(up), _np(floor.float()), np.float32(slack),
               limit,
               _np(levels.to(torch.uint8)), min_level, _np(up.cell_sampled(levels, min_level)),
               up.out_size[1], packed, values, value_levels, counts, raised)
    width = int(counts.max()) if units else 0
    return (torch.from_numpy(values[:, :width]), torch.from_numpy(value_levels[:, :width]),
            torch.maximum(torch.from_numpy(raised), floor.float()))


def sweep_counts(up: Any, maps: torch.Tensor, floor: torch.Tensor, ceiling: torch.Tensor,
                 lo: torch.Tensor, hi: torch.Tensor, shift: torch.Tensor, active: torch.Tensor,
                 count_over: torch.Tensor, bins: int, slack: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of a threshold sweep: per unit and target, the histogram [U, T, bins] of the
    keys of pixels with floor < S < ceiling inside [lo, hi) (bin ``(key - lo) >> shift``),
    the pixels at or above hi [U, T] (where ``count_over``), and per unit the pixels at or
    above the ceiling [U]. ``active`` [U, T] says which targets count at all."""
    units, targets = lo.shape
    hist = np.zeros((units, targets, bins), np.int64)
    over = np.zeros((units, targets), np.int64)
    skipped = np.zeros(units, np.int64)
    floor, ceiling = floor.float(), ceiling.float()
    _kernel(1)(_np(up.grid(maps).float()), _geometry(up), _np(floor), _low(floor, slack),
                   _np(ceiling), _high(ceiling, slack), _np(lo.long()), _np(hi.long()),
                   _np(shift.long()), _np(active), _np(count_over), hist, over, skipped)
    return torch.from_numpy(hist), torch.from_numpy(over), torch.from_numpy(skipped)


def mask_counts(up: Any, maps: torch.Tensor, thresholds: torch.Tensor, labels: torch.Tensor,
                num_columns: int, slack: float, category: torch.Tensor | None = None,
                num_categories: int = 0) -> tuple[torch.Tensor, ...]:
    """The pixels of each unit's mask S > T in one batch: per unit and concept, how many of
    them carry the concept in any label layer (``labels`` [B, L, P], 0 = none; int64
    [U, num_columns], column 0 meaningless), and per image and unit how many there are
    (int64 [B, U]); given ``category`` (of each column, -1: none), also per image, unit and
    category whether a mask pixel carries a concept of it (bool [B, U, num_categories])."""
    batch, units = maps.shape[:2]
    if labels.numel():  # the kernel writes where the labels say: check them first
        low, high = torch.aminmax(labels)
        if int(low) < 0 or int(high) >= num_columns:
            raise ValueError(f"label ids must lie in [0, {num_columns}), got "
                             f"{int(low)}..{int(high)}")
    intersection = np.zeros((units, num_columns), np.int64)
    per_image = np.zeros((batch, units), np.int64)
    track = category is not None
    touched = np.zeros((batch, units, num_categories) if track else (0, 0, 0), np.uint8)
    table = _np(category.long()) if track else np.zeros(num_columns, np.int64)
    thresholds = thresholds.float()
    _kernel(2)(_np(up.grid(maps).float()), _geometry(up), _np(thresholds),
               _low(thresholds, slack), _np(labels.to(torch.int32)), up.out_size[1],
               intersection, per_image, table, touched)
    result = (torch.from_numpy(intersection), torch.from_numpy(per_image))
    return result + ((torch.from_numpy(touched.view(np.bool_)),) if track else ())

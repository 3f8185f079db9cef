"""Unit masks M_k = S_k > T_k on the annotation grid, and exact IoU counts against concepts.

``Upsampler`` computes the bilinear upsampling S_k (``align_corners=False``, PyTorch's
definition) only where it can matter. Bilinear interpolation is separable: a horizontal pass
gives ``Ah`` [B, U, h, W] (cheap: h rows instead of H), and every output pixel is then
``Ah[y0] * (1 - ly) + Ah[y1] * ly``. Within one *segment* (one output column between two rows
of the layer's grid) the values blend the same two ``Ah`` values, so those bound the segment;
segments whose bound is below the threshold (nearly all of them at q = 0.005) are skipped
without being computed. The few active segments are evaluated with exactly the same
floating-point operations as the dense path, so both paths give identical bits, and which
one runs is only a matter of speed. On the CPU the compiled kernels of ``kernels.py`` do the
same work (with the same operations, so the same bits) in one loop per unit;
``IoUCounts.add_maps`` picks the kernel or ``Upsampler.above``.

``Upsampler(padding="zeros")`` gives the PNAS code's variant: the same sample positions, with
zeros beyond the outer activations instead of their copies (the maps are padded with one zero
all around and the same machinery runs on that grid).

``IoUCounts`` accumulates int64 counts, from which

    IoU(k, c) = sum |M_k ∧ L_c| / (sum' |M_k| + sum |L_c| - sum |M_k ∧ L_c|)

where ``sum'`` (the union's mask area) runs over the images that carry any annotation of c's
category (``category``), over those where M_k overlaps an annotation of that category
(``overlap``, NetDissect-Lite's rule), or over every image (``all``). A pixel counts once for
a concept even when two label layers both carry it there (duplicates are removed from later
layers first, see ``dedupe_labels``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from . import kernels

__all__ = ["IoUCounts", "Upsampler", "dedupe_image_labels", "dedupe_labels", "label_units",
           "summarize_layer"]

#: Largest number of float elements one step materialises (bounds memory, ~64 MB).
CHUNK_ELEMENTS = 1 << 24
#: Use the segment path when active segments hold at most this fraction of all output pixels.
SPARSE_FRACTION = 0.25
#: Relative slack on a segment's bounds: covers the rounding of the vertical interpolation.
_BOUND_SLACK = 2.0 ** -18


def _axis(n_in: int, n_out: int, padding: str = "border") -> dict[str, np.ndarray]:
    """Source indices and weights of each output position, PyTorch's bilinear convention
    (align_corners=False); with ``padding="zeros"``, indices into the axis padded by one zero
    at each end, which a position beyond the outer sources blends with."""
    scale = np.float32(n_in) / np.float32(n_out)
    dst = np.arange(n_out, dtype=np.float32)
    src = scale * (dst + np.float32(0.5)) - np.float32(0.5)
    if padding == "zeros" and n_in > 1:
        # grid_sample(padding_mode="zeros")'s edges: no clamping; the interior's weights are
        # the border convention's, bit for bit (src - floor(src), as float32)
        i0 = np.floor(src).astype(np.int64)
        w1 = (src - i0.astype(np.float32)).astype(np.float32)
        return {"i0": i0 + 1, "i1": i0 + 2, "w0": (np.float32(1) - w1).astype(np.float32),
                "w1": w1, "clamped": np.zeros(n_out, dtype=bool)}
    # (a single source: the PNAS code's grid, align_corners=True over one pixel, reads it
    # everywhere, as the border convention does)
    shift = int(padding == "zeros")  # indices into the zero-padded axis
    clamped = src < 0
    src = np.where(clamped, np.float32(0), src).astype(np.float32)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    w1 = (src - i0.astype(np.float32)).astype(np.float32)
    w0 = (np.float32(1) - w1).astype(np.float32)
    return {"i0": i0 + shift, "i1": i1 + shift, "w0": w0, "w1": w1, "clamped": clamped}


def _groups(axis: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Maximal runs of outputs that blend the same two sources (the clamped edge apart)."""
    i0, n_out = axis["i0"], len(axis["i0"])
    key = i0 * 2 + (~axis["clamped"])
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], n_out]
    size = int((ends - starts).max())
    offsets = starts[:, None] + np.arange(size)[None, :]
    # the smallest step of w1 between neighbours inside a group that is not constant
    steps = np.diff(axis["w1"].astype(np.float64))[key[1:] == key[:-1]]
    steps = steps[steps > 0]
    return {"members": np.minimum(offsets, ends[:, None] - 1), "start": starts,
            "length": ends - starts, "g0": i0[starts], "g1": axis["i1"][starts],
            "min_step": float(steps.min()) if steps.size else 1.0}


def _window_index(g0: np.ndarray, g1: np.ndarray, n: int, device: torch.device
                  ) -> torch.Tensor | None:
    """For groups blending sources (g0, g1): the 2-wide window of the edge-padded axis
    (window j covers sources j - 1 and j, clamped) holding each, or None if one has none."""
    index = np.where(g1 == g0 + 1, g1, np.where(g0 == 0, 0, n))
    ok = (g1 == g0 + 1) | ((g0 == g1) & ((g0 == 0) | (g0 == n - 1)))
    return torch.as_tensor(index, device=device) if bool(ok.all()) else None


class Upsampler:
    """Bilinear upsampling of [B, U, h, w] maps to [B, U, H, W], densely or by segments.

    A *segment* is one output column within one row group (the output rows that blend the
    same two rows of the layer's grid). Along a segment the values are ``a * w0 + b * w1``
    with the same ``a``, ``b`` from the horizontal pass and ``w1`` increasing, so they lie
    between ``a`` and ``b`` and are monotone, also as computed in floating point unless
    ``b - a`` is within a few rounding errors of 0 (``flat`` segments, evaluated element by
    element). The pixels above a threshold are therefore a run at one end of the segment,
    found by binary search; segments whose ends are both below it are skipped.

    ``padding`` says what lies beyond the outer activations: ``border`` repeats them (PyTorch's
    ``interpolate``, PIL's resize), ``zeros`` is zero (``grid_sample``'s
    ``padding_mode="zeros"``, the PNAS code's). For ``zeros``, every entry point pads the maps
    with one zero all around (``grid``) and the same machinery runs on that grid.
    """

    def __init__(self, in_size: tuple[int, int], out_size: tuple[int, int],
                 device: str | torch.device = "cpu", columns: Sequence[int] | None = None,
                 padding: str = "border") -> None:
        if padding not in ("border", "zeros"):
            raise ValueError(f"padding must be border or zeros, got {padding!r}")
        (h, w), (H, W) = tuple(in_size), tuple(out_size)
        identity = (h, w) == (H, W) and columns is None  # (no edge to pad)
        grid = "border" if identity else padding
        ay, ax = _axis(h, H, grid), _axis(w, W, grid)
        if columns is not None:  # only these output columns (pixel indices count in them)
            picked = np.asarray(columns, dtype=np.int64)
            ax = {k: v[picked] for k, v in ax.items()}
            W = len(picked)
        gy, gx = _groups(ay), _groups(ax)
        self.in_size, self.out_size = (h, w), (H, W)
        self.identity = identity
        self.padding = padding
        # the source grid: the maps, or the maps with a zero border (padding="zeros")
        self.pad = int(grid == "zeros")
        self.grid_size = (h + 2 * self.pad, w + 2 * self.pad)
        self.device = torch.device(device)
        self.pixels = H * W

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, device=self.device)

        self.y0, self.y1, self.wy0, self.wy1 = t(ay["i0"]), t(ay["i1"]), t(ay["w0"]), t(ay["w1"])
        self.x0, self.x1, self.wx0, self.wx1 = t(ax["i0"]), t(ax["i1"]), t(ax["w0"]), t(ax["w1"])
        rows = gy["members"]  # [G, bh]: output rows of each group (consecutive), padded
        self.groups, self.seg_len = rows.shape
        self.row0 = t(gy["start"])  # first output row of each group
        self.length = t(gy["length"])  # [G] rows per group
        self.gy0, self.gy1 = t(gy["g0"]), t(gy["g1"])  # the layer's rows a group blends
        self.seg_w0 = t(ay["w0"][rows])  # [G, bh] the blend weights of each element
        self.seg_w1 = t(ay["w1"][rows])
        self.search_steps = max(1, int(self.seg_len).bit_length())
        # |b - a| <= flat * max(|a|, |b|): rounding may break monotonicity (margin 8x)
        self.flat = 8 * 3 * 2.0 ** -24 / gy["min_step"]
        # cells: row group x column group; their values lie between their 4 corner activations
        self.col0, self.col_length = t(gx["start"]), t(gx["length"])
        self.gx0, self.gx1 = t(gx["g0"]), t(gx["g1"])
        self.cell_area = int(gy["length"].max() * gx["length"].max())
        self._cell_rows = _window_index(gy["g0"], gy["g1"], self.grid_size[0], self.device)
        self._cell_cols = _window_index(gx["g0"], gx["g1"], self.grid_size[1], self.device)
        self.bound_area = self._bound_area()

    def grid(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps [B, U, h, w] on the source grid: as they are, or padded with one zero all
        around (``padding="zeros"``). Every entry point taking the layer's maps calls it."""
        return torch.nn.functional.pad(maps, (1, 1, 1, 1)) if self.pad else maps

    # -- the two halves of the interpolation ------------------------------------------
    def horizontal(self, maps: torch.Tensor) -> torch.Tensor:
        """The horizontal pass: [B, U, h, w] (on the source grid, see ``grid``) ->
        [B, U, h, W].

        Two products and a sum per value, in float32, as the compiled kernels compute it (so
        every path gives the same bits, on every device; a GEMM would round differently).
        """
        if self.identity:
            return maps
        left = torch.index_select(maps, -1, self.x0).mul_(self.wx0)
        return left.add_(torch.index_select(maps, -1, self.x1).mul_(self.wx1))

    def dense(self, ah: torch.Tensor) -> torch.Tensor:
        """Finish the interpolation everywhere: [B, U, h, W] -> [B, U, H, W]."""
        if self.identity:
            return ah
        top = torch.index_select(ah, 2, self.y0).mul_(self.wy0[:, None])
        return top.add_(torch.index_select(ah, 2, self.y1).mul_(self.wy1[:, None]))

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        """Upsample [B, U, h, w] maps to [B, U, H, W] (same values as the segment path)."""
        return self.dense(self.horizontal(self.grid(maps)))

    def _bound_area(self) -> torch.Tensor:
        """Pixels behind each entry of ``cell_bounds`` (float64): a cell's, or, on the window
        path, the cells' that share the window (0 where none does)."""
        rows, cols = self.length.double(), self.col_length.double()
        if self.identity:
            return torch.ones(self.pixels, dtype=torch.float64, device=self.device)
        if self._cell_rows is not None and self._cell_cols is not None:
            h, w = self.grid_size
            rows = torch.bincount(self._cell_rows, rows, h + 1)
            cols = torch.bincount(self._cell_cols, cols, w + 1)
        return (rows[:, None] * cols[None, :]).reshape(-1)

    @functools.cached_property
    def _pixel_cell(self) -> torch.Tensor:
        """The cell (row group x column group, flat) of every output pixel, int64 [H*W] on
        the CPU."""
        rows = torch.repeat_interleave(torch.arange(self.groups), self.length.cpu())
        cols = torch.repeat_interleave(torch.arange(self.col0.numel()), self.col_length.cpu())
        return (rows[:, None] * self.col0.numel() + cols[None, :]).reshape(-1)

    def cell_sampled(self, levels: torch.Tensor, min_level: int) -> torch.Tensor:
        """Per image and cell (row group x column group), its pixels whose level (``levels``
        [B, H*W]) is >= ``min_level``: float64 [B, G, Gx]."""
        cells = self.groups * self.col0.numel()
        batch = levels.shape[0]
        where = (torch.arange(batch)[:, None] * cells + self._pixel_cell[None, :]).reshape(-1)
        keep = (levels.cpu() >= min_level).reshape(-1).double()
        return torch.bincount(where, keep, batch * cells).view(batch, self.groups, -1)

    def cell_bounds(self, maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The lowest and highest corner of every cell, [B, U, N] each: every upsampled value
        of the cell lies between them (up to rounding); and the cell's bilinear surface at its
        four quarter points, 4 x [B, U, N], a sample of the values inside it (each standing
        for a quarter of its pixels). Entry i stands for ``bound_area[i]`` pixels. A cell is a
        row group x a column group; where every group blends neighbouring rows and columns,
        or an edge one with itself, the entries are the 2 x 2 windows of the edge-padded maps
        (cells that blend the same window share one entry, its area their sum)."""
        if self.identity:
            flat = maps.flatten(2)
            return (flat, flat) + (flat,) * 4
        maps = self.grid(maps)

        def quarters(top: torch.Tensor, bottom: torch.Tensor, left, right
                     ) -> tuple[torch.Tensor, ...]:
            # rows at 1/4 and 3/4 of the cell, then columns at 1/4 and 3/4: two products and
            # a sum each, in float32, as the compiled kernel computes them
            samples: list[torch.Tensor] = []
            for row in (top * 0.75 + bottom * 0.25, top * 0.25 + bottom * 0.75):
                a, b = left(row), right(row)
                samples += [(a * 0.75 + b * 0.25).flatten(2), (a * 0.25 + b * 0.75).flatten(2)]
            return tuple(samples)

        if self._cell_rows is not None and self._cell_cols is not None:
            # 2 x 2 windows of the edge-padded maps, a pooling (slices beat pooling ops and
            # gathers on the CPU); windows no cell blends have area 0
            padded = torch.nn.functional.pad(maps, (1, 1, 1, 1), mode="replicate")
            a, b = padded[:, :, :-1], padded[:, :, 1:]
            rmin, rmax = torch.minimum(a, b), torch.maximum(a, b)
            # (+ 0.0 turns -0.0 into +0.0: which zero minimum and maximum return varies)
            return ((torch.minimum(rmin[..., :-1], rmin[..., 1:]).flatten(2) + 0.0,
                     torch.maximum(rmax[..., :-1], rmax[..., 1:]).flatten(2) + 0.0)
                    + quarters(a, b, lambda r: r[..., :-1], lambda r: r[..., 1:]))

        def corners(op):
            rows = op(torch.index_select(maps, 2, self.gy0), torch.index_select(maps, 2, self.gy1))
            return op(torch.index_select(rows, 3, self.gx0),
                      torch.index_select(rows, 3, self.gx1)).flatten(2) + 0.0

        inside = quarters(torch.index_select(maps, 2, self.gy0),
                          torch.index_select(maps, 2, self.gy1),
                          lambda r: torch.index_select(r, 3, self.gx0),
                          lambda r: torch.index_select(r, 3, self.gx1))
        return (corners(torch.minimum), corners(torch.maximum)) + inside

    # -- segments --------------------------------------------------------------------
    def _ends(self, ah: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two values every segment blends: a, b [B, U, G, W]."""
        if self.identity:
            return ah, ah
        return torch.index_select(ah, 2, self.gy0), torch.index_select(ah, 2, self.gy1)

    def _image_step(self, units: int) -> int:
        """Images per step, keeping one step's segment tensors within CHUNK_ELEMENTS."""
        return max(1, CHUNK_ELEMENTS // max(1, units * self.groups * self.out_size[1]))

    def _value(self, a: torch.Tensor, b: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """S of segments with ends (a, b) at flat weight slots ``g * bh + r``: the dense
        path's expression, element for element."""
        return a * torch.take(self.seg_w0, slot) + b * torch.take(self.seg_w1, slot)

    def _plan(self, maps: torch.Tensor, ah: torch.Tensor, thresholds: torch.Tensor,
              unit_major: bool, ceilings: torch.Tensor | None = None,
              skipped: torch.Tensor | None = None) -> tuple[Any, ...] | None:
        """The segments that can pass their unit's threshold, as (b, u, g, x, a, b_end,
        threshold, ceiling or None) vectors (ordered by unit if ``unit_major``, else by
        image); None when so many can that dense evaluation is cheaper.

        Two levels: cells whose four corner activations are all below the threshold are
        skipped first (the slack covers the rounding of both interpolation steps), then the
        segments of the remaining cells whose two ends are, and, given ``ceilings``, the
        segments whose two ends are both above their unit's ceiling (their pixels are added to
        ``skipped`` [U], when given).
        """
        batch, units = maps.shape[:2]
        groups, cols = self.groups, self.col0.numel()
        low_thr = thresholds - thresholds.abs() * _BOUND_SLACK
        if self.identity:
            corner = maps
        else:
            rows = torch.maximum(torch.index_select(maps, 2, self.gy0),
                                 torch.index_select(maps, 2, self.gy1))
            corner = torch.maximum(torch.index_select(rows, 3, self.gx0),
                                   torch.index_select(rows, 3, self.gx1))
        active = corner > low_thr[None, :, None, None]  # [B, U, G, Gx]
        if int(active.sum()) * self.cell_area > SPARSE_FRACTION * batch * units * self.pixels:
            return None
        if unit_major:
            flat = active.transpose(0, 1).reshape(-1).nonzero()[:, 0]
            cx, rest = flat % cols, flat // cols
            g, rest = rest % groups, rest // groups
            bi, u = rest % batch, rest // batch
        else:
            flat = active.reshape(-1).nonzero()[:, 0]
            cx, rest = flat % cols, flat // cols
            g, rest = rest % groups, rest // groups
            u, bi = rest % units, rest // units
        # every column of those cells is a candidate segment: the ends of a cell's columns
        # are consecutive in ``ah``, so gather them as a [cells, widest] block (cheaper than
        # expanding every column first) and keep the columns that can pass
        width = self.out_size[1]
        span = int(self.col_length.max())
        offsets = torch.arange(span, device=cx.device)
        col0 = self.col0.index_select(0, cx)
        row = (bi * units + u) * self.grid_size[0]
        flat_ah = ah.reshape(-1)
        last = flat_ah.numel() - 1  # columns past a cell's end are masked out below

        def ends(rows: torch.Tensor) -> torch.Tensor:
            start = (row + rows.index_select(0, g)) * width + col0
            return torch.take(flat_ah, (start[:, None] + offsets).clamp_(max=last))

        sa, sb = ends(self.gy0), ends(self.gy1)
        keep = (offsets < self.col_length.index_select(0, cx)[:, None]) & (
            torch.maximum(sa, sb) > low_thr.index_select(0, u)[:, None])
        if ceilings is not None:
            cell_ceil = ceilings.index_select(0, u)[:, None]
            below = torch.minimum(sa, sb) < cell_ceil + cell_ceil.abs() * _BOUND_SLACK
            if skipped is not None:
                whole = (keep & ~below).sum(1)  # columns wholly above, per cell
                skipped.index_add_(0, u, whole * self.length.index_select(0, g))
            keep &= below
        cell, column = keep.nonzero(as_tuple=True)  # by cell, then column: the plan's order
        picked = (bi.index_select(0, cell), u.index_select(0, cell), g.index_select(0, cell),
                  col0.index_select(0, cell) + column, sa[cell, column], sb[cell, column])
        thr = thresholds.index_select(0, picked[1])
        return picked + (thr, None if ceilings is None else ceilings.index_select(0, picked[1]))

    def _segments_above(self, plan: tuple[torch.Tensor, ...], values: bool,
                        positions: bool = True, skipped: torch.Tensor | None = None
                        ) -> list[tuple[Any, ...]]:
        """Every pixel of the planned segments with S > threshold, as parts
        (b, u, pixel, value), each in the plan's order; value is None unless ``values``, b and
        pixel are None unless ``positions``. Pixels left out at a ceiling are added to
        ``skipped`` [U], when given."""
        bi, u, g, x, sa, sb, thr, ceil = plan
        n = self.length.index_select(0, g)
        slot0 = g * self.seg_len
        low = torch.minimum(sa, sb)
        start = torch.zeros_like(n)
        stop = n.clone()
        cut = None  # per segment, the pixels left out at the ceiling
        # segments whose both ends clear the threshold by more than the rounding are wholly
        # above it; the others cross it once: binary search for the crossing
        cross = (~(low - low.abs() * _BOUND_SLACK > thr)).nonzero()[:, 0]
        if cross.numel():
            ca, cb, ct, cn, cslot = (t.index_select(0, cross) for t in (sa, sb, thr, n, slot0))
            rising = cb > ca
            first = self._first(ca, cb, ct, cn, cslot, rising, inclusive=False)
            start.index_copy_(0, cross, torch.where(rising, first, torch.zeros_like(first)))
            stop.index_copy_(0, cross, torch.where(rising, cn, first))
        if ceil is not None:
            # leave out the run at or above the ceiling, at the segment's high end
            high = torch.maximum(sa, sb)
            reach = (high + high.abs() * _BOUND_SLACK >= ceil).nonzero()[:, 0]
            if reach.numel():
                ra, rb, rc, rn, rslot = (t.index_select(0, reach) for t in (sa, sb, ceil, n, slot0))
                rising = rb > ra
                first = self._first(ra, rb, rc, rn, rslot, rising, inclusive=True)
                old_start, old_stop = start.index_select(0, reach), stop.index_select(0, reach)
                new_stop = torch.where(rising, torch.minimum(old_stop, first), old_stop)
                new_start = torch.where(rising, old_start, torch.maximum(old_start, first))
                new_stop = torch.maximum(new_stop, new_start)
                start.index_copy_(0, reach, new_start)
                stop.index_copy_(0, reach, new_stop)
                if skipped is not None:
                    cut = torch.zeros_like(n).index_copy_(
                        0, reach, (old_stop - old_start) - (new_stop - new_start))
        flat = (sb - sa).abs() <= self.flat * torch.maximum(sa.abs(), sb.abs())
        if bool(flat.any()):
            # flat segments may not be monotone as computed, unless wholly above (done)
            flat &= ~(low - low.abs() * _BOUND_SLACK > thr)
        if cut is not None:
            # a flat segment's pixels are all given one by one below: none is left out
            skipped.index_add_(0, u, cut.masked_fill_(flat, 0))
        if not bool(flat.any()):
            return [self._runs(bi, u, g, x, sa, sb, slot0, start, stop, values, positions)]
        # the rest: evaluate their every element
        f = flat.nonzero()[:, 0]
        extra = self._flat(*(t.index_select(0, f) for t in (bi, u, g, x, sa, sb, thr)), values)
        if not positions:
            extra = (None, extra[1], None, extra[3])
        return [self._runs(bi, u, g, x, sa, sb, slot0, start, torch.where(flat, start, stop),
                           values, positions), extra]

    def _first(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, n: torch.Tensor,
               slot: torch.Tensor, rising: torch.Tensor, inclusive: bool) -> torch.Tensor:
        """Per monotone segment, the first element where ``S > t`` (``S >= t`` if
        ``inclusive``) equals ``rising``, by binary search (n where none does)."""
        lo = torch.zeros_like(n)
        hi = n.clone()
        for _ in range(self.search_steps):
            mid = torch.minimum((lo + hi) // 2, n - 1)
            value = self._value(a, b, slot + mid)
            inside = ((value >= t) if inclusive else (value > t)) == rising
            open_ = lo < hi
            hi = torch.where(open_ & inside, mid, hi)
            lo = torch.where(open_ & ~inside, mid + 1, lo)
        return lo

    def _runs(self, bi, u, g, x, sa, sb, slot0, start, stop, values: bool,
              positions: bool = True):
        """Expand the runs [start, stop) of segments into pixels (and their values)."""
        length = stop - start  # segments with empty runs simply expand to nothing
        width = self.out_size[1]
        seg = torch.repeat_interleave(torch.arange(length.numel(), device=length.device), length)
        step = torch.arange(seg.numel(), device=seg.device)
        shift = start - (torch.cumsum(length, 0) - length)  # element r = step + shift
        pixel = value = image = None
        if positions:
            row0 = self.row0.index_select(0, g)  # rows of a group are consecutive
            pixel = ((row0 + shift) * width + x).index_select(0, seg) + step * width
            image = bi.index_select(0, seg)
        if values:
            slot = (slot0 + shift).index_select(0, seg) + step
            value = self._value(sa.index_select(0, seg), sb.index_select(0, seg), slot)
        return image, u.index_select(0, seg), pixel, value

    def _flat(self, bi, u, g, x, sa, sb, thr, values: bool):
        """Every element above the threshold of the given segments, evaluated one by one."""
        found = []
        step = max(1, CHUNK_ELEMENTS // self.seg_len)
        width = self.out_size[1]
        elements = torch.arange(self.seg_len, device=sa.device)[None, :]
        for first in range(0, bi.numel(), step):
            sl = slice(first, first + step)
            gg = g[sl]
            s = sa[sl, None] * self.seg_w0[gg] + sb[sl, None] * self.seg_w1[gg]
            valid = elements < self.length[gg][:, None]
            k, r = (valid & (s > thr[sl, None])).nonzero(as_tuple=True)
            pixel = (self.row0[gg[k]] + r) * width + x[sl][k]
            found.append((bi[sl][k], u[sl][k], pixel, s[k, r] if values else None))
        return tuple(torch.cat([f[i] for f in found]) if values or i < 3 else None
                     for i in range(4))

    def _above_dense(self, ah: torch.Tensor, thresholds: torch.Tensor,
                     excluded: torch.Tensor | None = None, values: bool = False
                     ) -> tuple[torch.Tensor, ...]:
        """Pixels with S > threshold (b, u, pixel[, value]), from the fully upsampled maps."""
        units = ah.shape[1]
        step = max(1, CHUNK_ELEMENTS // max(1, units * self.pixels))
        found = []
        for first in range(0, ah.shape[0], step):
            s = self.dense(ah[first:first + step]).flatten(2)
            if excluded is not None:
                s = s.masked_fill(excluded[first:first + step], float("-inf"))
            bi, u, p = (s > thresholds[None, :, None]).nonzero(as_tuple=True)
            found.append((bi + first, u, p) + ((s[bi, u, p],) if values else ()))
        return tuple(torch.cat([f[i] for f in found]) for i in range(len(found[0])))

    # -- what dissection needs -----------------------------------------------------------
    def above(self, maps: torch.Tensor, thresholds: torch.Tensor,
              excluded: torch.Tensor | None = None, values: bool = False,
              positions: bool = True, ceilings: torch.Tensor | None = None,
              skipped: torch.Tensor | None = None) -> tuple[Any, ...]:
        """Pixels with S > threshold: (b, u, pixel) int64 vectors, by image, and their float32
        values if ``values``; ``excluded`` [B, U, H*W] marks pixels that never pass. Without
        ``positions`` (the threshold search needs only units and values), b and pixel are
        None and not computed. Pixels with S >= their unit's ``ceilings`` [U] may be left out
        (most are: a sweep of the search that knows how many lie there needs none of them);
        how many were left out is added to ``skipped`` (int64 [U]), when given. Units whose
        threshold no value can pass (+inf or the largest float) cost nothing."""
        return self._above(self.grid(maps), thresholds, excluded, values, positions, ceilings,
                           skipped)

    def _above(self, maps: torch.Tensor, thresholds: torch.Tensor,
               excluded: torch.Tensor | None, values: bool, positions: bool,
               ceilings: torch.Tensor | None, skipped: torch.Tensor | None) -> tuple[Any, ...]:
        """``above`` for maps on the source grid (``grid``)."""
        batch, units = maps.shape[:2]
        idle = thresholds >= torch.finfo(thresholds.dtype).max
        if bool(idle.any()):
            # late sweeps of the threshold search: only the few units still searching
            live = (~idle).nonzero()[:, 0]
            if not live.numel():
                empty = torch.zeros(0, dtype=torch.int64, device=maps.device)
                return ((empty if positions else None), empty, (empty if positions else None)) \
                    + ((torch.zeros(0, dtype=maps.dtype, device=maps.device),) if values else ())
            part = None if skipped is None else torch.zeros_like(skipped[live])
            got = self._above(maps.index_select(1, live), thresholds.index_select(0, live),
                              None if excluded is None else excluded.index_select(1, live),
                              values, positions,
                              None if ceilings is None else ceilings.index_select(0, live), part)
            if skipped is not None:
                skipped.index_add_(0, live, part)
            return got[:1] + (live.index_select(0, got[1]),) + got[2:]
        step = self._image_step(units)
        found: list[tuple[Any, ...]] = []
        for first in range(0, batch, step):
            ah = self.horizontal(maps[first:first + step])
            plan = None if excluded is not None else self._plan(
                maps[first:first + step], ah, thresholds, False, ceilings, skipped)
            if plan is None:
                part = None if excluded is None else excluded[first:first + step]
                got = self._above_dense(ah, thresholds, part, values)
                parts = [got if values else got + (None,)]
            else:
                parts = self._segments_above(plan, values, positions, skipped)
            found += [(b + first if positions else None, u, p, v) for b, u, p, v in parts]

        def joined(i: int) -> torch.Tensor:
            return torch.cat([f[i] for f in found])

        image, pixel = (joined(0), joined(2)) if positions else (None, None)
        return (image, joined(1), pixel) + ((joined(3),) if values else ())

    def _guaranteed_floor(self, ah: torch.Tensor, levels: torch.Tensor, min_level: int,
                          limit: int) -> torch.Tensor:
        """Per unit, a value v with at least ``limit`` sampled values >= v among these images
        (-inf if there are fewer), from the segments' lower ends."""
        batch, units = ah.shape[:2]
        a, b = self._ends(ah)
        low = torch.minimum(a, b)
        low = low - low.abs() * _BOUND_SLACK
        width = self.out_size[1]
        elements = torch.arange(self.seg_len, device=ah.device)
        rows = (self.row0[:, None] + elements[None, :]).clamp(max=self.out_size[0] - 1)
        pixels = rows[:, None, :] * width + torch.arange(width, device=ah.device)[None, :, None]
        valid = elements[None, :] < self.length[:, None]
        sampled = (levels[:, pixels.reshape(-1)] >= min_level).view(
            batch, self.groups, width, -1) & valid[None, :, None, :]
        weight = sampled.sum(-1).reshape(-1)  # [B*G*W], the same for every unit
        flat = low.transpose(0, 1).reshape(units, -1)
        least = int(weight.min())
        if least > 0 and math.ceil(limit / least) < flat.shape[1]:
            # every segment weighs >= least: the answer is among the top limit/least
            order = torch.topk(flat, math.ceil(limit / least), dim=1)
        else:
            order = torch.sort(flat, dim=1, descending=True)
        reached = torch.cumsum(weight[order.indices], dim=1) >= limit
        first = reached.long().argmax(1)
        value = order.values.gather(1, first[:, None])[:, 0]
        return torch.where(reached.any(1), value, torch.full_like(value, float("-inf")))

    def tail(self, maps: torch.Tensor, floor: torch.Tensor, limit: int, levels: torch.Tensor,
             min_level: int, excluded: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per unit, up to ``limit`` largest values S > floor whose level (``levels`` [B, H*W])
        is >= ``min_level``: values float32 [U, W] (-inf padded), their levels uint8 [U, W],
        and a raised floor [U]: every sampled value above it is among the values returned,
        and at least ``limit`` sampled values of these images are >= it (unless it is
        ``floor``), so a rank below ``limit`` that falls under it has exactly its value.
        """
        if kernels.enabled(maps, self, excluded):
            return kernels.tail_values(self, maps, floor.cpu(), limit, levels.cpu(), min_level,
                                       _BOUND_SLACK)
        maps = self.grid(maps)
        batch, units = maps.shape[:2]
        step = self._image_step(units)
        out_v: list[torch.Tensor] = []
        out_l: list[torch.Tensor] = []

        def collect(values: torch.Tensor, value_levels: torch.Tensor) -> None:
            nonlocal floor
            values, value_levels, floor = _truncate(values, value_levels, floor, limit)
            out_v.append(values)
            out_l.append(value_levels)

        for first in range(0, batch, step):
            ah = self.horizontal(maps[first:first + step])
            lev = levels[first:first + ah.shape[0]]
            plan = None
            if excluded is None:
                start = (floor == float("-inf")).nonzero()[:, 0]
                if start.numel():  # units just starting: later, trimming raises their floor
                    found = self._guaranteed_floor(ah.index_select(1, start), lev, min_level,
                                                   limit)
                    floor = floor.index_copy(0, start, found)
                plan = self._plan(maps[first:first + step], ah, floor, True)
            if plan is None:
                part = None if excluded is None else excluded[first:first + step]
                self._tail_dense(ah, floor, lev, min_level, part, collect)
                continue
            # each part is sorted by unit: scatter each unit's values into its row, part
            # after part
            placed = []
            filled = torch.zeros(units, dtype=torch.int64, device=maps.device)
            for bi, u, p, v in self._segments_above(plan, True):
                lv = lev.reshape(-1).index_select(0, bi * lev.shape[1] + p)
                if min_level > 0:
                    keep = (lv >= min_level).nonzero()[:, 0]
                    u, v, lv = u.index_select(0, keep), v.index_select(0, keep), \
                        lv.index_select(0, keep)
                counts = torch.bincount(u, minlength=units)
                starts = torch.cumsum(counts, 0) - counts - filled
                pos = torch.arange(u.numel(), device=u.device) - starts.index_select(0, u)
                placed.append((u, pos, v, lv))
                filled += counts
            if int(filled.sum()):
                dense_v = torch.full((units, int(filled.max())), float("-inf"), device=maps.device)
                dense_l = torch.zeros(dense_v.shape, dtype=torch.uint8, device=maps.device)
                for u, pos, v, lv in placed:
                    dense_v[u, pos] = v
                    dense_l[u, pos] = lv
                collect(dense_v, dense_l)
        if not out_v:
            return (torch.empty(units, 0, device=maps.device),
                    torch.empty(units, 0, dtype=torch.uint8, device=maps.device), floor)
        return _truncate(torch.cat(out_v, 1), torch.cat(out_l, 1), floor, limit)

    def _tail_dense(self, ah: torch.Tensor, floor: torch.Tensor, levels: torch.Tensor,
                    min_level: int, excluded: torch.Tensor | None, collect) -> None:
        """``tail`` from the fully upsampled maps, a few images at a time."""
        units = ah.shape[1]
        step = max(1, CHUNK_ELEMENTS // max(1, units * self.pixels))
        for first in range(0, ah.shape[0], step):
            s = self.dense(ah[first:first + step]).flatten(2)
            if excluded is not None:
                s = s.masked_fill(excluded[first:first + step], float("-inf"))
            lev = levels[first:first + s.shape[0]]
            keep = (s > floor[None, :, None]) & (lev >= min_level)[:, None, :]
            width = int(keep.sum((0, 2)).max())
            if width == 0:
                continue
            flat = torch.where(keep, s, float("-inf")).transpose(0, 1).reshape(units, -1)
            if width < flat.shape[1]:
                top = torch.topk(flat, width, dim=1)
                collect(top.values, lev.reshape(-1)[top.indices])
            else:
                collect(flat, lev.reshape(1, -1).expand(units, -1))


def _truncate(values: torch.Tensor, levels: torch.Tensor, floor: torch.Tensor,
              limit: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep each unit's ``limit`` largest values; the largest one dropped raises the floor."""
    if values.shape[1] <= limit:
        return values, levels, floor
    top = torch.topk(values, limit + 1, dim=1)
    floor = torch.maximum(floor, top.values[:, -1])
    return top.values[:, :-1], torch.gather(levels, 1, top.indices[:, :-1]), floor


def dedupe_labels(labels: torch.Tensor) -> torch.Tensor:
    """Label layers [B, L, ...]; a concept repeated at a pixel stays in its first layer only."""
    if labels.shape[1] < 2:
        return labels
    out = labels.clone()
    for layer in range(1, labels.shape[1]):
        repeated = (labels[:, :layer] == labels[:, layer:layer + 1]).any(1)
        out[:, layer].masked_fill_(repeated, 0)
    return out


def dedupe_image_labels(labels: torch.Tensor) -> torch.Tensor:
    """Image-level label lists [B, M] with repeats within a row replaced by 0."""
    if labels.shape[1] < 2:
        return labels
    ordered = torch.sort(labels, dim=1).values
    repeat = torch.zeros_like(ordered, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return ordered.masked_fill(repeat, 0)


class IoUCounts:
    """Exact int64 counts behind IoU(unit, concept), accumulated batch by batch.

    Given ``overlap_category`` (the category of each column, -1: none), it also counts the
    mask areas of the ``overlap`` union (NetDissect-Lite's): per category C, sum |M_k| over
    the images where M_k holds a pixel of a concept of C or that carry an image-level concept
    of C.
    """

    def __init__(self, units: int, num_columns: int, num_categories: int,
                 device: str | torch.device = "cpu",
                 overlap_category: np.ndarray | Sequence[int] | None = None) -> None:
        self.units, self.num_columns, self.num_categories = units, num_columns, num_categories
        self.device = torch.device(device)
        z = lambda *shape: torch.zeros(shape, dtype=torch.int64, device=self.device)  # noqa: E731
        self.intersection = z(units, num_columns)  # sum |M_k ∧ L_c|
        self.mask_by_category = z(units, num_categories)  # sum |M_k| over images carrying C
        self.mask_by_overlap = z(units, num_categories)  # ... where M_k overlaps C (if tracked)
        self.overlap_category = None if overlap_category is None else torch.as_tensor(
            np.asarray(overlap_category, dtype=np.int64), device=self.device)
        self.mask_total = z(units)  # sum |M_k| over all images
        self.label_area = z(num_columns)  # sum |L_c|
        self.pixels = z(units)  # pixels counted (non-finite ones excluded)
        self.images = z(1)

    def add_maps(self, up: Upsampler, maps: torch.Tensor, thresholds: torch.Tensor,
                 labels: torch.Tensor, image_labels: torch.Tensor, has_category: torch.Tensor,
                 excluded: torch.Tensor | None = None) -> None:
        """Count one batch of a layer's maps [B, U, h, w] against thresholds [U], upsampled
        by ``up`` (the compiled kernel on the CPU, else ``up.above``); the rest as ``add``."""
        if kernels.enabled(maps, up, excluded):
            hits, per_image, *touched = kernels.mask_counts(
                up, maps, thresholds, labels, self.num_columns, _BOUND_SLACK,
                None if self.overlap_category is None else self.overlap_category.cpu(),
                self.num_categories)
            self.intersection += hits.to(self.device)
            self._add_images(per_image.to(self.device), labels, image_labels, has_category,
                             touched=touched[0].to(self.device) if touched else None)
            return
        b, u, pixel = up.above(maps, thresholds, excluded)
        self.add(b, u, pixel, labels, image_labels, has_category,
                 None if excluded is None else excluded.sum((0, 2)))

    def add(self, b: torch.Tensor, u: torch.Tensor, pixel: torch.Tensor, labels: torch.Tensor,
            image_labels: torch.Tensor, has_category: torch.Tensor,
            excluded: torch.Tensor | None = None) -> None:
        """Count one batch: mask pixels (b, u, pixel); ``labels`` [B, L, P] and ``image_labels``
        [B, M] deduplicated global ids; ``has_category`` [B, C]; ``excluded`` pixels per unit
        [U] (left out of the count)."""
        batch, _, pixels = labels.shape
        n, units = self.num_columns, self.units
        per_image = torch.bincount(b * units + u, minlength=batch * units).view(batch, units)
        track = self.overlap_category is not None
        touched = torch.zeros(batch * units * self.num_categories, dtype=torch.bool,
                              device=self.device) if track else None
        if labels.shape[1] and u.numel():
            flat_labels = labels.reshape(-1)
            where = b * labels[0].numel() + pixel
            row = u * n
            one = torch.ones(1, dtype=torch.int64, device=self.device).expand(u.numel())
            for layer in range(labels.shape[1]):  # label 0 lands in column 0, ignored
                hit = flat_labels.index_select(0, where + layer * pixels).long()
                self.intersection.view(-1).index_add_(0, row + hit, one)
                if track:
                    cat = self.overlap_category.index_select(0, hit)
                    slot = ((b * units + u) * self.num_categories + cat)[cat >= 0]
                    touched.index_fill_(0, slot, True)
        self._add_images(per_image, labels, image_labels, has_category, excluded,
                         None if touched is None else touched.view(batch, units, -1))

    def _add_images(self, per_image: torch.Tensor, labels: torch.Tensor,
                    image_labels: torch.Tensor, has_category: torch.Tensor,
                    excluded: torch.Tensor | None = None,
                    touched: torch.Tensor | None = None) -> None:
        """The terms of ``add`` that need only the mask pixels per image and unit [B, U] (and,
        for the overlap union, which categories' pixel concepts each mask holds [B, U, C])."""
        batch, _, pixels = labels.shape
        n = self.num_columns
        rows, slots = image_labels.nonzero(as_tuple=True)
        if rows.numel():
            concepts = image_labels[rows, slots].long()
            self.intersection.index_add_(1, concepts, per_image[rows].t().contiguous())
        has = has_category.to(torch.int64)
        self.mask_by_category += (per_image[:, :, None] * has[:, None, :]).sum(0)
        if touched is not None:
            # an image-level concept covers the whole image: any mask pixel overlaps it
            carried = torch.zeros(batch, self.num_categories, dtype=torch.bool,
                                  device=self.device)
            if rows.numel():
                cat = self.overlap_category.index_select(0, concepts)
                carried[rows[cat >= 0], cat[cat >= 0]] = True
            overlap = (touched | carried[:, None, :]).to(torch.int64)
            self.mask_by_overlap += (per_image[:, :, None] * overlap).sum(0)
        self.mask_total += per_image.sum(0)
        area = torch.bincount(labels.reshape(-1).long(), minlength=n)
        area += torch.bincount(image_labels.reshape(-1).long(), minlength=n) * pixels
        self.label_area += area
        self.pixels += batch * pixels
        if excluded is not None:
            self.pixels -= excluded.to(self.device, torch.int64)
        self.images += batch

    def iou(self, concept_category: np.ndarray | Sequence[int],
            union: str | bool = "category") -> np.ndarray:
        """IoU float32 [U, num_columns] with the mask areas of ``union`` (``category``,
        ``overlap`` or ``all``; True / False: category / all); columns without a category
        (0, gaps) are 0."""
        # on the CPU, in float64 (not every device has it); the counts are small
        union = {True: "category", False: "all"}.get(union, union)  # type: ignore[arg-type]
        category = torch.as_tensor(np.asarray(concept_category, dtype=np.int64))
        known = category >= 0
        if union == "overlap" and self.overlap_category is None:
            raise ValueError("the overlap union needs IoUCounts(overlap_category=...)")
        if union in ("category", "overlap"):
            by = self.mask_by_category if union == "category" else self.mask_by_overlap
            mask_area = by.cpu()[:, category.clamp(min=0)]
        elif union == "all":
            mask_area = self.mask_total.cpu()[:, None].expand(-1, self.num_columns)
        else:
            raise ValueError(f"union must be category, overlap or all, got {union!r}")
        inter = self.intersection.cpu()
        union = mask_area + self.label_area.cpu()[None, :] - inter
        iou = torch.where(union > 0, inter.double() / union.clamp(min=1).double(),
                          torch.zeros((), dtype=torch.float64))
        return (iou * known[None, :]).float().numpy()

    def coverage(self) -> np.ndarray:
        """Fraction of counted pixels inside the unit's mask, float64 [U]."""
        return (self.mask_total.cpu().double() / self.pixels.cpu().clamp(min=1).double()).numpy()

    # -- checkpointing and merging -----------------------------------------------------
    _FIELDS = ("intersection", "mask_by_category", "mask_by_overlap", "mask_total",
               "label_area", "pixels", "images")

    def state_dict(self) -> dict[str, Any]:
        """The counts as CPU tensors."""
        return {"kind": "IoUCounts", **{f: getattr(self, f).cpu() for f in self._FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output."""
        if state.get("kind") != "IoUCounts" or \
                tuple(state["intersection"].shape) != tuple(self.intersection.shape):
            raise ValueError("state does not belong to IoUCounts of this shape")
        for f in self._FIELDS:
            if f == "mask_by_overlap" and f not in state:  # older: never tracked
                continue
            setattr(self, f, state[f].to(self.device, torch.int64))

    def merge(self, other: IoUCounts) -> None:
        """Add ``other``'s counts (from other images)."""
        for f in self._FIELDS:
            getattr(self, f).add_(getattr(other, f).to(self.device))


@dataclass(frozen=True)
class UnitLabel:
    """One unit's best concepts."""

    unit: int
    concept_ids: tuple[int, ...]  # best first; 0 = none (the unit never matched anything)
    ious: tuple[float, ...]


def label_units(iou: np.ndarray, ranks: int = 3) -> list[UnitLabel]:
    """Each unit's ``ranks`` best concepts by IoU (column 0 excluded, ties to the lower id)."""
    scores = np.asarray(iou, dtype=np.float64).copy()
    if scores.shape[1]:
        scores[:, 0] = -1.0
    order = np.argsort(-scores, axis=1, kind="stable")[:, :ranks]
    result = []
    for unit, ids in enumerate(order):
        pairs = [(int(c), float(iou[unit, c])) for c in ids if scores[unit, c] > 0]
        pairs += [(0, 0.0)] * (ranks - len(pairs))
        result.append(UnitLabel(unit, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)))
    return result


def summarize_layer(labels: Sequence[UnitLabel], categories: Sequence[str],
                    concept_category: np.ndarray, iou_threshold: float
                    ) -> dict[str, dict[str, int]]:
    """Detectors and unique detected concepts per category (units with IoU > the threshold)."""
    detectors = {c: 0 for c in categories}
    unique: dict[str, set[int]] = {c: set() for c in categories}
    for label in labels:
        concept, value = label.concept_ids[0], label.ious[0]
        if concept > 0 and value > iou_threshold:
            category = categories[int(concept_category[concept])]
            detectors[category] += 1
            unique[category].add(concept)
    return {"detectors": detectors, "unique_detectors": {c: len(s) for c, s in unique.items()}}

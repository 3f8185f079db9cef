"""Drawing for the toy world: primitives, their rasterizer, material patterns and texture
swatches (the props that scenes are composed of are in ``toyworld_props.py``).

Every primitive is tested at pixel centres ``((j + 0.5) / size, (i + 0.5) / size)`` with no
anti-aliasing, so the colour written to a pixel and the labels written to it come from the same
boolean coverage: the label maps agree exactly with what is drawn. Coordinates are normalized
(x to the right, y down, both in [0, 1]) so a scene rasterizes at any size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

RECT, ELLIPSE, POLY, BAND = "rect", "ellipse", "poly", "band"

Color = tuple[float, float, float]
#: A fill: (pattern name, colour a, colour b, numeric parameters of the pattern).
Fill = tuple[str, Color, Color, tuple[float, ...]]


@dataclass(frozen=True)
class Primitive:
    """One shape in painter's order with the labels of every pixel it covers.

    Coverage of a pixel centre (x, y), by ``shape``:
      rect    params (x0, y0, x1, y1):   x0 <= x < x1 and y0 <= y < y1
      ellipse params (cx, cy, rx, ry):   ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1
      poly    params (ax, ay, bx, by, ...), convex, oriented so that for every edge a -> b
              (bx - ax) * (y - ay) - (by - ay) * (x - ax) >= 0
      band    params (x0, x1, y1, k0, ..., kn): x0 <= x < x1 and top(x) <= y < y1, where top is
              the piecewise-linear curve through knots k evenly spaced from x0 to x1:
              t = (x - x0) / (x1 - x0) * n; m = clip(floor(t), 0, n - 1);
              top = k[m] + (k[m + 1] - k[m]) * (t - m)
    """

    shape: str
    params: tuple[float, ...]
    obj: int
    part: int
    material: int
    fill: Fill


def flat(c: Sequence[float]) -> Fill:
    """A single-colour fill."""
    return ("flat", _c(c), _c(c), ())


def vgrad(c0: Sequence[float], c1: Sequence[float], y0: float, y1: float) -> Fill:
    """A vertical gradient from ``c0`` at ``y0`` to ``c1`` at ``y1``."""
    return ("vgrad", _c(c0), _c(c1), (float(y0), float(y1)))


def pattern(name: str, c0: Sequence[float], c1: Sequence[float], *p: float) -> Fill:
    """A material pattern fill (see ``_PATTERNS`` for names and parameters)."""
    if name not in _PATTERNS:
        raise ValueError(f"unknown pattern {name!r}")
    return (name, _c(c0), _c(c1), tuple(float(v) for v in p))


def _c(c: Sequence[float]) -> Color:
    return (float(c[0]), float(c[1]), float(c[2]))


def poly_params(points: Sequence[tuple[float, float]]) -> tuple[float, ...]:
    """Flatten a convex polygon's points, oriented so that inside means every edge cross >= 0."""
    pts = [(float(x), float(y)) for x, y in points]
    area2 = sum(ax * by - bx * ay for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]))
    if area2 < 0:
        pts.reverse()
    return tuple(v for p in pts for v in p)


def is_convex(params: Sequence[float]) -> bool:
    """Whether flattened, oriented polygon params describe a convex, non-degenerate polygon."""
    xs, ys = params[0::2], params[1::2]
    n = len(xs)
    turns = [
        (xs[(k + 1) % n] - xs[k]) * (ys[(k + 2) % n] - ys[k]) - (ys[(k + 1) % n] - ys[k]) * (xs[(k + 2) % n] - xs[k])
        for k in range(n)
    ]
    return n >= 3 and all(t >= -1e-12 for t in turns) and sum(turns) > 1e-12


def bbox(p: Primitive) -> tuple[float, float, float, float]:
    """The primitive's normalized bounding box (x0, y0, x1, y1)."""
    q = p.params
    if p.shape == RECT:
        return q[0], q[1], q[2], q[3]
    if p.shape == ELLIPSE:
        return q[0] - q[2], q[1] - q[3], q[0] + q[2], q[1] + q[3]
    if p.shape == POLY:
        return min(q[0::2]), min(q[1::2]), max(q[0::2]), max(q[1::2])
    return q[0], min(q[3:]), q[1], q[2]


def band_top(params: Sequence[float], x: np.ndarray) -> np.ndarray:
    """The top curve of a band primitive at ``x``."""
    x0, x1 = params[0], params[1]
    k = np.asarray(params[3:], dtype=np.float64)
    n = len(k) - 1
    t = (x - x0) / (x1 - x0) * n
    m = np.clip(np.floor(t), 0, n - 1).astype(np.intp)
    return k[m] + (k[m + 1] - k[m]) * (t - m)


def _cover(p: Primitive, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean coverage of the pixel centres x (1 x w) by y (h x 1)."""
    q = p.params
    if p.shape == RECT:
        return ((x >= q[0]) & (x < q[2])) & ((y >= q[1]) & (y < q[3]))
    if p.shape == ELLIPSE:
        dx = (x - q[0]) / q[2]
        dy = (y - q[1]) / q[3]
        return dx * dx + dy * dy <= 1.0
    if p.shape == POLY:
        xs, ys = q[0::2], q[1::2]
        n = len(xs)
        m = None
        for k in range(n):  # a loop over edges, not pixels
            ax, ay, bx, by = xs[k], ys[k], xs[(k + 1) % n], ys[(k + 1) % n]
            e = (bx - ax) * (y - ay) - (by - ay) * (x - ax) >= 0
            m = e if m is None else m & e
        return m
    top = band_top(q, x)
    return ((x >= q[0]) & (x < q[1])) & (top <= y) & (y < q[2])


# ----------------------------------------------------------------------------- patterns
def _hash(a: np.ndarray, b: np.ndarray, salt: int = 0) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) for integer cells (a, b); no RNG state."""
    h = (a.astype(np.int64) * 73856093) ^ (b.astype(np.int64) * 19349663) ^ (salt * 83492791)
    h &= 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
    h ^= h >> 12
    h = (h * 0x297A2D39) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0xFFFF).astype(np.float32) / 65536.0


def _mix(c0: Color, c1: Color, t: np.ndarray) -> np.ndarray:
    a = np.asarray(c0, np.float32)
    b = np.asarray(c1, np.float32)
    return a + (b - a) * np.asarray(t, np.float32)[..., None]


def _frac(v: np.ndarray) -> np.ndarray:
    return v - np.floor(v)


def _f_flat(c0, c1, p, x, y):
    return np.asarray(c0, np.float32)


def _f_vgrad(c0, c1, p, x, y):
    return _mix(c0, c1, np.clip((y - p[0]) / (p[1] - p[0]), 0.0, 1.0))


def _f_hgrad(c0, c1, p, x, y):
    return _mix(c0, c1, np.clip((x - p[0]) / (p[1] - p[0]), 0.0, 1.0))


def _f_radial(c0, c1, p, x, y):
    # p = (cx, cy, r): c0 at the centre, c1 at distance r
    return _mix(c0, c1, np.clip(np.sqrt((x - p[0]) ** 2 + (y - p[1]) ** 2) / p[2], 0.0, 1.0))


def _f_brick(c0, c1, p, x, y):
    # p = (brick height,): staggered courses, each brick slightly different, mortar colour c1
    bh = p[0]
    row = np.floor(y / bh)
    u = x / (2.2 * bh) + 0.5 * (row % 2)
    tone = 0.86 + 0.24 * _hash(np.floor(u), row, 1)
    base = np.asarray(c0, np.float32) * tone[..., None]
    mortar = (_frac(y / bh) < 0.22) | (_frac(u) < 0.09)
    return np.where(mortar[..., None], np.asarray(c1, np.float32), base)


def _f_planks(c0, c1, p, x, y):
    # p = (plank width, vertical?): boards with seams in colour c1 and a tone per board
    w, vertical = p[0], p[1] > 0.5
    a, b = (x, y) if vertical else (y, x)
    row = np.floor(a / w)
    seg = np.floor(b / (7 * w) + 0.37 * row)
    tone = 0.88 + 0.2 * _hash(row, seg, 2)
    grain = 0.97 + 0.05 * np.sin(b * (25.0 / w) + row * 1.7)
    base = np.asarray(c0, np.float32) * (tone * grain)[..., None]
    return np.where((_frac(a / w) < 0.12)[..., None], np.asarray(c1, np.float32), base)


def _f_grain(c0, c1, p, x, y):
    # p = (period,): wavy wood grain between c0 and c1
    t = 0.5 + 0.5 * np.sin((y + 0.25 * p[0] * np.sin(x * (9.0 / p[0]))) * (6.283 / p[0]))
    return _mix(c0, c1, t * 0.6)


def _f_glass(c0, c1, p, x, y):
    # p = (y0, y1, shine period): sky-like reflection with diagonal highlights
    base = _mix(c0, c1, np.clip((y - p[0]) / (p[1] - p[0]), 0.0, 1.0))
    shine = (_frac((x + 0.6 * y) / p[2]) < 0.14).astype(np.float32)
    return base + (255.0 - base) * (0.45 * shine)[..., None]


def _f_water(c0, c1, p, x, y):
    # p = (y0, y1, wave spacing): depth gradient plus broken horizontal highlights
    base = _mix(c0, c1, np.clip((y - p[0]) / (p[1] - p[0]), 0.0, 1.0))
    s = p[2]
    row = np.floor(y / s)
    lit = (_frac(y / s) < 0.3) & (np.sin(x * (6.283 / (3.1 * s)) + row * 2.3) > 0.55)
    return base + (255.0 - base) * (0.35 * lit)[..., None]


def _f_foliage(c0, c1, p, x, y):
    # p = (cell, y0, y1): leaf clusters in c1 over c0, darker towards y1
    cell = p[0]
    gx, gy = np.floor(x / cell), np.floor(y / cell)
    j = _hash(gx, gy, 3) - 0.5  # one hash jitters both coordinates of the cluster centre
    fx = _frac(x / cell) - 0.5 - 0.35 * j
    fy = _frac(y / cell) - 0.5 - 0.35 * (_frac(j * 37.3) - 0.5)
    spot = fx * fx + fy * fy < 0.07
    col = np.where(spot[..., None], np.asarray(c1, np.float32), np.asarray(c0, np.float32))
    dark = 1.0 - 0.25 * np.clip((y - p[1]) / (p[2] - p[1]), 0.0, 1.0)
    return col * dark[..., None]


def _f_speckle(c0, c1, p, x, y):
    # p = (cell, noise amplitude, y0, y1): gradient c0 -> c1 with grainy noise and dark flecks
    base = _mix(c0, c1, np.clip((y - p[2]) / (p[3] - p[2]), 0.0, 1.0))
    n = _hash(np.floor(x / p[0]), np.floor(y / p[0]), 5)
    f = 1.0 + p[1] * (n - 0.5) - 1.2 * p[1] * (n > 0.93)
    return base * f[..., None]


def _f_stripes(c0, c1, p, x, y):
    # p = (period, vertical?, duty)
    a = x if p[1] > 0.5 else y
    return np.where((_frac(a / p[0]) < p[2])[..., None], np.asarray(c1, np.float32), np.asarray(c0, np.float32))


def _f_plaid(c0, c1, p, x, y):
    # p = (period,): tartan-like weave
    t = 0.5 * ((_frac(x / p[0]) < 0.3).astype(np.float32) + (_frac(y / p[0]) < 0.3))
    return _mix(c0, c1, t)


def _f_tile(c0, c1, p, x, y):
    # p = (tile size, checker?): tiles of c0 (alternating with c1 if checker) and dark grout
    gx, gy = np.floor(x / p[0]), np.floor(y / p[0])
    odd = ((gx + gy) % 2 == 1) & (p[1] > 0.5)
    col = np.where(odd[..., None], np.asarray(c1, np.float32), np.asarray(c0, np.float32))
    grout = (_frac(x / p[0]) < 0.08) | (_frac(y / p[0]) < 0.08)
    return np.where(grout[..., None], np.asarray(c0, np.float32) * 0.6, col)


def _f_carpet(c0, c1, p, x, y):
    # p = (x0, y0, x1, y1, border): border in c1, diamonds inside
    d = np.minimum(np.minimum(x - p[0], p[2] - x), np.minimum(y - p[1], p[3] - y))
    cx, cy = (p[0] + p[2]) / 2, (p[1] + p[3]) / 2
    diam = _frac((np.abs(x - cx) + np.abs(y - cy)) / (2.5 * p[4])) < 0.3
    t = np.where(d < p[4], 1.0, np.where(diam, 0.45, 0.0))
    return _mix(c0, c1, t)


def _f_dots(c0, c1, p, x, y):
    # p = (period,): polka dots of c1 on c0 (wallpaper)
    row = np.floor(y / p[0])
    fx = _frac(x / p[0] + 0.5 * (row % 2)) - 0.5
    fy = _frac(y / p[0]) - 0.5
    dot = fx * fx + fy * fy < 0.04
    return np.where(dot[..., None], np.asarray(c1, np.float32), np.asarray(c0, np.float32))


_PATTERNS = {
    "flat": _f_flat, "vgrad": _f_vgrad, "hgrad": _f_hgrad, "radial": _f_radial,
    "brick": _f_brick, "planks": _f_planks, "grain": _f_grain, "glass": _f_glass,
    "water": _f_water, "foliage": _f_foliage, "speckle": _f_speckle, "stripes": _f_stripes,
    "plaid": _f_plaid, "tile": _f_tile, "carpet": _f_carpet, "dots": _f_dots,
}


# ----------------------------------------------------------------------------- rasterizer
def rasterize(prims: Sequence[Primitive], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw primitives in order; return (image uint8 HxWx3, object, part, material uint16 maps)."""
    s = int(size)
    if len(prims) >= 65535:
        raise ValueError("too many primitives for one scene")
    centres = (np.arange(s, dtype=np.float64) + 0.5) / s
    # Pass 1: paint the index of the primitive covering each pixel, in painter's order. Colours
    # and labels are both looked up from this one map, so they cannot disagree.
    ids = np.zeros((s, s), np.uint16)
    for k, p in enumerate(prims, 1):
        if p.shape == RECT:  # exactly the centres with x0 <= x < x1 (and y0 <= y < y1)
            q = p.params
            j0, j1 = np.searchsorted(centres, (q[0], q[2]))
            i0, i1 = np.searchsorted(centres, (q[1], q[3]))
            ids[i0:i1, j0:j1] = k
            continue
        bx0, by0, bx1, by1 = bbox(p)
        # one pixel of slack each side: the coverage predicate, not the box, decides
        j0, j1 = max(0, math.floor(bx0 * s - 0.5)), min(s, math.ceil(bx1 * s - 0.5) + 1)
        i0, i1 = max(0, math.floor(by0 * s - 0.5)), min(s, math.ceil(by1 * s - 0.5) + 1)
        if j0 < j1 and i0 < i1:
            ids[i0:i1, j0:j1][_cover(p, centres[None, j0:j1], centres[i0:i1, None])] = k
    # Pass 2: evaluate each fill only at the pixels where its primitive ended up visible.
    flat_ids = ids.ravel()
    order = np.argsort(flat_ids, kind="stable")  # radix sort on 16-bit keys: linear time
    ends = np.cumsum(np.bincount(flat_ids, minlength=len(prims) + 1))
    img = np.zeros((s * s, 3), np.float32)
    c32 = centres.astype(np.float32)
    for k in np.flatnonzero(np.diff(ends)) + 1:
        idx = order[ends[k - 1]:ends[k]]
        f = prims[k - 1].fill
        if f[0] == "flat":
            img[idx] = f[1]
        elif f[0] == "vgrad":  # depends on the row only: one colour per row, then a gather
            img[idx] = _f_vgrad(f[1], f[2], f[3], c32[0], c32)[idx // s]
        else:
            row = idx // s
            img[idx] = _PATTERNS[f[0]](f[1], f[2], f[3], c32[idx - row * s], c32[row])
    lut = np.zeros((3, len(prims) + 1), np.uint16)
    for k, p in enumerate(prims, 1):
        lut[:, k] = (p.obj, p.part, p.material)
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8).reshape(s, s, 3)
    return image, lut[0][ids], lut[1][ids], lut[2][ids]


# ----------------------------------------------------------------------------- texture swatches
def texture_image(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A full-frame colourful swatch of texture ``name`` (DTD-like), HxWx3 uint8."""
    s = int(size)
    c = (np.arange(s, dtype=np.float64) + 0.5) / s
    x, y = c[None, :], c[:, None]
    th = rng.uniform(0, np.pi)
    u = x * np.cos(th) + y * np.sin(th)  # rotated pattern axes so orientation is not a cue
    v = -x * np.sin(th) + y * np.cos(th)
    hue = rng.uniform(0, 1)
    hues = (0.0, rng.uniform(0.25, 0.6), rng.uniform(0.65, 0.9))  # spread around the colour wheel
    cols = [_hsv(hue + d, rng.uniform(0.45, 0.9), rng.uniform(0.55, 0.95)) for d in hues]
    bg, fg, fg2 = (np.asarray(k, np.float32) for k in cols)
    f = rng.uniform(5, 12)  # repeats across the frame
    if name == "striped":
        m = _frac(u * f) < rng.uniform(0.3, 0.6)
    elif name == "dotted":
        gu, gv = _frac(u * f) - 0.5, _frac(v * f) - 0.5
        m = gu * gu + gv * gv < rng.uniform(0.02, 0.06)
    elif name == "checkered":
        m = (np.floor(u * f * 0.7) + np.floor(v * f * 0.7)) % 2 == 1
    elif name == "zigzag":
        tri = np.abs(_frac(u * f) - 0.5) * 2
        m = _frac(v * f * 0.7 + tri * rng.uniform(0.6, 1.2)) < 0.5
    elif name == "grid":
        w = rng.uniform(0.1, 0.22)
        m = (_frac(u * f) < w) | (_frac(v * f) < w)
    elif name == "wavy":
        m = _frac(v * f * 0.7 + 0.35 * np.sin(u * f * rng.uniform(2.5, 5.0))) < 0.5
    elif name == "bubbly":
        m = np.zeros((s, s), bool)
        ring = np.zeros((s, s), bool)
        for _ in range(int(rng.integers(14, 30))):  # a loop over bubbles, not pixels
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.04, 0.16)
            d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
            ring |= (d <= r) & (d > r * 0.82)
            m |= d <= r
        img = np.where(m[..., None], fg, bg)
        img = np.where(ring[..., None], fg2, img)
        return _finish(img, x, y, rng)
    elif name == "crosshatched":
        w = rng.uniform(0.12, 0.25)
        m1, m2 = _frac((u + v) * f) < w, _frac((u - v) * f) < w
        img = np.where(m1[..., None], fg, bg)
        img = np.where(m2[..., None], fg2, img)
        return _finish(img, x, y, rng)
    else:
        raise ValueError(f"unknown texture {name!r}")
    return _finish(np.where(m[..., None], fg, bg), x, y, rng)


def _finish(img: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # a soft lighting gradient so swatches look like photographed material, not flat vectors
    a, b = rng.uniform(-0.15, 0.15, 2)
    light = 1.0 + a * (x - 0.5) + b * (y - 0.5)
    return np.clip(img * light[..., None] + 0.5, 0, 255).astype(np.uint8)


def _hsv(h: float, s: float, v: float) -> Color:
    h = (h % 1.0) * 6
    i, f = int(h), h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return (r * 255, g * 255, b * 255)

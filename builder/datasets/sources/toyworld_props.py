"""The props of the toy world: houses, trees, cars, people, beds... each drawn as primitives
on a ``Canvas`` that records object, part and material labels with every shape."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from .toyworld_draw import (BAND, ELLIPSE, POLY, RECT, Fill, Primitive, band_top, flat,
                            pattern, poly_params, vgrad)

# ============================================================================ canvas
Col = Sequence[float]


def shade(c: Col, k: float) -> tuple[float, float, float]:
    """Colour c with its brightness multiplied by k (capped at white): k < 1 darkens."""
    return (min(255.0, c[0] * k), min(255.0, c[1] * k), min(255.0, c[2] * k))


def mix_color(a: Sequence[float], b: Sequence[float], t: float) -> tuple[float, ...]:
    """Linear interpolation from a to b (colours or points)."""
    return tuple(a[i] + (b[i] - a[i]) * t for i in range(len(a)))


class Canvas:
    """Collects one scene's primitives in painter's order and holds its random stream.

    Labels are given as 'object/part/material' strings (part may be empty) and turned into
    codes by ``resolve``, so the props below stay independent of the code numbering.
    """

    def __init__(self, rng: np.random.Generator, resolve: Callable[[str], tuple[int, int, int]]) -> None:
        self.rng = rng
        self.resolve = resolve
        self.prims: list[Primitive] = []
        self.sunset = False
        self.haze_col: Col = (200, 220, 240)

    def u(self, a: float, b: float) -> float:
        """A uniform float in [a, b) (``a`` when the range is empty, so tight layouts never fail)."""
        return float(self.rng.uniform(a, b)) if b > a else float(a)

    def chance(self, p: float) -> bool:
        """True with probability p."""
        return bool(self.rng.random() < p)

    def n(self, a: int, b: int) -> int:
        """A uniform integer in [a, b]."""
        return int(self.rng.integers(a, b + 1))

    def pick(self, seq: Sequence[Any]) -> Any:
        """A uniformly chosen element of seq."""
        return seq[int(self.rng.integers(len(seq)))]

    def jit(self, c: Col, a: float = 0.08) -> tuple[float, float, float]:
        """Colour c with random brightness and slight hue variation."""
        # so that no object kind has a single signature colour a classifier could key on
        r = self.rng.random(4).tolist()
        k = 1 - a + 2 * a * r[0]
        return tuple(min(255.0, max(0.0, c[i] * k + 16 * r[i + 1] - 8)) for i in range(3))  # type: ignore[return-value]

    def haze(self, c: Col, t: float) -> tuple[float, ...]:
        """Colour c faded by t towards the horizon colour (aerial perspective for far things)."""
        return mix_color(c, self.haze_col, t)

    def _add(self, shape: str, params: Sequence[float], lab: str, fill: Fill) -> None:
        o, p, m = self.resolve(lab)
        self.prims.append(Primitive(shape, tuple(float(v) for v in params), o, p, m, fill))

    def rect(self, x0: float, y0: float, x1: float, y1: float, lab: str, fill: Fill) -> None:
        """Add an axis-aligned rectangle (corners in any order)."""
        self._add(RECT, (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), lab, fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, lab: str, fill: Fill) -> None:
        """Add an axis-aligned ellipse."""
        self._add(ELLIPSE, (cx, cy, abs(rx), abs(ry)), lab, fill)

    def poly(self, pts: Sequence[tuple[float, float]], lab: str, fill: Fill) -> None:
        """Add a convex polygon (points in either orientation)."""
        self._add(POLY, poly_params(pts), lab, fill)

    def band(self, x0: float, x1: float, y1: float, knots: Sequence[float], lab: str, fill: Fill) -> tuple[float, ...]:
        """Add a band from the knot curve down to y1; return its params (for ``top``)."""
        params = tuple(float(v) for v in (x0, x1, y1, *knots))
        self._add(BAND, params, lab, fill)
        return params

    def knots(self, y: float, amp: float, n: int = 16) -> list[float]:
        """Smooth random heights around ``y`` at n+1 evenly spaced points (for bands)."""
        t = np.linspace(0, 1, n + 1)
        f1, f2, p1, p2 = self.u(0.6, 1.6), self.u(2, 4), self.u(0, 6.3), self.u(0, 6.3)
        return [float(v) for v in y + amp * (0.65 * np.sin(6.283 * f1 * t + p1) + 0.35 * np.sin(6.283 * f2 * t + p2))]

    @staticmethod
    def top(params: tuple[float, ...], x: float) -> float:
        """The height of a band's top curve at x (to stand things on the ground)."""
        return float(band_top(params, np.array([min(max(x, params[0]), params[1] - 1e-9)]))[0])


# ============================================================================ props
class Frame:
    """A prop's local coordinates: u to the right (mirrored when flipped) and v up, from an origin.

    Props are designed once in these units and placed anywhere at any scale by the frame.
    """

    def __init__(self, c: Canvas, x: float, base: float, sx: float, sy: float, flip: bool = False) -> None:
        self.c, self.x, self.base, self.sx, self.sy = c, x, base, (-sx if flip else sx), sy

    def pt(self, u: float, v: float) -> tuple[float, float]:
        """Image coordinates of local (u, v)."""
        return (self.x + u * self.sx, self.base - v * self.sy)

    def y(self, v: float) -> float:
        """Image y of local height v (for gradient bounds)."""
        return self.base - v * self.sy

    def rect(self, u0: float, v0: float, u1: float, v1: float, lab: str, fill: Fill) -> None:
        """A rectangle between local corners (u0, v0) and (u1, v1)."""
        (x0, y0), (x1, y1) = self.pt(u0, v0), self.pt(u1, v1)
        self.c.rect(x0, y0, x1, y1, lab, fill)

    def poly(self, uv: Sequence[tuple[float, float]], lab: str, fill: Fill) -> None:
        """A convex polygon through local points."""
        self.c.poly([self.pt(u, v) for u, v in uv], lab, fill)

    def ellipse(self, u: float, v: float, ru: float, rv: float, lab: str, fill: Fill) -> None:
        """An ellipse centred at local (u, v) with local radii."""
        x, y = self.pt(u, v)
        self.c.ellipse(x, y, ru * self.sx, rv * self.sy, lab, fill)


GLASS = ((205, 228, 245), (115, 160, 205))  # light sky reflected at the top, deeper blue below
METAL_GREY = (185, 185, 190)


def sky(c: Canvas, horizon: float, sun: float = 0.5, clouds: int = 3) -> None:
    """A sky gradient down to below ``horizon``, maybe a sun and some clouds (sets the time of day)."""
    c.sunset = c.chance(0.18)
    if c.sunset:
        top, bot = c.jit((75, 80, 150)), c.jit((250, 170, 120), 0.04)
    else:
        top, bot = c.jit((60, 125, 210)), c.jit((185, 218, 245), 0.04)
    c.haze_col = bot
    c.rect(0, 0, 1, min(1.0, horizon + 0.2), "sky//sky", vgrad(top, bot, 0, horizon))
    if c.chance(sun):
        r = c.u(0.035, 0.06)
        y = c.u(horizon - 0.12, horizon - 0.04) if c.sunset else c.u(0.08, max(0.1, horizon - 0.2))
        core, rim = ((255, 240, 200), (255, 150, 80)) if c.sunset else ((255, 252, 225), (255, 215, 90))
        x = c.u(0.08, 0.92)
        c.ellipse(x, y, r, r, "sun//sky", pattern("radial", core, rim, x, y, r))
    for _ in range(c.n(0, clouds)):
        cloud(c, c.u(-0.05, 1.05), c.u(0.06, max(0.08, horizon - 0.15)), c.u(0.12, 0.25))


def cloud(c: Canvas, cx: float, cy: float, w: float) -> None:
    """A fluffy cloud of ellipses centred at (cx, cy), ``w`` wide."""
    hi, lo = ((255, 225, 215), (215, 165, 175)) if c.sunset else ((255, 255, 255), (212, 222, 236))
    fill = vgrad(hi, lo, cy - w * 0.3, cy + w * 0.18)
    c.ellipse(cx, cy, w * 0.5, w * 0.13, "cloud//sky", fill)
    for _ in range(c.n(2, 4)):
        r = w * c.u(0.12, 0.22)
        c.ellipse(cx + w * c.u(-0.3, 0.3), cy - r * 0.45, r, r * 0.85, "cloud//sky", fill)


def mountain(c: Canvas, xp: float, yp: float, half: float, base: float, snow: float, col: Col) -> None:
    """A two-faced mountain peaking at (xp, yp) with a jagged snow cap over ``snow`` of its height."""
    xl, xr = xp - half * c.u(0.8, 1.2), xp + half * c.u(0.8, 1.2)
    xm = xp + half * c.u(-0.25, 0.35)  # foot of the ridge between the lit and the shaded face
    for a, b, face in ((xl, xm, col), (xm, xr, shade(col, 0.72))):
        rock = pattern("speckle", face, shade(face, 0.85), 0.01, 0.06, yp, base)
        c.poly([(a, base), (xp, yp), (b, base)], "mountain//stone", rock)
    if snow <= 0:
        return
    ys = yp + (base - yp) * snow
    lx, mx, rx = xp + (xl - xp) * snow, xp + (xm - xp) * snow, xp + (xr - xp) * snow
    for a, b, white in ((lx, mx, (250, 252, 255)), (mx, rx, (200, 212, 235))):
        c.poly([(xp, yp), (a, ys), (b, ys)], "mountain//snow", flat(white))
        k = c.n(2, 3)
        for i in range(k):  # teeth along the lower edge of the cap
            p0, p1 = a + (b - a) * i / k, a + (b - a) * (i + 1) / k
            tip = ((p0 + p1) / 2 + c.u(-0.3, 0.3) * (p1 - p0), ys + (base - yp) * snow * c.u(0.1, 0.35))
            c.poly([(p0, ys - 1e-4), (p1, ys - 1e-4), tip], "mountain//snow", flat(white))


def tree(c: Canvas, x: float, base: float, h: float, pine: bool, snowy: bool = False,
         haze: float = 0.0, autumn: bool = False) -> None:
    """A pine or a round-crowned tree of height ``h`` standing at (x, base)."""
    f = Frame(c, x, base, h, h)
    bark = c.haze(c.jit((110, 75, 45)), haze)
    if pine:
        f.rect(-0.035, 0, 0.035, 0.25, "tree/trunk/wood", flat(bark))
        green = c.haze(c.jit((40, 105, 62), 0.12), haze)
        for k in range(3):
            vb, w = 0.15 + 0.25 * k, 0.3 * (1 - 0.23 * k)
            # lit from the left: a horizontal gradient reads as volume without noise
            lit = pattern("hgrad", shade(green, 1.2), shade(green, 0.75), x - w * h, x + w * h)
            f.poly([(-w, vb), (0, vb + 0.35), (w, vb)], "tree/crown/foliage", lit)
            if snowy:
                cap = [(-0.42 * w, vb + 0.2), (0, vb + 0.35), (0.42 * w, vb + 0.2)]
                f.poly(cap, "tree/crown/snow", flat((245, 248, 255)))
        return
    round_bark = pattern("hgrad", shade(bark, 1.15), shade(bark, 0.8), x - 0.045 * h, x + 0.045 * h)
    f.rect(-0.045, 0, 0.045, 0.5, "tree/trunk/wood", round_bark)
    greens = [(200, 120, 40), (220, 170, 50)] if autumn else [(70, 140, 60), (90, 155, 55), (55, 125, 65)]
    g = c.haze(c.jit(c.pick(greens), 0.1), haze)
    side = pattern("foliage", shade(g, 0.82), shade(g, 0.9), 0.045, f.y(1), f.y(0.35))
    main = pattern("foliage", g, shade(g, 1.08), 0.045, f.y(1), f.y(0.35))
    f.ellipse(-0.19, 0.56, 0.2, 0.17, "tree/crown/foliage", side)
    f.ellipse(0.19, 0.58, 0.2, 0.17, "tree/crown/foliage", side)
    f.ellipse(0, 0.68, 0.3, 0.28, "tree/crown/foliage", main)
    f.ellipse(c.u(-0.08, 0.08), 0.84, 0.19, 0.16, "tree/crown/foliage", main)
    f.ellipse(-0.08, 0.8, 0.13, 0.1, "tree/crown/foliage", flat(shade(g, 1.15)))


def bush(c: Canvas, x: float, base: float, w: float, haze: float = 0.0) -> None:
    """A bush of three foliage blobs, ``w`` wide."""
    g = c.haze(c.jit((60, 125, 55), 0.12), haze)
    leaves = pattern("foliage", g, shade(g, 1.1), 0.03, base - w * 0.6, base)
    for dx, r in ((-0.3, 0.3), (0.3, 0.3), (0.0, 0.4)):
        c.ellipse(x + dx * w, base - r * w * 0.75, r * w, r * w * 0.8, "bush//foliage", leaves)


def rock(c: Canvas, x: float, base: float, w: float) -> None:
    """A convex boulder ``w`` wide."""
    g = c.jit(c.pick([(130, 128, 125), (115, 110, 105), (145, 140, 130)]), 0.1)
    h = w * c.u(0.4, 0.7)
    # points on a half-ellipse, in angular order, always make a convex outline
    arc = [(x - w / 2 * math.cos(a), base - h * math.sin(a)) for a in sorted(c.u(0.15, 2.99) for _ in range(4))]
    c.poly([(x - w / 2, base), *arc, (x + w / 2, base)], "rock//stone",
           pattern("speckle", shade(g, 1.1), shade(g, 0.75), 0.012, 0.1, base - h, base))


FACADES = {
    "brick": [(170, 75, 55), (150, 85, 65)],
    "wood": [(160, 110, 70), (135, 90, 55)],
    "painted": [(235, 215, 170), (240, 235, 220), (175, 205, 225), (245, 220, 120), (215, 160, 150)],
}
ROOFS = [(165, 60, 50), (85, 80, 95), (120, 70, 50), (60, 90, 110)]


def house(c: Canvas, cx: float, base: float, w: float, h: float, mat: str | None = None,
          snowy: bool = False, facade: Col | None = None, haze: float = 0.0) -> None:
    """A house: facade, roof, maybe a chimney, windows and a door; ``h`` is the facade height."""
    x0, x1, top = cx - w / 2, cx + w / 2, base - h
    mat = mat or c.pick(list(FACADES))
    fcol = c.haze(c.jit(facade or c.pick(FACADES[mat])), haze)
    rcol = c.haze(c.jit(c.pick(ROOFS)), haze)
    rh = h * (c.u(0.65, 0.9) if snowy else c.u(0.4, 0.7))
    ov = w * 0.07
    if c.chance(0.5):  # chimney first, so the roof hides its foot
        d = w * c.u(0.15, 0.3) * c.pick([-1, 1])
        ytop = top - rh * (1 - abs(d) / (w / 2 + ov)) - rh * 0.3
        c.rect(cx + d - 0.04 * w, ytop, cx + d + 0.04 * w, top, "house/chimney/brick",
               pattern("brick", shade(rcol, 1.1), (200, 195, 190), 0.012))
    wall = {"brick": pattern("brick", fcol, (215, 205, 195), 0.02),
            "wood": pattern("planks", fcol, shade(fcol, 0.7), 0.02, 0),
            "painted": vgrad(fcol, shade(fcol, 0.9), top, base)}[mat]
    c.rect(x0, top, x1, base, f"house/facade/{mat}", wall)
    if c.chance(0.35) and not snowy:  # hipped roof
        roof = [(x0 - ov, top), (x0 + w * 0.25, top - rh), (x1 - w * 0.25, top - rh), (x1 + ov, top)]
    else:
        roof = [(x0 - ov, top), (cx, top - rh), (x1 + ov, top)]
    if snowy:
        c.poly(roof, "house/roof/snow", vgrad((252, 253, 255), (205, 215, 235), top - rh, top))
    else:
        c.poly(roof, "house/roof/tile", pattern("stripes", rcol, shade(rcol, 0.8), 0.018, 0, 0.25))
    cols = 3 if w > 1.35 * h else 2
    door = c.n(0, cols - 1)
    two = h > 0.75 * w  # two storeys
    glow = c.sunset and c.chance(0.5)
    frame = (245, 245, 240) if mat != "painted" else shade(fcol, 0.6)
    ww, wh = w / cols * 0.45, h * (0.2 if two else 0.28)
    for k in range(cols):
        sx = x0 + w * (k + 0.5) / cols
        rows = [top + h * 0.28] if two else []
        if k == door:
            dw = w / cols * 0.5
            c.rect(sx - dw / 2, base - h * (0.42 if two else 0.6), sx + dw / 2, base, "house/house door/wood",
                   pattern("planks", c.jit((120, 75, 45)), (80, 50, 30), 0.012, 1))
            c.ellipse(sx + dw * 0.3, base - h * 0.2, 0.008, 0.008, "house/house door/metal", flat((230, 200, 90)))
        else:
            rows.append(base - h * (0.3 if two else 0.4))
        for wy in rows:
            window_pane(c, sx - ww / 2, wy - wh / 2, sx + ww / 2, wy + wh / 2, "house/house window", frame, glow)


def window_pane(c: Canvas, x0: float, y0: float, x1: float, y1: float, lab: str, frame: Col,
                glow: bool = False) -> None:
    """A framed window with a cross bar, labelled ``lab`` ('object/part') plus the material."""
    pad = 0.14 * min(x1 - x0, y1 - y0)
    c.rect(x0, y0, x1, y1, f"{lab}/painted", flat(frame))
    pane = vgrad((255, 235, 160), (240, 180, 90), y0, y1) if glow else pattern("glass", *GLASS, y0, y1, 0.06)
    c.rect(x0 + pad, y0 + pad, x1 - pad, y1 - pad, f"{lab}/glass", pane)
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    c.rect(mx - pad / 2, y0, mx + pad / 2, y1, f"{lab}/painted", flat(frame))
    c.rect(x0, my - pad / 2, x1, my + pad / 2, f"{lab}/painted", flat(frame))


CARS = [(200, 40, 40), (40, 90, 190), (240, 190, 40), (235, 235, 235), (55, 55, 65), (40, 150, 90), (150, 150, 160)]


def car(c: Canvas, x0: float, base: float, L: float) -> None:
    """A side-view car of length ``L`` from x0, facing left or right."""
    f = Frame(c, x0 + L / 2, base, L, L, c.chance(0.5))  # u from -0.5 (rear) to 0.5 (front)
    col = c.jit(c.pick(CARS))
    body = vgrad(shade(col, 1.2), shade(col, 0.8), f.y(0.3), base)
    cabin = [(-0.3, 0.2), (-0.2, 0.36), (0.18, 0.36), (0.35, 0.2)]
    f.poly(cabin, "car/car body/metal", body)
    f.poly([(-0.5, 0.07), (-0.49, 0.2), (0.47, 0.22), (0.5, 0.16), (0.5, 0.07), (0.47, 0.05), (-0.48, 0.05)],
           "car/car body/metal", body)
    f.poly([(u + (0.02 - u) * 0.2, v + (0.26 - v) * 0.2) for u, v in cabin], "car/car window/glass",
           pattern("glass", *GLASS, f.y(0.36), f.y(0.2), 0.05))
    f.rect(0.02, 0.37, 0.045, 0.2, "car/car body/metal", body)  # the pillar between the windows
    f.rect(0.46, 0.17, 0.5, 0.13, "car/car body/glass", flat((255, 240, 170)))
    f.rect(-0.5, 0.17, -0.475, 0.12, "car/car body/glass", flat((220, 40, 40)))
    f.rect(-0.51, 0.1, -0.38, 0.055, "car/car body/plastic", flat((45, 45, 50)))
    f.rect(0.4, 0.1, 0.51, 0.055, "car/car body/plastic", flat((45, 45, 50)))
    for u in (-0.3, 0.3):
        f.ellipse(u, 0.09, 0.09, 0.09, "car/wheel/rubber", flat((35, 35, 38)))
        f.ellipse(u, 0.09, 0.045, 0.045, "car/wheel/metal", flat(METAL_GREY))


SKIN = [(240, 200, 170), (200, 150, 110), (140, 95, 65), (225, 180, 140)]
HAIR = [(40, 30, 25), (110, 70, 35), (220, 190, 110), (70, 50, 40)]
SHIRTS = [(200, 70, 70), (70, 110, 170), (230, 230, 225), (90, 150, 90), (230, 180, 60), (150, 90, 160)]
JACKETS = [(220, 60, 60), (60, 110, 200), (250, 200, 50), (240, 120, 40), (40, 170, 120)]
PANTS = [(50, 60, 100), (40, 40, 45), (120, 95, 70), (80, 90, 110)]


def person(c: Canvas, x: float, base: float, h: float, bright: bool = False) -> None:
    """A standing person of height ``h`` (``bright``: a colourful ski jacket)."""
    f = Frame(c, x, base, h, h)
    skin, hair = c.jit(c.pick(SKIN), 0.05), c.jit(c.pick(HAIR))
    shirt, pants = c.jit(c.pick(JACKETS if bright else SHIRTS)), c.jit(c.pick(PANTS))
    for u in (-0.065, 0.065):
        f.rect(u - 0.045, 0.03, u + 0.045, 0.46, "person/leg/fabric", flat(pants))
        f.rect(u - 0.05, 0, u + 0.06, 0.04, "person/leg/leather", flat((50, 40, 35)))  # shoes
    for u in (-0.15, 0.15):  # arms
        f.rect(u - 0.035, 0.47, u + 0.035, 0.76, "person/torso/fabric", flat(shade(shirt, 0.9)))
    f.poly([(-0.12, 0.44), (-0.15, 0.74), (-0.08, 0.79), (0.08, 0.79), (0.15, 0.74), (0.12, 0.44)],
           "person/torso/fabric", flat(shirt))
    f.ellipse(0, 0.89, 0.089, 0.085, "person/head/hair", flat(hair))
    f.ellipse(0, 0.87, 0.075, 0.081, "person/head/skin", flat(skin))


HULLS = [(240, 240, 235), (200, 50, 45), (40, 80, 150), (230, 190, 60), (120, 80, 50)]


def boat(c: Canvas, x: float, base: float, L: float) -> None:
    """A sailing boat or a motor boat of length ``L`` floating at ``base``."""
    f = Frame(c, x, base, L, L, c.chance(0.5))
    hull = c.jit(c.pick(HULLS))
    mat = "wood" if hull[0] < 140 and hull[2] < 80 else "painted"
    f.poly([(-0.5, 0.16), (0.5, 0.2), (0.38, 0), (-0.4, 0)], f"boat/hull/{mat}",
           vgrad(hull, shade(hull, 0.75), f.y(0.2), base))
    f.rect(-0.47, 0.12, 0.46, 0.1, "boat/hull/painted", flat(shade(hull, 0.6) if hull[0] > 200 else (245, 245, 240)))
    if c.chance(0.6):
        f.rect(-0.04, 1.05, -0.01, 0.16, "boat/mast/wood", flat((120, 85, 55)))
        sail = c.jit((250, 248, 235), 0.04)
        f.poly([(-0.06, 1.0), (-0.06, 0.24), (-0.4, 0.24)], "boat/sail/fabric", flat(sail))
        f.poly([(0.01, 0.9), (0.01, 0.24), (0.35, 0.24)], "boat/sail/fabric", flat(shade(sail, 0.9)))
    else:
        f.rect(-0.2, 0.36, 0.2, 0.16, "boat/cabin/painted", flat((240, 240, 235)))
        f.rect(-0.14, 0.32, 0.14, 0.24, "boat/cabin/glass", pattern("glass", *GLASS, f.y(0.32), f.y(0.24), 0.05))


def streetlight(c: Canvas, x: float, base: float, h: float) -> None:
    """A street lamp of height ``h``."""
    f = Frame(c, x, base, h, h)
    dark = c.jit((45, 55, 60))
    f.rect(-0.02, 0, 0.02, 0.03, "streetlight/pole/metal", flat(dark))
    f.rect(-0.01, 0, 0.01, 0.88, "streetlight/pole/metal", flat(dark))
    glow = (255, 235, 150) if c.sunset else (250, 245, 215)
    f.poly([(-0.05, 0.98), (0.05, 0.98), (0.035, 0.87), (-0.035, 0.87)], "streetlight/lantern/glass", flat(glow))
    f.poly([(-0.065, 0.98), (0, 1.04), (0.065, 0.98)], "streetlight/lantern/metal", flat(dark))


def umbrella(c: Canvas, x: float, base: float, h: float) -> None:
    """A striped beach umbrella of height ``h``."""
    f = Frame(c, x, base, h, h)
    f.rect(-0.012, 0, 0.012, 0.8, "umbrella/pole/metal", flat((215, 215, 210)))
    c0, c1 = c.jit(c.pick([(230, 60, 60), (40, 120, 210), (250, 200, 40), (40, 170, 140)])), (250, 248, 240)
    k = 6
    for i in range(k):  # a fan of triangles in alternating colours
        a0, a1 = math.pi * i / k, math.pi * (i + 1) / k
        fan = [(0, 0.72), (-0.42 * math.cos(a0), 0.72 + 0.22 * math.sin(a0)),
               (-0.42 * math.cos(a1), 0.72 + 0.22 * math.sin(a1))]
        f.poly(fan, "umbrella/canopy/fabric", flat(c0 if i % 2 == 0 else c1))


def bench(c: Canvas, x: float, base: float, w: float) -> None:
    """A park bench ``w`` wide."""
    f = Frame(c, x, base, w, w)
    wood = c.jit((150, 100, 60))
    for u in (-0.4, 0.4):
        f.rect(u - 0.025, 0, u + 0.025, 0.42, "bench/leg/metal", flat((50, 55, 60)))
    for v in (0.62, 0.5):
        f.rect(-0.5, v, 0.5, v + 0.06, "bench/backrest/wood", flat(shade(wood, 0.9)))
    f.rect(-0.53, 0.22, 0.53, 0.3, "bench/seat/wood", pattern("grain", wood, shade(wood, 0.85), 0.01))


def fence(c: Canvas, x0: float, x1: float, base: float, h: float, col: Col) -> None:
    """A wooden fence of height ``h`` from x0 to x1."""
    f = Frame(c, x0, base, h, h)
    span = (x1 - x0) / h
    f.rect(0, 0.62, span, 0.75, "fence//wood", flat(shade(col, 0.9)))
    f.rect(0, 0.25, span, 0.38, "fence//wood", flat(shade(col, 0.9)))
    step = c.u(0.6, 0.9)
    for i in range(int(span / step) + 1):
        u = i * step
        f.poly([(u - 0.09, 0), (u - 0.09, 0.9), (u, 1), (u + 0.09, 0.9), (u + 0.09, 0)], "fence//wood", flat(col))


def cow(c: Canvas, x: float, base: float, w: float) -> None:
    """A cow ``w`` long, facing left or right."""
    f = Frame(c, x, base, w, w, c.chance(0.5))
    fur, spot = ((245, 242, 235), (40, 35, 35)) if c.chance(0.7) else (c.jit((150, 95, 60)), (245, 240, 230))
    for u in (-0.32, -0.2, 0.2, 0.32):
        f.rect(u - 0.04, 0, u + 0.04, 0.35, "cow//fur", flat(shade(fur, 0.9)))
    f.ellipse(0, 0.45, 0.45, 0.2, "cow//fur", flat(fur))
    for u, v, r in ((-0.15, 0.48, 0.09), (0.12, 0.4, 0.07), (0.25, 0.51, 0.05)):
        f.ellipse(u, v, r * 1.3, r, "cow//fur", flat(spot))
    f.ellipse(0.45, 0.57, 0.12, 0.1, "cow//fur", flat(fur))
    f.ellipse(0.53, 0.53, 0.07, 0.055, "cow//skin", flat((235, 170, 165)))  # muzzle


# ---------------------------------------------------------------------------- indoor props
def painting(c: Canvas, x0: float, y0: float, x1: float, y1: float) -> None:
    """A framed painting of a little landscape."""
    c.rect(x0, y0, x1, y1, "painting//wood", flat(c.jit(c.pick([(190, 150, 70), (90, 60, 40), (40, 40, 45)]))))
    p = 0.1 * min(x1 - x0, y1 - y0)
    a, b = x0 + p, x1 - p
    sky = c.jit(c.pick([(130, 180, 230), (240, 190, 140), (200, 210, 230)]))
    c.rect(a, y0 + p, b, y1 - p, "painting//painted", vgrad(sky, shade(sky, 1.15), y0, y1))
    r = (b - a) * 0.12
    c.ellipse(c.u(a, b), y0 + p + r * 1.5, r, r, "painting//painted", flat(c.jit((250, 220, 90))))
    land = c.jit(c.pick([(80, 140, 80), (60, 90, 140), (170, 110, 80)]))
    c.band(a, b, y1 - p, c.knots((y0 + y1) / 2 + p, (y1 - y0) * 0.1, 6), "painting//painted", flat(land))


def room_window(c: Canvas, x0: float, y0: float, x1: float, y1: float, curtains: bool) -> None:
    """A window on a room wall with a view outside, maybe with curtains."""
    frame = c.jit((245, 245, 240), 0.03)
    c.rect(x0, y0, x1, y1, "window//painted", flat(frame))
    p = 0.06 * min(x1 - x0, y1 - y0)
    sky = pattern("glass", (150, 195, 240), (215, 235, 250), y0, y1, 0.08)
    c.rect(x0 + p, y0 + p, x1 - p, y1 - p, "window//glass", sky)
    hills = c.knots(y0 + (y1 - y0) * 0.75, 0.02, 6)  # the view outside, seen through the glass
    c.band(x0 + p, x1 - p, y1 - p, hills, "window//glass", flat(c.jit((120, 170, 110))))
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    c.rect(mx - p / 2, y0, mx + p / 2, y1, "window//painted", flat(frame))
    c.rect(x0, my - p / 2, x1, my + p / 2, "window//painted", flat(frame))
    c.rect(x0 - 2 * p, y1, x1 + 2 * p, y1 + 1.5 * p, "window//painted", flat(shade(frame, 0.92)))  # sill
    if curtains:
        col = c.jit(c.pick([(200, 80, 80), (90, 120, 170), (230, 210, 150), (120, 160, 120)]))
        w = (x1 - x0) * c.u(0.18, 0.3)
        folds = pattern("stripes", col, shade(col, 0.82), w / 3, 1, 0.4)
        for a in (x0 - w * 0.6, x1 - w * 0.4):
            c.rect(a, y0 - 0.03, a + w, y1 + 0.05, "curtain//fabric", folds)
        c.rect(x0 - w * 0.8, y0 - 0.04, x1 + w * 0.8, y0 - 0.03, "curtain//metal", flat((90, 80, 70)))


def door(c: Canvas, x0: float, x1: float, fy: float, h: float) -> None:
    """A panelled room door of height ``h`` standing on the floor line ``fy``."""
    f = Frame(c, x0, fy, x1 - x0, h)
    col = c.jit(c.pick([(150, 100, 60), (240, 238, 230), (110, 75, 50)]))
    mat = "painted" if col[2] > 150 else "wood"
    f.rect(0, 0, 1, 1, f"door//{mat}", flat(col))
    for v0, v1 in ((0.08, 0.45), (0.55, 0.92)):
        f.rect(0.15, v0, 0.85, v1, f"door//{mat}", flat(shade(col, 0.88)))
    f.ellipse(0.88, 0.48, 0.05, 0.05 * (x1 - x0) / h, "door//metal", flat((220, 190, 90)))


def lamp(c: Canvas, x: float, base: float, h: float, floor: bool) -> None:
    """A table lamp or a floor lamp of height ``h``."""
    f = Frame(c, x, base, h, h)
    col = c.jit(c.pick([(245, 230, 190), (230, 200, 150), (200, 90, 70), (240, 240, 235)]))
    lit = vgrad(shade(col, 1.1), shade(col, 0.85), f.y(1), f.y(0.6))
    if floor:
        f.ellipse(0, 0.01, 0.12, 0.02, "lamp/lamp base/metal", flat((60, 60, 65)))
        f.rect(-0.012, 0.01, 0.012, 0.72, "lamp/lamp base/metal", flat((60, 60, 65)))
        f.poly([(-0.1, 1), (0.1, 1), (0.16, 0.72), (-0.16, 0.72)], "lamp/shade/fabric", lit)
        return
    body = c.jit(c.pick([(70, 120, 160), (220, 215, 200), (180, 110, 70)]))
    f.ellipse(0, 0.2, 0.17, 0.2, "lamp/lamp base/ceramic", vgrad(shade(body, 1.15), shade(body, 0.8), f.y(0.4), base))
    f.rect(-0.03, 0.38, 0.03, 0.55, "lamp/lamp base/metal", flat((200, 180, 110)))
    f.poly([(-0.22, 1), (0.22, 1), (0.38, 0.52), (-0.38, 0.52)], "lamp/shade/fabric", lit)


def pendant(c: Canvas, x: float, y: float, w: float) -> None:
    """A ceiling pendant lamp hanging down to ``y``."""
    c.rect(x - 0.003, 0, x + 0.003, y, "lamp/lamp base/metal", flat((50, 50, 55)))
    col = c.jit(c.pick([(40, 60, 70), (230, 225, 215), (200, 120, 60), (60, 120, 100)]))
    c.ellipse(x, y + w * 0.42, w * 0.2, w * 0.1, "lamp/shade/glass", flat((255, 240, 180)))  # the bulb's glow
    c.poly([(x - w * 0.12, y), (x + w * 0.12, y), (x + w / 2, y + w * 0.42), (x - w / 2, y + w * 0.42)],
           "lamp/shade/metal", vgrad(shade(col, 1.2), shade(col, 0.8), y, y + w * 0.4))


WOOD = [(150, 100, 60), (110, 75, 50), (230, 225, 215), (190, 150, 100)]
BLANKETS = [(200, 70, 70), (70, 110, 170), (230, 200, 90), (110, 160, 120), (180, 120, 180)]


def bed(c: Canvas, x0: float, base: float, L: float, flip: bool) -> None:
    """A side-view bed of length ``L`` from x0, headboard at the left (or right, when flipped)."""
    f = Frame(c, x0 + L / 2, base, L, L, flip)  # u from -0.5 (head) to 0.5 (foot)
    wood, blanket = c.jit(c.pick(WOOD)), c.jit(c.pick(BLANKETS))
    f.rect(-0.5, 0, -0.43, 0.55, "bed/headboard/wood", pattern("grain", wood, shade(wood, 0.85), 0.02))
    f.rect(0.43, 0, 0.49, 0.32, "bed/bed frame/wood", flat(shade(wood, 0.95)))
    f.rect(-0.45, 0.06, 0.46, 0.16, "bed/bed frame/wood", flat(wood))
    f.rect(-0.44, 0.15, 0.45, 0.27, "bed/blanket/fabric", flat((245, 244, 238)))  # the sheet
    f.ellipse(-0.33, 0.31, 0.1, 0.06, "bed/pillow/fabric", flat(c.jit((250, 250, 245), 0.03)))
    f.poly([(-0.2, 0.3), (-0.2, 0.1), (0.47, 0.1), (0.47, 0.295), (0.135, 0.322)], "bed/blanket/fabric",
           pattern("plaid", blanket, shade(blanket, 0.75), 0.03))


def cabinet(c: Canvas, x0: float, x1: float, y0: float, y1: float, col: Col, top: bool, drawers: bool) -> None:
    """A run of cabinet doors (or drawers) with handles, maybe with a countertop."""
    mat = "wood" if col[2] < 120 else "painted"
    c.rect(x0, y0, x1, y1, f"cabinet//{mat}", flat(shade(col, 0.7)))  # shows as the gaps between doors
    n = max(1, round((x1 - x0) / 0.13))
    w, h = (x1 - x0) / n, y1 - y0
    front = vgrad(shade(col, 1.04), shade(col, 0.92), y0, y1)
    for i in range(n):
        a, b = x0 + i * w, x0 + (i + 1) * w
        c.rect(a + 0.006, y0 + 0.006, b - 0.006, y1 - 0.006, f"cabinet//{mat}", front)
        if drawers:
            ym, yh, mid = y0 + 0.3 * h, y0 + 0.13 * h, (a + b) / 2
            c.rect(a + 0.006, ym, b - 0.006, ym + 0.006, f"cabinet/drawer/{mat}", flat(shade(col, 0.7)))
            c.rect(mid - 0.2 * w, yh, mid + 0.2 * w, yh + 0.008, "cabinet/drawer/metal", flat(METAL_GREY))
        else:
            hx, hy = (b - 0.2 * w if i % 2 == 0 or n == 1 else a + 0.14 * w), y0 + 0.4 * h
            c.rect(hx, hy, hx + 0.008, hy + min(0.05, 0.25 * h), "cabinet//metal", flat(METAL_GREY))
    if top:
        mat, cc = c.pick([("stone", (200, 200, 195)), ("wood", (170, 120, 70)), ("stone", (70, 70, 75))])
        c.rect(x0 - 0.01, y0 - 0.022, x1 + 0.01, y0, f"cabinet/countertop/{mat}", flat(c.jit(cc, 0.05)))


SOFAS = [(90, 120, 160), (160, 70, 70), (120, 140, 100), (200, 190, 170), (110, 110, 115)]
CUSHIONS = [(240, 200, 80), (230, 230, 220), (200, 90, 90), (80, 160, 150)]


def sofa(c: Canvas, x: float, base: float, w: float) -> None:
    """A front-view sofa ``w`` wide with seat cushions, armrests and throw pillows."""
    f = Frame(c, x, base, w, w * 0.42)  # u from -0.5 to 0.5, v from 0 to 1 (top of the backrest)
    mat = "leather" if c.chance(0.3) else "fabric"
    col = c.jit((110, 70, 45) if mat == "leather" else c.pick(SOFAS))
    for u in (-0.38, 0.38):
        f.rect(u - 0.012 / w, 0, u + 0.012 / w, 0.05, "sofa/leg/wood", flat((70, 50, 35)))
    f.rect(-0.44, 0.45, 0.44, 1, f"sofa/backrest/{mat}", vgrad(shade(col, 0.95), shade(col, 0.8), f.y(1), base))
    k = 2 if w < 0.45 else 3
    for i in range(k):
        a, b = -0.42 + i * 0.84 / k, -0.42 + (i + 1) * 0.84 / k
        f.rect(a + 0.004 / w, 0.35, b - 0.004 / w, 0.52, f"sofa/seat/{mat}", flat(shade(col, 1.08)))
    f.rect(-0.44, 0.05, 0.44, 0.36, f"sofa/seat/{mat}", flat(shade(col, 0.9)))
    for a in (-0.5, 0.39):
        f.rect(a, 0.05, a + 0.11, 0.62, f"sofa/armrest/{mat}", flat(col))
        f.ellipse(a + 0.055, 0.62, 0.058, 0.06, f"sofa/armrest/{mat}", flat(col))
    for i in range(c.n(0, 2)):  # slightly tilted throw pillows
        u = -0.28 + 0.56 * i
        f.poly([(u - 0.08, 0.5), (u - 0.064, 0.84), (u + 0.08, 0.8), (u + 0.072, 0.5)],
               "sofa/pillow/fabric", flat(c.jit(c.pick(CUSHIONS))))


def table(c: Canvas, x: float, base: float, w: float, h: float, col: Col) -> None:
    """A side-view table ``w`` wide and ``h`` high."""
    for a in (x - 0.42 * w, x + 0.38 * w):
        c.rect(a, base - h, a + 0.04 * w, base, "table/leg/wood", flat(shade(col, 0.8)))
    top = pattern("grain", col, shade(col, 0.85), 0.012)
    c.rect(x - w / 2, base - h, x + w / 2, base - h + 0.03, "table/tabletop/wood", top)


def chair(c: Canvas, x: float, base: float, h: float, col: Col, face_left: bool) -> None:
    """A side-view chair of height ``h``, its backrest away from the way it faces."""
    f = Frame(c, x, base, 0.5 * h, h, face_left)  # u from -0.5 (backrest) to 0.5
    mat = "wood"
    if c.chance(0.3):  # a bright plastic chair now and then
        mat, col = "plastic", c.jit(c.pick([(220, 60, 50), (240, 200, 50), (60, 130, 200), (245, 245, 240)]))
    f.rect(-0.5, 0, -0.4, 0.48, f"chair/leg/{mat}", flat(shade(col, 0.85)))
    f.rect(0.4, 0, 0.5, 0.48, f"chair/leg/{mat}", flat(shade(col, 0.85)))
    f.rect(-0.5, 0.46, -0.4, 1.0, f"chair/backrest/{mat}", flat(col))
    f.rect(-0.5, 0.85, -0.2, 1.0, f"chair/backrest/{mat}", flat(col))
    f.rect(-0.5, 0.44, 0.55, 0.52, f"chair/seat/{mat}", flat(shade(col, 1.1)))


def plant(c: Canvas, x: float, base: float, h: float) -> None:
    """A potted plant of height ``h``."""
    f = Frame(c, x, base, h, h)
    g = c.jit((60, 140, 70), 0.1)
    leaves = pattern("foliage", g, shade(g, 1.25), 0.015, f.y(1), f.y(0.4))
    for u, v, r in ((-0.22, 0.62, 0.2), (0.22, 0.64, 0.2), (0.0, 0.8, 0.22), (-0.05, 0.55, 0.18)):
        f.ellipse(u, v, r * 0.8, r, "plant//foliage", leaves)
    pot = c.jit(c.pick([(200, 110, 70), (230, 230, 225), (70, 90, 120)]))
    f.poly([(-0.22, 0.42), (0.22, 0.42), (0.16, 0), (-0.16, 0)], "plant//ceramic",
           vgrad(pot, shade(pot, 0.8), f.y(0.42), base))

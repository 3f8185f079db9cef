"""The toy world: a procedural probe dataset of flat-shaded scenes with pixel-exact labels.

It is the offline stand-in for Broden: each sample is either a scene (objects, object parts and
materials labelled per pixel, one scene label) or a texture swatch (one texture label). Scene
classes are defined by which objects co-occur, so a classifier has to detect objects to tell
them apart. A sample depends only on (seed, index, size): scenes are first sampled as an ordered
list of ``Primitive`` shapes in normalized coordinates, then rasterized at the requested size.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Callable, Sequence

import numpy as np

from . import toyworld_draw as D
from . import toyworld_props as P
from .base import SourceConcept, SourceSample
from .toyworld_draw import Primitive, flat, pattern, rasterize, texture_image, vgrad

#: Bump whenever the rendering or the vocabulary changes: it is part of ``fingerprint()``.
VERSION = 1

OBJECTS = [
    "sky", "cloud", "sun", "mountain", "snow", "grass", "sand", "water", "road", "sidewalk",
    "path", "field", "rock", "tree", "bush", "house", "car", "person", "boat", "pier", "fence",
    "bench", "streetlight", "umbrella", "cow", "wall", "floor", "ceiling", "window", "door",
    "curtain", "bed", "lamp", "sofa", "table", "chair", "cabinet", "painting", "rug", "plant",
]
#: Which parts each object is drawn with (part names never equal an object name).
PART_OF = {
    "house": ("roof", "facade", "chimney", "house window", "house door"),
    "car": ("car body", "wheel", "car window"),
    "tree": ("trunk", "crown"),
    "person": ("head", "torso", "leg"),
    "boat": ("hull", "sail", "mast", "cabin"),
    "streetlight": ("pole", "lantern"),
    "umbrella": ("canopy", "pole"),
    "bench": ("seat", "backrest", "leg"),
    "lamp": ("shade", "lamp base"),
    "bed": ("headboard", "bed frame", "blanket", "pillow"),
    "sofa": ("backrest", "seat", "armrest", "pillow", "leg"),
    "table": ("tabletop", "leg"),
    "chair": ("backrest", "seat", "leg"),
    "cabinet": ("countertop", "drawer"),
}
PARTS = list(dict.fromkeys(p for parts in PART_OF.values() for p in parts))
MATERIALS = [
    "sky", "foliage", "wood", "glass", "metal", "fabric", "leather", "brick", "stone", "snow",
    "water", "sand", "asphalt", "painted", "skin", "hair", "plastic", "rubber", "tile", "carpet",
    "soil", "ceramic", "fur", "wallpaper",
]
TEXTURES = ["striped", "dotted", "checkered", "zigzag", "grid", "wavy", "bubbly", "crosshatched"]
SCENES = [
    "ski_resort", "mountain_lake", "beach", "harbor", "street", "park", "forest", "farm",
    "bedroom", "living_room", "kitchen",
]


def _vocabulary() -> list[SourceConcept]:
    # one code space across categories (1..K), in list order, so codes never change silently
    out: list[SourceConcept] = []
    for cat, names in (("object", OBJECTS), ("part", PARTS), ("material", MATERIALS),
                       ("texture", TEXTURES), ("scene", SCENES)):
        for n in names:
            out.append(SourceConcept(len(out) + 1, n, cat))
    return out


CONCEPTS = _vocabulary()
CODE = {(k.category, k.name): k.code for k in CONCEPTS}


@lru_cache(maxsize=None)
def _labels(spec: str) -> tuple[int, int, int]:
    """'object/part/material' (part may be empty) -> local codes."""
    o, p, m = spec.split("/")
    if p and p not in PART_OF.get(o, ()):
        raise ValueError(f"{p!r} is not a part of {o!r}")
    return CODE["object", o], CODE["part", p] if p else 0, CODE["material", m]


# ============================================================================ scenes
# Each composer draws one scene class. Classes share objects (houses, trees, water, people,
# lamps, windows...) and colour schemes, so only the combination of objects tells them apart.
Items = list[tuple[float, Callable[[], None]]]


def _depth(h: float, base: float) -> float:
    # 0 at the horizon, 1 at the bottom edge: sizes grow with it (cheap perspective)
    return max(0.0, min(1.0, (base - h) / (1.0 - h)))


def _draw(items: Items) -> None:
    # painter's order: far (small base y) first
    for _, f in sorted(items, key=lambda t: t[0]):
        f()


def _stand(c: P.Canvas, ground: tuple[float, ...], lo: float, hi: float = 0.98) -> tuple[float, float]:
    """A random x and a base y on or below the ground band's top there."""
    x = c.u(0.02, 0.98)
    return x, max(c.u(lo, hi), c.top(ground, x) + 0.015)


GRASS, GRASS2 = (115, 178, 78), (75, 140, 58)


def _grass(y0: float) -> D.Fill:
    return pattern("speckle", GRASS, GRASS2, 0.01, 0.12, y0, 1)


MOUNT = [(120, 125, 150), (105, 115, 140), (135, 125, 135), (115, 120, 125)]


def _peaks(c: P.Canvas, h: float, base: float, snow: Callable[[], float]) -> None:
    col = c.jit(c.pick(MOUNT))
    for yp, xp in sorted((c.u(0.06, h - 0.12), c.u(-0.1, 1.1)) for _ in range(c.n(2, 4))):
        P.mountain(c, xp, yp, c.u(0.18, 0.4), base, snow(), c.haze(col, c.u(0.0, 0.35)))


def _water_fill(c: P.Canvas, y0: float) -> D.Fill:
    near = (35, 95, 150) if not c.sunset else (60, 70, 120)
    return pattern("water", P.mix_color(c.haze_col, (70, 140, 185), 0.55), c.jit(near, 0.06), y0, 1.0, c.u(0.01, 0.016))


def _ski_resort(c: P.Canvas) -> None:
    h = c.u(0.42, 0.55)
    P.sky(c, h)
    _peaks(c, h, h + 0.04, lambda: c.u(0.35, 0.65))
    snow = pattern("speckle", (252, 253, 255), (215, 225, 242), 0.008, 0.03, h, 1)
    g = c.band(0, 1, 1, c.knots(h, 0.015), "snow//snow", snow)
    for _ in range(c.n(3, 9)):
        x = c.u(0, 1)
        P.tree(c, x, c.top(g, x) + c.u(0.005, 0.02), c.u(0.04, 0.08), True, snowy=True, haze=0.3)
    if c.chance(0.5):  # a nearer ski slope
        a, b = c.u(h + 0.06, h + 0.18), c.u(h + 0.2, 0.68)
        a, b = (a, b) if c.chance(0.5) else (b, a)
        slope = [k + (a + (b - a) * i / 8) - h for i, k in enumerate(c.knots(h, 0.01, 8))]
        fresh = pattern("speckle", (255, 255, 255), (222, 232, 246), 0.008, 0.03, h, 1)
        g = c.band(0, 1, 1, slope, "snow//snow", fresh)
    items: Items = []
    for _ in range(c.n(0 if c.chance(0.15) else 1, 3)):
        x, y = _stand(c, g, h + 0.06)
        w = 0.1 + 0.22 * _depth(h, y)
        items.append((y, partial(P.house, c, x, y, w, w * c.u(0.6, 0.8), mat="wood", snowy=True)))
    for _ in range(c.n(1, 4)):
        x, y = _stand(c, g, h + 0.06, 1.05)
        items.append((y, partial(P.tree, c, x, y, 0.1 + 0.35 * _depth(h, y), True, snowy=c.chance(0.7))))
    for _ in range(c.n(1, 3) if c.chance(0.6) else 0):
        x, y = _stand(c, g, h + 0.08)
        items.append((y, partial(P.person, c, x, y, 0.06 + 0.16 * _depth(h, y), bright=True)))
    _draw(items)


def _mountain_lake(c: P.Canvas) -> None:
    h = c.u(0.42, 0.56)
    P.sky(c, h)
    _peaks(c, h, h + 0.005, lambda: 0.0 if c.chance(0.35) else c.u(0.12, 0.35))
    c.rect(0, h, 1, 1, "water//water", _water_fill(c, h))
    c.band(0, 1, h + 0.012, c.knots(h - 0.004, 0.004), "grass//foliage", flat(c.haze((60, 110, 60), 0.3)))
    for _ in range(c.n(6, 16)):
        P.tree(c, c.u(0, 1), h + 0.01, c.u(0.025, 0.06), c.chance(0.8), haze=0.35)
    gy = c.u(0.74, 0.86)
    kn = c.knots(gy, 0.04)
    wet: Items = []
    if c.chance(0.45):
        y = c.u(h + 0.05, min(kn) - 0.01)
        wet.append((y, partial(P.boat, c, c.u(0.1, 0.9), y, 0.06 + 0.2 * _depth(h, y))))
    for _ in range(c.n(0, 2)):
        y = c.u(h + 0.05, min(kn))
        wet.append((y, partial(P.rock, c, c.u(0, 1), y, 0.03 + 0.1 * _depth(h, y))))
    _draw(wet)
    g = c.band(0, 1, 1, kn, "grass//foliage", _grass(gy))
    items: Items = []
    for _ in range(c.n(1, 3)):
        x, y = _stand(c, g, gy, 1.05)
        items.append((y, partial(P.tree, c, x, y, c.u(0.25, 0.45), c.chance(0.6))))
    for _ in range(c.n(0, 2)):
        x, y = _stand(c, g, gy)
        items.append((y, partial(P.rock, c, x, y, c.u(0.06, 0.14))))
    if c.chance(0.3):
        x, y = _stand(c, g, gy)
        items.append((y, partial(P.person, c, x, y, c.u(0.16, 0.24))))
    _draw(items)


def _beach(c: P.Canvas) -> None:
    h = c.u(0.36, 0.5)
    P.sky(c, h)
    c.rect(0, h, 1, 1, "water//water", _water_fill(c, h))
    far: Items = []
    for _ in range(c.n(0, 2)):
        y = c.u(h + 0.02, h + 0.1)
        far.append((y, partial(P.boat, c, c.u(0.05, 0.95), y, c.u(0.05, 0.1))))
    _draw(far)
    s = c.u(0.58, 0.72)
    kn = c.knots(s, 0.02)
    c.band(0, 1, 1, [k - 0.012 for k in kn], "water//water", flat((236, 246, 246)))
    g = c.band(0, 1, 1, kn, "sand//sand", pattern("speckle", (240, 222, 175), (220, 190, 135), 0.008, 0.12, s, 1))
    items: Items = []
    for _ in range(c.n(1, 3)):
        x, y = _stand(c, g, s + 0.06)
        items.append((y, partial(P.umbrella, c, x, y, 0.15 + 0.2 * _depth(s, y))))
    for _ in range(c.n(0, 3)):
        x, y = _stand(c, g, s + 0.04)
        items.append((y, partial(P.person, c, x, y, 0.1 + 0.16 * _depth(s, y))))
    if c.chance(0.2):
        x, y = _stand(c, g, s + 0.04)
        items.append((y, partial(P.rock, c, x, y, c.u(0.06, 0.14))))
    _draw(items)


def _harbor(c: P.Canvas) -> None:
    h = c.u(0.3, 0.4)
    P.sky(c, h, clouds=2)
    if c.chance(0.5):
        c.band(0, 1, h + 0.06, c.knots(h - 0.03, 0.03, 8), "grass//foliage", flat(c.haze((80, 130, 70), 0.45)))
    q = c.u(h + 0.1, h + 0.16)
    x = c.u(-0.08, 0.02)
    while x < 1.02:
        w = c.u(0.1, 0.18)
        P.house(c, x + w / 2, q, w, w * c.u(1.0, 1.6), haze=0.05)
        x += w + c.u(0.0, 0.03)
    c.rect(0, q, 1, q + 0.03, "pier//stone", pattern("tile", (190, 185, 175), (180, 175, 165), 0.03, 0))
    prom: Items = []
    if c.chance(0.4):
        for _ in range(c.n(1, 2)):
            y = c.u(q + 0.008, q + 0.025)
            prom.append((y, partial(P.streetlight, c, c.u(0.05, 0.95), y, c.u(0.12, 0.16))))
    for _ in range(c.n(0, 3) if c.chance(0.4) else 0):
        y = c.u(q + 0.008, q + 0.025)
        prom.append((y, partial(P.person, c, c.u(0.05, 0.95), y, c.u(0.06, 0.08))))
    _draw(prom)
    c.rect(0, q + 0.03, 1, q + 0.07, "pier//stone", pattern("brick", (140, 135, 125), (100, 96, 90), 0.018))
    c.rect(0, q + 0.07, 1, 1, "water//water", _water_fill(c, q))
    items: Items = []
    if c.chance(0.5):
        y, a = c.u(q + 0.15, 0.72), c.u(-0.2, 0.5)
        b = a + c.u(0.35, 0.7)
        items.append((y + 0.03, partial(_jetty, c, a, b, y)))
    for _ in range(c.n(2, 4)):
        y = c.u(q + 0.12, 0.97)
        items.append((y, partial(P.boat, c, c.u(0.05, 0.95), y, 0.1 + 0.22 * _depth(q, y))))
    _draw(items)


def _jetty(c: P.Canvas, a: float, b: float, y: float) -> None:
    wood = c.jit((150, 110, 70))
    px = a + 0.02
    while px < b:
        c.rect(px, y + 0.02, px + 0.014, y + 0.07, "pier//wood", flat(_dark(wood)))
        px += 0.08
    c.rect(a, y, b, y + 0.03, "pier//wood", pattern("planks", wood, _dark(wood), 0.025, 1))


def _dark(col: P.Col) -> tuple[float, float, float]:
    return P.shade(col, 0.65)


def _street(c: P.Canvas) -> None:
    b = c.u(0.46, 0.58)
    P.sky(c, b, clouds=2)
    if c.chance(0.4):
        for _ in range(c.n(2, 4)):
            P.tree(c, c.u(0, 1), b, c.u(0.2, 0.3), c.chance(0.2))
    x = c.u(-0.12, 0.0)
    while x < 1.0:
        w = c.u(0.18, 0.32)
        P.house(c, x + w / 2, b, w, w * c.u(0.55, 1.0))
        x += w + c.u(0.0, 0.1)
    sw = c.u(0.05, 0.08)
    c.rect(0, b, 1, b + sw, "sidewalk//stone", pattern("tile", (198, 192, 182), (188, 182, 172), 0.035, 0))
    c.rect(0, b + sw, 1, b + sw + 0.012, "sidewalk//stone", flat((165, 162, 158)))
    rt = b + sw + 0.012
    c.rect(0, rt, 1, 1, "road//asphalt", pattern("speckle", (98, 98, 104), (78, 78, 84), 0.008, 0.15, rt, 1))
    ym, x = rt + (1 - rt) * c.u(0.4, 0.55), c.u(-0.16, 0)
    while x < 1:
        c.rect(x, ym - 0.006, x + 0.08, ym + 0.006, "road//painted", flat((242, 238, 215)))
        x += 0.16
    walk: Items = []
    for _ in range(c.n(1, 2) if c.chance(0.8) else 0):
        y = c.u(b + 0.01, b + sw)
        walk.append((y, partial(P.streetlight, c, c.u(0.03, 0.97), y, c.u(0.24, 0.34))))
    for _ in range(c.n(0, 3)):
        y = c.u(b + 0.01, b + sw)
        walk.append((y, partial(P.person, c, c.u(0.03, 0.97), y, c.u(0.13, 0.17))))
    for _ in range(c.n(1, 2) if c.chance(0.35) else 0):
        y = c.u(b + 0.01, b + sw)
        walk.append((y, partial(P.tree, c, c.u(0.03, 0.97), y, c.u(0.25, 0.35), False)))
    _draw(walk)
    cars: Items = []
    for _ in range(c.n(1, 3)):
        y = c.u(rt + 0.08, 0.98)
        cars.append((y, partial(P.car, c, c.u(-0.1, 0.85), y, 0.2 + 0.15 * _depth(rt, y))))
    _draw(cars)


def _path(c: P.Canvas, g: tuple[float, ...], h: float) -> None:
    fill = pattern("speckle", (215, 200, 165), (190, 172, 140), 0.008, 0.12, h, 1)
    if c.chance(0.5):  # a path leading away from the viewer
        t, t2, w = c.u(0.3, 0.7), c.u(0.2, 0.8), c.u(0.25, 0.4)
        y = c.top(g, t) + 0.01
        c.poly([(t - 0.015, y), (t + 0.015, y), (t2 + w / 2, 1.0), (t2 - w / 2, 1.0)], "path//stone", fill)
    else:
        y, w, d = c.u(h + 0.1, 0.8), c.u(0.05, 0.08), c.u(-0.05, 0.05)
        c.poly([(0, y), (1, y + d), (1, y + d + w), (0, y + w)], "path//stone", fill)


def _park(c: P.Canvas) -> None:
    h = c.u(0.42, 0.56)
    P.sky(c, h)
    if c.chance(0.6):
        for _ in range(c.n(5, 10)):
            P.tree(c, c.u(0, 1), h + 0.01, c.u(0.06, 0.12), c.chance(0.2), haze=0.35)
    g = c.band(0, 1, 1, c.knots(h, 0.012), "grass//foliage", _grass(h))
    has_path = c.chance(0.75)
    if has_path:
        _path(c, g, h)
    items: Items = []
    autumn = c.chance(0.15)
    for _ in range(c.n(2, 4)):
        x, y = _stand(c, g, h + 0.05, 1.05)
        size, pine, red = 0.15 + 0.4 * _depth(h, y), c.chance(0.2), autumn and c.chance(0.7)
        items.append((y, partial(P.tree, c, x, y, size, pine, autumn=red)))
    for _ in range(c.n(1 if not has_path or c.chance(0.85) else 0, 2)):
        x, y = _stand(c, g, h + 0.08)
        items.append((y, partial(P.bench, c, x, y, 0.08 + 0.16 * _depth(h, y))))
    for _ in range(c.n(0, 3)):
        x, y = _stand(c, g, h + 0.06)
        items.append((y, partial(P.person, c, x, y, 0.08 + 0.2 * _depth(h, y))))
    for _ in range(c.n(0, 3)):
        x, y = _stand(c, g, h + 0.04)
        items.append((y, partial(P.bush, c, x, y, 0.06 + 0.15 * _depth(h, y))))
    if c.chance(0.35):
        x, y = _stand(c, g, h + 0.06)
        items.append((y, partial(P.streetlight, c, x, y, 0.15 + 0.25 * _depth(h, y))))
    _draw(items)


def _forest(c: P.Canvas) -> None:
    h = c.u(0.2, 0.36)
    P.sky(c, h, sun=0.25, clouds=1)
    floor = pattern("speckle", (95, 135, 62), (60, 95, 45), 0.01, 0.15, h, 1)
    g = c.band(0, 1, 1, c.knots(h + 0.02, 0.01), "grass//foliage", floor)
    if c.chance(0.3):
        _path(c, g, h)
    items: Items = []
    mix = c.u(0.2, 0.8)  # share of pines
    for _ in range(c.n(10, 18)):
        x, y = _stand(c, g, h + 0.01, h + 0.1)
        items.append((y, partial(P.tree, c, x, y, c.u(0.1, 0.2), c.chance(mix), haze=c.u(0.3, 0.5))))
    for _ in range(c.n(5, 9)):
        x, y = _stand(c, g, h + 0.1, 1.05)
        items.append((y, partial(P.tree, c, x, y, 0.3 + 0.5 * _depth(h, y), c.chance(mix), autumn=c.chance(0.08))))
    for _ in range(c.n(2, 5)):
        x, y = _stand(c, g, h + 0.1)
        items.append((y, partial(P.bush, c, x, y, 0.05 + 0.12 * _depth(h, y))))
    for _ in range(c.n(0, 2)):
        x, y = _stand(c, g, h + 0.1)
        items.append((y, partial(P.rock, c, x, y, 0.04 + 0.12 * _depth(h, y))))
    if c.chance(0.15):
        x, y = _stand(c, g, h + 0.15)
        items.append((y, partial(P.person, c, x, y, 0.1 + 0.2 * _depth(h, y))))
    _draw(items)


def _farm(c: P.Canvas) -> None:
    h = c.u(0.38, 0.5)
    P.sky(c, h)
    for _ in range(c.n(1, 2)):
        hills = c.knots(h - c.u(0.01, 0.06), 0.03, 8)
        c.band(0, 1, h + 0.1, hills, "grass//foliage", flat(c.haze(GRASS, c.u(0.3, 0.5))))
    c.band(0, 1, 1, c.knots(h + 0.005, 0.005), "grass//foliage", _grass(h))
    fy = c.u(h + 0.13, h + 0.25)
    items: Items = []
    if c.chance(0.85):
        y = c.u(h + 0.04, fy - 0.03)
        w = 0.16 + 0.25 * _depth(h, y)
        red = c.chance(0.6)
        items.append((y, partial(P.house, c, c.u(0.1, 0.9), y, w, w * c.u(0.55, 0.8), mat="wood" if red else None,
                                 facade=(170, 50, 40) if red else None)))
    for _ in range(c.n(0, 2)):
        y = c.u(h + 0.02, fy)
        items.append((y, partial(P.tree, c, c.u(0, 1), y, 0.12 + 0.3 * _depth(h, y), c.chance(0.3))))
    for _ in range(c.n(1, 3) if c.chance(0.55) else 0):
        y = c.u(h + 0.04, fy)
        items.append((y, partial(P.cow, c, c.u(0.05, 0.95), y, 0.05 + 0.18 * _depth(h, y))))
    if c.chance(0.2):
        y = c.u(h + 0.04, fy)
        items.append((y, partial(P.person, c, c.u(0.05, 0.95), y, 0.06 + 0.2 * _depth(h, y))))
    _draw(items)
    fx0, fx1 = (0.0, 1.0) if c.chance(0.6) else ((0.0, c.u(0.45, 0.75)) if c.chance(0.5) else (c.u(0.25, 0.55), 1.0))
    c.rect(fx0, fy, fx1, 1, "field//soil", pattern("speckle", (145, 105, 68), (118, 82, 52), 0.01, 0.15, fy, 1))
    crop = c.jit(c.pick([(120, 175, 60), (225, 195, 90), (95, 150, 60)]))
    n = c.n(6, 9)
    for r in range(n):
        y = fy + (1 - fy) * ((r + 0.3) / n) ** 1.3
        t = (1 - fy) / n * (0.35 + 0.5 * r / n)
        c.rect(fx0, y, fx1, y + t, "field//foliage", vgrad(_dark(crop) if r % 2 else crop, crop, y, y + t))
    if c.chance(0.85):
        P.fence(c, -0.02, 1.02, fy + 0.006, c.u(0.05, 0.07), c.jit(c.pick([(150, 110, 70), (235, 230, 220)])))


# ---------------------------------------------------------------------------- rooms
WALLS = [(235, 225, 200), (200, 215, 225), (225, 200, 190), (215, 225, 200), (245, 242, 235), (240, 220, 160)]
TILES = [(240, 240, 236), (200, 225, 230), (225, 235, 205), (245, 230, 200)]


def _room(c: P.Canvas, walls: Sequence[str], floors: Sequence[str]) -> tuple[float, float]:
    """Wall, floor, baseboard and maybe a ceiling; returns (floor line y, ceiling bottom y)."""
    fy = c.u(0.6, 0.74)
    kind = c.pick(walls)
    col = c.jit(c.pick(WALLS), 0.05)
    if kind == "paint":
        mat, fill = "painted", vgrad(col, P.shade(col, 0.9), 0, fy)
    elif kind == "paper":
        mat = "wallpaper"
        if c.chance(0.5):
            fill = pattern("stripes", col, P.shade(col, 0.9), c.u(0.03, 0.06), 1, 0.5)
        else:
            fill = pattern("dots", col, P.shade(col, 0.85), c.u(0.04, 0.07))
    elif kind == "brick":
        mat, fill = "brick", pattern("brick", c.jit((175, 95, 70)), (215, 205, 195), 0.025)
    else:
        mat, fill = "tile", pattern("tile", c.jit(c.pick(TILES), 0.04), col, 0.045, 0)
    c.rect(0, 0, 1, fy, f"wall//{mat}", fill)
    top = c.u(0.04, 0.09) if c.chance(0.4) else 0.0
    if top:
        c.rect(0, 0, 1, top, "ceiling//painted", vgrad((250, 250, 248), (222, 222, 216), 0, top))
        c.rect(0, top, 1, top + 0.008, "ceiling//painted", flat((205, 200, 195)))
    kind = c.pick(floors)
    if kind == "wood":
        fc = c.jit(c.pick([(175, 125, 80), (200, 160, 110), (130, 90, 60)]))
        mat, fill = "wood", pattern("planks", fc, _dark(fc), 0.035, 0)
    elif kind == "tile":
        fc = c.jit(c.pick([(200, 200, 195), (170, 160, 150), (140, 120, 100)]))
        mat, fill = "tile", pattern("tile", fc, P.shade(fc, 0.6) if c.chance(0.5) else fc, 0.07, 1)
    else:
        fc = c.jit(c.pick([(150, 140, 130), (120, 130, 150), (170, 120, 110)]))
        mat, fill = "carpet", pattern("speckle", fc, P.shade(fc, 0.85), 0.006, 0.1, fy, 1)
    c.rect(0, fy, 1, 1, f"floor//{mat}", fill)
    c.rect(0, fy - 0.02, 1, fy, "wall//painted", flat((248, 246, 240) if c.chance(0.6) else (120, 85, 55)))
    return fy, top


def _place(c: P.Canvas, w: float, taken: list[tuple[float, float]]) -> float | None:
    """A left x for something ``w`` wide that overlaps nothing in ``taken`` (then taken), or None."""
    for _ in range(20):
        x = c.u(0.02, max(0.021, 0.98 - w))
        if all(x + w + 0.02 <= a or x >= b + 0.02 for a, b in taken):
            taken.append((x, x + w))
            return x
    return None


def _wall_items(c: P.Canvas, fy: float, top: float, taken: list[tuple[float, float]],
                pw: float, pp: float, pd: float) -> None:
    """Maybe a window (with curtains), a painting and a door on the wall, not overlapping."""
    if c.chance(pw):
        w, curt = c.u(0.2, 0.3), c.chance(0.6)
        x = _place(c, w * (1.5 if curt else 1.0), taken)
        if x is not None:
            x += w * 0.25 if curt else 0.0
            y0 = top + c.u(0.08, 0.14)
            P.room_window(c, x, y0, x + w, min(fy - 0.2, y0 + c.u(0.22, 0.32)), curt)
    if c.chance(pp):
        w = c.u(0.12, 0.2)
        x = _place(c, w, taken)
        if x is not None:
            y0 = top + c.u(0.08, 0.16)
            P.painting(c, x, y0, x + w, y0 + w * c.u(0.65, 1.0))
    if c.chance(pd):
        w = c.u(0.14, 0.18)
        x = _place(c, w, taken)
        if x is not None:
            P.door(c, x, x + w, fy, (fy - top) * c.u(0.72, 0.85))


def _rug(c: P.Canvas, fy: float) -> None:
    x0, y0 = c.u(0.02, 0.4), c.u(fy + 0.05, fy + 0.12)
    x1, y1 = x0 + c.u(0.3, 0.55), c.u(0.88, 0.98)
    col = c.jit(c.pick([(170, 60, 60), (60, 90, 140), (200, 170, 110), (90, 120, 90)]))
    c.rect(x0, y0, x1, y1, "rug//carpet", pattern("carpet", col, c.jit((235, 220, 190)), x0, y0, x1, y1, 0.02))


WOODS = [(150, 100, 60), (110, 75, 50), (190, 150, 100), (235, 232, 225), (70, 70, 75)]


def _bedroom(c: P.Canvas) -> None:
    fy, top = _room(c, ["paint", "paper", "paint"], ["wood", "carpet", "wood"])
    L = c.u(0.5, 0.68)
    x0, flip = c.u(0.0, 1 - L), c.chance(0.5)
    _wall_items(c, fy, top, [], 0.75, 0.65, 0.3)
    if c.chance(0.5):
        _rug(c, fy)
    base = c.u(fy + 0.1, 0.86)
    # free floor on either side of the bed, so nothing stands half-hidden behind it
    left, right = (0.05, x0 - 0.06), (x0 + L + 0.06, 0.95)
    free = [(a, b) for a, b in (left, right) if b > a]
    a = x0 + L + 0.01 if flip else x0 - 0.12  # a nightstand by the headboard, with a lamp on it
    if c.chance(0.7) and 0 <= a and a + 0.11 <= 1:
        y = base - 0.04
        P.cabinet(c, a, a + 0.11, y - 0.14, y, c.jit(c.pick(WOODS)), top=False, drawers=True)
        P.lamp(c, a + 0.055, y - 0.14, c.u(0.12, 0.16), floor=False)
        free = [s for s in free if s != (right if flip else left)]
    elif free and c.chance(0.5):
        P.lamp(c, c.u(*c.pick(free)), c.u(fy + 0.05, fy + 0.1), c.u(0.35, 0.45), floor=True)
    if free and c.chance(0.35):
        P.plant(c, c.u(*c.pick(free)), c.u(fy + 0.05, fy + 0.1), c.u(0.14, 0.22))
    P.bed(c, x0, base, L, flip)


def _living_room(c: P.Canvas) -> None:
    fy, top = _room(c, ["paint", "paper", "brick"], ["wood", "carpet", "tile", "wood"])
    _wall_items(c, fy, top, [], 0.7, 0.65, 0.2)
    if c.chance(0.6):
        _rug(c, fy)
    w = c.u(0.38, 0.55)
    x, base = c.u(w / 2, 1 - w / 2), c.u(fy + 0.06, fy + 0.14)
    side = [s for s in (x - w / 2 - 0.08, x + w / 2 + 0.08) if 0.05 < s < 0.95]
    if side and c.chance(0.7):
        P.lamp(c, side.pop(c.n(0, len(side) - 1)), base - 0.01, c.u(0.35, 0.45), floor=True)
    if side and c.chance(0.4):
        s = side.pop()
        y = base - 0.02
        if c.chance(0.5):
            P.cabinet(c, s - 0.06, s + 0.06, y - 0.14, y, c.jit(c.pick(WOODS)), top=False, drawers=True)
            y -= 0.14
        P.plant(c, s, y, c.u(0.12, 0.2))
    P.sofa(c, x, base, w)
    if c.chance(0.3):
        P.chair(c, c.u(0.05, 0.95), c.u(base + 0.03, 0.9), c.u(0.22, 0.28), c.jit(c.pick(WOODS)), c.chance(0.5))
    if c.chance(0.7):
        P.table(c, x + c.u(-0.1, 0.1), c.u(base + 0.1, 0.97), c.u(0.2, 0.32), c.u(0.08, 0.11), c.jit(c.pick(WOODS)))


def _kitchen(c: P.Canvas) -> None:
    fy, top = _room(c, ["tile", "paint", "paint", "brick"], ["tile", "tile", "wood"])
    cx0 = 0.0 if c.chance(0.6) else c.u(0.0, 0.3)
    cx1 = 1.0 if c.chance(0.6) else c.u(max(cx0 + 0.45, 0.6), 1.0)
    ct = fy - c.u(0.2, 0.26)
    col = c.jit(c.pick([(235, 232, 225), (150, 100, 60), (120, 150, 170), (190, 150, 100), (90, 110, 90)]))
    taken = [(cx0, cx1)]
    win = None
    if c.chance(0.6):
        ww = c.u(0.2, 0.28)
        wx = c.u(cx0 + 0.02, max(cx0 + 0.021, cx1 - ww - 0.02))
        win = (wx, wx + ww)
    if c.chance(0.5):
        c.rect(cx0, ct - 0.12, cx1, ct, "wall//tile", pattern("tile", (245, 245, 240), c.jit((150, 190, 200)), 0.03, 1))
    if win:
        P.room_window(c, win[0], top + 0.08, win[1], ct - 0.06, False)
    ub = min(ct - 0.14, top + 0.04 + c.u(0.14, 0.2))
    if c.chance(0.7) and ub - (top + 0.04) > 0.08:
        if win:
            spans = [(cx0, win[0] - 0.03), (win[1] + 0.03, cx1)]
        else:  # leave some bare wall: a full-width wall of cupboards looks like a warehouse
            a = c.u(cx0, cx1 - 0.3)
            spans = [(a, min(cx1, a + c.u(0.3, 0.6)))]
        for a, b in spans:
            if b - a > 0.1:
                P.cabinet(c, a, b, top + 0.04, ub, col, top=False, drawers=False)
    P.cabinet(c, cx0, cx1, ct, fy + 0.03, col, top=True, drawers=c.chance(0.5))
    if c.chance(0.3):
        P.plant(c, c.u(cx0 + 0.05, cx1 - 0.05), ct - 0.022, c.u(0.07, 0.1))
    _wall_items(c, fy, top, taken, 0.0, 0.15, 0.25)
    if c.chance(0.75):
        w, x, base = c.u(0.25, 0.38), c.u(0.25, 0.75), c.u(fy + 0.18, 0.95)
        tc = c.jit(c.pick(WOODS))
        if c.chance(0.6):
            P.pendant(c, x, c.u(0.15, 0.3), c.u(0.1, 0.16))
        for sx, left in ((x - w / 2 - 0.02, False), (x + w / 2 + 0.02, True)):
            if c.chance(0.8):
                P.chair(c, sx - 0.05 if not left else sx + 0.05, base, 0.28, tc, left)
        P.table(c, x, base, w, 0.17, tc)
    elif c.chance(0.5):
        P.pendant(c, c.u(0.2, 0.8), c.u(0.15, 0.3), c.u(0.1, 0.16))


SCENE_BUILDERS: dict[str, Callable[[P.Canvas], None]] = {
    "ski_resort": _ski_resort, "mountain_lake": _mountain_lake, "beach": _beach, "harbor": _harbor,
    "street": _street, "park": _park, "forest": _forest, "farm": _farm,
    "bedroom": _bedroom, "living_room": _living_room, "kitchen": _kitchen,
}
assert list(SCENE_BUILDERS) == SCENES



# ============================================================================ API
def _choice(seed: int, index: int, texture_fraction: float) -> tuple[np.random.Generator, str, int]:
    # the first two draws decide the label, so labels are cheap to get without rendering
    rng = np.random.default_rng([int(seed), int(index)])
    is_tex = rng.random() < texture_fraction
    k = int(rng.integers(len(TEXTURES) if is_tex else len(SCENES)))
    return rng, ("texture" if is_tex else "scene"), k


def label_of(seed: int, index: int, texture_fraction: float = 0.1) -> tuple[str, str]:
    """(category, name) of sample ``index`` ('scene' or 'texture'), without rendering it."""
    _, cat, k = _choice(seed, index, texture_fraction)
    return cat, (TEXTURES if cat == "texture" else SCENES)[k]


def _compose(rng: np.random.Generator, scene: str) -> list[Primitive]:
    c = P.Canvas(rng, _labels)
    SCENE_BUILDERS[scene](c)
    return c.prims


def scene_primitives(seed: int, index: int, texture_fraction: float = 0.1) -> tuple[str, str, list[Primitive]]:
    """Sample the label and, for a scene, its primitives in painter's order (none for a texture)."""
    rng, cat, k = _choice(seed, index, texture_fraction)
    if cat == "texture":
        return cat, TEXTURES[k], []
    return cat, SCENES[k], _compose(rng, SCENES[k])


def render(seed: int, index: int, size: int = 128,
           texture_fraction: float = 0.1) -> tuple[SourceSample, list[Primitive]]:
    """Render sample ``index`` at ``size`` px; also return the primitives it was drawn from."""
    rng, cat, k = _choice(seed, index, texture_fraction)
    sid = f"toyworld-{seed}-{index:06d}"
    if cat == "texture":
        name = TEXTURES[k]
        img = texture_image(name, rng, size)
        return SourceSample(id=sid, image=img, pixel={}, image_labels={"texture": [CODE["texture", name]]}), []
    prims = _compose(rng, SCENES[k])
    img, obj, part, mat = rasterize(prims, size)
    sample = SourceSample(id=sid, image=img, pixel={"object": [obj], "part": [part], "material": [mat]},
                          image_labels={"scene": [CODE["scene", SCENES[k]]]})
    return sample, prims


class ToyWorld:
    """The procedural toy-world probe source: ``n`` samples of ``size`` px from ``seed``."""

    name = "toyworld"

    def __init__(self, n: int = 10000, size: int = 128, seed: int = 0, texture_fraction: float = 0.1) -> None:
        if n < 0 or not 8 <= size <= 4096 or not 0.0 <= texture_fraction <= 1.0:
            raise ValueError(f"bad toy-world options n={n} size={size} texture_fraction={texture_fraction}")
        self.n, self.size, self.seed, self.texture_fraction = int(n), int(size), int(seed), float(texture_fraction)

    def concepts(self) -> Sequence[SourceConcept]:
        """The toy world's vocabulary (objects, parts, materials, textures, scenes)."""
        return list(CONCEPTS)

    def __len__(self) -> int:
        """The number of samples."""
        return self.n

    def _check(self, index: int) -> int:
        if not -self.n <= index < self.n:
            raise IndexError(f"toyworld index {index} out of range for {self.n} samples")
        return int(index) % self.n

    def sample(self, index: int) -> SourceSample:
        """Render sample ``index``."""
        return render(self.seed, self._check(index), self.size, self.texture_fraction)[0]

    def native_size(self) -> tuple[int, int]:
        """Images and masks are drawn at ``size`` px: the build keeps that size."""
        return self.size, self.size

    def primitives(self, index: int) -> list[Primitive]:
        """The primitives of sample ``index`` in painter's order (empty for a texture swatch)."""
        return scene_primitives(self.seed, self._check(index), self.texture_fraction)[2]

    def label_of(self, index: int) -> tuple[str, str]:
        """(category, name) of sample ``index`` without rendering it."""
        return label_of(self.seed, self._check(index), self.texture_fraction)

    def scene_of(self, index: int) -> str | None:
        """The scene name of sample ``index`` (None for a texture swatch), without rendering."""
        cat, name = self.label_of(index)
        return name if cat == "scene" else None

    def fingerprint(self) -> str:
        """Changes whenever samples or vocabulary would change."""
        return f"toyworld:v{VERSION}:n={self.n}:size={self.size}:seed={self.seed}:tf={self.texture_fraction:g}"

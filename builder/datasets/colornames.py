"""The 11 basic color names per pixel, as Broden labels colors, for images of any source.

Broden used van de Weijer et al.'s learned color-naming table (w2c), which cannot be fetched
here. This module is a documented equivalent: each name has a few focal colors (sRGB, after
the Berlin-Kay / Sturges-Whitfield focal colors); a pixel takes the name of its nearest focal
color in CIELAB. The assignment is precomputed once as a 32x32x32 lookup table (5 bits per
channel, as w2c is indexed), so naming a whole image is one table lookup.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: The 11 basic color terms of Berlin and Kay, in Broden's order.
COLOR_NAMES = (
    "black", "blue", "brown", "gray", "green", "orange",
    "pink", "purple", "red", "white", "yellow",
)

#: Version of the naming rule; part of every dataset fingerprint.
COLOR_MODEL_VERSION = "focal-lab-v2"

# Several focal colors per name shape each name's region (dark and light blues, browns...).
_FOCALS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "black": ((10, 10, 10), (45, 42, 40)),
    "blue": ((30, 70, 200), (90, 150, 230), (20, 30, 110), (60, 110, 170), (70, 180, 220),
             (40, 140, 170)),
    "brown": ((120, 70, 30), (150, 100, 60), (90, 55, 30), (170, 130, 90)),
    "gray": ((128, 128, 128), (95, 95, 100), (165, 165, 165)),
    "green": ((40, 160, 50), (20, 90, 30), (140, 200, 80), (70, 120, 60), (70, 190, 150),
              (30, 120, 100)),
    "orange": ((245, 140, 30), (220, 110, 20)),
    "pink": ((245, 160, 190), (230, 90, 160), (250, 200, 210)),
    "purple": ((120, 50, 150), (160, 100, 200), (80, 30, 100)),
    "red": ((210, 30, 30), (150, 20, 25), (230, 70, 60)),
    "white": ((248, 248, 248), (215, 215, 220)),
    "yellow": ((245, 225, 40), (250, 240, 130), (200, 180, 30)),
}


#: One representative sRGB color per name, for drawing legends.
FOCAL_RGB: dict[str, tuple[int, int, int]] = {name: f[0] for name, f in _FOCALS.items()}
FOCAL_RGB["black"] = (25, 25, 25)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB values in [0, 255] (any shape ending in 3) to CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16,
                     500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


@lru_cache(maxsize=1)
def color_table() -> np.ndarray:
    """The 32x32x32 table of color-name indices (0-based into COLOR_NAMES), built once."""
    centers = (np.arange(32) * 8 + 4).astype(np.float64)
    grid = np.stack(np.meshgrid(centers, centers, centers, indexing="ij"), axis=-1)
    focal_names = [i for i, name in enumerate(COLOR_NAMES) for _ in _FOCALS[name]]
    focal_lab = srgb_to_lab(np.array([f for name in COLOR_NAMES for f in _FOCALS[name]]))
    lab = srgb_to_lab(grid).reshape(-1, 1, 3)
    nearest = np.argmin(((lab - focal_lab[None]) ** 2).sum(-1), axis=1)
    return np.asarray(focal_names, dtype=np.uint8)[nearest].reshape(32, 32, 32)


def name_colors(image: np.ndarray) -> np.ndarray:
    """Name the color of every pixel of an HxWx3 uint8 image: 0-based indices into COLOR_NAMES."""
    rgb = np.asarray(image, dtype=np.uint8) >> 3
    return color_table()[rgb[..., 0], rgb[..., 1], rgb[..., 2]]

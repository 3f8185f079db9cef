"""The 11 basic color names per pixel, named as Broden's color masks were, for any source.

Broden's color masks were made with the "w2c" color-name table of van de Weijer et al. (2009):
a 32x32x32 lookup indexed by ``(R // 8, G // 8, B // 8)`` giving a pixel's most probable name.
The project ships that table (``data/colors/w2color.npy``, with its provenance and license in
the README beside it), so naming a whole image is one table lookup and every source's colors
agree with Broden's own.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DatasetError

#: The 11 basic color terms of Berlin and Kay, in the table's (and Broden's) order.
COLOR_NAMES = (
    "black", "blue", "brown", "gray", "green", "orange",
    "pink", "purple", "red", "white", "yellow",
)

#: Version of the naming rule; part of every dataset fingerprint.
COLOR_MODEL_VERSION = "w2c"

#: sha256 of the shipped table, checked when it is loaded.
TABLE_SHA256 = "4bc6a1da263e156807acc6adff5e387cef64b05be17808f3fcbde2b2fdd23c13"

#: One representative sRGB color per name, for drawing legends (not used to name pixels).
FOCAL_RGB: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25), "blue": (30, 70, 200), "brown": (120, 70, 30),
    "gray": (128, 128, 128), "green": (40, 160, 50), "orange": (245, 140, 30),
    "pink": (245, 160, 190), "purple": (120, 50, 150), "red": (210, 30, 30),
    "white": (248, 248, 248), "yellow": (245, 225, 40),
}


def table_path() -> Path:
    """Where the w2c table is: the wheel's copy, else the source tree's ``data/colors``."""
    package_root = Path(__file__).resolve().parents[1]  # .../builder
    for candidate in (package_root / "color_data" / "w2color.npy",
                      package_root.parent / "data" / "colors" / "w2color.npy"):
        if candidate.is_file():
            return candidate
    raise DatasetError("the color-naming table w2color.npy is missing from the installation",
                       hint="reinstall unitdissect")


@lru_cache(maxsize=1)
def color_table() -> np.ndarray:
    """The 32x32x32 table of color-name indices (0-based into COLOR_NAMES), read once."""
    path = table_path()
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != TABLE_SHA256:
        raise DatasetError(f"{path}: not the shipped w2c color table (sha256 differs)",
                           hint="reinstall unitdissect")
    table = np.load(path, allow_pickle=False)
    if table.shape != (32, 32, 32) or table.dtype != np.uint8 or int(table.max()) >= 11:
        raise DatasetError(f"{path}: expected a 32x32x32 uint8 table of 11 names")
    return table


def name_colors(image: np.ndarray) -> np.ndarray:
    """Name the color of every pixel of an HxWx3 uint8 image: 0-based indices into COLOR_NAMES."""
    rgb = np.asarray(image, dtype=np.uint8) >> 3
    return color_table()[rgb[..., 0], rgb[..., 1], rgb[..., 2]]

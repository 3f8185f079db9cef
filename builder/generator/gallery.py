"""Before / after image strips of generator interventions, as small PNG files.

A strip is a grid: one row of the original samples above one row of the edited samples, two
pixels of white between images; a window to outline (insertion) is drawn as a one-pixel red
rectangle just around it on the edited image. The files are described in ``gallery.json`` beside them
(docs/results-format.md).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .. import io as atomic

__all__ = ["outline", "slug", "write_strip"]

_GAP = 2
_RED = np.array([230, 30, 30], dtype=np.uint8)


def slug(name: str) -> str:
    """A file-name-safe form of a concept name (``house window`` -> ``house-window``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "concept"


def outline(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of ``image`` [H, W, 3] with a line just outside the box ``(y0, y1, x0, x1)``
    (pixels, end exclusive), so that what is inside stays visible."""
    out = image.copy()
    h, w = out.shape[:2]
    y0, y1, x0, x1 = (int(v) for v in box)
    y0, x0, y1, x1 = y0 - 1, x0 - 1, y1 + 1, x1 + 1
    y0, x0 = max(0, min(y0, h - 1)), max(0, min(x0, w - 1))
    y1, x1 = max(y0 + 1, min(y1, h)), max(x0 + 1, min(x1, w))
    out[y0, x0:x1] = _RED
    out[y1 - 1, x0:x1] = _RED
    out[y0:y1, x0] = _RED
    out[y0:y1, x1 - 1] = _RED
    return out


def write_strip(path: str | Path, rows: Sequence[np.ndarray]) -> Path:
    """Write rows of images (each [n, H, W, 3] uint8, same n) as one PNG grid at ``path``."""
    rows = [np.asarray(r, dtype=np.uint8) for r in rows]
    n, h, w = rows[0].shape[:3]
    grid = np.full((len(rows) * (h + _GAP) - _GAP, n * (w + _GAP) - _GAP, 3), 255, np.uint8)
    for r, images in enumerate(rows):
        for c in range(n):
            grid[r * (h + _GAP):r * (h + _GAP) + h, c * (w + _GAP):c * (w + _GAP) + w] = \
                images[c]
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG", optimize=True)
    return atomic.write_bytes(path, buf.getvalue())

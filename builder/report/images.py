"""Draw a unit's top images: mask overlays and activation heatmaps, vectorised over all k images."""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from PIL import Image

from builder.errors import DatasetError
from builder.io import reporting

#: Brightness kept outside the mask, and the outline colour of the mask's boundary.
DIM = 0.3
OUTLINE = (255, 214, 10)
#: Tiles in the compact strip of the unit grid, and their size in pixels.
STRIP_TILES = 4
STRIP_PX = 96
JPEG_QUALITY = 82
#: Colour ramp of the activation heatmaps (position, RGB), dark-low to bright-high.
_RAMP = (
    (0.0, (12, 7, 38)),
    (0.22, (64, 18, 108)),
    (0.45, (150, 36, 110)),
    (0.68, (226, 88, 58)),
    (0.86, (250, 168, 48)),
    (1.0, (252, 246, 180)),
)


class ImageSource(Protocol):
    """Gives the probe image at a dataset row index of a run (HxWx3 uint8)."""

    def __call__(self, run: Any, index: int) -> np.ndarray: ...


def ramp_css() -> str:
    """The heatmap colour ramp as a CSS linear-gradient, for the legend."""
    stops = ", ".join(f"rgb{rgb} {pos * 100:.0f}%" for pos, rgb in _RAMP)
    return f"linear-gradient(90deg, {stops})"


@lru_cache(maxsize=64)
def bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[out, in] weights of 1-D bilinear resampling, as torch's interpolate(align_corners=False)."""
    scale = size_in / size_out
    src = np.maximum((np.arange(size_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    i1 = np.minimum(i0 + 1, size_in - 1)
    frac = (src - i0).astype(np.float32)
    weights = np.zeros((size_out, size_in), dtype=np.float32)
    rows = np.arange(size_out)
    np.add.at(weights, (rows, i0), 1.0 - frac)
    np.add.at(weights, (rows, i1), frac)
    return weights


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize maps [..., h, w] to [..., H, W] (float32, align_corners=False)."""
    h, w = maps.shape[-2:]
    rows, cols = bilinear_matrix(h, size[0]), bilinear_matrix(w, size[1])
    return rows @ maps.astype(np.float32) @ cols.T


def boundary(mask: np.ndarray) -> np.ndarray:
    """A two-pixel band along the edges of boolean masks [..., H, W] (image borders excluded)."""
    pad = [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)]
    m = np.pad(mask, pad, mode="edge")
    centre = m[..., 1:-1, 1:-1]
    sides = (m[..., :-2, 1:-1], m[..., 2:, 1:-1], m[..., 1:-1, :-2], m[..., 1:-1, 2:])
    inside = centre & sides[0] & sides[1] & sides[2] & sides[3]
    touched = centre | sides[0] | sides[1] | sides[2] | sides[3]
    return touched & ~inside


def sheet(tiles: np.ndarray) -> np.ndarray:
    """Lay tiles [k,H,W] or [k,H,W,C] side by side into one [H, k*W(, C)] array."""
    k, h, w = tiles.shape[:3]
    return tiles.swapaxes(0, 1).reshape(h, k * w, *tiles.shape[3:])


def _gray(mask: np.ndarray) -> Image.Image:
    """Boolean tiles [k,H,W] as one L-mode sheet (255 where True)."""
    return Image.fromarray(sheet(mask).view(np.uint8) * np.uint8(255))


@lru_cache(maxsize=8)
def _solid(size: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", size, color)


_DIM_LUT = [int(v * DIM) for v in range(256)] * 3


def overlay(images: np.ndarray, upsampled: np.ndarray, threshold: float) -> Image.Image:
    """A sheet of images [k,H,W,3]: bright where upsampled [k,H,W] > threshold, dimmed elsewhere, outlined."""
    mask = upsampled > threshold
    picture = Image.fromarray(sheet(images))
    out = Image.composite(picture, picture.point(_DIM_LUT), _gray(mask))
    outline = _solid(out.size, OUTLINE)
    return Image.composite(outline, out, _gray(boundary(mask)))


def heatmap(upsampled: np.ndarray, low: float, high: float, threshold: float | None = None) -> Image.Image:
    """A sheet of activation maps [k,H,W] coloured with the site's ramp; the threshold contour in white."""
    scale = 254.0 / (high - low) if high > low else 0.0
    levels = np.clip((upsampled - low) * scale, 0, 254).astype(np.uint8)
    if threshold is not None:
        levels[boundary(upsampled > threshold)] = 255
    gray = Image.fromarray(sheet(levels))
    return Image.merge("RGB", [gray.point(channel) for channel in _palette()])


@lru_cache(maxsize=1)
def _palette() -> tuple[list[int], list[int], list[int]]:
    """Per-channel lookup tables: levels 0..254 follow the ramp, 255 is white (the contour)."""
    positions = np.array([p for p, _ in _RAMP])
    colours = np.array([c for _, c in _RAMP], dtype=np.float64)
    x = np.linspace(0.0, 1.0, 255)
    ramp = np.stack([np.interp(x, positions, colours[:, i]) for i in range(3)], axis=1).round().astype(int)
    lut = np.vstack([ramp, [[255, 255, 255]]])
    return lut[:, 0].tolist(), lut[:, 1].tolist(), lut[:, 2].tolist()


def encode_jpeg(image: Image.Image, path: Path, quality: int = JPEG_QUALITY) -> None:
    """Write an RGB image as a baseline JPEG."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    data = buffer.getvalue()
    with reporting(path, len(data)):
        path.write_bytes(data)


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Coerce a probe image to HxWx3 uint8 of the given size (gray/RGBA/other sizes accepted)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"probe image has shape {array.shape}; expected HxWx3")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[..., :3]
    if array.dtype != np.uint8:
        scale = 255.0 if array.dtype.kind == "f" and array.max(initial=0) <= 1.0 else 1.0
        array = np.clip(array * scale, 0, 255).astype(np.uint8)
    if array.shape[:2] != size:
        array = np.asarray(Image.fromarray(array).resize((size[1], size[0]), Image.BILINEAR))
    return array


@dataclass
class UnitImages:
    """One unit's drawn images: a sheet of k overlays then k heatmaps, a compact strip, the heatmap scale."""

    sheet: str  # file name in the layer's img/ folder
    strip: str
    k: int
    low: float
    high: float

    def scale_position(self, value: float) -> float:
        """Where a value lies on the heatmap colour scale, in percent (clipped to 0..100)."""
        return min(max((value - self.low) / (self.high - self.low), 0.0), 1.0) * 100

    def position(self, tile: int) -> str:
        """The CSS object-position x of tile number `tile` of the sheet (overlays 0..k-1, heatmaps k..2k-1)."""
        return f"{100 * tile / (2 * self.k - 1):.4f}%"


def draw_unit(images: np.ndarray, maps: np.ndarray, threshold: float, folder: Path, stem: str) -> UnitImages:
    """Draw and write one unit's sheet and strip; images [k,H,W,3] uint8, maps [k,h,w] raw activations."""
    k, height, width = images.shape[:3]
    up = upsample(maps, (height, width))
    low = min(0.0, float(up.min(initial=0.0)))
    high = max(float(up.max(initial=0.0)), threshold, low + 1e-6)
    top = overlay(images, up, threshold)
    full = Image.new("RGB", (2 * k * width, height))
    full.paste(top, (0, 0))
    full.paste(heatmap(up, low, high, threshold), (k * width, 0))
    names = UnitImages(f"{stem}.jpg", f"{stem}-strip.jpg", k, low, high)
    encode_jpeg(full, folder / names.sheet)
    n = min(STRIP_TILES, k)
    strip = top.crop((0, 0, n * width, height)).resize((n * STRIP_PX, STRIP_PX), Image.BILINEAR, reducing_gap=2.0)
    encode_jpeg(strip, folder / names.strip, quality=JPEG_QUALITY - 4)
    return names


class CachedImages:
    """Wraps an image source with a small per-process LRU cache of fitted images."""

    def __init__(self, source: ImageSource, size_for: Callable[[Any], tuple[int, int] | None], limit: int = 768):
        self.source, self.size_for, self.limit = source, size_for, limit
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._sizes: dict[str, tuple[int, int]] = {}

    def batch(self, run: Any, indices: np.ndarray) -> np.ndarray:
        """The images at these dataset indices as one [k,H,W,3] uint8 array (all at the run's size)."""
        return np.stack([self._image(run, index) for index in indices.tolist()])

    def _image(self, run: Any, index: int) -> np.ndarray:
        key = (run.slug, index)
        image = self._cache.get(key)
        if image is not None:
            self._cache.move_to_end(key)
            return image
        try:
            raw = np.asarray(self.source(run, index))
            if run.slug not in self._sizes:  # the manifest's size, else the first image's
                size = self.size_for(run) or raw.shape[:2]
                self._sizes[run.slug] = (int(size[0]), int(size[1]))
            image = fit_image(raw, self._sizes[run.slug])
        except Exception as e:  # noqa: BLE001 - report any source failure as bad data
            raise DatasetError(f"{run.name}: probe image {index} cannot be read ({e})") from e
        self._cache[key] = image
        if len(self._cache) > self.limit:
            self._cache.popitem(last=False)
        return image


class ProbeImages:
    """The default image source: each run's probe dataset, opened with ProbeSet once per process."""

    def __init__(self) -> None:
        self._sets: dict[str, Any] = {}
        self._pid = os.getpid()

    def open(self, run: Any) -> Any:
        """The run's ProbeSet (raises if the dataset is missing or unreadable)."""
        if os.getpid() != self._pid:  # a forked worker opens its own file handles
            self._sets, self._pid = {}, os.getpid()
        if run.slug not in self._sets:
            from builder.datasets.probe import ProbeSet
            from builder.generator import SampleStore

            if not run.dataset_path:
                raise DatasetError("the manifest records no dataset path")
            path = Path(run.dataset_path).expanduser()
            if not path.is_absolute() and (run.path / path).exists():
                path = run.path / path  # manifests name it relative to the run directory
            self._sets[run.slug] = SampleStore(path) if run.generated else ProbeSet(path)
        return self._sets[run.slug]

    def __call__(self, run: Any, index: int) -> np.ndarray:
        """The probe image at this dataset row index."""
        return self.open(run).image(index)


def placeholder_source(size: int = 96) -> ImageSource:
    """An image source that gives flat gray images, used when the probe dataset is unavailable."""
    gray = np.full((size, size, 3), 128, dtype=np.uint8)

    def image_for(run: Any, index: int) -> np.ndarray:
        return gray

    return image_for

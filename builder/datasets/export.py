"""Writing a concept dataset as a Broden directory, for NetDissect / NetDissect-Lite.

The directory has Broden's layout (see ``sources/broden.py``): ``index.csv`` with Broden's
header, ``label.csv`` (one row per concept, ``number`` = the concept's id, its category with the
concept's frequency), ``category.csv``, ``c_<category>.csv`` (dense codes per category) and
``images/``: the images as PNG (lossless, the default) or JPEG, and one mask PNG per label layer
with label = R + 256 * G (the color layers included, as the color column). Reading the export
back with ``BrodenSource(out, colors=True)`` gives the same images, masks, labels, names and
categories; an empty layer list and a missing category both become an empty cell.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError, DatasetError
from .sources.base import CATEGORIES, IMAGE_CATEGORIES, PIXEL_CATEGORIES

__all__ = ["BRODEN_COLUMNS", "encode_label_png", "export_broden"]

#: index.csv's header, as NetDissect-Lite expects it.
BRODEN_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw", "color", "object", "part", "material",
                  "scene", "texture")

_MAX_LABEL = 256 * 256 - 1  # R + 256 * G
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def encode_label_png(labels: np.ndarray) -> np.ndarray:
    """Labels (0..65535) as a Broden mask image: R = low byte, G = high byte, B = 0."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > _MAX_LABEL):
        raise DatasetError(f"label {int(labels.max())} does not fit a Broden mask (R + 256 G)")
    labels = labels.astype(np.uint32)
    rgb = np.zeros(labels.shape + (3,), np.uint8)
    rgb[..., 0] = labels & 0xFF
    rgb[..., 1] = labels >> 8
    return rgb


def _stem(sample_id: str) -> str:
    parts = [_UNSAFE.sub("_", p).lstrip(".") for p in PurePosixPath(str(sample_id)).parts]
    return "/".join(p for p in parts if p and p != "/")


def _save(array: np.ndarray, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jpeg":
        Image.fromarray(array).save(path, format="JPEG", quality=95)
    else:
        Image.fromarray(array).save(path, format="PNG", compress_level=3)


def _shape(size: Any) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(f"{out}: exists and is not empty (choose another folder, or "
                               "overwrite an earlier export)")
        if not (out / "index.csv").is_file():
            raise DatasetError(f"{out}: refusing to overwrite a folder that is not a Broden "
                               "directory (no index.csv)")
        import shutil

        shutil.rmtree(out)
    (out / "images").mkdir(parents=True, exist_ok=True)


def export_broden(probe: Any, out: str | Path, image_format: str = "png",
                  overwrite: bool = False, progress: bool = False) -> Path:
    """Write ``probe`` (a ProbeSet, or anything with its reader API) as a Broden directory."""
    if image_format not in ("png", "jpeg"):
        raise ConfigError(f"image format {image_format!r}: expected png or jpeg")
    out = Path(out)
    concepts = sorted(probe.concepts, key=lambda c: c.id)
    by_category: dict[str, list] = {c: [] for c in CATEGORIES}
    for c in concepts:
        if not 0 < c.id <= _MAX_LABEL:
            raise DatasetError(f"concept {c.name!r} has id {c.id}, outside 1..{_MAX_LABEL}")
        if c.category not in by_category:
            raise DatasetError(f"concept {c.name!r} has unknown category {c.category!r}")
        by_category[c.category].append(c)
    _prepare(out, overwrite)
    images_dir = out / "images"
    ext = ".png" if image_format == "png" else ".jpg"
    claimed: set[str] = set()
    default_mask = _shape(probe.mask_size)
    indices = range(len(probe))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="exporting Broden", unit="img")
    rows = []
    for i in indices:
        sample = probe.annotations(i)
        layers = {cat: list(sample.pixel.get(cat) or []) for cat in PIXEL_CATEGORIES}
        names = {cat: ([f"_{cat}.png"] if len(ls) == 1 else
                       [f"_{cat}_{k}.png" for k in range(1, len(ls) + 1)])
                 for cat, ls in layers.items()}
        stem = _stem(sample.id) or f"{i:06d}"
        files = [stem + ext] + [stem + n for ns in names.values() for n in ns]
        if claimed.intersection(files):
            stem = f"{stem}-{i}"
            files = [stem + ext] + [stem + n for ns in names.values() for n in ns]
        claimed.update(files)
        image = np.asarray(sample.image, dtype=np.uint8)
        _save(image, images_dir / (stem + ext), image_format)
        first = next((ls[0] for ls in layers.values() if ls), None)
        sh, sw = first.shape[:2] if first is not None else default_mask
        row = {"image": stem + ext, "split": sample.split or "", "ih": image.shape[0],
               "iw": image.shape[1], "sh": sh, "sw": sw}
        for cat, ls in layers.items():
            for layer, name in zip(ls, names[cat]):
                _save(encode_label_png(layer), images_dir / (stem + name), "png")
            row[cat] = ";".join(stem + n for n in names[cat])
        for cat in IMAGE_CATEGORIES:
            row[cat] = ";".join(str(int(x)) for x in sample.image_labels.get(cat) or [])
        rows.append(row)
    with open(out / "index.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, BRODEN_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "label.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        for c in concepts:
            writer.writerow([c.id, c.name, f"{c.category}({int(c.frequency)})",
                             int(c.frequency), f"{float(c.coverage):.6f}", ";".join(c.synonyms)])
    with open(out / "category.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "first", "last", "count", "frequency"])
        for cat, members in by_category.items():
            if members:
                writer.writerow([cat, members[0].id, members[-1].id, len(members),
                                 sum(int(c.frequency) for c in members)])
    for cat, members in by_category.items():
        if not members:
            continue
        with open(out / f"c_{cat}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["code", "number", "name", "frequency", "coverage"])
            for code, c in enumerate(members, start=1):
                writer.writerow([code, c.id, c.name, int(c.frequency), f"{float(c.coverage):.6f}"])
    return out

"""A Broden-format release at a size other than 224, as NetDissect's broden1_* ship it.

JPEG images at ``size`` px, masks at ``size // 2`` px (``R + 256 G``), Broden's own color
masks, two part layers on some images, scenes and textures as image-level labels, and one
label.csv concept that no image carries. ``bad=True`` adds a truncated image and a mask of the
wrong size. Besides writing the directory, it returns what an independent reader needs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

HEADER = ["image", "split", "ih", "iw", "sh", "sw", "color", "object", "part", "material",
          "scene", "texture"]

#: number, name, category: Broden's names carry category suffixes for colors and scenes.
LABELS = [(1, "black-c", "color"), (2, "blue-c", "color"), (3, "green-c", "color"),
          (4, "red-c", "color"), (5, "white-c", "color"), (6, "yellow-c", "color"),
          (10, "sky", "object"), (11, "tree", "object"), (12, "building", "object"),
          (13, "grass", "object"), (300, "window", "part"), (301, "door", "part"),
          (400, "wood", "material"), (401, "glass", "material"),
          (500, "street-s", "scene"), (501, "forest-s", "scene"),
          (600, "striped", "texture"), (601, "dotted", "texture"),
          (700, "unicorn", "object")]  # in label.csv, in no image
UNUSED = 700


@dataclass
class Release:
    """Where the release is and which rows are bad."""

    root: Path
    size: int
    mask: int
    rows: list[dict] = field(default_factory=list)
    bad: dict[int, str] = field(default_factory=dict)  # row -> what is wrong with it


def _encode(labels: np.ndarray) -> np.ndarray:
    rgb = np.zeros(labels.shape + (3,), np.uint8)
    rgb[..., 0], rgb[..., 1] = labels & 0xFF, labels >> 8
    return rgb


def _blobs(rng: np.random.Generator, shape: tuple[int, int], numbers: list[int],
           background: int) -> np.ndarray:
    """A label map of a few rectangles of ``numbers`` over ``background`` (0 = none)."""
    out = np.full(shape, background, np.int64)
    for n in rng.choice(numbers, size=rng.integers(1, 4)):
        y, x = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        h, w = rng.integers(3, shape[0] // 2), rng.integers(3, shape[1] // 2)
        out[y:y + h, x:x + w] = n
    return out


def write_release(root: Path, n: int = 40, size: int = 64, bad: bool = False,
                  seed: int = 0, scenes: tuple[str, str] | None = None) -> Release:
    """Write the release under ``root`` (see the module docstring); ``scenes`` renames the
    two scene labels (e.g. to a classifier's class names)."""
    root = Path(root)
    images = root / "images" / "set"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    mask = size // 2
    release = Release(root, size, mask)

    def save_mask(name: str, labels: np.ndarray) -> str:
        Image.fromarray(_encode(labels)).save(images / name)
        return f"set/{name}"

    for i in range(n):
        # smooth random images, so that JPEG keeps them recognisable and units vary
        low = rng.integers(0, 256, (8, 8, 3), np.uint8)
        image = Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)
        image.save(images / f"{i:03d}.jpg", quality=90)
        row = {h: "" for h in HEADER}
        row.update(image=f"set/{i:03d}.jpg", split="train" if i % 4 else "val", ih=size,
                   iw=size, sh=mask, sw=mask)
        row["color"] = save_mask(f"{i:03d}_color.png",
                                 rng.integers(1, 7, (mask, mask)).astype(np.int64))
        row["object"] = save_mask(f"{i:03d}_object.png",
                                  _blobs(rng, (mask, mask), [11, 12, 13], 10))
        if i % 3 == 0:
            parts = [save_mask(f"{i:03d}_part_{j + 1}.png",
                               _blobs(rng, (mask, mask), [300, 301], 0)) for j in range(2)]
            row["part"] = ";".join(parts)
        if i % 2 == 0:
            row["material"] = save_mask(f"{i:03d}_material.png",
                                        _blobs(rng, (mask, mask), [400, 401], 0))
        if i % 5 != 4:
            row["scene"] = str(500 + i % 2)
        if i % 4 == 1:
            row["texture"] = str(600 + (i // 4) % 2)
        release.rows.append(row)
    if bad:
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(images / "cut.jpg")
        (images / "cut.jpg").write_bytes((images / "cut.jpg").read_bytes()[:100])
        cut = dict(release.rows[0], image="set/cut.jpg")
        release.bad[len(release.rows)] = "truncated image"
        release.rows.append(cut)
        wrong = dict(release.rows[1], image="set/001.jpg",
                     object=save_mask("wrong_object.png", np.full((mask + 3, mask), 10)))
        release.bad[len(release.rows)] = "mask of the wrong size"
        release.rows.append(wrong)
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, HEADER)
        w.writeheader()
        w.writerows(release.rows)
    names = dict(zip((500, 501), scenes)) if scenes else {}
    with open(root / "label.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        for number, name, category in LABELS:
            name = names.get(number, name)
            w.writerow([number, name, f"{category}(1)", 1, 0.1, ""])
    return release

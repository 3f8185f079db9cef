"""A tiny Broden directory for tests: labels above 255, two part layers, and bad rows."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 16
MASK_SIZE = 8

#: number, name, category field, syns
LABELS = [
    (1, "black-c", "color(2)", ""),
    (2, "sky", "object(2)", "heavens"),
    (300, "wheel", "part(1)", ""),  # > 255: needs the G channel
    (301, "door", "object(5);part(2)", "doorway"),  # in two categories
    (700, "street-s", "scene(2)", ""),
    (701, "striped", "texture(1)", ""),
    (702, "fabric", "material(36);object(3)", "cloth"),
]
MEMBERS = {"color": [1], "object": [2, 301, 702], "part": [300, 301], "material": [702],
           "scene": [700], "texture": [701]}
#: local codes: the label's main category keeps its number; the others get max number + k
CODES = {("color", 1): 1, ("object", 2): 2, ("part", 300): 300, ("object", 301): 301,
         ("part", 301): 703, ("scene", 700): 700, ("texture", 701): 701,
         ("material", 702): 702, ("object", 702): 704}
HEADER = ["image", "split", "ih", "iw", "sh", "sw", "color", "object", "part", "material",
          "scene", "texture"]


@dataclass
class BrodenFixture:
    """Where the fixture is and what reading it must give."""

    root: Path
    good: dict[int, dict] = field(default_factory=dict)  # row -> expected sample contents
    bad: dict[int, str] = field(default_factory=dict)  # row -> what is wrong with it


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """Label numbers as a Broden mask: R = low byte, G = high byte."""
    rgb = np.zeros(labels.shape + (3,), np.uint8)
    rgb[..., 0] = labels & 0xFF
    rgb[..., 1] = labels >> 8
    return rgb


def _save(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path.relative_to(path.parents[1]).as_posix()


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)


def write_broden_fixture(root: Path) -> BrodenFixture:
    """Write the tiny Broden directory under ``root`` and say what reading it must give."""
    root = Path(root)
    images = root / "images" / "set"
    fx = BrodenFixture(root)
    rows = []
    s = MASK_SIZE

    def row(name: str, split: str = "train", **cols) -> dict:
        r = {h: "" for h in HEADER}
        r.update(image=f"set/{name}.png", split=split, ih=IMAGE_SIZE, iw=IMAGE_SIZE, sh=s, sw=s)
        r.update(cols)
        return r

    # row 0: every category, labels above 255, two part layers, a two-category label
    img0 = _image(0)
    _save(images / "a.png", img0)
    obj = np.full((s, s), 2, np.int64)
    obj[4:, :] = 301
    obj[6:, 6:] = 702
    part1 = np.zeros((s, s), np.int64)
    part1[5:7, 1:3] = 300
    part2 = np.zeros((s, s), np.int64)
    part2[4:6, 4:8] = 301
    mat = np.zeros((s, s), np.int64)
    mat[6:, 6:] = 702
    col = np.ones((s, s), np.int64)
    r = row("a", color=_save(images / "a_color.png", encode_labels(col)),
            object=_save(images / "a_object.png", encode_labels(obj)),
            part=";".join([_save(images / "a_part_1.png", encode_labels(part1)),
                           _save(images / "a_part_2.png", encode_labels(part2))]),
            material=_save(images / "a_material.png", encode_labels(mat)),
            scene="700", texture="701")
    rows.append(r)

    def local(cat: str, labels: np.ndarray) -> np.ndarray:
        out = np.zeros(labels.shape, np.int64)
        for (c, n), code in CODES.items():
            if c == cat:
                out[labels == n] = code
        return out

    fx.good[0] = {"id": "set/a", "image": img0, "split": "train",
                  "pixel": {"object": [local("object", obj)],
                            "part": [local("part", part1), local("part", part2)],
                            "material": [local("material", mat)]},
                  "color": [local("color", col)],
                  "image_labels": {"scene": [700], "texture": [701]}}

    # row 1: object only, a whole-image label given as a number in a pixel column, val split
    img1 = _image(1)
    _save(images / "b.png", img1)
    obj1 = np.full((s, s), 2, np.int64)
    obj1[:2, :2] = 702
    rows.append(row("b", split="val", object=_save(images / "b_object.png", encode_labels(obj1)),
                    material="702", scene="700"))
    fx.good[1] = {"id": "set/b", "image": img1, "split": "val",
                  "pixel": {"object": [local("object", obj1)],
                            "material": [np.full((s, s), 702, np.int64)]},
                  "color": [], "image_labels": {"scene": [700]}}

    # the bad rows, one kind each
    good_mask = _save(images / "ok_object.png", encode_labels(np.full((s, s), 2, np.int64)))
    truncated = images / "truncated.png"
    Image.fromarray(_image(2)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    rows.append(row("truncated", object=good_mask))
    fx.bad[2] = "truncated image"

    _save(images / "c.png", _image(3))
    rows.append(row("c", object=_save(images / "c_object.png",
                                      encode_labels(np.full((s + 2, s), 2, np.int64)))))
    fx.bad[3] = "mask of the wrong size"

    _save(images / "d.png", _image(4))
    unknown = np.full((s, s), 2, np.int64)
    unknown[0, 0] = 999
    rows.append(row("d", object=_save(images / "d_object.png", encode_labels(unknown))))
    fx.bad[4] = "label missing from label.csv"

    _save(images / "e.png", _image(5))
    rows.append(row("e", object="set/e_object_missing.png"))
    fx.bad[5] = "mask file missing"

    rows.append(row("f_missing", object=good_mask))
    fx.bad[6] = "image file missing"

    _save(images / "g.png", _image(6))
    wrong = np.full((s, s), 700, np.int64)  # a scene label inside an object mask
    rows.append(row("g", object=_save(images / "g_object.png", encode_labels(wrong))))
    fx.bad[7] = "label not of the column's category"

    _save(images / "h.png", _image(7))
    rows.append(row("h", scene="999"))
    fx.bad[8] = "image-level label missing from label.csv"

    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, HEADER)
        w.writeheader()
        w.writerows(rows)
    with open(root / "label.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        for n, name, cat, syns in LABELS:
            w.writerow([n, name, cat, 2, 0.5, syns])
    with open(root / "category.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "first", "last", "count", "frequency"])
        for cat, numbers in MEMBERS.items():
            w.writerow([cat, min(numbers), max(numbers), len(numbers), 2])
    names = {n: name for n, name, _, _ in LABELS}
    for cat, numbers in MEMBERS.items():
        with open(root / f"c_{cat}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["code", "number", "name", "frequency", "coverage"])
            for code, n in enumerate(numbers, start=1):
                w.writerow([code, n, names[n], 2, 0.5])
    return fx

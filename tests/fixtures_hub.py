"""Small local copies of hub datasets, each in its hub schema, with one bad row or more."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def png(array: np.ndarray) -> bytes:
    """Encode an array as PNG bytes (RGB, gray or 16-bit gray)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def rgb(seed: int, h: int = 10, w: int = 12) -> np.ndarray:
    """A random HxWx3 uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def _write(root: Path, split: str, rows: dict, features) -> Path:
    import datasets

    path = root / "data" / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))
    return path


# -- ADE20K (1aurent/ADE20K schema) ---------------------------------------------------------

#: name_ndx -> name, as in ADE20K's objects list (wordnet-style names)
ADE_NAMES = {2978: "wall", 775: "door, doorway", 1200: "handle, grip", 1400: "knob"}


def ade_mask(classes: np.ndarray) -> np.ndarray:
    """ADE20K's class encoding: R = class // 256 * 10, G = class % 256."""
    out = np.zeros(classes.shape + (3,), np.uint8)
    out[..., 0] = (classes // 256) * 10
    out[..., 1] = classes % 256
    return out


def _ade_object(i: int, ndx: int, level: int) -> dict:
    return {"id": i, "name": ADE_NAMES[ndx], "name_ndx": ndx, "hypernym": [],
            "raw_name": ADE_NAMES[ndx].split(",")[0], "attributes": "",
            "depth_ordering_rank": i, "occluded": False, "crop": False,
            "parts": {"is_part_of": None if level == 0 else 0, "part_level": level,
                      "has_parts": []},
            "polygon": {"x": [0, 1, 1], "y": [0, 0, 1]}}


def write_ade20k_fixture(root: Path) -> dict:
    """Rows: 0 and 1 good (objects, two part levels, scenes), 2 stray class, 3 corrupt image."""
    import datasets

    h, w = 10, 12
    obj0 = np.full((h, w), 2978)
    obj0[5:, :6] = 775
    part1 = np.zeros((h, w), int)
    part1[6:8, 1:3] = 1200
    part1[8:, 3:5] = 775  # a door as a part of something: another concept than the door object
    part2 = np.zeros((h, w), int)
    part2[6, 1] = 1400
    obj1 = np.full((h, w), 775)
    stray = np.full((h, w), 2978)
    stray[0, 0] = 1200  # 1200 is only a part in this image's objects

    objects0 = [_ade_object(0, 2978, 0), _ade_object(1, 775, 0), _ade_object(2, 1200, 1),
                _ade_object(3, 775, 1), _ade_object(4, 1400, 2)]
    images = [rgb(0, h, w), rgb(1, h, w), rgb(2, h, w)]
    rows = {
        "image": [{"bytes": png(im), "path": None} for im in images]
        + [{"bytes": b"\x89PNG broken", "path": None}],
        "segmentations": [[{"bytes": png(ade_mask(m)), "path": None} for m in (obj0, part1, part2)],
                          [{"bytes": png(ade_mask(obj1)), "path": None}],
                          [{"bytes": png(ade_mask(stray)), "path": None}],
                          [{"bytes": png(ade_mask(obj1)), "path": None}]],
        "instances": [[], [], [], []],
        "filename": ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg", "ADE_val_00000003.jpg",
                     "ADE_val_00000004.jpg"],
        "folder": ["ADE/validation/urban/street"] * 4,
        "scene": [["outdoor", "urban", "street"], ["indoor", "bathroom"],
                  ["outdoor", "urban", "street"], []],
        "objects": [objects0, [_ade_object(0, 775, 0)],
                    [_ade_object(0, 2978, 0), _ade_object(1, 1200, 1)], [_ade_object(0, 775, 0)]],
    }
    obj_feature = {
        "id": datasets.Value("uint16"), "name": datasets.Value("string"),
        "name_ndx": datasets.Value("uint16"), "hypernym": datasets.List(datasets.Value("string")),
        "raw_name": datasets.Value("string"), "attributes": datasets.Value("string"),
        "depth_ordering_rank": datasets.Value("uint16"), "occluded": datasets.Value("bool"),
        "crop": datasets.Value("bool"),
        "parts": {"is_part_of": datasets.Value("uint16"), "part_level": datasets.Value("uint8"),
                  "has_parts": datasets.List(datasets.Value("uint16"))},
        "polygon": {"x": datasets.List(datasets.Value("uint16")),
                    "y": datasets.List(datasets.Value("uint16"))},
    }
    features = datasets.Features({
        "image": datasets.Image(mode="RGB"),
        "segmentations": datasets.List(datasets.Image(mode="RGB")),
        "instances": datasets.List(datasets.Image(mode="L")),
        "filename": datasets.Value("string"), "folder": datasets.Value("string"),
        "scene": datasets.List(datasets.Value("string")),
        "objects": datasets.List(obj_feature),
    })
    _write(root, "validation", rows, features)
    return {"images": images, "object": [obj0, obj1], "part": [part1, part2],
            "good": [0, 1], "bad": {2: "has class 1200", 3: "unreadable image"}}


# -- DTD (tanganke/dtd schema) ----------------------------------------------------------------

DTD_NAMES = ["banded", "blotchy", "zigzagged"]


def write_dtd_fixture(root: Path, string_labels: bool = False) -> dict:
    """Rows 0..2 good (labels 0, 2, 1), row 3 corrupt; ClassLabel or plain string labels."""
    import datasets

    images = [rgb(10 + i, 8, 9) for i in range(3)]
    labels = [0, 2, 1, 0]
    rows = {"image": [{"bytes": png(im), "path": f"{DTD_NAMES[labels[i]]}_{i:04d}.png"}
                      for i, im in enumerate(images)] + [{"bytes": b"garbage", "path": "bad.png"}],
            "label": [DTD_NAMES[x] for x in labels] if string_labels else labels}
    label = (datasets.Value("string") if string_labels
             else datasets.ClassLabel(names=DTD_NAMES))
    _write(root, "train", rows, datasets.Features({"image": datasets.Image(), "label": label}))
    return {"images": images, "labels": labels, "good": [0, 1, 2], "bad": {3: "unreadable"}}


# -- label maps (the documented pascal-context / pascal-part schemas) ------------------------

def write_pascal_context_fixture(root: Path) -> dict:
    """16-bit label maps with ids above 255; row 1 mask of the wrong size, row 2 unknown id."""
    import datasets

    names = {"0": "background", "2": "aeroplane", "400": "wall", "401": "sky"}
    label0 = np.full((6, 7), 400, np.uint16)
    label0[:2] = 401
    label0[4:, 3:] = 2
    label0[5, 0] = 0
    images = [rgb(20, 6, 7), rgb(21, 6, 7), rgb(22, 6, 7)]
    unknown = label0.copy()
    unknown[0, 0] = 17
    rows = {"image": [{"bytes": png(im), "path": f"2008_00000{i}.jpg"}
                      for i, im in enumerate(images)],
            "label": [{"bytes": png(m), "path": None}
                      for m in (label0, np.zeros((5, 7), np.uint16), unknown)]}
    _write(root, "train", rows, datasets.Features({"image": datasets.Image(),
                                                   "label": datasets.Image()}))
    (root / "id2label.json").write_text(json.dumps(names))
    return {"images": images, "label": label0, "good": [0],
            "bad": {1: "is 7x5, the image 7x6", 2: "has class 17"}}


def write_pascal_part_fixture(root: Path) -> dict:
    """Object and part maps; row 1 has no part map (not annotated for parts)."""
    import datasets

    names = {"object": {"8": "cat", "15": "person"},
             "part": {"1": "head", "2": "torso", "3": "tail"}}
    obj = np.zeros((5, 6), np.uint8)
    obj[1:, 1:] = 8
    part = np.zeros((5, 6), np.uint8)
    part[1:3, 1:3] = 1
    part[3:, 1:] = 2
    obj1 = np.full((5, 6), 15, np.uint8)
    images = [rgb(30, 5, 6), rgb(31, 5, 6)]
    rows = {"image": [{"bytes": png(im), "path": None} for im in images],
            "object": [{"bytes": png(obj), "path": None}, {"bytes": png(obj1), "path": None}],
            "part": [{"bytes": png(part), "path": None}, None]}
    _write(root, "train", rows, datasets.Features({"image": datasets.Image(),
                                                   "object": datasets.Image(),
                                                   "part": datasets.Image()}))
    (root / "id2label.json").write_text(json.dumps(names))
    return {"images": images, "object": [obj, obj1], "part": part}


# -- MIT Scene Parsing (the parquet branch of zhoubolei/scene_parse_150) ---------------------

#: scene_category names of the fixture's ClassLabel: the first five of the real list
SCENE_PARSE_SCENES = ["airport_terminal", "art_gallery", "badlands", "ball_pit", "bathroom"]


def write_scene_parse_fixture(root: Path) -> dict:
    """The parquet branch's layout: ``scene_parsing/<split>/0000.parquet`` (+ the other config).

    Validation rows: 0 and 1 good, 2 class 151, 3 annotation of the wrong size, 4 corrupt
    image, 5 no annotation; the test split has no annotations and no scenes, as on the hub.
    """
    import datasets

    size = 12
    first = np.zeros((size, size), np.uint8)  # 0: other
    first[:6] = 3  # sky
    first[6:, :4] = 1  # wall
    first[9:, 8:] = 150  # flag
    second = np.full((size, size), 13, np.uint8)  # person
    second[:2, :2] = 0
    stray = first.copy()
    stray[0, 0] = 151
    images = [rgb(40 + i, size, size) for i in range(6)]
    annotations = [first, second, stray, np.zeros((size - 1, size), np.uint8), first, None]
    image_cells = [{"bytes": png(im), "path": f"ADE_val_{i + 1:08d}.jpg"}
                   for i, im in enumerate(images)]
    image_cells[4] = {"bytes": b"\xff\xd8 not a jpeg", "path": "ADE_val_00000005.jpg"}
    features = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image(),
                                  "scene_category": datasets.ClassLabel(
                                      names=SCENE_PARSE_SCENES)})
    rows = {"image": image_cells,
            "annotation": [None if a is None else {"bytes": png(a), "path": None}
                           for a in annotations],
            "scene_category": [4, 0, 4, 2, 1, None]}
    _write_parquet(root / "scene_parsing" / "validation" / "0000.parquet", rows, features)
    test_rows = {"image": image_cells[:2], "annotation": [None, None],
                 "scene_category": [None, None]}
    _write_parquet(root / "scene_parsing" / "test" / "0000.parquet", test_rows, features)
    # the branch's other config, in another schema: it must not be read
    instance = {"image": image_cells[:1],
                "annotation": [{"bytes": png(np.zeros((size, size, 3), np.uint8)), "path": None}]}
    _write_parquet(root / "instance_segmentation" / "validation" / "0000.parquet", instance,
                   datasets.Features({"image": datasets.Image(), "annotation": datasets.Image()}))
    return {"images": images, "object": [first, second], "scenes": [4, 0], "good": [0, 1],
            "bad": {2: "class 151, outside 0..150", 3: "is 12x11, the image 12x12",
                    4: "unreadable image", 5: "no annotation"}}


def _write_parquet(path: Path, rows: dict, features) -> None:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))

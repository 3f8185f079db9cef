"""A Broden release dissected at the defaults gives the numbers of the method (BRIEF §1).

The reference here reads the directory itself (PIL, csv), runs the model with plain forward
hooks, and computes thresholds and category-aware IoU with numpy: nothing of the builder's
dataset code or the dissection engine is used, so any change the reader makes to the release
(sizes, bytes, colors, concepts) shows up as a difference.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from builder.cli import main
from builder.models import load_model
from fixtures_broden_release import LABELS, UNUSED, write_release

PIXEL = ("color", "object", "part", "material")
IMAGE = ("scene", "texture")
SUFFIXES = {"color": "-c", "scene": "-s"}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision models' ImageNet stats


def concept_name(name: str, category: str) -> str:
    """Broden's name without the category's suffix, as the run's concepts.csv names it."""
    suffix = SUFFIXES.get(category, "")
    return name[:-len(suffix)] if suffix and name.endswith(suffix) else name


def reference(root: Path, rows: list[dict], layer: str, q: float, batch: int = 32
              ) -> tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]:
    """Thresholds [U] and IoU per (category, name) [U], straight from the directory."""
    images = np.stack([np.asarray(Image.open(root / "images" / r["image"]).convert("RGB"))
                       for r in rows])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    net = load_model("torchvision:resnet18", seed=0).module
    outputs = []
    handle = dict(net.named_modules())[layer].register_forward_hook(
        lambda m, i, o: outputs.append(o.detach().clone()))
    with torch.no_grad():
        for a in range(0, len(x), batch):
            net(x[a:a + batch])
    handle.remove()
    acts = torch.cat(outputs)
    mask = int(rows[0]["sh"])
    up = F.interpolate(acts, size=(mask, mask), mode="bilinear", align_corners=False).numpy()
    units = up.shape[1]
    thresholds = np.array([np.quantile(up[:, k].astype(np.float64).ravel(), 1 - q)
                           for k in range(units)])
    on = up > thresholds.astype(np.float32)[None, :, None, None]  # [N, U, h, w]

    def decode(entry: str) -> np.ndarray:
        rgb = np.asarray(Image.open(root / "images" / entry).convert("RGB")).astype(np.int64)
        return rgb[..., 0] + 256 * rgb[..., 1]

    ious = {}
    for number, name, category in LABELS:
        carries = np.array([bool(r[category]) for r in rows])
        if category in PIXEL:
            label = np.zeros((len(rows), mask, mask), bool)
            for i, r in enumerate(rows):
                for entry in filter(None, r[category].split(";")):
                    label[i] |= decode(entry) == number
        else:
            label = np.array([str(number) in r[category].split(";") for r in rows])
            label = np.broadcast_to(label[:, None, None], (len(rows), mask, mask))
        m, lab = on[carries], label[carries][:, None]
        inter = (m & lab).sum(axis=(0, 2, 3))
        union = (m | lab).sum(axis=(0, 2, 3))
        ious[category, concept_name(name, category)] = np.where(
            union > 0, inter / np.maximum(union, 1), 0.0)
    return thresholds, ious


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("broden") / "broden1_64", n=40, size=64)


def test_default_dissection_equals_the_method_on_the_release_as_it_is(release, tmp_path,
                                                                      capsys):
    code = main(["dissect", "--model", "torchvision:resnet18", "--layers", "layer1",
                 "--dataset", f"broden:{release.root}", "--out", "run"])
    assert code == 0
    run = Path("run")
    manifest = json.loads((run / "manifest.json").read_text())
    # the release as released: its sizes, its bytes, its colors, all of label.csv
    assert manifest["dataset"]["image_size"] == 64 and manifest["dataset"]["mask_size"] == 32
    dataset = next(Path("data/datasets").iterdir())
    info = json.loads((dataset / "probe.json").read_text())
    assert info["sources"][0]["colors"] == "source" and not info["sources"][0]["resized"]
    import datasets

    table = datasets.load_from_disk(str(dataset / "data")).cast_column(
        "image", datasets.Image(decode=False))
    first = table[0]
    assert first["image"]["bytes"] == (release.root / "images" / "set/000.jpg").read_bytes()
    with open(run / "concepts.csv", newline="") as f:
        concepts = list(csv.DictReader(f))
    assert len(concepts) == len(LABELS)  # also the concept no image carries
    assert {(c["category"], c["name"]) for c in concepts} == {
        (cat, concept_name(name, cat)) for _, name, cat in LABELS}
    assert any(c["name"] == "unicorn" and c["frequency"] == "0" for c in concepts)

    thresholds, expected = reference(release.root, release.rows, "layer1", q=0.005)
    with open(run / "layers" / "layer1" / "units.csv", newline="") as f:
        units = list(csv.DictReader(f))
    np.testing.assert_allclose([float(u["threshold"]) for u in units], thresholds,
                               rtol=1e-6, atol=0)
    iou = np.load(run / "layers" / "layer1" / "iou.npy")
    worst = 0.0
    for c in concepts:
        got = iou[:, int(c["id"])]
        worst = max(worst, float(np.abs(got - expected[c["category"], c["name"]]).max()))
    assert worst <= 1e-6, f"max |dIoU| {worst}"
    assert UNUSED and (iou[:, [int(c["id"]) for c in concepts if c["name"] == "unicorn"]]
                       == 0).all()

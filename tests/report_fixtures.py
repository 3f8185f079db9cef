"""Synthetic run directories (docs/results-format.md) and a fake probe-image source for report tests."""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: A concept whose name is HTML: the site must show it as text and never run it.
EVIL = "<img src=x onerror=alert(1)>"
CONCEPTS = [
    ("tree", "object", "pixel"),
    ("sky", "object", "pixel"),
    ("window", "object", "pixel"),
    (EVIL, "object", "pixel"),
    ("wheel", "part", "pixel"),
    ("leg", "part", "pixel"),
    ("wood", "material", "pixel"),
    ("red", "color", "pixel"),
    ("blue", "color", "pixel"),
    ("kitchen", "scene", "image"),
    ('ski "resort" & co', "scene", "image"),
    ("striped", "texture", "image"),
]
CLASSES = ["ski resort", "bedroom", "kitchen & dining", EVIL]
DEFAULT_LAYERS: tuple[tuple[str, int, tuple[int, int]], ...] = (
    ("layer3", 10, (8, 8)),
    ("layer4", 14, (4, 4)),
)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _blobs(rng: np.random.Generator, n: int, k: int, h: int, w: int) -> np.ndarray:
    """Activation maps: one Gaussian blob per map at a random place, plus a little noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy = rng.uniform(0, h - 1, (n, k, 1, 1))
    cx = rng.uniform(0, w - 1, (n, k, 1, 1))
    sigma = rng.uniform(0.6, 1.6, (n, 1, 1, 1)) * max(h, w) / 6
    peak = np.sort(rng.uniform(2.0, 6.0, (n, k)), axis=1)[:, ::-1][..., None, None]
    maps = peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return (maps + rng.normal(0, 0.05, maps.shape)).astype(np.float16)


def write_run(
    root: Path,
    name: str = "run",
    *,
    layers: Sequence[tuple[str, int, tuple[int, int]]] = DEFAULT_LAYERS,
    k: int = 6,
    image_size: int = 48,
    images: int = 200,
    ablation: bool = True,
    generator: bool = True,
    evil_unit: bool = True,
    seed: int = 0,
) -> Path:
    """Write a small, complete run directory under root/name and return its path."""
    rng = np.random.default_rng(seed)
    run = root / name
    (run / "layers").mkdir(parents=True, exist_ok=True)
    n_columns = len(CONCEPTS) + 1
    _write_csv(
        run / "concepts.csv",
        ["id", "name", "category", "level", "frequency"],
        [(i + 1, n, c, lv, int(rng.integers(5, 100))) for i, (n, c, lv) in enumerate(CONCEPTS)],
    )
    manifest = {
        "format": "unitdissect-run",
        "format_version": 1,
        "created": "2026-11-23T12:00:00Z",
        "command": ["unitdissect", "dissect", "--model", "demo:classifier", "--dataset", "toyworld"],
        "versions": {"unitdissect": "0.1.0", "python": "3.11.7", "torch": "2.14.1", "numpy": np.__version__},
        "model": {
            "spec": "demo:classifier",
            "weights": None,
            "weights_sha256": "ab" * 32,
            "seed": 0,
            "layers": [layer for layer, _, _ in layers],
        },
        "dataset": {
            "spec": "toyworld",
            "path": str(root / "no-such-dataset"),
            "fingerprint": "cd" * 16,
            "images": images,
            "image_size": image_size,
            "mask_size": image_size,
            "split": "all",
        },
        "options": {
            "quantile": 0.005,
            "iou_threshold": 0.04,
            "threshold_on": "upsampled",
            "category_aware": True,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "batch_size": 64,
            "topk": k,
            "device": "cpu",
        },
        "stats": {"layers": {layer: {"nonfinite": 0, "seconds": 1.5} for layer, _, _ in layers}, "skipped_images": 0},
        "machine": {"platform": "Linux", "cpu_count": 2, "device_name": "cpu"},
    }
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    for depth, (layer, n, (h, w)) in enumerate(layers):
        folder = run / "layers" / layer
        folder.mkdir(parents=True, exist_ok=True)
        iou = rng.uniform(0, 0.03, (n, n_columns)).astype(np.float32)
        winners = rng.integers(1, n_columns, n)
        if evil_unit and depth == len(layers) - 1:
            winners[0] = CONCEPTS.index((EVIL, "object", "pixel")) + 1
        strength = rng.uniform(0.01, 0.25, n)
        iou[np.arange(n), winners] = strength
        iou[:, 0] = 0
        order = np.argsort(-iou, axis=1)
        maps = _blobs(rng, n, k, h, w)
        thresholds = np.quantile(maps.astype(np.float32).reshape(n, -1), 0.85, axis=1)
        rows = []
        for u in range(n):
            best, second, third = (int(c) for c in order[u, :3])
            name_of = lambda c: CONCEPTS[c - 1][0]  # noqa: E731
            rows.append(
                (
                    u,
                    name_of(best),
                    best,
                    CONCEPTS[best - 1][1],
                    f"{iou[u, best]:.6f}",
                    int(iou[u, best] > 0.04),
                    f"{thresholds[u]:.6f}",
                    "0.005",
                    name_of(second),
                    f"{iou[u, second]:.6f}",
                    name_of(third),
                    f"{iou[u, third]:.6f}",
                )
            )
        _write_csv(
            folder / "units.csv",
            ["unit", "label", "concept_id", "category", "iou", "detector", "threshold", "coverage",
             "label2", "iou2", "label3", "iou3"],
            rows,
        )
        np.save(folder / "iou.npy", iou)
        index = np.stack([rng.choice(images, k, replace=False) for _ in range(n)]).astype(np.int64)
        score = maps.astype(np.float32).reshape(n, k, -1).max(axis=2)
        np.savez_compressed(folder / "topk.npz", index=index, score=score, maps=maps)
        bins = 32
        low, high = np.full(n, -0.2), maps.astype(np.float32).reshape(n, -1).max(axis=1) + 0.1
        edges = np.linspace(low, high, bins + 1, axis=1).astype(np.float32)
        counts = (10 ** rng.uniform(0, 1, (n, bins)) * np.logspace(5, 0, bins)).astype(np.int64)
        np.savez_compressed(folder / "histogram.npz", edges=edges, counts=counts)
        labels = {(r[1], r[3]) for r in rows if r[5]}
        per_category: dict[str, int] = {}
        for _, category in labels:
            per_category[category] = per_category.get(category, 0) + 1
        layer_info = {"layer": layer, "shape": [n, h, w], "units": n, "iou_threshold": 0.04,
                      "detectors": {}, "unique_detectors": per_category}
        (folder / "layer.json").write_text(json.dumps(layer_info), encoding="utf-8")

    last, n_last, _ = layers[-1]
    if ablation:
        folder = run / "ablation" / last
        folder.mkdir(parents=True, exist_ok=True)
        baseline = rng.uniform(0.7, 0.9, len(CLASSES))
        drops = rng.exponential(0.01, (n_last, len(CLASSES))) * (rng.uniform(size=(n_last, len(CLASSES))) > 0.3)
        np.save(folder / "single_unit.npy", (baseline[None, :] - drops).astype(np.float32))
        (folder / "baseline.json").write_text(
            json.dumps({"classes": CLASSES, "balanced_accuracy": baseline.tolist(), "accuracy": 0.533}),
            encoding="utf-8",
        )
        curve_rows = []
        for c, cls in enumerate(CLASSES):
            for order, speed in (("top", 0.08), ("rest", 0.005)):
                for removed in range(0, n_last + 1, 2):
                    bal = 0.5 + (baseline[c] - 0.5) * np.exp(-speed * removed * 3)
                    acc = 0.533 * np.exp(-(0.01 if order == "top" else 0.2) * removed)
                    curve_rows.append((cls, order, removed, f"{bal:.4f}", f"{acc:.4f}"))
        _write_csv(folder / "curves.csv", ["class", "order", "n_removed", "balanced_accuracy", "accuracy"], curve_rows)
    if generator:
        first = layers[0][0]
        folder = run / "generator" / first
        folder.mkdir(parents=True, exist_ok=True)
        ablation_rows = []
        for concept in ("tree", EVIL):
            for removed in (0, 5, 10, 20):
                frac = float(np.exp(-removed / 25))
                ablation_rows.append((concept, removed, f"{frac:.3f}", f"{frac - 0.05:.3f}", f"{min(frac + 0.05, 1):.3f}"))
        _write_csv(folder / "ablation.csv", ["concept", "n_removed", "fraction_remaining", "ci_low", "ci_high"], ablation_rows)
        insertion_rows = [
            ("door", "building", "0.42", 500),
            ("door", "window", "0.31", 120),
            ("door", "sky", "0.02", 300),
            ("door", "tree", "0.03", 250),
        ]
        _write_csv(folder / "insertion.csv", ["concept", "context", "added_fraction", "n"], insertion_rows)
        _write_csv(folder / "concept_units.csv", ["concept", "concept_id", "rank", "unit", "iou"],
                   [("tree", 3, r + 1, u, f"{0.2 - r / 100:.3f}") for r, u in enumerate((2, 0, 1))])
        (folder / "science.json").write_text(json.dumps({
            "concept": "tree", "n_removed": 20, "samples": 64, "removed": 0.55, "fraction_remaining": 0.45,
            "ci_low": 0.4, "ci_high": 0.5, "confidence": 0.99, "required_removed": 0.5, "pass": True}))
        from PIL import Image

        gallery = folder / "gallery"
        gallery.mkdir()
        strip = np.zeros((32, 64, 3), np.uint8)
        strip[16:] = 200
        Image.fromarray(strip).save(gallery / "ablation-tree.png")
        Image.fromarray(strip).save(gallery / "insertion-evil.png")
        (gallery / "gallery.json").write_text(json.dumps({"strips": [
            {"file": "ablation-tree.png", "kind": "ablation", "concept": "tree", "samples": [3, 5],
             "n_removed": 2, "units": [2, 0], "rows": ["before", "after"]},
            {"file": "insertion-evil.png", "kind": "insertion", "concept": EVIL, "samples": [1, 4],
             "units": [1], "added_fraction": [0.5, 1.0], "rows": ["before", "after"]},
            {"file": "ablation-missing.png", "kind": "ablation", "concept": "door", "samples": [1],
             "n_removed": 1, "units": [0]},
        ]}))
    return run


@lru_cache(maxsize=8)
def _bank(size: int, count: int = 48) -> np.ndarray:
    """Synthetic photos: smooth colour gradients with a few shapes, deterministic."""
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    bank = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        base = rng.uniform(40, 220, 3)
        slope = rng.uniform(-80, 80, (2, 3))
        image = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
        for _ in range(3):
            cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.25)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
            image[disc] = rng.uniform(0, 255, 3)
        bank[i] = np.clip(image, 0, 255).astype(np.uint8)
    return bank


def fake_image_for(run: Any, index: int) -> np.ndarray:
    """A fake probe-image source: image_for(run, index) -> HxWx3 uint8 at the run's image size."""
    size = run.image_size or 48
    bank = _bank(size)
    return bank[index % len(bank)]

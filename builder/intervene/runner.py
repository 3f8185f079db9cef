"""Run the ablation experiments of one classifier layer and write ``RUN_DIR/ablation/<layer>/``.

Stages, each writing its files atomically and recorded in the folder's ``manifest.json`` with
a fingerprint of everything that shapes it (model weights, dataset, layer, options, and the
stages it depends on); rerunning the same command skips the stages whose files are finished:

1. ``rank``: single-unit sweep on the rank split -> ``single_unit_rank.npy`` (and ``_margin``)
2. ``eval``: single-unit sweep on the evaluation split -> ``single_unit.npy`` (and ``_margin``),
   then ``baseline.json`` from both
3. ``curves``: per class, remove its most important units (ranked on the rank split) or all but
   them, and random units -> ``curves.csv``, ``random_curves.csv``, ``science.json``
4. ``important``: units among the top 4 of many classes -> ``important_units.csv``
5. ``adversarial`` (``adversarial > 0``): PGD and Carlini-Wagner attacks -> ``adversarial.json``

Images are evaluated when they carry exactly one of the classifier's classes as an image-level
label (toy-world texture swatches, for example, carry none); a class without images in either
split is left out of every file (listed in ``baseline.json``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import io as atomic
from ..dissect.runner import input_problems, normalisation
from ..errors import ConfigError, DatasetError
from ..fingerprint import file_sha256, fingerprint
from ..lock import hold_folder
from .adversarial import change_overlap, cw_l2_attack, pgd_attack, unit_changes
from .metrics import spearman
from .sweep import (STRATEGIES, ClassMap, LayerEvaluator, curve_points,
                    important_unit_counts, match_classes, random_curves, rank_units,
                    removal_curves, science_check, single_unit_sweep)

__all__ = ["ABLATION_VERSION", "AblationOptions", "run_ablation"]

log = logging.getLogger(__name__)

#: Bumped whenever the results change for the same inputs (invalidates finished stages).
ABLATION_VERSION = 1
MANIFEST_FORMAT = "unitdissect-ablation"
_SAFE_LAYER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
#: Test hook: called with the stage name after each stage is written.
_after_stage: Any = None


@dataclass
class AblationOptions:
    """Every choice of the ablation experiments (recorded in the manifest), validated."""

    rank_split: str = "train"  # units are ranked on this split ...
    eval_split: str = "val"  # ... and reported on this one
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0  # random unit draws and attack pairs
    mean: tuple[float, ...] | None = None  # input normalisation; None: the model's own
    std: tuple[float, ...] | None = None
    strategy: str = "auto"  # auto | split | graft | full (see sweep.py)
    random_draws: int = 10
    top_k: int = 4  # "important units": among the top_k of a class
    science_k: int = 5
    science_factor: float = 3.0
    science_fraction: float = 0.8
    adversarial: int = 2  # attacked images (each with PGD and CW); 0: no attacks
    attack_k: int = 10  # units compared between attack changes and class importance
    pgd_eps: float = 8 / 255
    pgd_steps: int = 40
    cw_steps: int = 100
    cw_search_steps: int = 3
    cache_memory: int = 2 << 30  # bytes of layer activations kept in memory
    chunk_memory: int = 256 << 20  # bytes of stacked activations per tail call
    num_workers: int = 0

    def __post_init__(self) -> None:
        problems: list[str] = []
        integers = {"batch_size": 1, "seed": 0, "random_draws": 1, "top_k": 1, "science_k": 1,
                    "adversarial": 0, "attack_k": 1, "pgd_steps": 1, "cw_steps": 1,
                    "cw_search_steps": 1, "cache_memory": 0, "chunk_memory": 1, "num_workers": 0}
        for name, low in integers.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{_flag(name)} must be an integer >= {low}, got {value!r}")
        for name in ("science_factor", "science_fraction", "pgd_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value <= 0:
                problems.append(f"{_flag(name)} must be a positive number, got {value!r}")
        for name in ("rank_split", "eval_split"):
            if getattr(self, name) not in ("train", "val", "all"):
                problems.append(f"{_flag(name)} must be train, val or all, "
                                f"got {getattr(self, name)!r}")
        if self.strategy not in STRATEGIES:
            problems.append(f"--strategy must be one of {', '.join(STRATEGIES)}, "
                            f"got {self.strategy!r}")
        problems += input_problems(self)
        if problems:
            raise ConfigError("; ".join(problems))


def _flag(name: str) -> str:
    return {"num_workers": "--workers", "adversarial": "--adversarial"}.get(
        name, "--" + name.replace("_", "-"))


# --------------------------------------------------------------------------- data


def _image_labels(probe: Any, indices: np.ndarray, to_class: np.ndarray) -> np.ndarray:
    """int64 [len(indices)]: the class column of each image, -1 without exactly one class."""
    per_row = [[] for _ in range(len(probe))]
    for category in probe.image_categories:
        for row, ids in enumerate(probe.column(category)):
            per_row[row].extend(ids or ())
    labels = np.full(len(indices), -1, dtype=np.int64)
    for i, row in enumerate(indices):
        ids = np.asarray([c for c in per_row[int(row)] if 0 <= c < len(to_class)], dtype=np.int64)
        found = np.unique(to_class[ids][to_class[ids] >= 0]) if ids.size else ids
        if found.size == 1:
            labels[i] = int(found[0])
    return labels


@dataclass
class _Split:
    """The labelled images of one split."""

    name: str
    indices: np.ndarray  # dataset rows with a class
    labels: np.ndarray  # class column of each (in the full class map)


def _split(probe: Any, name: str, to_class: np.ndarray) -> _Split:
    indices = np.asarray(probe.split_indices(name), dtype=np.int64)
    labels = _image_labels(probe, indices, to_class)
    keep = labels >= 0
    if not keep.any():
        raise DatasetError(f"the {name!r} split of {probe.path} has no image labelled with one "
                           "of the classifier's classes",
                           hint="choose another split with --rank-split / --eval-split")
    return _Split(name, indices[keep], labels[keep])


def _batches(probe: Any, split: _Split, remap: np.ndarray, batch_size: int,
             workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(dataset rows, images in [0, 1], class labels) for the split's images of kept classes."""
    label_of = dict(zip(split.indices.tolist(), remap[split.labels].tolist()))
    rows = np.asarray([r for r in split.indices.tolist() if label_of[r] >= 0], dtype=np.int64)
    for batch in probe.batches(rows, batch_size=batch_size, num_workers=workers):
        labels = torch.as_tensor([label_of[int(r)] for r in batch.indices.tolist()])
        yield batch.indices, batch.images, labels


# --------------------------------------------------------------------------- stages


class _Stages:
    """The manifest's record of finished stages, and whether a stage can be skipped."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder, self.manifest = folder, manifest
        previous = _read_json(folder / "manifest.json")
        self.previous: dict[str, Any] = previous.get("stages", {}) if isinstance(previous, dict) \
            else {}
        self.manifest["stages"] = {}

    def done(self, name: str, fp: str, files: Sequence[str]) -> dict[str, Any] | None:
        """The previous record of stage ``name`` if it finished with ``fp`` and its files exist."""
        record = self.previous.get(name)
        if isinstance(record, dict) and record.get("fingerprint") == fp and \
                all((self.folder / f).is_file() for f in files):
            self.manifest["stages"][name] = record
            return record
        return None

    def finish(self, name: str, fp: str, files: Sequence[str], **info: Any) -> dict[str, Any]:
        """Record stage ``name`` as finished and rewrite the manifest."""
        record = {"fingerprint": fp, "files": list(files), **info}
        self.manifest["stages"][name] = record
        atomic.write_json(self.folder / "manifest.json", self.manifest)
        if _after_stage is not None:
            _after_stage(name)
        return record


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _floats(values: Any) -> list[float | None]:
    """A list of floats for JSON, NaN and infinities as null."""
    return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values).reshape(-1)]


def _read_units(run_dir: Path, layer: str,
                units: int) -> tuple[dict[int, dict[str, str]], str | None]:
    """units.csv rows of a dissected layer by unit (empty without one), and the file's hash."""
    path = run_dir / "layers" / layer / "units.csv"
    if not path.is_file():
        return {}, None
    with open(path, newline="", encoding="utf-8") as f:
        rows = {int(r["unit"]): r for r in csv.DictReader(f) if (r.get("unit") or "").isdigit()}
    if len(rows) != units:
        log.warning("%s lists %d units, the layer has %d; labels are left out", path, len(rows),
                    units)
        return {}, None
    return rows, file_sha256(path)


def run_ablation(model: Any, layer: str, probe: Any, out: str | Path,
                 options: AblationOptions | None = None, *,
                 class_names: Sequence[str] | None = None,
                 progress: bool = False, dataset_spec: str | None = None,
                 command: Sequence[str] | None = None) -> Path:
    """Run (or resume) the ablation experiments of ``layer`` of a LoadedModel over ``probe``.

    Writes ``out/ablation/<layer>/`` and returns that folder. ``class_names`` (model output
    order) default to the module's ``class_names`` attribute.
    """
    from ..dissect.manifest import (machine_info, model_record, skipped_record,
                                    software_versions, utc_now, warn_random_weights)
    from ..paths import output_folder, portable_spec, portable_text, run_relative
    from ..dissect.runner import resolve_device
    from ..models import resolve_layers

    options = options or AblationOptions()
    device = resolve_device(options.device)
    warn_random_weights(model)
    module = model.module.to(device).eval()
    (layer,) = resolve_layers(module, [layer])
    if not _SAFE_LAYER.fullmatch(layer) or ".." in layer:
        raise ConfigError(f"layer name {layer!r} cannot be used as a folder name")
    names = list(class_names) if class_names is not None else getattr(module, "class_names", None)
    if not names:
        raise ConfigError(f"{model.spec} does not name its classes",
                          hint="pass --classes FILE (one class name per line, in output order)")
    full = match_classes(names, probe.concepts)
    mean, std = normalisation(options, model)
    to_class = full.concept_to_class(int(probe.num_columns))
    splits = {"rank": _split(probe, options.rank_split, to_class),
              "eval": _split(probe, options.eval_split, to_class)}
    counts = {k: np.bincount(s.labels, minlength=len(full)) for k, s in splits.items()}
    keep = np.flatnonzero((counts["rank"] > 0) & (counts["eval"] > 0))
    if keep.size < 2:
        raise DatasetError("fewer than two of the classifier's classes have images in both the "
                           f"{options.rank_split!r} and the {options.eval_split!r} split",
                           hint="use a larger probe set")
    classes = full.subset(keep.tolist())
    remap = np.full(len(full), -1, dtype=np.int64)
    remap[keep] = np.arange(keep.size)
    left_out = [full.names[i] for i in range(len(full)) if i not in set(keep.tolist())]

    run_dir = output_folder(out)
    folder = run_dir / "ablation" / layer
    folder.mkdir(parents=True, exist_ok=True)
    with hold_folder(run_dir, f"the run directory {run_dir}"):  # one writer at a time
        base = {"version": ABLATION_VERSION, "layer": layer,
                "model": {"spec": model.spec, "weights_sha256": model.weights_sha256},
                "dataset": probe.fingerprint, "classes": list(classes.names),
                "outputs": list(classes.outputs), "mean": mean, "std": std, "mode": "zero"}
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT, "format_version": 1, "created": utc_now(),
            "command": [portable_text(w) for w in command] if command is not None else None,
            "versions": software_versions(),
            "model": model_record(model),
            "layer": layer,
            "dataset": {"spec": portable_spec(dataset_spec if dataset_spec is not None
                                              else str(probe.path)),
                        "path": run_relative(probe.path, folder), **skipped_record(probe),
                        "fingerprint": probe.fingerprint,
                        "total_images": len(probe), "image_size": int(probe.image_size),
                        "rank_split": options.rank_split, "eval_split": options.eval_split,
                        "rank_images": int(counts["rank"][keep].sum()),
                        "eval_images": int(counts["eval"][keep].sum())},
            "options": {**dataclasses.asdict(options), "mean": list(mean), "std": list(std),
                        "device": device.type, "device_requested": options.device, "mode": "zero",
                        "ablation_version": ABLATION_VERSION},
            "classes": list(classes.names), "classes_left_out": left_out,
            "machine": machine_info(device), "complete": False,
        }
        stages = _Stages(folder, manifest)
        evaluators: dict[str, LayerEvaluator] = {}

        def evaluator(which: str) -> LayerEvaluator:
            if which not in evaluators:
                split = splits[which]
                evaluators[which] = LayerEvaluator(
                    module, layer,
                    lambda: ((images, labels) for _, images, labels in _batches(
                        probe, split, remap, options.batch_size, options.num_workers)),
                    classes, mean, std, device=device, strategy=options.strategy,
                    cache_memory=options.cache_memory, chunk_memory=options.chunk_memory,
                    batch_size=options.batch_size, progress=progress)
            return evaluators[which]

        sweeps: dict[str, dict[str, Any]] = {}
        fps: dict[str, str] = {}
        for which, stem in (("rank", "single_unit_rank"), ("eval", "single_unit")):
            split_name = options.rank_split if which == "rank" else options.eval_split
            files = [f"{stem}.npy", f"{stem}_margin.npy"]
            fps[which] = fingerprint(base, which, split_name)
            record = stages.done(which, fps[which], files)
            if record is None:
                started = time.perf_counter()
                ev = evaluator(which)
                result = single_unit_sweep(ev)
                atomic.write_npy(folder / files[1], result.margin.astype(np.float32))
                atomic.write_npy(folder / files[0], result.balanced_accuracy.astype(np.float32))
                record = stages.finish(
                    which, fps[which], files, split=split_name, images=result.images,
                    per_class=result.counts.tolist(), balanced_accuracy=_floats(result.baseline),
                    accuracy=float(result.baseline_accuracy),
                    margin=_floats(result.baseline_margin),
                    strategy=ev.strategy, units=ev.units,
                    seconds=round(time.perf_counter() - started, 3))
            sweeps[which] = record
        rank_single = np.load(folder / "single_unit_rank.npy").astype(np.float64)
        rank_margin = np.load(folder / "single_unit_rank_margin.npy").astype(np.float64)
        units = rank_single.shape[0]
        rank_baseline, eval_baseline = (_array(sweeps[w]["balanced_accuracy"])
                                        for w in ("rank", "eval"))
        rank_base_margin, eval_base_margin = (_array(sweeps[w]["margin"]) for w in ("rank", "eval"))
        baseline = {
            "layer": layer, "classes": list(classes.names),
            "balanced_accuracy": _floats(eval_baseline), "accuracy": sweeps["eval"]["accuracy"],
            "margin": _floats(eval_base_margin), "chance": 0.5, "units": units,
            "splits": {"rank": options.rank_split, "eval": options.eval_split},
            "counts": {"eval": {"images": sweeps["eval"]["images"],
                                "per_class": sweeps["eval"]["per_class"]},
                       "rank": {"images": sweeps["rank"]["images"],
                                "per_class": sweeps["rank"]["per_class"]}},
            "rank": {"balanced_accuracy": _floats(rank_baseline),
                     "accuracy": sweeps["rank"]["accuracy"], "margin": _floats(rank_base_margin)},
            "model_outputs": list(classes.outputs), "concept_ids": list(classes.concepts),
            "classes_left_out": left_out, "mode": "zero",
        }
        if _read_json(folder / "baseline.json") != baseline:
            atomic.write_json(folder / "baseline.json", baseline)
        order = rank_units(rank_baseline, rank_single, rank_base_margin, rank_margin)  # [n, units]
        ranking_path = folder / "ranking.npy"
        if not (ranking_path.is_file() and np.array_equal(np.load(ranking_path), order)):
            atomic.write_npy(ranking_path, order)

        # -- curves, random units, the science check ----------------------------------------
        curve_files = ["curves.csv", "random_curves.csv", "science.json"]
        fps["curves"] = fingerprint(base, "curves", fps["rank"], fps["eval"], options.seed,
                                    options.random_draws, options.science_k, options.science_factor,
                                    options.science_fraction)
        if stages.done("curves", fps["curves"], curve_files) is None:
            started = time.perf_counter()
            ev = evaluator("eval")
            science, points = _write_curves(folder, ev, order, classes, eval_baseline,
                                            eval_base_margin, layer, options)
            stages.finish("curves", fps["curves"], curve_files, points=points,
                          ablations=len(points) * 2 * len(classes), strategy=ev.strategy,
                          fraction=science["fraction"], passed=science["pass"],
                          margin_fraction=science["margin"]["fraction"],
                          seconds=round(time.perf_counter() - started, 3))

        # -- important units ---------------------------------------------------------------
        unit_rows, units_sha = _read_units(run_dir, layer, units)
        fps["important"] = fingerprint(base, "important", fps["rank"], options.top_k, units_sha)
        if stages.done("important", fps["important"], ["important_units.csv"]) is None:
            counts_top = _write_important(folder, order, classes, unit_rows, options.top_k)
            stages.finish("important", fps["important"], ["important_units.csv"],
                          units_csv_sha256=units_sha,
                          interpretability=_interpretability(counts_top, unit_rows))

        # -- adversarial attacks -------------------------------------------------------------
        if options.adversarial > 0:
            fps["adversarial"] = fingerprint(
                base, "adversarial", fps["rank"], options.eval_split, options.seed,
                options.adversarial, options.attack_k, options.pgd_eps, options.pgd_steps,
                options.cw_steps, options.cw_search_steps, units_sha)
            if stages.done("adversarial", fps["adversarial"], ["adversarial.json"]) is None:
                started = time.perf_counter()
                report = _adversarial(module, layer, probe, splits["eval"], remap, classes, mean,
                                      std, device, order, rank_base_margin[None, :] - rank_margin,
                                      unit_rows, options)
                atomic.write_json(folder / "adversarial.json", report)
                stages.finish("adversarial", fps["adversarial"], ["adversarial.json"],
                              attacks=len(report["attacks"]),
                              seconds=round(time.perf_counter() - started, 3))
        manifest["complete"] = True
        manifest["finished"] = utc_now()
        atomic.write_json(folder / "manifest.json", manifest)
        return folder


def _write_curves(folder: Path, ev: LayerEvaluator, order: np.ndarray, classes: ClassMap,
                  eval_baseline: np.ndarray, eval_base_margin: np.ndarray, layer: str,
                  options: AblationOptions) -> tuple[dict[str, Any], list[int]]:
    """Removal curves, random-unit curves and the science check; returns it and the points."""
    units = order.shape[1]
    grid = curve_points(units, extra=(options.science_k,))
    points = sorted(set(grid) | {units - p for p in grid})
    curves = removal_curves(ev, order, points)
    rows = []
    for c, name in enumerate(classes.names):
        for i, p in enumerate(points):
            for kind, bacc, acc, removed in (
                    ("top", curves.top, curves.top_accuracy, p),
                    ("rest", curves.rest, curves.rest_accuracy, units - p)):
                if math.isfinite(bacc[c, i]):
                    rows.append((name, kind, removed, _num(bacc[c, i]), _num(acc[c, i])))
    rows.sort(key=lambda r: (classes.names.index(r[0]), r[1] != "top", r[2]))
    atomic.write_csv(folder / "curves.csv",
                     ["class", "order", "n_removed", "balanced_accuracy", "accuracy"], rows)
    random = random_curves(ev, [p for p in grid if 0 < p < units], options.random_draws,
                           options.seed)
    atomic.write_csv(
        folder / "random_curves.csv",
        ["class", "n_removed", "balanced_accuracy", "balanced_accuracy_std", "accuracy",
         "margin", "draws"],
        [(name, p, _num(random.balanced_accuracy[i, c]),
          _num(random.balanced_accuracy_std[i, c]), _num(random.accuracy[i]),
          _num(random.margin[i, c]), random.draws)
         for c, name in enumerate(classes.names) for i, p in enumerate(random.points)
         if math.isfinite(random.balanced_accuracy[i, c])])
    k = min(options.science_k, units - 1) if units > 1 else 1
    at, ar = points.index(k), random.points.index(k) if k in random.points else None
    check = {"factor": options.science_factor, "required": options.science_fraction, "k": k}
    science = science_check(
        classes.names, eval_baseline, curves.top[:, at],
        random.balanced_accuracy[ar] if ar is not None else eval_baseline, **check)
    science.update({"layer": layer, "ranked_on": options.rank_split,
                    "evaluated_on": options.eval_split, "random_draws": options.random_draws,
                    "seed": options.seed})
    science["margin"] = science_check(
        classes.names, eval_base_margin, curves.top_margin[:, at],
        random.margin[ar] if ar is not None else eval_base_margin, measure="margin", **check)
    science["margin"]["note"] = (
        "supplementary: the same check on the mean logit margin (true class minus the best "
        "other) of the class's images, which still moves when no prediction flips")
    atomic.write_json(folder / "science.json", science)
    return science, points


def _write_important(folder: Path, order: np.ndarray, classes: ClassMap,
                     unit_rows: dict[int, dict[str, str]], top_k: int) -> np.ndarray:
    """important_units.csv: per unit, the classes that have it among their ``top_k``."""
    units = order.shape[1]
    counts_top = important_unit_counts(order, top_k)
    per_unit: list[list[str]] = [[] for _ in range(units)]
    for c, name in enumerate(classes.names):
        for u in order[c, :top_k]:
            per_unit[int(u)].append(name)
    header = ["unit", f"classes_top{top_k}", "classes"]
    if unit_rows:
        header += ["label", "category", "iou"]
    rows = []
    for u in range(units):
        row: list[Any] = [u, int(counts_top[u]), ";".join(per_unit[u])]
        if unit_rows:
            r = unit_rows[u]
            row += [r.get("label", ""), r.get("category", ""), r.get("iou", "")]
        rows.append(row)
    atomic.write_csv(folder / "important_units.csv", header, rows)
    return counts_top


def _array(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def _num(value: float) -> str:
    return f"{float(value):.6f}"


def _interpretability(counts: np.ndarray, unit_rows: dict[int, dict[str, str]]) -> dict | None:
    """Mean IoU of units important to some class vs the others (None without units.csv)."""
    if not unit_rows:
        return None
    iou = np.asarray([float(unit_rows[u].get("iou") or 0.0) for u in range(len(counts))])
    important = counts > 0
    return {"mean_iou_important": float(iou[important].mean()) if important.any() else None,
            "mean_iou_other": float(iou[~important].mean()) if (~important).any() else None,
            "spearman_classes_vs_iou": spearman(counts.astype(np.float64), iou)}


# --------------------------------------------------------------------------- attacks


def _adversarial(module: torch.nn.Module, layer: str, probe: Any, split: _Split,
                 remap: np.ndarray, classes: ClassMap, mean: Sequence[float],
                 std: Sequence[float], device: torch.device, order: np.ndarray,
                 importance: np.ndarray, unit_rows: dict[int, dict[str, str]],
                 options: AblationOptions) -> dict[str, Any]:
    """Attack ``options.adversarial`` correctly classified images towards another class."""
    n = len(classes)
    rng = np.random.default_rng([options.seed, 7])
    sources = [int(c) for c in rng.permutation(n)[:min(options.adversarial, n)]]
    targets = {c: int(rng.choice([t for t in range(n) if t != c])) for c in sources}
    m = torch.tensor(mean, device=device).reshape(1, -1, 1, 1)
    s = torch.tensor(std, device=device).reshape(1, -1, 1, 1)

    def classifier(images: torch.Tensor) -> torch.Tensor:
        return module((images - m) / s)

    # per source class: its first correctly classified image, else its first image
    found: dict[int, tuple[int, torch.Tensor, bool]] = {}
    outputs = torch.as_tensor(classes.outputs, device=device)
    with torch.no_grad():
        for rows, images, labels in _batches(probe, split, remap, options.batch_size,
                                             options.num_workers):
            images = images.to(device)
            correct = classifier(images).argmax(dim=1) == outputs[labels.to(device)]
            for i in range(len(rows)):
                c = int(labels[i])
                if c in targets and (c not in found or (bool(correct[i]) and not found[c][2])):
                    found[c] = (int(rows[i]), images[i:i + 1].clone(), bool(correct[i]))
            if len(found) == len(sources) and all(f[2] for f in found.values()):
                break
    attacks = []
    for c in sources:
        if c not in found:
            continue
        row, image, source_correct = found[c]
        t = targets[c]
        for method in ("pgd", "cw"):
            if method == "pgd":
                result = pgd_attack(classifier, image, classes.outputs[t], eps=options.pgd_eps,
                                    steps=options.pgd_steps)
            else:
                result = cw_l2_attack(classifier, image, classes.outputs[t],
                                      steps=options.cw_steps, search_steps=options.cw_search_steps)
            change = unit_changes(module, layer, (image - m) / s,
                                  (result.image - m) / s).cpu().numpy()
            overlap = change_overlap(change, order[c], order[t], importance[:, c],
                                     importance[:, t], k=options.attack_k)
            predicted = classes.outputs.index(result.prediction) \
                if result.prediction in classes.outputs else None
            top = np.argsort(-np.abs(change), kind="stable")[:options.attack_k]
            attacks.append({
                "method": method, "image": row, "source": classes.names[c],
                "target": classes.names[t], "source_correct": source_correct,
                "success": result.success,
                "prediction": classes.names[predicted] if predicted is not None else
                f"output {result.prediction}",
                "l2": result.l2, "linf": result.linf, "steps": result.steps,
                "source_top_units": [int(u) for u in order[c, :options.attack_k]],
                "target_top_units": [int(u) for u in order[t, :options.attack_k]],
                **overlap,
                "top_changed": [{"unit": int(u), "change": float(change[u]),
                                 "label": unit_rows.get(int(u), {}).get("label")}
                                for u in top],
            })
    summary = {}
    for method in ("pgd", "cw"):
        done = [a for a in attacks if a["method"] == method and a["success"]]
        summary[method] = {
            "attacks": sum(a["method"] == method for a in attacks), "successes": len(done),
            **{f"mean_{key}": float(np.mean([a[key] for a in done])) if done else None
               for key in ("lowered_in_source_topk", "raised_in_target_topk",
                           "moved_in_either_topk", "expected_random", "expected_random_either")},
        }
    return {"layer": layer, "k": options.attack_k, "measure": "change of the unit's mean "
            "activation (over positions), adversarial minus original",
            "importance": f"units ranked by their single-unit balanced-accuracy drop on the "
            f"{options.rank_split!r} split (ties by the logit-margin drop); the correlations "
            "use the logit-margin drop",
            "settings": {"pgd_eps": options.pgd_eps, "pgd_steps": options.pgd_steps,
                         "cw_steps": options.cw_steps, "cw_search_steps": options.cw_search_steps,
                         "seed": options.seed},
            "attacks": attacks, "summary": summary}

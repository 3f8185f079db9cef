"""Dissect layers of a model over a probe set, and write the run directory.

All layers of one command share each pass over the probe images (docs/method.md):

1. forward to the last requested layer (the rest of the network is skipped); feed each
   layer's per-unit value range and the bracket of its threshold search (``ThresholdSearch``);
2. sweeps of the search, usually two, each computing only the upsampled values near the
   thresholds, until every threshold is exact;
3. with the thresholds fixed: count the exact IoU terms, the top-k images and the histograms.

The later sweeps reuse the activations of pass 1 (float32, so every sweep sees the same
values), kept in memory up to ``cache_memory`` bytes and then on disk up to ``cache_disk``
(``ActivationCache``). When they do not all fit, a sweep would cost a forward pass, so pass 1
instead streams the values into a one-pass ``TailQuantile`` (exact while the tail fits
``quantile_memory``, else a sampling sketch), and only the count pass recomputes the batches
beyond the cache (same batches, same computation, same values). Statistics are
checkpointed every ``checkpoint_every`` batches under ``RUN_DIR/checkpoints/``, keyed by a
fingerprint of everything that shapes the results, so a killed run resumes where it stopped and
ends with byte-identical files, and a changed option never resumes stale state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .. import io as atomic
from ..errors import ConfigError, DatasetError
from ..fingerprint import fingerprint
from ..lock import hold_folder
from .cache import ActivationCache, batch_bytes, disk_room
from .iou import IoUCounts, Upsampler, dedupe_image_labels, dedupe_labels, label_units, \
    summarize_layer
from ..paths import output_folder, portable_spec, portable_text, run_relative
from .manifest import (FORMAT, FORMAT_VERSION, machine_info, model_record, skipped_record,
                       software_versions, utc_now, warn_random_weights)
from .method import padding_of, resolve_method
from .quantile import LEVELS, TailQuantile, needed_top, sample_levels
from .search import ThresholdSearch
from .topk import Histogram, TopK, ValueRange

__all__ = ["DissectOptions", "ENGINE_VERSION", "dissect", "resolve_device"]

log = logging.getLogger(__name__)

#: Bumped whenever the engine's results change for the same inputs (invalidates checkpoints).
ENGINE_VERSION = 3
#: ImageNet normalisation, the default when neither the options nor the model say otherwise.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Approximate bytes per kept value of a ``TailQuantile`` (value, level, merge temporaries).
BYTES_PER_SLOT = 16
#: Smallest sketch buffer per unit when the exact tail does not fit.
MIN_CAPACITY = 4096
_SAFE_LAYER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_DEVICES = ("auto", "cpu", "cuda", "mps")

#: Test hook: called as ``hook(stage, batch_index)`` after each batch (and checkpoint).
_after_batch: Callable[[int, int], None] | None = None


@dataclass
class DissectOptions:
    """Every choice of the method (recorded in the manifest); validated on creation."""

    # the method's choices: None takes the value of the preset ``method`` (method.py)
    method: str = "unitdissect"  # unitdissect | netdissect | pnas
    quantile: float | None = None  # q: T_k is the (1 - q) quantile
    iou_threshold: float | None = None  # a unit detects its label when IoU > this
    threshold_on: str | None = None  # quantile over the upsampled maps, or "raw" maps
    upsampling: str | None = None  # bilinear | bilinear-zeros (zeros beyond the edges)
    union: str | None = None  # images in a concept's union: category | overlap | all
    category_aware: bool | None = None  # union != all (False: union all)
    split: str = "all"  # all | train | val
    batch_size: int = 32
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    mean: tuple[float, ...] | None = None  # input normalisation; None: the model's own
    std: tuple[float, ...] | None = None
    seed: int = 0  # of the quantile sketch's sampling
    topk: int = 12
    histogram_bins: int = 64
    quantile_memory: int = 1 << 30  # bytes for exact quantiles; beyond: the sampling sketch
    cache_memory: int = 2 << 30  # bytes of activations kept in memory for the later passes
    cache_disk: int = 32 << 30  # then on disk, under RUN_DIR/checkpoints/ (0: none)
    num_workers: int = 0  # image decoding processes
    checkpoint_every: int = 50  # batches between checkpoints
    method_overrides: tuple[str, ...] = field(default=(), init=False)  # choices != the preset's

    def __post_init__(self) -> None:
        problems: list[str] = resolve_method(self)

        def number(name: str, kind: type, low: float | None = None, high: float | None = None,
                   open_low: bool = False, open_high: bool = False) -> None:
            value = getattr(self, name)
            flag = _flag(name)
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float
                                                         else int):
                problems.append(f"{flag} must be {'a number' if kind is float else 'an integer'}, "
                                f"got {value!r}")
                return
            if kind is float and not math.isfinite(value):
                problems.append(f"{flag} must be finite, got {value!r}")
                return
            if low is not None and (value <= low if open_low else value < low):
                problems.append(f"{flag} must be {'>' if open_low else '>='} {low}, got {value!r}")
            elif high is not None and (value >= high if open_high else value > high):
                problems.append(f"{flag} must be {'<' if open_high else '<='} {high}, "
                                f"got {value!r}")

        number("quantile", float, 0.0, 1.0, open_low=True, open_high=True)
        number("iou_threshold", float, 0.0)
        number("batch_size", int, 1)
        number("seed", int, 0)
        number("topk", int, 1)
        number("histogram_bins", int, 1)
        number("quantile_memory", int, 1)
        number("cache_memory", int, 0)
        number("cache_disk", int, 0)
        number("num_workers", int, 0)
        number("checkpoint_every", int, 1)
        if self.split not in ("all", "train", "val"):
            problems.append(f"--split must be all, train or val, got {self.split!r}")
        problems += input_problems(self)
        if problems:
            raise ConfigError("; ".join(problems))


def input_problems(options: Any) -> list[str]:
    """What is wrong with ``options.device``, ``.mean`` and ``.std`` (shared by the dissection
    and ablation options); valid mean/std become float tuples in place."""
    problems = []
    device = str(options.device)
    if device.split(":")[0] not in _DEVICES or (":" in device and not (
            device.startswith("cuda:") and device[5:].isdigit())):
        problems.append(f"--device must be auto, cpu, cuda[:N] or mps, got {options.device!r}")
    for name in ("mean", "std"):
        value = getattr(options, name)
        if value is None:
            continue
        try:
            value = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            problems.append(f"--{name} must be three numbers R,G,B, got {value!r}")
            continue
        if len(value) != 3 or not all(math.isfinite(v) for v in value):
            problems.append(f"--{name} must be three finite numbers R,G,B, got {value!r}")
        elif name == "std" and min(value) <= 0:
            problems.append(f"--std must be positive, got {value!r}")
        else:
            setattr(options, name, value)
    return problems


def _flag(name: str) -> str:
    return {"num_workers": "--workers", "histogram_bins": "--histogram-bins"}.get(
        name, "--" + name.replace("_", "-"))


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``auto`` (cuda, else mps, else cpu) or a named device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine",
                          hint="use --device auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and
                                     torch.backends.mps.is_available()):
        raise ConfigError(f"--device {name}: MPS is not available on this machine",
                          hint="use --device auto or cpu")
    return device


# ---------------------------------------------------------------------------------------
# One layer's statistics and passes


#: Stages of a run: the forward pass (pass 1), then sweeps over the probe images.
_FORWARD, _SEARCH, _COUNT, _DONE = 1, 2, 3, 4
_STAGE_NAMES = {_FORWARD: "pass 1", _SEARCH: "threshold search", _COUNT: "count"}


class _LayerWork:
    """The statistics of one layer through the stages of a run.

    Thresholds come from one of two strategies, with identical results when exact:

    * ``search`` (every batch in the activation cache): pass 1 brackets each threshold, and
      sweeps over the cache narrow the brackets to the exact value (``ThresholdSearch``);
    * ``stream``: pass 1 feeds a ``TailQuantile`` (exact while its buffer holds the tail, else
      the sampling sketch), so no sweep needs a forward pass of its own.
    """

    def __init__(self, name: str, shape: Sequence[int], capacity: int, exact: bool,
                 search: bool, ctx: _Context) -> None:
        units, h, w = (int(s) for s in shape)
        self.name, self.shape, self.capacity, self.ctx = name, (units, h, w), capacity, ctx
        device, options = ctx.device, ctx.options
        mask = (ctx.mask_size, ctx.mask_size)
        self.up = Upsampler((h, w), mask, device, padding=padding_of(options.upsampling))
        q_size = mask if options.threshold_on == "upsampled" else (h, w)
        self.qup = self.up if q_size == mask else Upsampler((h, w), q_size, device)
        self.exact_capacity = exact  # capacity holds the whole tail: no sampling needed
        self.total = ctx.num_images * self.qup.pixels
        self.strategy = "search" if search else "stream"
        self.search = ThresholdSearch(units, options.quantile, self.qup, device) \
            if search else None
        self.tail = None if search else TailQuantile(
            units, options.quantile, capacity, options.seed, device, expected_count=self.total)
        self.range = ValueRange(units, device)
        self.nonfinite = 0
        self.nonfinite_units = np.zeros(units, dtype=np.int64)  # NaN/Inf values per unit
        self.thresholds: torch.Tensor | None = None
        self.exact: bool | None = None
        self.iou: IoUCounts | None = None
        self.topk: TopK | None = None
        self.hist: Histogram | None = None

    @staticmethod
    def _clean(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Maps as float32 with non-finite values zeroed, and where they were (None: nowhere)."""
        maps = maps.float()
        bad = ~torch.isfinite(maps)
        if not bool(bad.any()):
            return maps, None
        return maps.masked_fill(bad, 0.0), bad

    def _feed(self, sketch: TailQuantile, up: Upsampler, maps: torch.Tensor,
              bad: torch.Tensor | None, indices: torch.Tensor) -> None:
        """Offer one batch's upsampled values to a quantile statistic."""
        device = maps.device
        units = maps.shape[1]
        if sketch.rate_level == 0 and self.exact_capacity:
            # exact: every value counts and none is ever dropped for sampling
            levels = torch.zeros(maps.shape[0], up.pixels, dtype=torch.uint8, device=device)
        else:
            levels = torch.from_numpy(sample_levels(indices, up.pixels,
                                                    self.ctx.options.seed)).to(device)
        excluded = None if bad is None else up(bad.float()).flatten(2) > 0
        counts = torch.bincount(levels.reshape(-1).long(), minlength=LEVELS)
        dropped = None
        if excluded is not None:
            b, u, p = excluded.nonzero(as_tuple=True)
            dropped = torch.zeros(units * LEVELS, dtype=torch.int64, device=device)
            dropped.index_add_(0, u * LEVELS + levels[b, p].long(), torch.ones_like(u))
            dropped = dropped.view(units, LEVELS)
        sketch.add_counts(counts, dropped)
        before = sketch.floor
        values, value_levels, floor = up.tail(maps, before, sketch.capacity, levels,
                                              sketch.rate_level, excluded)
        # only a floor the batch raised comes with the guarantee (not a preset one kept)
        raised = torch.where(floor > before, floor, torch.full_like(floor, float("-inf")))
        sketch.add_candidates(values, value_levels, raised)

    def needs(self, stage: int) -> bool:
        """Whether this layer has work in ``stage``."""
        if stage == _SEARCH:
            return self.search is not None and not self.search.done_all
        return stage in (_FORWARD, _COUNT)

    def step(self, stage: int, maps: torch.Tensor, payload: _Payload) -> None:
        """Process one batch in ``stage``."""
        maps, bad = self._clean(maps)
        excluded = None if bad is None else self.qup(bad.float()).flatten(2) > 0
        if stage == _FORWARD:
            if bad is not None:
                per_unit = bad.sum((0, 2, 3)).cpu().numpy().astype(np.int64)
                self.nonfinite += int(per_unit.sum())
                self.nonfinite_units += per_unit
            self.range.add(maps, bad)
            if self.search is not None:
                self.search.add_bounds(maps, excluded)
            else:
                self._feed(self.tail, self.qup, maps, bad, payload.indices)
        elif stage == _SEARCH:
            self.search.add_maps(maps, excluded)
        elif stage == _COUNT:
            self._count(maps, bad, payload)

    def end(self, stage: int) -> None:
        """Finish ``stage``."""
        if self.search is not None:
            if stage == _FORWARD:
                self.search.start()
            elif stage == _SEARCH:
                self.search.end_sweep()
            if stage in (_FORWARD, _SEARCH) and self.search.done_all:
                self.thresholds = self.search.thresholds()
                self._fix_thresholds(self.search.inexact == 0)
        elif stage == _FORWARD:
            self.thresholds, determined = self.tail.quantile_values()
            if not bool(determined.all()):
                log.warning("layer %s: the quantile buffer ran short for %d units; their "
                            "thresholds are approximate", self.name, int((~determined).sum()))
            self._fix_thresholds(self.tail.rate_level == 0 and bool(determined.all()))

    def _fix_thresholds(self, exact: bool) -> None:
        self.exact = exact
        self._setup_count()

    def _setup_count(self) -> None:
        units, h, w = self.shape
        ctx = self.ctx
        self.hist = Histogram(units, ctx.options.histogram_bins, self.range.low, self.range.high,
                              ctx.device)
        self.iou = IoUCounts(units, ctx.num_columns, ctx.num_categories, ctx.device,
                             ctx.concept_category if ctx.options.union == "overlap" else None)
        self.topk = TopK(units, min(ctx.options.topk, ctx.num_images), (h, w), ctx.device)

    def _count(self, maps: torch.Tensor, bad: torch.Tensor | None, payload: _Payload) -> None:
        """Count IoU terms, top-k images and the histogram with the fixed thresholds."""
        assert self.thresholds is not None and self.iou and self.topk and self.hist
        excluded = None if bad is None else self.up(bad.float()).flatten(2) > 0
        self.iou.add_maps(self.up, maps, self.thresholds, payload.labels, payload.image_labels,
                          payload.has_category, excluded)
        scores = maps if bad is None else maps.masked_fill(bad, float("-inf"))
        self.topk.add(scores.amax((2, 3)), payload.indices, maps)
        self.hist.add(maps, bad)

    _STATS = ("tail", "search", "range", "iou", "topk", "hist")

    def state_dict(self) -> dict[str, Any]:
        """Every statistic, for a checkpoint."""
        return {"shape": list(self.shape), "capacity": self.capacity,
                "exact_capacity": self.exact_capacity, "strategy": self.strategy,
                "nonfinite": self.nonfinite, "exact": self.exact,
                "nonfinite_units": torch.from_numpy(self.nonfinite_units.copy()),
                "thresholds": None if self.thresholds is None else self.thresholds.cpu(),
                **{k: (None if getattr(self, k) is None else getattr(self, k).state_dict())
                   for k in self._STATS}}

    @classmethod
    def from_state(cls, name: str, state: dict[str, Any], ctx: _Context) -> _LayerWork:
        """Rebuild from ``state_dict()`` output."""
        work = cls(name, state["shape"], int(state["capacity"]), bool(state["exact_capacity"]),
                   state["strategy"] == "search", ctx)
        work.nonfinite, work.exact = int(state["nonfinite"]), state["exact"]
        if state.get("nonfinite_units") is not None:
            work.nonfinite_units = state["nonfinite_units"].numpy().astype(np.int64)
        device = ctx.device
        if state["thresholds"] is not None:
            work.thresholds = state["thresholds"].to(device)
        for key in cls._STATS:  # the range first: the histogram's edges come from it
            if key == "iou" and state["iou"] is not None:
                work._setup_count()
            if state[key] is not None:
                getattr(work, key).load_state_dict(state[key])
        return work

    def stats(self) -> dict[str, Any]:
        """Figures for the manifest."""
        coverage = self.iou.coverage() if self.iou is not None else np.zeros(0)
        return {
            "shape": list(self.shape),
            "nonfinite": self.nonfinite,
            **({"nonfinite_units": {str(u): int(self.nonfinite_units[u])
                                    for u in np.flatnonzero(self.nonfinite_units)}}
               if self.nonfinite else {}),
            "quantile_method": "exact" if self.exact else "sampled",
            "quantile_strategy": self.strategy,
            **({"quantile_search_sweeps": self.search.rounds} if self.search is not None else {
                "quantile_sample_rate": self.tail.rate,
                "quantile_capacity": self.capacity,
                "quantile_tail_samples_min": float(self.tail.tail_samples().min()),
                "quantile_rel_error_999": float(self.tail.rel_error().max())}),
            "coverage_mean": float(coverage.mean()) if coverage.size else None,
        }

    def write(self, folder: Path, fp: str) -> None:
        """Write the layer's files; ``layer.json`` last, as the mark of a finished layer."""
        ctx = self.ctx
        assert self.iou is not None and self.topk is not None and self.hist is not None
        iou = self.iou.iou(ctx.concept_category, ctx.options.union)
        labels = label_units(iou, ranks=3)
        coverage = self.iou.coverage()
        thresholds = self.thresholds.cpu().numpy()
        threshold = ctx.options.iou_threshold
        rows = []
        for label in labels:
            names = [ctx.concept_names.get(c, "") for c in label.concept_ids]
            best = label.concept_ids[0]
            rows.append([
                label.unit, names[0], best, ctx.concept_categories.get(best, ""),
                _num(label.ious[0]), int(best > 0 and label.ious[0] > threshold),
                _num(thresholds[label.unit]), _num(coverage[label.unit]),
                names[1], _num(label.ious[1]), names[2], _num(label.ious[2]),
            ])
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_npy(folder / "iou.npy", iou)
        atomic.write_csv(folder / "units.csv",
                         ["unit", "label", "concept_id", "category", "iou", "detector",
                          "threshold", "coverage", "label2", "iou2", "label3", "iou3"], rows)
        atomic.write_npz(folder / "topk.npz", **self.topk.result())
        atomic.write_npz(folder / "histogram.npz", **self.hist.result())
        summary = summarize_layer(labels, ctx.categories, ctx.concept_category, threshold)
        atomic.write_json(folder / "layer.json", {
            "layer": self.name, "shape": list(self.shape), "units": self.shape[0],
            "iou_threshold": threshold, **summary,
            "quantile": ctx.options.quantile, "threshold_on": ctx.options.threshold_on,
            "quantile_method": "exact" if self.exact else "sampled",
            "fingerprint": fp,
        })
        for name in ("iou.npy", "units.csv", "topk.npz", "histogram.npz", "layer.json"):
            atomic.remove_partial(folder / name)  # a killed earlier attempt's


def _num(value: float) -> str:
    """A float32-precision number, shortest round-trip text."""
    return str(np.float32(value))


# ---------------------------------------------------------------------------------------
# The run


@dataclass
class _Payload:
    """What pass 2 needs of one batch besides the activations."""

    indices: torch.Tensor
    labels: torch.Tensor  # [B, L, P] deduplicated
    image_labels: torch.Tensor  # [B, M] deduplicated
    has_category: torch.Tensor

    def to(self, device: torch.device) -> _Payload:
        return _Payload(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


@dataclass
class _Context:
    """Run-wide settings the layers share."""

    options: DissectOptions
    device: torch.device
    mask_size: int
    num_columns: int
    num_categories: int
    num_images: int
    categories: list[str]
    concept_category: np.ndarray
    concept_names: dict[int, str]
    concept_categories: dict[int, str]


def normalisation(options: Any, model: Any) -> tuple[tuple[float, ...], ...]:
    """The input mean and std: the options', else the model's, else ImageNet's."""
    mean = options.mean or tuple(getattr(model, "mean", None) or IMAGENET_MEAN)
    std = options.std or tuple(getattr(model, "std", None) or IMAGENET_STD)
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError(f"the model declares a {len(mean)}-channel mean/std; "
                          "give three-channel --mean and --std for RGB probe images")
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _capacities(shapes: dict[str, tuple[int, int, int]], ctx: _Context
                ) -> tuple[dict[str, int], dict[str, bool]]:
    """Quantile buffer per layer, and whether it holds the exact tail: exact tails while they
    fit the memory budget (smallest first), else equal shares for the sampling sketch."""
    options = ctx.options
    exact: dict[str, int] = {}
    for name, (units, h, w) in shapes.items():
        pixels = ctx.mask_size ** 2 if options.threshold_on == "upsampled" else h * w
        exact[name] = max(8, needed_top(ctx.num_images * pixels, options.quantile) + 2)
    budget = options.quantile_memory // BYTES_PER_SLOT  # slots for all units together
    units_left = sum(s[0] for s in shapes.values())
    capacity: dict[str, int] = {}
    for name in sorted(shapes, key=lambda n: (exact[n], n)):
        units = shapes[name][0]
        share = budget // max(1, units_left)
        capacity[name] = exact[name] if exact[name] <= share else max(MIN_CAPACITY, share)
        budget -= capacity[name] * units
        units_left -= units
    return capacity, {n: capacity[n] >= exact[n] for n in shapes}


def _layer_done(folder: Path, fp: str) -> bool:
    info = folder / "layer.json"
    if not info.is_file():
        return False
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    files = ("units.csv", "iou.npy", "topk.npz", "histogram.npz")
    return data.get("fingerprint") == fp and all((folder / f).is_file() for f in files)


def _load_checkpoint(path: Path, fp: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint is only a shortcut: start over rather than fail
        log.warning("ignoring unreadable checkpoint %s: %s", path, e)
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fp:
        return None
    return state


def dissect(model: Any, layers: Sequence[str] | str, probe: Any, out: str | Path,
            options: DissectOptions | None = None, progress: bool = True, *,
            dataset_spec: str | None = None, command: Sequence[str] | None = None,
            replace: bool = False) -> Path:
    """Dissect ``layers`` of a LoadedModel over ``probe``; write (or resume) the run at ``out``.

    A run of another model (other weights) at ``out`` is refused, or with ``replace``
    removed whole first, so that no page ever shows two models' layers as one run."""
    from ..models import resolve_layers

    options = options or DissectOptions()
    device = resolve_device(options.device)
    warn_random_weights(model)
    module = model.module
    layers = resolve_layers(module, layers)
    for name in layers:
        if not _SAFE_LAYER.fullmatch(name) or ".." in name:
            raise ConfigError(f"layer name {name!r} cannot be used as a folder name")
    mean, std = normalisation(options, model)
    out = output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    indices = np.asarray(probe.split_indices(options.split), dtype=np.int64)
    if indices.size == 0:
        raise DatasetError(f"the {options.split!r} split of {probe.path} has no images",
                           hint="use --split all")
    ctx = _Context(
        options=options, device=device, mask_size=int(probe.mask_size),
        num_columns=int(probe.num_columns), num_categories=len(probe.categories),
        num_images=int(indices.size), categories=list(probe.categories),
        concept_category=np.asarray(probe.concept_category, dtype=np.int64),
        concept_names={c.id: c.name for c in probe.concepts},
        concept_categories={c.id: c.category for c in probe.concepts},
    )
    result_options = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
                      if f.name not in ("device", "num_workers", "checkpoint_every",
                                        "cache_memory", "cache_disk", "method",
                                        "method_overrides")}
    base = {"engine": ENGINE_VERSION, "format_version": FORMAT_VERSION,
            "model": {"spec": model.spec, "weights_sha256": model.weights_sha256,
                      "seed": getattr(model, "seed", None)},
            "dataset": {"fingerprint": probe.fingerprint, "split": options.split,
                        "images": ctx.num_images, "mask_size": ctx.mask_size},
            "options": {**result_options, "mean": mean, "std": std}, "device": device.type}
    fps = {name: fingerprint(base, name) for name in layers}
    with hold_folder(out, f"the run directory {out}"):  # one writer at a time
        _claim_run(out, model, replace)
        todo = [name for name in layers if not _layer_done(out / "layers" / name, fps[name])]
        stats = _previous_stats(out)
        started = time.perf_counter()
        group_fp = fingerprint(sorted(fps[name] for name in todo))
        checkpoint = out / "checkpoints" / f"{group_fp[:24]}.pt"
        if todo:
            stats.update(_dissect_group(module, todo, probe, indices, ctx, mean, std, fps,
                                        out, checkpoint, group_fp, progress))
        concepts = sorted(probe.concepts, key=lambda c: c.id)
        atomic.write_csv(out / "concepts.csv", ["id", "name", "category", "level", "frequency"],
                         [[c.id, c.name, c.category, c.level, c.frequency] for c in concepts])
        used_exact = {stats.get(n, {}).get("quantile_method") for n in layers}
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "created": utc_now(),
            "command": [portable_text(w) for w in command] if command is not None else None,
            "versions": software_versions(),
            "model": model_record(model, layers=list(layers)),
            "dataset": {"spec": portable_spec(dataset_spec if dataset_spec is not None
                                              else str(probe.path)),
                        "path": run_relative(probe.path, out), "fingerprint": probe.fingerprint,
                        "images": ctx.num_images, "total_images": len(probe),
                        "image_size": int(probe.image_size), "mask_size": ctx.mask_size,
                        "split": options.split, "num_columns": ctx.num_columns,
                        "categories": ctx.categories,
                        "inputs": getattr(probe, "inputs", "images")},
            "options": {**dataclasses.asdict(options), "mean": list(mean), "std": list(std),
                        "device": device.type, "device_requested": options.device,
                        "quantile_method": used_exact.pop() if len(used_exact) == 1 else "mixed",
                        "quantile_interpolation": "linear", "align_corners": False,
                        "engine_version": ENGINE_VERSION},
            "stats": {"layers": {n: stats.get(n, {}) for n in layers}, **skipped_record(probe),
                      "seconds": round(time.perf_counter() - started, 3)},
            "machine": machine_info(device),
            "fingerprints": fps,
        }
        atomic.write_json(out / "manifest.json", manifest)
        if checkpoint.exists():
            checkpoint.unlink()
        atomic.remove_partial(checkpoint)
        try:
            (out / "checkpoints").rmdir()  # only if no other run's checkpoint is left
        except OSError:
            pass
        return out


#: What a run directory holds (``replace`` removes these, nothing else of the folder).
RUN_ENTRIES = ("manifest.json", "concepts.csv", "layers", "checkpoints", "ablation",
               "generator")


def _claim_run(out: Path, model: Any, replace: bool) -> None:
    """Refuse (or, with ``replace``, empty) a run directory that holds another model's run."""
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        previous = manifest["model"]
        if manifest.get("format") != FORMAT:
            return
    except (OSError, ValueError, KeyError, TypeError):
        return  # no finished run here (or not ours): nothing to mix with
    if previous.get("weights_sha256") in (None, model.weights_sha256):
        return
    if not replace:
        raise ConfigError(
            f"{out} holds a run of {previous.get('spec')!r} with other weights; refusing to "
            f"add the layers of {model.spec!r} to it", hint="choose another --out, or --force to "
            "replace that run whole")
    log.warning("replacing the run of %s in %s", previous.get("spec"), out)
    for name in RUN_ENTRIES:
        entry = out / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()


def _previous_stats(out: Path) -> dict[str, Any]:
    path = out / "manifest.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["stats"]["layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _dissect_group(module: torch.nn.Module, layers: list[str], probe: Any, indices: np.ndarray,
                   ctx: _Context, mean: tuple[float, ...], std: tuple[float, ...],
                   fps: dict[str, str], out: Path, checkpoint: Path, group_fp: str,
                   progress: bool) -> dict[str, Any]:
    """Run every stage for ``layers`` together; write their files; return their stats."""
    from tqdm.auto import tqdm

    from ..models import LayerTrace

    options, device = ctx.options, ctx.device
    batch_size = options.batch_size
    n_batches = math.ceil(len(indices) / batch_size)
    works: dict[str, _LayerWork] = {}
    stage, cursor, elapsed = _FORWARD, 0, 0.0
    timing: dict[str, float] = {}  # seconds per stage
    state = _load_checkpoint(checkpoint, group_fp)
    if state is not None:
        stage, cursor, elapsed = int(state["stage"]), int(state["cursor"]), float(state["elapsed"])
        timing = {str(k): float(v) for k, v in state.get("timing", {}).items()}
        works = {n: _LayerWork.from_state(n, state["layers"][n], ctx) for n in layers}
        log.info("resuming %s at stage %d, batch %d", out, stage, cursor)
    started = time.perf_counter()

    def save(stage: int, cursor: int) -> None:
        atomic.write_torch(checkpoint, {
            "fingerprint": group_fp, "stage": stage, "cursor": cursor,
            "elapsed": elapsed + time.perf_counter() - started, "timing": timing,
            "layers": {n: w.state_dict() for n, w in works.items()}})

    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    was_training = module.training
    module.to(device).eval()
    trace = LayerTrace(module, layers, stop=True)
    folder = checkpoint.with_name(checkpoint.stem + "-activations")
    cache = ActivationCache(options.cache_memory, disk_room(folder, options.cache_disk), folder)

    def forward(batch: Any) -> dict[str, torch.Tensor]:
        inputs = getattr(batch, "inputs", None)  # a probe's own model inputs (e.g. latents)
        trace.run((batch.images.to(device) - mean_t) / std_t if inputs is None
                  else inputs.to(device))
        return {n: trace[n] for n in layers}

    def payload_of(batch: Any) -> _Payload:
        labels = batch.labels
        if labels.shape[-1] != ctx.mask_size or labels.shape[-2] != ctx.mask_size:
            raise DatasetError(f"label maps are {labels.shape[-2]}x{labels.shape[-1]}, the "
                               f"dataset declares mask size {ctx.mask_size}")
        for name, ids in (("label maps", labels), ("image labels", batch.image_labels)):
            if not ids.numel():
                continue
            low, high = (int(v) for v in torch.aminmax(ids))
            if low < 0 or high >= ctx.num_columns:
                raise DatasetError(f"{name} of {probe.path} hold concept ids {low}..{high}; "
                                   f"concepts.csv has ids below {ctx.num_columns}")
        return _Payload(batch.indices.to(device), dedupe_labels(labels.to(device)).flatten(2),
                        dedupe_image_labels(batch.image_labels.to(device)),
                        batch.has_category.to(device))

    def computed(start: int, stop: int) -> Iterator[tuple[int, _Payload, dict]]:
        chunk = indices[start * batch_size:stop * batch_size]
        for i, batch in enumerate(probe.batches(chunk, batch_size,
                                                num_workers=options.num_workers,
                                                device=str(device)), start=start):
            yield i, payload_of(batch), forward(batch)

    def swept(start: int) -> Iterator[tuple[int, _Payload, dict]]:
        """Batches from the cache where it has them, else computed again (same values)."""
        i = start
        while i < n_batches:
            item = cache.get(i, _Payload)
            if item is not None:
                yield i, item[0].to(device), {k: a.to(device) for k, a in item[1].items()}
                i += 1
                continue
            stop = i
            while stop < n_batches and stop not in cache:
                stop += 1
            yield from computed(i, stop)
            i = stop

    def create(acts: dict[str, torch.Tensor], payload: _Payload) -> dict[str, _LayerWork]:
        shapes = {n: tuple(int(s) for s in acts[n].shape[1:]) for n in layers}
        capacity, exact = _capacities(shapes, ctx)
        per_batch = batch_bytes(payload, acts)
        # the search's sweeps are cheap over kept activations (in memory or on disk); forward
        # passes are not
        search = per_batch * n_batches <= cache.capacity
        return {n: _LayerWork(n, shapes[n], capacity[n], exact[n], search, ctx) for n in layers}

    try:
        with torch.no_grad(), trace:
            while stage < _DONE:
                if works and not any(w.needs(stage) for w in works.values()):
                    stage, cursor = stage + 1, 0
                    continue
                bar = tqdm(total=n_batches, initial=cursor, desc=f"dissect {_STAGE_NAMES[stage]}",
                           unit="batch", disable=not progress)
                stage_started = time.perf_counter()
                source = computed(cursor, n_batches) if stage == _FORWARD else swept(cursor)
                for i, payload, acts in source:
                    if stage == _FORWARD:
                        if not works:
                            works = create(acts, payload)
                        cache.put(i, payload, acts)
                    for name, work in works.items():
                        if work.needs(stage):
                            work.step(stage, acts[name], payload)
                    if stage == _COUNT:
                        cache.drop(i)
                    cursor = i + 1
                    if cursor % options.checkpoint_every == 0 and cursor < n_batches:
                        save(stage, cursor)
                    bar.update()
                    if _after_batch is not None:
                        _after_batch(stage, i)
                bar.close()
                for work in works.values():
                    if work.needs(stage):
                        work.end(stage)
                name = _STAGE_NAMES[stage]
                timing[name] = round(timing.get(name, 0.0) + time.perf_counter() - stage_started, 3)
                # the search sweeps until every threshold is found
                again = stage == _SEARCH and any(w.needs(stage) for w in works.values())
                stage, cursor = (stage if again else stage + 1), 0
                save(stage, 0)
    finally:
        module.train(was_training)
    cache.clear()  # every pass is done (a killed run leaves its files to the rerun)
    total = elapsed + time.perf_counter() - started
    stats = {}
    for name in layers:
        works[name].write(out / "layers" / name, fps[name])
        stats[name] = {**works[name].stats(), "seconds": round(total, 3),
                       "stage_seconds": dict(timing)}
        _warn_nonfinite(name, works[name].nonfinite_units)
    return stats


def _warn_nonfinite(layer: str, per_unit: np.ndarray) -> None:
    """Name the units whose activations held NaN or Inf: those values were left out of
    their thresholds and IoU (a unit with no finite value detects nothing)."""
    units = np.flatnonzero(per_unit)
    if units.size == 0:
        return
    shown = ", ".join(str(u) for u in units[:10]) + (", ..." if units.size > 10 else "")
    log.warning("layer %s: %d of %d units gave NaN or Inf activations (%s values in all; "
                "units %s); those values are left out of thresholds and IoU, counted per unit "
                "in the manifest (stats.layers.%s.nonfinite_units)", layer, units.size,
                per_unit.size, f"{int(per_unit.sum()):,}", shown, layer)

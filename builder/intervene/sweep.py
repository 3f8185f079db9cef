"""Ablation sweeps of a classifier layer: single units, rankings, removal curves, the science check.

The engine (``LayerEvaluator``) computes the layer's output once per image and keeps it in
memory (up to ``cache_memory`` bytes; beyond, once per batch and evaluation), then runs only the
rest of the network on K ablated copies at a time: the cached activations are stacked K times,
each copy with its own unit mask (``apply_unit_masks``, one vectorised operation), and the
confusion matrices of all K ablations come from one ``bincount``. How the rest of the network is
run (``strategy``):

- ``split``: ``split_at(model, layer)`` cut the model into ``head`` and ``tail`` (chains of
  modules: ``nn.Sequential``, torchvision's VGG and AlexNet); the tail runs on the activations.
- ``graft``: the whole model runs on a 2-image dummy input while a hook replaces the layer's
  output with the stacked activations. Valid when nothing after the layer reads the input by
  another path; checked on the first batch against a plain forward pass, else ``full``.
- ``full``: the input is repeated K times and a hook masks the layer (``BatchedAblation``):
  one full forward pass per ablation, the naive cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DatasetError, LayerError
from ..models.layers import first_tensor, resolve_layers
from ..models.trace import LayerTrace, split_at
from .ablation import BatchedAblation, apply_unit_masks, channel_dim, repeat_batch
from .metrics import accuracy, balanced_accuracy, confusion_matrices

__all__ = [
    "STRATEGIES",
    "ClassMap",
    "CurveResult",
    "Evaluation",
    "LayerEvaluator",
    "RandomCurves",
    "SweepResult",
    "curve_points",
    "important_unit_counts",
    "match_classes",
    "random_curves",
    "random_unit_sets",
    "rank_units",
    "removal_curves",
    "science_check",
    "single_unit_sweep",
]

STRATEGIES = ("auto", "split", "graft", "full")
#: Batches of (images [B, 3, S, S] in [0, 1], class labels [B] in 0..n-1).
Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


# --------------------------------------------------------------------------- classes


@dataclass(frozen=True)
class ClassMap:
    """The classifier's classes evaluated, with their model outputs and scene concepts."""

    names: tuple[str, ...]  # class names, in column order of every result array
    outputs: tuple[int, ...]  # the model output (logit index) of each class
    concepts: tuple[int, ...]  # the probe set's scene concept id of each class
    num_outputs: int  # number of model outputs

    def __len__(self) -> int:
        return len(self.names)

    def output_to_class(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """int64 [num_outputs]: the class column of each model output, ``len(self)`` for others."""
        table = torch.full((self.num_outputs,), len(self.names), dtype=torch.long)
        table[list(self.outputs)] = torch.arange(len(self.names))
        return table.to(device)

    def concept_to_class(self, num_columns: int) -> np.ndarray:
        """int64 [num_columns]: the class column of each concept id, -1 for other concepts."""
        table = np.full(max(num_columns, max(self.concepts, default=0) + 1), -1, dtype=np.int64)
        table[list(self.concepts)] = np.arange(len(self.names))
        return table

    def subset(self, keep: Sequence[int]) -> ClassMap:
        """The classes at columns ``keep``, in that order."""
        return ClassMap(tuple(self.names[i] for i in keep), tuple(self.outputs[i] for i in keep),
                        tuple(self.concepts[i] for i in keep), self.num_outputs)


def match_classes(class_names: Sequence[str], concepts: Iterable[object]) -> ClassMap:
    """Map class names (model output order) to the probe set's scene concepts by canonical name.

    Names match as the dataset builder merges them (lower case, ``_`` as a space, synonyms);
    a class with no scene concept raises DatasetError naming it.
    """
    from ..datasets.vocabulary import canonical_name

    scenes: dict[str, int] = {}
    for concept in concepts:
        if getattr(concept, "category", None) == "scene":
            scenes.setdefault(canonical_name(str(concept.name), "scene"), int(concept.id))
    if not scenes:
        raise DatasetError("the probe set has no scene concepts to evaluate a classifier on",
                           hint="build it from a source with scene labels, e.g. toyworld")
    missing = [name for name in class_names if canonical_name(str(name), "scene") not in scenes]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"{len(missing)} of the classifier's {len(class_names)} classes have no scene concept "
            f"in the probe set: {shown}",
            hint="classes match scene concepts by name (case and '_' ignored); the dataset may "
            "have dropped rare scenes (build it with more images or --min-frequency 1)")
    ids = [scenes[canonical_name(str(name), "scene")] for name in class_names]
    if len(set(ids)) != len(ids):
        raise DatasetError("two classifier classes match the same scene concept")
    return ClassMap(tuple(str(n) for n in class_names), tuple(range(len(ids))), tuple(ids),
                    len(class_names))


# --------------------------------------------------------------------------- engine


@dataclass
class Evaluation:
    """What K ablations did to the classifier over the evaluated images."""

    confusion: np.ndarray  # int64 [K, n, n + 1]; the last column: outputs outside the classes
    margin_sum: np.ndarray  # float64 [K, n]: sum over class c's images of their logit margin
    counts: np.ndarray  # int64 [n]: images per class

    def __len__(self) -> int:
        return len(self.confusion)

    def __getitem__(self, index: object) -> Evaluation:
        """The evaluations at ``index`` (an int, slice or index array), as an Evaluation."""
        pick = np.arange(len(self))[index]  # type: ignore[index]
        pick = np.atleast_1d(pick)
        return Evaluation(self.confusion[pick], self.margin_sum[pick], self.counts)

    @property
    def balanced_accuracy(self) -> np.ndarray:
        """[K, n]: per-class balanced accuracy (this class vs the rest)."""
        return balanced_accuracy(self.confusion)

    @property
    def accuracy(self) -> np.ndarray:
        """[K]: overall accuracy."""
        return accuracy(self.confusion)

    @property
    def margin(self) -> np.ndarray:
        """[K, n]: mean logit margin of class c's images (true logit minus the best other)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.margin_sum / self.counts[None, :]




def _logits(output: object) -> torch.Tensor:
    tensor = first_tensor(output)
    if tensor is None or tensor.dim() != 2:
        shape = None if tensor is None else tuple(tensor.shape)
        raise LayerError(f"the model's output is not logits [B, classes] (got {shape})",
                         hint="ablation sweeps need an image classifier")
    return tensor


class _Graft:
    """Runs the model on a dummy input while a hook swaps the layer's output for given values."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model, self.layer = model, layer
        self.replacement: torch.Tensor | None = None

    def _swap(self, output: object, name: str) -> object:
        if isinstance(output, torch.Tensor):
            return self.replacement
        return type(output)([self.replacement, *output[1:]])

    def __call__(self, dummy: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        self.replacement = acts
        try:
            with LayerTrace(self.model, [self.layer], edit=self._swap, clone=False):
                return _logits(self.model(dummy))
        finally:
            self.replacement = None


class LayerEvaluator:
    """Evaluates a classifier over fixed labelled images with unit masks applied at one layer.

    ``batches()`` yields (images in [0, 1], class labels); images are normalised with
    ``mean``/``std`` here. The first pass (in the constructor) counts the images, computes
    the layer's output and keeps it when it fits ``cache_memory``. ``evaluate(masks)`` returns
    the ``Evaluation`` of K unit masks: confusion matrices and logit margins per class.
    """

    def __init__(self, model: nn.Module, layer: str, batches: Batches, classes: ClassMap,
                 mean: Sequence[float], std: Sequence[float], *, device: torch.device | str = "cpu",
                 strategy: str = "auto", mode: str = "zero", value: float = 0.0,
                 cache_memory: int = 2 << 30, chunk_memory: int = 256 << 20,
                 batch_size: int = 64, progress: bool = False) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if any(m.training for m in model.modules()):
            raise ConfigError("the model is in training mode; call model.eval() first",
                              hint="batch norm in training mode mixes the ablated copies")
        self.model, self.classes = model, classes
        (self.layer,) = resolve_layers(model, [layer])
        self.device = torch.device(device)
        self.mode, self.value = mode, value
        self.cache_memory, self.chunk_memory = int(cache_memory), int(chunk_memory)
        self.batch_size, self.progress = max(1, int(batch_size)), progress
        self._batches = batches
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._to_class = classes.output_to_class(self.device)
        self._split: tuple[nn.Module, nn.Module] | None = None
        self._graft = _Graft(model, self.layer)
        self.strategy = strategy
        if strategy in ("auto", "split"):
            self._split = split_at(model, self.layer)
            if self._split is None and strategy == "split":
                raise ConfigError(f"the model cannot be split at {self.layer!r} "
                                  "(only chains of modules can)", hint="use strategy auto")
            if self._split is not None:
                self.strategy = "split"
        self.counts = np.zeros(len(classes), dtype=np.int64)
        self.num_images = 0
        self.units = 0
        self.act_shape: tuple[int, ...] = ()
        self._true_output = torch.as_tensor(classes.outputs, dtype=torch.long, device=self.device)
        self.baseline = Evaluation(np.zeros((1, len(classes), len(classes) + 1), np.int64),
                                   np.zeros((1, len(classes))), self.counts)
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._prepare()

    # -- the passes ------------------------------------------------------------------
    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.to(self.device, torch.float32) - self._mean) / self._std

    @torch.inference_mode()
    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output (a tensor) for normalised images."""
        if self._split is not None:
            output: object = self._split[0](x)
        else:
            with LayerTrace(self.model, [self.layer], stop=True, clone=False) as trace:
                trace.run(x)
                output = trace.raw(self.layer)
        tensor = first_tensor(output)
        if tensor is None:
            raise LayerError(f"layer {self.layer!r} returns no tensor; it cannot be ablated")
        channel_dim(tensor)
        return tensor

    @torch.inference_mode()
    def _tail(self, acts: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Logits [K * B, outputs] with each mask applied to ``acts`` (split or graft)."""
        edited = apply_unit_masks(acts, masks, self.mode, self.value)
        if self._split is not None:
            return _logits(self._split[1](edited))
        return self._graft(self._dummy, edited)

    @torch.inference_mode()
    def _full(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Logits [K * B, outputs]: a full forward pass of K masked copies (the naive way)."""
        with BatchedAblation(self.model, self.layer, masks, self.mode, self.value):
            return _logits(self.model(repeat_batch(x, masks.shape[0])))

    @torch.inference_mode()
    def _choose_graft(self, x: torch.Tensor, acts: torch.Tensor) -> None:
        """``graft`` if it reproduces a plain forward pass on this batch, else ``full``."""
        self._dummy = torch.zeros((2, *x.shape[1:]), dtype=x.dtype, device=x.device)
        x, acts = x[:4], acts[:4]  # a few images suffice; keeps the check cheap
        expected = _logits(self.model(x))
        try:
            got = self._graft(self._dummy, acts.clone())  # the rest may work in place
            scale = float(expected.abs().max()) + 1e-6
            ok = got.shape == expected.shape and bool(
                torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * scale))
        except RuntimeError:  # a path after the layer reads the (dummy) input: shapes clash
            ok = False
        if self.strategy == "graft" and not ok:
            raise ConfigError(f"the rest of the model after {self.layer!r} does not depend on "
                              "the layer's output alone", hint="use strategy auto or full")
        self.strategy = "graft" if ok else "full"

    def _prepare(self) -> None:
        cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        cached_bytes = 0
        keep = True
        for images, labels in self._batches():
            x = self._normalise(images)
            labels = labels.to(self.device, torch.long)
            if not self.units:
                acts = self._head(x)
                self.units = int(acts.shape[channel_dim(acts)])
                self.act_shape = tuple(int(s) for s in acts.shape[1:])
                if self.strategy in ("auto", "graft"):
                    self._choose_graft(x, acts)
            elif self.strategy != "full":
                acts = self._head(x)
            none = torch.zeros((1, self.units), dtype=torch.bool, device=self.device)
            logits = self._full(x, none) if self.strategy == "full" else self._tail(acts, none)
            self._accumulate(self.baseline, 0, labels, logits, 1)
            self.counts += np.bincount(labels.cpu().numpy(), minlength=len(self.classes))
            self.num_images += int(labels.shape[0])
            item = x if self.strategy == "full" else acts
            cached_bytes += item.numel() * item.element_size()
            keep = keep and cached_bytes <= self.cache_memory
            cache = cache if keep else []
            if keep:
                cache.append((item, labels))
        if not self.num_images:
            raise DatasetError("no labelled image to evaluate the classifier on")
        self._cache = cache if keep else None

    def _items(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(head output or, for ``full``, normalised images; labels) per batch."""
        if self._cache is not None:
            yield from self._cache
            return
        for images, labels in self._batches():
            x = self._normalise(images)
            yield (x if self.strategy == "full" else self._head(x)), labels.to(self.device)

    def _accumulate(self, into: Evaluation, start: int, labels: torch.Tensor,
                    logits: torch.Tensor, k: int) -> None:
        """Add the confusion counts and margins of K ablations' logits [K * B, outputs]."""
        n = len(self.classes)
        predictions = self._to_class[logits.argmax(dim=1)].reshape(k, -1)
        into.confusion[start:start + k] += confusion_matrices(
            labels, predictions, n, n + 1).cpu().numpy()
        z = logits.float().reshape(k, labels.shape[0], -1)
        index = self._true_output[labels].reshape(1, -1, 1).expand(k, -1, 1)
        true = z.gather(2, index).squeeze(2)
        best_other = z.scatter(2, index, float("-inf")).amax(dim=2)
        margin = torch.zeros((k, n), dtype=torch.float64, device=z.device)
        margin.index_add_(1, labels, (true - best_other).double())
        into.margin_sum[start:start + k] += margin.cpu().numpy()

    def chunk_size(self, batch: int) -> int:
        """How many ablations run together on a batch of ``batch`` images."""
        if self.strategy == "full":
            return max(1, self.batch_size // max(1, batch))
        per_image = 4 * math.prod(self.act_shape)
        return max(1, self.chunk_memory // max(1, batch * per_image))

    def evaluate(self, masks: torch.Tensor | np.ndarray, desc: str = "ablate") -> Evaluation:
        """Confusion matrices and margins of K unit masks [K, units] (True: removed)."""
        masks = torch.as_tensor(np.asarray(masks) if isinstance(masks, np.ndarray) else masks)
        masks = masks.to(self.device, torch.bool)
        if masks.dim() != 2 or masks.shape[1] != self.units:
            raise ConfigError(f"unit masks must be [K, {self.units}], got {list(masks.shape)}")
        n, k = len(self.classes), masks.shape[0]
        result = Evaluation(np.zeros((k, n, n + 1), np.int64), np.zeros((k, n)), self.counts)
        if not k:
            return result
        from tqdm.auto import tqdm

        with tqdm(total=self.num_images * k, desc=desc, unit="eval", unit_scale=True,
                  disable=not self.progress, leave=False) as bar:
            for item, labels in self._items():
                batch = int(labels.shape[0])
                step = self.chunk_size(batch)
                for start in range(0, k, step):
                    chunk = masks[start:start + step]
                    logits = self._full(item, chunk) if self.strategy == "full" \
                        else self._tail(item, chunk)
                    self._accumulate(result, start, labels, logits, chunk.shape[0])
                    bar.update(batch * chunk.shape[0])
        return result


# --------------------------------------------------------------------------- sweeps


@dataclass
class SweepResult:
    """Metrics of a layer's single-unit sweep on one split."""

    baseline: np.ndarray  # [n] balanced accuracy with every unit
    baseline_accuracy: float  # overall accuracy with every unit
    baseline_margin: np.ndarray  # [n] mean logit margin of each class's images
    balanced_accuracy: np.ndarray  # [units, n] with that unit removed
    accuracy: np.ndarray  # [units] overall accuracy with that unit removed
    margin: np.ndarray  # [units, n] mean logit margin with that unit removed
    counts: np.ndarray  # [n] images per class
    images: int

    @property
    def importance(self) -> np.ndarray:
        """[units, n]: drop of each class's balanced accuracy when the unit is removed."""
        return self.baseline[None, :] - self.balanced_accuracy


def single_unit_sweep(evaluator: LayerEvaluator) -> SweepResult:
    """Remove every unit of the layer alone; all ablations share each batch's cached activations."""
    units = evaluator.units
    result = evaluator.evaluate(torch.eye(units, dtype=torch.bool),
                                desc=f"single units ({units})")
    base = evaluator.baseline
    return SweepResult(
        baseline=base.balanced_accuracy[0], baseline_accuracy=float(base.accuracy[0]),
        baseline_margin=base.margin[0], balanced_accuracy=result.balanced_accuracy,
        accuracy=result.accuracy, margin=result.margin, counts=evaluator.counts.copy(),
        images=evaluator.num_images)


def rank_units(baseline: np.ndarray, single: np.ndarray, baseline_margin: np.ndarray | None = None,
               single_margin: np.ndarray | None = None) -> np.ndarray:
    """int64 [n, units]: per class, units by the balanced-accuracy drop their removal causes.

    Largest drop first. Equal drops (common when a class is recognised perfectly, so that no
    single unit flips a prediction) are ordered by the drop of the class's mean logit margin
    when margins are given, then by unit index; undefined drops go last.
    """
    drop = np.asarray(baseline, dtype=np.float64)[None, :] - np.asarray(single, dtype=np.float64)
    drop = np.where(np.isnan(drop), -np.inf, np.round(drop, 12))  # 12 digits: float noise
    if baseline_margin is None or single_margin is None:
        second = np.zeros_like(drop)
    else:
        second = np.asarray(baseline_margin, dtype=np.float64)[None, :] - \
            np.asarray(single_margin, dtype=np.float64)
        second = np.where(np.isnan(second), -np.inf, second)
    units = np.arange(drop.shape[0])
    return np.stack([np.lexsort((units, -second[:, c], -drop[:, c]))
                     for c in range(drop.shape[1])]).astype(np.int64)


def important_unit_counts(order: np.ndarray, k: int = 4) -> np.ndarray:
    """int64 [units]: for how many classes each unit is among the ``k`` most important."""
    units = order.shape[1]
    top = order[:, :min(k, units)].reshape(-1)
    return np.bincount(top, minlength=units).astype(np.int64)


def curve_points(units: int, extra: Iterable[int] = ()) -> list[int]:
    """Numbers of units to remove: 0, 1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500, ... and all."""
    points = {0, units, *[p for p in extra if 0 <= p <= units]}
    scale = 1
    while scale < units:
        points.update(p for p in (scale, 2 * scale, 5 * scale) if p < units)
        scale *= 10
    points.update(p for p in (3, 4) if p < units)
    return sorted(points)


@dataclass
class CurveResult:
    """Class accuracy as units are removed, on the evaluation split."""

    points: list[int]  # numbers of units removed ("top") or kept ("rest" keeps the top N)
    top: np.ndarray  # [n, P] balanced accuracy of class c with its P[i] most important removed
    top_accuracy: np.ndarray  # [n, P] overall accuracy for the same ablations
    top_margin: np.ndarray  # [n, P] mean logit margin of class c's images
    rest: np.ndarray  # [n, P] balanced accuracy with every unit removed except c's top P[i]
    rest_accuracy: np.ndarray  # [n, P]
    rest_margin: np.ndarray  # [n, P]


def _unique_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows and the index of each row among them (evaluate each ablation once)."""
    packed = np.packbits(masks, axis=1)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    return masks[first], inverse.reshape(-1)


def removal_curves(evaluator: LayerEvaluator, order: np.ndarray,
                   points: Sequence[int]) -> CurveResult:
    """Per class, remove its N most important units ("top") or all but those N ("rest")."""
    n, units = order.shape
    points = [int(p) for p in points]
    ranks = np.empty_like(order)
    ranks[np.arange(n)[:, None], order] = np.arange(units)[None, :]  # rank of each unit per class
    p = np.asarray(points)[None, :, None]
    top = ranks[:, None, :] < p  # [n, P, units]: among the P most important
    masks = np.concatenate([top, ~top]).reshape(-1, units)
    distinct, inverse = _unique_masks(masks)
    result = evaluator.evaluate(distinct, desc=f"curves ({len(distinct)} ablations)")[inverse]
    own = np.arange(n)
    bacc = result.balanced_accuracy.reshape(2, n, len(points), n)[:, own, :, own]  # [n, 2, P]
    margin = result.margin.reshape(2, n, len(points), n)[:, own, :, own]
    acc = result.accuracy.reshape(2, n, len(points))
    return CurveResult(points=points, top=bacc[:, 0], top_accuracy=acc[0],
                       top_margin=margin[:, 0], rest=bacc[:, 1], rest_accuracy=acc[1],
                       rest_margin=margin[:, 1])


def random_unit_sets(units: int, size: int, draws: int, seed: int) -> np.ndarray:
    """bool [draws, units]: ``draws`` random sets of ``size`` units, seeded by (seed, size)."""
    rng = np.random.default_rng([int(seed), int(size)])
    masks = np.zeros((draws, units), dtype=bool)
    for d in range(draws):
        masks[d, rng.choice(units, size=min(size, units), replace=False)] = True
    return masks


@dataclass
class RandomCurves:
    """Removing N random units (the mean over seeded draws), on the evaluation split."""

    points: list[int]
    balanced_accuracy: np.ndarray  # [P, n] mean over draws
    balanced_accuracy_std: np.ndarray  # [P, n]
    accuracy: np.ndarray  # [P]
    margin: np.ndarray  # [P, n]
    draws: int


def random_curves(evaluator: LayerEvaluator, points: Sequence[int], draws: int = 10,
                  seed: int = 0) -> RandomCurves:
    """Remove N random units, ``draws`` seeded draws per N (the same sets for every class)."""
    units = evaluator.units
    points = [int(p) for p in points]
    masks = np.concatenate([random_unit_sets(units, p, draws, seed) for p in points])
    result = evaluator.evaluate(masks, desc=f"random units ({len(masks)} ablations)")
    bacc = result.balanced_accuracy.reshape(len(points), draws, -1)
    return RandomCurves(points=points, balanced_accuracy=bacc.mean(axis=1),
                        balanced_accuracy_std=bacc.std(axis=1),
                        accuracy=result.accuracy.reshape(len(points), draws).mean(axis=1),
                        margin=result.margin.reshape(len(points), draws, -1).mean(axis=1),
                        draws=draws)


def science_check(names: Sequence[str], baseline: np.ndarray, top: np.ndarray,
                  random: np.ndarray, k: int = 5, factor: float = 3.0, required: float = 0.8,
                  measure: str = "balanced_accuracy") -> dict:
    """Does removing each class's top-k units hurt it ``factor`` x more than k random units?

    ``baseline``, ``top`` (top-k removed) and ``random`` (mean over draws of k random units
    removed) are per-class values [n] of ``measure`` on the evaluation split. A class passes
    when its drop is positive and at least ``factor`` times the random drop (a ratio of None:
    random removal did not lower it); the check passes when at least ``required`` of the
    classes with defined values do.
    """
    rows = []
    for i, name in enumerate(names):
        drop_top = float(baseline[i] - top[i])
        drop_random = float(baseline[i] - random[i])
        defined = math.isfinite(drop_top) and math.isfinite(drop_random)
        ok = defined and drop_top > 0 and drop_top >= factor * drop_random
        ratio = drop_top / drop_random if defined and drop_random > 0 else None
        rows.append({"class": str(name), "baseline": _finite(baseline[i]),
                     f"{measure}_top{k}": _finite(top[i]),
                     f"{measure}_random{k}": _finite(random[i]),
                     f"drop_top{k}": _finite(drop_top), f"drop_random{k}": _finite(drop_random),
                     "ratio": ratio, "pass": bool(ok) if defined else None})
    judged = [r for r in rows if r["pass"] is not None]
    passed = sum(bool(r["pass"]) for r in judged)
    fraction = passed / len(judged) if judged else 0.0
    return {"measure": measure, "k": k, "factor": factor, "required_fraction": required,
            "classes": len(judged), "passed_classes": passed, "fraction": fraction,
            "pass": bool(judged) and fraction >= required, "per_class": rows}


def _finite(value: object) -> float | None:
    value = float(value)  # type: ignore[arg-type]
    return value if math.isfinite(value) else None

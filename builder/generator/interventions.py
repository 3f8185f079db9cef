"""Ablation and insertion in a generator layer, batched: the layer's output is computed once per
batch of samples, and only the rest of the generator runs on many edited copies of it.

- ``LayerSplit`` runs a generator up to a layer (``head``) and from the layer's output onwards
  (``tail``): ``split`` cuts chains of modules (``nn.Sequential`` through ``split_at``, the demo
  generator's ``layer1 .. output`` chain); ``graft`` runs the whole generator on the same
  latents while a hook puts the edited output in place of the layer's (always valid, e.g. for
  StyleGAN2 whose later layers read the latent too; it pays for the layers before the edit).
- ``ablation_sweep``: for each concept and each count N, the concept's N best units are zeroed
  (``apply_unit_masks``, all ablations of a batch in one operation) and the concept's pixels
  are counted in the segmentation of every edited image.
- ``insertion_sweep``: the concept's units are set to high values in one window of the feature
  map at a time, at every window of a grid, and the concept's new pixels are measured, grouped
  by what the segmentation had at that window before the edit (the context).
- ``ratio_interval``: the paired ratio estimate of the fraction remaining, with its
  confidence interval (delta method).

Each edited image is segmented exactly once; see docs/generator.md for the definitions.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, LayerError
from ..intervene.ablation import apply_unit_masks, repeat_batch, unit_mask
from ..models import LayerTrace, resolve_layers, split_at
from ..models.layers import first_tensor
from .probe import SampleProbe, concept_counts
from .sampler import Generator
from .segment import Labeller

__all__ = ["AblationResult", "InsertionResult", "LayerSplit", "STRATEGIES", "ablation_sweep",
           "concept_masks", "grid_windows", "insertion_sweep", "ratio_interval",
           "unit_percentiles", "window_contexts"]

STRATEGIES = ("auto", "split", "graft")
Progress = Callable[[int], None]


# --------------------------------------------------------------------------- head and tail


def _chain_tail(module: nn.Module, layer: str) -> nn.Module | None:
    """The modules after ``layer`` as one module, when ``module`` is a known chain."""
    from ..models.demo_nets import ToyGenerator

    if isinstance(module, ToyGenerator) and type(module).forward is ToyGenerator.forward:
        names = list(module.layer_names) + ["output"]
        if layer in names:
            return nn.Sequential(*[getattr(module, n) for n in names[names.index(layer) + 1:]])
        return None
    halves = split_at(module, layer)
    return None if halves is None else halves[1]


class LayerSplit:
    """Runs a generator to ``layer`` (``head``) and from an edited output onwards (``tail``)."""

    def __init__(self, generator: Generator, layer: str, strategy: str = "auto") -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, "
                              f"got {strategy!r}")
        self.generator, self.module = generator, generator.module
        self.layer = resolve_layers(self.module, [layer])[0]
        tail = _chain_tail(self.module, self.layer) if strategy != "graft" else None
        if strategy == "split" and tail is None:
            raise ConfigError(f"layer {layer!r} of {generator.model.spec} cannot be split off",
                              hint="use --strategy graft or auto")
        self._tail_module = tail
        self.strategy = "split" if tail is not None else "graft"
        self._replacement: torch.Tensor | None = None
        if self.strategy == "split" and strategy == "auto" and not self._split_is_exact():
            self._tail_module, self.strategy = None, "graft"

    @torch.no_grad()
    def _split_is_exact(self) -> bool:
        z = self.generator.latents([0, 1])
        try:
            split = self.tail(self.head(z), z)
        except Exception:  # a chain that does not compose: fall back to grafting
            return False
        whole = self.module(z)
        whole = whole[0] if isinstance(whole, (tuple, list)) else whole
        return split.shape == whole.shape and torch.allclose(split, whole, atol=1e-4, rtol=1e-3)

    @torch.no_grad()
    def head(self, z: torch.Tensor) -> torch.Tensor:
        """The layer's output for latents ``z`` (the first tensor of a tuple output)."""
        with LayerTrace(self.module, [self.layer], stop=True) as trace:
            trace.run(z)
            output = first_tensor(trace.raw(self.layer))
        if output is None:
            raise LayerError(f"layer {self.layer!r} returns no tensor")
        return output

    def _swap(self, output: object, name: str) -> object:
        if isinstance(output, torch.Tensor):
            return self._replacement
        return type(output)([self._replacement, *output[1:]])  # type: ignore[call-arg]

    @torch.no_grad()
    def tail(self, acts: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The generator's output images when the layer outputs ``acts`` for latents ``z``."""
        if self._tail_module is not None:
            out = self._tail_module(acts)
        else:
            self._replacement = acts
            try:
                with LayerTrace(self.module, [self.layer], edit=self._swap, clone=False):
                    out = self.module(z)
            finally:
                self._replacement = None
        return out[0] if isinstance(out, (tuple, list)) else out


# --------------------------------------------------------------------------- statistics


def ratio_interval(after: np.ndarray, before: np.ndarray, confidence: float = 0.99
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired ratio ``sum(after) / sum(before)`` over samples (last axis) and its interval.

    The delta method on the per-sample residuals ``after_i - R * before_i`` (paired: both
    counts come from the same sample): ``se = sd(residuals) / (sqrt(n) * mean(before))``, and
    the interval is ``R -/+ z * se`` with ``z`` the normal quantile of ``confidence``. NaN
    where the concept has no pixels before.
    """
    after = np.asarray(after, dtype=np.float64)
    before = np.asarray(before, dtype=np.float64)
    n = before.shape[-1]
    total = before.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = after.sum(-1) / total
        residual = after - ratio[..., None] * before
        sd = np.sqrt((residual ** 2).sum(-1) / max(n - 1, 1))
        se = sd / (math.sqrt(n) * (total / n))
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    return ratio, ratio - z * se, ratio + z * se


def mean_interval(values: np.ndarray, confidence: float = 0.99
                  ) -> tuple[float, float, float]:
    """Mean of ``values`` and its normal-approximation interval (``confidence``)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    mean = float(values.mean()) if n else float("nan")
    sd = float(values.std(ddof=1)) if n > 1 else 0.0
    half = statistics.NormalDist().inv_cdf(0.5 + confidence / 2) * sd / math.sqrt(max(n, 1))
    return mean, mean - half, mean + half


def concept_masks(labels: torch.Tensor, concept: int) -> torch.Tensor:
    """bool [N, h, w]: pixels carrying ``concept`` in any layer of ``labels`` [N, L, h, w]."""
    return (labels == concept).any(1)


# --------------------------------------------------------------------------- ablation


@dataclass
class AblationResult:
    """Concept pixels per sample before and after removing each concept's top-N units."""

    concepts: list[int]  # concept ids, in column order
    counts: list[int]  # the values of N
    samples: np.ndarray  # int64 [S] sample indices
    before: np.ndarray  # int64 [S, K]: concept k's pixels in sample s, nothing removed
    after: np.ndarray  # int64 [K, len(counts), S]: with concept k's top-N units removed
    images: int = 0  # edited images generated and segmented
    seconds: float = 0.0

    def fractions(self, confidence: float = 0.99
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """[K, len(counts)] fraction remaining with its paired interval (``ratio_interval``)."""
        return ratio_interval(self.after, self.before.T[:, None, :], confidence)


def _batches(samples: np.ndarray, size: int) -> list[np.ndarray]:
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def _segment(split: LayerSplit, labeller: Labeller, acts: torch.Tensor, z: torch.Tensor
             ) -> torch.Tensor:
    """Label layers of the images the generator makes from edited ``acts`` [k * B, ...]."""
    copies = acts.shape[0] // z.shape[0]
    images = split.generator.to_uint8(split.tail(acts, repeat_batch(z, copies)))
    return labeller(images.cpu())


def ablation_sweep(split: LayerSplit, probe: SampleProbe, labeller: Labeller,
                   ranked: dict[int, np.ndarray], counts: Sequence[int], samples: np.ndarray,
                   batch_size: int = 32, images_per_pass: int = 128,
                   progress: Progress | None = None) -> AblationResult:
    """Remove each concept's top-N units (``ranked[concept]``, best first) for every N in
    ``counts``; count the concept's pixels in every edited image of ``samples``."""
    started = time.perf_counter()
    concepts = list(ranked)
    counts = [int(n) for n in counts]
    samples = np.asarray(samples, dtype=np.int64)
    num_units = None
    before = probe.counts[samples][:, concepts]
    after = np.zeros((len(concepts), len(counts), len(samples)), dtype=np.int64)
    jobs = [(k, j) for k in range(len(concepts)) for j, n in enumerate(counts) if n > 0]
    for j, n in enumerate(counts):
        if n == 0:  # nothing removed: the cached segmentation is the answer
            after[:, j] = before.T
    flat = after.reshape(-1, len(samples))  # a view: row k * len(counts) + j
    images = 0
    row = 0
    device = split.generator.device
    for chunk in _batches(samples, batch_size):
        if not jobs:
            break
        z = probe.latents(chunk).to(device)
        acts = split.head(z)
        if num_units is None:
            num_units = acts.shape[1]
            masks = torch.stack([unit_mask(ranked[concepts[k]][:counts[j]], num_units, device)
                                 for k, j in jobs]) if jobs else None
            column = torch.tensor([k for k, _ in jobs], dtype=torch.long)
            job_rows = np.array([k * len(counts) + j for k, j in jobs], dtype=np.int64)
        per_pass = max(1, images_per_pass // len(chunk))
        for s in range(0, len(jobs), per_pass):
            picked = slice(s, s + per_pass)
            labels = _segment(split, labeller, apply_unit_masks(acts, masks[picked]), z)
            ids = torch.tensor(concepts, dtype=torch.long)[column[picked]]  # [k]
            found = concept_counts(labels, probe.num_columns).view(-1, len(chunk),
                                                                   probe.num_columns)
            mine = found.gather(2, ids.view(-1, 1, 1).expand(-1, len(chunk), 1))[..., 0]
            flat[job_rows[picked], row:row + len(chunk)] = mine.numpy()
            images += labels.shape[0]
            if progress is not None:
                progress(labels.shape[0])
        row += len(chunk)
    return AblationResult(concepts, counts, samples, before.astype(np.int64), after, images,
                          time.perf_counter() - started)


# --------------------------------------------------------------------------- insertion


def grid_windows(height: int, width: int, patch: int, stride: int
                 ) -> list[tuple[int, int, int, int]]:
    """Windows ``(y0, y1, x0, x1)`` of ``patch`` x ``patch`` cells every ``stride`` cells."""
    patch_h, patch_w = min(patch, height), min(patch, width)
    return [(y, y + patch_h, x, x + patch_w)
            for y in range(0, height - patch_h + 1, stride)
            for x in range(0, width - patch_w + 1, stride)]


def _pixel_windows(windows: Sequence[tuple[int, int, int, int]], grid: tuple[int, int],
                   size: int) -> np.ndarray:
    """Windows in cells -> int64 [n, 4] pixel bounds at ``size`` (each at least one pixel)."""
    cells = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    scale = np.array([size / grid[0]] * 2 + [size / grid[1]] * 2)
    bounds = np.floor(cells * scale + 1e-9).astype(np.int64)
    bounds[:, 1] = np.maximum(bounds[:, 1], bounds[:, 0] + 1)
    bounds[:, 3] = np.maximum(bounds[:, 3], bounds[:, 2] + 1)
    return np.minimum(bounds, size)


def window_contexts(context: torch.Tensor, bounds: np.ndarray) -> torch.Tensor:
    """int64 [N, W]: the most frequent label of each window (ties: the lower id; 0 = none).

    ``context`` is one label map per image [N, h, w]; windows are pixel bounds [W, 4]. The
    labels are counted per window with integral images of the one-hot maps.
    """
    n = context.shape[0]
    ids, inverse = torch.unique(context, return_inverse=True)  # ids sorted: ties -> lower id
    onehot = torch.zeros(n, len(ids), *context.shape[1:], dtype=torch.int64)
    onehot.scatter_(1, inverse.unsqueeze(1), 1)
    integral = torch.nn.functional.pad(onehot.cumsum(2).cumsum(3), (1, 0, 1, 0))
    y0, y1, x0, x1 = (torch.from_numpy(bounds[:, i]) for i in range(4))
    sums = (integral[:, :, y1, x1] - integral[:, :, y0, x1] - integral[:, :, y1, x0]
            + integral[:, :, y0, x0])  # [N, ids, W]
    return ids[sums.argmax(1)]


@torch.no_grad()
def unit_percentiles(split: LayerSplit, probe: SampleProbe, units: np.ndarray,
                     samples: np.ndarray, percentile: float, batch_size: int = 32
                     ) -> np.ndarray:
    """float32 [len(units)]: each unit's ``percentile`` over its activations at every location
    of the layer on ``samples`` (linear interpolation, as ``numpy.percentile``)."""
    units_t = torch.as_tensor(np.asarray(units, dtype=np.int64))
    values = []
    device = split.generator.device
    for chunk in _batches(np.asarray(samples, dtype=np.int64), batch_size):
        acts = split.head(probe.latents(chunk).to(device))
        values.append(acts.index_select(1, units_t.to(acts.device)).transpose(0, 1)
                      .reshape(len(units_t), -1).float().cpu())
    flat = torch.cat(values, 1)
    position = percentile / 100.0 * (flat.shape[1] - 1)
    low, high = math.floor(position), math.ceil(position)
    lower = flat.kthvalue(low + 1, dim=1).values
    upper = flat.kthvalue(high + 1, dim=1).values
    return (lower + (upper - lower) * (position - low)).numpy().astype(np.float32)


@dataclass
class InsertionResult:
    """Per sample and window: the concept's new pixels, and the context before the edit."""

    concept: int
    units: np.ndarray  # the units set
    values: np.ndarray  # the values they were set to
    windows: list[tuple[int, int, int, int]]  # cells (y0, y1, x0, x1) of the layer's grid
    pixel_windows: np.ndarray  # int64 [W, 4]: the same at the mask size
    samples: np.ndarray  # int64 [S]
    added_fraction: np.ndarray  # float64 [S, W]: of the window's pixels, those that became it
    added_pixels: np.ndarray  # int64 [S, W]: pixels anywhere in the image that became it
    context: np.ndarray  # int64 [S, W]: the window's majority label (context category) before
    images: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def insertion_sweep(split: LayerSplit, probe: SampleProbe, labeller: Labeller, concept: int,
                    units: np.ndarray, values: np.ndarray, samples: np.ndarray, patch: int,
                    stride: int, context_layer: int = 0, batch_size: int = 32,
                    images_per_pass: int = 128, progress: Progress | None = None
                    ) -> InsertionResult:
    """Set ``units`` to ``values`` in one window at a time (every window of the grid) for
    every sample; measure the concept's new pixels and the window's context before the edit."""
    started = time.perf_counter()
    samples = np.asarray(samples, dtype=np.int64)
    device = split.generator.device
    m = probe.mask_size
    windows = None
    fraction = added = context = None
    images, row = 0, 0
    for chunk in _batches(samples, batch_size):
        z = probe.latents(chunk).to(device)
        acts = split.head(z)
        if acts.dim() != 4:
            raise LayerError(f"insertion needs feature maps [B, C, H, W]; layer {split.layer!r} "
                             f"gives {list(acts.shape)}")
        if windows is None:
            h, w = acts.shape[-2:]
            windows = grid_windows(h, w, patch, stride)
            bounds = _pixel_windows(windows, (h, w), m)
            spatial = torch.zeros(len(windows), h, w, dtype=torch.bool, device=device)
            area = torch.zeros(len(windows), m, m, dtype=torch.bool)
            for i, ((y0, y1, x0, x1), (p0, p1, q0, q1)) in enumerate(zip(windows, bounds)):
                spatial[i, y0:y1, x0:x1] = True
                area[i, p0:p1, q0:q1] = True
            area_px = area.sum((1, 2))
            full = torch.zeros(acts.shape[1], dtype=acts.dtype, device=device)
            full[torch.as_tensor(units, device=device)] = torch.as_tensor(
                values, dtype=acts.dtype, device=device)
            chosen = unit_mask(units, acts.shape[1], device)
            fraction = np.zeros((len(samples), len(windows)))
            added = np.zeros((len(samples), len(windows)), dtype=np.int64)
            context = np.zeros((len(samples), len(windows)), dtype=np.int64)
        b = len(chunk)
        labels_before = probe.labels(chunk)
        had = concept_masks(labels_before, concept)  # [B, m, m]
        context[row:row + b] = window_contexts(labels_before[:, context_layer], bounds).numpy()
        inserted = apply_unit_masks(acts, chosen[None], "set", full)  # [B, ...] units set
        per_pass = max(1, images_per_pass // b)
        for s in range(0, len(windows), per_pass):
            where = spatial[s:s + per_pass]  # [k, h, w]
            k = where.shape[0]
            edited = torch.where(where[:, None, None], inserted[None], acts[None])
            labels = _segment(split, labeller, edited.reshape(k * b, *acts.shape[1:]), z)
            new = concept_masks(labels, concept).view(k, b, m, m) & ~had[None]
            inside = (new & area[s:s + k, None]).sum((2, 3))  # [k, B]
            fraction[row:row + b, s:s + k] = (inside / area_px[s:s + k, None]).T.numpy()
            added[row:row + b, s:s + k] = new.sum((2, 3)).T.numpy()
            images += k * b
            if progress is not None:
                progress(k * b)
        row += b
    return InsertionResult(concept, np.asarray(units), np.asarray(values), windows or [],
                           bounds if windows else np.zeros((0, 4), np.int64), samples,
                           fraction, added, context, images, time.perf_counter() - started)

"""``run_gan``: dissect generator layers over segmented samples, then ablate and insert concepts.

Writes into a run directory (docs/results-format.md):

- the dissection of the layers (``concepts.csv``, ``layers/<layer>/``, ``manifest.json``),
  with the generated samples as the probe set;
- ``generator/<layer>/``: ``ablation.csv``, ``insertion.csv``, ``concept_units.csv``,
  ``science.json``, ``ablation_samples.npz``, ``insertion_samples.npz``, ``gallery/`` and
  ``summary.json`` (written last; it carries the fingerprint that lets a rerun skip the layer);
- ``generator/manifest.json``: the generator, latents, segmenter, samples and options.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import io as atomic
from ..dissect.manifest import (machine_info, model_record, software_versions, utc_now,
                                warn_random_weights)
from ..paths import output_folder, portable_path, portable_text, run_relative
from ..errors import ConfigError
from ..lock import hold_folder
from ..fingerprint import fingerprint
from ..intervene.ablation import apply_unit_masks, unit_mask
from .gallery import outline, slug, write_strip
from .interventions import (AblationResult, InsertionResult, LayerSplit, STRATEGIES,
                            _pixel_windows, ablation_sweep, grid_windows, insertion_sweep,
                            mean_interval, unit_percentiles)
from .probe import SampleProbe
from .sampler import DISTRIBUTIONS, Generator, load_generator
from .segment import Labeller, resolve_segmenter

__all__ = ["GAN_ENGINE_VERSION", "GAN_FORMAT", "GanOptions", "result_options", "run_gan"]

log = logging.getLogger(__name__)

#: Name and version of the ``generator/`` section's format.
GAN_FORMAT = "unitdissect-generator"
GAN_FORMAT_VERSION = 1
#: Bumped whenever the results of the same inputs change (invalidates finished layers).
GAN_ENGINE_VERSION = 2


@dataclass
class GanOptions:
    """Every choice of ``unitdissect gan`` (recorded in ``generator/manifest.json``)."""

    seed: int = 0  # latent seed: sample i is the i-th latent of this seed; also the random init
    batch_size: int = 32  # samples per batch
    device: str = "auto"  # auto | cpu | cuda[:N] | mps
    concepts: tuple[str, ...] | None = None  # None: the num_concepts most frequent objects
    num_concepts: int = 5
    max_units: int = 30  # N runs over 0..max_units (or ablation_counts)
    ablation_counts: tuple[int, ...] | None = None  # values of N; None: 0, 1, ..., max_units
    ablation_samples: int | None = None  # the first this many samples; None: all
    insertion: bool = True
    insertion_units: int = 20  # the concept's top units forced on
    insertion_percentile: float = 99.5  # ... to this percentile of their activations
    insertion_samples: int = 64  # the first this many samples
    insertion_patch: int = 1  # window side, in cells of the layer's feature map
    insertion_stride: int | None = None  # None: at most insertion_windows per side
    insertion_windows: int = 8  # the default stride places at most this many windows per side
    science_units: int = 20  # the science check removes this many units ...
    science_removed: float = 0.5  # ... and needs this fraction of the pixels removed
    confidence: float = 0.99  # of every interval
    gallery_size: int = 8  # images per gallery strip (0: no galleries)
    mask_size: int | None = None  # label resolution; None: the generator's image size
    quantile: float = 0.005  # dissection: T_k is the (1 - q) quantile
    iou_threshold: float = 0.04
    topk: int = 12
    images_per_pass: int = 128  # edited images per pass through the rest of the generator
    strategy: str = "auto"  # auto | split | graft: how the rest of the generator runs
    cache_dir: str | None = None  # sample cache; None: data/samples
    weights: str | None = None  # the generator's weights file
    latent_dim: int | None = None  # None: the model's declared latent size
    latent_distribution: str = "normal"  # normal | uniform | truncated
    truncation: float = 2.0  # bound of the truncated normal
    truncation_psi: float = 1.0  # StyleGAN's truncation trick in W space (1: off)
    truncation_mean: int = 4096  # latents averaged for w_avg when a checkpoint stores none
    output_range: tuple[float, float] | None = None  # None: [-1, 1]
    segmenter_weights: str | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []

        def integer(name: str, low: int, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"--{name.replace('_', '-')} must be an integer >= {low}, "
                                f"got {value!r}")

        for name, low in (("seed", 0), ("batch_size", 1), ("num_concepts", 1), ("max_units", 1),
                          ("insertion_units", 1), ("insertion_samples", 1),
                          ("insertion_patch", 1), ("insertion_windows", 1), ("science_units", 1),
                          ("gallery_size", 0),
                          ("topk", 1), ("images_per_pass", 1)):
            integer(name, low)
        for name in ("ablation_samples", "insertion_stride", "mask_size", "latent_dim"):
            integer(name, 1, allow_none=True)
        for name, low, high in (("insertion_percentile", 0.0, 100.0),
                                ("science_removed", 0.0, 1.0), ("confidence", 0.0, 1.0),
                                ("quantile", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not low <= value <= high or not math.isfinite(value):
                problems.append(f"--{name.replace('_', '-')} must be in [{low}, {high}], "
                                f"got {value!r}")
        if not 0 < self.confidence < 1:
            problems.append(f"--confidence must be strictly between 0 and 1, "
                            f"got {self.confidence!r}")
        if self.ablation_counts is not None:
            counts = tuple(self.ablation_counts)
            if not counts or any(isinstance(n, bool) or not isinstance(n, int) or n < 0
                                 for n in counts):
                problems.append(f"--counts must be non-negative integers, got {counts!r}")
            else:
                self.ablation_counts = tuple(sorted(set(counts)))
        if self.concepts is not None:
            self.concepts = tuple(str(c) for c in self.concepts)
            if not self.concepts:
                problems.append("--concepts names no concept")
        if self.strategy not in STRATEGIES:
            problems.append(f"--strategy must be one of {', '.join(STRATEGIES)}, "
                            f"got {self.strategy!r}")
        if self.latent_distribution not in DISTRIBUTIONS:
            problems.append(f"--latent-distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                            f"got {self.latent_distribution!r}")
        if problems:
            raise ConfigError("; ".join(problems))

    def counts(self) -> list[int]:
        """The values of N: ``ablation_counts`` (or 0..max_units), with 0 and science_units."""
        counts = set(self.ablation_counts if self.ablation_counts is not None
                     else range(self.max_units + 1))
        return sorted(counts | {0, self.science_units})


def _most_frequent(probe: SampleProbe, category: str | None = "object") -> list[Any]:
    """Concepts of ``category`` (all pixel categories when None) present in the samples,
    most frequent first (then most pixels, then lower id)."""
    totals = probe.counts.sum(0)
    found = [c for c in probe.concepts if c.frequency > 0
             and (category is None or c.category == category)]
    return sorted(found, key=lambda c: (-c.frequency, -int(totals[c.id]), c.id))


def _choose_concepts(probe: SampleProbe, options: GanOptions) -> tuple[list[Any], Any]:
    """The concepts to ablate and insert, and the most frequent object concept (science)."""
    ranked = _most_frequent(probe) or _most_frequent(probe, None)
    if not ranked:
        raise ConfigError("the segmenter found no concept in the generated samples",
                          hint="check the generator's output range and the segmenter")
    top = ranked[0]
    if options.concepts is None:
        return ranked[:options.num_concepts], top
    by_name = {c.name: c for c in probe.concepts}
    unknown = [n for n in options.concepts if n not in by_name]
    if unknown:
        raise ConfigError(f"unknown concept(s) {', '.join(map(repr, unknown))}",
                          hint="known: " + ", ".join(sorted(by_name)))
    chosen = []
    for name in options.concepts:
        concept = by_name[name]
        if concept.frequency == 0:
            log.warning("concept %r is in no generated sample; skipped", name)
        elif concept not in chosen:
            chosen.append(concept)
    if top not in chosen:
        chosen.insert(0, top)  # the science check always measures the most frequent object
    return chosen, top


def _rank_units(iou: np.ndarray, concept: int, count: int) -> np.ndarray:
    """The ``count`` units with the highest IoU for ``concept`` (ties: the lower unit)."""
    order = np.argsort(-iou[:, concept], kind="stable")
    return order[:min(count, iou.shape[0])].astype(np.int64)


def _num(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{float(value):.6g}"


def run_gan(model: str | Any, layers: Sequence[str] | str, segmenter: str | Any, samples: int,
            out: str | Path, options: GanOptions | None = None, progress: bool = True, *,
            command: Sequence[str] | None = None, replace: bool = False) -> Path:
    """Dissect ``layers`` of a generator over ``samples`` segmented samples, ablate and insert
    its concepts; write (or complete) the run directory ``out``; return ``out``. A run of
    another generator at ``out`` is refused (``replace``: removed whole first)."""
    from ..dissect.runner import DissectOptions, dissect, resolve_device
    from ..models import demo_registry  # noqa: F401 - registers demo:generator
    from ..models import resolve_layers

    options = options or GanOptions()
    started = time.perf_counter()
    device = resolve_device(options.device)
    generator = load_generator(
        model, options.weights, seed=options.seed, latent_seed=options.seed,
        latent_dim=options.latent_dim, distribution=options.latent_distribution,
        truncation=options.truncation, output_range=options.output_range, device=device,
        truncation_psi=options.truncation_psi, truncation_mean=options.truncation_mean)
    warn_random_weights(generator.model)
    layers = resolve_layers(generator.module, [layers] if isinstance(layers, str) else layers)
    seg = resolve_segmenter(segmenter, device=str(device)) if not isinstance(segmenter, str) \
        else _segmenter_from_spec(segmenter, options.segmenter_weights, device, options.seed)
    image_size = _image_size(generator, model)
    labeller = Labeller(seg, options.mask_size or image_size)
    out = output_folder(out)
    if options.cache_dir is not None:
        output_folder(options.cache_dir, "--cache-dir")
    with hold_folder(out, f"the run directory {out}"):  # one writer at a time
        probe = SampleProbe(generator, labeller, samples, options.cache_dir,
                            batch_size=options.batch_size, progress=progress)
        dissect(generator.model, layers, probe, out,
                DissectOptions(quantile=options.quantile, iou_threshold=options.iou_threshold,
                               batch_size=options.batch_size, device=options.device,
                               topk=options.topk, seed=options.seed),
                progress=progress, dataset_spec=f"samples:{probe.path}", command=command,
                replace=replace)
        run_manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        concepts, top = _choose_concepts(probe, options)
        results = {}
        for layer in layers:
            fp = fingerprint(GAN_ENGINE_VERSION, generator.fingerprint(), probe.fingerprint, layer,
                             run_manifest["fingerprints"][layer], result_options(options),
                             [c.id for c in concepts])
            folder = out / "generator" / layer
            if _layer_done(folder, fp):
                results[layer] = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
                continue
            results[layer] = _run_layer(generator, probe, labeller, layer, concepts, top, options,
                                        folder, out, fp, progress)
        atomic.write_json(out / "generator" / "manifest.json", {
            "format": GAN_FORMAT, "format_version": GAN_FORMAT_VERSION, "created": utc_now(),
            "command": [portable_text(w) for w in command] if command is not None else None,
            "versions": software_versions(),
            "model": model_record(generator.model, layers=list(layers)),
            "latent": generator.latent.describe(), "output_range": list(generator.output_range),
            "segmenter": {"name": seg.name, "fingerprint": seg.fingerprint()},
            "samples": {"count": samples, "path": run_relative(probe.path, out / "generator"),
                        "fingerprint": probe.fingerprint,
                        "image_size": probe.image_size, "mask_size": probe.mask_size,
                        "segmented_now": probe.segmented},
            "concepts": [c.name for c in concepts], "science_concept": top.name,
            "options": {**dataclasses.asdict(options), "device": device.type,
                        "cache_dir": (portable_path(options.cache_dir)
                                      if options.cache_dir else None),
                        "device_requested": options.device, "counts": options.counts(),
                        "engine_version": GAN_ENGINE_VERSION},
            "layers": {layer: {k: results[layer].get(k) for k in ("ablation", "insertion",
                                                                   "strategy", "seconds")}
                       for layer in layers},
            "seconds": round(time.perf_counter() - started, 3),
            "machine": machine_info(device),
        })
        return out


def _image_size(generator: Generator, model: str | Any) -> int:
    """The size of the generator's images, from one sample; a model that is not a generator
    (a classifier, say) fails here, in one line."""
    z = generator.latents([0])
    try:
        with torch.no_grad():
            return int(generator.generate(z).shape[-1])
    except ConfigError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as e:
        name = model if isinstance(model, str) else type(generator.module).__name__
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{name} is not a generator: it fails on latents of shape "
                          f"{list(z.shape)} ({first})",
                          hint="a generator spec names a model from latents to images; "
                               "--latent-dim sets the latent size") from None


def _segmenter_from_spec(spec: str, weights: str | None, device: torch.device, seed: int
                         ) -> Any:
    from ..segmenters import segmenter_from_spec

    return segmenter_from_spec(spec, weights=weights, device=str(device), seed=seed)


def result_options(options: GanOptions) -> dict[str, Any]:
    """The options that shape the results (not where or how fast they are computed)."""
    skip = {"device", "cache_dir", "images_per_pass", "batch_size", "strategy"}
    if options.truncation_psi == 1.0:  # off: older runs' fingerprints stay valid
        skip |= {"truncation_psi", "truncation_mean"}
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in skip}


def _layer_done(folder: Path, fp: str) -> bool:
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return summary.get("fingerprint") == fp and (folder / "ablation.csv").is_file()


def _bar(total: int, desc: str, progress: bool):  # noqa: ANN202 - a tqdm bar
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="image", disable=not progress)


def _run_layer(generator: Generator, probe: SampleProbe, labeller: Labeller, layer: str,
               concepts: list[Any], top: Any, options: GanOptions, folder: Path, out: Path,
               fp: str, progress: bool) -> dict[str, Any]:
    """Ablation, insertion, science check and galleries of one layer; write its files."""
    started = time.perf_counter()
    iou = np.load(out / "layers" / layer / "iou.npy")
    split = LayerSplit(generator, layer, options.strategy)
    counts = options.counts()
    ranked = {c.id: _rank_units(iou, c.id, max(max(counts), options.insertion_units))
              for c in concepts}
    names = {c.id: c.name for c in probe.concepts}
    categories = {c.id: c.category for c in probe.concepts}
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_csv(folder / "concept_units.csv", ["concept", "concept_id", "rank", "unit", "iou"],
                     [[names[c], c, r + 1, int(u), _num(iou[u, c])]
                      for c, units in ranked.items() for r, u in enumerate(units)])

    # ablation
    n_samples = min(options.ablation_samples or probe.samples, probe.samples)
    samples = np.arange(n_samples)
    jobs = sum(1 for n in counts if n > 0) * len(concepts) * n_samples
    bar = _bar(jobs, f"ablate {layer}", progress)
    ablation = ablation_sweep(split, probe, labeller, ranked, counts, samples,
                              options.batch_size, options.images_per_pass, bar.update)
    bar.close()
    ratio, low, high = ablation.fractions(options.confidence)
    rows = []
    for k, c in enumerate(ablation.concepts):
        for j, n in enumerate(ablation.counts):
            rows.append([names[c], c, categories[c], n, _num(ratio[k, j]), _num(low[k, j]),
                         _num(high[k, j]), int(ablation.before[:, k].sum()),
                         int(ablation.after[k, j].sum()), n_samples])
    atomic.write_csv(folder / "ablation.csv",
                     ["concept", "concept_id", "category", "n_removed", "fraction_remaining",
                      "ci_low", "ci_high", "pixels_before", "pixels_after", "samples"], rows)
    atomic.write_npz(folder / "ablation_samples.npz", samples=ablation.samples,
                     concept_ids=np.asarray(ablation.concepts, dtype=np.int64),
                     counts=np.asarray(ablation.counts, dtype=np.int64),
                     before=ablation.before, after=ablation.after)
    science = _science(ablation, ratio, low, high, names, top, options)
    atomic.write_json(folder / "science.json", science)

    # insertion
    insertions: list[InsertionResult] = []
    if options.insertion:
        insertions = _insertions(split, probe, labeller, concepts, ranked, options, layer,
                                 progress)
        _write_insertion(folder, insertions, names, options)

    if options.gallery_size:
        strips = _galleries(split, probe, ablation, insertions, ranked, names, options, folder)
        atomic.write_json(folder / "gallery" / "gallery.json", {"strips": strips})
    seconds = time.perf_counter() - started
    summary = {
        "layer": layer, "fingerprint": fp, "strategy": split.strategy,
        "concepts": [{"concept": names[c], "concept_id": c, "category": categories[c],
                      "frequency": next(x.frequency for x in concepts if x.id == c)}
                     for c in ablation.concepts],
        "ablation": {"samples": n_samples, "counts": ablation.counts, "images": ablation.images,
                     "seconds": round(ablation.seconds, 3),
                     "images_per_second": round(ablation.images / ablation.seconds, 2)
                     if ablation.seconds > 0 and ablation.images else None},
        "insertion": {"samples": min(options.insertion_samples, probe.samples),
                      "windows": len(insertions[0].windows) if insertions else 0,
                      "images": sum(r.images for r in insertions),
                      "seconds": round(sum(r.seconds for r in insertions), 3)}
        if insertions else None,
        "science": {k: science[k] for k in ("concept", "n_removed", "removed", "pass")},
        "seconds": round(seconds, 3),
    }
    atomic.write_json(folder / "summary.json", summary)
    return summary


def _science(ablation: AblationResult, ratio: np.ndarray, low: np.ndarray, high: np.ndarray,
             names: dict[int, str], top: Any, options: GanOptions) -> dict[str, Any]:
    """Removing the science_units best units of the most frequent object concept removes at
    least science_removed of its pixels; every concept's figure is listed."""
    j = ablation.counts.index(options.science_units)
    every = [{"concept": names[c], "concept_id": c, "fraction_remaining": float(ratio[k, j]),
              "removed": float(1 - ratio[k, j]), "ci_low": float(low[k, j]),
              "ci_high": float(high[k, j])} for k, c in enumerate(ablation.concepts)]
    k = ablation.concepts.index(top.id)
    removed = float(1 - ratio[k, j])
    return {"concept": top.name, "concept_id": top.id, "frequency": top.frequency,
            "n_removed": options.science_units, "samples": len(ablation.samples),
            "fraction_remaining": float(ratio[k, j]), "removed": removed,
            "ci_low": float(low[k, j]), "ci_high": float(high[k, j]),
            "confidence": options.confidence, "required_removed": options.science_removed,
            "pass": bool(np.isfinite(removed) and removed >= options.science_removed),
            "concepts": every}


def _insertions(split: LayerSplit, probe: SampleProbe, labeller: Labeller, concepts: list[Any],
                ranked: dict[int, np.ndarray], options: GanOptions, layer: str,
                progress: bool) -> list[InsertionResult]:
    samples = np.arange(min(options.insertion_samples, probe.samples))
    chosen = {c.id: ranked[c.id][:options.insertion_units] for c in concepts}
    union = np.unique(np.concatenate(list(chosen.values())))
    high = unit_percentiles(split, probe, union, samples, options.insertion_percentile,
                            options.batch_size)
    value_of = dict(zip(union.tolist(), high.tolist()))
    with torch.no_grad():
        acts = split.head(probe.latents([0]).to(split.generator.device))
    if acts.dim() != 4:
        log.warning("layer %s has no spatial feature map; no insertion", layer)
        return []
    side = max(acts.shape[-2:])
    stride = options.insertion_stride or max(1, math.ceil(side / options.insertion_windows))
    context_layer = probe.categories.index("object") if "object" in probe.categories else 0
    results = []
    per_concept = len(grid_windows(acts.shape[-2], acts.shape[-1], options.insertion_patch,
                                   stride)) * len(samples)
    bar = _bar(per_concept * len(concepts), f"insert {layer}", progress)
    for c in concepts:
        units = chosen[c.id]
        values = np.array([value_of[int(u)] for u in units], dtype=np.float32)
        results.append(insertion_sweep(split, probe, labeller, c.id, units, values, samples,
                                       options.insertion_patch, stride, context_layer,
                                       options.batch_size, options.images_per_pass, bar.update))
    bar.close()
    return results


def _write_insertion(folder: Path, results: list[InsertionResult], names: dict[int, str],
                     options: GanOptions) -> None:
    """insertion.csv (per concept and context) and insertion_samples.npz (every measurement)."""
    rows = []
    for r in results:
        ctx = r.context.reshape(-1)
        frac = r.added_fraction.reshape(-1)
        pixels = r.added_pixels.reshape(-1)
        ids, n = np.unique(ctx, return_counts=True)
        for cid in ids[np.lexsort((ids, -n))]:  # most frequent context first
            pick = ctx == cid
            mean, low, high = mean_interval(frac[pick], options.confidence)
            rows.append([names[r.concept], r.concept, names.get(int(cid), "none") if cid else
                         "none", int(cid), _num(mean), _num(low), _num(high),
                         _num(pixels[pick].mean()), int(pick.sum())])
    atomic.write_csv(folder / "insertion.csv",
                     ["concept", "concept_id", "context", "context_id", "added_fraction",
                      "ci_low", "ci_high", "added_pixels", "n"], rows)
    if results:
        atomic.write_npz(
            folder / "insertion_samples.npz",
            concept_ids=np.array([r.concept for r in results], dtype=np.int64),
            units=np.stack([r.units for r in results]).astype(np.int64),
            values=np.stack([r.values for r in results]).astype(np.float32),
            windows=np.asarray(results[0].windows, dtype=np.int64).reshape(-1, 4),
            pixel_windows=results[0].pixel_windows, samples=results[0].samples,
            added_fraction=np.stack([r.added_fraction for r in results]).astype(np.float32),
            added_pixels=np.stack([r.added_pixels for r in results]),
            context=np.stack([r.context for r in results]))


@torch.no_grad()
def _galleries(split: LayerSplit, probe: SampleProbe, ablation: AblationResult,
               insertions: list[InsertionResult], ranked: dict[int, np.ndarray],
               names: dict[int, str], options: GanOptions, folder: Path
               ) -> list[dict[str, Any]]:
    """Before / after strips: each concept's samples with the most pixels, its science_units
    best units removed; and the insertions that added the most, with their window."""
    device = split.generator.device
    size = options.gallery_size
    strips = []
    j = ablation.counts.index(options.science_units)
    n_removed = ablation.counts[j]
    for k, c in enumerate(ablation.concepts):
        order = np.argsort(-ablation.before[:, k], kind="stable")[:size]
        picked = ablation.samples[order]
        z = probe.latents(picked).to(device)
        acts = split.head(z)
        units = ranked[c][:n_removed]
        edited = apply_unit_masks(acts, unit_mask(units, acts.shape[1], device)[None])
        after = split.generator.to_uint8(split.tail(edited, z)).permute(0, 2, 3, 1).cpu().numpy()
        name = f"ablation-{slug(names[c])}.png"
        write_strip(folder / "gallery" / name, [probe.images(picked), after])
        strips.append({"file": name, "kind": "ablation", "concept": names[c], "concept_id": c,
                       "samples": picked.tolist(), "n_removed": n_removed,
                       "units": units.tolist(), "rows": ["before", "after"]})
    for r in insertions:
        best = r.added_fraction.argmax(1)  # each sample's best window
        score = r.added_fraction[np.arange(len(best)), best]
        order = np.argsort(-score, kind="stable")[:size]
        picked, windows = r.samples[order], best[order]
        z = probe.latents(picked).to(device)
        acts = split.head(z)
        full = torch.zeros(acts.shape[1], dtype=acts.dtype, device=device)
        full[torch.as_tensor(r.units, device=device)] = torch.as_tensor(
            r.values, dtype=acts.dtype, device=device)
        inserted = apply_unit_masks(acts, unit_mask(r.units, acts.shape[1], device)[None],
                                    "set", full)
        where = torch.zeros(len(picked), 1, *acts.shape[-2:], dtype=torch.bool, device=device)
        for i, w in enumerate(windows):
            y0, y1, x0, x1 = r.windows[w]
            where[i, :, y0:y1, x0:x1] = True
        edited = torch.where(where, inserted, acts)
        after = split.generator.to_uint8(split.tail(edited, z)).permute(0, 2, 3, 1).cpu().numpy()
        boxes = _pixel_windows([r.windows[w] for w in windows], tuple(acts.shape[-2:]),
                               probe.image_size)
        after = np.stack([outline(img, tuple(box)) for img, box in zip(after, boxes)])
        name = f"insertion-{slug(names[r.concept])}.png"
        write_strip(folder / "gallery" / name, [probe.images(picked), after])
        strips.append({"file": name, "kind": "insertion", "concept": names[r.concept],
                       "concept_id": r.concept, "samples": picked.tolist(),
                       "units": np.asarray(r.units).tolist(),
                       "windows": [list(r.windows[w]) for w in windows],
                       "boxes": boxes.tolist(), "added_fraction": score[order].tolist(),
                       "rows": ["before", "after"]})
    return strips


"""The generator's probe set: N samples from fixed seeds, labelled by a segmenter, cached on disk.

``SampleProbe`` has the interface the dissection engine reads (``ProbeSet``'s: ``concepts``,
``mask_size``, ``fingerprint``, ``batches()``...), with one difference: its batches carry the
model's inputs, the latents (``SampleBatch.inputs``), which the engine feeds to the model as
they are, instead of images to normalise (``inputs = "latents"``).

The samples are cached under ``<cache_dir>/<key>/`` (``SampleStore``), keyed by the generator
(spec, weights hash, latent spec, output range) and the labeller (segmenter fingerprint, mask
size), in chunks of ``CHUNK`` consecutive samples: the uint8 images, the label layers and the
per-sample pixel count of every concept. Asking for more samples than are cached generates and
segments only the missing ones; asking for fewer reads a prefix. See docs/generator.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .. import io as atomic
from ..datasets.probe import Concept
from ..errors import ConfigError, DatasetError
from ..fingerprint import fingerprint
from .sampler import Generator
from .segment import Labeller

__all__ = ["CHUNK", "DEFAULT_CACHE", "SampleBatch", "SampleProbe", "SampleStore",
           "concept_counts"]

log = logging.getLogger(__name__)

#: Samples per cache chunk.
CHUNK = 256
#: Where samples are cached unless told otherwise (relative to the working directory).
DEFAULT_CACHE = Path("data") / "samples"
#: Name and version of the cache's format (docs/generator.md).
CACHE_FORMAT = "unitdissect-samples"
CACHE_VERSION = 1
_PARTS = ("images", "counts", "labels")  # written in this order: labels mark a finished chunk


def concept_counts(labels: torch.Tensor, num_columns: int) -> torch.Tensor:
    """int64 [N, num_columns]: pixels of each concept per image, a pixel counted once per id.

    ``labels`` is [N, L, h, w] (global ids, 0 = none); a pixel that carries the same id in two
    layers counts once, as in the dissection's concept masks.
    """
    n = labels.shape[0]
    flat = labels.reshape(n, labels.shape[1], -1).long()
    if flat.shape[1] > 1:
        flat, _ = flat.sort(dim=1)
        repeated = torch.zeros_like(flat, dtype=torch.bool)
        repeated[:, 1:] = flat[:, 1:] == flat[:, :-1]
        flat = flat.masked_fill(repeated, 0)
    keys = flat + torch.arange(n, device=flat.device).view(n, 1, 1) * num_columns
    counts = torch.bincount(keys.reshape(-1), minlength=n * num_columns).view(n, num_columns)
    counts[:, 0] = 0
    return counts


@dataclass
class SampleBatch:
    """A batch of generated samples: latents (the model's inputs) and their labels."""

    indices: torch.Tensor  # int64 [B] sample indices
    inputs: torch.Tensor  # float32 [B, *latent shape]: fed to the model as they are
    labels: torch.Tensor  # int32 [B, L, m, m]: one label layer per category, global ids
    image_labels: torch.Tensor  # int32 [B, 1]: zeros (generated samples carry no image labels)
    has_category: torch.Tensor  # bool [B, len(categories)]
    images: torch.Tensor | None = None  # not loaded: the engine needs the latents only

    def to(self, device: torch.device | str) -> SampleBatch:
        """Move every tensor to ``device``."""
        return SampleBatch(*(getattr(self, f).to(device) for f in
                             ("indices", "inputs", "labels", "image_labels", "has_category")))


class SampleStore:
    """The on-disk cache of one sample set: ``info.json`` and ``chunks/<start>-<part>.npy``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._info: dict | None = None
        self._open: dict[tuple[int, str], np.ndarray] = {}

    @property
    def info(self) -> dict:
        """``info.json``: what the samples are (generator, latents, segmenter, sizes, concepts)."""
        if self._info is None:
            path = self.path / "info.json"
            if not path.is_file():
                raise DatasetError(f"{self.path}: not a sample cache (no info.json)")
            info = json.loads(path.read_text(encoding="utf-8"))
            if info.get("format") != CACHE_FORMAT or info.get("format_version") != CACHE_VERSION:
                raise DatasetError(f"{path}: unsupported format {info.get('format')!r} "
                                   f"version {info.get('format_version')!r}")
            self._info = info
        return self._info

    def write_info(self, info: dict) -> None:
        """Write ``info.json`` (once, when the cache is created)."""
        atomic.write_json(self.path / "info.json", info)
        self._info = info

    def _file(self, start: int, part: str) -> Path:
        return self.path / "chunks" / f"{start:09d}-{part}.npy"

    def chunk_length(self, start: int) -> int:
        """How many samples the chunk at ``start`` holds (0 when absent or damaged)."""
        lengths = []
        for part in _PARTS:
            path = self._file(start, part)
            if not path.is_file():
                return 0
            try:
                lengths.append(np.load(path, mmap_mode="r").shape[0])
            except (OSError, ValueError):
                return 0
        return min(lengths)

    def read(self, start: int, part: str) -> np.ndarray:
        """One part (images, counts, labels) of the chunk at ``start``, memory-mapped."""
        key = (start, part)
        if key not in self._open:
            if len(self._open) > 3 * len(_PARTS):
                self._open.clear()
            self._open[key] = np.load(self._file(start, part), mmap_mode="r")
        return self._open[key]

    def write(self, start: int, arrays: dict[str, np.ndarray]) -> None:
        """Write (or replace) the chunk at ``start``; the labels last, as its completion mark."""
        for key in [k for k in self._open if k[0] == start]:
            del self._open[key]
        for part in _PARTS:
            atomic.write_npy(self._file(start, part), arrays[part])

    def gather(self, part: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows ``indices`` of one part, read from their chunks (any order, repeats allowed)."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = indices // CHUNK * CHUNK
        first = self.read(int(starts[0]), part) if len(indices) else None
        shape = first.shape[1:] if first is not None else ()
        out = np.empty((len(indices), *shape), dtype=first.dtype if first is not None else
                       np.uint8)
        for start in np.unique(starts).tolist():
            rows = np.flatnonzero(starts == start)
            out[rows] = self.read(start, part)[indices[rows] - start]
        return out

    def image(self, index: int) -> np.ndarray:
        """Sample ``index``'s image as HxWx3 uint8 (what the site shows)."""
        return np.asarray(self.gather("images", [index])[0])


class SampleProbe:
    """N generated samples with cached segmentations, readable like a ``ProbeSet``."""

    #: What ``SampleBatch.inputs`` holds; the dissection engine feeds it without normalising.
    inputs = "latents"
    pixel_categories: list[str]
    image_categories: list[str] = []

    def __init__(self, generator: Generator, labeller: Labeller, samples: int,
                 cache_dir: str | Path | None = None, batch_size: int = 32,
                 progress: bool = True) -> None:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"--samples must be a positive integer, got {samples!r}")
        self.generator, self.labeller, self.samples = generator, labeller, samples
        self.batch_size = batch_size
        self.key = fingerprint(CACHE_FORMAT, CACHE_VERSION, generator.fingerprint(),
                               labeller.fingerprint())
        self.path = (Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE).resolve() \
            / self.key[:20]
        self.store = SampleStore(self.path)
        self.fingerprint = fingerprint(self.key, samples)
        self.mask_size = labeller.mask_size
        self.categories = list(labeller.categories)
        self.pixel_categories = list(self.categories)
        self.layers = {c: 1 for c in self.categories}
        self.num_columns = labeller.num_columns
        self.concept_category = labeller.concept_category.copy()
        self.segmented = 0  # images this object generated and segmented (the rest were cached)
        self._ensure(progress)
        self.image_size = int(self.store.info["image_size"])
        self.counts = self.store.gather("counts", np.arange(samples)).astype(np.int64)
        present = self.counts > 0
        area = self.counts / float(self.mask_size ** 2)
        freq = present.sum(0)
        coverage = np.where(freq > 0, area.sum(0) / np.maximum(freq, 1), 0.0)
        self.concepts = [Concept(id=c.id, name=c.name, category=c.category, level="pixel",
                                 frequency=int(freq[c.id]), coverage=float(coverage[c.id]),
                                 sources=(labeller.segmenter.name,))
                         for c in labeller.concepts]
        cats = self.concept_category
        self.has_category = np.stack([present[:, cats == k].any(1)
                                      for k in range(len(self.categories))], axis=1)

    def __len__(self) -> int:
        return self.samples

    # -- the cache ------------------------------------------------------------------------
    def _ensure(self, progress: bool) -> None:
        """Generate and segment the samples the cache lacks."""
        from tqdm.auto import tqdm

        if not (self.path / "info.json").is_file():
            with torch.no_grad():
                size = int(self.generator.generate(self.generator.latents([0])).shape[-1])
            self.store.write_info({
                "format": CACHE_FORMAT, "format_version": CACHE_VERSION, "key": self.key,
                "generator": {"spec": self.generator.model.spec,
                              "weights_sha256": self.generator.model.weights_sha256,
                              "latent": self.generator.latent.describe(),
                              "output_range": list(self.generator.output_range)},
                "segmenter": {"name": self.labeller.segmenter.name,
                              "fingerprint": self.labeller.segmenter.fingerprint()},
                "image_size": size, "mask_size": self.mask_size, "chunk": CHUNK,
                "categories": self.categories,
                "concepts": [[c.id, c.name, c.category] for c in self.labeller.concepts]})
        missing: list[tuple[int, int, int]] = []  # (chunk start, cached, wanted)
        for start in range(0, self.samples, CHUNK):
            wanted = min(CHUNK, self.samples - start)
            have = self.store.chunk_length(start)
            if have < wanted:
                missing.append((start, have, wanted))
        todo = sum(w - h for _, h, w in missing)
        if not todo:
            return
        bar = tqdm(total=todo, desc="generate + segment", unit="sample", disable=not progress)
        for start, have, wanted in missing:
            parts = self._make(np.arange(start + have, start + wanted), bar)
            if have:
                parts = {k: np.concatenate([self.store.read(start, k)[:have], v])
                         for k, v in parts.items()}
            self.store.write(start, parts)
        bar.close()

    @torch.no_grad()
    def _make(self, indices: np.ndarray, bar) -> dict[str, np.ndarray]:  # noqa: ANN001
        parts: dict[str, list[np.ndarray]] = {k: [] for k in _PARTS}
        for s in range(0, len(indices), self.batch_size):
            chunk = indices[s:s + self.batch_size]
            images = self.generator.generate(self.generator.latents(chunk)).cpu()
            labels = self.labeller(images)
            self.segmented += len(chunk)
            parts["images"].append(images.permute(0, 2, 3, 1).numpy())
            parts["labels"].append(labels.numpy().astype(np.uint16 if self.num_columns < 65536
                                                         else np.int32))
            parts["counts"].append(concept_counts(labels, self.num_columns).numpy()
                                   .astype(np.int32))
            bar.update(len(chunk))
        return {k: np.concatenate(v) for k, v in parts.items()}

    # -- reading --------------------------------------------------------------------------
    def split_indices(self, split: str = "all") -> np.ndarray:
        """All sample indices (generated samples have no train / val split)."""
        if split != "all":
            raise DatasetError(f"generated samples have no {split!r} split", hint="use all")
        return np.arange(self.samples)

    def latents(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """The latents of samples ``indices`` (on the CPU)."""
        from .sampler import sample_latents

        return sample_latents(self.generator.latent, indices)

    def labels(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """int32 label layers [n, L, m, m] of samples ``indices``."""
        return torch.from_numpy(self.store.gather("labels", indices).astype(np.int32))

    def images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 images [n, H, W, 3] of samples ``indices``."""
        return self.store.gather("images", indices)

    def image(self, index: int) -> np.ndarray:
        """Sample ``index``'s image as HxWx3 uint8."""
        return self.store.image(index)

    def batches(self, indices: Sequence[int] | np.ndarray, batch_size: int = 64,
                num_workers: int = 0, device: str | None = None) -> Iterator[SampleBatch]:
        """Yield SampleBatches over ``indices`` in order (``num_workers`` is ignored)."""
        indices = np.asarray(indices, dtype=np.int64)
        for s in range(0, len(indices), batch_size):
            chunk = indices[s:s + batch_size]
            batch = SampleBatch(
                indices=torch.from_numpy(chunk.copy()), inputs=self.latents(chunk),
                labels=self.labels(chunk),
                image_labels=torch.zeros(len(chunk), 1, dtype=torch.int32),
                has_category=torch.from_numpy(self.has_category[chunk]))
            yield batch.to(device) if device is not None else batch

"""Toy-world scenes as in-memory tensors for training the demo models.

Training and validation images are drawn from toy worlds with their own seeds (``TRAIN_SEED``,
``VAL_SEED``), never from seed 0, the default probe dataset that dissection runs on. Texture
swatches are skipped (``texture_fraction=0``): the demo models see scenes only.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..datasets.sources.base import SourceConcept
from ..datasets.sources.toyworld import SCENES, ToyWorld, label_of
from ..datasets.sources.toyworld import VERSION as TOYWORLD_VERSION
from ..workers import ignore_interrupts

__all__ = [
    "PIXEL_HEADS",
    "TOYWORLD_VERSION",
    "TRAIN_SEED",
    "VAL_SEED",
    "ToyTensors",
    "head_vocabulary",
    "render_scenes",
    "scene_indices",
    "to_model_input",
]

#: Seeds of the toy worlds the demo models train and validate on (the probe set uses seed 0).
TRAIN_SEED = 1
VAL_SEED = 2
#: The pixel categories the segmenter predicts, one head each.
PIXEL_HEADS = ("object", "part", "material")


@dataclass
class ToyTensors:
    """Rendered scenes: uint8 images N x 3 x H x W, scene indices, per-head class maps."""

    images: torch.Tensor  # uint8, N x 3 x H x W
    scenes: torch.Tensor  # int64, N (index into SCENES)
    labels: dict[str, torch.Tensor]  # head -> uint8 N x H x W class indices (0 = none)
    seed: int
    size: int

    def __len__(self) -> int:
        """The number of scenes."""
        return int(self.images.shape[0])


def head_vocabulary(category: str) -> list[SourceConcept]:
    """The toy world's concepts of a pixel category, in class order (class i + 1 = entry i)."""
    return [c for c in ToyWorld(n=0).concepts() if c.category == category]


def _code_to_class(category: str) -> np.ndarray:
    vocabulary = head_vocabulary(category)
    table = np.zeros(max(c.code for c in vocabulary) + 1, np.uint8)
    for index, concept in enumerate(vocabulary):
        table[concept.code] = index + 1
    return table


def _render_chunk(args: tuple[int, int, list[int], bool]) -> tuple[np.ndarray, ...]:
    seed, size, indices, with_labels = args
    world = ToyWorld(n=max(indices) + 1, size=size, seed=seed, texture_fraction=0.0)
    scene_code = {c.code: i for i, c in enumerate(
        sorted((c for c in world.concepts() if c.category == "scene"), key=lambda c: c.code))}
    tables = {cat: _code_to_class(cat) for cat in PIXEL_HEADS} if with_labels else {}
    count = len(indices)
    images = np.empty((count, size, size, 3), np.uint8)
    scenes = np.empty(count, np.int64)
    maps = {cat: np.empty((count, size, size), np.uint8) for cat in tables}
    for row, index in enumerate(indices):
        sample = world.sample(index)
        images[row] = sample.image
        scenes[row] = scene_code[sample.image_labels["scene"][0]]
        for cat, table in tables.items():
            layers = sample.pixel.get(cat) or [np.zeros((size, size), np.uint16)]
            maps[cat][row] = table[np.asarray(layers[0], np.int64)]
    return (images, scenes, *(maps[cat] for cat in tables))


def scene_indices(n: int, seed: int, scenes: Sequence[str] | None = None,
                  start: int = 0) -> list[int]:
    """The first ``n`` indices from ``start`` of toy world ``seed`` whose scene is in ``scenes``."""
    if scenes is None:
        return list(range(start, start + n))
    unknown = sorted(set(scenes) - set(SCENES))
    if unknown:
        raise ValueError(f"unknown toy-world scenes {unknown}; known: {', '.join(SCENES)}")
    wanted, out, index = set(scenes), [], start
    while len(out) < n:
        if label_of(seed, index, 0.0)[1] in wanted:
            out.append(index)
        index += 1
    return out


def render_scenes(n: int, size: int, seed: int, labels: bool = False, workers: int = 1,
                  progress: bool = False, start: int = 0,
                  scenes: Sequence[str] | None = None) -> ToyTensors:
    """Render ``n`` toy-world scenes of ``seed`` from index ``start`` (only ``scenes`` if given)."""
    if n < 1:
        raise ValueError(f"need at least one scene, not {n}")
    indices = scene_indices(n, seed, scenes, start)
    chunk = max(1, min(500, -(-n // max(1, workers))))
    jobs = [(seed, size, indices[a:a + chunk], labels) for a in range(0, n, chunk)]
    parts: list[tuple[np.ndarray, ...]] = []
    bar = _bar(n, f"render {n} scenes @{size}px seed {seed}", progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=ignore_interrupts) as pool:
            for part in pool.map(_render_chunk, jobs):
                parts.append(part)
                bar.update(len(part[0]))
    else:
        for job in jobs:
            parts.append(_render_chunk(job))
            bar.update(len(parts[-1][0]))
    bar.close()
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).permute(0, 3, 1, 2)
    scenes = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    maps = {cat: torch.from_numpy(np.concatenate([p[2 + k] for p in parts]))
            for k, cat in enumerate(PIXEL_HEADS)} if labels else {}
    return ToyTensors(images=images.contiguous(), scenes=scenes, labels=maps, seed=seed,
                      size=size)


def to_model_input(images: torch.Tensor, mean: Sequence[float],
                   std: Sequence[float]) -> torch.Tensor:
    """uint8 (or [0, 1] float) N x 3 x H x W images -> normalised float32 model input."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def scene_names() -> list[str]:
    """The scene classes in the classifier's output order."""
    return list(SCENES)


def _bar(total: int, desc: str, enabled: bool):  # noqa: ANN202 - tqdm or a no-op
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, unit="img")

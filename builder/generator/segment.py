"""Label generated images with a segmenter: one label layer of global concept ids per category.

The segmenter's vocabulary (object, part, material concepts, in its own codes) is merged into
global ids exactly as the dataset builder merges a source's (``merge_vocabularies``: ids by
category, then in the segmenter's order, canonical names), so the generator's concepts have the
names and ids a ``images:`` dataset labelled by the same segmenter would have. Colors are not
named and image-level categories (scene, texture) are not used: generated samples carry the
segmenter's pixel categories only. A segmenter that returns several maps for one category has
them merged, the first map's label winning where several are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..datasets.sources.base import PIXEL_CATEGORIES
from ..datasets.vocabulary import merge_vocabularies
from ..errors import DatasetError, SpecError
from ..fingerprint import fingerprint

__all__ = ["Labeller", "LabelledConcept", "resolve_segmenter"]

#: Bumped whenever the labels made for the same images and segmenter change.
LABELLER_VERSION = 1


@dataclass(frozen=True)
class LabelledConcept:
    """A concept of the generator's probe: global id, name, category."""

    id: int
    name: str
    category: str


def resolve_segmenter(segmenter: Any, device: str = "cpu") -> Any:
    """A segmenter object from a spec (``demo:segmenter``, ``torchvision:NAME``, ``hf:PATH``)."""
    if not isinstance(segmenter, str):
        for attr in ("name", "concepts", "segment", "fingerprint"):
            if not hasattr(segmenter, attr):
                raise SpecError(f"{segmenter!r} is not a segmenter (it has no {attr})",
                                hint="a segmenter has name, concepts(), segment() and "
                                "fingerprint()")
        return segmenter
    from ..segmenters import segmenter_from_spec

    return segmenter_from_spec(segmenter, device=device)


class Labeller:
    """Turns uint8 images into int32 label layers ``[N, L, m, m]`` (global ids, 0 = none)."""

    def __init__(self, segmenter: Any, mask_size: int) -> None:
        self.segmenter = segmenter
        self.mask_size = int(mask_size)
        vocab = merge_vocabularies([segmenter.name], [list(segmenter.concepts())])
        self.concepts = [LabelledConcept(c.id, c.name, c.category) for c in vocab.concepts
                         if c.category in PIXEL_CATEGORIES and c.category != "color"]
        if not self.concepts:
            raise SpecError(f"segmenter {segmenter.name!r} has no pixel concepts "
                            "(object, part or material)")
        self.categories = [cat for cat in PIXEL_CATEGORIES
                           if any(c.category == cat for c in self.concepts)]
        self.num_columns = max(c.id for c in self.concepts) + 1
        self.concept_category = np.full(self.num_columns, -1, dtype=np.int64)
        for c in self.concepts:
            self.concept_category[c.id] = self.categories.index(c.category)
        lut = vocab.luts[0]
        self._lut = np.where(lut < self.num_columns, lut, 0).astype(np.int32)

    def fingerprint(self) -> str:
        """The segmenter's name and fingerprint, the mask size and the labeller's version."""
        return fingerprint("labeller", LABELLER_VERSION, self.segmenter.name,
                           self.segmenter.fingerprint(), self.mask_size)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [N, 3, H, W] -> int32 label layers [N, len(categories), m, m]."""
        arrays = list(images.permute(0, 2, 3, 1).cpu().numpy())
        results = self.segmenter.segment(arrays) if arrays else []
        if len(results) != len(arrays):
            raise DatasetError(f"segmenter {self.segmenter.name!r} returned {len(results)} "
                               f"results for {len(arrays)} images")
        m = self.mask_size
        out = np.zeros((len(arrays), len(self.categories), m, m), dtype=np.int32)
        for layer, cat in enumerate(self.categories):
            maps = [self._merged(result.get(cat, ()), arrays[0].shape[:2]) for result in results]
            if maps:
                codes = np.stack(maps)
                if int(codes.max(initial=0)) >= len(self._lut):
                    raise DatasetError(f"segmenter {self.segmenter.name!r} returned {cat} code "
                                       f"{int(codes.max())}, which is not in its vocabulary")
                out[:, layer] = _nearest(self._lut[codes], m)
        return torch.from_numpy(out)

    @staticmethod
    def _merged(layers: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        if not layers:
            return np.zeros(shape, dtype=np.int64)
        merged = np.asarray(layers[0], dtype=np.int64)
        for more in layers[1:]:
            merged = np.where(merged == 0, np.asarray(more, dtype=np.int64), merged)
        return merged


def _nearest(maps: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W] label maps resized to ``size`` x ``size`` by nearest neighbour (pixel centres)."""
    h, w = maps.shape[-2:]
    if (h, w) == (size, size):
        return maps
    rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    return maps[:, rows[:, None], cols[None, :]]

"""The contract every probe-data source implements: a local concept list and indexable samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

#: Categories whose labels are per pixel, and categories whose labels cover the whole image.
PIXEL_CATEGORIES = ("object", "part", "material", "color")
IMAGE_CATEGORIES = ("scene", "texture")
CATEGORIES = PIXEL_CATEGORIES + IMAGE_CATEGORIES


@dataclass(frozen=True)
class SourceConcept:
    """One concept in a source's own vocabulary; ``code`` is what its label maps contain."""

    code: int  # >= 1; 0 always means "no label" in a label map
    name: str
    category: str  # one of CATEGORIES
    synonyms: tuple[str, ...] = ()


@dataclass
class SourceSample:
    """One probe image with its annotations, in the source's local codes.

    ``pixel[category]`` is a list of label maps (uint16 or int32, H x W, local codes, 0 = none);
    several layers are allowed (Broden's part_1, part_2). A category absent from ``pixel`` or
    with an empty list means "not annotated for this category" (category-aware IoU skips it).
    ``image_labels[category]`` lists local codes of image-level concepts (scene, texture).
    Label maps may have any size; the builder resizes them (nearest) to the annotation size.
    ``encoded`` is the image file as the source ships it: the builder stores these bytes as
    they are when the image needs no crop or resize (no re-encoding, no loss).
    """

    id: str
    image: np.ndarray  # H x W x 3 uint8, RGB
    pixel: dict[str, list[np.ndarray]] = field(default_factory=dict)
    image_labels: dict[str, list[int]] = field(default_factory=dict)
    split: str | None = None  # None: the builder assigns train/val by a stable hash of id
    encoded: bytes | None = None  # the image file's own bytes, when the source has a file


class Source(Protocol):
    """A probe-data source: a vocabulary plus random access to samples.

    Optional members the builder reads when present: ``native_size()`` returns the
    ``(image side, mask side)`` every sample ships at (None when the sizes vary), so a build
    of that source alone keeps them; ``ships_colors`` (True) says that the samples carry the
    source's own ``color`` masks, which the builder keeps instead of naming colors itself;
    ``curated`` (True) says that the vocabulary was already filtered by its makers (a Broden
    release), so the builder keeps every concept of it by default.
    """

    #: Short name stored in each row's ``source`` column, e.g. ``toyworld`` or ``broden``.
    name: str

    def concepts(self) -> Sequence[SourceConcept]:
        """The source's local vocabulary."""
        ...

    def __len__(self) -> int:
        """The number of samples (including ones that may turn out unreadable)."""
        ...

    def sample(self, index: int) -> SourceSample:
        """Load sample ``index``; raise ``BadSampleError`` for a corrupt or inconsistent one."""
        ...

    def fingerprint(self) -> str:
        """A stable string that changes whenever the samples or vocabulary would change."""
        ...

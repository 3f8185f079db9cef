"""Merging the vocabularies of several sources into one table of global concept ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .colornames import COLOR_NAMES
from .sources.base import CATEGORIES, IMAGE_CATEGORIES, SourceConcept

#: Names that different datasets use for one concept, mapped to the name we keep.
SYNONYMS: dict[str, str] = {
    "people": "person", "man": "person", "woman": "person", "human": "person",
    "trees": "tree", "automobile": "car", "auto": "car", "motorcar": "car",
    "sea": "water", "ocean": "water", "grey": "gray", "couch": "sofa",
    "tvmonitor": "television", "tv": "television", "aeroplane": "airplane",
    "motorbike": "motorcycle", "pottedplant": "plant", "potted plant": "plant",
    "diningtable": "table", "dining table": "table",
}

# Broden marks some names with a category suffix ("street-s", "red-c"); the name is without it.
_CATEGORY_SUFFIXES = {"scene": "-s", "color": "-c", "texture": "-t", "material": "-m"}


def canonical_name(name: str, category: str) -> str:
    """The name under which a concept is merged: lower case, suffix stripped, synonyms applied."""
    key = " ".join(name.strip().lower().replace("_", " ").split())
    suffix = _CATEGORY_SUFFIXES.get(category)
    if suffix and key.endswith(suffix):
        key = key[: -len(suffix)]
    return SYNONYMS.get(key, key)


@dataclass
class GlobalConcept:
    """A concept of the merged vocabulary, before frequencies are known."""

    id: int
    name: str
    category: str
    sources: list[str] = field(default_factory=list)
    synonyms: list[str] = field(default_factory=list)

    @property
    def level(self) -> str:
        """``image`` for scene and texture, else ``pixel``."""
        return "image" if self.category in IMAGE_CATEGORIES else "pixel"


@dataclass
class Vocabulary:
    """The merged concept table plus, per source, a lookup table from local code to global id."""

    concepts: list[GlobalConcept]
    luts: list[np.ndarray]  # per source: int array, lut[local_code] = global id (0 = none)
    color_lut: np.ndarray  # color-name index (0-based) -> global id


def merge_vocabularies(source_names: Sequence[str],
                       vocabularies: Sequence[Sequence[SourceConcept]],
                       ships_colors: Sequence[bool] | None = None) -> Vocabulary:
    """Merge sources' vocabularies by (category, canonical name); ids follow category order.

    A source that ships its own color masks (``ships_colors``) keeps its color concepts; the
    builder's 11 color names are added only when some source has its colors named by it.
    """
    ships = list(ships_colors) if ships_colors is not None else [False] * len(source_names)
    entries: dict[tuple[str, str], GlobalConcept] = {}
    order: list[tuple[str, str]] = []
    per_source: list[list[tuple[int, tuple[str, str]]]] = []
    for src, vocab, own_colors in zip(source_names, vocabularies, ships):
        mapping = []
        for c in vocab:
            if c.category not in CATEGORIES or (c.category == "color" and not own_colors):
                continue  # the builder names these colors itself
            key = (c.category, canonical_name(c.name, c.category))
            if key not in entries:
                entries[key] = GlobalConcept(0, key[1], c.category)
                order.append(key)
            g = entries[key]
            if src not in g.sources:
                g.sources.append(src)
            for alias in (c.name, *c.synonyms):
                if alias != g.name and alias not in g.synonyms:
                    g.synonyms.append(alias)
            mapping.append((c.code, key))
        per_source.append(mapping)
    for name in COLOR_NAMES if not all(ships) else ():
        key = ("color", name)
        if key not in entries:
            entries[key] = GlobalConcept(0, name, "color")
            order.append(key)
        entries[key].sources.append("colornames")
    # ids by category (object, part, material, color, scene, texture), then first appearance
    order.sort(key=lambda k: CATEGORIES.index(k[0]))
    for i, key in enumerate(order, start=1):
        entries[key].id = i
    luts = []
    for mapping in per_source:
        lut = np.zeros(max((code for code, _ in mapping), default=0) + 1, dtype=np.int64)
        for code, key in mapping:
            lut[code] = entries[key].id
        luts.append(lut)
    color_lut = np.array([entries[("color", n)].id if ("color", n) in entries else 0
                          for n in COLOR_NAMES], dtype=np.int64)
    return Vocabulary([entries[k] for k in order], luts, color_lut)

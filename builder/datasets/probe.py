"""Reading a concept dataset from disk: concepts, images, and batches of tensors for dissection."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import BadSampleError, DatasetError
from .sources.base import CATEGORIES, SourceSample
from .sources.broden import printable, read_label_array, read_rgb_image

#: Name and version of the on-disk format; see docs/dataset-format.md.
FORMAT_NAME = "unitdissect-concepts"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Concept:
    """One row of a dataset's concept table."""

    id: int
    name: str
    category: str
    level: str  # "pixel" or "image"
    frequency: int  # images that carry the concept
    coverage: float  # mean fraction of the image it covers, where present
    sources: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()


@dataclass
class ProbeBatch:
    """A batch of probe images with every annotation the dissection engine needs, as tensors."""

    indices: "torch.Tensor"  # int64 [B] dataset row indices
    images: "torch.Tensor"  # float32 [B, 3, S, S] in [0, 1], not normalised
    labels: "torch.Tensor"  # int32 [B, L, h, w]: every pixel label layer, global ids, 0 = none
    image_labels: "torch.Tensor"  # int32 [B, M]: image-level concept ids, 0-padded
    has_category: "torch.Tensor"  # bool [B, len(categories)]

    def to(self, device: "torch.device | str") -> "ProbeBatch":
        """Move every tensor to ``device``."""
        return ProbeBatch(*(getattr(self, f).to(device, non_blocking=True) for f in
                            ("indices", "images", "labels", "image_labels", "has_category")))


#: The columns every concepts.csv has (``sources`` and ``synonyms`` may be absent).
CONCEPT_COLUMNS = ("id", "name", "category", "level", "frequency", "coverage")


def read_concepts(path: Path) -> list[Concept]:
    """Read a ``concepts.csv`` concept table; DatasetError naming the file and the line."""
    hint = "rebuild the dataset (unitdissect dataset build ... --force)"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CONCEPT_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}", hint=hint)
            return [_concept(r, f"{path}:{line}", hint)
                    for line, r in enumerate(reader, start=2)]
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})", hint=hint) from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a readable csv file ({printable(e)})",
                           hint=hint) from None


def _concept(row: dict, where: str, hint: str) -> Concept:
    """One concepts.csv row as a Concept; DatasetError on a short or malformed row."""
    short = [c for c in CONCEPT_COLUMNS if row.get(c) is None]
    if short:
        raise DatasetError(f"{where}: row has no {', '.join(short)} value", hint=hint)
    if row["category"] not in CATEGORIES or row["level"] not in ("pixel", "image"):
        raise DatasetError(f"{where}: unknown category {row['category']!r} or level "
                           f"{row['level']!r}", hint=hint)
    try:
        concept = Concept(id=int(row["id"]), name=row["name"], category=row["category"],
                       level=row["level"], frequency=int(row["frequency"]),
                       coverage=float(row["coverage"]),
                       sources=tuple(s for s in (row.get("sources") or "").split(";") if s),
                       synonyms=tuple(s for s in (row.get("synonyms") or "").split(";") if s))
    except ValueError as e:
        raise DatasetError(f"{where}: malformed row ({printable(e)})", hint=hint) from None
    if concept.id < 1:
        raise DatasetError(f"{where}: concept id {concept.id} (ids start at 1)", hint=hint)
    return concept


def decode_label_map(data: bytes) -> np.ndarray:
    """Decode one 16-bit PNG label map to a uint16 array (bounded like a source's masks)."""
    return np.asarray(read_label_array(data, "a stored label map"), dtype=np.uint16)


def decode_image(data: bytes) -> np.ndarray:
    """Decode one stored image to an HxWx3 uint8 RGB array (bounded like a source's images)."""
    return read_rgb_image(data, "a stored image")


class ProbeSet:
    """A concept dataset on disk (see docs/dataset-format.md), opened for reading."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        info_path = self.path / "probe.json"
        if not info_path.is_file():
            raise DatasetError(f"{self.path}: not a concept dataset (no probe.json); "
                               "build one with `unitdissect dataset build`")
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("format") != FORMAT_NAME or info.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"{info_path}: unsupported format "
                               f"{info.get('format')!r} version {info.get('format_version')!r}")
        self.info: dict = info
        self.fingerprint: str = info["fingerprint"]
        self.image_size: int = int(info["image_size"])
        self.mask_size: int = int(info["mask_size"])
        self.categories: list[str] = [c for c in CATEGORIES if c in info["categories"]]
        self.pixel_categories = [c for c in self.categories
                                 if info["categories"][c]["level"] == "pixel"]
        self.image_categories = [c for c in self.categories
                                 if info["categories"][c]["level"] == "image"]
        self.layers: dict[str, int] = {c: int(info["categories"][c]["layers"])
                                       for c in self.pixel_categories}
        self.concepts: list[Concept] = read_concepts(self.path / "concepts.csv")
        self.num_columns: int = max((c.id for c in self.concepts), default=0) + 1
        self.concept_category = np.full(self.num_columns, -1, dtype=np.int64)
        for c in self.concepts:
            if c.category not in self.categories:
                raise DatasetError(f"{self.path / 'concepts.csv'}: concept {c.id} is a "
                                   f"{c.category}, a category probe.json does not list",
                                   hint="rebuild the dataset (unitdissect dataset build ... "
                                   "--force)")
            self.concept_category[c.id] = self.categories.index(c.category)
        self._table = None

    @property
    def skipped(self) -> list[dict]:
        """The bad samples the build skipped: ``source``, ``index``, ``reason`` each."""
        return list(self.info.get("skipped", []))

    # -- rows -------------------------------------------------------------------------
    @property
    def table(self):
        """The underlying ``datasets.Dataset`` with images and masks left encoded."""
        if self._table is None:
            import datasets

            datasets.disable_progress_bars()
            ds = datasets.load_from_disk(str(self.path / "data"))
            raw = {c: datasets.Image(decode=False) for c in ["image"]}
            raw.update({c: datasets.Sequence(datasets.Image(decode=False))
                        for c in self.pixel_categories})
            self._table = ds.cast(datasets.Features({**ds.features, **raw}))
        return self._table

    def __len__(self) -> int:
        return int(self.info["counts"]["images"])

    def split_indices(self, split: str = "all") -> np.ndarray:
        """Row indices of ``all``, ``train`` or ``val`` images."""
        if split == "all":
            return np.arange(len(self))
        if split not in ("train", "val"):
            raise DatasetError(f"unknown split {split!r}: expected all, train or val")
        splits = np.asarray(self.table.data.column("split").to_numpy(zero_copy_only=False))
        return np.flatnonzero(splits == split)

    def column(self, name: str) -> list:
        """A whole plain column (``id``, ``split``, ``source``, ``scene``, ``concepts``...)."""
        return self.table.data.column(name).to_pylist()

    def image(self, index: int) -> np.ndarray:
        """The image of row ``index`` as HxWx3 uint8."""
        return decode_image(self.table[int(index)]["image"]["bytes"])

    def annotations(self, index: int) -> SourceSample:
        """Row ``index`` with decoded image and label maps (global concept ids)."""
        row = self.table[int(index)]
        return SourceSample(
            id=row["id"], image=decode_image(row["image"]["bytes"]), split=row["split"],
            pixel={c: [decode_label_map(m["bytes"]) for m in row[c]]
                   for c in self.pixel_categories},
            image_labels={c: list(row[c]) for c in self.image_categories},
        )

    # -- batches ----------------------------------------------------------------------
    def collate(self, indices: Sequence[int]) -> ProbeBatch:
        """Decode rows ``indices`` into one ProbeBatch (runs in DataLoader workers)."""
        import torch

        idx = [int(i) for i in indices]
        rows = self.table[idx]
        b, s, h = len(idx), self.image_size, self.mask_size
        images = np.empty((b, s, s, 3), dtype=np.uint8)
        n_layers = sum(self.layers.values())
        labels = np.zeros((b, max(n_layers, 1), h, h), dtype=np.int32)
        for i, data in enumerate(rows["image"]):
            image = decode_image(data["bytes"])
            if image.shape[:2] != (s, s):
                raise BadSampleError(f"{self.path}: row {idx[i]} image is "
                                     f"{image.shape[1]}x{image.shape[0]}, expected {s}x{s}")
            images[i] = image
        offset = 0
        for cat in self.pixel_categories:
            for i, maps in enumerate(rows[cat]):
                for j, m in enumerate(maps):
                    labels[i, offset + j] = decode_label_map(m["bytes"])
            offset += self.layers[cat]
        per_image = [list(ids) for ids in rows["concepts"]]
        has = np.zeros((b, len(self.categories)), dtype=bool)
        for i, ids in enumerate(per_image):
            cats = self.concept_category[np.asarray(ids, dtype=np.int64)]
            has[i, cats[cats >= 0]] = True
        image_ids = [sum((list(rows[c][i]) for c in self.image_categories), [])
                     for i in range(b)]
        width = max((len(x) for x in image_ids), default=0)
        image_labels = np.zeros((b, max(width, 1)), dtype=np.int32)
        for i, ids in enumerate(image_ids):
            image_labels[i, :len(ids)] = ids
        return ProbeBatch(
            indices=torch.as_tensor(idx, dtype=torch.int64),
            images=torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0),
            labels=torch.from_numpy(labels),
            image_labels=torch.from_numpy(image_labels),
            has_category=torch.from_numpy(has),
        )

    def batches(self, indices: Sequence[int] | np.ndarray, batch_size: int = 64,
                num_workers: int = 0, device: "str | None" = None) -> Iterator[ProbeBatch]:
        """Yield ProbeBatches over ``indices`` in order, decoded by ``num_workers`` processes."""
        import torch
        from torch.utils.data import DataLoader

        indices = np.asarray(indices, dtype=np.int64)
        chunks = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
        self.table  # open before forking workers so they share the memory map
        loader = DataLoader(chunks, batch_size=None, shuffle=False, num_workers=num_workers,
                            collate_fn=self.collate, pin_memory=device not in (None, "cpu")
                            and torch.cuda.is_available(),
                            persistent_workers=False)
        for batch in loader:
            yield batch.to(device) if device is not None else batch

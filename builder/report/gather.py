"""Read run directories (docs/results-format.md) into the site's page models, before anything is written."""

from __future__ import annotations

import csv
import json
import math
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from builder.errors import DatasetError
from builder.paths import portable_path, portable_spec, portable_tree

FORMAT = "unitdissect-run"
FORMAT_VERSION = 1
DEFAULT_IOU_THRESHOLD = 0.04
#: The smallest accuracy drop listed as "this unit matters" (0.01 %).
MIN_DROP = 1e-4
#: Display order of concept categories (the papers' order).
CATEGORY_ORDER = ("object", "part", "material", "color", "scene", "texture")
#: How many concepts the unit page's IoU chart shows.
TOP_CONCEPTS = 10
#: Site-root names that runs may not take, and run-level names that layers may not take.
_RESERVED_RUN = {"static", "concepts", "classes", "search", "index", "img"}
_RESERVED_LAYER = {"classes", "generator", "index", "img"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,80}$")


# --------------------------------------------------------------------------- models


@dataclass(eq=False)
class ConceptRef:
    """One row of a run's concepts.csv."""

    id: int
    name: str
    category: str
    level: str = "pixel"
    frequency: int | None = None
    site: SiteConcept | None = field(default=None, repr=False)


@dataclass(eq=False)
class Unit:
    """One unit (channel) of a layer, as units.csv describes it."""

    index: int
    label: str
    category: str
    iou: float
    detector: bool
    threshold: float
    coverage: float | None
    concept_id: int | None
    runners_up: list[tuple[str, float]]
    layer: Layer = field(repr=False)

    @property
    def name(self) -> str:
        """The unit's short name, e.g. ``unit 42``."""
        return f"unit {self.index}"

    @property
    def stem(self) -> str:
        """The file stem of the unit's page and images, e.g. ``unit-0042``."""
        return f"unit-{self.index:0{self.layer.digits}d}"

    @property
    def path(self) -> str:
        """The unit page's path from the site root."""
        return f"{self.layer.dir}{self.stem}.html"

    @property
    def strip_path(self) -> str | None:
        """The path of the compact top-image strip, or None if the layer has no top-k images."""
        return f"{self.layer.dir}img/{self.stem}-strip.jpg" if self.layer.topk else None

    @property
    def concept(self) -> SiteConcept | None:
        """The site-wide concept this unit is labelled with."""
        ref = self.layer.run.concepts.get(self.concept_id) if self.concept_id is not None else None
        return ref.site if ref is not None else None


@dataclass(eq=False)
class TopK:
    """Where a layer's top-k images are, and their shape (maps are loaded when drawn)."""

    path: Path
    k: int
    map_shape: tuple[int, int]
    index: np.ndarray  # int64 [units, k]
    score: np.ndarray  # float32 [units, k]


@dataclass(eq=False)
class ClassInfo:
    """A classifier class that has ablation results in a run."""

    name: str
    slug: str
    run: Run = field(repr=False)
    layers: list[Layer] = field(default_factory=list, repr=False)

    @property
    def path(self) -> str:
        """The class page's path from the site root."""
        return f"{self.run.slug}/classes/{self.slug}.html"


@dataclass(eq=False)
class LayerAblation:
    """Single-unit ablation effects and removal curves of one layer (ablation/<layer>/)."""

    classes: list[ClassInfo]
    baseline: np.ndarray  # float [classes]: balanced accuracy with nothing removed
    accuracy: float | None  # overall accuracy with nothing removed
    single_unit: np.ndarray  # float [units, classes]: balanced accuracy with that unit removed
    curves: dict[int, dict[str, list[dict[str, float]]]]  # class -> order -> rows
    # int [classes, units]: each class's units, most important first, as the curves rank them
    # (ranking.npy; None for runs that predate it)
    ranking: np.ndarray | None = None
    margin_drops: np.ndarray | None = None  # [units, classes]: drop of the mean logit margin
    splits: dict[str, str] = field(default_factory=lambda: {"rank": "train", "eval": "val"})
    # the science check (science.json): its headline and, per class, top-k vs random-k drops
    science: dict[str, Any] | None = None
    drops: np.ndarray = field(init=False, repr=False)  # [units, classes]: baseline - single_unit
    positions: np.ndarray | None = field(init=False, repr=False)  # [units, classes]: 0 = first

    def __post_init__(self) -> None:
        self.drops = self.baseline[None, :] - self.single_unit
        self.positions = None
        if self.ranking is not None:
            self.positions = np.argsort(self.ranking, axis=1).T

    def top_units(self, class_index: int, k: int) -> list[int]:
        """A class's ``k`` most important units: the ranking's, else by the drop on eval."""
        if self.ranking is not None:
            return [int(u) for u in self.ranking[class_index, :k]]
        order = np.argsort(-self.drops[:, class_index], kind="stable")[:k]
        return [int(u) for u in order if self.drops[u, class_index] >= MIN_DROP]

    def class_index(self, cls: ClassInfo) -> int:
        """The column of a class in this layer's arrays."""
        return next(i for i, c in enumerate(self.classes) if c is cls)


@dataclass(eq=False)
class GalleryStrip:
    """One before/after strip of generated samples (generator/<layer>/gallery/gallery.json)."""

    kind: str  # ablation | insertion
    concept: str
    source: Path  # the PNG in the run directory
    file: str  # its file name (copied beside the generator page)
    samples: list[int]
    units: list[int]  # the units switched off or forced on
    n_removed: int | None = None  # ablation: how many units
    added_fraction: list[float] | None = None  # insertion: per sample, inside the box


@dataclass(eq=False)
class GeneratorLayer:
    """Generator experiments on one layer (generator/<layer>/)."""

    ablation: dict[str, list[dict[str, float]]]  # concept -> rows sorted by n_removed
    insertion: dict[str, list[dict[str, Any]]]  # concept -> rows (context, added_fraction, n)
    science: dict[str, Any] | None = None  # science.json
    ranking: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # concept -> (unit, iou)
    strips: list[GalleryStrip] = field(default_factory=list)

    def strips_with(self, unit: int) -> list[GalleryStrip]:
        """The gallery strips whose edit switched this unit off or on."""
        return [s for s in self.strips if unit in s.units]

    @property
    def concepts(self) -> list[str]:
        """Every concept with a generator experiment, in first-seen order."""
        return list(dict.fromkeys([*self.ablation, *self.insertion]))


@dataclass(eq=False)
class Layer:
    """One dissected layer of a run."""

    run: Run = field(repr=False)
    name: str
    slug: str
    depth: int
    units: list[Unit] = field(default_factory=list, repr=False)
    shape: list[int] | None = None
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    iou: np.ndarray | None = field(default=None, repr=False)
    top_concepts: np.ndarray | None = field(default=None, repr=False)  # int [units, TOP]
    histogram: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    topk: TopK | None = field(default=None, repr=False)
    ablation: LayerAblation | None = field(default=None, repr=False)
    generator: GeneratorLayer | None = field(default=None, repr=False)

    @property
    def dir(self) -> str:
        """The layer's folder from the site root, with a trailing slash."""
        return f"{self.run.slug}/{self.slug}/"

    @property
    def path(self) -> str:
        """The layer page's path from the site root."""
        return f"{self.dir}index.html"

    @property
    def generator_path(self) -> str:
        """The generator page's path from the site root."""
        return f"{self.run.slug}/generator/{self.slug}.html"

    @property
    def gallery_dir(self) -> str:
        """The folder of the generator page's gallery images, from the site root."""
        return f"{self.run.slug}/generator/{self.slug}/"

    @property
    def digits(self) -> int:
        """Zero padding of unit numbers in file names (4, or more for huge layers)."""
        return max(4, len(str(max(len(self.units) - 1, 0))))

    @property
    def detectors(self) -> dict[str, int]:
        """Number of detector units per category, in CATEGORY_ORDER."""
        return _count_by_category(u.category for u in self.units if u.detector)

    @property
    def unique_detectors(self) -> dict[str, int]:
        """Number of distinct concepts detected per category, in CATEGORY_ORDER."""
        seen = {(u.label, u.category) for u in self.units if u.detector}
        return _count_by_category(c for _, c in seen)

    @property
    def detector_count(self) -> int:
        """Number of units whose IoU is above the layer's IoU threshold."""
        return sum(1 for u in self.units if u.detector)


@dataclass(eq=False)
class Run:
    """One run directory."""

    path: Path
    slug: str
    name: str
    manifest: dict[str, Any]
    concepts: dict[int, ConceptRef] = field(default_factory=dict, repr=False)
    layers: list[Layer] = field(default_factory=list, repr=False)
    classes: list[ClassInfo] = field(default_factory=list, repr=False)

    @property
    def page_path(self) -> str:
        """The run page's path from the site root."""
        return f"{self.slug}/index.html"

    @property
    def model_spec(self) -> str:
        """The model spec the run dissected."""
        return portable_spec(str(_get(self.manifest, "model", "spec", default="unknown model")))

    @property
    def dataset_spec(self) -> str:
        """The dataset spec the run probed with."""
        return portable_spec(str(_get(self.manifest, "dataset", "spec",
                                      default="unknown dataset")))

    @property
    def random_weights(self) -> bool:
        """Whether the model ran on a random initialisation (older manifests: no weights file
        for a torchvision model)."""
        flag = _get(self.manifest, "model", "random_weights")
        if flag is not None:
            return bool(flag)
        weights = _get(self.manifest, "model", "weights")
        return weights == "random" or (weights is None and
                                       self.model_spec.startswith("torchvision:"))

    @property
    def seed(self) -> int | None:
        """The seed of the model's initialisation, as recorded."""
        value = _get(self.manifest, "model", "seed")
        return int(value) if isinstance(value, int) else None

    @property
    def published_manifest(self) -> dict[str, Any]:
        """The manifest as pages show it: no absolute path of the machine that made it."""
        return portable_tree(self.manifest)

    @property
    def display_path(self) -> str:
        """The run directory as pages name it (relative to the working folder, or its name)."""
        return portable_path(self.path)

    @property
    def dataset_label(self) -> str:
        """What the run probed with, for readers: the spec, or for a generator's own samples
        their number (their spec is a path on the machine that built the run)."""
        if self.generated:
            images = _get(self.manifest, "dataset", "images")
            count = f"{int(images):,} " if isinstance(images, (int, float)) else ""
            return f"{count}of its own samples"
        return self.dataset_spec

    @property
    def dataset_path(self) -> str | None:
        """Where the probe dataset was, as recorded in the manifest."""
        value = _get(self.manifest, "dataset", "path")
        return str(value) if value else None

    @property
    def generated(self) -> bool:
        """Whether the probe images are a generator's samples (the dataset path is then its
        sample cache, read with ``builder.generator.SampleStore``)."""
        return _get(self.manifest, "dataset", "inputs") == "latents"

    @property
    def image_size(self) -> int | None:
        """The probe images' size recorded in the manifest."""
        value = _get(self.manifest, "dataset", "image_size")
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    @property
    def units_total(self) -> int:
        """Number of units over all layers."""
        return sum(len(layer.units) for layer in self.layers)

    @property
    def has_generator(self) -> bool:
        """Whether any layer has generator results."""
        return any(layer.generator for layer in self.layers)


@dataclass(eq=False)
class ConceptLayerStats:
    """How one layer relates to one concept."""

    layer: Layer
    concept_id: int
    best_iou: float
    best_unit: Unit
    detectors: list[Unit]


@dataclass(eq=False)
class SiteConcept:
    """A concept across every run, keyed by (name, category)."""

    name: str
    category: str
    level: str
    slug: str
    layers: list[ConceptLayerStats] = field(default_factory=list, repr=False)

    @property
    def path(self) -> str:
        """The concept page's path from the site root."""
        return f"concepts/{self.slug}.html"

    @property
    def detector_units(self) -> list[Unit]:
        """Every unit, in any layer of any run, that detects this concept."""
        return [u for stats in self.layers for u in stats.detectors]

    @property
    def best(self) -> ConceptLayerStats | None:
        """The layer whose best unit has the highest IoU with this concept."""
        return max(self.layers, key=lambda s: s.best_iou, default=None)


@dataclass(eq=False)
class Site:
    """Everything the site shows, gathered from the run directories."""

    runs: list[Run]
    concepts: list[SiteConcept]
    created: str

    @property
    def layers(self) -> list[Layer]:
        """Every layer of every run."""
        return [layer for run in self.runs for layer in run.layers]

    @property
    def units(self) -> list[Unit]:
        """Every unit of every run."""
        return [unit for layer in self.layers for unit in layer.units]

    @property
    def classes(self) -> list[ClassInfo]:
        """Every class with ablation results, over all runs."""
        return [c for run in self.runs for c in run.classes]

    @property
    def concept_categories(self) -> dict[str, int]:
        """Number of concepts per category, in CATEGORY_ORDER."""
        return _count_by_category(c.category for c in self.concepts)


# --------------------------------------------------------------------------- helpers


def slugify(text: str, fallback: str = "item") -> str:
    """Lower-case ASCII words joined by dashes, safe as a file name."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].strip("-")
    return slug or fallback


class _Slugs:
    """Hands out unique slugs within one folder."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self.used = set(reserved)

    def take(self, *candidates: str) -> str:
        for candidate in candidates:
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate
        base, n = candidates[-1], 2
        while f"{base}-{n}" in self.used:
            n += 1
        self.used.add(f"{base}-{n}")
        return f"{base}-{n}"


def _get(mapping: Any, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return default
        mapping = mapping[key]
    return mapping


def _count_by_category(categories: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for category in categories:
        counts[category] = counts.get(category, 0) + 1
    ordered = {c: counts.pop(c) for c in CATEGORY_ORDER if c in counts}
    ordered.update(sorted(counts.items()))
    return ordered


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    return rows


def _number(path: Path, row: int, column: str, value: str | None, kind: type = float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: row {row}: {column} is not a number: {value!r}") from None
    if kind is float and not math.isfinite(number):
        raise DatasetError(f"{path}: row {row}: {column} is not finite: {value!r}")
    return number


def _optional_number(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable .npy array ({e})") from None


def _load_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DatasetError(f"{path}: missing array(s) {', '.join(missing)}")
            return {k: data[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: not a readable .npz archive ({e})") from None


def _npz_shape(path: Path, key: str) -> tuple[int, ...]:
    """The shape of one array of an .npz archive, read from its header only."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(f)
            return tuple(shape)
    except KeyError:
        raise DatasetError(f"{path}: missing array {key}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: not a readable .npz archive ({e})") from None


# --------------------------------------------------------------------------- readers


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise DatasetError(f"run directory not found: {run_dir}")
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise DatasetError(
            f"not a run directory (no manifest.json): {run_dir}",
            hint="pass a folder written by `unitdissect dissect`",
        )
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a unitdissect run manifest (format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise DatasetError(f"{path}: format_version must be a positive integer")
    if version > FORMAT_VERSION:
        raise DatasetError(
            f"{path}: run format version {version} is newer than this unitdissect reads "
            f"({FORMAT_VERSION})",
            hint="upgrade unitdissect",
        )
    return manifest


def _read_concepts(run_dir: Path) -> dict[int, ConceptRef]:
    path = run_dir / "concepts.csv"
    if not path.is_file():
        raise DatasetError(f"run directory has no concepts.csv: {run_dir}")
    concepts: dict[int, ConceptRef] = {}
    for n, row in enumerate(_read_csv(path, ("id", "name", "category")), start=2):
        cid = _number(path, n, "id", row["id"], int)
        if cid < 1 or cid in concepts:
            raise DatasetError(f"{path}: row {n}: id {cid} is not a new id >= 1")
        frequency = _optional_number(row.get("frequency"))
        concepts[cid] = ConceptRef(
            id=cid,
            name=row["name"] or f"concept {cid}",
            category=row["category"] or "other",
            level=row.get("level") or "pixel",
            frequency=int(frequency) if frequency is not None else None,
        )
    return concepts


def _layer_names(run_dir: Path, manifest: dict[str, Any]) -> list[str]:
    layers_dir = run_dir / "layers"
    listed = _get(manifest, "model", "layers", default=[]) or []
    found = sorted(p.name for p in layers_dir.iterdir() if p.is_dir()) if layers_dir.is_dir() else []
    for name in listed:
        if name not in found:
            raise DatasetError(
                f"{run_dir}: layer {name} is in the manifest but layers/{name}/ is missing",
                hint="is the dissection still running?",
            )
    names = [str(n) for n in listed] + [n for n in found if n not in listed]
    if not names:
        raise DatasetError(f"{run_dir}: no dissected layers (layers/ is empty or missing)")
    return names


def _read_units(layer: Layer, folder: Path) -> None:
    path = folder / "units.csv"
    if not path.is_file():
        raise DatasetError(f"{folder}: no units.csv", hint="is the dissection still running?")
    rows = _read_csv(path, ("unit", "label", "category", "iou", "threshold"))
    by_name = {(c.name, c.category): c.id for c in layer.run.concepts.values()}
    units: list[Unit] = []
    for n, row in enumerate(rows, start=2):
        index = _number(path, n, "unit", row["unit"], int)
        iou = _number(path, n, "iou", row["iou"])
        detector_text = row.get("detector")
        detector = detector_text.strip() in ("1", "true", "True") if detector_text else iou > layer.iou_threshold
        concept_id = _optional_number(row.get("concept_id"))
        runners = []
        for i in (2, 3):
            name, value = row.get(f"label{i}"), _optional_number(row.get(f"iou{i}"))
            if name and value is not None:
                runners.append((name, value))
        units.append(
            Unit(
                index=index,
                label=row["label"] or "",
                category=row["category"] or "",
                iou=iou,
                detector=detector and bool(row["label"]),
                threshold=_number(path, n, "threshold", row["threshold"]),
                coverage=_optional_number(row.get("coverage")),
                concept_id=int(concept_id)
                if concept_id is not None
                else by_name.get((row["label"], row["category"])),
                runners_up=runners,
                layer=layer,
            )
        )
    units.sort(key=lambda u: u.index)
    if [u.index for u in units] != list(range(len(units))):
        raise DatasetError(f"{path}: units must be numbered 0..{len(units) - 1}, once each")
    layer.units = units


def _read_iou(layer: Layer, folder: Path) -> None:
    path = folder / "iou.npy"
    if not path.is_file():
        raise DatasetError(f"{folder}: no iou.npy")
    iou = _load_npy(path)
    if iou.ndim != 2 or iou.shape[0] != len(layer.units):
        raise DatasetError(
            f"{path}: shape {list(iou.shape)} does not match {len(layer.units)} units in units.csv"
        )
    iou = np.nan_to_num(iou.astype(np.float32, copy=False))
    layer.iou = iou
    top = min(TOP_CONCEPTS, iou.shape[1])
    part = np.argpartition(-iou, top - 1, axis=1)[:, :top] if top else np.zeros((len(iou), 0), int)
    order = np.argsort(-np.take_along_axis(iou, part, axis=1), axis=1, kind="stable")
    layer.top_concepts = np.take_along_axis(part, order, axis=1)


def _read_histogram(layer: Layer, folder: Path) -> None:
    path = folder / "histogram.npz"
    if not path.is_file():
        return
    data = _load_npz(path, ("edges", "counts"))
    edges, counts = data["edges"], data["counts"]
    n = len(layer.units)
    if edges.ndim != 2 or counts.ndim != 2 or len(edges) != n or len(counts) != n:
        raise DatasetError(f"{path}: edges/counts must have one row per unit ({n})")
    if edges.shape[1] != counts.shape[1] + 1:
        raise DatasetError(f"{path}: edges must have one more column than counts")
    layer.histogram = (edges.astype(np.float64), counts.astype(np.int64))


def _read_topk(layer: Layer, folder: Path) -> None:
    path = folder / "topk.npz"
    if not path.is_file():
        return
    data = _load_npz(path, ("index", "score"))
    shape = _npz_shape(path, "maps")
    n = len(layer.units)
    index, score = data["index"], data["score"]
    if index.ndim != 2 or index.shape[0] != n or score.shape != index.shape:
        raise DatasetError(f"{path}: index/score must be [units={n}, k]")
    if len(shape) != 4 or shape[:2] != index.shape:
        raise DatasetError(f"{path}: maps must be [units, k, h, w] matching index {list(index.shape)}")
    if index.size and index.min() < 0:
        raise DatasetError(f"{path}: negative image index")
    layer.topk = TopK(path, int(index.shape[1]), (int(shape[2]), int(shape[3])), index, score)


def _read_layer(run: Run, name: str, depth: int, slugs: _Slugs) -> Layer:
    folder = run.path / "layers" / name
    safe = name if _SAFE_NAME.match(name) and name.lower() not in _RESERVED_LAYER else slugify(name, "layer")
    layer = Layer(run=run, name=name, slug=slugs.take(safe), depth=depth)
    info_path = folder / "layer.json"
    info = _read_json(info_path) if info_path.is_file() else {}
    options_threshold = _get(run.manifest, "options", "iou_threshold")
    threshold = info.get("iou_threshold", options_threshold) if isinstance(info, dict) else None
    layer.iou_threshold = float(threshold) if isinstance(threshold, (int, float)) else DEFAULT_IOU_THRESHOLD
    shape = info.get("shape") if isinstance(info, dict) else None
    layer.shape = [int(s) for s in shape] if isinstance(shape, list) else None
    _read_units(layer, folder)
    _read_iou(layer, folder)
    _read_histogram(layer, folder)
    _read_topk(layer, folder)
    return layer


def _read_ablation(run: Run, layer: Layer, classes: dict[str, ClassInfo], slugs: _Slugs) -> None:
    folder = run.path / "ablation" / layer.name
    single_path = folder / "single_unit.npy"
    if not single_path.is_file():
        return
    single = _load_npy(single_path).astype(np.float64)
    baseline_path = folder / "baseline.json"
    baseline = _read_json(baseline_path) if baseline_path.is_file() else {}
    if single.ndim != 2 or single.shape[0] != len(layer.units):
        raise DatasetError(f"{single_path}: must be [units={len(layer.units)}, classes]")
    n_classes = single.shape[1]
    names = _get(baseline, "classes") or [f"class {i}" for i in range(n_classes)]
    base = _get(baseline, "balanced_accuracy")
    if len(names) != n_classes or (base is not None and len(base) != n_classes):
        raise DatasetError(f"{baseline_path}: classes/balanced_accuracy must list {n_classes} classes")
    base_values = np.asarray(base, dtype=np.float64) if base is not None else single.max(axis=0)
    infos = []
    for name in names:
        name = str(name)
        if name not in classes:
            classes[name] = ClassInfo(name=name, slug=slugs.take(slugify(name, "class")), run=run)
            run.classes.append(classes[name])
        classes[name].layers.append(layer)
        infos.append(classes[name])
    position = {c.name: i for i, c in enumerate(infos)}
    curves: dict[int, dict[str, list[dict[str, float]]]] = {}
    curves_path = folder / "curves.csv"
    if curves_path.is_file():
        required = ("class", "order", "n_removed", "balanced_accuracy")
        for n, row in enumerate(_read_csv(curves_path, required), start=2):
            key = row["class"]
            i = position.get(key)
            if i is None and key.isdigit() and int(key) < n_classes:
                i = int(key)
            if i is None:
                raise DatasetError(f"{curves_path}: row {n}: unknown class {key!r}")
            curves.setdefault(i, {}).setdefault(row["order"], []).append(
                {
                    "n_removed": _number(curves_path, n, "n_removed", row["n_removed"], int),
                    "balanced_accuracy": _number(curves_path, n, "balanced_accuracy", row["balanced_accuracy"]),
                    "accuracy": _optional_number(row.get("accuracy")),
                }
            )
        for orders in curves.values():
            for rows in orders.values():
                rows.sort(key=lambda r: r["n_removed"])
    accuracy = _get(baseline, "accuracy")
    ranking = None
    ranking_path = folder / "ranking.npy"
    if ranking_path.is_file():
        ranking = _load_npy(ranking_path)
        units = len(layer.units)
        if ranking.shape != (n_classes, units) or not np.array_equal(
                np.sort(ranking, axis=1), np.broadcast_to(np.arange(units), ranking.shape)):
            raise DatasetError(f"{ranking_path}: must hold a permutation of the {units} units "
                               f"for each of the {n_classes} classes")
        ranking = ranking.astype(np.int64)
    margin_drops = None
    margin_path, base_margin = folder / "single_unit_margin.npy", _get(baseline, "margin")
    if margin_path.is_file() and isinstance(base_margin, list) and len(base_margin) == n_classes:
        margin = _load_npy(margin_path).astype(np.float64)
        if margin.shape == single.shape:
            margin_drops = np.asarray([np.nan if m is None else m for m in base_margin],
                                      dtype=np.float64)[None, :] - margin
    splits = _get(baseline, "splits")
    science_path = folder / "science.json"
    science = _read_json(science_path) if science_path.is_file() else None
    if science is not None and not (isinstance(science, dict) and isinstance(
            science.get("per_class"), list) and all(isinstance(r, dict) for r in science["per_class"])):
        raise DatasetError(f"{science_path}: must be an object with a per_class list")
    layer.ablation = LayerAblation(
        classes=infos,
        baseline=base_values,
        accuracy=float(accuracy) if isinstance(accuracy, (int, float)) else None,
        single_unit=single,
        curves=curves,
        ranking=ranking,
        margin_drops=margin_drops,
        science=science,
        splits={k: str(splits.get(k, d)) for k, d in (("rank", "train"), ("eval", "val"))}
        if isinstance(splits, dict) else {"rank": "train", "eval": "val"},
    )


def _read_generator(run: Run, layer: Layer) -> None:
    folder = run.path / "generator" / layer.name
    ablation_path, insertion_path = folder / "ablation.csv", folder / "insertion.csv"
    ablation: dict[str, list[dict[str, float]]] = {}
    insertion: dict[str, list[dict[str, Any]]] = {}
    if ablation_path.is_file():
        required = ("concept", "n_removed", "fraction_remaining")
        for n, row in enumerate(_read_csv(ablation_path, required), start=2):
            ablation.setdefault(row["concept"], []).append(
                {
                    "n_removed": _number(ablation_path, n, "n_removed", row["n_removed"], int),
                    "fraction_remaining": _number(
                        ablation_path, n, "fraction_remaining", row["fraction_remaining"]
                    ),
                    "ci_low": _optional_number(row.get("ci_low")),
                    "ci_high": _optional_number(row.get("ci_high")),
                }
            )
        for rows in ablation.values():
            rows.sort(key=lambda r: r["n_removed"])
    if insertion_path.is_file():
        required = ("concept", "context", "added_fraction")
        for n, row in enumerate(_read_csv(insertion_path, required), start=2):
            count = _optional_number(row.get("n"))
            insertion.setdefault(row["concept"], []).append(
                {
                    "context": row["context"],
                    "added_fraction": _number(insertion_path, n, "added_fraction", row["added_fraction"]),
                    "n": int(count) if count is not None else None,
                }
            )
    if ablation or insertion:
        science_path = folder / "science.json"
        science = _read_json(science_path) if science_path.is_file() else None
        layer.generator = GeneratorLayer(
            ablation=ablation,
            insertion=insertion,
            science=science if isinstance(science, dict) else None,
            ranking=_read_ranking(folder / "concept_units.csv", len(layer.units)),
            strips=_read_gallery(folder / "gallery", len(layer.units)),
        )


def _read_ranking(path: Path, units: int) -> dict[str, list[tuple[int, float]]]:
    """concept_units.csv: each concept's units, best IoU first."""
    ranking: dict[str, list[tuple[int, float]]] = {}
    if not path.is_file():
        return ranking
    for n, row in enumerate(_read_csv(path, ("concept", "rank", "unit", "iou")), start=2):
        unit = _number(path, n, "unit", row["unit"], int)
        if not 0 <= unit < units:
            raise DatasetError(f"{path}: row {n}: unit {unit} is not a unit of the layer ({units})")
        rank = _number(path, n, "rank", row["rank"], int)
        ranking.setdefault(row["concept"], []).append((rank, unit, _number(path, n, "iou", row["iou"])))
    return {c: [(u, iou) for _, u, iou in sorted(rows)] for c, rows in ranking.items()}


def _read_gallery(folder: Path, units: int) -> list[GalleryStrip]:
    """gallery.json: the strips whose PNG is present (file names must be plain and safe)."""
    path = folder / "gallery.json"
    if not path.is_file():
        return []
    data = _read_json(path)
    strips = []
    for i, entry in enumerate(_get(data, "strips", default=[]) or []):
        file = str(_get(entry, "file", default=""))
        if not _SAFE_NAME.match(file) or not file.endswith(".png"):
            raise DatasetError(f"{path}: strip {i}: file {file!r} must be a plain .png name")
        if not (folder / file).is_file():
            continue  # a gallery is an illustration: a missing picture drops only its strip
        chosen = [int(u) for u in _get(entry, "units", default=[]) or [] if isinstance(u, int)]
        if any(not 0 <= u < units for u in chosen):
            raise DatasetError(f"{path}: strip {i}: a unit is not a unit of the layer ({units})")
        n_removed = _get(entry, "n_removed")
        added = _get(entry, "added_fraction")
        strips.append(GalleryStrip(
            kind=str(_get(entry, "kind", default="ablation")),
            concept=str(_get(entry, "concept", default="")),
            source=folder / file,
            file=file,
            samples=[int(x) for x in _get(entry, "samples", default=[]) or []],
            units=chosen,
            n_removed=int(n_removed) if isinstance(n_removed, int) else None,
            added_fraction=[float(x) for x in added] if isinstance(added, list) else None,
        ))
    return strips


#: Optional per-layer sections, read after the layers: add a reader here for a new experiment.
_SECTION_READERS = (_read_generator,)


def read_run(run_dir: str | Path, slug: str = "") -> Run:
    """Read and validate one run directory (raises DatasetError with one clear line)."""
    path = Path(run_dir).expanduser()
    manifest = _read_manifest(path)
    name = path.resolve().name or "run"
    run = Run(path=path, slug=slug or slugify(name, "run"), name=name, manifest=manifest)
    run.concepts = _read_concepts(path)
    layer_slugs = _Slugs(_RESERVED_LAYER)
    run.layers = [
        _read_layer(run, layer_name, depth, layer_slugs)
        for depth, layer_name in enumerate(_layer_names(path, manifest))
    ]
    classes: dict[str, ClassInfo] = {}
    class_slugs = _Slugs({"index"})
    for layer in run.layers:
        _read_ablation(run, layer, classes, class_slugs)
        for reader in _SECTION_READERS:
            reader(run, layer)
    return run


def _link_concepts(runs: Sequence[Run]) -> list[SiteConcept]:
    """Merge the runs' vocabularies by (name, category) and collect each concept's layers."""
    merged: dict[tuple[str, str], SiteConcept] = {}
    refs = sorted(
        (ref for run in runs for ref in run.concepts.values()), key=lambda r: (r.name.lower(), r.category)
    )
    slugs = _Slugs({"index"})
    for ref in refs:
        key = (ref.name, ref.category)
        if key not in merged:
            base = slugify(ref.name, "concept")
            merged[key] = SiteConcept(
                ref.name, ref.category, ref.level, slugs.take(base, f"{base}-{slugify(ref.category)}")
            )
        ref.site = merged[key]
    for run in runs:
        for layer in run.layers:
            if layer.iou is None:
                continue
            columns = layer.iou.shape[1]
            best_units = layer.iou.argmax(axis=0) if len(layer.units) else np.zeros(columns, int)
            detectors: dict[int, list[Unit]] = {}
            for unit in layer.units:
                if unit.detector and unit.concept_id is not None:
                    detectors.setdefault(unit.concept_id, []).append(unit)
            for ref in run.concepts.values():
                if ref.id >= columns or not layer.units or ref.site is None:
                    continue
                best = int(best_units[ref.id])
                ref.site.layers.append(
                    ConceptLayerStats(
                        layer=layer,
                        concept_id=ref.id,
                        best_iou=float(layer.iou[best, ref.id]),
                        best_unit=layer.units[best],
                        detectors=sorted(detectors.get(ref.id, []), key=lambda u: -u.iou),
                    )
                )
    return sorted(merged.values(), key=lambda c: (c.name.lower(), c.category))


def gather_site(run_dirs: Sequence[str | Path]) -> Site:
    """Read every run directory into one Site model (nothing is written)."""
    if not run_dirs:
        raise DatasetError("no run directory given")
    slugs = _Slugs(_RESERVED_RUN)
    runs: list[Run] = []
    seen: set[Path] = set()
    for run_dir in run_dirs:
        resolved = Path(run_dir).expanduser().resolve()
        if resolved in seen:
            raise DatasetError(f"run directory given twice: {run_dir}")
        seen.add(resolved)
        run = read_run(run_dir)
        run.slug = slugs.take(run.slug)
        runs.append(run)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Site(runs=runs, concepts=_link_concepts(runs), created=created)

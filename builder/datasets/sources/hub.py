"""Hugging Face hub datasets as sources: one small adapter per dataset schema.

Spec: ``hf:NAME[@REVISION][?key=value&...]`` with keys ``split``, ``repo`` (another hub copy
in the same schema), ``path`` (a local folder or file in that schema, instead of the hub),
``data_files``, ``labels`` (label-name file of the label-map adapters). The same keys may be
given as keyword options. Adapters, and the schema each expects, are listed in
docs/sources.md:

- ``ade20k``: ADE20K full (objects, parts of every level, scenes), ``1aurent/ADE20K``;
- ``dtd``: Describable Textures (one texture per image), ``tanganke/dtd``;
- ``scene-parse-150``: the MIT Scene Parsing benchmark (ADE20K's 150 classes, scenes), the
  parquet branch of ``zhoubolei/scene_parse_150``;
- ``pascal-context``, ``pascal-part``: label-map images plus an ``id2label.json`` (no public
  hub copy with these annotations is known: give ``path=`` or ``repo=``).

Rows are read raw (arrow cells) and decoded here, so a corrupt image or mask is a
``BadSampleError`` for that row only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence
from urllib.parse import parse_qsl

import numpy as np

from ...errors import BadSampleError, DatasetError, SpecError
from ...fingerprint import file_sha256, fingerprint
from .base import CATEGORIES, SourceConcept, SourceSample
from .broden import read_label_array, read_rgb_image

__all__ = ["ADAPTERS", "ADE20KSource", "DTDSource", "HUB_OPTIONS", "HubSource",
           "LabelMapSource", "PascalContextSource", "PascalPartSource", "SceneParse150Source",
           "open_hub_source", "parse_hub_spec"]

#: Bumped whenever an adapter's mapping changes (it enters the fingerprints).
ADAPTER_VERSION = 1

#: The options a hub spec or a caller may give.
HUB_OPTIONS = ("split", "revision", "repo", "path", "data_files", "cache_dir", "labels")
_QUERY_KEYS = ("split", "repo", "path", "data_files", "labels")
_LOCAL_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json",
                   ".jsonl": "json", ".csv": "csv"}


@dataclass(frozen=True)
class HubConfig:
    """Where an adapter's rows come from."""

    repo: str | None
    revision: str | None
    split: str
    path: str | None
    data_files: str | list[str] | None
    cache_dir: str | None
    labels: str | None
    data_dir: str | None = None  # a folder of the repo (or of path=) holding the split files


def _wordnet_name(text: str) -> tuple[str, tuple[str, ...]]:
    """``"traffic light, traffic signal"`` -> ``("traffic light", ("traffic signal",))``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    return (parts[0], tuple(parts[1:])) if parts else (text.strip(), ())


def _aliases(text: str) -> tuple[str, ...]:
    name, synonyms = _wordnet_name(text)
    return (name, *synonyms)


class HubSource:
    """Base of the adapters: loads one split, builds the vocabulary, maps rows to samples."""

    name = "hub"
    default_repo: str | None = None
    #: Branch or commit of ``default_repo`` read when the spec names none (e.g. a parquet branch).
    default_revision: str | None = None
    #: Folder of ``default_repo`` (or of a local copy, if it has one) holding the split files.
    default_data_dir: str | None = None
    default_split = "train"
    required_columns: tuple[str, ...] = ("image",)

    def __init__(self, repo: str | None = None, revision: str | None = None,
                 split: str | None = None, path: str | Path | None = None,
                 data_files: str | list[str] | None = None,
                 cache_dir: str | Path | None = None, labels: str | None = None) -> None:
        if path is None and not (repo or self.default_repo):
            raise SpecError(f"hf:{self.name}: no public hub copy with these annotations is "
                            "known; give path=DIR (a local copy) or repo=OWNER/NAME",
                            hint="the expected schema is in docs/sources.md")
        repo = None if path is not None else (repo or self.default_repo)
        local = str(Path(path).expanduser()) if path is not None else None
        default_copy = local is None and repo == self.default_repo
        self.config = HubConfig(repo=repo,
                                revision=revision or (self.default_revision if default_copy
                                                      else None),
                                split=split or self.default_split, path=local,
                                data_files=data_files,
                                cache_dir=str(cache_dir) if cache_dir is not None else None,
                                labels=labels, data_dir=self._data_dir(default_copy, local,
                                                                       data_files))
        self._ds = self._load()
        missing = [c for c in self.required_columns if c not in self._ds.column_names]
        if missing:
            raise DatasetError(f"{self._where()}: missing column(s) {', '.join(missing)} "
                               f"(has: {', '.join(self._ds.column_names)}); "
                               f"see docs/sources.md for the hf:{self.name} schema")
        self._rows = self._ds.with_format("arrow")
        self._local_hashes: tuple | None = None
        self._concepts: list[SourceConcept] = self._vocabulary()

    # -- loading ----------------------------------------------------------------------
    def _data_dir(self, default_copy: bool, local: str | None,
                  data_files: str | list[str] | None) -> str | None:
        """``default_data_dir`` where it applies: the default repo, or a local copy that has it.

        Given ``data_files`` name the files themselves, so no folder is implied then.
        """
        if self.default_data_dir is None or data_files is not None:
            return None
        if default_copy or (local is not None and (Path(local) / self.default_data_dir).is_dir()):
            return self.default_data_dir
        return None

    def _where(self) -> str:
        c = self.config
        origin = c.path if c.path is not None else c.repo + (f"@{c.revision}" if c.revision
                                                             else "")
        return f"hf:{self.name} ({origin}, split {c.split})"

    def _load(self):
        import datasets

        c = self.config
        kwargs: dict[str, Any] = {"split": c.split, "cache_dir": c.cache_dir}
        if c.path is not None:
            p = Path(c.path)
            if not p.exists():
                raise DatasetError(f"hf:{self.name}: local path not found: {p}")
            if p.is_file():
                builder = _LOCAL_BUILDERS.get(p.suffix.lower())
                if builder is None:
                    raise DatasetError(f"hf:{self.name}: cannot read {p} (expected a folder "
                                       f"or a {', '.join(_LOCAL_BUILDERS)} file)")
                args: tuple = (builder,)
                kwargs["data_files"] = {re.split(r"[\[+]", c.split)[0]: str(p)}
            else:
                args = (str(p),)
                kwargs["data_files"] = c.data_files
        else:
            args = (c.repo,)
            kwargs.update(revision=c.revision, data_files=c.data_files)
        if c.data_dir is not None:
            kwargs["data_dir"] = c.data_dir
        try:
            return datasets.load_dataset(*args, **kwargs)
        except Exception as e:  # any failure to load is the data's or the network's
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise DatasetError(f"{self._where()}: cannot load: {type(e).__name__}: {first}",
                               hint="check the split name; offline (HF_HUB_OFFLINE=1), the hub "
                                    "copy must be in the cache, or give path=DIR") from e

    def _local_files(self) -> list[Path]:
        p = Path(self.config.path)
        if p.is_file():
            return [p]
        return sorted(f for f in p.rglob("*") if f.is_file()
                      and not any(s.startswith(".") for s in f.relative_to(p).parts))

    # -- the Source protocol ----------------------------------------------------------
    def concepts(self) -> Sequence[SourceConcept]:
        """The adapter's vocabulary, gathered from the whole split."""
        return list(self._concepts)

    def __len__(self) -> int:
        """The number of rows of the split."""
        return len(self._ds)

    def fingerprint(self) -> str:
        """Adapter, repo, revision, split, and the content of local files (or the hub's)."""
        c = self.config
        if c.path is not None:
            if self._local_hashes is None:
                root = Path(c.path)
                base = root if root.is_dir() else root.parent
                self._local_hashes = tuple((f.relative_to(base).as_posix(), file_sha256(f))
                                           for f in self._local_files())
            data: Any = self._local_hashes
        else:
            data = getattr(self._ds, "_fingerprint", None)  # changes with the resolved files
        # data_dir enters only when set, so the other adapters keep their fingerprints
        where = () if c.data_dir is None else (c.data_dir,)
        return fingerprint("hf", self.name, ADAPTER_VERSION, c.repo, c.revision, c.split,
                           c.data_files, c.labels, data, getattr(self, "_names_hash", None),
                           *where)

    def sample(self, index: int) -> SourceSample:
        """Decode row ``index`` into a SourceSample (local codes)."""
        if not 0 <= index < len(self._ds):
            raise IndexError(f"hf:{self.name} sample {index} out of range 0..{len(self) - 1}")
        row = self._rows[int(index)].to_pylist()[0]
        return self._sample(index, row, f"{self._where()} row {index}")

    # -- helpers for adapters ---------------------------------------------------------
    def _image(self, cell: Any, where: str, what: str = "image") -> np.ndarray:
        data, path = self._cell(cell, where, what)
        return read_rgb_image(data if data is not None else Path(path), where)

    def _labels_raw(self, cell: Any, where: str, what: str) -> np.ndarray:
        data, path = self._cell(cell, where, what)
        return read_label_array(data if data is not None else Path(path), f"{where} {what}")

    def _cell(self, cell: Any, where: str, what: str) -> tuple[bytes | None, str | None]:
        if isinstance(cell, dict) and (cell.get("bytes") or cell.get("path")):
            data, path = cell.get("bytes"), cell.get("path")
            if data is None and self.config.path is not None and not Path(path).is_absolute():
                path = str(Path(self.config.path) / path)
            return data, path
        raise BadSampleError(f"{where}: no {what}")

    def _sample_id(self, row: dict, index: int, column: str = "image") -> str:
        cell = row.get(column)
        path = cell.get("path") if isinstance(cell, dict) else None
        if path:
            return PurePosixPath(path).stem
        return f"{self.config.split}/{index:06d}"

    @staticmethod
    def _check_shape(labels: np.ndarray, image: np.ndarray, where: str, what: str) -> None:
        if labels.shape[:2] != image.shape[:2]:
            raise BadSampleError(f"{where}: {what} is {labels.shape[1]}x{labels.shape[0]}, "
                                 f"the image {image.shape[1]}x{image.shape[0]}")

    # -- what adapters implement ------------------------------------------------------
    def _vocabulary(self) -> list[SourceConcept]:
        raise NotImplementedError

    def _sample(self, index: int, row: dict, where: str) -> SourceSample:
        raise NotImplementedError


class ADE20KSource(HubSource):
    """ADE20K full: ``segmentations[0]`` objects, ``[k]`` parts of level k, ``scene`` list.

    Class masks use ADE20K's encoding, class = R / 10 * 256 + G, where the class is the
    ``name_ndx`` of the image's ``objects`` at that part level; the scene is the last (most
    specific) entry of ``scene``.
    """

    name = "ade20k"
    default_repo = "1aurent/ADE20K"
    default_split = "validation"
    required_columns = ("image", "segmentations", "objects")

    def _vocabulary(self) -> list[SourceConcept]:
        import pyarrow as pa
        import pyarrow.compute as pc

        parts = []
        try:
            for chunk in self._ds.data.column("objects").chunks:
                flat = chunk.flatten()
                parts.append(pa.table({
                    "ndx": pc.struct_field(flat, "name_ndx").cast(pa.int64()),
                    "level": pc.struct_field(flat, ["parts", "part_level"]).cast(pa.int64()),
                    "name": pc.struct_field(flat, "name").cast(pa.string())}))
        except (KeyError, TypeError, pa.ArrowException) as e:
            raise DatasetError(f"{self._where()}: the objects column lacks name, name_ndx or "
                               f"parts.part_level ({e}); see docs/sources.md") from None
        objects = pa.concat_tables(parts) if parts else pa.table(
            {"ndx": pa.array([], pa.int64()), "level": pa.array([], pa.int64()),
             "name": pa.array([], pa.string())})
        objects = objects.append_column("is_part", pc.greater(objects["level"], 0))
        unique = objects.group_by(["is_part", "ndx", "name"]).aggregate([]).to_pylist()
        unique.sort(key=lambda r: (r["is_part"], r["ndx"], r["name"] or ""))
        named: dict[tuple[bool, int], list[str]] = {}
        for r in unique:
            if r["ndx"] is not None and r["ndx"] > 0:
                named.setdefault((r["is_part"], r["ndx"]), []).append(r["name"] or "")
        max_ndx = max((k[1] for k in named), default=0)
        self._luts = {False: np.zeros(max_ndx + 1, np.int32),
                      True: np.zeros(max_ndx + 1, np.int32)}
        concepts: list[SourceConcept] = []
        for (is_part, ndx), names in named.items():
            name, synonyms = _wordnet_name(names[0])
            extra = tuple(alias for raw in names[1:] for alias in _aliases(raw))
            code = len(concepts) + 1
            self._luts[is_part][ndx] = code
            concepts.append(SourceConcept(code, name, "part" if is_part else "object",
                                          tuple(dict.fromkeys(synonyms + extra))))
        self._scenes: dict[str, int] = {}
        if "scene" in self._ds.column_names:
            names = sorted({s[-1] for s in self._ds.data.column("scene").to_pylist()
                            if s and s[-1]})
            for name in names:
                self._scenes[name] = len(concepts) + 1
                concepts.append(SourceConcept(len(concepts) + 1, name, "scene"))
        return concepts

    def _sample(self, index: int, row: dict, where: str) -> SourceSample:
        image = self._image(row["image"], where)
        layers = row["segmentations"] or []
        if not layers:
            raise BadSampleError(f"{where}: no segmentation masks")
        present: dict[int, set[int]] = {}
        for obj in row["objects"] or []:
            level = (obj.get("parts") or {}).get("part_level") or 0
            present.setdefault(int(level), set()).add(int(obj.get("name_ndx") or 0))
        pixel: dict[str, list[np.ndarray]] = {}
        for level, cell in enumerate(layers):
            what = "object mask" if level == 0 else f"part level {level} mask"
            raw = self._labels_raw(cell, where, what)
            if raw.ndim != 3:
                raise BadSampleError(f"{where}: {what} is not an RGB class mask")
            self._check_shape(raw, image, where, what)
            classes = (raw[..., 0].astype(np.int32) // 10) * 256 + raw[..., 1]
            found = np.unique(classes)
            stray = [int(v) for v in found if v and v not in present.get(level, ())]
            if stray:
                raise BadSampleError(f"{where}: {what} has class {stray[0]}, which no object "
                                     f"of part level {level} in this image has")
            lut = self._luts[level > 0]
            pixel.setdefault("object" if level == 0 else "part", []).append(
                lut[classes].astype(np.uint16))
        image_labels = {}
        scene = row.get("scene")
        if scene and scene[-1] in self._scenes:
            image_labels["scene"] = [self._scenes[scene[-1]]]
        name = row.get("filename")
        sample_id = PurePosixPath(name).stem if name else self._sample_id(row, index)
        return SourceSample(id=sample_id, image=image, pixel=pixel, image_labels=image_labels)


class DTDSource(HubSource):
    """Describable Textures: ``image`` and ``label`` (a ClassLabel, or the texture's name)."""

    name = "dtd"
    default_repo = "tanganke/dtd"
    default_split = "train"
    required_columns = ("image", "label")

    def _vocabulary(self) -> list[SourceConcept]:
        feature = self._ds.features["label"]
        names = getattr(feature, "names", None)
        if names is None:
            names = sorted({str(v) for v in self._ds.data.column("label").to_pylist()
                            if v is not None})
            self._codes: dict[Any, int] = {n: i + 1 for i, n in enumerate(names)}
        else:
            self._codes = {i: i + 1 for i in range(len(names))}
        return [SourceConcept(i + 1, n, "texture") for i, n in enumerate(names)]

    def _sample(self, index: int, row: dict, where: str) -> SourceSample:
        label = row["label"]
        key = label if isinstance(label, int) else str(label)
        if key not in self._codes:
            raise BadSampleError(f"{where}: texture label {label!r} is not a known class")
        image = self._image(row["image"], where)
        return SourceSample(id=self._sample_id(row, index), image=image,
                            image_labels={"texture": [self._codes[key]]})


class SceneParse150Source(HubSource):
    """MIT Scene Parsing (ADE20K, 150 classes): ``annotation`` objects, ``scene_category``.

    The annotation is a gray map of class indices, 0 = other (unlabelled), ``i`` = class ``i``
    of objectInfo150 (``sceneparse150_names.OBJECTS``); local object codes are those indices.
    ``scene_category`` is a ClassLabel (or its plain index) of ``SCENES``; scene ``k`` gets
    code ``151 + k``, and only the scenes present in the split enter the vocabulary.
    """

    name = "scene-parse-150"
    classes = 150  # object classes 1..150 of the annotation maps; scene k is code 151 + k
    default_repo = "zhoubolei/scene_parse_150"
    # the repository's own loading script is no longer run by `datasets`; the hub's automatic
    # parquet conversion of it (one folder per config) is plain data
    default_revision = "refs/convert/parquet"
    default_data_dir = "scene_parsing"
    default_split = "validation"
    required_columns = ("image", "annotation")

    def _vocabulary(self) -> list[SourceConcept]:
        from .sceneparse150_names import OBJECTS

        column = self._ds.data.column("annotation")
        if len(self._ds) and column.null_count == len(self._ds):
            raise DatasetError(f"{self._where()}: no row has an annotation (the test split of "
                               "this benchmark is not annotated)", hint="use split=validation "
                               "or split=train")
        concepts = []
        for index, names in enumerate(OBJECTS, start=1):
            name, synonyms = _wordnet_name(names)
            concepts.append(SourceConcept(index, name, "object", synonyms))
        self._scene_names = self._scene_table()
        present = self._present_scenes()
        for k in sorted(present):
            concepts.append(SourceConcept(self.classes + 1 + k, self._scene_names[k], "scene"))
        return concepts

    def _scene_table(self) -> tuple[str, ...]:
        """Scene names by ``scene_category`` index: the copy's ClassLabel, else the shipped list."""
        from .sceneparse150_names import SCENES

        if "scene_category" not in self._ds.column_names:
            return ()
        names = getattr(self._ds.features["scene_category"], "names", None)
        return tuple(names) if names else SCENES

    def _present_scenes(self) -> set[int]:
        """The scene indices that occur in the split (arrow compute: no image is decoded)."""
        import pyarrow.compute as pc

        if "scene_category" not in self._ds.column_names:
            return set()
        present = set()
        for k in pc.unique(self._ds.data.column("scene_category")).to_pylist():
            if k is None or (isinstance(k, int) and k < 0):
                continue  # no scene recorded for the row
            if not isinstance(k, int) or k >= len(self._scene_names):
                raise DatasetError(f"{self._where()}: scene_category {k!r} is not one of the "
                                   f"{len(self._scene_names)} scene classes")
            present.add(k)
        return present

    def _sample(self, index: int, row: dict, where: str) -> SourceSample:
        if row.get("annotation") is None:
            raise BadSampleError(f"{where}: no annotation")
        image = self._image(row["image"], where)
        classes = self._labels_raw(row["annotation"], where, "annotation")
        if classes.ndim != 2:
            raise BadSampleError(f"{where}: annotation is not a gray map of class indices")
        self._check_shape(classes, image, where, "annotation")
        top = int(classes.max()) if classes.size else 0
        if top > self.classes:
            raise BadSampleError(f"{where}: annotation has class {top}, outside "
                                 f"0..{self.classes}")
        image_labels = {}
        k = row.get("scene_category")
        if isinstance(k, int) and 0 <= k < len(self._scene_names):
            image_labels["scene"] = [self.classes + 1 + k]
        return SourceSample(id=self._sample_id(row, index), image=image,
                            pixel={"object": [classes.astype(np.uint16)]},
                            image_labels=image_labels)


class LabelMapSource(HubSource):
    """Label-map images (one column per category) named by an ``id2label.json`` file.

    A map is a gray or 16-bit image holding the class id (or RGB, id = R + 256 * G); 0 is
    unlabelled. ``id2label.json`` maps ids to names: ``{"1": "aeroplane", ...}`` for a single
    category, or ``{"object": {...}, "part": {...}}`` per category.
    """

    columns: dict[str, str] = {}  # column -> category
    labels_file = "id2label.json"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.required_columns = ("image", *self.columns)
        super().__init__(*args, **kwargs)

    def _names_path(self) -> Path:
        c = self.config
        if c.labels is not None and Path(c.labels).expanduser().is_file():
            return Path(c.labels).expanduser()
        filename = c.labels or self.labels_file
        if c.path is not None:
            base = Path(c.path) if Path(c.path).is_dir() else Path(c.path).parent
            return base / filename
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(c.repo, filename, repo_type="dataset",
                                        revision=c.revision))
        except Exception as e:  # offline, missing file, bad repo
            raise DatasetError(f"{self._where()}: cannot get {filename}: "
                               f"{type(e).__name__}: {e}") from e

    def _read_names(self) -> dict[str, dict[int, str]]:
        path = self._names_path()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._names_hash = file_sha256(path)
        except OSError as e:
            raise DatasetError(f"{self._where()}: cannot read label names {path} "
                               f"({e.strerror or e})") from None
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}: not valid JSON ({e})") from None
        categories = sorted(set(self.columns.values()), key=CATEGORIES.index)
        if isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
            if len(categories) != 1:
                raise DatasetError(f"{path}: give names per category "
                                   f"({', '.join(categories)}), e.g. {{\"part\": {{...}}}}")
            raw = {categories[0]: raw}
        if not isinstance(raw, dict) or any(c not in raw for c in categories):
            raise DatasetError(f"{path}: expected id -> name for categories "
                               f"{', '.join(categories)}")
        try:
            return {c: {int(k): str(v) for k, v in raw[c].items() if int(k) != 0}
                    for c in categories}
        except (ValueError, AttributeError):
            raise DatasetError(f"{path}: ids must be integers, names strings") from None

    def _vocabulary(self) -> list[SourceConcept]:
        names = self._read_names()
        concepts: list[SourceConcept] = []
        self._luts: dict[str, np.ndarray] = {}
        for cat, table in names.items():
            lut = np.zeros(max(table, default=0) + 1, np.int32)
            for class_id in sorted(table):
                lut[class_id] = len(concepts) + 1
                concepts.append(SourceConcept(len(concepts) + 1, table[class_id], cat))
            self._luts[cat] = lut
        return concepts

    def _sample(self, index: int, row: dict, where: str) -> SourceSample:
        image = self._image(row["image"], where)
        pixel: dict[str, list[np.ndarray]] = {}
        for column, cat in self.columns.items():
            if row.get(column) is None:
                continue  # not annotated for this category
            raw = self._labels_raw(row[column], where, f"{column} map")
            self._check_shape(raw, image, where, f"{column} map")
            ids = (raw[..., 0].astype(np.int64) | (raw[..., 1].astype(np.int64) << 8)
                   if raw.ndim == 3 else raw.astype(np.int64))
            lut = self._luts[cat]
            known = np.zeros(len(lut), bool)
            known[lut > 0] = True
            known[0] = True
            bad = (ids >= len(lut)) | ~known[np.minimum(ids, len(lut) - 1)]
            if bad.any():
                raise BadSampleError(f"{where}: {column} map has class {int(ids[bad][0])}, "
                                     "which the label names do not list")
            pixel.setdefault(cat, []).append(lut[ids].astype(np.uint16))
        return SourceSample(id=self._sample_id(row, index), image=image, pixel=pixel)


class PascalContextSource(LabelMapSource):
    """PASCAL-Context (459 classes of VOC 2010 images): ``image``, ``label`` (object map)."""

    name = "pascal-context"
    columns = {"label": "object"}


class PascalPartSource(LabelMapSource):
    """PASCAL-Part: ``image``, ``object`` (VOC class map) and ``part`` (part class map)."""

    name = "pascal-part"
    columns = {"object": "object", "part": "part"}


#: Adapters by the NAME of ``hf:NAME``.
ADAPTERS: dict[str, type[HubSource]] = {
    "ade20k": ADE20KSource, "dtd": DTDSource, "pascal-context": PascalContextSource,
    "pascal-part": PascalPartSource, "scene-parse-150": SceneParse150Source,
}


def parse_hub_spec(text: str) -> tuple[str, dict[str, str]]:
    """``"ade20k@REV?split=validation"`` -> ``("ade20k", {"revision": "REV", "split": ...})``."""
    body, _, query = text.strip().partition("?")
    name, at, revision = body.partition("@")
    if not name:
        raise SpecError(f"hf:{text}: missing the dataset name",
                        hint=f"expected hf:NAME with NAME one of {', '.join(ADAPTERS)}")
    options: dict[str, str] = {}
    if at:
        if not revision:
            raise SpecError(f"hf:{text}: empty revision after '@'")
        options["revision"] = revision
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _QUERY_KEYS:
            raise SpecError(f"hf:{text}: unknown option {key!r}",
                            hint=f"options: {', '.join(_QUERY_KEYS)}")
        if key in options or not value:
            raise SpecError(f"hf:{text}: option {key!r} given twice or empty")
        options[key] = value
    return name, options


def open_hub_source(text: str, **options: Any) -> HubSource:
    """Open ``hf:`` spec ``text`` (without the ``hf:``); keyword options add to the spec's."""
    name, spec_options = parse_hub_spec(text)
    if name not in ADAPTERS:
        raise SpecError(f"unknown hub dataset {name!r}",
                        hint=f"hf:NAME with NAME one of {', '.join(ADAPTERS)}")
    unknown = [k for k in options if k not in HUB_OPTIONS]
    if unknown:
        raise SpecError(f"hf:{name}: unknown option(s) {', '.join(unknown)}",
                        hint=f"options: {', '.join(HUB_OPTIONS)}")
    clash = [k for k in spec_options if options.get(k) not in (None, spec_options[k])]
    if clash:
        raise SpecError(f"hf:{text}: {', '.join(clash)} given both in the spec and as option")
    return ADAPTERS[name](**{**{k: v for k, v in options.items() if v is not None},
                             **spec_options})

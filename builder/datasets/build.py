"""Building a concept dataset from sources: normalise, merge vocabularies, name colors, cache.

Work is split in shards of images, built by worker processes and saved as they finish, so an
interrupted build resumes from the shards already on disk. The finished dataset is assembled
in a temporary folder beside the output and moved into place in one rename.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .. import __version__
from ..errors import BadSampleError, ConfigError, DatasetError
from ..fingerprint import fingerprint
from ..io import atomic_open, reporting, write_text
from ..lock import hold
from ..workers import ignore_interrupts
from .colornames import COLOR_MODEL_VERSION, name_colors
from .probe import FORMAT_NAME, FORMAT_VERSION, ProbeSet
from .sources.base import IMAGE_CATEGORIES, PIXEL_CATEGORIES, Source, SourceSample
from .vocabulary import GlobalConcept, Vocabulary, merge_vocabularies

log = logging.getLogger(__name__)


#: How images are stored: see BuildOptions.image_format.
IMAGE_FORMATS = ("original", "png", "jpeg")


@dataclass
class BuildOptions:
    """Options of a dataset build; every field enters the dataset's fingerprint."""

    image_size: int = 224
    mask_size: int = 112
    min_frequency: int = 10  # Broden kept concepts present in at least 10 images
    val_fraction: float = 0.2
    # original: a source's own image bytes when no resize is needed, else png (lossless);
    # png; or jpeg (quality 95, lossy)
    image_format: str = "original"
    strict: bool = False  # a bad sample is an error instead of being skipped
    workers: int = 0  # 0 = one per CPU core
    shard_size: int = 250

    def __post_init__(self) -> None:
        if not 8 <= self.image_size <= 4096:
            raise ConfigError(f"--image-size {self.image_size}: expected 8..4096")
        if not 4 <= self.mask_size <= self.image_size:
            raise ConfigError(f"--mask-size {self.mask_size}: expected 4..image size")
        if self.min_frequency < 0:
            raise ConfigError(f"--min-frequency {self.min_frequency}: expected >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction {self.val_fraction}: expected 0 <= f < 1")
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"--image-format {self.image_format!r}: expected "
                              + ", ".join(IMAGE_FORMATS))
        if self.shard_size < 1:
            raise ConfigError(f"shard size {self.shard_size}: expected >= 1")

    def content(self) -> dict:
        """The options that change the dataset's content (not how it is computed)."""
        d = asdict(self)
        for k in ("strict", "workers", "shard_size"):
            d.pop(k)
        return d


@dataclass
class BuildResult:
    """What a build produced: the dataset folder, whether it came from the cache, what was skipped."""

    path: Path
    fingerprint: str
    cached: bool
    images: int = 0
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def dataset_fingerprint(sources: Sequence[Source], options: BuildOptions) -> str:
    """The cache key of a build: format version, sources, content options, color model."""
    return fingerprint(FORMAT_NAME, FORMAT_VERSION, [s.fingerprint() for s in sources],
                       options.content(), COLOR_MODEL_VERSION)


def stable_split(image_id: str, val_fraction: float) -> str:
    """``val`` or ``train`` by a stable hash of the image id (the same on every machine)."""
    h = int.from_bytes(hashlib.sha1(image_id.encode("utf-8")).digest()[:8], "big")
    return "val" if h / 2.0**64 < val_fraction else "train"


def _features(pixel_categories: list[str], image_categories: list[str]):
    import datasets

    f = {"id": datasets.Value("string"), "split": datasets.Value("string"),
         "source": datasets.Value("string"), "image": datasets.Image()}
    f.update({c: datasets.Sequence(datasets.Image()) for c in pixel_categories})
    f.update({c: datasets.Sequence(datasets.Value("int32")) for c in image_categories})
    f["concepts"] = datasets.Sequence(datasets.Value("int32"))
    f["areas"] = datasets.Sequence(datasets.Value("float32"))
    return datasets.Features(f)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _encode_image(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt in ("png", "original"):
        Image.fromarray(image).save(buf, format="PNG", compress_level=3)
    else:
        Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _center_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The central square of an image, as fractions (left, top, right, bottom)."""
    side = min(width, height)
    left, top = (width - side) / 2 / width, (height - side) / 2 / height
    return left, top, left + side / width, top + side / height


def _crop_resize(array: np.ndarray, box: tuple[float, float, float, float], size: int,
                 resample: int) -> np.ndarray:
    h, w = array.shape[:2]
    if (h, w) == (size, size) and box == (0.0, 0.0, 1.0, 1.0):
        return array
    pixels = (round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))
    image = Image.fromarray(array).crop(pixels).resize((size, size), resample=resample)
    return np.asarray(image)


def _stored_image(sample: SourceSample, image: np.ndarray, unchanged: bool,
                  fmt: str) -> bytes:
    """The bytes a row stores: the source's own file when kept as is, else ``image`` encoded."""
    if fmt == "original" and unchanged and sample.encoded is not None:
        return bytes(sample.encoded)
    return _encode_image(image, fmt)


def process_sample(sample: SourceSample, source_name: str, lut: np.ndarray,
                   color_lut: np.ndarray, options: BuildOptions,
                   pixel_categories: Sequence[str] = PIXEL_CATEGORIES,
                   image_categories: Sequence[str] = IMAGE_CATEGORIES,
                   ships_colors: bool = False) -> dict:
    """Normalise one source sample into a dataset row (global ids, encoded image and masks).

    With ``ships_colors`` the sample's own ``color`` masks are kept like any other category;
    otherwise the colors are named from the image with the w2c table.
    """
    image = np.asarray(sample.image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadSampleError(f"{sample.id}: image must be HxWx3 uint8, got "
                             f"{image.dtype} {image.shape}")
    h, w = image.shape[:2]
    box = _center_box(w, h)
    image = _crop_resize(image, box, options.image_size, Image.Resampling.BICUBIC)
    unchanged = (h, w) == (options.image_size, options.image_size)
    row: dict = {"id": sample.id, "source": source_name,
                 "split": sample.split or stable_split(sample.id, options.val_fraction),
                 "image": {"bytes": _stored_image(sample, image, unchanged,
                                                  options.image_format), "path": None}}
    ids: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    m = options.mask_size
    for cat in pixel_categories:
        if cat == "color" and not ships_colors:
            small = _crop_resize(image, (0.0, 0.0, 1.0, 1.0), m, Image.Resampling.BOX)
            layers = [color_lut[name_colors(small)]]
        else:
            layers = []
            for raw in sample.pixel.get(cat, []):
                raw = np.asarray(raw)
                if raw.ndim != 2 or abs(raw.shape[1] / raw.shape[0] - w / h) > 0.02:
                    raise BadSampleError(f"{sample.id}: {cat} mask is {raw.shape[::-1]}, "
                                         f"image is {w}x{h}")
                if raw.size and int(raw.max()) >= len(lut):
                    raise BadSampleError(f"{sample.id}: {cat} label {int(raw.max())} "
                                         "is not in the label table")
                mapped = lut[raw.astype(np.int64)]
                if np.any((mapped == 0) & (raw != 0)):
                    bad = int(raw[(mapped == 0) & (raw != 0)][0])
                    raise BadSampleError(f"{sample.id}: {cat} label {bad} "
                                         "is not in the label table")
                layers.append(_crop_resize(mapped.astype(np.uint16), box, m,
                                           Image.Resampling.NEAREST))
        row[cat] = [{"bytes": _png(layer.astype(np.uint16)), "path": None} for layer in layers]
        for layer in layers:
            u, c = np.unique(layer, return_counts=True)
            ids.append(u[u > 0])
            counts.append(c[u > 0])
    for cat in image_categories:
        codes = [int(x) for x in sample.image_labels.get(cat, [])]
        if any(x >= len(lut) or lut[x] == 0 for x in codes):
            raise BadSampleError(f"{sample.id}: {cat} label not in the label table: {codes}")
        row[cat] = [int(lut[x]) for x in codes]
        ids.append(np.asarray(row[cat], dtype=np.int64))
        counts.append(np.full(len(codes), m * m, dtype=np.int64))
    all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    all_counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    uniq, inverse = np.unique(all_ids, return_inverse=True)
    area = np.minimum(np.bincount(inverse, weights=all_counts, minlength=len(uniq)) / (m * m), 1)
    row["concepts"] = uniq.astype(np.int32).tolist()
    row["areas"] = area.astype(np.float32).tolist()
    return row


@dataclass
class _ShardJob:
    shard: int
    start: int
    stop: int
    path: Path


# What every shard job shares, set once per worker process (sources can be large to pickle).
_SHARED: dict = {}


def _init_pool_worker(shared: dict) -> None:
    ignore_interrupts()
    _init_worker(shared)


def _init_worker(shared: dict) -> None:
    _SHARED.clear()
    _SHARED.update(shared)


def _load(source: Source, indices: list[int], batch: int = 16):
    """Yield (index, sample or BadSampleError); batched when the source can (segmenters)."""
    if hasattr(source, "samples"):
        for a in range(0, len(indices), batch):
            chunk = indices[a:a + batch]
            yield from zip(chunk, source.samples(chunk))
        return
    for i in indices:
        try:
            yield i, source.sample(i)
        except BadSampleError as e:
            yield i, e


def _build_shard(job: _ShardJob) -> list[dict]:
    """Build and save one shard of rows; return the samples it skipped."""
    import datasets

    datasets.disable_progress_bars()  # the builder shows its own progress
    sources, offsets, vocab = _SHARED["sources"], _SHARED["offsets"], _SHARED["vocab"]
    options, pixel_cats, image_cats = (_SHARED["options"], _SHARED["pixel_cats"],
                                       _SHARED["image_cats"])
    rows, skipped = [], []
    first = int(np.searchsorted(offsets, job.start, side="right") - 1)
    last = int(np.searchsorted(offsets, job.stop - 1, side="right") - 1)
    for s in range(first, last + 1):
        source, base = sources[s], int(offsets[s])
        local = list(range(max(job.start, base) - base, min(job.stop, int(offsets[s + 1])) - base))
        for index, sample in _load(source, local):
            try:
                if isinstance(sample, BadSampleError):
                    raise sample
                rows.append(process_sample(sample, source.name, vocab.luts[s],
                                           vocab.color_lut, options, pixel_cats, image_cats,
                                           ships_colors(source)))
            except BadSampleError as e:
                if options.strict:
                    raise
                skipped.append({"source": source.name, "index": index, "reason": str(e)})
    partial = job.path.with_name(job.path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if rows:
        features = _features(pixel_cats, image_cats)
        with reporting(partial / "rows"):
            datasets.Dataset.from_list(rows, features=features).save_to_disk(str(partial / "rows"))
    write_text(partial / "skipped.json", json.dumps(skipped))
    os.replace(partial, job.path)
    return skipped


def ships_colors(source: Source) -> bool:
    """Whether ``source``'s samples carry its own color masks (kept instead of named)."""
    return bool(getattr(source, "ships_colors", False))


def native_size(source: Source) -> tuple[int, int] | None:
    """The ``(image side, mask side)`` the source ships every sample at, if it says so."""
    size = getattr(source, "native_size", None)
    return tuple(size()) if callable(size) and size() is not None else None


def source_record(source: Source, samples: int, options: BuildOptions) -> dict:
    """What probe.json says of one source: its size, and what the build kept or changed."""
    native = native_size(source)
    built = (options.image_size, options.mask_size)
    return {"name": source.name, "fingerprint": source.fingerprint(), "samples": samples,
            "native_size": list(native) if native else None,
            "resized": native is None or tuple(native) != built,
            "colors": "source" if ships_colors(source) else COLOR_MODEL_VERSION}


def _run_shard(job: _ShardJob) -> int:
    _build_shard(job)
    return job.stop - job.start


def _pool_context():
    # fork is fastest, but forking after torch started its threads can deadlock
    return multiprocessing.get_context("spawn" if "torch" in sys.modules else "fork")


def _write_concepts(path: Path, concepts: list[GlobalConcept], freq: np.ndarray,
                    coverage: np.ndarray) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "category", "level", "frequency", "coverage", "sources",
                    "synonyms"])
        for c in concepts:
            w.writerow([c.id, c.name, c.category, c.level, int(freq[c.id]),
                        f"{coverage[c.id]:.6f}", ";".join(c.sources), ";".join(c.synonyms)])


def _remap_row(row: dict, lut: np.ndarray, pixel_categories: list[str],
               image_categories: list[str]) -> dict:
    """Rewrite one row's ids through ``lut`` (old id -> new id, 0 = dropped)."""
    from .probe import decode_label_map

    out = {}
    for cat in pixel_categories:
        out[cat] = [{"bytes": _png(lut[decode_label_map(m["bytes"])].astype(np.uint16)),
                     "path": None} for m in row[cat]]
    for cat in image_categories:
        out[cat] = [int(lut[x]) for x in row[cat] if lut[x] > 0]
    ids = np.asarray(row["concepts"], dtype=np.int64)
    keep = lut[ids] > 0
    out["concepts"] = lut[ids[keep]].astype(np.int32).tolist()
    out["areas"] = np.asarray(row["areas"], dtype=np.float32)[keep].tolist()
    return out


def build_dataset(sources: Sequence[Source], out: Path | str | None = None,
                  options: BuildOptions | None = None, force: bool = False,
                  progress: bool = True, cache_dir: Path | str = "data/datasets") -> BuildResult:
    """Build (or fetch from the cache) the concept dataset of ``sources``."""
    import datasets

    options = options or BuildOptions()
    datasets.disable_progress_bars()  # the builder shows its own progress
    if not sources:
        raise ConfigError("no source given: name at least one (e.g. toyworld)")
    started = time.perf_counter()
    fp = dataset_fingerprint(sources, options)
    out = Path(out) if out else Path(cache_dir) / f"{'+'.join(s.name for s in sources)}-{fp[:12]}"
    out = out.resolve()
    # one builder per dataset folder: a second one waits, then finds it built
    with hold(out.with_name(f".{out.name}.lock"), f"the dataset {out}"):
        return _build(sources, out, fp, options, force, progress, started)


def _build(sources: Sequence[Source], out: Path, fp: str, options: BuildOptions, force: bool,
           progress: bool, started: float) -> BuildResult:
    """``build_dataset`` once ``out`` is locked."""
    import datasets
    from tqdm.auto import tqdm

    if (out / "probe.json").is_file() and not force:
        try:
            probe = ProbeSet(out)
            if probe.fingerprint == fp:
                return BuildResult(out, fp, True, len(probe), probe.info.get("skipped", []),
                                   time.perf_counter() - started)
        except DatasetError:
            pass  # unreadable: rebuild it
    if out.exists() and any(out.iterdir()) and not (out / "probe.json").is_file():
        raise DatasetError(f"{out}: exists and is not a concept dataset; "
                           "refusing to overwrite it (choose another --out)")

    vocab = merge_vocabularies([s.name for s in sources], [s.concepts() for s in sources],
                               [ships_colors(s) for s in sources])
    pixel_cats = [c for c in PIXEL_CATEGORIES if any(g.category == c for g in vocab.concepts)]
    image_cats = [c for c in IMAGE_CATEGORIES if any(g.category == c for g in vocab.concepts)]
    features = _features(pixel_cats, image_cats)
    sizes = np.array([len(s) for s in sources], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])

    work = out.with_name(f".{out.name}.build-{fp[:12]}")
    shards_dir = work / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    jobs = [_ShardJob(i, a, min(a + options.shard_size, total), shards_dir / f"{i:05d}")
            for i, a in enumerate(range(0, total, options.shard_size))]
    todo = [j for j in jobs if not j.path.is_dir()]  # finished shards survive an interruption
    workers = options.workers or min(os.cpu_count() or 1, 8)
    bar = tqdm(total=total, initial=total - sum(j.stop - j.start for j in todo), unit="img",
               desc="building dataset", disable=not progress)
    for source in sources:  # sources of large images decode them reduced to the side kept
        getattr(source, "reduce_to", lambda side: None)(options.image_size)
    shared = dict(sources=list(sources), offsets=offsets, vocab=vocab, options=options,
                  pixel_cats=pixel_cats, image_cats=image_cats)
    if workers > 1 and len(todo) > 1:
        with _pool_context().Pool(min(workers, len(todo)), _init_pool_worker, (shared,)) as pool:
            for n in pool.imap_unordered(_run_shard, todo):
                bar.update(n)
            pool.close()  # let the workers exit on their own: terminating them (the context
            pool.join()   # manager's exit) can leak their semaphores, with a warning at exit
    else:
        _init_worker(shared)
        for job in todo:
            bar.update(_run_shard(job))
    bar.close()

    skipped: list[dict] = []
    parts = []
    for j in jobs:
        skipped += json.loads((j.path / "skipped.json").read_text())
        if (j.path / "rows").is_dir():
            parts.append(datasets.load_from_disk(str(j.path / "rows")))
    if not parts:
        raise DatasetError("every sample was skipped: " +
                           (skipped[0]["reason"] if skipped else "the sources are empty"))
    table = datasets.concatenate_datasets(parts)

    # frequencies and coverage from the per-row concept lists (no mask decoding)
    n_ids = len(vocab.concepts) + 1
    ids = np.asarray(table.data.column("concepts").combine_chunks().flatten(), dtype=np.int64)
    areas = np.asarray(table.data.column("areas").combine_chunks().flatten(), dtype=np.float64)
    freq = np.bincount(ids, minlength=n_ids)
    coverage = np.bincount(ids, weights=areas, minlength=n_ids) / np.maximum(freq, 1)
    # min_frequency 0 keeps every concept, also those no image carries (a release's vocabulary)
    keep = [c for c in vocab.concepts if freq[c.id] >= options.min_frequency]
    concepts = keep
    if len(keep) < len(vocab.concepts):
        lut = np.zeros(n_ids, dtype=np.int64)
        for new_id, c in enumerate(keep, start=1):
            lut[c.id] = new_id
        raw = datasets.Features({**features, **{c: datasets.Sequence(datasets.Image(decode=False))
                                                 for c in pixel_cats}})
        table = table.cast(raw).map(_remap_row, fn_kwargs={"lut": lut, "pixel_categories": pixel_cats,
                                                 "image_categories": image_cats},
                          num_proc=workers if workers > 1 and len(table) > 1000 else None,
                          desc="dropping rare concepts", features=raw).cast(features)
        concepts = [GlobalConcept(lut[c.id], c.name, c.category, c.sources, c.synonyms)
                    for c in keep]
        freq = np.concatenate([[0], freq[[c.id for c in keep]]])
        coverage = np.concatenate([[0.0], coverage[[c.id for c in keep]]])
    layers = {}
    for cat in pixel_cats:
        lengths = table.data.column(cat).combine_chunks().value_lengths()
        layers[cat] = int(np.max(np.asarray(lengths, dtype=np.int64), initial=0))

    staging = work / "dataset"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with reporting(staging / "data"):
        table.save_to_disk(str(staging / "data"))
    _write_concepts(staging / "concepts.csv", concepts, freq, coverage)
    splits = np.asarray(table.data.column("split").to_numpy(zero_copy_only=False))
    info = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "fingerprint": fp,
        "created_by": f"unitdissect {__version__}",
        "image_size": options.image_size, "mask_size": options.mask_size,
        "categories": {**{c: {"level": "pixel", "layers": layers[c]} for c in pixel_cats},
                       **{c: {"level": "image"} for c in image_cats}},
        "sources": [source_record(s, int(n), options) for s, n in zip(sources, sizes)],
        "options": options.content(), "color_model": COLOR_MODEL_VERSION,
        "counts": {"images": len(table), "train": int((splits == "train").sum()),
                   "val": int((splits == "val").sum()), "skipped": len(skipped),
                   "concepts": len(concepts),
                   "dropped_rare_concepts": len(vocab.concepts) - len(keep)},
        "skipped": skipped,
    }
    write_text(staging / "probe.json", json.dumps(info, indent=2))
    del table, parts  # release the memory maps of the shards before removing them
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out)
    shutil.rmtree(work, ignore_errors=True)
    return BuildResult(out, fp, False, int(info["counts"]["images"]), skipped,
                       time.perf_counter() - started)

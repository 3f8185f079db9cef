"""A Broden release directory (NetDissect's ``broden1_224`` / ``_227`` / ``_384``) as a source.

The layout, as NetDissect and NetDissect-Lite read it::

    index.csv        image,split,ih,iw,sh,sw,color,object,part,material,scene,texture
    label.csv        number,name,category,frequency,coverage,syns
    category.csv     name,first,last,count,frequency             (optional here)
    c_<category>.csv code,number,name,frequency,coverage         (optional here)
    images/...       the images and the mask PNGs, paths relative to images/

Pixel columns (color, object, part, material) hold semicolon-separated mask PNG paths, several
layers allowed (``..._part_1.png;..._part_2.png``); a bare number there means "this label over
the whole image". Image columns (scene, texture) hold semicolon-separated label numbers. A mask
pixel's label is ``R + 256 * G``: a global ``label.csv`` number, 0 = none.

Categories: a label number may belong to several categories (``fabric`` is ``material(36);
object(3)``). A label in a column's masks counts for that column's category, and it must be
listed for that category: by ``c_<category>.csv`` when the file exists, else by the
``category`` field of ``label.csv``. Each (number, category) pair is one local concept: the
pair of the label's main category (the largest count in ``label.csv``) keeps the label number
as its code; the others get codes above the largest label number.

Names: Broden marks some names with a category suffix (``street-s`` scenes, ``red-c`` colors;
``-t`` textures and ``-m`` materials are stripped too). The suffix matching the concept's category
is removed and the original name kept as a synonym, with ``label.csv``'s ``syns``.

Kept as released: the images' own bytes (``SourceSample.encoded``, stored without
re-encoding when no resize is needed), the sizes of index.csv (``native_size``: a release of
one size is built at that size), Broden's own color masks and color concepts
(``ships_colors``), and every concept of label.csv (``curated``: no frequency filter by
default). An image or mask whose size differs from its index.csv row is a bad sample.
``BrodenSource(path, colors=False)`` ignores the ``color`` column instead, and the builder
then names the colors with the same w2c table Broden used.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
from PIL import Image

from ...errors import BadSampleError, DatasetError
from ...fingerprint import fingerprint
from .base import CATEGORIES, IMAGE_CATEGORIES, PIXEL_CATEGORIES, SourceConcept, SourceSample

__all__ = ["DEFAULT_MAX_PIXELS", "MAX_LABEL_NUMBER", "BrodenSource", "decode_label_png",
           "printable", "read_label_array", "read_rgb_image", "strip_suffix"]

#: Bumped whenever the way samples are read changes (it enters the fingerprint).
READER_VERSION = 2

#: Images and masks of more pixels are bad samples, refused from their header before decoding
#: (a 10,000 x 10,000 PNG compresses to a few hundred KB but decodes to 300 MB).
DEFAULT_MAX_PIXELS = 50_000_000

#: The largest label number a Broden mask can carry (``R + 256 * G``).
MAX_LABEL_NUMBER = 65535

#: The category suffixes of Broden's names; only the one matching a concept's category is removed.
CATEGORY_SUFFIXES = {"scene": "-s", "color": "-c", "texture": "-t", "material": "-m"}

_META_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
_CATEGORY_FIELD = re.compile(r"^\s*([^()]+?)\s*\(\s*(\d*)\s*\)\s*$")
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``text`` with control characters escaped (``\\x00``), for messages that quote a file."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def strip_suffix(name: str, category: str) -> str:
    """``name`` without Broden's suffix for ``category`` (``street-s`` -> ``street``)."""
    suffix = CATEGORY_SUFFIXES.get(category)
    if suffix and name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return name


def _load_image(source: Path | bytes, where: str | Path | None, what: str,
                max_pixels: int = DEFAULT_MAX_PIXELS, side: int | None = None) -> Image.Image:
    """Open an image file or encoded bytes, refuse it from its header above ``max_pixels``,
    and decode it (reduced to a shorter side of at least ``side`` when given);
    BadSampleError if unusable."""
    where = printable(where if where is not None else source)
    try:
        with warnings.catch_warnings():
            # our own limit below decides, from the header; Pillow's warning would print raw
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray))
                               else source)
            try:
                _check_pixels(image, where, what, max_pixels)
                return _decode(image, side)
            except BaseException:
                image.close()  # a refused or broken image leaves no open file behind
                raise
    except BadSampleError:
        raise
    except FileNotFoundError:
        raise BadSampleError(f"{where}: {what} file does not exist") from None
    except Image.DecompressionBombError:
        raise BadSampleError(f"{where}: {what} refused, more pixels than Pillow decodes "
                             f"({2 * (Image.MAX_IMAGE_PIXELS or 0):,})") from None
    except _IMAGE_ERRORS as e:
        raise BadSampleError(f"{where}: unreadable {what} ({printable(e)})") from None


def _check_pixels(image: Image.Image, where: str, what: str, max_pixels: int) -> None:
    """BadSampleError when the header's size exceeds ``max_pixels`` (nothing decoded yet)."""
    width, height = image.size
    if width * height > max_pixels:
        raise BadSampleError(f"{where}: {what} of {width}x{height} = {width * height:,} "
                             f"pixels, above the limit of {max_pixels:,} (max_pixels)")


def _decode(image: Image.Image, side: int | None) -> Image.Image:
    """Decode ``image``; with ``side``, at a reduced scale keeping its shorter side >= side."""
    width, height = image.size
    factor = min(width, height) // side if side else 1
    if factor < 2:
        image.load()
        return image
    # JPEG decodes at 1/2, 1/4 or 1/8 scale directly; others decode whole, then shrink by box
    target = (math.ceil(width / factor), math.ceil(height / factor))
    image.draft("RGB", target)
    image.load()
    factor = min(image.size) // side
    return image.reduce(factor) if factor >= 2 else image


def read_rgb_image(source: Path | bytes, where: str | Path | None = None,
                   max_pixels: int = DEFAULT_MAX_PIXELS, side: int | None = None) -> np.ndarray:
    """Read an image file (or its bytes) as HxWx3 uint8 RGB, refused above ``max_pixels`` and
    reduced while decoding to a shorter side of at least ``side``; BadSampleError if unusable."""
    image = _load_image(source, where, "image", max_pixels, side)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def read_label_array(source: Path | bytes, where: str | Path | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a label image as stored: HxW for gray / 16-bit PNGs, HxWx3 (or x4) for color ones
    (never resampled; refused above ``max_pixels``)."""
    image = _load_image(source, where, "mask", max_pixels)
    if image.mode not in ("RGB", "RGBA", "L", "I", "I;16", "I;16B", "I;16L"):
        image = image.convert("RGB")
    return np.asarray(image)


def decode_label_png(source: Path | bytes, where: str | Path | None = None) -> np.ndarray:
    """Read a label image as int32 labels: ``R + 256 * G`` for color ones, the value for gray."""
    array = read_label_array(source, where)
    if array.ndim == 3:
        return array[..., 0].astype(np.int32) | (array[..., 1].astype(np.int32) << 8)
    return array.astype(np.int32)


@dataclass(frozen=True)
class _Label:
    number: int
    name: str
    counts: dict[str, int]  # category -> count, from label.csv's category field
    synonyms: tuple[str, ...]


@dataclass
class _Table:
    """Everything parsed from the csv files (rebuilt after unpickling)."""

    columns: list[str]  # index.csv header
    rows: list[list[str]]
    labels: dict[int, _Label]
    concepts: list[SourceConcept]
    luts: dict[str, np.ndarray]  # category -> int32 [max_number + 1]: number -> local code
    dtype: type  # of label maps: uint16 unless codes exceed it


def _read_csv(path: Path, required: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    try:
        # utf-8-sig: a byte order mark (as spreadsheet programs write) is not part of the header
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [r for r in reader if r]
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a readable csv file ({printable(e)})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} "
                           f"(header: {printable(','.join(header))})")
    return header, rows


def _parse_category_field(text: str, where: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(";"))):
        m = _CATEGORY_FIELD.match(item)
        if m:
            counts[m.group(1)] = int(m.group(2) or 0)
        elif "(" not in item and ")" not in item:
            counts[item] = 0
        else:
            raise DatasetError(f"{where}: bad category field {text!r} "
                               "(expected e.g. object(12))")
    return counts


def _label_number(text: str, where: str) -> int:
    """A label number of a csv row: an integer in 0..MAX_LABEL_NUMBER, else DatasetError."""
    try:
        number = int(text)
    except ValueError:
        raise DatasetError(f"{where}: label number {text!r} "
                           "is not an integer") from None
    if not 0 <= number <= MAX_LABEL_NUMBER:
        # a mask holds R + 256 * G; a larger number could label nothing (and would size the
        # lookup tables by it)
        raise DatasetError(f"{where}: label number {number} is outside 0..{MAX_LABEL_NUMBER}")
    return number


def _read_labels(path: Path) -> dict[int, _Label]:
    header, rows = _read_csv(path, ("number", "name"))
    col = {h: i for i, h in enumerate(header)}
    labels: dict[int, _Label] = {}
    for line, r in enumerate(rows, start=2):
        r = r + [""] * (len(header) - len(r))
        number = _label_number(r[col["number"]], f"{path}:{line}")
        if number == 0:
            continue  # 0 is "no label" in every mask
        counts = (_parse_category_field(r[col["category"]], f"{path}:{line}")
                  if "category" in col else {})
        syns = tuple(s.strip() for s in r[col["syns"]].split(";")
                     if s.strip()) if "syns" in col else ()
        labels[number] = _Label(number, r[col["name"]].strip(), counts, syns)
    return labels


def _category_members(root: Path, category: str, labels: dict[int, _Label]) -> set[int]:
    """Label numbers of ``category``: from c_<category>.csv if present, else from label.csv."""
    path = root / f"c_{category}.csv"
    if not path.is_file():
        return {n for n, lab in labels.items() if category in lab.counts}
    header, rows = _read_csv(path, ("number",))
    i = header.index("number")
    members = set()
    for line, r in enumerate(rows, start=2):
        number = _label_number(r[i] if i < len(r) else "", f"{path}:{line}")
        if number == 0:
            continue
        if number not in labels:
            raise DatasetError(f"{path}:{line}: label {number} is not in label.csv")
        members.add(number)
    return members


def _build_vocabulary(root: Path, categories: Sequence[str], labels: dict[int, _Label]
                      ) -> tuple[list[SourceConcept], dict[str, np.ndarray], type]:
    """Local concepts, one per (label number, category), and per-category lookup tables."""
    members = {c: _category_members(root, c, labels) for c in categories}
    owners: dict[int, list[str]] = {}
    for cat in categories:
        for n in members[cat]:
            owners.setdefault(n, []).append(cat)
    max_number = max(labels, default=0)
    luts = {c: np.zeros(max_number + 1, dtype=np.int32) for c in categories}
    concepts: list[SourceConcept] = []
    next_code = max_number + 1
    for n in sorted(owners):
        label = labels[n]
        cats = sorted(owners[n], key=lambda c: (-label.counts.get(c, 0), CATEGORIES.index(c)))
        for rank, cat in enumerate(cats):
            if rank == 0:
                code = n
            else:
                code, next_code = next_code, next_code + 1
            name = strip_suffix(label.name, cat)
            synonyms = tuple(dict.fromkeys(
                s for s in ((label.name,) if name != label.name else ()) + label.synonyms
                if s != name))
            concepts.append(SourceConcept(code, name, cat, synonyms))
            luts[cat][n] = code
    concepts.sort(key=lambda c: c.code)
    dtype = np.uint16 if next_code <= np.iinfo(np.uint16).max + 1 else np.int32
    return concepts, luts, dtype


class BrodenSource:
    """A Broden release directory; see the module docstring for the layout and the rules."""

    name = "broden"
    curated = True  # label.csv lists what the release's makers kept: keep all of it

    def __init__(self, path: str | Path, colors: bool = True) -> None:
        self.root = Path(path).expanduser()
        self.colors = bool(colors)
        self._table: _Table | None = None
        self._load()  # fail early on a missing or malformed directory

    # -- loading ----------------------------------------------------------------------
    def _load(self) -> _Table:
        if self._table is not None:
            return self._table
        if not self.root.is_dir():
            raise DatasetError(f"Broden directory not found: {self.root}")
        index = self.root / "index.csv"
        if not index.is_file():
            raise DatasetError(f"{self.root}: not a Broden directory (no index.csv)")
        if not (self.root / "label.csv").is_file():
            raise DatasetError(f"{self.root}: not a Broden directory (no label.csv)")
        columns, rows = _read_csv(index, ("image",))
        labels = _read_labels(self.root / "label.csv")
        categories = [c for c in CATEGORIES if c in columns and (self.colors or c != "color")]
        concepts, luts, dtype = _build_vocabulary(self.root, categories, labels)
        self._table = _Table(columns, rows, labels, concepts, luts, dtype)
        return self._table

    def __getstate__(self) -> dict:
        # workers re-read the csv files instead of receiving the whole index in every pickle
        return {"root": self.root, "colors": self.colors}

    def __setstate__(self, state: dict) -> None:
        self.root, self.colors, self._table = state["root"], state["colors"], None

    @property
    def ships_colors(self) -> bool:
        """True when Broden's own color masks are read (the builder keeps them as they are)."""
        return "color" in self._load().luts

    def sizes(self) -> list[tuple[int, int, int, int]]:
        """The distinct ``(ih, iw, sh, sw)`` of index.csv's rows (sizes left blank as 0)."""
        table = self._load()
        cols = [table.columns.index(k) if k in table.columns else None
                for k in ("ih", "iw", "sh", "sw")]

        def value(row: list[str], i: int | None) -> int:
            text = row[i].strip() if i is not None and i < len(row) else ""
            return int(text) if text.isdigit() else 0

        return sorted({tuple(value(r, i) for i in cols) for r in table.rows})

    def native_size(self) -> tuple[int, int] | None:
        """``(image side, mask side)`` when every row is one square size, else None."""
        sizes = self.sizes()
        if len(sizes) != 1:
            return None
        ih, iw, sh, sw = sizes[0]
        return (ih, sh) if ih and sh and ih == iw and sh == sw else None

    # -- the Source protocol ----------------------------------------------------------
    def concepts(self) -> Sequence[SourceConcept]:
        """One concept per (label number, category) of the directory's categories."""
        return list(self._load().concepts)

    def __len__(self) -> int:
        """The number of rows of index.csv."""
        return len(self._load().rows)

    def fingerprint(self) -> str:
        """Path, options, and size + mtime of every csv file of the directory."""
        stats = []
        for p in sorted(self.root.glob("*.csv")):
            st = p.stat()
            stats.append((p.name, st.st_size, st.st_mtime_ns))
        return fingerprint("broden", READER_VERSION, str(self.root.resolve()), self.colors,
                           stats)

    def sample(self, index: int) -> SourceSample:
        """Read row ``index`` of index.csv: its image, masks and image-level labels."""
        table = self._load()
        if not 0 <= index < len(table.rows):
            raise IndexError(f"broden sample {index} out of range 0..{len(table.rows) - 1}")
        row = dict(zip(table.columns, table.rows[index]))
        where = f"{self.root / 'index.csv'} row {index + 2}"
        image_path = self._path(row["image"], where)
        try:
            encoded = image_path.read_bytes()
        except FileNotFoundError:
            raise BadSampleError(f"{image_path}: image file does not exist") from None
        except OSError as e:
            raise BadSampleError(f"{image_path}: unreadable image ({e.strerror or e})") from None
        image = read_rgb_image(encoded, image_path)
        ih, iw = self._int(row, "ih", where), self._int(row, "iw", where)
        if (ih is not None and image.shape[0] != ih) or (iw is not None and
                                                          image.shape[1] != iw):
            raise BadSampleError(f"{where}: image {printable(row['image'].strip())} is "
                                 f"{image.shape[1]}x{image.shape[0]}, index.csv says {iw}x{ih}")
        sh, sw = self._int(row, "sh", where), self._int(row, "sw", where)
        pixel: dict[str, list[np.ndarray]] = {}
        image_labels: dict[str, list[int]] = {}
        for cat in table.luts:
            entries = [e.strip() for e in row.get(cat, "").split(";") if e.strip()]
            if not entries:
                continue
            if cat in IMAGE_CATEGORIES:
                image_labels[cat] = [self._image_label(e, cat, where) for e in entries]
            elif cat in PIXEL_CATEGORIES:
                shape = (sh or image.shape[0], sw or image.shape[1])
                pixel[cat] = [self._layer(e, cat, shape, (sh, sw), where) for e in entries]
        image_id = str(PurePosixPath(row["image"]).with_suffix(""))
        return SourceSample(id=image_id, image=image, pixel=pixel, image_labels=image_labels,
                            split=row.get("split", "").strip() or None, encoded=encoded)

    # -- helpers ----------------------------------------------------------------------
    def _path(self, entry: str, where: str) -> Path:
        rel = PurePosixPath(entry.strip().replace("\\", "/"))
        if not entry.strip() or rel.is_absolute() or ".." in rel.parts or "\x00" in entry:
            raise BadSampleError(f"{where}: bad file path {entry!r}")
        return self.root / "images" / rel

    @staticmethod
    def _int(row: dict, key: str, where: str) -> int | None:
        text = row.get(key, "").strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise BadSampleError(f"{where}: {key} {text!r} is not an integer") from None

    def _codes(self, numbers: np.ndarray, cat: str, where: str) -> np.ndarray:
        """Map label numbers to local codes of ``cat``; BadSampleError on an unknown one."""
        table = self._table
        lut = table.luts[cat]
        too_big = numbers >= len(lut)
        mapped = lut[np.where(too_big, 0, numbers)]
        bad = ((mapped == 0) & (numbers != 0)) | too_big | (numbers < 0)
        if bad.any():
            n = int(numbers[bad].flat[0])
            if n not in table.labels:
                raise BadSampleError(f"{where}: label {n} is missing from label.csv")
            raise BadSampleError(f"{where}: label {n} ({table.labels[n].name}) is not "
                                 f"listed in the {cat} category")
        return mapped

    def _image_label(self, entry: str, cat: str, where: str) -> int:
        return int(self._codes(np.array([self._number(entry, cat, where)]), cat, where)[0])

    @staticmethod
    def _number(entry: str, cat: str, where: str) -> int:
        """A label number written in index.csv; BadSampleError unless one a mask could hold."""
        if not (entry.isascii() and entry.isdigit()):
            raise BadSampleError(f"{where}: {cat} holds {entry!r}, expected label numbers")
        if int(entry) > MAX_LABEL_NUMBER:
            raise BadSampleError(f"{where}: {cat} label {entry} is outside 0..{MAX_LABEL_NUMBER}")
        return int(entry)

    def _layer(self, entry: str, cat: str, shape: tuple[int, int],
               expected: tuple[int | None, int | None], where: str) -> np.ndarray:
        dtype = self._table.dtype
        if entry.isascii() and entry.isdigit():  # a label covering the whole image
            code = self._codes(np.array([self._number(entry, cat, where)]), cat, where)[0]
            return np.full(shape, code, dtype=dtype)
        labels = decode_label_png(self._path(entry, where))
        sh, sw = expected
        if (sh is not None and labels.shape[0] != sh) or (sw is not None and
                                                           labels.shape[1] != sw):
            raise BadSampleError(f"{where}: {cat} mask {printable(entry)} is {labels.shape[1]}x"
                                 f"{labels.shape[0]}, index.csv says {sw}x{sh}")
        return self._codes(labels, cat, where).astype(dtype, copy=False)

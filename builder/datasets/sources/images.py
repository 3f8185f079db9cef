"""Any folder of images as a source, labelled by a segmentation model (a ``Segmenter``).

Segmenters are registered by name (``register_segmenter``) and looked up with
``get_segmenter``; real models (``demo:segmenter``, torchvision segmentation models) register
themselves from the modules in ``PLUGIN_MODULES``, which every lookup imports first (so a
lookup finds them whatever the caller imported before). A segmenter returns, per image,
``category -> label maps`` in its own codes; maps of an image-level category (scene, texture)
are reduced to the set of codes they contain.

Spec: ``images:PATH[?max_pixels=N]``. An image of more than ``max_pixels`` pixels (default
``DEFAULT_MAX_PIXELS``, 50 megapixels) is a bad sample, refused from its header before it is
decoded; a larger one is decoded at a reduced scale (JPEG at 1/2, 1/4 or 1/8 directly, others
shrunk by whole factors) when the builder says what side it keeps (``reduce_to``), so neither
decoding nor the segmenter ever sees an image much larger than the dataset's.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from urllib.parse import parse_qsl
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ...errors import BadSampleError, DatasetError, SpecError
from ...fingerprint import fingerprint
from .base import CATEGORIES, IMAGE_CATEGORIES, SourceConcept, SourceSample
from .broden import DEFAULT_MAX_PIXELS, read_rgb_image

__all__ = ["IMAGE_EXTENSIONS", "PLUGIN_MODULES", "ImageFolderSource", "Segmenter",
           "get_segmenter", "list_segmenters", "register_segmenter"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

#: Bumped whenever the way samples are made changes (it enters the fingerprint).
READER_VERSION = 2

#: The options of an ``images:PATH?key=value`` spec.
SPEC_OPTIONS = ("max_pixels",)


@runtime_checkable
class Segmenter(Protocol):
    """A model that labels images with concepts of its own vocabulary."""

    #: Short name, e.g. ``demo:segmenter``.
    name: str

    def concepts(self) -> Sequence[SourceConcept]:
        """The segmenter's vocabulary (codes as they appear in its label maps)."""
        ...

    def segment(self, images: list[np.ndarray]) -> list[dict[str, list[np.ndarray]]]:
        """Per HxWx3 uint8 image: category -> list of HxW label maps (local codes, 0 = none)."""
        ...

    def fingerprint(self) -> str:
        """Changes whenever the segmenter's output would change (weights, version, options)."""
        ...


_SEGMENTERS: dict[str, Callable[[], Segmenter]] = {}

#: Modules that register segmenters when imported. They are imported lazily, at the first
#: lookup: they need torch and the models, which this module must not import (and
#: ``builder.segmenters`` imports this module, so importing it here at the top would be a cycle).
PLUGIN_MODULES: tuple[str, ...] = ("builder.segmenters",)


def _import_plugins() -> None:
    """Import every plugin module not imported yet (each registers its segmenters)."""
    for module in PLUGIN_MODULES:
        if module not in sys.modules:  # one being imported is there already: no re-entry
            importlib.import_module(module)


def register_segmenter(name: str, factory: Callable[[], Segmenter],
                       replace: bool = False) -> None:
    """Make ``factory()`` available as segmenter ``name``."""
    if not name or not isinstance(name, str):
        raise SpecError(f"segmenter name {name!r}: expected a non-empty string")
    if name in _SEGMENTERS and not replace:
        raise SpecError(f"segmenter {name!r} is already registered")
    _SEGMENTERS[name] = factory


def list_segmenters() -> list[str]:
    """The registered segmenter names (the plugins' included), sorted."""
    _import_plugins()
    return sorted(_SEGMENTERS)


def get_segmenter(name: str) -> Segmenter:
    """The segmenter registered as ``name``; SpecError listing the known names otherwise."""
    _import_plugins()
    if name not in _SEGMENTERS:
        known = ", ".join(list_segmenters()) or "none registered yet"
        raise SpecError(f"unknown segmenter {name!r} (known: {known})",
                        hint="pass --segmenter with one of the known names")
    return _SEGMENTERS[name]()


def _list_images(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def split_spec(text: str) -> tuple[str, dict[str, int]]:
    """``"photos?max_pixels=1000000"`` -> ``("photos", {"max_pixels": 1000000})``; a folder
    whose own name holds a ``?`` is taken as it is."""
    folder, mark, query = str(text).partition("?")
    if not mark or Path(str(text)).expanduser().is_dir():
        return str(text), {}
    options: dict[str, int] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in SPEC_OPTIONS:
            raise SpecError(f"images:{text}: unknown option {key!r}",
                            hint=f"options: {', '.join(SPEC_OPTIONS)}")
        if not (value.isascii() and value.isdigit()) or int(value) < 1:
            raise SpecError(f"images:{text}: {key} must be a positive whole number, "
                            f"got {value!r}")
        options[key] = int(value)
    return folder, options


class ImageFolderSource:
    """The images under a folder (recursive), with the labels a segmenter gives them."""

    name = "images"

    def __init__(self, path: str | Path, segmenter: Segmenter | str,
                 max_pixels: int | None = None) -> None:
        folder, options = split_spec(str(path))
        self.root = Path(folder).expanduser()
        #: images of more pixels are bad samples, refused before decoding
        self.max_pixels = int(max_pixels or options.get("max_pixels", DEFAULT_MAX_PIXELS))
        #: decode larger images reduced to a shorter side of at least this (None: as stored)
        self.side: int | None = None
        if not self.root.is_dir():
            raise DatasetError(f"image folder not found: {self.root}")
        self.segmenter = get_segmenter(segmenter) if isinstance(segmenter, str) else segmenter
        if not isinstance(self.segmenter, Segmenter):
            raise SpecError(f"{segmenter!r} is not a segmenter (needs name, concepts(), "
                            "segment(), fingerprint())")
        self.files = _list_images(self.root)
        if not self.files:
            raise DatasetError(f"{self.root}: no images found "
                               f"({', '.join(IMAGE_EXTENSIONS)}, searched recursively)")

    def reduce_to(self, side: int) -> None:
        """Decode images reduced to a shorter side of at least ``side`` (the builder's)."""
        self.side = int(side)

    def concepts(self) -> Sequence[SourceConcept]:
        """The segmenter's vocabulary."""
        return list(self.segmenter.concepts())

    def __len__(self) -> int:
        """The number of image files found."""
        return len(self.files)

    def fingerprint(self) -> str:
        """Folder, names + sizes + mtimes of the images, the pixel limit, and the segmenter's
        fingerprint (the decoding side follows the build's image size, in its fingerprint)."""
        stats = []
        for rel in self.files:
            try:
                st = (self.root / rel).stat()
                stats.append((rel.as_posix(), st.st_size, st.st_mtime_ns))
            except OSError:
                stats.append((rel.as_posix(), None, None))
        return fingerprint("images", READER_VERSION, str(self.root.resolve()), stats,
                           self.max_pixels, self.segmenter.name, self.segmenter.fingerprint())

    def sample(self, index: int) -> SourceSample:
        """Read image ``index`` and label it with the segmenter."""
        result = self.samples([index])[0]
        if isinstance(result, BadSampleError):
            raise result
        return result

    def samples(self, indices: Sequence[int]) -> list[SourceSample | BadSampleError]:
        """Read and label several images in one segmenter call; bad ones come back as errors."""
        out: list[SourceSample | BadSampleError | None] = []
        images, where = [], []
        for index in indices:
            if not 0 <= index < len(self.files):
                raise IndexError(f"image {index} out of range 0..{len(self.files) - 1}")
            try:
                images.append(read_rgb_image(self.root / self.files[index],
                                             max_pixels=self.max_pixels, side=self.side))
                where.append(len(out))
                out.append(None)
            except BadSampleError as e:
                out.append(e)
        labels = self.segmenter.segment(images) if images else []
        if len(labels) != len(images):
            raise DatasetError(f"segmenter {self.segmenter.name!r} returned {len(labels)} "
                               f"results for {len(images)} images")
        for slot, image, maps in zip(where, images, labels):
            out[slot] = self._sample(indices[slot], image, maps)
        return out  # type: ignore[return-value]

    def _sample(self, index: int, image: np.ndarray,
                maps: dict[str, list[np.ndarray]]) -> SourceSample:
        rel = self.files[index].as_posix()
        pixel: dict[str, list[np.ndarray]] = {}
        image_labels: dict[str, list[int]] = {}
        for cat, layers in maps.items():
            if cat not in CATEGORIES:
                raise DatasetError(f"segmenter {self.segmenter.name!r} returned unknown "
                                   f"category {cat!r} (expected one of {', '.join(CATEGORIES)})")
            layers = [np.asarray(m) for m in layers]
            for m in layers:
                if m.ndim != 2:
                    raise DatasetError(f"segmenter {self.segmenter.name!r} returned a {cat} "
                                       f"map of shape {m.shape}; expected H x W")
            if cat in IMAGE_CATEGORIES:
                codes = np.unique(np.concatenate([m.ravel() for m in layers])) if layers else []
                image_labels[cat] = [int(c) for c in codes if c != 0]
            else:
                pixel[cat] = layers
        return SourceSample(id=rel, image=image, pixel=pixel, image_labels=image_labels)

"""Segmentation models as ``Segmenter``s, which label image folders (``images:PATH`` sources).

- ``demo:segmenter``: the shipped toy-world segmenter (object, part and material maps, in the
  toy world's own concept codes, so its labels merge with ``toyworld`` datasets).
- ``torchvision:NAME``: a torchvision segmentation model (``deeplabv3_resnet50``, ``fcn_resnet50``,
  ``lraspp_mobilenet_v3_large``, ...) with the 20 Pascal VOC classes as object concepts; weights
  from a state-dict file (``weights=``), else a random initialisation under ``seed``. Nothing
  is ever downloaded.
- ``hf:PATH``: a ``transformers`` semantic-segmentation model (SegFormer, UperNet, ...) from a
  local folder or the local hub cache, its ``id2label`` as object concepts (``transformers`` is
  imported only when such a segmenter is made).

Importing this module registers ``demo:segmenter`` and every ``torchvision:NAME`` with the
dataset builder's registry, which imports it before every lookup (``images.PLUGIN_MODULES``);
``segmenter_from_spec`` also takes weights files and ``hf:`` specs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .datasets.sources.base import SourceConcept
from .datasets.sources.images import list_segmenters, register_segmenter
from .errors import SpecError, WeightsError

__all__ = [
    "DemoSegmenter",
    "TORCHVISION_SEGMENTERS",
    "TorchvisionSegmenter",
    "TransformersSegmenter",
    "VOC_CLASSES",
    "register_builtin_segmenters",
    "segmenter_from_spec",
]

log = logging.getLogger(__name__)

#: Bumped whenever the way any adapter turns images into labels changes (enters fingerprints).
ADAPTER_VERSION = 1

#: The Pascal VOC classes of torchvision's segmentation models (class index - 1; 0 = background).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
TORCHVISION_SEGMENTERS = (
    "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "deeplabv3_resnet101",
    "fcn_resnet50", "fcn_resnet101", "lraspp_mobilenet_v3_large",
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_batch(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Same-sized HxWx3 uint8 images -> normalised float N x 3 x H x W on ``device``."""
    x = torch.from_numpy(np.stack([np.asarray(i, np.uint8) for i in images])).to(device)
    return _normalise(x.permute(0, 3, 1, 2))


def _normalise(x: torch.Tensor) -> torch.Tensor:
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    mean = torch.tensor(_IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                         antialias=size[0] < x.shape[-2])


def _by_shape(images: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices of the images grouped by shape, in batches of at most ``batch_size``."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        shape = tuple(np.shape(image))
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"image {i} has shape {shape}; expected H x W x 3 (RGB uint8)")
        groups.setdefault(shape, []).append(i)
    return [idx[s:s + batch_size] for idx in groups.values()
            for s in range(0, len(idx), batch_size)]


def _check_images(images: Sequence[np.ndarray]) -> None:
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"segment() takes a list of images, not {type(images).__name__}")


# ============================================================================ demo:segmenter
class DemoSegmenter:
    """The shipped toy-world segmenter; label maps carry the toy world's concept codes."""

    name = "demo:segmenter"

    def __init__(self, weights: str | Path | None = None, device: str = "cpu",
                 batch_size: int = 64) -> None:
        from .datasets.sources.toyworld import CONCEPTS
        from .models.demo import get_demo
        from .models.demo_registry import SEGMENTER_INPUT_SIZE, build_demo_module
        from .models.weights import sha256_file

        path = Path(weights) if weights is not None else get_demo("segmenter").weights_path()
        if path is None or not path.is_file():
            raise WeightsError(f"the demo segmenter's weights are missing: {path}",
                               hint="train them with: unitdissect demo train segmenter")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.input_size = SEGMENTER_INPUT_SIZE
        self.model = build_demo_module("segmenter", path).to(self.device)
        self.weights_sha256 = sha256_file(path)
        self.heads = tuple(self.model.categories)
        self._vocab = {cat: [c for c in CONCEPTS if c.category == cat] for cat in self.heads}
        self._codes = {cat: np.array([0] + [c.code for c in vocab], np.uint16)
                       for cat, vocab in self._vocab.items()}

    def concepts(self) -> list[SourceConcept]:
        """The toy world's object, part and material concepts (the heads' classes)."""
        return [c for cat in self.heads for c in self._vocab[cat]]

    def class_names(self) -> dict[str, list[str]]:
        """Per head, the name of each class index ("none" first)."""
        return {cat: ["none"] + [c.name for c in vocab] for cat, vocab in self._vocab.items()}

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 N x 3 x H x W images -> per head, class indices N x H x W (on the CPU)."""
        x = _normalise(images.to(self.device))
        size = tuple(x.shape[-2:])
        logits = self.model(_resize(x, (self.input_size, self.input_size)))
        return {cat: _resize(out.float(), size).argmax(1).to(torch.uint8).cpu()
                for cat, out in logits.items()}

    def segment(self, images: list[np.ndarray]) -> list[dict[str, list[np.ndarray]]]:
        """Per image: object, part and material maps (toy-world codes, 0 = none)."""
        _check_images(images)
        out: list[dict[str, list[np.ndarray]] | None] = [None] * len(images)
        for batch in _by_shape(images, self.batch_size):
            x = torch.from_numpy(np.stack([np.asarray(images[i], np.uint8) for i in batch]))
            classes = self.classify(x.permute(0, 3, 1, 2))
            for row, i in enumerate(batch):
                out[i] = {cat: [self._codes[cat][classes[cat][row].numpy()]]
                          for cat in self.heads}
        return out  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """The adapter version and the weights' sha256."""
        return f"demo:segmenter:v{ADAPTER_VERSION}:{self.weights_sha256}:{self.input_size}"


# ============================================================================ torchvision
class TorchvisionSegmenter:
    """A torchvision segmentation model labelling the 20 Pascal VOC classes as objects."""

    def __init__(self, arch: str, weights: str | Path | None = None, seed: int = 0,
                 device: str = "cpu", resize: int | None = 520, batch_size: int = 8,
                 num_classes: int = 1 + len(VOC_CLASSES)) -> None:
        from .models.weights import check_fits, read_state_dict, sha256_file, state_dict_sha256

        if arch not in TORCHVISION_SEGMENTERS:
            raise SpecError(f"unknown torchvision segmentation model {arch!r}",
                            hint=f"known: {', '.join(TORCHVISION_SEGMENTERS)}")
        self.arch, self.name = arch, f"torchvision:{arch}"
        self.device = torch.device(device)
        self.resize, self.batch_size = resize, batch_size
        state = read_state_dict(weights) if weights is not None else None
        aux = bool(state) and any(k.startswith("aux_classifier.") for k in state)
        self.model = self._build(arch, num_classes, aux, seed)
        if state is not None:
            check_fits(self.model, state, str(weights))
            self.model.load_state_dict(state)
            self.weights_id = sha256_file(weights)  # type: ignore[arg-type]
        else:
            log.warning("segmenter %s has random weights (seed %d): its labels are noise; "
                        "pass a weights file for real labels", self.name, seed)
            self.weights_id = f"random-seed{seed}:{state_dict_sha256(self.model.state_dict())}"
        self.model.to(self.device).eval()
        self.classes = VOC_CLASSES[: num_classes - 1]

    @staticmethod
    def _build(arch: str, num_classes: int, aux: bool, seed: int) -> nn.Module:
        import torchvision

        kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None,
                                  "num_classes": num_classes}
        if not arch.startswith("lraspp"):
            kwargs["aux_loss"] = aux
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torchvision.models.get_model(arch, **kwargs)

    def concepts(self) -> list[SourceConcept]:
        """The VOC classes as object concepts (codes 1..20; background is 0)."""
        return [SourceConcept(i + 1, name, "object") for i, name in enumerate(self.classes)]

    @torch.no_grad()
    def segment(self, images: list[np.ndarray]) -> list[dict[str, list[np.ndarray]]]:
        """Per image: one object map (VOC class codes, 0 = background)."""
        _check_images(images)
        out: list[dict[str, list[np.ndarray]] | None] = [None] * len(images)
        for batch in _by_shape(images, self.batch_size):
            x = _to_batch([images[i] for i in batch], self.device)
            h, w = x.shape[-2:]
            if self.resize:
                scale = self.resize / min(h, w)
                x = _resize(x, (max(1, round(h * scale)), max(1, round(w * scale))))
            logits = self.model(x)["out"]
            labels = _resize(logits.float(), (h, w)).argmax(1).cpu().numpy().astype(np.uint16)
            for row, i in enumerate(batch):
                out[i] = {"object": [labels[row]]}
        return out  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Architecture, weights and resize."""
        return f"{self.name}:v{ADAPTER_VERSION}:{self.weights_id}:resize={self.resize}"


# ============================================================================ transformers
class TransformersSegmenter:
    """A ``transformers`` semantic-segmentation model (SegFormer, UperNet, ...) as objects."""

    def __init__(self, model: str | Path | nn.Module, device: str = "cpu", size: int | None = 512,
                 batch_size: int = 4, category: str = "object") -> None:
        from .models.weights import state_dict_sha256

        if isinstance(model, nn.Module):
            self.model, source = model, type(model).__name__
        else:
            try:
                import transformers
            except ImportError as exc:
                raise SpecError("hf: segmenters need the transformers package",
                                hint="pip install transformers") from exc
            try:
                self.model = transformers.AutoModelForSemanticSegmentation.from_pretrained(
                    str(model), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise SpecError(f"cannot load segmentation model {str(model)!r}: {exc}",
                                hint="give a local model folder or a model in the local hub "
                                "cache; nothing is downloaded") from exc
            source = str(model)
        self.name = f"hf:{source}"
        self.device = torch.device(device)
        self.size, self.batch_size, self.category = size, batch_size, category
        self.model.to(self.device).eval()
        id2label = dict(getattr(self.model.config, "id2label", {}) or {})
        count = int(getattr(self.model.config, "num_labels", len(id2label)))
        names = [str(id2label.get(i, id2label.get(str(i), f"class {i}"))) for i in range(count)]
        # a "background" class means "no label"; every other class i gets code i + 1
        self._codes = np.array([0 if n.lower() in ("background", "__background__") else i + 1
                                for i, n in enumerate(names)], np.uint16)
        self._concepts = [SourceConcept(int(code), name, category)
                          for code, name in zip(self._codes, names) if code]
        self._weights_id = state_dict_sha256(self.model.state_dict())

    def concepts(self) -> list[SourceConcept]:
        """The model's labels (``config.id2label``) as concepts of ``category``."""
        return list(self._concepts)

    @torch.no_grad()
    def segment(self, images: list[np.ndarray]) -> list[dict[str, list[np.ndarray]]]:
        """Per image: one label map of the model's classes."""
        _check_images(images)
        out: list[dict[str, list[np.ndarray]] | None] = [None] * len(images)
        for batch in _by_shape(images, self.batch_size):
            x = _to_batch([images[i] for i in batch], self.device)
            h, w = x.shape[-2:]
            if self.size:
                x = _resize(x, (self.size, self.size))
            logits = self.model(pixel_values=x).logits
            classes = _resize(logits.float(), (h, w)).argmax(1).cpu().numpy()
            for row, i in enumerate(batch):
                out[i] = {self.category: [self._codes[classes[row]]]}
        return out  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Model source, weights hash and input size."""
        return f"{self.name}:v{ADAPTER_VERSION}:{self._weights_id}:size={self.size}"


# ============================================================================ registry
def segmenter_from_spec(spec: str, weights: str | Path | None = None, device: str = "cpu",
                        seed: int = 0) -> Any:
    """Make a segmenter from ``demo:segmenter``, ``torchvision:NAME`` or ``hf:PATH``."""
    kind, colon, rest = spec.partition(":")
    if spec == "demo:segmenter":
        return DemoSegmenter(weights=weights, device=device)
    if colon and kind == "torchvision":
        return TorchvisionSegmenter(rest, weights=weights, seed=seed, device=device)
    if colon and kind == "hf" and rest:
        if weights is not None:
            raise SpecError("hf: segmenters load their weights from their folder",
                            hint="drop --weights")
        return TransformersSegmenter(rest, device=device)
    raise SpecError(f"unknown segmenter spec {spec!r}",
                    hint="use demo:segmenter, torchvision:NAME "
                    f"({', '.join(TORCHVISION_SEGMENTERS)}) or hf:PATH")


def register_builtin_segmenters() -> None:
    """Register ``demo:segmenter`` and ``torchvision:NAME`` (idempotent)."""
    known = set(list_segmenters())
    if "demo:segmenter" not in known:
        register_segmenter("demo:segmenter", DemoSegmenter)
    for arch in TORCHVISION_SEGMENTERS:
        if f"torchvision:{arch}" not in known:
            register_segmenter(f"torchvision:{arch}",
                               lambda arch=arch: TorchvisionSegmenter(arch))


register_builtin_segmenters()

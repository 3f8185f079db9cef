"""Registers the shipped demo models ``demo:classifier``, ``demo:generator``, ``demo:segmenter``.

Importing this module registers them once (``register_builtin_demos`` is idempotent). The
architectures are in ``demo_nets.py``; the weights are ``data/demo/<name>.safetensors``, made by
``unitdissect demo train`` (see ``docs/models.md``).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .demo import list_demos, register_demo
from .demo_nets import ToyClassifier, ToyGenerator, ToySegmenter

__all__ = [
    "CLASSIFIER_INPUT_SIZE",
    "GENERATOR_OUTPUT_SIZE",
    "GENERATOR_Z_DIM",
    "SEGMENTER_INPUT_SIZE",
    "build_demo_module",
    "make_classifier",
    "make_generator",
    "make_segmenter",
    "register_builtin_demos",
    "segmenter_heads",
]

CLASSIFIER_INPUT_SIZE = 128
GENERATOR_Z_DIM = 128
GENERATOR_OUTPUT_SIZE = 64
SEGMENTER_INPUT_SIZE = 64


def _scene_names() -> tuple[str, ...]:
    from ..datasets.sources.toyworld import SCENES

    return tuple(SCENES)


def make_classifier() -> ToyClassifier:
    """The demo scene classifier's architecture; ``class_names`` lists its outputs in order."""
    names = _scene_names()
    model = ToyClassifier(num_classes=len(names))
    model.class_names = names  # type: ignore[assignment]
    return model


def make_generator() -> ToyGenerator:
    """The demo GAN generator's architecture (z: 128 dims -> 3 x 64 x 64 in [-1, 1])."""
    return ToyGenerator(z_dim=GENERATOR_Z_DIM, width=0.5)


def make_segmenter() -> ToySegmenter:
    """The demo segmenter's architecture: object, part and material heads over toy concepts."""
    return ToySegmenter(segmenter_heads())


def segmenter_heads() -> dict[str, int]:
    """Classes per segmenter head: "none" plus the toy world's concepts of that category."""
    from ..datasets.sources.toyworld import CONCEPTS

    return {cat: 1 + sum(c.category == cat for c in CONCEPTS)
            for cat in ("object", "part", "material")}


_FACTORIES = {"classifier": make_classifier, "generator": make_generator,
              "segmenter": make_segmenter}


def build_demo_module(name: str, weights: str | Path | None = None) -> nn.Module:
    """Build demo model ``name`` (classifier, generator, segmenter) with ``weights``; eval mode."""
    from .weights import load_weights

    module = _FACTORIES[name]()
    if weights is not None:
        load_weights(module, weights)
    return module.eval()


def register_builtin_demos() -> None:
    """Register the three demo models (again only if they are not registered yet)."""
    entries = [
        dict(name="classifier", factory=make_classifier, weights_file="classifier.safetensors",
             input_size=CLASSIFIER_INPUT_SIZE, kind="classifier",
             description="VGG-style scene classifier of 128 px toy-world scenes (11 scenes); "
                         "the analogue of VGG-16 on Places365. Input: [0, 1] RGB normalised "
                         "with ImageNet mean/std. Layers features.conv1_1 .. features.conv5_3."),
        dict(name="generator", factory=make_generator, weights_file="generator.safetensors",
             input_size=GENERATOR_OUTPUT_SIZE, kind="generator", input_shape=(GENERATOR_Z_DIM,),
             mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
             description="DCGAN-style generator of 64 px toy-world scenes; the analogue of a "
                         "Progressive GAN on LSUN. Input z ~ N(0, I), 128 dims; output "
                         "3 x 64 x 64 RGB in [-1, 1]. Layers layer1 .. layer7, output."),
        dict(name="segmenter", factory=make_segmenter, weights_file="segmenter.safetensors",
             input_size=SEGMENTER_INPUT_SIZE, kind="segmenter",
             description="Toy-world segmenter (64 px): object, part and material logits per "
                         "pixel. Input: [0, 1] RGB normalised with ImageNet mean/std."),
    ]
    known = set(list_demos())
    for entry in entries:
        if entry["name"] not in known:
            register_demo(**entry)  # type: ignore[arg-type]


register_builtin_demos()

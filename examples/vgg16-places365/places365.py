"""VGG-16 with a 365-way classifier, as trained on Places365 (``places365.py:vgg16_places365``).

The weights must be a state dict in torchvision's VGG-16 layout (``features.0.weight`` ...
``classifier.6.weight`` of shape [365, 4096]); see ../README.md. When
``categories_places365.txt`` (the Places365 release's list, ``/a/airfield 0`` per line) lies
beside this file, the model names its classes from it (``airfield``, ``arena/hockey``, ...),
which is what an [[ablate]] entry needs.
"""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import nn

CATEGORIES = Path(__file__).resolve().parent / "categories_places365.txt"


def _class_names() -> list[str] | None:
    if not CATEGORIES.is_file():
        return None
    lines = CATEGORIES.read_text(encoding="utf-8").splitlines()
    # "/a/arena/hockey 13" -> "arena/hockey"
    return ["/".join(line.split()[0].split("/")[2:]) for line in lines if line.strip()]


def vgg16_places365() -> nn.Module:
    """torchvision's VGG-16 with 365 outputs (random weights until the build loads the file)."""
    model = torchvision.models.vgg16(weights=None, num_classes=365)
    names = _class_names()
    if names:
        model.class_names = names
    return model

"""VGG-16 with a 365-way classifier, as trained on Places365 (``places365.py:vgg16_places365``).

The weights are a state dict in torchvision's VGG-16 layout (``features.0.weight`` ...
``classifier.6.weight`` of shape [365, 4096]) or, as they are, in the PNAS code's layout
(github.com/davidbau/dissect: ``features.conv1_1.weight`` ... ``features.conv5_3.bias``,
``classifier.fc6.*``, ``classifier.fc7.*``, ``classifier.fc8a.*``; its
``vgg16_places365-0bafbc55.pth``). unitdissect renames the PNAS keys to torchvision's on
loading (builder/models/layouts.py), so the layers keep torchvision's names: the PNAS code's
``conv5_3`` is ``features.29`` here (see docs/models.md). Another number of classes:
``places365.py:vgg16_places365(num_classes=N)``. When
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


def vgg16_places365(num_classes: int = 365) -> nn.Module:
    """torchvision's VGG-16 with ``num_classes`` outputs (random until the weights load)."""
    model = torchvision.models.vgg16(weights=None, num_classes=num_classes)
    names = _class_names()
    if names and len(names) == num_classes:
        model.class_names = names
    return model

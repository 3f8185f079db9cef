"""Known foreign state-dict layouts, renamed to the layout of the model they are loaded into.

The field's released checkpoints often name a standard architecture's modules their own way.
The PNAS code (github.com/davidbau/dissect, ``experiment/oldvgg16.py``) builds torchvision's
VGG-16 and renames the children of ``features`` and ``classifier`` to the research names, so
its Places365 weights are keyed ``features.conv1_1.weight`` ... ``features.conv5_3.bias``,
``classifier.fc6.*``, ``classifier.fc7.*`` and ``classifier.fc8a.*``. The modules are the
same and in the same order, so renaming by position gives torchvision's keys
(``features.0.weight`` ... ``classifier.6.bias``).

``adapt_layout`` renames a state dict only when one layout recognises every one of its keys
and the renamed keys match more of the model's keys than the file's own do; the keys and
shapes are then checked as for any file (an error names the layout).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import torch

__all__ = ["LAYOUTS", "Layout", "adapt_layout", "convert_layout"]

# The order of the children of torchvision's VGG-16 ``features`` (31) and ``classifier`` (7),
# under the names the PNAS code gives them.
_VGG16_FEATURES = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "pool5",
)
_VGG16_CLASSIFIER = ("fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8a")


@dataclass(frozen=True)
class Layout:
    """A foreign layout: ``rename`` maps one of its keys to the model's, or None if foreign."""

    name: str
    description: str
    rename: Callable[[str], str | None]


def _positional(containers: Mapping[str, tuple[str, ...]]) -> Callable[[str], str | None]:
    """A renamer of ``CONTAINER.CHILD.PARAM`` keys whose children are named in order."""
    index = {prefix: {child: i for i, child in enumerate(children)}
             for prefix, children in containers.items()}

    def rename(key: str) -> str | None:
        prefix, _, rest = key.partition(".")
        child, _, param = rest.partition(".")
        position = index.get(prefix, {}).get(child)
        if position is None or not param:
            return None
        return f"{prefix}.{position}.{param}"

    return rename


#: Every known layout, tried in this order.
LAYOUTS: tuple[Layout, ...] = (
    Layout("pnas-vgg16", "the PNAS code's VGG-16 names (features.conv1_1 ... classifier.fc8a)",
           _positional({"features": _VGG16_FEATURES, "classifier": _VGG16_CLASSIFIER})),
)


def convert_layout(state: Mapping[str, torch.Tensor], layout: Layout
                   ) -> dict[str, torch.Tensor] | None:
    """``state`` with every key renamed by ``layout``; None if any key is not in the layout."""
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = layout.rename(key)
        if new is None or new in converted:
            return None
        converted[new] = value
    return converted


def adapt_layout(expected_keys: Collection[str], state: Mapping[str, torch.Tensor]
                 ) -> tuple[dict[str, torch.Tensor], Layout | None]:
    """``state`` renamed by the layout that recognises every key and matches most of
    ``expected_keys``; ``state`` itself (and None) when its own keys match as many."""
    expected = set(expected_keys)
    best, best_layout = dict(state), None
    best_overlap = len(expected & set(state))
    if best_overlap == len(expected) == len(state):
        return best, None
    for layout in LAYOUTS:
        converted = convert_layout(state, layout)
        # a near miss (a key missing, one extra) is still renamed, so errors speak of the
        # model's keys rather than of every key at once
        if converted is not None and len(expected & set(converted)) > best_overlap:
            best, best_layout = converted, layout
            best_overlap = len(expected & set(converted))
    return best, best_layout

"""Presets of the method's choices: this project's, NetDissect-Lite's and the PNAS code's.

A preset (``--method``) is a bundle of the choices where published implementations differ
(docs/method.md, section 8, has the table and the peers' source files). Every choice left
unset (None) in ``DissectOptions`` takes the preset's value; one given explicitly overrides it.
The resolved choices, the preset's name and the choices that differ from the preset
(``method_overrides``) are written in the run's manifest; the resolved choices enter the
run's fingerprint (the name does not: two spellings of the same choices give the same run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CHOICES", "METHODS", "Method", "THRESHOLD_ON", "UNIONS", "UPSAMPLINGS",
           "padding_of", "resolve_method"]

#: Where the quantile is taken: the upsampled maps S_k, or the layer's raw maps A_k.
THRESHOLD_ON = ("upsampled", "raw")
#: How A_k is upsampled: bilinear at PyTorch's align_corners=False positions, with the edge
#: rows and columns repeated beyond the outer activations ("bilinear") or with zeros there
#: ("bilinear-zeros", grid_sample's padding_mode="zeros").
UPSAMPLINGS = ("bilinear", "bilinear-zeros")
#: Which images' mask areas enter the union of a concept of category C: images annotated
#: for C ("category"), images where the mask overlaps an annotation of C ("overlap"), or
#: every image ("all").
UNIONS = ("category", "overlap", "all")
#: The options a preset sets.
CHOICES = ("quantile", "iou_threshold", "threshold_on", "upsampling", "union", "mean", "std")

#: NetDissect-Lite's input: Places365's BGR mean on the 0-255 scale, subtracted, then divided
#: by 255 * 0.224 (loader/data_loader.py, feature_operation.py); here as RGB on [0, 1].
_PLACES_MEAN = (124.6901 / 255, 118.6897 / 255, 109.5388 / 255)
_PLACES_STD = (0.224, 0.224, 0.224)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Method:
    """One preset: a value for every choice in ``CHOICES`` (mean/std None: the model's)."""

    name: str
    follows: str  # the implementation it reproduces
    quantile: float
    iou_threshold: float
    threshold_on: str
    upsampling: str
    union: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("unitdissect", "this project (docs/method.md)", 0.005, 0.04, "upsampled",
           "bilinear", "category", None, None),
    Method("netdissect", "CSAILVision/NetDissect-Lite", 0.005, 0.04, "raw", "bilinear",
           "overlap", _PLACES_MEAN, _PLACES_STD),
    Method("pnas", "davidbau/dissect (PNAS 2020)", 0.01, 0.04, "upsampled", "bilinear-zeros",
           "all", _IMAGENET_MEAN, _IMAGENET_STD),
)}


def padding_of(upsampling: str) -> str:
    """The ``Upsampler`` padding of an upsampling choice: ``border`` or ``zeros``."""
    return "zeros" if upsampling == "bilinear-zeros" else "border"


def _same(a: Any, b: Any) -> bool:
    """Whether two choice values are equal (triples compared as floats)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        try:
            return len(a) == len(b) and all(float(x) == float(y) for x, y in zip(a, b))
        except (TypeError, ValueError):
            return False
    return a == b


def resolve_method(options: Any) -> list[str]:
    """Fill ``options``' unset choices from its preset, in place, and set
    ``options.method_overrides``; return what is wrong (one line each)."""
    problems: list[str] = []
    method = METHODS.get(options.method)
    if method is None:
        problems.append(f"--method must be one of {', '.join(METHODS)}, got {options.method!r}")
        method = METHODS["unitdissect"]  # to go on validating the rest
    aware = options.category_aware
    if aware is not None and not isinstance(aware, bool):
        problems.append(f"category_aware must be True or False, got {aware!r}")
        aware = None
    if options.union is None and aware is not None:
        # --no-category-aware is --union all; category_aware=True keeps a category-aware
        # preset's rule, else takes the brief's
        options.union = method.union if (method.union != "all") == aware else \
            ("category" if aware else "all")
    for name in CHOICES:
        if getattr(options, name) is None:
            setattr(options, name, getattr(method, name))
    for name, allowed in (("threshold_on", THRESHOLD_ON), ("upsampling", UPSAMPLINGS),
                          ("union", UNIONS)):
        if getattr(options, name) not in allowed:
            problems.append(f"--{name.replace('_', '-')} must be {', '.join(allowed[:-1])} or "
                            f"{allowed[-1]}, got {getattr(options, name)!r}")
    if aware is not None and options.union in UNIONS and (options.union != "all") != aware:
        problems.append(f"--union {options.union} and category_aware={aware} contradict "
                        "each other (--no-category-aware is --union all)")
    options.category_aware = options.union != "all"
    options.method_overrides = tuple(name for name in CHOICES
                                     if not _same(getattr(options, name), getattr(method, name)))
    return problems

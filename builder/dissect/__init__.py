"""The dissection engine: thresholds, IoU against concepts, top images, and the run directory."""

from .iou import IoUCounts, Upsampler, label_units, summarize_layer
from .quantile import TailQuantile, needed_top, sample_levels, upper_quantile
from .runner import DissectOptions, dissect, resolve_device
from .topk import Histogram, TopK, ValueRange

__all__ = [
    "DissectOptions",
    "Histogram",
    "IoUCounts",
    "TailQuantile",
    "TopK",
    "Upsampler",
    "ValueRange",
    "dissect",
    "label_units",
    "needed_top",
    "resolve_device",
    "sample_levels",
    "summarize_layer",
    "upper_quantile",
]

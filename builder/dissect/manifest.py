"""The run manifest: what was run, with which software, on which machine.

The format is described in docs/results-format.md.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import logging
import os
import platform
import sys
from typing import Any

from ..paths import portable_path, portable_spec, portable_tree

__all__ = ["FORMAT", "FORMAT_VERSION", "machine_info", "model_record", "random_weights",
           "skipped_record", "software_versions", "utc_now", "warn_random_weights"]

log = logging.getLogger(__name__)

#: Name and version of the run-directory format.
FORMAT = "unitdissect-run"
FORMAT_VERSION = 1

_PACKAGES = ("torch", "torchvision", "numpy", "datasets", "safetensors", "pillow")


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def software_versions() -> dict[str, str | None]:
    """Versions of unitdissect, Python and the libraries that shape the results (None: absent)."""
    from .. import __version__

    versions: dict[str, str | None] = {"unitdissect": __version__,
                                       "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info(device: Any = "cpu") -> dict[str, Any]:
    """Platform, CPU count and the compute device's name."""
    info: dict[str, Any] = {"platform": platform.platform(), "python_implementation":
                            platform.python_implementation(), "cpu_count": os.cpu_count(),
                            "byteorder": sys.byteorder}
    name = str(device)
    try:
        import torch

        dev = torch.device(device)
        info["torch_threads"] = torch.get_num_threads()
        if dev.type == "cuda" and torch.cuda.is_available():
            name = torch.cuda.get_device_name(dev)
            info["cuda"] = torch.version.cuda
        elif dev.type == "cpu":
            name = platform.processor() or platform.machine() or "cpu"
    except Exception:  # the manifest must never fail because of a device query
        pass
    info["device_name"] = name
    return info


def random_weights(model: Any) -> bool:
    """Whether ``model`` (a LoadedModel) runs on a random initialisation, not trained weights."""
    flag = getattr(model, "random_weights", None)
    return bool(flag) if flag is not None else getattr(model, "weights", None) is None


def warn_random_weights(model: Any) -> None:
    """Say on the terminal that a model's weights are random (its labels mean little)."""
    if random_weights(model):
        log.warning("%s has random weights (no --weights given; seed %s): its units' labels "
                    "describe an untrained network, and the run says so", model.spec,
                    getattr(model, "seed", None))


def model_record(model: Any, **extra: Any) -> dict[str, Any]:
    """The manifest's ``model`` block: spec and weights as published (no machine paths)."""
    weights = getattr(model, "weights", None)
    return {"spec": portable_spec(model.spec),
            "weights": "random" if random_weights(model) else
            (portable_path(weights) if weights is not None else None),
            "random_weights": random_weights(model),
            "weights_layout": getattr(model, "weights_layout", None),
            "weights_sha256": model.weights_sha256, "seed": getattr(model, "seed", None),
            "kind": getattr(model, "kind", None), **extra}


def skipped_record(probe: Any, listed: int = 20) -> dict[str, Any]:
    """How many probe images the dataset build skipped, and the first ``listed`` of them."""
    skipped = list(getattr(probe, "skipped", []) or [])
    return {"skipped_images": len(skipped), "skipped": portable_tree(skipped[:listed])}

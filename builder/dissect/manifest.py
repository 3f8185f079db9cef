"""The run manifest: what was run, with which software, on which machine.

The format is described in docs/results-format.md.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import sys
from typing import Any

__all__ = ["FORMAT", "FORMAT_VERSION", "machine_info", "software_versions", "utc_now"]

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

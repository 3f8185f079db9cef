"""Training of the demo models on toy-world scenes, and the helpers the trainers share.

``train_classifier``, ``train_generator`` and ``train_segmenter`` (in their modules) each take a
config dataclass with a fixed seed, train on the CPU by default (CUDA with ``device="auto"``
when available), and write ``<name>.safetensors`` plus ``<name>.json`` (metrics, config, data,
time and the exact command) into an output folder.
"""

from __future__ import annotations

import contextlib
import json
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

__all__ = [
    "TrainResult",
    "autocast",
    "resolve_amp",
    "resolve_device",
    "save_result",
    "seed_everything",
]


@dataclass
class TrainResult:
    """What one training run produced: weights, metrics, timings and provenance."""

    name: str
    weights: Path
    metrics: dict[str, Any]
    seconds: dict[str, float]
    config: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (written next to the weights)."""
        from .. import __version__

        return {
            "model": f"demo:{self.name}",
            "weights": self.weights.name,
            "weights_sha256": _sha256(self.weights),
            "metrics": self.metrics,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "config": self.config,
            "data": self.data,
            "command": self.command,
            "device": self.device,
            "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                        "processor": platform.processor() or platform.machine()},
            "versions": {"unitdissect": __version__, "torch": torch.__version__,
                         "numpy": np.__version__},
        }


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; any other torch device string as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"bad --device {device!r}: {exc}", hint="use auto, cpu or cuda") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but CUDA is not available",
                          hint="use --device auto or cpu")
    return resolved


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """``auto`` -> bfloat16 autocast where the hardware runs it natively, else None (fp32)."""
    if amp in ("off", "fp32", "none"):
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp != "auto":
        raise ConfigError(f"bad amp mode {amp!r}", hint="use auto, bf16 or off")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Mixed-precision autocast on ``device`` when ``dtype`` is set; a no-op otherwise."""
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a CPU generator for data order and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def save_result(model: nn.Module, result: TrainResult, metadata: dict[str, str]) -> Path:
    """Write the model's state dict as safetensors (with metadata) and the JSON summary."""
    from safetensors.torch import save_file

    result.weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(result.weights), metadata=metadata)
    result.weights.chmod(0o644)
    summary = result.weights.with_suffix(".json")
    summary.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return summary


class Timer:
    """Wall-clock seconds of named phases, and the process's CPU seconds in all."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the time spent inside the block to ``seconds[name]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> dict[str, float]:
        """The phases, ``total`` wall time, and ``cpu`` time of this process (all threads)."""
        return {**self.seconds, "total": time.perf_counter() - self._start,
                "cpu": time.process_time() - self._cpu_start}


def config_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-ready dict."""
    return {k: v for k, v in asdict(config).items()}


def _sha256(path: Path) -> str:
    from ..models.weights import sha256_file

    return sha256_file(path)

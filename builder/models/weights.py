"""Safe loading of weight files into models, and content hashes of weights.

``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)``: a file that needs pickled
code is refused with a WeightsError, and that code is never executed. ``read_checkpoint`` lets a
caller allow a few more classes that hold data only (e.g. ``argparse.Namespace``, which training
scripts save beside the weights). A state dict in a known foreign layout (``layouts.py``, e.g.
the PNAS code's VGG-16 names) is renamed to the model's keys on loading.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from .layouts import adapt_layout

#: File suffixes read with torch.load (weights only) and with safetensors.
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES = (".safetensors",)

_WRAPPER_KEYS = ("state_dict", "model")
_STRIPPED_PREFIXES = ("module.", "_orig_mod.")
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The hex sha256 of a canonical serialisation: sorted keys, dtype, shape, contiguous bytes."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        header = f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0{len(raw)}\0"
        digest.update(header.encode("utf-8"))
        digest.update(raw)
    return digest.hexdigest()


def read_state_dict(
    path: str | Path, expected_keys: Collection[str] | None = None
) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin``/``.ckpt`` or ``.safetensors``, safely.

    Wrappers ``{"state_dict": ...}`` / ``{"model": ...}`` are unwrapped, and a ``module.`` (or
    ``_orig_mod.``) prefix shared by all keys is stripped unless ``expected_keys`` (the model's
    own keys) all carry it too.
    """
    path = Path(path)
    return as_state_dict(read_checkpoint(path), path, expected_keys)


def read_checkpoint(path: str | Path, safe_globals: Iterable[type] = (),
                    refused_hint: str | None = None) -> object:
    """What a weights file holds, read without running pickled code.

    ``.safetensors`` give a dict of tensors; torch files are read with
    ``torch.load(weights_only=True)``, which rebuilds tensors, containers and primitives plus
    the classes in ``safe_globals`` (data-only classes such as ``argparse.Namespace``) and
    refuses anything else with a one-line WeightsError naming the file (``refused_hint``
    replaces its default hint).
    """
    path = Path(path)
    if not path.is_file():
        what = " (a folder, not a file)" if path.is_dir() else ""
        raise WeightsError(f"weights file not found: {path}{what}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path, tuple(safe_globals), refused_hint)
    supported = ", ".join(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES)
    raise WeightsError(
        f"cannot read weights file {path}: unknown suffix {suffix or '(none)'!r}",
        hint=f"supported suffixes: {supported}",
    )


def _read_safetensors(path: Path) -> object:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise WeightsError(f"cannot read safetensors file {path}: {exc}") from exc


def _read_torch(path: Path, safe_globals: tuple[type, ...] = (),
                refused_hint: str | None = None) -> object:
    try:
        # the allow-list holds only for this call: the context restores the previous one
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it refers to {found.group(1)})" if found else ""
        raise WeightsError(
            f"refused to load {path}: it contains pickled Python objects or code{what}, "
            "not only tensors",
            hint=refused_hint or "save just the state dict (torch.save(model.state_dict(), "
            "FILE)) or convert it to .safetensors",
        ) from exc
    except Exception as exc:  # corrupt archives raise many different types
        raise WeightsError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc


def as_state_dict(
    loaded: object, path: str | Path, expected_keys: Collection[str] | None = None
) -> dict[str, torch.Tensor]:
    """The state dict in what a weights file held (see ``read_state_dict``); ``path`` names
    the file in errors."""
    for _ in range(len(_WRAPPER_KEYS) + 1):
        if not isinstance(loaded, Mapping):
            break
        wrapper = next((k for k in _WRAPPER_KEYS if isinstance(loaded.get(k), Mapping)), None)
        if wrapper is None:
            break
        loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping):
        raise WeightsError(
            f"{path} does not hold a state dict (found {type(loaded).__name__})",
            hint="save model.state_dict(), not the model object",
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor",
                hint='a checkpoint should be a state dict or {"state_dict": ...}',
            )
        state[str(key)] = value
    for prefix in _STRIPPED_PREFIXES:
        model_has_it = bool(expected_keys) and all(k.startswith(prefix) for k in expected_keys)
        if state and not model_has_it and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def check_fits(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise WeightsError naming the first missing, unexpected or mis-shaped key, if any."""
    expected = module.state_dict()
    missing = {key for key in expected if key not in state_dict}
    unexpected = [key for key in state_dict if key not in expected]
    mis_shaped = {
        key
        for key in expected
        if key in state_dict and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    }
    if not (missing or unexpected or mis_shaped):
        return
    ordered = [key for key in expected if key in missing or key in mis_shaped] + unexpected
    first = ordered[0]
    if first in missing:
        problem = f"missing key {first!r}"
    elif first in mis_shaped:
        problem = (
            f"key {first!r} has shape {tuple(state_dict[first].shape)}, "
            f"the model expects {tuple(expected[first].shape)}"
        )
    else:
        problem = f"unexpected key {first!r}"
    counts = (
        f"{len(missing)} missing, {len(unexpected)} unexpected, "
        f"{len(mis_shaped)} with the wrong shape"
    )
    raise WeightsError(
        f"weights {source} do not fit the model: {problem} ({counts})",
        hint="check that the weights were saved from the same architecture",
    )


def load_weights(module: nn.Module, path: str | Path) -> str:
    """Load the state dict in ``path`` into ``module`` (strictly); return the file's sha256."""
    return load_weights_info(module, path)[0]


def load_weights_info(module: nn.Module, path: str | Path) -> tuple[str, str | None]:
    """Load ``path`` into ``module`` (strictly); return the file's sha256 and the name of the
    foreign layout its keys were renamed from (``layouts.py``), or None."""
    expected = list(module.state_dict())
    state, layout = adapt_layout(expected, read_state_dict(path, expected_keys=expected))
    source = f"{path} ({layout.description}, renamed)" if layout is not None else str(path)
    check_fits(module, state, source)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise WeightsError(f"cannot load weights {path}: {exc}") from exc
    return sha256_file(path), layout.name if layout is not None else None

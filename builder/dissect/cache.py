"""The activations of pass 1, kept for the later passes: in memory, then on disk.

A dissection reads its probe set once when the activations of every batch can be kept: the
threshold search's sweeps and the count pass then reread them instead of running the model
again (docs/benchmarks.md: a sweep over kept activations costs a small fraction of a forward
pass). Batches are kept in memory up to one byte budget, then written to disk up to a second
one, float32 as computed (every pass must see the same bits), each batch one file written
atomically. A killed run leaves its files in place, and the rerun that resumes it reads them
instead of recomputing; the files go when the run ends.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from .. import io as atomic

__all__ = ["ActivationCache", "batch_bytes", "disk_room"]

log = logging.getLogger(__name__)

#: Disk space left free for everything else when the disk budget is fitted to the free space.
_DISK_RESERVE = 1 << 30


def disk_room(folder: Path, budget: int) -> int:
    """``budget`` bytes, or less where the disk under ``folder`` has less free space."""
    if budget <= 0:
        return 0
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    return max(0, min(budget, free - _DISK_RESERVE))


def batch_bytes(payload: Any, acts: dict[str, torch.Tensor]) -> int:
    """Bytes of one batch as kept: its payload's tensors, and its activations as float32."""
    tensors = [getattr(payload, f.name) for f in dataclasses.fields(payload)]
    return sum(t.numel() * t.element_size() for t in tensors) + \
        sum(a.numel() * 4 for a in acts.values())


def _narrow(t: torch.Tensor) -> torch.Tensor:
    """Integer ids (label maps) as int16 where they fit: half the disk of int32."""
    if t.dtype in (torch.int32, torch.int64) and t.numel() and \
            -(1 << 15) <= int(t.min()) and int(t.max()) < (1 << 15):
        return t.to(torch.int16)
    return t


class ActivationCache:
    """Batches (a dataclass payload of tensors, and float32 activations by layer) by index:
    in memory within ``memory`` bytes, then in ``folder`` within ``disk`` bytes. Batches are
    kept in order, so the ones kept are a prefix and the rest are computed again."""

    def __init__(self, memory: int, disk: int = 0, folder: Path | None = None) -> None:
        self.memory, self.disk, self.folder = memory, disk if folder is not None else 0, folder
        self.used = self.disk_used = 0
        self.items: dict[int, tuple[Any, dict[str, torch.Tensor]]] = {}
        self.files: dict[int, int] = {}  # index -> bytes, on disk
        self.full = self.memory <= 0 and self.disk <= 0
        if self.folder is not None and self.folder.is_dir():  # a killed run's batches
            for path in self.folder.glob("*.pt"):
                if path.stem.isdigit():
                    self.files[int(path.stem)] = path.stat().st_size
            self.disk_used = sum(self.files.values())

    @property
    def capacity(self) -> int:
        """Bytes it can keep in all."""
        return self.memory + self.disk

    def __contains__(self, index: int) -> bool:
        return index in self.items or index in self.files

    def _path(self, index: int) -> Path:
        assert self.folder is not None
        return self.folder / f"{index}.pt"

    def put(self, index: int, payload: Any, acts: dict[str, torch.Tensor]) -> None:
        """Keep one batch, if it fits (and every earlier one was kept)."""
        if self.full or index in self:
            return
        size = batch_bytes(payload, acts)
        cpu = torch.device("cpu")
        if self.used + size <= self.memory and not self.files:
            self.used += size
            self.items[index] = (payload.to(cpu), {k: a.float().cpu() for k, a in acts.items()})
        elif self.disk_used + size <= self.disk:
            fields = {f.name: _narrow(getattr(payload, f.name).cpu())
                      for f in dataclasses.fields(payload)}
            try:
                atomic.write_torch(self._path(index), {
                    "kind": type(payload).__name__, "payload": fields,
                    "dtypes": {f.name: str(getattr(payload, f.name).dtype).removeprefix("torch.")
                               for f in dataclasses.fields(payload)},
                    "acts": {k: a.float().cpu() for k, a in acts.items()}})
            except OSError as exc:  # a full or failing disk: compute the rest again instead
                log.warning("could not keep activations in %s (%s); later passes compute the "
                            "batches from %d on again", self.folder, exc, index)
                self.full = True
                return
            self.files[index] = size
            self.disk_used += size
        else:
            self.full = True  # keep a contiguous run of batches: later ones are recomputed

    def get(self, index: int, payload_type: type) -> tuple[Any, dict[str, torch.Tensor]] | None:
        """The batch, or None if it was not kept."""
        if index in self.items:
            return self.items[index]
        if index not in self.files:
            return None
        data = torch.load(self._path(index), weights_only=True)
        fields = {k: v.to(getattr(torch, data["dtypes"][k])) for k, v in data["payload"].items()}
        return payload_type(**fields), data["acts"]

    def drop(self, index: int) -> None:
        """Forget one batch (the last pass has used it)."""
        item = self.items.pop(index, None)
        if item is not None:
            self.used -= batch_bytes(*item)
        if self.files.pop(index, None) is not None:
            self._path(index).unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget everything, and remove the folder."""
        self.items.clear()
        self.files.clear()
        self.used = self.disk_used = 0
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

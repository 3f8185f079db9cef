"""Train ``demo:segmenter``: object, part and material labels per pixel of 64 px toy scenes.

One head per category predicts "none" (class 0) or one of the toy world's concepts of that
category (class i + 1 = the i-th concept, in code order; see ``data.head_vocabulary``). The loss
is the sum of the heads' cross-entropies. Metrics: pixel accuracy per head (over pixels that
carry a label of the category, and over all pixels) and mean IoU over the concepts present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from ..errors import ConfigError
from ..models.demo import IMAGENET_MEAN, IMAGENET_STD
from ..models.demo_nets import ToySegmenter
from . import (TrainResult, Timer, autocast, config_dict, resolve_amp, resolve_device,
               save_result, seed_everything)
from .data import (PIXEL_HEADS, TOYWORLD_VERSION, TRAIN_SEED, VAL_SEED, head_vocabulary,
                   render_scenes, to_model_input)

__all__ = ["SegmenterConfig", "evaluate_segmenter", "head_sizes", "train_segmenter"]


@dataclass
class SegmenterConfig:
    """Options of a segmenter training run (defaults: the shipped ``demo:segmenter``)."""

    n_train: int = 8000
    n_val: int = 500
    size: int = 64
    epochs: int = 4
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    workers: int = 2

    def __post_init__(self) -> None:
        if min(self.n_train, self.n_val, self.epochs, self.batch_size) < 1:
            raise ConfigError("n_train, n_val, epochs and batch_size must be positive")
        if self.size % 8:
            raise ConfigError(f"size must be a multiple of 8, not {self.size}")


def head_sizes() -> dict[str, int]:
    """Classes per head: "none" plus the toy world's concepts of the category."""
    return {cat: 1 + len(head_vocabulary(cat)) for cat in PIXEL_HEADS}


@torch.no_grad()
def evaluate_segmenter(model: torch.nn.Module, images: torch.Tensor,
                       labels: dict[str, torch.Tensor], device: torch.device | str = "cpu",
                       amp: torch.dtype | None = None, batch_size: int = 100) -> dict[str, Any]:
    """Pixel accuracy and per-concept IoU per head on uint8 images with class maps."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sizes = {cat: getattr(model, f"{cat}_head").out_channels for cat in labels}
    confusion = {cat: torch.zeros(k, k, dtype=torch.int64) for cat, k in sizes.items()}
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start:start + batch_size].to(device), IMAGENET_MEAN,
                           IMAGENET_STD)
        with autocast(device, amp):
            out = model(x)
        for cat, k in sizes.items():
            pred = out[cat].float().argmax(1).cpu().flatten().long()
            true = labels[cat][start:start + batch_size].flatten().long()
            confusion[cat] += torch.bincount(true * k + pred, minlength=k * k).view(k, k)
    model.train(was_training)
    metrics: dict[str, Any] = {}
    for cat, conf in confusion.items():
        total = conf.sum().item()
        labelled = conf[1:].sum().item()
        diag = conf.diag()
        inter = diag.double()
        union = (conf.sum(0) + conf.sum(1) - diag).double()
        present = conf.sum(1) > 0
        present[0] = False  # "none" is not a concept
        iou = inter[present] / union[present]
        metrics[cat] = {
            "pixel_accuracy": round(diag[1:].sum().item() / max(labelled, 1), 4),
            "pixel_accuracy_all": round(diag.sum().item() / max(total, 1), 4),
            "mean_iou": round(iou.mean().item(), 4) if len(iou) else 0.0,
            "concepts_present": int(present.sum()),
            "labelled_fraction": round(labelled / max(total, 1), 4),
        }
    return metrics


def train_segmenter(config: SegmenterConfig, out_dir: str | Path, progress: bool = False,
                    command: str | None = None) -> TrainResult:
    """Train the segmenter; write ``segmenter.safetensors`` and ``segmenter.json``."""
    from tqdm.auto import tqdm

    timer = Timer()
    device = resolve_device(config.device)
    amp = resolve_amp(config.amp, device)
    generator = seed_everything(config.seed)
    with timer.phase("data"):
        train = render_scenes(config.n_train, config.size, TRAIN_SEED, labels=True,
                              workers=config.workers, progress=progress)
        val = render_scenes(config.n_val, config.size, VAL_SEED, labels=True,
                            workers=config.workers, progress=progress)
    sizes = head_sizes()
    model = ToySegmenter(sizes, width=config.width).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    total = math.ceil(len(train) / config.batch_size) * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=total, pct_start=0.1)
    history = []
    bar = tqdm(total=total, desc="train segmenter", disable=not progress, unit="step")
    with timer.phase("train"):
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(len(train), generator=generator)
            running, seen = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                index = order[start:start + config.batch_size]
                flip = (torch.rand(len(index), generator=generator) < 0.5).view(-1, 1, 1)
                images = train.images[index]
                images = torch.where(flip.unsqueeze(1), images.flip(-1), images)
                x = to_model_input(images.to(device), IMAGENET_MEAN, IMAGENET_STD)
                x = x.contiguous(memory_format=torch.channels_last)
                with autocast(device, amp):
                    out = model(x)
                loss = torch.zeros((), device=device)
                for cat in PIXEL_HEADS:
                    target = train.labels[cat][index]
                    target = torch.where(flip, target.flip(-1), target).to(device).long()
                    loss = loss + F.cross_entropy(out[cat].float(), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                running += loss.item() * len(index)
                seen += len(index)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{running / seen:.3f}")
            quick = evaluate_segmenter(model, val.images[:100],
                                       {c: m[:100] for c, m in val.labels.items()}, device, amp)
            history.append({"epoch": epoch + 1, "train_loss": round(running / seen, 4),
                            **{f"val100_{c}_accuracy": quick[c]["pixel_accuracy"]
                               for c in PIXEL_HEADS}})
            if progress:
                bar.write(f"epoch {epoch + 1}: train loss {running / seen:.3f}, pixel accuracy "
                          "on 100 val scenes " + ", ".join(
                              f"{c} {quick[c]['pixel_accuracy']:.3f}" for c in PIXEL_HEADS))
    bar.close()
    with timer.phase("evaluate"):
        metrics: dict[str, Any] = evaluate_segmenter(model, val.images, val.labels, device, amp)
    model = model.to("cpu", memory_format=torch.contiguous_format)
    metrics["history"] = history
    vocab = {cat: [c.name for c in head_vocabulary(cat)] for cat in PIXEL_HEADS}
    result = TrainResult(
        name="segmenter", weights=Path(out_dir) / "segmenter.safetensors", metrics=metrics,
        seconds=timer.total(), config=config_dict(config), command=command, device=str(device),
        data={"source": "toyworld", "toyworld_version": TOYWORLD_VERSION,
              "train": {"seed": TRAIN_SEED, "n": config.n_train},
              "val": {"seed": VAL_SEED, "n": config.n_val}, "size": config.size,
              "texture_fraction": 0.0, "heads": sizes,
              "normalisation": {"range": "[0, 1]", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}})
    save_result(model, result, {f"{cat}_classes": "|".join(names)
                                for cat, names in vocab.items()} | {"input_size": str(config.size)})
    return result

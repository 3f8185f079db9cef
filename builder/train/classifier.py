"""Train ``demo:classifier``, the VGG-style scene classifier, on toy-world scenes.

Images are [0, 1] RGB normalised with the ImageNet mean and std (the dissection default).
Training sees random ``crop`` x ``crop`` crops (same scale, random position) flipped at random;
validation sees the whole ``size`` x ``size`` image, the size dissection runs at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from ..errors import ConfigError
from ..models.demo import IMAGENET_MEAN, IMAGENET_STD
from ..models.demo_nets import ToyClassifier
from . import (TrainResult, Timer, autocast, config_dict, resolve_amp, resolve_device,
               save_result, seed_everything)
from .data import (TOYWORLD_VERSION, TRAIN_SEED, VAL_SEED, render_scenes, scene_names,
                   to_model_input)

__all__ = ["ClassifierConfig", "evaluate_classifier", "train_classifier"]


@dataclass
class ClassifierConfig:
    """Options of a classifier training run (defaults: the shipped ``demo:classifier``)."""

    n_train: int = 8000
    n_val: int = 1000
    size: int = 128
    crop: int = 112
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    width: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    workers: int = 2

    def __post_init__(self) -> None:
        if min(self.n_train, self.n_val, self.epochs, self.batch_size) < 1:
            raise ConfigError("n_train, n_val, epochs and batch_size must be positive")
        if not 8 <= self.crop <= self.size:
            raise ConfigError(f"crop {self.crop} must be between 8 and size {self.size}")


def _augment(images: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """Random crops (same scale) and horizontal flips of a uint8 batch."""
    n, _, h, w = images.shape
    ys = torch.randint(0, h - crop + 1, (n,), generator=generator).tolist()
    xs = torch.randint(0, w - crop + 1, (n,), generator=generator).tolist()
    flips = (torch.rand(n, generator=generator) < 0.5).tolist()
    out = torch.empty((n, images.shape[1], crop, crop), dtype=images.dtype)
    for i in range(n):
        patch = images[i, :, ys[i]:ys[i] + crop, xs[i]:xs[i] + crop]
        out[i] = patch.flip(-1) if flips[i] else patch
    return out


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, images: torch.Tensor, scenes: torch.Tensor,
                        device: torch.device | str = "cpu", amp: torch.dtype | None = None,
                        batch_size: int = 100) -> dict[str, float]:
    """Accuracy and balanced accuracy of ``model`` on uint8 images with scene indices."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    predictions = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start:start + batch_size].to(device), IMAGENET_MEAN,
                           IMAGENET_STD).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            predictions.append(model(x).argmax(1).cpu())
    model.train(was_training)
    predicted = torch.cat(predictions)
    correct = predicted == scenes
    per_class = [correct[scenes == k].float().mean().item()
                 for k in range(int(scenes.max()) + 1) if (scenes == k).any()]
    return {"accuracy": correct.float().mean().item(),
            "mean_class_accuracy": sum(per_class) / len(per_class)}


def train_classifier(config: ClassifierConfig, out_dir: str | Path, progress: bool = False,
                     command: str | None = None) -> TrainResult:
    """Train the scene classifier; write ``classifier.safetensors`` and ``classifier.json``."""
    from tqdm.auto import tqdm

    timer = Timer()
    device = resolve_device(config.device)
    amp = resolve_amp(config.amp, device)
    generator = seed_everything(config.seed)
    classes = scene_names()
    with timer.phase("data"):
        train = render_scenes(config.n_train, config.size, TRAIN_SEED, workers=config.workers,
                              progress=progress)
        val = render_scenes(config.n_val, config.size, VAL_SEED, workers=config.workers,
                            progress=progress)
    model = ToyClassifier(num_classes=len(classes), width=config.width)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                                weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=total, pct_start=0.15)
    history = []
    bar = tqdm(total=total, desc="train classifier", disable=not progress, unit="step")
    with timer.phase("train"):
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(len(train), generator=generator)
            running, seen = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                index = order[start:start + config.batch_size]
                x = _augment(train.images[index], config.crop, generator)
                x = to_model_input(x.to(device), IMAGENET_MEAN, IMAGENET_STD)
                x = x.contiguous(memory_format=torch.channels_last)
                y = train.scenes[index].to(device)
                with autocast(device, amp):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                running += loss.item() * len(index)
                seen += len(index)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{running / seen:.3f}")
            quick = evaluate_classifier(model, val.images[:200], val.scenes[:200], device, amp)
            history.append({"epoch": epoch + 1, "train_loss": round(running / seen, 4),
                            "val200_accuracy": round(quick["accuracy"], 4)})
            if progress:
                bar.write(f"epoch {epoch + 1}: train loss {running / seen:.3f}, "
                          f"accuracy on 200 val scenes {quick['accuracy']:.3f}")
    bar.close()
    with timer.phase("evaluate"):
        metrics = evaluate_classifier(model, val.images, val.scenes, device, amp)
    model = model.to("cpu", memory_format=torch.contiguous_format)
    metrics = {"val_" + k: round(v, 4) for k, v in metrics.items()}
    metrics["history"] = history
    result = TrainResult(
        name="classifier", weights=Path(out_dir) / "classifier.safetensors", metrics=metrics,
        seconds=timer.total(), config=config_dict(config), command=command, device=str(device),
        data={"source": "toyworld", "toyworld_version": TOYWORLD_VERSION,
              "train": {"seed": TRAIN_SEED, "n": config.n_train},
              "val": {"seed": VAL_SEED, "n": config.n_val}, "size": config.size,
              "texture_fraction": 0.0, "classes": classes,
              "normalisation": {"range": "[0, 1]", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}})
    save_result(model, result, {"classes": ",".join(classes), "input_size": str(config.size),
                                "mean": ",".join(map(str, IMAGENET_MEAN)),
                                "std": ",".join(map(str, IMAGENET_STD))})
    return result

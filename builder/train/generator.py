"""Train ``demo:generator``, a DCGAN-style generator of 64 px toy-world scenes, and measure it.

Adversarial training: the non-saturating logistic loss, a spectrally normalised discriminator,
Adam for both players and an exponential moving average (EMA) of the generator's weights, which
is what ships. Because dissection runs the generator in eval mode, the EMA generator's batch-norm
statistics are re-estimated on fresh latents after training (eval output = train output).

Quality (``evaluate_generator``): per-concept pixel frequencies that the segmenter finds on
generated vs real scenes, and the Fréchet distance between pooled last-conv features of the
classifier on generated vs real images, beside baselines (a second real sample, blurred real
images, uniform noise).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..models.demo_nets import Discriminator, ToyGenerator
from . import (TrainResult, Timer, autocast, config_dict, resolve_amp, resolve_device,
               save_result, seed_everything)
from .data import TOYWORLD_VERSION, TRAIN_SEED, VAL_SEED, render_scenes, scene_indices

log = logging.getLogger(__name__)

__all__ = [
    "GeneratorConfig",
    "GENERATOR_SCENES",
    "evaluate_generator",
    "frechet_distance",
    "recalibrate_batchnorm",
    "sample_images",
    "train_generator",
]


#: The scene classes the shipped generator is trained on, as a Progressive GAN is trained on one
#: LSUN category: outdoor "village" scenes (houses with windows and doors, trees, sky, ground).
GENERATOR_SCENES = ("ski_resort", "harbor", "street", "park", "farm")


@dataclass
class GeneratorConfig:
    """Options of a GAN training run (defaults: the shipped ``demo:generator``)."""

    n_train: int = 20000
    size: int = 64
    z_dim: int = 128
    width: float = 0.5
    d_width: int = 32
    d_norm: str = "batch"
    steps: int = 3000
    batch_size: int = 32
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    ema: float = 0.998
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    workers: int = 2
    scenes: tuple[str, ...] | None = GENERATOR_SCENES
    vae_steps: int = 0
    vae_lr: float = 1e-3
    kl_weight: float = 1.0
    recalibrate_batches: int = 32
    eval_samples: int = 1000

    def __post_init__(self) -> None:
        if min(self.n_train, self.steps, self.batch_size, self.z_dim) < 1:
            raise ConfigError("n_train, steps, batch_size and z_dim must be positive")
        if self.size != 4 * 2 ** 4:
            raise ConfigError(f"the demo generator makes 64 px images, not {self.size}")


class _Encoder(nn.Module):
    """The VAE encoder of the warm-up phase (training only): image -> (mean, log variance)."""

    def __init__(self, z_dim: int, width: int = 32, size: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, out, side = 3, width, size
        while side > 4:
            layers.append(nn.Conv2d(channels, out, 4, stride=2, padding=1, bias=channels == 3))
            if channels != 3:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2))
            channels, out, side = out, out * 2, side // 2
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * 16, 2 * z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log variance."""
        mean, logvar = self.fc(self.body(x).flatten(1)).float().chunk(2, dim=1)
        return mean, logvar.clamp(-10, 10)


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)


def _vae_warmup(G: nn.Module, config: GeneratorConfig, batch: Callable[[], torch.Tensor],
                rng: torch.Generator, device: torch.device, amp: torch.dtype | None,
                bar: Any) -> list[dict[str, float]]:
    """Train G as the decoder of a VAE for ``config.vae_steps`` steps (z ~ N(0, I) prior)."""
    E = _Encoder(config.z_dim, size=config.size).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam([*E.parameters(), *G.parameters()], lr=config.vae_lr)
    history, sums = [], {"recon": 0.0, "kl": 0.0}
    for step in range(config.vae_steps):
        real = batch()
        with autocast(device, amp):
            mean, logvar = E(real)
            eps = torch.randn(mean.shape, generator=rng).to(device)
            recon = G(mean + eps * (0.5 * logvar).exp()).float()
        loss_recon = (recon - real).pow(2).sum((1, 2, 3)).mean()
        loss_kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        (loss_recon + config.kl_weight * loss_kl).backward()
        opt.step()
        sums["recon"] += float(loss_recon.detach())
        sums["kl"] += float(loss_kl.detach())
        bar.update(1)
        if (step + 1) % 100 == 0 or step + 1 == config.vae_steps:
            span = (step % 100) + 1
            row = {"step": step + 1, **{k: round(v / span, 2) for k, v in sums.items()}}
            history.append(row)
            log.info("generator VAE warm-up step %d: %s", step + 1, row)
            bar.set_postfix(recon=row["recon"], kl=row["kl"])
            sums = dict.fromkeys(sums, 0.0)
    return history


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, z_dim: int, batches: int = 64,
                          batch_size: int = 64, seed: int = 0,
                          device: torch.device | str = "cpu") -> None:
    """Re-estimate batch-norm running statistics as exact averages over fresh latents."""
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    g = torch.Generator().manual_seed(seed)
    generator.train()
    for _ in range(batches):
        generator(torch.randn(batch_size, z_dim, generator=g).to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    generator.eval()


def train_generator(config: GeneratorConfig, out_dir: str | Path, progress: bool = False,
                    command: str | None = None,
                    on_step: Callable[[int, nn.Module, nn.Module], None] | None = None,
                    ) -> TrainResult:
    """Train the GAN; write ``generator.safetensors`` and ``generator.json``.

    When ``classifier.safetensors`` and ``segmenter.safetensors`` are already in ``out_dir``
    (``demo train all`` trains them first), the quality metrics are measured with them.
    ``on_step(step, ema_generator, generator)`` runs after every step (e.g. to save samples).
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    timer = Timer()
    device = resolve_device(config.device)
    amp = resolve_amp(config.amp, device)
    generator_rng = seed_everything(config.seed)
    with timer.phase("data"):
        data = render_scenes(config.n_train, config.size, TRAIN_SEED, workers=config.workers,
                             progress=progress, scenes=config.scenes)
    cl = torch.channels_last
    G = ToyGenerator(z_dim=config.z_dim, width=config.width).to(device, memory_format=cl)
    D = Discriminator(size=config.size, width=config.d_width, norm=config.d_norm)
    D = D.to(device, memory_format=cl)
    G_ema = copy.deepcopy(G).eval()
    for p in G_ema.parameters():
        p.requires_grad_(False)
    betas = (config.beta1, 0.999)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=betas)
    history: list[dict[str, float]] = []
    bar = tqdm(total=config.vae_steps + config.steps, desc="train generator",
               disable=not progress, unit="step")
    order = torch.randperm(len(data), generator=generator_rng)
    cursor = 0
    sums = {"loss_d": 0.0, "loss_g": 0.0, "d_real": 0.0, "d_fake": 0.0}

    def batch() -> torch.Tensor:
        nonlocal order, cursor
        if cursor + config.batch_size > len(order):
            order, cursor = torch.randperm(len(data), generator=generator_rng), 0
        index = order[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        real = data.images[index]
        flip = torch.rand(len(index), generator=generator_rng) < 0.5
        real = torch.where(flip.view(-1, 1, 1, 1), real.flip(-1), real)
        return (real.to(device).float() / 127.5 - 1.0).contiguous(memory_format=cl)

    if config.vae_steps:
        with timer.phase("vae"):
            vae_history = _vae_warmup(G, config, batch, generator_rng, device, amp, bar)
        history += vae_history
        G_ema = copy.deepcopy(G).eval()
        for p in G_ema.parameters():
            p.requires_grad_(False)
        if on_step is not None:
            on_step(config.vae_steps, G_ema, G)
    with timer.phase("train"):
        for step in range(config.steps):
            real = batch()
            z = torch.randn(len(real), config.z_dim, generator=generator_rng).to(device)
            # one generator pass serves both players (detached for the discriminator)
            with autocast(device, amp):
                fake = G(z)
                d_real, d_fake = D(real).float(), D(fake.detach()).float()
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            with autocast(device, amp):
                g_out = D(fake).float()
            loss_g = F.softplus(-g_out).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            _ema_update(G_ema, G, min(config.ema, (1 + step) / (10 + step)))
            if on_step is not None:
                on_step(config.vae_steps + step + 1, G_ema, G)
            for key, value in (("loss_d", loss_d), ("loss_g", loss_g),
                               ("d_real", d_real.mean()), ("d_fake", d_fake.mean())):
                sums[key] += float(value.detach())
            bar.update(1)
            if (step + 1) % 100 == 0 or step + 1 == config.steps:
                span = (step % 100) + 1
                row = {"step": config.vae_steps + step + 1,
                       **{k: round(v / span, 4) for k, v in sums.items()}}
                history.append(row)
                log.info("generator step %d: %s", row["step"], row)
                bar.set_postfix(loss_d=row["loss_d"], loss_g=row["loss_g"])
                sums = dict.fromkeys(sums, 0.0)
    bar.close()
    with timer.phase("recalibrate"):
        G_ema = G_ema.to(memory_format=torch.contiguous_format)
        recalibrate_batchnorm(G_ema, config.z_dim, batches=config.recalibrate_batches,
                              batch_size=128, seed=config.seed + 1, device=device)
    G_ema = G_ema.to("cpu")
    metrics: dict[str, Any] = {"history": history}
    classifier_file = out_dir / "classifier.safetensors"
    segmenter_file = out_dir / "segmenter.safetensors"
    if config.eval_samples and classifier_file.is_file() and segmenter_file.is_file():
        with timer.phase("evaluate"):
            metrics["quality"] = evaluate_generator(
                G_ema, classifier_weights=classifier_file, segmenter_weights=segmenter_file,
                n=config.eval_samples, device=device, progress=progress, scenes=config.scenes)
    result = TrainResult(
        name="generator", weights=out_dir / "generator.safetensors", metrics=metrics,
        seconds=timer.total(), config=config_dict(config), command=command, device=str(device),
        data={"source": "toyworld", "toyworld_version": TOYWORLD_VERSION,
              "train": {"seed": TRAIN_SEED, "n": config.n_train},
              "size": config.size, "texture_fraction": 0.0,
              "scenes": list(config.scenes) if config.scenes else "all",
              "output": "3 x 64 x 64 RGB in [-1, 1] (tanh)",
              "latent": f"z ~ N(0, I), {config.z_dim} dims"})
    save_result(G_ema, result, {"z_dim": str(config.z_dim), "output_size": str(config.size),
                                "output_range": "[-1, 1]",
                                "scenes": ",".join(config.scenes or ())})
    return result


# ============================================================================ quality
@torch.no_grad()
def sample_images(generator: nn.Module, n: int, z_dim: int, seed: int = 0,
                  batch_size: int = 100, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` generated images as uint8 N x 3 x H x W (latents from ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    generator.eval()
    out = []
    for start in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - start), z_dim, generator=g).to(device)
        x = generator(z).float().clamp(-1, 1)
        out.append(((x + 1) * 127.5).round().to(torch.uint8).cpu())
    return torch.cat(out)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to feature rows ``a`` and ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) from the eigenvalues of sqrt(A) B sqrt(A), which is symmetric PSD
    vals, vecs = np.linalg.eigh(cov_a)
    sqrt_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = float(np.sqrt(np.clip(middle, 0, None)).sum())
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                  - 2 * trace_sqrt)
    return max(value, 0.0)


@torch.no_grad()
def _pooled_features(classifier: nn.Module, images: torch.Tensor, input_size: int,
                     device: torch.device, batch_size: int = 100) -> np.ndarray:
    from ..models.demo import IMAGENET_MEAN, IMAGENET_STD
    from .data import to_model_input

    feats = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start:start + batch_size].to(device), IMAGENET_MEAN,
                           IMAGENET_STD)
        if x.shape[-1] != input_size:
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear",
                              align_corners=False)
        feats.append(classifier.pool(classifier.features(x)).flatten(1).float().cpu())
    return torch.cat(feats).numpy()


def _blur(images: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    radius = int(math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = F.pad(images.float(), (radius,) * 4, mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return x.round().clamp(0, 255).to(torch.uint8)


def _pixel_frequencies(segment: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                       images: torch.Tensor, batch_size: int = 100) -> dict[str, np.ndarray]:
    counts: dict[str, np.ndarray] = {}
    for start in range(0, len(images), batch_size):
        for cat, classes in segment(images[start:start + batch_size]).items():
            hist = np.bincount(classes.flatten().numpy().astype(np.int64))
            if cat not in counts:
                counts[cat] = np.zeros(0, np.int64)
            size = max(len(counts[cat]), len(hist))
            counts[cat] = np.pad(counts[cat], (0, size - len(counts[cat]))) + \
                np.pad(hist, (0, size - len(hist)))
    return {cat: c / c.sum() for cat, c in counts.items()}


def evaluate_generator(generator: nn.Module, classifier_weights: str | Path | None = None,
                       segmenter_weights: str | Path | None = None, n: int = 1000,
                       seed: int = 0, device: torch.device | str = "cpu",
                       progress: bool = False,
                       scenes: Sequence[str] | None = None) -> dict[str, Any]:
    """Pixel frequencies (segmenter) and Fréchet distances (classifier) vs real toy scenes."""
    from ..models.demo_registry import build_demo_module
    from ..segmenters import DemoSegmenter

    device = torch.device(device)
    generator = generator.to(device).eval()
    z_dim = getattr(generator, "z_dim", 128)
    fake = sample_images(generator, n, z_dim, seed=seed, device=device)
    size = fake.shape[-1]
    real_indices = scene_indices(2 * n, VAL_SEED, scenes)
    real = render_scenes(n, size, VAL_SEED, progress=progress, scenes=scenes).images
    real2 = render_scenes(n, size, VAL_SEED, start=real_indices[n], progress=progress,
                          scenes=scenes).images
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, real.shape, generator=g, dtype=torch.uint8)
    blurred = _blur(real)
    sets = {"generated": fake, "real (2nd sample)": real2, "blurred real": blurred,
            "uniform noise": noise}
    report: dict[str, Any] = {"n": n, "seed": seed, "images": f"{size} px",
                              "real": f"toyworld seed {VAL_SEED}, {size} px, scenes: "
                              + (", ".join(scenes) if scenes else "all")}
    if classifier_weights is not None:
        classifier = build_demo_module("classifier", classifier_weights).to(device).eval()
        ref = _pooled_features(classifier, real, 128, device)
        report["frechet_classifier_conv5_3"] = {
            name: round(frechet_distance(ref, _pooled_features(classifier, imgs, 128, device)), 3)
            for name, imgs in sets.items()}
        report["frechet_note"] = ("pooled features.conv5_3 of demo:classifier; every set is "
                                  f"upsampled from {size} to 128 px like the real reference")
    if segmenter_weights is not None:
        segmenter = DemoSegmenter(weights=segmenter_weights, device=str(device))
        freqs_real = _pixel_frequencies(segmenter.classify, real)
        freqs_fake = _pixel_frequencies(segmenter.classify, fake)
        freqs_real2 = _pixel_frequencies(segmenter.classify, real2)
        names = segmenter.class_names()
        per_cat: dict[str, Any] = {}
        for cat in freqs_real:
            k = max(len(freqs_real[cat]), len(freqs_fake[cat]), len(freqs_real2[cat]))
            r, f, r2 = (np.pad(v[cat], (0, k - len(v[cat])))
                        for v in (freqs_real, freqs_fake, freqs_real2))
            rows = sorted(range(1, k), key=lambda i: -r[i])
            per_cat[cat] = {
                "total_variation": round(0.5 * float(np.abs(r - f).sum()), 4),
                "total_variation_real_vs_real": round(0.5 * float(np.abs(r - r2).sum()), 4),
                "classes_found_generated": int(sum(f[i] > 1e-4 for i in range(1, k))),
                "classes_found_real": int(sum(r[i] > 1e-4 for i in range(1, k))),
                "frequencies": [{"concept": names[cat][i], "real": round(float(r[i]), 4),
                                 "generated": round(float(f[i]), 4)}
                                for i in rows if r[i] > 0 or f[i] > 0],
            }
        report["segmenter_pixel_frequencies"] = per_cat
    return report

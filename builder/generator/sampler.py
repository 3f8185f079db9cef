"""Generators and their latent samplers: sample ``i`` of a seed is always the same image.

A ``Generator`` is a loaded model (``LoadedModel``) plus a ``LatentSpec``: the shape of one
latent, its distribution and the seed. Latent ``i`` is drawn from its own random stream,
``numpy.random.default_rng([seed, i])``, so it does not depend on the batch size, on the device
or on which other samples are drawn. ``load_generator`` resolves ``--model`` specs: every form
``load_model`` knows (``demo:generator``, ``FILE.py:CALLABLE``, ...) plus the checkpoint
adapters ``progan:FILE`` and ``stylegan2:FILE`` (``adapters.py``).

The truncation trick of StyleGAN (``truncation_psi`` < 1) acts in W space, after the mapping
network: ``w = w_avg + psi * (w - w_avg)``. It is the generator module's to apply (so edited
runs of the generator apply it too): a module with ``set_truncation(psi, samples)`` (the
``stylegan2:`` adapter) takes it; other generators refuse a psi below 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, SpecError
from ..fingerprint import fingerprint
from ..models import LoadedModel, load_model, state_dict_sha256

__all__ = ["DISTRIBUTIONS", "Generator", "LatentSpec", "load_generator", "sample_latents",
           "to_uint8"]

#: Latent distributions: N(0, I), U(-1, 1), and N(0, I) truncated to [-truncation, truncation].
DISTRIBUTIONS = ("normal", "uniform", "truncated")
#: Bumped whenever the latents drawn for the same spec change (enters every fingerprint).
SAMPLER_VERSION = 1
#: Latents averaged for the mean ``w`` of the truncation trick, unless the checkpoint has one
#: (the default of rosinality's generate.py, ``--truncation_mean``).
TRUNCATION_MEAN = 4096


@dataclass(frozen=True)
class LatentSpec:
    """The shape, distribution and seed of a generator's latents."""

    shape: tuple[int, ...]  # one latent, without the batch dimension, e.g. (128,)
    distribution: str = "normal"
    truncation: float = 2.0  # only for "truncated"
    seed: int = 0
    truncation_psi: float = 1.0  # the truncation trick in W space; 1: off
    truncation_mean: int | None = TRUNCATION_MEAN  # latents averaged for w_avg; None: stored

    def __post_init__(self) -> None:
        shape = (self.shape,) if isinstance(self.shape, int) else tuple(self.shape)
        object.__setattr__(self, "shape", tuple(int(s) for s in shape))
        problems = []
        if not self.shape or any(s < 1 for s in self.shape):
            problems.append(f"latent shape must be positive sizes, got {self.shape}")
        if self.distribution not in DISTRIBUTIONS:
            problems.append(f"--latent-distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                            f"got {self.distribution!r}")
        if not (isinstance(self.truncation, (int, float)) and self.truncation > 0
                and math.isfinite(self.truncation)):
            problems.append(f"--truncation must be a positive number, got {self.truncation!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"--seed must be a non-negative integer, got {self.seed!r}")
        psi = self.truncation_psi
        if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not 0 <= psi <= 1:
            problems.append(f"--truncation-psi must be in [0, 1] (1: no truncation), got {psi!r}")
        mean = self.truncation_mean
        if mean is not None and (isinstance(mean, bool) or not isinstance(mean, int) or mean < 1):
            problems.append(f"--truncation-mean must be a positive integer, got {mean!r}")
        if problems:
            raise ConfigError("; ".join(problems))

    def describe(self) -> dict[str, Any]:
        """The spec as plain JSON values (for manifests): ``identity()`` plus the W-space
        truncation, always stated."""
        return {**self.identity(), "truncation_psi": float(self.truncation_psi),
                "w_average": self.w_average()}

    def identity(self) -> dict[str, Any]:
        """What the samples depend on, for fingerprints: the truncation keys only when the
        truncation trick is on, so sample caches made before it existed stay valid."""
        described = {"shape": list(self.shape), "distribution": self.distribution,
                     "truncation": float(self.truncation) if self.distribution == "truncated"
                     else None,
                     "seed": self.seed, "version": SAMPLER_VERSION,
                     "rule": "z_i from numpy.random.default_rng([seed, i])"}
        if self.truncation_psi != 1:
            described.update(truncation_psi=float(self.truncation_psi),
                             w_average=self.w_average())
        return described

    def w_average(self) -> str | None:
        """Where the truncation trick's mean ``w`` comes from (None: the trick is off)."""
        if self.truncation_psi == 1:
            return None
        if self.truncation_mean is None:
            return "the checkpoint's latent_avg"
        return (f"mean of w over {self.truncation_mean} latents z from "
                "numpy.random.default_rng(0)")


def sample_latents(spec: LatentSpec, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
    """The latents of samples ``indices`` (float32 [n, *shape], on the CPU), one seed each.

    Sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` (a SeedSequence of the
    two numbers, so every (seed, i) pair has its own stream, on any machine).
    """
    numel = int(np.prod(spec.shape))
    out = np.empty((len(indices), numel), dtype=np.float32)
    normal = spec.distribution == "normal"
    for row, index in enumerate(np.asarray(indices, dtype=np.int64).tolist()):
        rng = np.random.default_rng([spec.seed, int(index)])
        out[row] = rng.standard_normal(numel, dtype=np.float32) if normal \
            else rng.random(numel, dtype=np.float32)
    z = torch.from_numpy(out)
    if spec.distribution == "uniform":
        z = z * 2 - 1
    elif spec.distribution == "truncated":  # inverse CDF of the normal between -t and t
        t = torch.tensor(float(spec.truncation), dtype=torch.float64)
        low = 0.5 * (1 + torch.erf(-t / math.sqrt(2)))
        u = low + z.double() * (1 - 2 * low)
        z = (math.sqrt(2) * torch.erfinv(2 * u - 1)).clamp(-t, t).float()
    return z.reshape(len(indices), *spec.shape)


def to_uint8(images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)
             ) -> torch.Tensor:
    """Generator outputs [N, 3, H, W] in ``value_range`` -> uint8 [N, 3, H, W] (clamped)."""
    low, high = value_range
    scaled = (images.float() - low) * (255.0 / (high - low))
    return scaled.round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class Generator:
    """A generator model with its latent sampler and the range of its output pixels."""

    model: LoadedModel
    latent: LatentSpec
    output_range: tuple[float, float] = (-1.0, 1.0)

    @property
    def module(self) -> nn.Module:
        """The generator's ``nn.Module``."""
        return self.model.module

    @property
    def device(self) -> torch.device:
        """Where the generator's parameters are."""
        reference = next(iter(self.module.parameters()), None)
        return reference.device if reference is not None else torch.device("cpu")

    @property
    def random_weights(self) -> bool:
        """Whether the generator's weights are a random initialisation (``LoadedModel``)."""
        return self.model.random_weights

    def latents(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """The latents of samples ``indices``, on the generator's device."""
        return sample_latents(self.latent, indices).to(self.device)

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """uint8 images [N, 3, H, W] for latents ``z``."""
        return self.to_uint8(self.module(z.to(self.device)))

    def to_uint8(self, output: object) -> torch.Tensor:
        """The generator's output (a tensor, or a tuple whose first item is) as uint8 images."""
        if isinstance(output, (tuple, list)):
            output = output[0]
        if not isinstance(output, torch.Tensor) or output.dim() != 4 or output.shape[1] != 3:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            raise ConfigError(f"the generator's output is not RGB images [N, 3, H, W] "
                              f"(got {shape or type(output).__name__})",
                              hint="a generator spec must name a model from latents to images")
        return to_uint8(output, self.output_range)

    def fingerprint(self) -> str:
        """Changes whenever the samples would: model, weights, latent spec, output range."""
        return fingerprint("generator", self.model.spec, self.model.weights_sha256,
                           self.latent.identity(), list(self.output_range))


def load_generator(model: str | LoadedModel | Generator | nn.Module,
                   weights: str | Path | None = None, *, seed: int = 0,
                   latent_seed: int = 0, latent_dim: int | Sequence[int] | None = None,
                   distribution: str = "normal", truncation: float = 2.0,
                   output_range: tuple[float, float] | None = None,
                   device: str | torch.device = "cpu", truncation_psi: float = 1.0,
                   truncation_mean: int = TRUNCATION_MEAN) -> Generator:
    """A Generator from a spec (``demo:generator``, ``progan:FILE``, ``stylegan2:FILE``, ...);
    ``truncation_psi`` < 1 applies the truncation trick in W space (module ``set_truncation``).
    A Generator passed in is returned as it is."""
    if isinstance(model, Generator):
        model.module.to(device).eval()
        return model
    if isinstance(model, str) and model.partition(":")[0] in ("progan", "stylegan2"):
        from .adapters import load_adapter

        loaded, default_range = load_adapter(model, device=device)
        if weights is not None:
            raise SpecError(f"{model}: the checkpoint is the weights", hint="drop --weights")
    else:
        if isinstance(model, nn.Module):
            # a module passed in: whether its weights were trained is the caller's to know
            loaded = LoadedModel(module=model.to(device).eval(), spec=type(model).__name__,
                                 weights=None, weights_sha256=state_dict_sha256(
                                     model.state_dict()), input_size=None, mean=(0.5,) * 3,
                                 std=(0.5,) * 3, kind="generator", seed=seed)
        elif isinstance(model, LoadedModel):
            loaded = model
            loaded.module.to(device).eval()
        else:
            loaded = load_model(model, weights=weights, seed=seed, device=device)
        default_range = (-1.0, 1.0)
    shape = latent_dim if latent_dim is not None else loaded.input_shape
    if shape is None and isinstance(getattr(loaded.module, "z_dim", None), int):
        shape = loaded.module.z_dim  # a generator that declares its latent size
    if shape is None:
        raise ConfigError(f"the latent size of {loaded.spec} is unknown",
                          hint="give it with --latent-dim N")
    latent = LatentSpec(shape=(shape,) if isinstance(shape, int) else tuple(shape),
                        distribution=distribution, truncation=truncation, seed=latent_seed,
                        truncation_psi=truncation_psi, truncation_mean=truncation_mean)
    latent = _apply_truncation(loaded, latent)
    low, high = output_range if output_range is not None else default_range
    if not high > low:
        raise ConfigError(f"--output-range must be LOW,HIGH with LOW < HIGH, got {low},{high}")
    return Generator(loaded, latent, (float(low), float(high)))


def _apply_truncation(loaded: LoadedModel, latent: LatentSpec) -> LatentSpec:
    """Set the module's W-space truncation; the spec says where its mean ``w`` came from."""
    setter = getattr(loaded.module, "set_truncation", None)
    if not callable(setter):
        if latent.truncation_psi != 1:
            raise ConfigError(f"--truncation-psi needs a generator with a mapping network; "
                              f"{loaded.spec} has none",
                              hint="use it with stylegan2:FILE (or a module with a "
                              "set_truncation(psi, samples) method)")
        return latent
    with torch.no_grad():
        stored = setter(float(latent.truncation_psi), int(latent.truncation_mean or
                                                            TRUNCATION_MEAN))
    return replace(latent, truncation_mean=None) if stored else latent

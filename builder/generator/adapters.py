"""Thin adapters for Progressive-GAN-style and StyleGAN2-style generator checkpoints.

``progan:FILE`` reads a state dict in the layout of the PyTorch conversions of Karras et al.'s
Progressive GAN used by GAN Dissection: ``layer1 .. layerN`` (``.conv.weight``, ``.wscale.b``)
and ``output_RxR``, or in the older layout of the first PyTorch port (``features.<i>.conv.weight``,
``features.<i>.wscale.scale`` and ``.b``, ``output.*``), renamed as GAN Dissection's loader
renames it (``features.<i>`` -> ``layer<i+1>``, ``output`` -> ``output_RxR``). That port stored
each layer's scale; the scale used is the equalised-learning-rate constant, and a stored one
that differs from it is folded into the convolution so the layer computes the same thing.
Each block is pixel norm, (nearest x2 upsampling on odd layers from 3 on),
a bias-free convolution scaled by the equalised-learning-rate constant ``gain / sqrt(fan_in)``
plus a bias, and a leaky ReLU (0.2); ``layer1`` turns the 1x1 latent into 4x4 (kernel 4,
padding 3); the output block is a 1x1 convolution to RGB, not clamped. The channel widths are
read from the weights. The model is an ``nn.Sequential``, so interventions split it at any
layer and run only the layers after it.

``stylegan2:FILE`` reads a generator state dict in the layout of the popular PyTorch StyleGAN2
re-implementation (``style.*`` mapping network, ``input.input``, ``conv1``, ``to_rgb1``,
``convs.<i>``, ``to_rgbs.<i>``, ``noises.noise_<i>``), as a ``.safetensors`` or ``.pt`` file
holding that state dict, or that re-implementation's training checkpoint as it is: a dict with
``g``, ``d``, ``g_ema``, the optimisers' states and ``args`` (an ``argparse.Namespace``). Only
``g_ema`` is used; the file is read with ``torch.load(weights_only=True)`` and
``argparse.Namespace`` as the one extra allowed class, so a file that pickles anything else is
refused and nothing in it is executed. A stored ``latent_avg`` (as its weight converter
writes) is the average ``w`` of the truncation trick; otherwise ``set_truncation`` computes
it as its generate.py does (``mean_latent``: the mean of ``style(z)`` over N latents, here
drawn from ``numpy.random.default_rng(0)`` so it is the same everywhere). The noise inputs are
the stored ``noises`` buffers (no fresh noise per call), so a latent always gives the same
image. Dissectable layers: ``conv1``, ``convs.0`` ...
Because every synthesis layer also reads the latent, interventions "graft" (the whole
generator runs with the edited layer output substituted).

Both are tested on small random configurations only; numerical agreement with the original
implementations on released checkpoints is not verified here (docs/generator.md).
"""

from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import SpecError, WeightsError
from ..models import LoadedModel
from ..models.weights import as_state_dict, check_fits, read_checkpoint, sha256_file
from .sampler import TRUNCATION_MEAN

__all__ = ["ProGANGenerator", "StyleGAN2Generator", "load_adapter", "progan_from_old_layout",
           "progan_sizes", "read_generator_checkpoint", "stylegan2_config"]

#: Classes a generator checkpoint may pickle besides tensors: training scripts save their
#: ``argparse`` arguments, which are data only. Nothing else is allowed.
CHECKPOINT_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


# ============================================================================ Progressive GAN
class _ToMap(nn.Module):
    """[B, D] latents -> [B, D, 1, 1]."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Reshape to a 1x1 map."""
        return z.reshape(z.shape[0], -1, 1, 1)


class _WScale(nn.Module):
    """Equalised learning rate: ``x * scale + b`` (``scale`` is a constant, not a weight)."""

    def __init__(self, channels: int, fan_in: int, gain: float) -> None:
        super().__init__()
        self.scale = gain / math.sqrt(fan_in)
        self.b = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale, then add the per-channel bias."""
        return x * self.scale + self.b.view(1, -1, 1, 1)


def _pixel_norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class _ProGANBlock(nn.Module):
    """Pixel norm, optional x2 nearest upsampling, scaled conv + bias, leaky ReLU 0.2."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, padding: int,
                 upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=padding, bias=False)
        self.wscale = _WScale(out_channels, in_channels, math.sqrt(2) / kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's activations (after the leaky ReLU)."""
        x = _pixel_norm(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.leaky_relu(self.wscale(self.conv(x)), 0.2)


class _ProGANOutput(nn.Module):
    """Pixel norm, 1x1 conv to RGB, bias; optionally clamped to [-1, 1]."""

    def __init__(self, in_channels: int, clamp: bool = False) -> None:
        super().__init__()
        self.clamp = clamp
        self.conv = nn.Conv2d(in_channels, 3, 1, bias=False)
        self.wscale = _WScale(3, in_channels, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB images, nominally in [-1, 1]."""
        x = self.wscale(self.conv(_pixel_norm(x)))
        return x.clamp(-1, 1) if self.clamp else x


class ProGANGenerator(nn.Sequential):
    """A Progressive GAN generator; ``sizes`` = [latent, 4x4 width, 8x8 width, ...]."""

    def __init__(self, sizes: list[int], clamp: bool = False) -> None:
        if len(sizes) < 2:
            raise ValueError("sizes needs the latent size and at least one width")
        blocks: list[tuple[str, nn.Module]] = [("latent", _ToMap())]
        blocks.append(("layer1", _ProGANBlock(sizes[0], sizes[1], 4, 3, False)))
        blocks.append(("layer2", _ProGANBlock(sizes[1], sizes[1], 3, 1, False)))
        for width_in, width_out in zip(sizes[1:-1], sizes[2:]):
            n = len(blocks)
            blocks.append((f"layer{n}", _ProGANBlock(width_in, width_out, 3, 1, True)))
            blocks.append((f"layer{n + 1}", _ProGANBlock(width_out, width_out, 3, 1, False)))
        side = 4 * 2 ** (len(sizes) - 2)
        blocks.append((f"output_{side}x{side}", _ProGANOutput(sizes[-1], clamp)))
        super().__init__(OrderedDict(blocks))
        self.z_dim, self.size = sizes[0], side


def progan_sizes(state: Mapping[str, torch.Tensor]) -> list[int]:
    """[latent, widths...] of a Progressive GAN state dict (from the odd layers' convs)."""
    sizes: list[int] = []
    index = 1
    while f"layer{index}.conv.weight" in state:
        weight = state[f"layer{index}.conv.weight"]
        if index == 1:
            sizes.append(int(weight.shape[1]))
        if index % 2 == 1:
            sizes.append(int(weight.shape[0]))
        index += 1
    if len(sizes) < 2:
        raise WeightsError("not a Progressive GAN state dict (no layer1.conv.weight)")
    return sizes


def progan_from_old_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``features.<i>`` / ``output`` state dict renamed to ``layer<i+1>`` / ``output_RxR``
    (other state dicts are returned as they are)."""
    if "features.0.conv.weight" not in state:
        return dict(state)
    rest = dict(state)
    converted: dict[str, torch.Tensor] = {}
    count = 0
    while f"features.{count}.conv.weight" in rest:
        _move_old_block(rest, converted, f"features.{count}", f"layer{count + 1}",
                        gain=math.sqrt(2))
        count += 1
    side = 4 * 2 ** ((count - 1) // 2)
    if "output.conv.weight" in rest:
        _move_old_block(rest, converted, "output", f"output_{side}x{side}", gain=1.0)
    converted.update(rest)  # anything left is not part of the layout: check_fits names it
    return converted


def _move_old_block(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor], source: str,
                    target: str, gain: float) -> None:
    """Move one block's conv weight and bias, folding a stored scale that is not the
    constant ``gain / kernel / sqrt(in_channels)`` into the weight."""
    weight = old.pop(f"{source}.conv.weight")
    stored = old.pop(f"{source}.wscale.scale", None)
    if stored is not None and stored.numel() == 1:
        constant = gain / weight.shape[-1] / math.sqrt(weight.shape[1])
        ratio = float(stored.double().item()) / constant
        if not math.isclose(ratio, 1.0, rel_tol=1e-6):
            weight = (weight.double() * ratio).to(weight.dtype)
    elif stored is not None:
        old[f"{source}.wscale.scale"] = stored  # not a scalar: left for check_fits to name
    new[f"{target}.conv.weight"] = weight
    if f"{source}.wscale.b" in old:
        new[f"{target}.wscale.b"] = old.pop(f"{source}.wscale.b")


# ============================================================================ StyleGAN2
def _kernel(taps: tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def _upfirdn(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """Zero-insertion upsampling by ``up``, padding, then a per-channel FIR filter."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel.flip(0, 1).to(x)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c)


class _EqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale)
        if self.activate:
            return F.leaky_relu(out + self.bias * self.lr_mul, 0.2) * math.sqrt(2)
        return out + self.bias * self.lr_mul


class _Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", _kernel() * factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _upfirdn(x, self.kernel, 1, self.pad)


class _ModulatedConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = _EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_ch * kernel ** 2)
        self.demodulate, self.upsample, self.kernel = demodulate, upsample, kernel
        if upsample:
            p = 4 - 2 - (kernel - 1)
            self.blur = _Blur(((p + 1) // 2 + 1, p // 2 + 1), factor=2)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.modulation(style).view(b, 1, c, 1, 1)
        weight = self.scale * self.weight * s  # [B, out, in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4), keepdim=True) + 1e-8)
        out_ch = weight.shape[1]
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c, out_ch, self.kernel, self.kernel)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.reshape(b, out_ch, *out.shape[-2:]))
        weight = weight.reshape(b * out_ch, c, self.kernel, self.kernel)
        out = F.conv2d(x, weight, padding=self.kernel // 2, groups=b)
        return out.reshape(b, out_ch, *out.shape[-2:])


class _Noise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class _Activate(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


class _StyledConv(nn.Module):
    """A StyleGAN2 synthesis layer; its output (after the activation) is what is dissected."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = _ModulatedConv(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = _Noise()
        self.activate = _Activate(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class _ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = _Blur((2, 1), factor=2)
        self.has_upsample = upsample
        self.conv = _ModulatedConv(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            k = self.upsample.kernel
            out = out + _upfirdn(skip, k, 2, self.upsample.pad)
        return out


class StyleGAN2Generator(nn.Module):
    """A StyleGAN2 generator: mapping network ``style``, synthesis ``conv1``, ``convs.<i>``."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channels: Mapping[int, int]
                 ) -> None:
        super().__init__()
        self.size, self.style_dim = size, style_dim
        # the truncation trick (off at 1): w -> w_avg + psi * (w - w_avg); w_avg is not a
        # weight of the state dict (a checkpoint may store it beside, as ``latent_avg``)
        self.truncation_psi = 1.0
        self.w_avg_stored = False
        self.register_buffer("w_avg", torch.zeros(style_dim), persistent=False)
        log_size = int(math.log2(size))
        if 2 ** log_size != size or size < 8:
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.style = nn.Sequential(nn.Identity(), *[
            _EqualLinear(style_dim, style_dim, lr_mul=0.01, activate=True) for _ in range(n_mlp)])
        self.input = nn.Module()
        self.input.input = nn.Parameter(torch.randn(1, channels[4], 4, 4))
        self.conv1 = _StyledConv(channels[4], channels[4], style_dim)
        self.to_rgb1 = _ToRGB(channels[4], style_dim, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        self.num_layers = (log_size - 2) * 2 + 1
        for i in range(self.num_layers):
            side = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, side, side))
        width = channels[4]
        for level in range(3, log_size + 1):
            out = channels[2 ** level]
            self.convs.append(_StyledConv(width, out, style_dim, upsample=True))
            self.convs.append(_StyledConv(out, out, style_dim))
            self.to_rgbs.append(_ToRGB(out, style_dim))
            width = out

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """``w`` for latents ``z`` [B, style_dim]: pixel norm, then the mapping network."""
        return self.style(_pixel_norm(z.reshape(z.shape[0], -1, 1, 1)).flatten(1))

    @torch.no_grad()
    def mean_latent(self, samples: int = TRUNCATION_MEAN, seed: int = 0) -> torch.Tensor:
        """The mean ``w`` [style_dim] of ``samples`` latents from ``default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        z = torch.from_numpy(rng.standard_normal((samples, self.style_dim), dtype=np.float32))
        total = torch.zeros(self.style_dim, dtype=torch.float64, device=self.w_avg.device)
        for chunk in z.split(1024):  # bounded memory for large sample counts
            total += self.mapping(chunk.to(self.w_avg.device)).double().sum(0)
        return (total / samples).float()

    def set_latent_average(self, w_avg: torch.Tensor) -> None:
        """Use a stored mean ``w`` (a checkpoint's ``latent_avg``) for the truncation trick."""
        w_avg = w_avg.detach().reshape(-1)
        if w_avg.numel() != self.style_dim:
            raise WeightsError(f"latent_avg has {w_avg.numel()} values, the generator's w "
                               f"has {self.style_dim}")
        self.w_avg.copy_(w_avg.to(self.w_avg))
        self.w_avg_stored = True

    def set_truncation(self, psi: float, samples: int = TRUNCATION_MEAN) -> bool:
        """Apply the truncation trick with ``psi`` (1: off); the mean ``w`` is the stored one,
        else that of ``samples`` latents. Returns whether the stored one is used."""
        if psi != 1.0 and not self.w_avg_stored:
            self.w_avg.copy_(self.mean_latent(samples))
        self.truncation_psi = float(psi)
        return self.w_avg_stored

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images for latents ``z`` [B, style_dim] (one w for every layer, stored noise)."""
        w = self.mapping(z)
        if self.truncation_psi != 1.0:
            w = self.w_avg + self.truncation_psi * (w - self.w_avg)
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        out = self.input.input.expand(z.shape[0], -1, -1, -1)
        out = self.conv1(out, w, noise[0])
        skip = self.to_rgb1(out, w)
        for i, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * i](out, w, noise[2 * i + 1])
            out = self.convs[2 * i + 1](out, w, noise[2 * i + 2])
            skip = to_rgb(out, w, skip)
        return skip


def stylegan2_config(state: Mapping[str, torch.Tensor]) -> dict:
    """``size``, ``style_dim``, ``n_mlp`` and ``channels`` of a StyleGAN2 state dict."""
    if "input.input" not in state or "conv1.conv.weight" not in state:
        raise WeightsError("not a StyleGAN2 generator state dict (no input.input / conv1)")
    n_mlp = sum(1 for k in state if k.startswith("style.") and k.endswith(".weight"))
    levels = sum(1 for k in state if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
    channels = {4: int(state["input.input"].shape[1])}
    for i in range(levels):
        channels[2 ** (i + 3)] = int(state[f"convs.{2 * i}.conv.weight"].shape[1])
    return {"size": 2 ** (levels + 2), "style_dim": int(state["conv1.conv.modulation.weight"]
                                                      .shape[1]),
            "n_mlp": n_mlp, "channels": channels}


def read_generator_checkpoint(path: str | Path
                              ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The generator state dict in ``path`` and its stored ``latent_avg`` (or None).

    A training checkpoint ``{"g": ..., "d": ..., "g_ema": ..., "args": Namespace, ...}`` gives
    its ``g_ema``; a plain state dict (or ``{"state_dict": ...}``) is itself; a shared
    ``g_ema.`` key prefix is stripped. Nothing but tensors, containers, primitives and
    ``argparse.Namespace`` is unpickled.
    """
    path = Path(path)
    loaded = read_checkpoint(path, safe_globals=CHECKPOINT_GLOBALS, refused_hint=(
        "a checkpoint may hold tensors, containers, numbers, strings and argparse.Namespace "
        "only; save the generator alone: torch.save(ckpt['g_ema'], 'g_ema.pt')"))
    latent_avg = None
    if isinstance(loaded, Mapping):
        if isinstance(loaded.get("latent_avg"), torch.Tensor):
            latent_avg = loaded["latent_avg"]
        if isinstance(loaded.get("g_ema"), Mapping):
            loaded = loaded["g_ema"]
        elif latent_avg is not None:
            loaded = {k: v for k, v in loaded.items() if k != "latent_avg"}
        elif isinstance(loaded.get("g"), Mapping):
            raise WeightsError(f"{path} is a training checkpoint without 'g_ema'",
                               hint='save the generator: torch.save(ckpt["g"], "g.pt")')
    state = as_state_dict(loaded, path)
    if state and all(k.startswith("g_ema.") for k in state):
        state = {k[len("g_ema."):]: v for k, v in state.items()}
    return state, latent_avg


def load_adapter(spec: str, device: str | torch.device = "cpu"
                 ) -> tuple[LoadedModel, tuple[float, float]]:
    """``progan:FILE`` or ``stylegan2:FILE`` -> (LoadedModel, output range)."""
    kind, _, target = spec.partition(":")
    path = Path(target).expanduser()
    if not target:
        raise SpecError(f"{spec!r}: give the checkpoint file, e.g. {kind}:generator.pth")
    if kind not in ("progan", "stylegan2"):
        raise SpecError(f"unknown generator adapter {kind!r}", hint="use progan: or stylegan2:")
    state, latent_avg = read_generator_checkpoint(path)
    layout = None
    if kind == "progan":
        if "features.0.conv.weight" in state:
            state, layout = progan_from_old_layout(state), "progan-features"
        sizes = progan_sizes(state)
        module: nn.Module = ProGANGenerator(sizes)
        latent = sizes[0]
    else:
        config = stylegan2_config(state)
        module = StyleGAN2Generator(**config)
        latent = config["style_dim"]
    check_fits(module, state, str(path))
    module.load_state_dict(state, strict=True)
    if latent_avg is not None and isinstance(module, StyleGAN2Generator):
        module.set_latent_average(latent_avg)
    module.to(device).eval()
    loaded = LoadedModel(module=module, spec=spec, weights=path, weights_sha256=sha256_file(path),
                         input_size=None, mean=(0.5,) * 3, std=(0.5,) * 3, kind="generator",
                         input_shape=(latent,), random_weights=False, weights_layout=layout)
    return loaded, (-1.0, 1.0)

"""The architectures of the demo models: a VGG-style scene classifier, a GAN and a segmenter.

They are the project's "model organisms", small analogues of the networks the PNAS paper
dissects (VGG-16 on Places365, Progressive GAN on LSUN) that train on the toy world on a CPU.
Every dissectable layer is a named block whose output is the unit's activation after its
non-linearity, so ``features.conv5_3`` or ``layer4`` read like the paper's layer names.

Classifier (input 3 x 128 x 128, ImageNet mean/std on [0, 1] images; any size works)::

    features.conv1_1  32 @ 128   features.conv4_1 256 @ 16
    features.conv2_1  64 @ 64    features.conv5_1 256 @ 8
    features.conv3_1 128 @ 32    features.conv5_2 256 @ 8
    features.conv3_2 128 @ 32    features.conv5_3 256 @ 8
    pool (global average) -> fc (256 -> number of scenes)

Generator (input z ~ N(0, I) of 128 dims, output 3 x 64 x 64 in [-1, 1])::

    layer1 512 @ 4   layer3 256 @ 16   layer5 128 @ 32   layer7 64 @ 64
    layer2 512 @ 8   layer4 256 @ 16   layer6 64 @ 32    output 3 @ 64 (tanh)

Segmenter (input 3 x 64 x 64, ImageNet mean/std): an encoder ``enc1`` (32 @ 64), ``enc2``
(64 @ 32), ``enc3`` (128 @ 16), ``enc4`` (192 @ 8) and a decoder ``dec3`` (128 @ 16), ``dec2``
(64 @ 32), ``dec1`` (32 @ 64) adding skip connections, then one 1x1 head per category
(``object_head``, ``part_head``, ``material_head``) giving logits over "none" plus the
category's concepts.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "CLASSIFIER_LAYERS",
    "ConvBlock",
    "Discriminator",
    "GENERATOR_LAYERS",
    "ToyClassifier",
    "ToyGenerator",
    "ToySegmenter",
    "UpBlock",
    "UpMerge",
]

#: (name, output channels, max-pool before the block) of the classifier's conv layers. The
#: last one is narrow on purpose: about 3 units per class (VGG-16 has 1.4 for Places365), so
#: that each class rests on a few units, as in the PNAS paper (docs/models.md).
CLASSIFIER_LAYERS: tuple[tuple[str, int, bool], ...] = (
    ("conv1_1", 16, False),
    ("conv2_1", 32, True),
    ("conv3_1", 64, True),
    ("conv3_2", 64, False),
    ("conv4_1", 128, True),
    ("conv5_1", 128, True),
    ("conv5_2", 128, False),
    ("conv5_3", 32, False),
)

#: (name, output channels, x2 upsampling: True = transposed conv, "nearest" = nearest + conv,
#: False = none) of the generator's layers after layer1.
GENERATOR_LAYERS: tuple[tuple[str, int, bool | str], ...] = (
    ("layer2", 512, True),
    ("layer3", 256, True),
    ("layer4", 256, False),
    ("layer5", 128, True),
    ("layer6", 64, False),
    ("layer7", 64, "nearest"),
)


class ConvBlock(nn.Module):
    """3x3 convolution, batch norm and ReLU; its output is the layer's unit activations."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else nn.Identity()
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv -> bn -> relu."""
        return self.relu(self.bn(self.conv(x)))


class UpBlock(nn.Module):
    """x2 upsampling (transposed conv, or nearest + 3x3 conv) or a 3x3 conv; batch norm; ReLU."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool | str) -> None:
        super().__init__()
        if upsample == "nearest":  # no checkerboard artefacts, at 2.25x the cost
            self.conv: nn.Module = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False))
        elif upsample:
            self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1,
                                           bias=False)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(transposed) conv -> bn -> relu."""
        return self.relu(self.bn(self.conv(x)))


class ToyClassifier(nn.Module):
    """A VGG-style scene classifier: conv blocks, global average pooling and one linear layer."""

    def __init__(self, num_classes: int = 11, width: float = 1.0,
                 layers: Sequence[tuple[str, int, bool]] = CLASSIFIER_LAYERS) -> None:
        super().__init__()
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for index, (name, out, pool) in enumerate(layers):
            if pool:
                blocks[f"pool{index}"] = nn.MaxPool2d(2)
            out = max(1, int(round(out * width)))
            blocks[name] = ConvBlock(channels, out)
            channels = out
        self.features = nn.Sequential(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_classes = num_classes
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the scene classes for a batch of normalised images."""
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class ToyGenerator(nn.Module):
    """A DCGAN-style generator: z (B x z_dim, or B x z_dim x 1 x 1) -> images in [-1, 1]."""

    def __init__(self, z_dim: int = 128, width: float = 1.0,
                 layers: Sequence[tuple[str, int, bool | str]] = GENERATOR_LAYERS) -> None:
        super().__init__()
        self.z_dim = z_dim
        first = max(1, int(round(512 * width)))
        self.layer1 = nn.Sequential(OrderedDict([
            ("conv", nn.ConvTranspose2d(z_dim, first, 4, bias=False)),  # 1x1 -> 4x4
            ("bn", nn.BatchNorm2d(first)),
            ("relu", nn.ReLU(inplace=False)),
        ]))
        channels = first
        self.size = 4
        for name, out, upsample in layers:
            out = max(1, int(round(out * width)))
            self.add_module(name, UpBlock(channels, out, upsample))
            channels = out
            self.size *= 2 if upsample else 1
        self.layer_names = ("layer1",) + tuple(name for name, _, _ in layers)
        self.output = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(channels, 3, 3, padding=1)),
            ("tanh", nn.Tanh()),
        ]))
        _init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B x 3 x size x size, in [-1, 1]) for latents z."""
        x = z.reshape(z.shape[0], self.z_dim, 1, 1)
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return self.output(x)


class Discriminator(nn.Module):
    """The GAN's critic: strided 4x4 convolutions, one logit per image.

    ``norm="batch"``: batch norm after every hidden convolution but the first (DCGAN);
    ``norm="spectral"``: spectral normalisation of every convolution (SN-GAN).
    """

    def __init__(self, size: int = 64, width: int = 64, norm: str = "batch") -> None:
        super().__init__()
        if norm not in ("batch", "spectral"):
            raise ValueError(f"norm must be batch or spectral, not {norm!r}")
        sn = nn.utils.parametrizations.spectral_norm if norm == "spectral" else (lambda m: m)
        layers: list[nn.Module] = []
        channels, out, side = 3, width, size
        while side > 4:
            layers.append(sn(nn.Conv2d(channels, out, 4, stride=2, padding=1,
                                       bias=norm == "spectral" or channels == 3)))
            if norm == "batch" and channels != 3:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2))
            channels, out, side = out, min(out * 2, 512), side // 2
        self.body = nn.Sequential(*layers)
        self.head = sn(nn.Conv2d(channels, 1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One real/fake logit per image."""
        return self.head(self.body(x)).flatten()


class UpMerge(nn.Module):
    """Decoder step: upsample the coarser map, project it (1x1) and add the skip, then a block."""

    def __init__(self, coarse_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(coarse_channels, skip_channels, 1)
        self.block = ConvBlock(skip_channels, skip_channels)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """block(skip + reduce(upsampled coarse))."""
        return self.block(skip + _up(self.reduce(coarse), skip))


class ToySegmenter(nn.Module):
    """A small U-Net with one head per pixel category; returns logits per category."""

    def __init__(self, num_classes: dict[str, int] | None = None, width: float = 1.0) -> None:
        super().__init__()
        if num_classes is None:
            num_classes = {"object": 41, "part": 1, "material": 1}
        w = [max(1, int(round(c * width))) for c in (32, 64, 128, 192)]
        self.enc1 = ConvBlock(3, w[0])
        self.enc2 = nn.Sequential(ConvBlock(w[0], w[1]), ConvBlock(w[1], w[1]))
        self.enc3 = nn.Sequential(ConvBlock(w[1], w[2]), ConvBlock(w[2], w[2]))
        self.enc4 = nn.Sequential(ConvBlock(w[2], w[3]), ConvBlock(w[3], w[3]))
        self.dec3 = UpMerge(w[3], w[2])
        self.dec2 = UpMerge(w[2], w[1])
        self.dec1 = UpMerge(w[1], w[0])
        self.categories = tuple(num_classes)
        for category, count in num_classes.items():
            self.add_module(f"{category}_head", nn.Conv2d(w[0], count, 1))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per category, logits B x (1 + concepts) x H x W (class 0 is "none")."""
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.enc4(F.max_pool2d(e3, 2))
        d1 = self.dec1(self.dec2(self.dec3(e4, e3), e2), e1)
        return {c: getattr(self, f"{c}_head")(d1) for c in self.categories}


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

"""The field's checkpoints, in their own layouts, load as they are (random tensors, real keys).

- the PNAS code's VGG-16 Places365 state dict (``features.conv1_1`` ... ``classifier.fc8a``),
  through the shipped example's callable and the CLI;
- rosinality/stylegan2-pytorch training checkpoints (``g``, ``d``, ``g_ema``, optimiser states,
  ``argparse.Namespace`` arguments), with ``latent_avg`` and the truncation trick;
- GAN Dissection's older Progressive GAN layout (``features.<i>``, ``output``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from builder.cli import main
from builder.errors import ConfigError, WeightsError
from builder.generator import load_generator
from builder.generator.adapters import ProGANGenerator, StyleGAN2Generator
from builder.models import load_model, sha256_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vgg16-places365" / "places365.py"

# The names the PNAS code (experiment/oldvgg16.py) gives torchvision's VGG-16 children, in order.
PNAS_FEATURES = []
for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
    for i in range(1, convs + 1):
        PNAS_FEATURES += [f"conv{block}_{i}", f"relu{block}_{i}"]
    PNAS_FEATURES.append(f"pool{block}")
PNAS_CLASSIFIER = ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8a"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- VGG-16 (PNAS)


def _pnas_key(key: str) -> str:
    container, index, param = key.split(".")
    names = PNAS_FEATURES if container == "features" else PNAS_CLASSIFIER
    return f"{container}.{names[int(index)]}.{param}"


@pytest.fixture(scope="module")
def pnas_vgg16(tmp_path_factory):
    """A random VGG-16 Places365 state dict in the PNAS layout, as .pth and .safetensors."""
    import torchvision

    folder = tmp_path_factory.mktemp("pnas")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        reference = torchvision.models.vgg16(weights=None, num_classes=365).state_dict()
    state = {_pnas_key(key): value for key, value in reference.items()}
    assert {"features.conv1_1.weight", "features.conv5_3.bias", "classifier.fc6.weight",
            "classifier.fc7.bias", "classifier.fc8a.weight"} <= set(state)
    assert len(state) == 32 and state["classifier.fc8a.weight"].shape == (365, 4096)
    torch.save(dict(state), folder / "vgg16_places365.pth")  # a plain dict of tensors
    save_file(state, str(folder / "vgg16_places365.safetensors"))
    return folder, reference


def test_pnas_names_are_the_papers():
    assert PNAS_FEATURES[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert PNAS_FEATURES[28:] == ["conv5_3", "relu5_3", "pool5"] and len(PNAS_FEATURES) == 31


def test_pnas_layout_renames_by_position_only_when_every_key_fits():
    """The renaming alone, on VGG-16's keys (a model on the meta device: no memory)."""
    import torchvision

    from builder.models.layouts import adapt_layout

    with torch.device("meta"):
        expected = list(torchvision.models.vgg16(weights=None, num_classes=365).state_dict())
    pnas = {_pnas_key(key): torch.zeros(1) for key in expected}
    renamed, layout = adapt_layout(expected, pnas)
    assert layout is not None and layout.name == "pnas-vgg16" and set(renamed) == set(expected)
    assert renamed["features.28.weight"] is pnas["features.conv5_3.weight"]
    assert renamed["classifier.6.bias"] is pnas["classifier.fc8a.bias"]
    same, none = adapt_layout(expected, renamed)  # already the model's keys: left alone
    assert none is None and same == renamed
    odd = {**pnas, "features.conv6_1.weight": torch.zeros(1)}  # not VGG-16's
    assert adapt_layout(expected, odd)[1] is None
    missing = {k: v for k, v in pnas.items() if k != "classifier.fc7.bias"}
    near, layout = adapt_layout(expected, missing)  # renamed: errors name the model's key
    assert layout.name == "pnas-vgg16" and set(expected) - set(near) == {"classifier.3.bias"}


@pytest.mark.slow
def test_pnas_vgg16_through_the_cli(pnas_vgg16, capsys):
    folder, reference = pnas_vgg16
    spec = f"{EXAMPLE}:vgg16_places365(num_classes=365)"
    assert main(["layers", spec, "--weights", str(folder / "vgg16_places365.pth"),
                 "--input-size", "32"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()
            if line.strip()}
    assert rows["features.29"] == ["ReLU", "512x2x2"]  # the PNAS code's conv5_3
    assert rows["classifier.6"] == ["Linear", "365"]
    weights = folder / "vgg16_places365.safetensors"
    assert main(["dissect", "--model", f"{EXAMPLE}:vgg16_places365", "--weights", str(weights),
                 "--layers", "features.29", "--dataset", "toyworld:n=8,size=32",
                 "--out", "run", "--device", "cpu", "--batch-size", "8",
                 "--quantile", "0.05"]) == 0
    manifest = json.loads(Path("run/manifest.json").read_text())
    assert manifest["model"]["weights_sha256"] == sha256_file(weights)
    assert np.load("run/layers/features.29/iou.npy").shape[0] == 512


@pytest.mark.slow
def test_pnas_vgg16_loads_every_tensor_in_place(pnas_vgg16):
    folder, reference = pnas_vgg16
    loaded = load_model(f"{EXAMPLE}:vgg16_places365", weights=folder / "vgg16_places365.pth")
    assert loaded.weights_layout == "pnas-vgg16" and not loaded.random_weights
    state = loaded.module.state_dict()
    assert all(torch.equal(state[key], value) for key, value in reference.items())


@pytest.mark.slow
def test_pnas_vgg16_into_a_1000_class_model_names_the_layout(pnas_vgg16):
    folder, _ = pnas_vgg16
    with pytest.raises(WeightsError) as info:
        load_model("torchvision:vgg16", weights=folder / "vgg16_places365.pth")
    message = str(info.value)
    assert "PNAS code's VGG-16 names" in message and "'classifier.6.weight'" in message
    assert "(365, 4096)" in message and "\n" not in message


# --------------------------------------------------------------------------- StyleGAN2


def _stylegan2(seed: int) -> StyleGAN2Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StyleGAN2Generator(size=16, style_dim=8, n_mlp=2, channels={4: 8, 8: 8, 16: 4})


def _optimiser_state(module: nn.Module) -> dict:
    optimiser = torch.optim.Adam(module.parameters(), lr=0.002, betas=(0.0, 0.99))
    sum(p.sum() for p in module.parameters()).backward()
    optimiser.step()
    return optimiser.state_dict()


def rosinality_checkpoint(path: Path, latent_avg: torch.Tensor | None = None,
                          **extra: object) -> StyleGAN2Generator:
    """A training checkpoint laid out as rosinality's train.py saves it; returns ``g_ema``."""
    g, g_ema = _stylegan2(1), _stylegan2(2)
    d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.2), nn.Flatten(), nn.LazyLinear(1))
    d(torch.zeros(1, 3, 16, 16))
    args = argparse.Namespace(path="lmdb/churches", arch="stylegan2", iter=800000, batch=16,
                              n_sample=64, size=16, r1=10.0, path_regularize=2.0,
                              path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9,
                              ckpt=None, lr=0.002, channel_multiplier=2, wandb=False,
                              local_rank=0, augment=False, augment_p=0.0, ada_target=0.6,
                              ada_length=500000, ada_every=256, latent=8, n_mlp=2,
                              start_iter=0, distributed=False)
    checkpoint = {"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(),
                  "g_optim": _optimiser_state(g), "d_optim": _optimiser_state(d),
                  "args": args, "ada_aug_p": 0.0, **extra}
    if latent_avg is not None:
        checkpoint["latent_avg"] = latent_avg
    torch.save(checkpoint, path)
    return g_ema


def test_rosinality_training_checkpoint_gives_g_ema(tmp_path):
    path = tmp_path / "080000.pt"
    g_ema = rosinality_checkpoint(path)
    generator = load_generator(f"stylegan2:{path}")
    state = generator.module.state_dict()
    assert all(torch.equal(state[key], value) for key, value in g_ema.state_dict().items())
    assert not generator.random_weights and generator.latent.shape == (8,)
    assert generator.latent.describe()["truncation_psi"] == 1.0
    assert generator.latent.describe()["w_average"] is None


class _Payload:
    """Unpickling this runs ``_mark`` (as ``os.system`` would run a command)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_mark, (self.marker,))


def _mark(path: str) -> int:
    Path(path).write_text("executed")
    return 0


class TrainingState:
    """A custom class a checkpoint might pickle: not allowed either."""

    def __init__(self) -> None:
        self.step = 3


@pytest.mark.parametrize("bad", ["payload", "custom class"])
def test_checkpoint_with_other_objects_is_refused(tmp_path, capsys, bad):
    marker = tmp_path / "executed.txt"
    path = tmp_path / "evil.pt"
    extra = _Payload(str(marker)) if bad == "payload" else TrainingState()
    rosinality_checkpoint(path, sneaky=extra)
    with pytest.raises(WeightsError) as info:
        load_generator(f"stylegan2:{path}")
    message = str(info.value)
    assert str(path) in message and "refused" in message and "\n" not in message
    assert ("_mark" if bad == "payload" else "TrainingState") in message
    assert main(["gan", "--model", f"stylegan2:{path}", "--layers", "conv1", "--samples", "2",
                 "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert not marker.exists()


def test_stored_latent_avg_and_truncation(tmp_path):
    path = tmp_path / "converted.pt"
    w_avg = torch.linspace(-1, 1, 8)
    rosinality_checkpoint(path, latent_avg=w_avg)
    plain = load_generator(f"stylegan2:{path}")
    z = plain.latents(range(4))
    w = plain.module.mapping(z)
    images = plain.generate(z)
    collapsed = load_generator(f"stylegan2:{path}", truncation_psi=0.0)
    assert torch.equal(collapsed.module.w_avg, w_avg)
    same = collapsed.generate(z)
    assert all(torch.equal(same[0], image) for image in same) and not torch.equal(same, images)
    half = load_generator(f"stylegan2:{path}", truncation_psi=0.5)
    described = half.latent.describe()
    assert described["truncation_psi"] == 0.5
    assert described["w_average"] == "the checkpoint's latent_avg"
    truncated = w_avg + 0.5 * (w - w_avg)
    seen = {}
    handle = half.module.conv1.conv.modulation.register_forward_hook(
        lambda module, inputs, output: seen.setdefault("w", inputs[0]))
    half.generate(z)
    handle.remove()
    assert torch.allclose(seen["w"], truncated, atol=1e-6)
    assert half.fingerprint() != plain.fingerprint()


def test_truncation_mean_of_mapped_latents(tmp_path):
    path = tmp_path / "080000.pt"
    rosinality_checkpoint(path)
    generator = load_generator(f"stylegan2:{path}", truncation_psi=0.7, truncation_mean=512)
    z = torch.from_numpy(np.random.default_rng(0).standard_normal((512, 8), dtype=np.float32))
    expected = generator.module.mapping(z).double().mean(0).float()
    assert torch.allclose(generator.module.w_avg, expected, atol=1e-6)
    assert "512 latents" in generator.latent.describe()["w_average"]
    again = load_generator(f"stylegan2:{path}", truncation_psi=0.7, truncation_mean=512)
    assert again.fingerprint() == generator.fingerprint()


def test_truncation_needs_a_mapping_network():
    with pytest.raises(ConfigError, match="--truncation-psi needs a generator"):
        load_generator("demo:generator", truncation_psi=0.7)
    with pytest.raises(ConfigError, match=r"--truncation-psi must be in \[0, 1\]"):
        load_generator("demo:generator", truncation_psi=1.5)
    plain = load_generator("demo:generator")
    assert "truncation_psi" not in plain.latent.identity()  # old sample caches stay valid
    assert not plain.random_weights  # the shipped weights


# --------------------------------------------------------------------------- Progressive GAN


def _old_layout(model: ProGANGenerator, scale_factor: float = 1.0) -> dict[str, torch.Tensor]:
    """``model``'s weights in the first PyTorch port's names, with its stored scales; the
    first layer's stored scale is ``scale_factor`` times the constant."""
    state = model.state_dict()
    blocks = [name for name, _ in model.named_children() if name.startswith("layer")]
    old: dict[str, torch.Tensor] = {}
    for i, name in enumerate(blocks):
        weight = state[f"{name}.conv.weight"]
        constant = math.sqrt(2) / weight.shape[-1] / math.sqrt(weight.shape[1])
        factor = scale_factor if i == 0 else 1.0
        old[f"features.{i}.conv.weight"] = weight
        old[f"features.{i}.wscale.scale"] = torch.tensor([constant * factor])
        old[f"features.{i}.wscale.b"] = state[f"{name}.wscale.b"]
    output = [name for name, _ in model.named_children() if name.startswith("output_")][0]
    weight = state[f"{output}.conv.weight"]
    old["output.conv.weight"] = weight
    old["output.wscale.scale"] = torch.tensor([1 / math.sqrt(weight.shape[1])])
    old["output.wscale.b"] = state[f"{output}.wscale.b"]
    return old


def _random_progan() -> ProGANGenerator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ProGANGenerator([16, 8, 8, 4])
        for p in model.parameters():
            nn.init.normal_(p)
    return model


def test_progan_old_layout_gives_the_same_generator(tmp_path):
    model = _random_progan()
    torch.save(model.state_dict(), tmp_path / "new.pth")
    old = _old_layout(model)
    assert "features.5.conv.weight" in old and "layer1.conv.weight" not in old
    torch.save(old, tmp_path / "old.pth")
    save_file(old, str(tmp_path / "old.safetensors"))
    new = load_generator(f"progan:{tmp_path / 'new.pth'}")
    z = new.latents(range(3))
    for name in ("old.pth", "old.safetensors"):
        converted = load_generator(f"progan:{tmp_path / name}")
        assert converted.model.weights_layout == "progan-features"
        assert [n for n, _ in converted.module.named_children()][-1] == "output_16x16"
        assert torch.equal(converted.module(z), new.module(z))
        assert not converted.random_weights


def test_progan_old_layout_with_another_stored_scale(tmp_path):
    """A stored scale that is not the constant is folded into the convolution."""
    model = _random_progan()
    torch.save(_old_layout(model, scale_factor=2.0), tmp_path / "old.pth")
    with torch.no_grad():
        model.layer1.conv.weight.mul_(2.0)
    converted = load_generator(f"progan:{tmp_path / 'old.pth'}")
    z = converted.latents(range(3))
    assert torch.allclose(converted.module(z), model.eval()(z), atol=1e-5)

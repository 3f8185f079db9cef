"""``unitdissect layers`` on every kind of model spec: generators (demo, progan:, stylegan2:,
a file with a latent size) and classifiers (demo, torchvision, a file)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from builder.cli import main
from builder.generator import load_generator
from builder.generator.adapters import ProGANGenerator, StyleGAN2Generator
from builder.models import layer_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GENERATOR_FILE = '''
from torch import nn


class Tiny(nn.Module):
    z_dim = 6  # declares its latent size, as load_generator reads it

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 4 * 4 * 4)
        self.up = nn.ConvTranspose2d(4, 3, 2, stride=2)

    def forward(self, z):
        return self.up(self.fc(z).view(-1, 4, 4, 4))


class Plain(Tiny):
    z_dim = None  # says nothing: needs --latent-dim


def make():
    return Tiny()


def plain():
    return Plain()


def classifier():
    return nn.Sequential(nn.Conv2d(3, 5, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(5, 2))
'''


def _table(text: str) -> dict[str, tuple[str, str]]:
    """The printed table as name -> (type, shape)."""
    rows = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            break
        name, kind, shape = line.split(None, 2)
        rows[name] = (kind, shape.strip())
    return rows


def _layers(capsys, *argv: str) -> tuple[dict[str, tuple[str, str]], str]:
    assert main(["layers", *argv]) == 0
    out = capsys.readouterr().out
    return _table(out), out.strip().splitlines()[-1]


@pytest.fixture
def progan_file(tmp_path):
    torch.manual_seed(0)
    model = ProGANGenerator([16, 8, 8, 4])
    for p in model.parameters():
        nn.init.normal_(p)
    path = tmp_path / "progan.pth"
    torch.save(model.state_dict(), path)
    return path


def test_demo_generator(capsys):
    table, summary = _layers(capsys, "demo:generator")
    assert table["layer4"] == ("UpBlock", "128x16x16")
    assert table["output"][1] == "3x64x64"
    assert summary.endswith("shapes for one 128 latent (sample 0, seed 0), batch omitted")


def test_progan_checkpoint_in_a_fresh_process(tmp_path, progan_file):
    """As a user runs it: ``unitdissect layers progan:FILE`` in its own process."""
    done = subprocess.run([sys.executable, "-m", "builder", "layers", f"progan:{progan_file}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    table = _table(done.stdout)
    assert table["layer1"][1] == "8x4x4" and table["layer3"][1] == "8x8x8"
    assert table["layer6"][1] == "4x16x16" and table["output_16x16"][1] == "3x16x16"
    # exactly the names `unitdissect gan --layers` resolves on this generator
    assert list(table) == layer_names(load_generator(f"progan:{progan_file}").module)
    assert "one 16 latent" in done.stdout.strip().splitlines()[-1]


def test_progan_refuses_extra_weights(capsys, progan_file):
    assert main(["layers", f"progan:{progan_file}", "--weights", str(progan_file)]) == 2
    assert "the checkpoint is the weights" in capsys.readouterr().err


def test_stylegan2_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    model = StyleGAN2Generator(size=16, style_dim=8, n_mlp=2, channels={4: 8, 8: 8, 16: 4})
    torch.save({"g_ema": model.state_dict()}, tmp_path / "sg2.pt")
    table, summary = _layers(capsys, f"stylegan2:{tmp_path / 'sg2.pt'}", "--seed", "3")
    assert table["conv1"][1] == "8x4x4"
    assert table["convs.1"][1] == "8x8x8" and table["convs.3"][1] == "4x16x16"
    assert "one 8 latent (sample 0, seed 3)" in summary


def test_file_generator_declared_or_given_latent(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(GENERATOR_FILE)
    table, summary = _layers(capsys, f"{tmp_path / 'nets.py'}:make")
    assert table["fc"][1] == "64" and table["up"][1] == "3x8x8"
    assert "one 6 latent" in summary
    table, summary = _layers(capsys, f"{tmp_path / 'nets.py'}:plain", "--latent-dim", "6")
    assert table["up"][1] == "3x8x8" and "one 6 latent" in summary


def test_failing_forward_pass_is_one_line(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(GENERATOR_FILE)
    assert main(["layers", f"{tmp_path / 'nets.py'}:plain"]) == 2  # fed an image, not a latent
    err = capsys.readouterr().err
    assert "the forward pass on one 3x224x224 input failed" in err and "--latent-dim" in err
    assert "Traceback" not in err


def test_input_size_is_not_for_generators(capsys):
    assert main(["layers", "demo:generator", "--input-size", "32"]) == 2
    assert "--input-size is for image models" in capsys.readouterr().err


def test_classifier_specs_still_work(tmp_path, capsys):
    table, summary = _layers(capsys, "demo:classifier")
    assert table and summary.endswith("shapes for one 3x128x128 input, batch omitted")
    table, summary = _layers(capsys, "torchvision:resnet18", "--input-size", "64")
    assert table["layer4"] == ("Sequential", "512x2x2") and table["fc"][1] == "1000"
    assert "one 3x64x64 input" in summary
    (tmp_path / "nets.py").write_text(GENERATOR_FILE)
    table, _ = _layers(capsys, f"{tmp_path / 'nets.py'}:classifier", "--input-size", "9")
    assert table["0"] == ("Conv2d", "5x4x4") and table["4"][1] == "2"

"""``unitdissect gan`` end to end on the demo generator (random weights) and the demo segmenter."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from builder.cli import main
from builder.models.demo_registry import make_generator


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def random_weights(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path / "generator.safetensors"
    save_file(make_generator().state_dict(), str(path))
    return path


def test_gan_command_end_to_end(tmp_path, random_weights, capsys):
    args = ["gan", "--model", "demo:generator", "--weights", str(random_weights),
            "--layers", "layer2", "--segmenter", "demo:segmenter", "--samples", "16",
            "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
            "--counts", "0,2", "--science-units", "2", "--num-concepts", "1",
            "--insertion-samples", "2", "--insertion-units", "2", "--insertion-stride", "4",
            "--gallery-size", "2", "--batch-size", "8", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "layer2: removing 2 units removes" in printed and "results in" in printed
    run = tmp_path / "run"
    iou = np.load(run / "layers" / "layer2" / "iou.npy")
    with open(run / "concepts.csv", newline="") as f:
        concepts = list(csv.DictReader(f))
    assert iou.shape == (256, max(int(c["id"]) for c in concepts) + 1)
    topk = np.load(run / "layers" / "layer2" / "topk.npz")
    assert topk["index"].max() < 16 and topk["maps"].shape[-2:] == (8, 8)
    folder = run / "generator" / "layer2"
    with open(folder / "ablation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["n_removed"]) for r in rows] == [0, 2]
    assert rows[0]["fraction_remaining"] == "1"
    with open(folder / "insertion.csv", newline="") as f:
        inserted = list(csv.DictReader(f))
    assert sum(int(r["n"]) for r in inserted) == 2 * 4  # 2 samples x (2 x 2 windows)
    manifest = json.loads((run / "generator" / "manifest.json").read_text())
    assert manifest["command"][:2] == ["unitdissect", "gan"]
    assert manifest["samples"]["count"] == 16 and manifest["latent"]["shape"] == [128]
    assert (folder / "gallery" / "gallery.json").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--counts", "1,x"], "--counts must be integers"),
    (["--layers", "nope"], "nope"),
    (["--insertion-percentile", "120"], "--insertion-percentile"),
])
def test_gan_command_user_errors(tmp_path, random_weights, capsys, extra, message):
    args = ["gan", "--model", "demo:generator", "--weights", str(random_weights),
            "--layers", "layer2", "--samples", "4", "--out", str(tmp_path / "run"),
            "--device", "cpu", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_gan_command_on_a_rosinality_checkpoint_with_truncation(tmp_path, capsys):
    """A StyleGAN2 training checkpoint as train.py saves it (Namespace and optimiser states
    included), dissected with the truncation trick; the manifest records psi."""
    from test_checkpoints import rosinality_checkpoint

    path = tmp_path / "080000.pt"
    rosinality_checkpoint(path)
    args = ["gan", "--model", f"stylegan2:{path}", "--layers", "convs.1",
            "--segmenter", "demo:segmenter", "--samples", "8", "--truncation-psi", "0.7",
            "--truncation-mean", "256", "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--counts", "0,1", "--science-units", "1",
            "--num-concepts", "1", "--no-insertion", "--gallery-size", "0",
            "--batch-size", "8", "--device", "cpu"]
    assert main(args) == 0
    assert "results in" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "run" / "generator" / "manifest.json").read_text())
    assert manifest["latent"]["truncation_psi"] == 0.7
    assert manifest["latent"]["w_average"].startswith("mean of w over 256 latents")
    assert "--truncation-psi" in manifest["command"]


def test_gan_truncation_bound_is_not_psi(tmp_path, random_weights, capsys):
    args = ["gan", "--model", "demo:generator", "--weights", str(random_weights),
            "--layers", "layer2", "--samples", "4", "--out", str(tmp_path / "run"),
            "--device", "cpu", "--truncation", "0.7"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--latent-distribution truncated" in err and "--truncation-psi" in err

"""The same config and seed give byte-identical result files on the same machine."""

from __future__ import annotations

from builder.workspace.config import load_config
from builder.workspace.pipeline import build

CONFIG = """\
seed = 3
device = "cpu"

[dataset]
sources = ["toyworld:n=40,size=64"]
min_frequency = 1

[[dissect]]
name = "classifier"
model = "demo:classifier"
layers = ["features.conv2_1", "features.conv5_3"]
batch_size = 16
topk = 4

[[ablate]]
run = "classifier"
layer = "features.conv5_3"
random_draws = 2
adversarial = 0
"""
#: Result files; the manifests hold times and paths, so they differ.
RESULTS = ("*.csv", "*.npy", "*.npz", "baseline.json", "science.json", "layer.json")


def test_two_builds_write_identical_results(tmp_path):
    files = {}
    for name in ("a", "b"):
        workspace = tmp_path / name
        workspace.mkdir()
        (workspace / "unitdissect.toml").write_text(CONFIG)
        build(workspace, load_config(workspace), progress=False)
        runs = workspace / "runs"
        files[name] = {p.relative_to(runs): p.read_bytes()
                       for pattern in RESULTS for p in runs.rglob(pattern)}
    assert any(p.suffix == ".npy" for p in files["a"]) and \
        any(p.name == "curves.csv" for p in files["a"])
    assert files["a"].keys() == files["b"].keys()
    different = [str(p) for p in files["a"] if files["a"][p] != files["b"][p]]
    assert not different, f"differ between two builds: {different}"

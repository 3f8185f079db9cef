"""A tiny workspace with every stage of a build, and the results of building it once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.cli import main

#: A tiny workspace with every stage: dataset, dissect, ablate, gan, render.
WORKSPACE = """\
device = "cpu"

[dataset]
sources = ["toyworld:n=40,size=64"]
min_frequency = 1

[[dissect]]
name = "classifier"
model = "demo:classifier"
layers = ["features.conv5_3"]
batch_size = 20
topk = 4

[[ablate]]
run = "classifier"
layer = "features.conv5_3"
random_draws = 2
adversarial = 0

[[gan]]
name = "gen"
model = "demo:generator"
layers = ["layer4"]
samples = 24
counts = [0, 2]
num_concepts = 2
science_units = 2
insertion_units = 2
insertion_samples = 2
insertion_windows = 2
gallery_size = 2
batch_size = 12
"""
#: Result files (the manifests hold times and paths, so they differ from build to build).
RESULTS = ("*.csv", "*.npy", "*.npz", "baseline.json", "science.json", "layer.json")


def results(workspace: Path) -> dict[str, bytes]:
    """The result files of a workspace's runs, by path, for byte-for-byte comparisons."""
    runs = workspace / "runs"
    return {str(p.relative_to(runs)): p.read_bytes() for pattern in RESULTS
            for p in runs.rglob(pattern) if "checkpoints" not in p.parts}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The results of one build that nothing interrupted."""
    workspace = tmp_path_factory.mktemp("reference")
    (workspace / "unitdissect.toml").write_text(WORKSPACE)
    cwd = os.getcwd()
    try:
        os.chdir(workspace)
        assert main(["build"]) == 0
    finally:
        os.chdir(cwd)
    found = results(workspace)
    assert any(name.endswith("iou.npy") for name in found)
    return found

"""Every example workspace (examples/*/unitdissect.toml) and the demo config validate offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.cli import main

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*/unitdissect.toml"))


def test_examples_exist():
    names = {p.parent.name for p in EXAMPLES}
    assert {"vgg16-places365", "resnet18-imagenet", "progan-churches"} <= names


@pytest.mark.parametrize("config", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_example_dry_run(config, capsys):
    assert main(["build", "--dry-run", "--workspace", str(config.parent)]) == 0
    out = capsys.readouterr().out
    assert "is valid" in out and "needs" in out  # weights or data to fetch, nothing fetched


def test_demo_dry_run(capsys):
    assert main(["build", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ablate classifier/features.conv5_3: 11 classes" in out and "<demo>" in out

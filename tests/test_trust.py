"""Results a user can trust, checked through the CLI as a user runs it: skipped files are
named and counted, random weights are flagged everywhere, published pages name no path of the
machine that made them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cli import main
from builder.datasets.sources.toyworld import SCENES
from fixtures_broden_release import write_release

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m builder ARGS`` in a fresh process, as a user's terminal runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bad_release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("bad") / "broden", n=24, size=64, bad=True)


@pytest.fixture(scope="module")
def random_run(bad_release, tmp_path_factory):
    """A random ResNet-18 dissected on the release with two bad files, in a fresh process."""
    cwd = tmp_path_factory.mktemp("work")
    done = _cli("dissect", "--model", "torchvision:resnet18", "--layers", "layer1",
                "--dataset", f"broden:{bad_release.root}", "--out", "run", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return cwd, done


def test_dissect_names_the_skipped_files_and_the_manifest_counts_them(random_run):
    cwd, done = random_run
    assert "2 bad sample(s) skipped" in done.stderr
    assert "cut.jpg" in done.stderr and "unreadable image" in done.stderr
    assert "wrong_object.png is 32x35" in done.stderr
    manifest = json.loads((cwd / "run" / "manifest.json").read_text())
    assert manifest["stats"]["skipped_images"] == 2
    assert len(manifest["stats"]["skipped"]) == 2
    assert manifest["dataset"]["images"] == 24


def test_random_weights_are_flagged_on_the_terminal_and_in_the_manifest(random_run):
    cwd, done = random_run
    assert "torchvision:resnet18 has random weights" in done.stderr
    model = json.loads((cwd / "run" / "manifest.json").read_text())["model"]
    assert model["weights"] == "random" and model["random_weights"] is True


def test_the_site_flags_random_weights_on_every_results_page(random_run):
    cwd, _ = random_run
    done = _cli("render", "run", "--out", "site", cwd=cwd)
    assert done.returncode == 0, done.stderr
    site = cwd / "site"
    pages = {"home": site / "index.html", "run": site / "run" / "index.html",
             "layer": site / "run" / "layer1" / "index.html",
             "unit": next((site / "run" / "layer1").glob("unit-*.html"))}
    for kind, page in pages.items():
        assert "data-random-weights" in page.read_text(), kind


def test_published_pages_and_manifests_name_no_machine_path(random_run, bad_release):
    cwd, _ = random_run
    site = cwd / "site"
    if not site.is_dir():
        assert _cli("render", "run", "--out", "site", cwd=cwd).returncode == 0
    machine = [str(cwd), str(bad_release.root), str(Path.home()), "/tmp/"]
    for page in list(site.rglob("*.html")) + list((cwd / "run").rglob("*.json")):
        text = page.read_text(errors="replace")
        for prefix in machine:
            assert prefix not in text, f"{page.relative_to(cwd)} names {prefix}"


def test_trained_weights_are_not_flagged(tmp_path):
    assert main(["dissect", "--model", "demo:classifier", "--layers", "features.conv5_3",
                 "--dataset", "toyworld:n=12,size=64", "--out", "run"]) == 0
    model = json.loads(Path("run/manifest.json").read_text())["model"]
    assert model["random_weights"] is False and model["weights"] != "random"
    assert main(["render", "run", "--out", "site"]) == 0
    for page in Path("site").rglob("*.html"):
        assert "data-random-weights" not in page.read_text(), page


def test_ablate_counts_the_skipped_files(tmp_path, caplog):
    # the toy world brings every class of the demo classifier; the release its two bad files
    release = write_release(tmp_path / "broden", n=12, size=64, bad=True,
                            scenes=(SCENES[0], SCENES[1]))
    assert main(["dataset", "build", "toyworld:n=150,size=64", f"broden:{release.root}",
                 "--out", "ds", "--image-size", "64", "--mask-size", "32",
                 "--min-frequency", "1"]) == 0
    caplog.clear()
    assert main(["ablate", "--model", "demo:classifier", "--layer", "features.conv5_3",
                 "--dataset", "ds", "--out", "run", "--random-draws", "1",
                 "--adversarial", "0"]) == 0
    assert "2 bad sample(s) skipped" in caplog.text
    manifest = json.loads(next(Path("run/ablation").glob("*/manifest.json")).read_text())
    assert manifest["dataset"]["skipped_images"] == 2


def test_dataset_build_and_workspace_build_name_the_skipped_files(tmp_path, capsys, caplog):
    release = write_release(tmp_path / "broden", n=12, size=64, bad=True)
    assert main(["dataset", "build", f"broden:{release.root}", "--out", "ds"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 bad sample(s)" in out and "cut.jpg" in out
    (tmp_path / "unitdissect.toml").write_text(
        f'name = "w"\ndevice = "cpu"\n[dataset]\nsources = ["broden:{release.root}"]\n'
        '[[dissect]]\nname = "r"\nmodel = "demo:classifier"\nlayers = ["features.conv5_3"]\n')
    caplog.clear()
    assert main(["build"]) == 0
    assert "2 bad sample(s) skipped" in caplog.text and "cut.jpg" in caplog.text

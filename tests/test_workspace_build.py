"""``unitdissect build`` on a tiny workspace: stages cached, resumed, recomputed selectively;
dry runs that stay offline."""

from __future__ import annotations

import json

import pytest

import builder.intervene.runner as ablation_runner
import builder.report.render as report_render
from builder.errors import ConfigError
from builder.workspace.config import load_config, parse_config
from builder.workspace.pipeline import STATE_FILE, build, dry_run

#: 40 toy-world scenes at 64 px, two layers of the demo classifier, the last one ablated.
TINY = """\
name = "tiny"
device = "cpu"

[dataset]
sources = ["toyworld:n=40,size=64"]
min_frequency = 1

[[dissect]]
name = "classifier"
model = "demo:classifier"
layers = ["features.conv1_1", "features.conv5_3"]
batch_size = 20
topk = 4

[[ablate]]
run = "classifier"
layer = "features.conv5_3"
random_draws = RANDOM_DRAWS
adversarial = 0
"""
STAGES = ["dataset", "dissect:classifier", "ablate:classifier:features.conv5_3", "render"]


def _write(workspace, random_draws=2):
    (workspace / "unitdissect.toml").write_text(TINY.replace("RANDOM_DRAWS", str(random_draws)))
    return load_config(workspace)


def _built(summary) -> dict[str, bool]:
    return {s.name: not s.cached for s in summary.stages}


def test_interrupted_build_resumes_and_options_recompute_only_their_stage(tmp_path, monkeypatch):
    config = _write(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("render failed")

    with monkeypatch.context() as m:
        m.setattr(report_render, "render_site", broken)
        with pytest.raises(RuntimeError, match="render failed"):
            build(tmp_path, config, progress=False)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert set(state) == set(STAGES[:3])  # every stage before render is recorded as done
    assert (tmp_path / "runs/classifier/ablation/features.conv5_3/curves.csv").is_file()

    summary = build(tmp_path, config, progress=False)
    assert _built(summary) == {"dataset": False, "dissect:classifier": False,
                               "ablate:classifier:features.conv5_3": False, "render": True}
    assert (tmp_path / "site" / "index.html").is_file()
    manifest = json.loads((tmp_path / "runs" / "build-manifest.json").read_text())
    assert manifest["ablations"]["ablate:classifier:features.conv5_3"]["options"][
        "random_draws"] == 2
    assert list(manifest["stages"]) == STAGES

    # a changed ablation option: the ablation and the site only, and inside the ablation
    # runner only the curves (the single-unit sweeps and important units do not read it)
    ran: list[str] = []
    monkeypatch.setattr(ablation_runner, "_after_stage", ran.append)
    summary = build(tmp_path, _write(tmp_path, random_draws=3), progress=False)
    assert _built(summary) == {"dataset": False, "dissect:classifier": False,
                               "ablate:classifier:features.conv5_3": True, "render": True}
    assert ran == ["curves"]
    assert build(tmp_path, load_config(tmp_path), progress=False).stages[-1].cached


GAN_BUILD = """\
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


def test_gan_stage_builds_caches_and_reruns_on_a_changed_option(tmp_path):
    config = tmp_path / "unitdissect.toml"
    config.write_text(GAN_BUILD)
    summary = build(tmp_path, load_config(tmp_path), progress=False)
    assert _built(summary) == {"gan:gen": True, "render": True}
    run = tmp_path / "runs" / "gen"
    for name in ("ablation.csv", "insertion.csv", "science.json", "summary.json",
                 "gallery/gallery.json"):
        assert (run / "generator" / "layer4" / name).is_file(), name
    assert len(list((tmp_path / "data" / "samples").glob("*/chunks/*-labels.npy"))) == 1
    manifest = json.loads((tmp_path / "runs" / "build-manifest.json").read_text())
    assert manifest["generators"]["gen"]["weights_sha256"]
    assert manifest["generators"]["gen"]["segmenter"]["fingerprint"].startswith("demo:segmenter")
    assert manifest["generators"]["gen"]["options"]["ablation_counts"] == [0, 2]
    # the site names the generator's own samples, not their cache path on this machine
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "of its own samples" in home and str(tmp_path / "data" / "samples") not in home
    assert _built(build(tmp_path, load_config(tmp_path), progress=False)) == {
        "gan:gen": False, "render": False}
    config.write_text(GAN_BUILD.replace("counts = [0, 2]", "counts = [0, 1, 2]"))
    assert _built(build(tmp_path, load_config(tmp_path), progress=False)) == {
        "gan:gen": True, "render": True}
    rows = (run / "generator" / "layer4" / "ablation.csv").read_text().splitlines()
    assert {r.split(",")[3] for r in rows[1:]} >= {"0", "1", "2"}
    summary = run / "generator" / "layer4" / "summary.json"
    before = summary.stat().st_mtime_ns
    build(tmp_path, load_config(tmp_path), force=True, progress=False)  # recomputes the layer
    assert summary.stat().st_mtime_ns != before


def test_gan_option_errors_name_the_entry(tmp_path):
    config = parse_config(GAN_BUILD.replace("counts = [0, 2]", "counts = []"))
    with pytest.raises(ConfigError, match=r"\[\[gan\]\] gen: --counts"):
        dry_run(config, tmp_path)


def test_ablation_needs_class_names(tmp_path):
    config = parse_config('[[dissect]]\nname = "r"\nmodel = "torchvision:resnet18"\n'
                          'layers = ["layer4"]\n[[ablate]]\nrun = "r"\nlayer = "layer4"\n')
    with pytest.raises(ConfigError, match="does not name its classes"):
        dry_run(config, tmp_path)
    (tmp_path / "classes.txt").write_text("beach\nforest\n")
    config.ablate[0].classes = "classes.txt"
    assert any("2 classes" in line for line in dry_run(config, tmp_path).checked)


def test_dry_run_stays_offline(tmp_path, monkeypatch):
    import builder.datasets.sources.broden as broden
    import builder.datasets.sources.hub as hub

    def never(*args, **kwargs):
        raise AssertionError("a dry run opened a dataset")

    monkeypatch.setattr(hub.HubSource, "__init__", never)
    monkeypatch.setattr(broden.BrodenSource, "__init__", never)
    config = parse_config('[dataset]\nsources = ["hf:ade20k", "broden:b224"]\n'
                          '[[dissect]]\nname = "d"\nmodel = "demo:classifier"\n'
                          'layers = ["features.conv5_3"]\n')
    report = dry_run(config, tmp_path)
    assert any("1aurent/ADE20K" in line for line in report.needs)
    assert any(str(tmp_path / "b224") in line for line in report.needs)
    with pytest.raises(ConfigError, match="unknown hub dataset"):
        dry_run(parse_config('[dataset]\nsources = ["hf:nope"]\n[[dissect]]\nname = "d"\n'
                             'model = "demo:classifier"\nlayers = ["fc"]\n'), tmp_path)


GAN = """\
[[gan]]
name = "g"
model = "MODEL"
layers = LAYERS
segmenter = "demo:segmenter"
"""


def _gan(model, layers):
    return parse_config(GAN.replace("MODEL", model).replace("LAYERS", json.dumps(layers)))


def test_dry_run_checks_gan_entries(tmp_path):
    from builder.errors import LayerError

    report = dry_run(_gan("progan:g.pth", ["layer4"]), tmp_path)
    assert any("g.pth" in line for line in report.needs)  # parsed; the file is needed
    with pytest.raises(ConfigError, match="layer1, layer2"):
        dry_run(_gan("progan:g.pth", ["conv4"]), tmp_path)

    generator = pytest.importorskip("builder.generator.adapters")
    import torch

    torch.save(generator.ProGANGenerator([16, 16, 8]).state_dict(), tmp_path / "g.pth")
    report = dry_run(_gan("progan:g.pth", ["layer4"]), tmp_path)  # built from the file
    assert not report.needs and "g: progan:g.pth, layers layer4" in report.checked
    with pytest.raises(LayerError, match="layer9"):
        dry_run(_gan("progan:g.pth", ["layer9"]), tmp_path)
    with pytest.raises(ConfigError, match="unknown segmenter"):
        dry_run(parse_config(GAN.replace("MODEL", "progan:g.pth").replace("LAYERS", '["layer4"]')
                             .replace("demo:segmenter", "nope:x")), tmp_path)

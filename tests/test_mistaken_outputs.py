"""Mistaken outputs and silent numbers, through the CLI as a user runs it: an output that is a
file, a dataset or another model's run is refused in one line (``--force`` replaces a run
whole); NaN and Inf activations are named and counted per unit; the CLI's last resort is one
line too."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from builder.cli import main

DATASET = "toyworld:n=8,size=64"
NAN_MODEL = """\
import torch
from torch import nn


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.Identity()

    def forward(self, x):
        y = self.conv(x).clone()
        y[:, 0] = float("nan")
        y[:, 1, :, : y.shape[-1] // 2] = float("inf")
        return self.act(y)


def make():
    torch.manual_seed(0)
    return M()
"""


def _dissect(out: str, model: str = "demo:classifier", layers: str = "features.conv5_3",
             *extra: str) -> int:
    return main(["dissect", "--model", model, "--layers", layers, "--dataset", "ds",
                 "--out", out, "--device", "cpu", "--batch-size", "8", *extra])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("unitdissect: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture()
def ds(tmp_path, capsys) -> Path:
    assert main(["dataset", "build", DATASET, "--out", "ds"]) == 0
    capsys.readouterr()
    return tmp_path / "ds"


def test_outputs_that_are_files_are_refused(tmp_path, capsys, ds):
    (tmp_path / "afile").write_text("mine")
    for out, said in [("afile", "--out afile: is a file, not a folder"),
                      ("/dev/null", "--out /dev/null: is a file, not a folder"),
                      ("afile/sub", "afile is a file, not a folder")]:
        assert _dissect(out) == 2, out
        assert said in _one_line(capsys)
    assert (tmp_path / "afile").read_text() == "mine"
    assert main(["dataset", "build", DATASET, "--out", "afile"]) == 2
    assert "is a file, not a folder" in _one_line(capsys)
    assert main(["dataset", "export", "ds", "--out", "afile"]) == 2
    assert "is a file, not a folder" in _one_line(capsys)
    assert main(["dataset", "show", "ds", "--out", "s.txt"]) == 2
    assert ".txt is not an image type" in _one_line(capsys)
    assert main(["dataset", "show", "ds", "--out", "s.png"]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_a_dataset_is_never_written_over_by_a_run(ds, capsys):
    before = {p.name: p.read_bytes() for p in ds.iterdir() if p.is_file()}
    assert _dissect("ds") == 2
    assert "is a concept dataset" in _one_line(capsys)
    assert {p.name: p.read_bytes() for p in ds.iterdir() if p.is_file()} == before


def test_a_run_of_another_model_is_refused_and_force_replaces_it_whole(tmp_path, capsys, ds):
    assert _dissect("run") == 0
    capsys.readouterr()
    assert _dissect("run", "torchvision:resnet18", "layer1") == 2
    line = _one_line(capsys)
    assert "run holds a run of 'demo:classifier' with other weights" in line
    assert sorted(p.name for p in (tmp_path / "run" / "layers").iterdir()) == \
        ["features.conv5_3"]
    assert _dissect("run", "torchvision:resnet18", "layer1", "--force") == 0
    assert sorted(p.name for p in (tmp_path / "run" / "layers").iterdir()) == ["layer1"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["model"]["spec"] == "torchvision:resnet18"
    assert "--force" not in manifest["command"]  # it changes no result
    assert _dissect("run", "torchvision:resnet18", "layer1") == 0  # same model: resumed


def test_nan_and_inf_activations_are_named_and_counted_per_unit(tmp_path, caplog, ds):
    (tmp_path / "nan_model.py").write_text(NAN_MODEL)
    assert _dissect("run", "nan_model.py:make", "act") == 0
    err = caplog.text  # a warning on the terminal (the CLI logs warnings to stderr)
    assert "layer act: 2 of 4 units gave NaN or Inf activations" in err
    assert "units 0, 1" in err
    stats = json.loads((tmp_path / "run" / "manifest.json").read_text())["stats"]
    pixels = 8 * 64 * 64  # activations at the input's size: 8 images of 64 x 64
    assert stats["layers"]["act"]["nonfinite_units"] == {"0": pixels, "1": pixels // 2}
    rows = (tmp_path / "run" / "layers" / "act" / "units.csv").read_text().splitlines()
    assert rows[1].split(",")[5] == "0"  # the all-NaN unit detects nothing


def test_gan_on_a_classifier_and_a_cache_dir_that_is_a_file(tmp_path, capsys):
    assert main(["gan", "--model", "demo:classifier", "--layers", "features.conv5_3",
                 "--samples", "4", "--out", "g", "--latent-dim", "8", "--device", "cpu"]) == 2
    assert "demo:classifier is not a generator: it fails on latents of shape [1, 8]" in \
        _one_line(capsys)
    (tmp_path / "afile").write_text("")
    assert main(["gan", "--model", "demo:generator", "--layers", "layer4", "--samples", "4",
                 "--out", "g", "--cache-dir", "afile", "--device", "cpu"]) == 2
    assert "--cache-dir afile: is a file, not a folder" in _one_line(capsys)


def test_archive_refuses_a_folder_as_its_file_and_leaves_out_a_site_elsewhere(
        tmp_path, capsys, caplog):
    import tarfile

    (tmp_path / "runs").mkdir()
    assert main(["archive", "--out", str(tmp_path)]) == 2
    assert "is a folder; give the file's name" in _one_line(capsys)
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "runs").mkdir()
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "index.html").write_text("secret")
    (tmp_path / "ws" / "unitdissect.toml").write_text('[site]\nout = "../private"\n')
    assert main(["archive", "--workspace", "ws", "--out", "a.tar.gz"]) == 0
    assert "[site] out = '../private' lies outside the workspace" in caplog.text
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        names = tar.getnames()
        assert not any(n.endswith("index.html") for n in names), names
        assert all(b"secret" not in tar.extractfile(m).read() for m in tar.getmembers()
                   if m.isfile())


def test_the_last_resort_is_one_line_and_library_warnings_too(monkeypatch, capsys):
    import builder.cli.verify as verify_cli

    def broken(args):
        warnings.warn("a library's warning\nwith a second line", UserWarning)
        raise ValueError("an input nobody checked\nand more")

    monkeypatch.setattr(verify_cli, "run", broken)
    assert main(["verify", "x.tar.gz"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "unitdissect: warning: a library's warning (UserWarning)" in err
    assert "unitdissect: error: ValueError: an input nobody checked" in err
    assert "run with --debug for the traceback" in err
    with pytest.raises(ValueError):
        main(["--debug", "verify", "x.tar.gz"])


def test_a_build_whose_model_changed_replaces_its_run_whole(tmp_path, capsys):
    (tmp_path / "tiny.py").write_text(
        "import torch\nfrom torch import nn\n\n\ndef make():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())\n")
    config = ('device = "cpu"\n[dataset]\nsources = ["toyworld:n=8,size=64"]\n'
              'min_frequency = 1\n[[dissect]]\nname = "c"\nmodel = "MODEL"\n'
              'layers = ["LAYER"]\nbatch_size = 8\n')
    workspace = tmp_path / "unitdissect.toml"
    workspace.write_text(config.replace("MODEL", "demo:classifier")
                         .replace("LAYER", "features.conv5_3"))
    assert main(["build"]) == 0
    workspace.write_text(config.replace("MODEL", "tiny.py:make").replace("LAYER", "1"))
    assert main(["build"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "c" / "layers").iterdir()) == ["1"]
    assert "Traceback" not in capsys.readouterr().err

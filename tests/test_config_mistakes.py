"""Mistaken and hostile workspace configs and flags (issue 23), run as a user runs them:
``unitdissect build [--dry-run]`` in the workspace, one-line errors, no traceback."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from builder.cli import main
from builder.errors import ConfigError
from builder.workspace.config import load_config, parse_config
from builder.workspace.pipeline import build


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``unitdissect ARGV``."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _refused(capsys, *argv: str) -> str:
    """The one ``unitdissect: error:`` line of a command that exits 2 (its hint aside)."""
    code, out, err = _run(capsys, *argv)
    assert code == 2, out + err
    # `build` names its config on the line before
    lines = [line for line in err.splitlines()
             if not line.startswith(("  hint:", "unitdissect build: "))]
    assert len(lines) == 1 and lines[0].startswith("unitdissect: error: "), err
    return lines[0]


def _workspace(tmp_path, text: str):
    (tmp_path / "unitdissect.toml").write_text(text, encoding="utf-8")
    return tmp_path


DISSECT = '[[dissect]]\nname = "d"\nmodel = "MODEL"\nlayers = ["conv"]\n'


# -- 1. a dry run imports no code of the config ------------------------------------------------

def test_dry_run_does_not_import_a_module_spec(tmp_path, capsys):
    sys.modules.pop("this", None)  # importing `this` prints the Zen of Python
    _workspace(tmp_path, 'device = "cpu"\n' + DISSECT.replace("MODEL", "this:s"))
    code, out, err = _run(capsys, "build", "--dry-run")
    assert code == 0, err
    assert "Beautiful is better than ugly" not in out + err and "this" not in sys.modules
    assert "skip   [[dissect]] model = 'this:s' (entry 'd'): not checked offline: would " \
        "import Python" in out
    assert "not checked offline" in out.splitlines()[-1]


MODEL_FILE = """\
from pathlib import Path
Path(__file__).with_name("imported.marker").write_text("ran")

def build(width=4):
    import torch
    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3))
"""


def test_dry_run_does_not_run_a_model_file(tmp_path, capsys):
    (tmp_path / "m.py").write_text(MODEL_FILE)
    _workspace(tmp_path, DISSECT.replace("MODEL", "m.py:build(width=8)")
               + '[[gan]]\nname = "g"\nmodel = "m.py:build"\nlayers = ["0"]\n')
    code, out, err = _run(capsys, "build", "--dry-run")
    assert code == 0, err
    assert not (tmp_path / "imported.marker").exists()
    assert "[[dissect]] model = 'm.py:build(width=8)' (entry 'd'): not checked offline" in out
    assert "[[gan]] model = 'm.py:build' (entry 'g'): not checked offline" in out
    # what can be checked without importing still is: the file, the literal arguments
    _workspace(tmp_path, DISSECT.replace("MODEL", "gone.py:build"))
    assert "model file not found" in _refused(capsys, "build", "--dry-run")
    _workspace(tmp_path, DISSECT.replace("MODEL", "m.py:build(width=os.getcwd())"))
    assert "is not a Python literal" in _refused(capsys, "build", "--dry-run")
    _workspace(tmp_path, DISSECT.replace("MODEL", "no_such_package_here:build"))
    assert "no module named 'no_such_package_here'" in _refused(capsys, "build", "--dry-run")
    assert not (tmp_path / "imported.marker").exists()


# -- 2. every problem at once, each at its file:line and key ------------------------------------

def test_option_problems_are_reported_together_at_their_keys(tmp_path, capsys):
    _workspace(tmp_path, '[[dissect]]\nname = "d"\nmodel = "demo:classifier"\n'
               'layers = ["features.conv5_3"]\nquantile = nan\niou_threshold = -1.0\n'
               '[[gan]]\nname = "g"\nmodel = "demo:generator"\nlayers = ["layer4"]\n'
               'counts = []\n')
    code, out, err = _run(capsys, "build", "--dry-run")
    assert code == 2 and err.startswith("unitdissect: error: 3 problems in the config:")
    assert "unitdissect.toml:5: dissect.quantile = nan: must be finite" in err
    assert "unitdissect.toml:6: dissect.iou_threshold = -1.0: must be >= 0.0" in err
    assert "unitdissect.toml:11: gan.counts = []: must be non-negative integers" in err
    assert "--quantile" not in err and "--counts" not in err


def test_normalisation_and_preset_problems_name_their_keys():
    text = ('[[dissect]]\nname = "d"\nmodel = "demo:classifier"\nlayers = ["x"]\n'
            'mean = [0.5, 0.5]\nstd = [0.0, 1.0, 1.0]\nunion = "overlap"\n'
            'category_aware = false\n')
    parse_config(text)  # the light parse leaves the option classes' checks to load_config
    with pytest.raises(ConfigError) as e:
        parse_config(text, check_options=True)
    message = str(e.value)
    assert message.startswith("3 problems in the config:")
    assert "unitdissect.toml:5: dissect.mean = [0.5, 0.5]: must be three finite numbers" in message
    assert "unitdissect.toml:6: dissect.std = [0.0, 1.0, 1.0]: must be positive" in message
    assert "unitdissect.toml:7: dissect.union = 'overlap': union overlap and category_aware=" \
        "False contradict each other" in message


# -- 3. the device, the sources ----------------------------------------------------------------

def test_a_device_the_machine_lacks_is_refused_before_anything_runs(tmp_path, capsys,
                                                                   monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _workspace(tmp_path, 'device = "cuda"\n[dataset]\nsources = ["toyworld:n=8,size=32"]\n'
               + DISSECT.replace("MODEL", "demo:classifier"))
    for argv in (["build", "--dry-run"], ["build"]):
        line = _refused(capsys, *argv)
        assert line == ("unitdissect: error: unitdissect.toml:1: device = 'cuda': CUDA is not "
                        "available on this machine")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_device_takes_what_the_device_flag_takes():
    from builder.dissect.runner import DissectOptions

    for device in ("auto", "cpu", "cuda", "cuda:1", "cuda:12", "mps", "tpu", "cuda:", "cuda:x",
                   "cpu:0", "CUDA", "mps:1"):
        try:
            DissectOptions(device=device)
            flag = True
        except ConfigError:
            flag = False
        try:
            toml = parse_config(f'device = "{device}"\n').device == device
        except ConfigError as e:
            assert f"unitdissect.toml:1: device = {device!r}: expected auto, cpu, cuda, cuda:N " \
                "or mps" in str(e)
            toml = False
        assert toml == flag, device


def test_no_sources_is_a_problem(tmp_path, capsys):
    _workspace(tmp_path, '[dataset]\nsources = []\n' + DISSECT.replace("MODEL", "demo:classifier"))
    line = _refused(capsys, "build", "--dry-run")
    assert "unitdissect.toml:2: dataset.sources = []: expected at least one source spec" in line
    assert "unitdissect.toml:2:" in _refused(capsys, "build")


# -- 4 and 5. an images: folder with its segmenter; the site's title ---------------------------

IMAGES = """\
device = "cpu"

[dataset]
sources = ["images:photos"]
segmenter = "demo:segmenter"
image_size = 64
mask_size = 32
min_frequency = 1

[[dissect]]
name = "c"
model = "demo:classifier"
layers = ["features.conv5_3"]
batch_size = 4
topk = 2

[site]
title = "My units"
"""


def _photos(folder, n: int = 4) -> None:
    from PIL import Image

    folder.mkdir()
    for i in range(n):  # sky over grass, with a block of colour
        image = np.zeros((48, 48, 3), np.uint8)
        image[:24], image[24:] = (90, 140, 220), (60, 160, 60)
        image[10:30, 8 + 4 * i:30] = (200, 40 * i, 30)
        Image.fromarray(image).save(folder / f"p{i}.png")


def test_images_source_with_segmenter_builds_and_site_has_its_title(tmp_path, capsys,
                                                                    one_torch_thread):
    _photos(tmp_path / "photos")
    _workspace(tmp_path, IMAGES.replace('segmenter = "demo:segmenter"\n', ""))
    line = _refused(capsys, "build", "--dry-run")
    assert "unitdissect.toml:4: dataset.sources: 'images:photos' needs a segmenter" in line
    _workspace(tmp_path, IMAGES.replace("demo:segmenter", "nope"))
    assert "unitdissect.toml:5: dataset.segmenter = 'nope': unknown segmenter" in \
        _refused(capsys, "build", "--dry-run")

    _workspace(tmp_path, IMAGES)
    code, out, err = _run(capsys, "build", "--dry-run")
    assert code == 0 and "ok     dataset source images:photos labelled by demo:segmenter" in out
    code, out, err = _run(capsys, "build")
    assert code == 0, err
    assert "4 images" in out
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "<title>My units · unitdissect</title>" in home
    # the title is part of the render stage's fingerprint: a new one renders again
    _workspace(tmp_path, IMAGES.replace("My units", "Our <units>"))
    summary = {s.name: s.cached for s in build(tmp_path, load_config(tmp_path),
                                                 progress=False).stages}
    assert summary == {"dataset": True, "dissect:c": True, "render": False}
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "<title>Our &lt;units&gt; · unitdissect</title>" in home


# -- 6. seeds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["dissect", "--model", "demo:classifier", "--layers", "features.conv5_3",
     "--dataset", "toyworld:n=4", "--out", "r"],
    ["ablate", "--run", "r", "--layer", "features.conv5_3"],
    ["gan", "--model", "demo:generator", "--layers", "layer4", "--out", "r"],
    ["layers", "demo:classifier"],
    ["demo", "train", "classifier"],
])
@pytest.mark.parametrize("seed", ["99999999999999999999", "-1", str(2**63)])
def test_every_seed_flag_refuses_what_numpy_and_torch_cannot_take(argv, seed, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--seed", seed])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert f"error: argument --seed: expected an integer from 0 to 2**63 - 1, got '{seed}'" in err


def test_seed_bounds_are_the_same_for_the_flag_and_the_config(tmp_path, capsys):
    import torch

    from builder.cli import seed_arg
    from builder.workspace.config import MAX_SEED

    assert seed_arg(str(MAX_SEED)) == MAX_SEED and seed_arg("0") == 0
    torch.manual_seed(MAX_SEED + 1)  # the model loader seeds seed + 1 too
    np.random.default_rng([MAX_SEED, 7])
    assert parse_config(f"seed = {MAX_SEED}\n").seed == MAX_SEED
    _workspace(tmp_path, 'seed = 99999999999999999999\n'
               + DISSECT.replace("MODEL", "demo:classifier"))
    for argv in (["build", "--dry-run"], ["build"]):
        assert _refused(capsys, *argv) == (
            "unitdissect: error: unitdissect.toml:1: seed = 99999999999999999999: expected an "
            "integer from 0 to 2**63 - 1")


# -- 7. layers named twice ---------------------------------------------------------------------

def test_a_layer_named_twice_is_refused(tmp_path, capsys):
    line = _refused(capsys, "dissect", "--model", "demo:classifier", "--layers",
                    "features.conv5_3, features.conv1_1,features.conv5_3", "--dataset",
                    "toyworld:n=4", "--out", "r")
    assert line == "unitdissect: error: --layers names 'features.conv5_3' twice"
    assert not (tmp_path / "r").exists()
    _workspace(tmp_path, '[[dissect]]\nname = "d"\nmodel = "demo:classifier"\n'
               'layers = ["conv", "fc", "conv"]\n')
    assert "unitdissect.toml:4: dissect.layers = ['conv', 'fc', 'conv']: 'conv' is given " \
        "twice" in _refused(capsys, "build", "--dry-run")

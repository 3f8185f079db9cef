"""The wheel carries every package, the site's templates and the demo weights."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "builder").rglob("*.py") if "__pycache__" not in p.parts}
    assert on_disk <= listed, f"add to pyproject packages: {sorted(on_disk - listed)}"
    for package, folder in config["package-dir"].items():
        assert (ROOT / folder).is_dir(), f"{package} maps to missing {folder}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from this checkout."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(folder), str(ROOT)], check=True)
    return next(folder.glob("unitdissect-*.whl"))


@pytest.mark.slow
def test_wheel_contains_templates_and_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates").rglob("*"):
        if template.is_file():
            rel = template.relative_to(ROOT / "templates").as_posix()
            assert f"builder/templates/{rel}" in names
    for weights in (ROOT / "data" / "demo").glob("*.safetensors"):
        assert f"builder/demo_weights/{weights.name}" in names
    assert "builder/color_data/w2color.npy" in names  # the w2c table, with its license notice
    assert "builder/color_data/README.md" in names
    assert "builder/cli/__init__.py" in names and "builder/datasets/probe.py" in names


@pytest.mark.slow
def test_the_installed_wheel_builds_the_demo(wheel, tmp_path):
    """A fresh venv with only the wheel of unitdissect (its dependencies borrowed from this
    environment, so nothing is downloaded) builds the complete demo site from an empty folder."""
    venv_dir = tmp_path / "venv"
    venv.create(venv_dir, with_pip=False)
    python = venv_dir / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                   "print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    # plain paths: .pth files inside them (this checkout's editable install) are not run
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    where = subprocess.run([str(python), "-c", "import builder; print(builder.__file__)"],
                           cwd=workspace, check=True, capture_output=True, text=True).stdout
    assert Path(where.strip()).is_relative_to(venv_dir)
    done = subprocess.run([str(venv_dir / "bin" / "unitdissect"), "build"],
                          cwd=workspace, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    site = workspace / "site"
    for page in ("index.html", "classifier/features.conv5_3/unit-0000.html",
                 "classes/index.html", "generator/generator/layer5.html",
                 "generator/generator/layer5/ablation-sky.png", "static/plotly.min.js"):
        assert (site / page).is_file(), page
    manifest = json.loads((workspace / "runs" / "build-manifest.json").read_text())
    assert set(manifest["stages"]) == {"dataset", "dissect:classifier",
                                       "ablate:classifier:features.conv5_3", "gan:generator",
                                       "render"}
    # a published site and its runs name no path of the machine that built them
    for path in list(site.rglob("*.html")) + list((workspace / "runs").rglob("*.json")):
        for prefix in (str(tmp_path), str(venv_dir), str(Path.home())):
            assert prefix not in path.read_text(errors="replace"), (path, prefix)

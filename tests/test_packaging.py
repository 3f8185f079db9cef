"""The wheel carries every package, the site's templates and the demo weights."""

from __future__ import annotations

import subprocess
import sys
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


@pytest.mark.slow
def test_wheel_contains_templates_and_weights(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("unitdissect-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates").rglob("*"):
        if template.is_file():
            rel = template.relative_to(ROOT / "templates").as_posix()
            assert f"builder/templates/{rel}" in names
    for weights in (ROOT / "data" / "demo").glob("*.safetensors"):
        assert f"builder/demo_weights/{weights.name}" in names
    assert "builder/cli/__init__.py" in names and "builder/datasets/probe.py" in names

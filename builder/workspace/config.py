"""The workspace config (``unitdissect.toml``): parsed once, validated with every problem reported.

See docs/workspace.md for the keys. Without a config file, ``DEMO_CONFIG`` applies: the toy
world, the demo classifier (dissection and ablation) and the demo generator.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_NAME = "unitdissect.toml"


@dataclass
class DatasetConfig:
    """The probe dataset: source specs and build options."""

    sources: list[str] = field(default_factory=lambda: ["toyworld"])
    image_size: int | None = None
    mask_size: int | None = None
    min_frequency: int = 10
    val_fraction: float = 0.2


@dataclass
class DissectConfig:
    """One model to dissect: ``runs/<name>/``."""

    name: str = ""
    model: str = ""
    layers: list[str] = field(default_factory=list)
    weights: str | None = None
    dataset: str | None = None  # default: the workspace dataset
    quantile: float = 0.005
    iou_threshold: float = 0.04
    threshold_on: str = "upsampled"
    category_aware: bool = True
    batch_size: int = 64
    split: str = "all"
    topk: int = 12
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass
class AblateConfig:
    """An ablation sweep of one layer of a dissected classifier."""

    run: str = ""  # the name of a [[dissect]] entry
    layer: str = ""
    rank_split: str = "train"
    eval_split: str = "val"
    batch_size: int = 128


@dataclass
class GanConfig:
    """A generator to dissect and intervene on: ``runs/<name>/generator/``."""

    name: str = ""
    model: str = ""
    layers: list[str] = field(default_factory=list)
    segmenter: str = "demo:segmenter"
    weights: str | None = None
    samples: int = 1000
    concepts: list[str] = field(default_factory=list)  # default: the most frequent ones
    batch_size: int = 32


@dataclass
class SiteConfig:
    """Where the site goes and what it is called."""

    out: str = "site"
    title: str = "unitdissect"


@dataclass
class WorkspaceConfig:
    """The whole workspace config."""

    path: Path | None = None  # the file, or None for the built-in demo
    name: str = "demo"
    seed: int = 0
    device: str = "auto"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    dissect: list[DissectConfig] = field(default_factory=list)
    ablate: list[AblateConfig] = field(default_factory=list)
    gan: list[GanConfig] = field(default_factory=list)
    site: SiteConfig = field(default_factory=SiteConfig)


DEMO_CONFIG = """\
# The demo: the toy world and the demo scene classifier, dissected layer by layer.
name = "demo"
seed = 0

[dataset]
sources = ["toyworld:n=1000"]

[[dissect]]
name = "classifier"
model = "demo:classifier"
layers = ["features.conv3_2", "features.conv4_1", "features.conv5_1", "features.conv5_3"]

[site]
title = "unitdissect demo: the toy world"
"""

_SECTIONS = {"dataset": DatasetConfig, "dissect": DissectConfig, "ablate": AblateConfig,
             "gan": GanConfig, "site": SiteConfig}
_CHOICES = {"device": ("auto", "cpu", "cuda", "mps"), "split": ("all", "train", "val"),
            "threshold_on": ("upsampled", "raw"), "rank_split": ("train", "val", "all"),
            "eval_split": ("train", "val", "all")}
_REQUIRED = {DissectConfig: ("name", "model", "layers"), AblateConfig: ("run", "layer"),
             GanConfig: ("name", "model", "layers")}


def _line_of(text: str, section: str | None, index: int | None, key: str) -> int | None:
    """The line where ``key`` is set in ``[section]`` (the ``index``-th ``[[section]]``), else
    the line of that section's header."""
    header = re.compile(r"^\s*\[\[?\s*([\w.-]+)\s*\]\]?\s*(#.*)?$")
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
    current, seen, section_line = None, {}, None
    for n, line in enumerate(text.splitlines(), start=1):
        m = header.match(line)
        if m:
            current = m.group(1)
            seen[current] = seen.get(current, -1) + 1
            if current == section and (index is None or seen[current] == index):
                section_line = n
            continue
        here = current == section and (index is None or seen.get(current) == index)
        if here and key_re.match(line):
            return n
    return section_line


def _type_ok(value: Any, annotation: str) -> bool:
    kinds = {"int": int, "float": (int, float), "str": str, "bool": bool}
    options = [a.strip() for a in annotation.split("|")]
    for opt in options:
        if opt == "None" and value is None:
            return True
        if opt.startswith("list["):
            inner = kinds[opt[5:-1]]
            if isinstance(value, list) and all(
                    isinstance(v, inner) and (inner is bool or not isinstance(v, bool))
                    for v in value):
                return True
        elif opt in kinds:
            if isinstance(value, bool) and opt != "bool":
                continue
            if isinstance(value, kinds[opt]):
                return True
    return False


def _build(cls, data: dict, where: tuple[str | None, int | None], text: str,
           source: str, problems: list[str]):
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in data.items():
        line = _line_of(text, where[0], where[1], key)
        at = f"{source}:{line}" if line else source
        label = f"{where[0]}.{key}" if where[0] else key
        if key not in known or key == "path":
            problems.append(f"{at}: unknown key {label!r}; expected one of "
                            f"{', '.join(k for k in known if k != 'path')}")
            continue
        annotation = str(known[key].type)
        if not _type_ok(value, annotation):
            problems.append(f"{at}: {label} = {value!r}: expected {annotation}")
            continue
        if key in _CHOICES and value not in _CHOICES[key]:
            problems.append(f"{at}: {label} = {value!r}: expected one of "
                            f"{', '.join(_CHOICES[key])}")
            continue
        values[key] = value
    for key in _REQUIRED.get(cls, ()):
        if not data.get(key):
            line = _line_of(text, where[0], where[1], key)
            at = f"{source}:{line}" if line else source
            problems.append(f"{at}: [[{where[0]}]] #{(where[1] or 0) + 1} needs {key!r}")
    return cls(**values)


def parse_config(text: str, source: str = CONFIG_NAME, path: Path | None = None) -> WorkspaceConfig:
    """Parse and validate a config; raise one ConfigError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None
    problems: list[str] = []
    top = {k: v for k, v in data.items() if k not in _SECTIONS}
    config = _build(WorkspaceConfig, top, (None, None), text, source, problems)
    config.path = path
    for section, cls in _SECTIONS.items():
        if section not in data:
            continue
        value = data[section]
        if cls in (DatasetConfig, SiteConfig):
            if not isinstance(value, dict):
                problems.append(f"{source}: [{section}] must be a table")
                continue
            setattr(config, section, _build(cls, value, (section, None), text, source,
                                            problems))
        else:
            if not isinstance(value, list):
                problems.append(f"{source}: {section} must be written [[{section}]]")
                continue
            setattr(config, section, [_build(cls, v, (section, i), text, source, problems)
                                      for i, v in enumerate(value)])
    names = [d.name for d in config.dissect] + [g.name for g in config.gan]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{source}: the run name {dup!r} is used twice")
    for i, a in enumerate(config.ablate):
        if a.run and a.run not in [d.name for d in config.dissect]:
            line = _line_of(text, "ablate", i, "run")
            problems.append(f"{source}:{line}: ablate.run = {a.run!r}: expected the name of a "
                            f"[[dissect]] entry ({', '.join(d.name for d in config.dissect)})")
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} problems in the config:\n  " + "\n  ".join(problems))
    return config


def load_config(workspace: Path) -> WorkspaceConfig:
    """The workspace's ``unitdissect.toml``, or the demo config when there is none."""
    path = Path(workspace) / CONFIG_NAME
    if path.is_file():
        return parse_config(path.read_text(encoding="utf-8"), str(path), path)
    return parse_config(DEMO_CONFIG, "<demo config>")

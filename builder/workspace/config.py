"""The workspace config (``unitdissect.toml``): parsed once, validated with every problem reported.

See docs/workspace.md for the keys. Without a config file, ``DEMO_CONFIG`` applies: the toy
world and the demo classifier (dissection, and ablation of its last conv layer), and the demo
generator (dissection, ablation and insertion).
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
    min_frequency: int | None = None  # None: all of a Broden release, else 10 (as Broden)
    val_fraction: float = 0.2


@dataclass
class DissectConfig:
    """One model to dissect: ``runs/<name>/``."""

    name: str = ""
    model: str = ""
    layers: list[str] = field(default_factory=list)
    weights: str | None = None
    dataset: str | None = None  # default: the workspace dataset
    # the method's choices: unset ones take the preset's (docs/method.md, section 8)
    method: str = "unitdissect"
    quantile: float | None = None
    iou_threshold: float | None = None
    threshold_on: str | None = None
    upsampling: str | None = None
    union: str | None = None
    category_aware: bool | None = None
    batch_size: int = 64
    split: str = "all"
    topk: int = 12
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass
class AblateConfig:
    """An ablation sweep of one dissected layer of a classifier: ``runs/<run>/ablation/<layer>/``.

    The model, its weights and normalisation are the [[dissect]] entry's; the options are
    ``AblationOptions``' (docs/ablation.md), with the same defaults.
    """

    run: str = ""  # the name of a [[dissect]] entry
    layer: str = ""  # one of that entry's layers
    classes: str | None = None  # file of class names (output order); default: the model's
    rank_split: str = "train"
    eval_split: str = "val"
    batch_size: int = 64
    strategy: str = "auto"
    random_draws: int = 10
    top_k: int = 4
    science_k: int = 5
    adversarial: int = 2
    pgd_steps: int = 40
    cw_steps: int = 100


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
    num_concepts: int = 5
    counts: list[int] | None = None  # values of N ablated; default 0, 1, ..., max_units
    max_units: int = 30
    ablation_samples: int | None = None  # default: every sample
    insertion: bool = True
    insertion_units: int = 20
    insertion_samples: int = 64
    insertion_windows: int = 8
    science_units: int = 20
    gallery_size: int = 8
    quantile: float = 0.005
    iou_threshold: float = 0.04
    topk: int = 12
    batch_size: int = 32
    truncation_psi: float = 1.0  # StyleGAN's truncation trick (1: off)


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
# The demo: the toy world and the demo scene classifier, dissected layer by layer and ablated;
# the demo scene generator, dissected, ablated and inserted into.
name = "demo"
seed = 0

[dataset]
sources = ["toyworld:n=1000"]

[[dissect]]
name = "classifier"
model = "demo:classifier"
layers = ["features.conv3_2", "features.conv4_1", "features.conv5_1", "features.conv5_3"]

# Switch off the units of the last conv layer one by one and by class: the class pages'
# ablation curves. Small settings keep the demo fast; the defaults are in docs/ablation.md.
[[ablate]]
run = "classifier"
layer = "features.conv5_3"
random_draws = 5
adversarial = 0

# The demo generator, dissected over 500 of its own samples labelled by the demo segmenter;
# the units that match its three most frequent objects are switched off (ablation) and on
# (insertion). Small settings keep the demo fast; the defaults are in docs/generator.md.
[[gan]]
name = "generator"
model = "demo:generator"
layers = ["layer4", "layer5"]
segmenter = "demo:segmenter"
samples = 500
num_concepts = 3
counts = [0, 1, 2, 5, 10, 20]
ablation_samples = 100
insertion_samples = 8
insertion_windows = 4
gallery_size = 6

[site]
title = "unitdissect demo: the toy world"
"""

_SECTIONS = {"dataset": DatasetConfig, "dissect": DissectConfig, "ablate": AblateConfig,
             "gan": GanConfig, "site": SiteConfig}
_CHOICES = {"device": ("auto", "cpu", "cuda", "mps"), "split": ("all", "train", "val"),
            "threshold_on": ("upsampled", "raw"), "rank_split": ("train", "val", "all"),
            # the presets and choices of builder/dissect/method.py (kept light: no torch here)
            "method": ("unitdissect", "netdissect", "pnas"),
            "upsampling": ("bilinear", "bilinear-zeros"), "union": ("category", "overlap", "all"),
            "eval_split": ("train", "val", "all"), "strategy": ("auto", "split", "graft", "full")}
_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
#: The smallest value of integer keys (any section).
_MINIMUM = {"seed": 0, "batch_size": 1, "topk": 1, "min_frequency": 0, "image_size": 8,
            "mask_size": 4, "random_draws": 1, "top_k": 1, "science_k": 1, "adversarial": 0,
            "pgd_steps": 1, "cw_steps": 1, "samples": 1, "num_concepts": 1, "max_units": 1,
            "ablation_samples": 1, "insertion_units": 1, "insertion_samples": 1,
            "insertion_windows": 1, "science_units": 1, "gallery_size": 0}
_REQUIRED = {DissectConfig: ("name", "model", "layers"), AblateConfig: ("run", "layer"),
             GanConfig: ("name", "model", "layers")}


def _line_of(text: str, section: str | None, index: int | None, key: str) -> int | None:
    """The line where ``key`` is set in ``[section]`` (the ``index``-th ``[[section]]``).

    Falls back to the section's header line, then to a top-level ``section = {...}`` or
    ``section.key = ...`` line (inline and dotted tables); for a top-level key (``section``
    None) a ``[key]`` or ``[[key]]`` header counts too. None when nothing matches.
    """
    header = re.compile(r"^\s*\[\[?\s*([\w.-]+)\s*\]\]?\s*(#.*)?$")
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
    current, seen, section_line, fallback = None, {}, None, None
    for n, line in enumerate(text.splitlines(), start=1):
        m = header.match(line)
        if m:
            current = m.group(1)
            seen[current] = seen.get(current, -1) + 1
            if current == section and (index is None or seen[current] == index) \
                    and section_line is None:
                section_line = n
            if section is None and current == key and fallback is None:
                fallback = n
            continue
        here = current == section and (index is None or seen.get(current) == index)
        if here and key_re.match(line):
            return n
        if current is None and section is not None and fallback is None and re.match(
                rf"^\s*{re.escape(section)}\s*(=|\.\s*{re.escape(key)}\s*=)", line):
            fallback = n
    return section_line or fallback


def _at(source: str, line: int | None) -> str:
    return f"{source}:{line}" if line else source


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
        at = _at(source, _line_of(text, where[0], where[1], key))
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
        if key in _MINIMUM and isinstance(value, int) and value < _MINIMUM[key]:
            problems.append(f"{at}: {label} = {value!r}: expected an integer >= "
                            f"{_MINIMUM[key]}")
            continue
        values[key] = value
    for key in _REQUIRED.get(cls, ()):
        if not data.get(key):
            at = _at(source, _line_of(text, where[0], where[1], key))
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
        at = _at(source, _line_of(text, None, None, section))
        if cls in (DatasetConfig, SiteConfig):
            if not isinstance(value, dict):
                problems.append(f"{at}: {section} must be a table: [{section}]")
                continue
            setattr(config, section, _build(cls, value, (section, None), text, source,
                                            problems))
        else:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                problems.append(f"{at}: {section} must be tables written [[{section}]]")
                continue
            setattr(config, section, [_build(cls, v, (section, i), text, source, problems)
                                      for i, v in enumerate(value)])
    _check_references(config, text, source, problems)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} problems in the config:\n  " + "\n  ".join(problems))
    return config


def _check_references(config: WorkspaceConfig, text: str, source: str,
                      problems: list[str]) -> None:
    """Run names are unique; each [[ablate]] names a [[dissect]] entry and one of its layers."""
    seen: dict[str, int] = {}
    for section, entries in (("dissect", config.dissect), ("gan", config.gan)):
        for i, entry in enumerate(entries):
            if not entry.name:
                continue
            if not _RUN_NAME.fullmatch(entry.name) or ".." in entry.name:
                at = _at(source, _line_of(text, section, i, "name"))
                problems.append(f"{at}: {section}.name = {entry.name!r}: expected a folder name "
                                "(letters, digits, '_', '-', '.')")
            elif entry.name in seen:
                at = _at(source, _line_of(text, section, i, "name"))
                problems.append(f"{at}: {section}.name = {entry.name!r}: the run name is "
                                f"already used on line {seen[entry.name]}")
            else:
                seen[entry.name] = _line_of(text, section, i, "name") or 0
    dissects = {d.name: d for d in config.dissect}
    pairs: set[tuple[str, str]] = set()
    for i, a in enumerate(config.ablate):
        if not a.run:
            continue
        if a.run not in dissects:
            at = _at(source, _line_of(text, "ablate", i, "run"))
            problems.append(f"{at}: ablate.run = {a.run!r}: expected the name of a "
                            f"[[dissect]] entry ({', '.join(dissects) or 'there is none'})")
            continue
        layers = dissects[a.run].layers
        if a.layer and a.layer not in layers:
            at = _at(source, _line_of(text, "ablate", i, "layer"))
            problems.append(f"{at}: ablate.layer = {a.layer!r}: expected one of the layers of "
                            f"[[dissect]] {a.run!r} ({', '.join(layers)}); the site shows a "
                            "layer's ablation beside its dissection")
        elif (a.run, a.layer) in pairs:
            at = _at(source, _line_of(text, "ablate", i, "layer"))
            problems.append(f"{at}: [[ablate]] run {a.run!r}, layer {a.layer!r} is given twice")
        pairs.add((a.run, a.layer))


def load_config(workspace: Path) -> WorkspaceConfig:
    """The workspace's ``unitdissect.toml``, or the demo config when there is none."""
    path = Path(workspace) / CONFIG_NAME
    if path.is_file():
        return parse_config(path.read_text(encoding="utf-8"), str(path), path)
    return parse_config(DEMO_CONFIG, "<demo config>")

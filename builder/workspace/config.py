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
#: Seeds go to ``torch.manual_seed`` (at most 2**64 - 1, and ``seed + 1`` is used too) and
#: numpy's SeedSequence: a non-negative 64-bit signed integer fits both.
MAX_SEED = 2**63 - 1


def seed_problem(value: object) -> str | None:
    """What is wrong with a seed (the CLI's ``--seed`` and the config's ``seed``), or None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        return "expected an integer from 0 to 2**63 - 1"
    return None


@dataclass
class DatasetConfig:
    """The probe dataset: source specs and build options."""

    sources: list[str] = field(default_factory=lambda: ["toyworld"])
    image_size: int | None = None
    mask_size: int | None = None
    min_frequency: int | None = None  # None: all of a Broden release, else 10 (as Broden)
    val_fraction: float = 0.2
    segmenter: str | None = None  # labels images:PATH sources (dataset build --segmenter)


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
    #: the text and file name it was parsed from, so later checks name file:line (no field:
    #: it is neither compared nor written to the build manifest)
    _origin = ("", CONFIG_NAME)

    def where(self, section: str | None, index: int | None, key: str) -> str:
        """``file:line`` where ``key`` of ``[section]`` (its ``index``-th table) is set."""
        text, source = self._origin
        return _at(source, _line_of(text, section, index, key))


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
_CHOICES = {"split": ("all", "train", "val"),
            "threshold_on": ("upsampled", "raw"), "rank_split": ("train", "val", "all"),
            # the presets and choices of builder/dissect/method.py (kept light: no torch here)
            "method": ("unitdissect", "netdissect", "pnas"),
            "upsampling": ("bilinear", "bilinear-zeros"), "union": ("category", "overlap", "all"),
            "eval_split": ("train", "val", "all"), "strategy": ("auto", "split", "graft", "full")}
_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
#: The devices ``--device`` takes (builder/dissect/runner.py, ``input_problems``; the tests
#: hold the two to the same answers), without importing torch.
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?|mps")
#: The smallest value of integer keys (any section).
_MINIMUM = {"batch_size": 1, "topk": 1, "min_frequency": 0, "image_size": 8,
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
        why = _value_problem(key, value)
        if why:
            problems.append(f"{at}: {label} = {value!r}: {why}")
            continue
        values[key] = value
    for key in _REQUIRED.get(cls, ()):
        if not data.get(key):
            at = _at(source, _line_of(text, where[0], where[1], key))
            problems.append(f"{at}: [[{where[0]}]] #{(where[1] or 0) + 1} needs {key!r}")
    return cls(**values)


def _value_problem(key: str, value: Any) -> str | None:
    """What is wrong with a well-typed value of ``key`` beyond its type and minimum, or None."""
    if key == "seed":
        return seed_problem(value)
    if key == "device" and not _DEVICE.fullmatch(value):
        return "expected auto, cpu, cuda, cuda:N or mps"
    if key == "sources" and not value:
        return "expected at least one source spec, e.g. [\"toyworld\"]"
    if key == "layers":
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:  # each layer is one folder of the run: a repeat would be dissected twice
            return f"{', '.join(map(repr, twice))} is given twice"
    return None


def parse_config(text: str, source: str = CONFIG_NAME, path: Path | None = None, *,
                 check_options: bool = False) -> WorkspaceConfig:
    """Parse and validate a config; raise one ConfigError listing every problem.

    ``check_options`` adds what the commands' option classes refuse (``load_config`` does;
    it imports torch, which a config read only for its paths does without).
    """
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
    config._origin = (text, source)
    _check_references(config, text, source, problems)
    if check_options:
        _check_options(config, problems)
    problems.sort(key=_line_number)  # in the file's order, whichever check found them
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


def _line_number(problem: str) -> int:
    """The line a ``file:line: ...`` problem names (0 when it names none)."""
    m = re.match(r"[^\n]*?:(\d+): ", problem)
    return int(m.group(1)) if m else 0


#: ``--flag`` (or ``key``) at the start of one problem of the option classes' messages.
_OPTION_PROBLEM = re.compile(r"(?:--)?([a-z][a-z0-9_-]*) (.*)", re.S)


def _check_options(config: WorkspaceConfig, problems: list[str]) -> None:
    """What the commands' own option classes refuse (ranges, finite numbers, presets), the
    same checks as their flags', each reported at its key in the config."""
    from dataclasses import replace

    from . import pipeline

    # the top-level seed and device are checked once (_value_problem), not again per entry;
    # an [[ablate]] entry's normalisation is its [[dissect]] entry's, checked there
    plain = replace(config, seed=0, device="cpu")
    checks = [("dissect", i, d, lambda d=d: pipeline._dissect_options(plain, d))
              for i, d in enumerate(config.dissect)]
    checks += [("ablate", i, a, lambda a=a: pipeline._ablation_options(plain, a, None))
               for i, a in enumerate(config.ablate)]
    checks += [("gan", i, g, lambda g=g: pipeline._gan_options(plain, g, name_entry=False))
               for i, g in enumerate(config.gan)]
    for section, index, entry, make in checks:
        try:
            make()
        except ConfigError as e:
            for part in re.split(r"; (?=--|[a-z_]+ must )", str(e)):
                problems.append(_located(config, section, index, part, entry))


def _located(config: WorkspaceConfig, section: str, index: int, problem: str,
             entry: Any) -> str:
    """An option class's problem (``--quantile must be ...``) as ``file:line: key = value:
    what``, at the key it names when the config has it, else at the entry."""
    m = _OPTION_PROBLEM.fullmatch(problem.strip())
    key = m.group(1).replace("-", "_") if m else ""
    if not m or key not in {f.name for f in fields(type(entry))} or key == "path":
        at = config.where(section, index, key)  # not a key of the entry: its header line
        return f"{at}: [[{section}]] #{index + 1}: {problem.lstrip('-')}"
    what = m.group(2)
    what = re.sub(r",? got .*$", "", what, flags=re.S) if what.startswith("must") else \
        problem.lstrip("-")
    return (f"{config.where(section, index, key)}: {section}.{key} = {getattr(entry, key)!r}: "
            f"{what}")


def load_config(workspace: Path) -> WorkspaceConfig:
    """The workspace's ``unitdissect.toml``, or the demo config when there is none."""
    path = Path(workspace) / CONFIG_NAME
    if path.is_file():
        return parse_config(path.read_text(encoding="utf-8"), str(path), path,
                            check_options=True)
    return parse_config(DEMO_CONFIG, "<demo config>", check_options=True)

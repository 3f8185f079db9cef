"""``unitdissect build``: dataset -> dissect -> ablate -> gan -> render, each cached.

A stage's fingerprint chains the fingerprints of its inputs with its own options; a stage whose
fingerprint matches the one recorded after its last success is skipped. Stages that write runs
resume on their own (the dissection runner checkpoints, the ablation runner skips its finished
sub-stages), so an interrupted build continues from where it stopped. ``dry_run`` validates a
config offline. Relative paths in the config are relative to the workspace folder.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..dissect.manifest import model_record
from ..errors import ConfigError, StorageError, storage_cause, storage_error
from ..fingerprint import fingerprint
from ..paths import portable_path
from .config import WorkspaceConfig

#: Bumped when a stage's outputs change for the same inputs.
PIPELINE_VERSION = 1
STATE_FILE = Path("runs") / ".stages.json"
MANIFEST_FILE = Path("runs") / "build-manifest.json"


@dataclass
class StageReport:
    """How one stage went."""

    name: str
    seconds: float
    cached: bool
    detail: str = ""


@dataclass
class BuildSummary:
    """What a build did, stage by stage, and where the site is."""

    stages: list[StageReport] = field(default_factory=list)
    site: Path | None = None
    manifest: Path | None = None

    def table(self) -> str:
        """A plain-text table: stage, time, cached or built, detail."""
        width = max([28, *(len(s.name) for s in self.stages)])
        rows = [f"  {s.name:<{width}} {s.seconds:7.1f}s  {'cached' if s.cached else 'built ':<6}"
                f"  {s.detail}" for s in self.stages]
        total = sum(s.seconds for s in self.stages)
        rows.append(f"  {'total':<{width}} {total:7.1f}s")
        return "\n".join(rows)


class _State:
    """The fingerprints of the stages that last succeeded, kept in runs/.stages.json."""

    def __init__(self, workspace: Path) -> None:
        self.path = workspace / STATE_FILE
        try:
            self.data: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def fresh(self, stage: str, fp: str, *outputs: Path) -> bool:
        return self.data.get(stage) == fp and all(p.exists() for p in outputs)

    def done(self, stage: str, fp: str) -> None:
        from ..io import write_json

        self.data[stage] = fp
        write_json(self.path, self.data)


def _stage(summary: BuildSummary, state: _State, name: str, fp: str, outputs: list[Path],
           work: Callable[[], str], force: bool, log: Callable[[str], None]) -> None:
    if not force and state.fresh(name, fp, *outputs):
        summary.stages.append(StageReport(name, 0.0, True, "up to date"))
        log(f"[{name}] up to date")
        return
    log(f"[{name}] ...")
    started = time.perf_counter()
    try:
        detail = work()
    except OSError as e:  # a write outside builder.io that names no file: name the stage's
        cause = storage_cause(e)
        if cause is None or cause.filename or isinstance(cause, StorageError):
            raise
        where = outputs[0].parent if outputs else state.path.parent.parent
        raise storage_error(cause, where) from e
    state.done(name, fp)
    summary.stages.append(StageReport(name, time.perf_counter() - started, False, detail))


def _templates_fingerprint() -> str:
    from ..report.render import TEMPLATES_DIR

    files = sorted(p for p in Path(TEMPLATES_DIR).rglob("*") if p.is_file())
    return fingerprint([(str(p.relative_to(TEMPLATES_DIR)), p.stat().st_size,
                         p.stat().st_mtime_ns) for p in files])


@dataclass
class DryRunReport:
    """What ``--dry-run`` checked, and what a build will need that is not here yet."""

    checked: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)  # downloads, local folders, weights files
    notes: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # specs that would import Python


def _local(root: Path, path: str | Path) -> Path:
    """A path of the config: relative ones are relative to ``root`` (the workspace folder)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def _model_spec(root: Path, text: str):
    """The parsed model spec, a ``file.py:CALLABLE`` one resolved against ``root``."""
    from ..models.spec import ModelSpec, parse_spec

    parsed = parse_spec(text)
    if parsed.source == "file":
        return ModelSpec("file", str(_local(root, parsed.target)), parsed.attr, parsed.text)
    return parsed


def _source_spec(root: Path, spec: str) -> str:
    """A dataset spec with its local folders (``broden:``, ``images:``, a bare Broden
    directory, ``hf:``'s ``path=`` and ``labels=``) resolved against ``root``; other specs
    unchanged."""
    from urllib.parse import parse_qsl, urlencode

    kind, colon, rest = spec.partition(":")
    if colon and kind == "images" and "?" in rest:  # images:DIR?max_pixels=N
        folder, _, query = rest.partition("?")
        return f"images:{_local(root, folder)}?{query}"
    if colon and kind in ("broden", "images") and rest:
        return f"{kind}:{_local(root, rest)}"
    if colon and kind == "hf" and "?" in rest:
        body, _, query = rest.partition("?")
        pairs = [(k, str(_local(root, v)) if k in ("path", "labels") else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        return f"hf:{body}?{urlencode(pairs, safe='/:@')}"
    if not colon and spec != "toyworld" and (_local(root, spec) / "index.csv").is_file():
        return str(_local(root, spec))
    return spec


def _dissect_options(config: WorkspaceConfig, entry):
    from ..dissect.runner import DissectOptions

    return DissectOptions(method=entry.method, quantile=entry.quantile,
                          iou_threshold=entry.iou_threshold, threshold_on=entry.threshold_on,
                          upsampling=entry.upsampling, union=entry.union,
                          category_aware=entry.category_aware, split=entry.split,
                          batch_size=entry.batch_size, device=config.device,
                          mean=tuple(entry.mean) if entry.mean else None,
                          std=tuple(entry.std) if entry.std else None, seed=config.seed,
                          topk=entry.topk)


def _ablation_options(config: WorkspaceConfig, entry, dissect_entry):
    """The [[ablate]] entry's AblationOptions; normalisation from its [[dissect]] entry."""
    from ..intervene import AblationOptions

    # the dissection's normalisation, its preset's included (None: the options alone)
    dissection = _dissect_options(config, dissect_entry) if dissect_entry else None
    return AblationOptions(
        rank_split=entry.rank_split, eval_split=entry.eval_split, batch_size=entry.batch_size,
        device=config.device, seed=config.seed, mean=dissection and dissection.mean,
        std=dissection and dissection.std,
        strategy=entry.strategy,
        random_draws=entry.random_draws, top_k=entry.top_k, science_k=entry.science_k,
        adversarial=entry.adversarial, pgd_steps=entry.pgd_steps, cw_steps=entry.cw_steps)


def _gan_options(config: WorkspaceConfig, entry, cache_dir: Path | None = None,
                 name_entry: bool = True):
    """The [[gan]] entry's GanOptions (docs/generator.md); its errors name the entry
    (``name_entry``; the config's own check names the file, line and key instead)."""
    from ..generator import GanOptions

    try:
        return GanOptions(
            seed=config.seed, batch_size=entry.batch_size, device=config.device,
            concepts=tuple(entry.concepts) or None, num_concepts=entry.num_concepts,
            max_units=entry.max_units,
            ablation_counts=tuple(entry.counts) if entry.counts is not None else None,
            ablation_samples=entry.ablation_samples, insertion=entry.insertion,
            insertion_units=entry.insertion_units, insertion_samples=entry.insertion_samples,
            insertion_windows=entry.insertion_windows, science_units=entry.science_units,
            gallery_size=entry.gallery_size, quantile=entry.quantile,
            iou_threshold=entry.iou_threshold, topk=entry.topk,
            truncation_psi=entry.truncation_psi,
            cache_dir=str(cache_dir) if cache_dir is not None else None)
    except ConfigError as e:
        if not name_entry:
            raise
        raise ConfigError(f"[[gan]] {entry.name}: {e}", hint=e.hint) from None


def _generator_spec(root: Path, text: str):
    """A [[gan]] model spec with its files resolved against ``root``: ``progan:FILE`` and
    ``stylegan2:FILE`` stay strings (the adapters parse them), others become ModelSpecs."""
    kind, colon, target = text.partition(":")
    if colon and kind in ("progan", "stylegan2") and target:
        return f"{kind}:{_local(root, target)}"
    return _model_spec(root, text)


def _segmenter_spec(root: Path, spec: str) -> str:
    """A segmenter spec whose ``hf:PATH`` is a local folder, resolved against ``root``."""
    kind, colon, rest = spec.partition(":")
    if colon and kind == "hf" and rest and _local(root, rest).is_dir():
        return f"hf:{_local(root, rest)}"
    return spec


def _class_names(root: Path, entry, model) -> list[str]:
    """The classifier's class names: the entry's ``classes`` file, else the model's own."""
    if entry.classes:
        path = _local(root, entry.classes)
        try:
            names = [n.strip() for n in path.read_text(encoding="utf-8").splitlines()]
        except OSError as e:
            raise ConfigError(f"[[ablate]] {entry.run}/{entry.layer}: classes = "
                              f"{entry.classes!r}: cannot read {path}: {e.strerror or e}") from None
        names = [n for n in names if n]
        if not names:
            raise ConfigError(f"[[ablate]] {entry.run}/{entry.layer}: {path} lists no class")
        return names
    names = getattr(model.module, "class_names", None)
    if not names:
        raise ConfigError(f"[[ablate]] {entry.run}/{entry.layer}: {model.spec} does not name "
                          "its classes",
                          hint="add classes = \"FILE\" (one class name per line, in output order)")
    return [str(n) for n in names]


# --------------------------------------------------------------------------- dry run


def dry_run(config: WorkspaceConfig, workspace: Path | None = None) -> DryRunReport:
    """Validate a config offline: every spec parses, every layer exists on the model (random
    weights unless shipped), every option is valid, the device is on this machine. Nothing is
    downloaded, no dataset is opened except the toy world, and no code of the config's runs:
    a model spec that would import Python (``file.py:CALLABLE``, ``module:CALLABLE``) is
    parsed and its file or module found, and listed in ``unchecked``; what a build will fetch
    or read is listed in ``needs``.

    ``workspace`` (default: the config file's folder, else the current one) is what relative
    paths in the config are relative to.
    """
    from ..datasets import default_build_options
    from ..models import demo_registry  # noqa: F401 - registers the demo models

    if workspace is None:
        workspace = config.path.parent if config.path else Path.cwd()
    workspace = Path(workspace).resolve()
    report = DryRunReport()
    check_machine(config)
    d = config.dataset
    if config.dissect:
        _check_dataset_segmenter(config)
        if d.segmenter and not any(s.startswith("images:") for s in d.sources):
            report.notes.append(f"[dataset] segmenter {d.segmenter} labels images: sources; "
                                "there is none")
        sources = [_check_source(workspace, spec, report, d.segmenter) for spec in d.sources]
        default_build_options(sources, image_size=d.image_size, mask_size=d.mask_size,
                              min_frequency=d.min_frequency, val_fraction=d.val_fraction)
    else:
        report.notes.append("no [[dissect]] entry: the [dataset] is not built")
    models = {}
    for entry in config.gan:
        _check_generator(workspace, config, entry, report)
    for entry in config.dissect:
        model = _checked_model(workspace, config, "dissect", entry, report)
        if model is not None:
            models[entry.name] = model
            shipped = " (shipped weights)" if model.weights is not None else ""
            report.checked.append(f"{entry.name}: {entry.model}{shipped}, layers "
                                  f"{', '.join(entry.layers)}")
        if entry.weights:
            weights = _local(workspace, entry.weights)
            if not weights.is_file():
                report.needs.append(f"{entry.name}: the weights file {weights}")
    for entry in config.dissect:
        _dissect_options(config, entry)
    dissects = {e.name: e for e in config.dissect}
    for entry in config.ablate:
        _ablation_options(config, entry, dissects[entry.run])
        where = f"ablate {entry.run}/{entry.layer}"
        if entry.classes and not _local(workspace, entry.classes).is_file():
            report.needs.append(f"{where}: the class names file "
                                f"{_local(workspace, entry.classes)}")
        elif entry.run in models or entry.classes:
            names = _class_names(workspace, entry, models.get(entry.run))
            report.checked.append(f"{where}: {len(names)} classes")
        else:  # the model's own class names: it would have to be imported
            report.unchecked.append(f"{where}: the class names of {dissects[entry.run].model} "
                                    "(not checked offline: would import Python)")
    for entry in config.gan:
        _gan_options(config, entry)
        _check_segmenter(workspace, entry, report)
    return report


def check_machine(config: WorkspaceConfig) -> None:
    """The config's device is on this machine (``cuda`` needs CUDA); its error names the key."""
    from ..dissect.runner import resolve_device

    try:
        resolve_device(config.device)
    except ConfigError as e:
        why = str(e).partition(": ")[2] or str(e)
        raise ConfigError(f"{config.where(None, None, 'device')}: device = {config.device!r}: "
                          f"{why}", hint="set device = \"auto\" or \"cpu\"") from None


def _checked_model(root: Path, config: WorkspaceConfig, section: str, entry,
                   report: DryRunReport) -> Any:
    """The entry's model with its layers checked, or None when loading it would import
    Python: then only what can be checked without importing it is (``_check_code_spec``)."""
    from ..models import load_model, resolve_layers
    from .confine import imports_python, model_label

    key = f"[[{section}]] model"
    if imports_python(key, entry.model, entry.name, generator=section == "gan"):
        _check_code_spec(root, entry.model, model_label(key, entry.model, entry.name), report)
        return None
    model = load_model(_model_spec(root, entry.model), seed=config.seed)
    resolve_layers(model.module, entry.layers)
    return model


def _check_code_spec(root: Path, text: str, label: str, report: DryRunReport) -> None:
    """What can be checked of a spec that imports Python without importing it: it parses (its
    arguments are literals), its file is there or its top-level module is installed."""
    import importlib.util

    from ..errors import SpecError

    spec = _model_spec(root, text)
    if spec.source == "file":
        path = Path(spec.target)
        if not path.is_file():
            raise SpecError(f"{label}: model file not found: {path}")
        if path.suffix != ".py":
            raise SpecError(f"{label}: model file {path} is not a .py file")
    else:
        top = spec.target.split(".")[0]
        # find_spec of a top-level name only searches the import path: nothing is executed
        if importlib.util.find_spec(top) is None:
            raise SpecError(f"{label}: no module named {top!r}",
                            hint="is the package installed, or is its folder on PYTHONPATH?")
    found = "file found" if spec.source == "file" else "module found"
    report.unchecked.append(f"{label}: not checked offline: would import Python (parsed, "
                            f"{found}; the build imports it and checks the layers)")


def _check_source(workspace: Path, spec: str, report: DryRunReport,
                  segmenter: str | None = None) -> Any:
    """Check one dataset spec without downloading or reading a dataset; return the opened
    toy world, else a stand-in with the source's name (for the build options' defaults).
    ``segmenter`` is ``[dataset] segmenter``, the one that labels ``images:`` folders."""
    from types import SimpleNamespace

    from ..datasets import open_sources
    from ..errors import SpecError

    kind, colon, rest = spec.partition(":")
    if colon and kind == "images":
        _check_images_source(workspace, spec, segmenter, report)
        return SimpleNamespace(name="images", size=None)
    if kind == "toyworld":
        (source,) = open_sources([spec])
        report.checked.append(f"dataset source {spec}")
        return source
    if colon and kind == "hf":
        from ..datasets.sources.hub import ADAPTERS, parse_hub_spec

        name, options = parse_hub_spec(rest)
        if name not in ADAPTERS:
            raise SpecError(f"unknown hub dataset {name!r}",
                            hint=f"hf:NAME with NAME one of {', '.join(ADAPTERS)}")
        if "path" in options:
            local = _local(workspace, options["path"])
            if not local.exists():
                report.needs.append(f"dataset source {spec}: the local copy {local}")
        elif options.get("repo") or ADAPTERS[name].default_repo:
            repo = options.get("repo") or ADAPTERS[name].default_repo
            report.needs.append(f"dataset source {spec}: the hub dataset {repo} (downloaded by "
                                "the build, or read from the local hub cache)")
        else:
            raise SpecError(f"hf:{name}: no public hub copy with these annotations is known; "
                            "give path=DIR (a local copy) or repo=OWNER/NAME")
        report.checked.append(f"dataset source {spec} (parsed, not opened)")
        return SimpleNamespace(name=name, size=None)
    if colon and kind == "broden":
        if not rest:
            raise SpecError("broden: needs a path, e.g. broden:data/broden1_224")
        folder = _local(workspace, rest)
        if not (folder / "index.csv").is_file():
            report.needs.append(f"dataset source {spec}: a Broden directory at {folder}")
        report.checked.append(f"dataset source {spec} (parsed, not opened)")
        return SimpleNamespace(name="broden", size=None)
    if not colon and (_local(workspace, spec) / "index.csv").is_file():
        report.checked.append(f"dataset source {spec} (a Broden directory, not opened)")
        return SimpleNamespace(name="broden", size=None)
    (source,) = open_sources([_source_spec(workspace, spec)])  # the spec's own errors
    report.checked.append(f"dataset source {spec}")
    return source


def _check_dataset_segmenter(config: WorkspaceConfig) -> None:
    """``images:`` sources have ``[dataset] segmenter`` to label them, a registered name
    (nothing is loaded)."""
    from ..datasets.sources.images import list_segmenters

    name = config.dataset.segmenter
    if name is None:
        images = [s for s in config.dataset.sources if s.strip().startswith("images:")]
        if images:
            raise ConfigError(f"{config.where('dataset', None, 'sources')}: dataset.sources: "
                              f"{images[0]!r} needs a segmenter to label its images",
                              hint="add segmenter = \"demo:segmenter\" (or another) to [dataset]")
        return
    known = list_segmenters()
    if name not in known:
        raise ConfigError(f"{config.where('dataset', None, 'segmenter')}: dataset.segmenter = "
                          f"{name!r}: unknown segmenter", hint=f"known: {', '.join(known)}")


def _check_images_source(workspace: Path, spec: str, segmenter: str | None,
                         report: DryRunReport) -> None:
    """An ``images:DIR`` source: the folder is here and ``[dataset] segmenter`` is a known
    segmenter name; no image is read and no segmenter is loaded."""
    from ..errors import SpecError

    rest = spec.partition(":")[2]
    if not rest:
        raise SpecError("images: needs a folder, e.g. images:photos/")
    if segmenter is None:  # the config's own check says so first; a programmatic config
        raise SpecError(f"dataset source {spec!r}: an images source needs a segmenter to "
                        "label it", hint="add segmenter = \"demo:segmenter\" to [dataset]")
    folder = _local(workspace, rest.partition("?")[0])  # images:DIR?OPTIONS
    if not folder.is_dir():
        report.needs.append(f"dataset source {spec}: a folder of images at {folder}")
    report.checked.append(f"dataset source {spec} labelled by {segmenter} (parsed, not opened)")


#: Layer names of ``progan:FILE`` generators (GAN Dissection's layout), checked without the file.
_PROGAN_LAYER = re.compile(r"layer[1-9][0-9]*|output_[0-9]+x[0-9]+")


def _check_generator(root: Path, config: WorkspaceConfig, entry, report: DryRunReport) -> None:
    """A [[gan]] entry's generator: built (random or shipped weights) and its layers checked;
    a checkpoint adapter (``progan:FILE``, ``stylegan2:FILE``) is built from its file when the
    file is here, else only parsed (``progan:`` layer names checked by their pattern)."""
    from ..errors import SpecError
    from ..models import resolve_layers

    kind, colon, target = entry.model.partition(":")
    where = f"{entry.name}: {entry.model}"
    if not (colon and kind in ("progan", "stylegan2")):
        if _checked_model(root, config, "gan", entry, report) is not None:
            report.checked.append(f"{where}, layers {', '.join(entry.layers)}")
        if entry.weights and not _local(root, entry.weights).is_file():
            report.needs.append(f"{entry.name}: the weights file {_local(root, entry.weights)}")
        return
    if not target:
        raise SpecError(f"[[gan]] {entry.name}: {entry.model!r}: give the checkpoint file, "
                        f"e.g. {kind}:generator.pth")
    if entry.weights:
        raise ConfigError(f"[[gan]] {entry.name}: {kind}:FILE is the weights; drop weights = "
                          f"{entry.weights!r}")
    checkpoint = _local(root, target)
    if checkpoint.is_file():
        from ..generator import load_generator

        generator = load_generator(f"{kind}:{checkpoint}")
        resolve_layers(generator.module, entry.layers)
        report.checked.append(f"{where}, layers {', '.join(entry.layers)}")
        return
    report.needs.append(f"{entry.name}: the generator checkpoint {checkpoint}")
    if kind == "progan":
        bad = [layer for layer in entry.layers if not _PROGAN_LAYER.fullmatch(layer)]
        if bad:
            raise ConfigError(f"[[gan]] {entry.name}: {', '.join(map(repr, bad))}: a progan: "
                              "generator's layers are layer1, layer2, ... and output_RxR")
        report.checked.append(f"{where} (parsed; layers {', '.join(entry.layers)} checked by "
                              "name, the depth needs the checkpoint)")
    else:
        report.checked.append(f"{where} (parsed; the layers need the checkpoint)")


def _in_hub_cache(repo: str) -> bool:
    """Whether a hub model's config is in the local hub cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # a malformed repo id: the build's loader reports it
        return False


def _check_segmenter(workspace: Path, entry, report: DryRunReport) -> None:
    """Parse a [[gan]] entry's segmenter spec; nothing is loaded."""
    from ..errors import SpecError
    from ..segmenters import TORCHVISION_SEGMENTERS

    spec = entry.segmenter
    kind, colon, rest = spec.partition(":")
    if spec == "demo:segmenter":
        pass
    elif colon and kind == "torchvision":
        if rest not in TORCHVISION_SEGMENTERS:
            raise SpecError(f"[[gan]] {entry.name}: unknown torchvision segmentation model "
                            f"{rest!r}", hint=f"known: {', '.join(TORCHVISION_SEGMENTERS)}")
        report.notes.append(f"{entry.name}: segmenter {spec} labels the 20 Pascal VOC classes "
                            "and needs a weights file (none is downloaded)")
    elif colon and kind == "hf" and rest:
        if not _local(workspace, rest).is_dir() and not _in_hub_cache(rest):
            report.needs.append(f"{entry.name}: the segmentation model {rest} in a local "
                                f"folder or the local hub cache (huggingface-cli download {rest})")
    else:
        raise SpecError(f"[[gan]] {entry.name}: unknown segmenter spec {spec!r}",
                        hint="use demo:segmenter, torchvision:NAME or hf:PATH")
    report.checked.append(f"{entry.name}: segmenter {spec} (parsed, not loaded)")


# --------------------------------------------------------------------------- build


@dataclass
class _Build:
    """What the stages of one build share."""

    workspace: Path
    root: Path  # relative paths of the config are relative to it
    config: WorkspaceConfig
    summary: BuildSummary
    state: _State
    manifest: dict[str, Any]
    force: bool
    progress: bool
    log: Callable[[str], None]
    probe: Any = None
    models: dict[str, Any] = field(default_factory=dict)  # run name -> LoadedModel
    #: the stages whose results the site shows, in order: their fingerprints enter render's
    shown: list[str] = field(default_factory=list)


def build(workspace: Path, config: WorkspaceConfig, force: bool = False,
          progress: bool = True, log: Callable[[str], None] = lambda s: None,
          root: Path | None = None, wait: bool | None = None) -> BuildSummary:
    """Run every stage of the workspace's config; return the summary.

    Relative paths in the config (local datasets, model files, weights, class lists) are
    relative to ``root``, by default the workspace. The workspace is locked meanwhile: a
    second build of it waits (``wait=False``: refuses at once, ``BusyError``).
    """
    from ..lock import hold_folder

    workspace = Path(workspace).resolve()
    with hold_folder(workspace, f"the workspace {workspace}", wait=wait):
        return _build(workspace, config, force, progress, log, root)


def _build(workspace: Path, config: WorkspaceConfig, force: bool, progress: bool,
           log: Callable[[str], None], root: Path | None) -> BuildSummary:
    from ..dissect.manifest import machine_info, software_versions, utc_now
    from ..io import write_json
    from ..models import demo_registry  # noqa: F401 - registers the demo models

    # before anything runs: a cuda device on a machine without one, images nothing labels
    check_machine(config)
    if config.dissect:
        _check_dataset_segmenter(config)
    manifest: dict[str, Any] = {
        "format": "unitdissect-build", "format_version": 1, "started": utc_now(),
        "config": {"path": str(config.path) if config.path else None,
                   "resolved": _as_dict(config)},
        "versions": software_versions(), "machine": machine_info(config.device),
        "seed": config.seed, "datasets": {}, "models": {}, "ablations": {}, "generators": {},
        "stages": {},
    }
    ctx = _Build(workspace, Path(root).resolve() if root is not None else workspace, config,
                 BuildSummary(), _State(workspace), manifest, force, progress, log)

    # -- dataset (only [[dissect]] and [[ablate]] read it) ----------------------------
    if config.dissect:
        ctx.probe = _dataset_stage(ctx)
    run_dirs = [_dissect_stage(ctx, entry) for entry in config.dissect]
    # -- ablate (each needs its dissection's model and units.csv) -----------------------
    for entry in config.ablate:
        _ablate_stage(ctx, entry)
    # -- gan (generator dissection, ablation and insertion over its own samples) --------
    run_dirs += [_gan_stage(ctx, entry) for entry in config.gan]

    # -- render ------------------------------------------------------------------------
    site_dir = (workspace / config.site.out).resolve()
    upstream = [(name, ctx.state.data.get(name, "")) for name in ctx.shown]
    render_fp = fingerprint("render", PIPELINE_VERSION, __version__, upstream,
                            dataclasses.asdict(config.site), _templates_fingerprint())

    def render_stage() -> str:
        from ..report.render import render_site

        r = render_site(run_dirs, site_dir, title=config.site.title)
        return f"{getattr(r, 'pages', '')} pages".strip()

    _stage(ctx.summary, ctx.state, "render", render_fp, [site_dir / "index.html"],
           render_stage, force, log)
    ctx.summary.site = site_dir / "index.html"
    manifest["stages"] = {s.name: {"seconds": round(s.seconds, 3), "cached": s.cached,
                                   "fingerprint": ctx.state.data.get(s.name)}
                          for s in ctx.summary.stages}
    manifest["finished"] = utc_now()
    ctx.summary.manifest = write_json(workspace / MANIFEST_FILE, manifest)
    return ctx.summary


def _dataset_stage(ctx: _Build):
    """Build (or find) the workspace's concept dataset and open it."""
    from ..datasets import build_dataset, default_build_options, open_sources, report_skipped
    from ..datasets.build import dataset_fingerprint
    from ..datasets.probe import ProbeSet

    d, workspace, force, progress = ctx.config.dataset, ctx.workspace, ctx.force, ctx.progress
    # the segmenter labels images: sources, as `unitdissect dataset build --segmenter` passes it
    labelled = {"segmenter": d.segmenter} if d.segmenter else {}
    sources = open_sources([_source_spec(ctx.root, s) for s in d.sources], **labelled)
    options = default_build_options(sources, image_size=d.image_size, mask_size=d.mask_size,
                                    min_frequency=d.min_frequency,
                                    val_fraction=d.val_fraction)
    cache_dir = workspace / "data" / "datasets"
    result = {}

    def dataset_stage() -> str:
        r = build_dataset(sources, None, options, force=force, progress=progress,
                          cache_dir=cache_dir)
        result["dataset"] = r
        return f"{r.images} images" + (f", {len(r.skipped)} skipped" if r.skipped else "")

    _stage(ctx.summary, ctx.state, "dataset", dataset_fingerprint(sources, options), [],
           dataset_stage, False, ctx.log)
    if "dataset" not in result:  # up to date: still resolve the folder (instant)
        result["dataset"] = build_dataset(sources, None, options, progress=False,
                                          cache_dir=cache_dir)
    probe = ProbeSet(result["dataset"].path)
    report_skipped(probe.skipped, "the workspace's dataset")
    ctx.manifest["datasets"]["main"] = {"sources": d.sources,
                                        "path": portable_path(probe.path, workspace),
                                        "fingerprint": probe.fingerprint,
                                        "options": options.content(),
                                        "skipped_images": len(probe.skipped)}
    return probe


def _dissect_stage(ctx: _Build, entry) -> Path:
    from ..dissect.runner import ENGINE_VERSION, dissect
    from ..models import load_model

    config = ctx.config
    model = load_model(_model_spec(ctx.root, entry.model),
                       weights=_local(ctx.root, entry.weights) if entry.weights else None,
                       seed=config.seed)
    ctx.models[entry.name] = model
    out = ctx.workspace / "runs" / entry.name
    opts = _dissect_options(config, entry)
    fp = fingerprint("dissect", PIPELINE_VERSION, ENGINE_VERSION, model.weights_sha256,
                     ctx.probe.fingerprint,
                     entry.layers, {k: v for k, v in dataclasses.asdict(opts).items()
                                    if k not in ("num_workers", "checkpoint_every",
                                                 "cache_memory", "cache_disk")})
    ctx.manifest["models"][entry.name] = {
        **model_record(model), "spec": entry.model, "seed": config.seed, "layers": entry.layers}

    def work() -> str:
        # the config owns runs/<name>: a run of the model it named before is replaced whole
        dissect(model, entry.layers, ctx.probe, out, opts, progress=ctx.progress, replace=True,
                dataset_spec=",".join(config.dataset.sources),
                command=["unitdissect", "build"])
        return f"{len(entry.layers)} layers of {entry.model}"

    name = f"dissect:{entry.name}"
    _stage(ctx.summary, ctx.state, name, fp, [out / "manifest.json"], work, ctx.force, ctx.log)
    ctx.shown.append(name)
    return out


def _ablate_stage(ctx: _Build, entry) -> Path:
    """``runs/<run>/ablation/<layer>/``: cached on the dissection's fingerprint (its units.csv
    labels the important units), the weights, the probe set, the classes and the options."""
    from ..intervene import ABLATION_VERSION, run_ablation

    dissect_entry = next(d for d in ctx.config.dissect if d.name == entry.run)
    model = ctx.models[entry.run]
    names = _class_names(ctx.root, entry, model)
    opts = _ablation_options(ctx.config, entry, dissect_entry)
    run_dir = ctx.workspace / "runs" / entry.run
    folder = run_dir / "ablation" / entry.layer
    results = {k: v for k, v in dataclasses.asdict(opts).items()
               if k not in ("num_workers", "cache_memory", "chunk_memory")}
    fp = fingerprint("ablate", PIPELINE_VERSION, ABLATION_VERSION,
                     ctx.state.data.get(f"dissect:{entry.run}", ""), model.weights_sha256,
                     ctx.probe.fingerprint, entry.layer, names, results)
    name = f"ablate:{entry.run}:{entry.layer}"
    ctx.manifest["ablations"][name] = {"run": entry.run, "layer": entry.layer,
                                       "classes": len(names), "options": results}

    def work() -> str:
        if ctx.force:  # forget the runner's finished sub-stages
            (folder / "manifest.json").unlink(missing_ok=True)
        run_ablation(model, entry.layer, ctx.probe, run_dir, opts, class_names=names,
                     progress=ctx.progress, dataset_spec=",".join(ctx.config.dataset.sources),
                     command=["unitdissect", "build"])
        baseline = json.loads((folder / "baseline.json").read_text(encoding="utf-8"))
        return f"{baseline['units']} units x {len(baseline['classes'])} classes"

    _stage(ctx.summary, ctx.state, name, fp,
           [folder / f for f in ("manifest.json", "single_unit.npy", "curves.csv")], work,
           ctx.force, ctx.log)
    ctx.shown.append(name)
    return folder


def _gan_stage(ctx: _Build, entry) -> Path:
    """``runs/<name>/``: the generator's layers dissected over its segmented samples, with
    ``generator/<layer>/`` ablation and insertion; the samples are cached in data/samples."""
    from ..dissect.runner import ENGINE_VERSION, resolve_device
    from ..generator import load_generator, run_gan
    from ..generator.runner import GAN_ENGINE_VERSION, result_options
    from ..segmenters import segmenter_from_spec

    config = ctx.config
    opts = _gan_options(config, entry, ctx.workspace / "data" / "samples")
    device = resolve_device(config.device)
    generator = load_generator(
        _generator_spec(ctx.root, entry.model),
        _local(ctx.root, entry.weights) if entry.weights else None, seed=config.seed,
        latent_seed=config.seed, distribution=opts.latent_distribution,
        truncation=opts.truncation, truncation_psi=opts.truncation_psi,
        truncation_mean=opts.truncation_mean, device=device)
    segmenter = segmenter_from_spec(_segmenter_spec(ctx.root, entry.segmenter),
                                    device=str(device), seed=config.seed)
    out = ctx.workspace / "runs" / entry.name
    fp = fingerprint("gan", PIPELINE_VERSION, GAN_ENGINE_VERSION, ENGINE_VERSION,
                     generator.fingerprint(),
                     segmenter.fingerprint(), entry.samples, entry.layers,
                     result_options(opts))
    name = f"gan:{entry.name}"
    ctx.manifest["generators"][entry.name] = {
        **model_record(generator.model), "spec": entry.model,
        "segmenter": {"spec": entry.segmenter, "fingerprint": segmenter.fingerprint()},
        "samples": entry.samples, "seed": config.seed, "layers": entry.layers,
        "options": result_options(opts)}

    def work() -> str:
        if ctx.force:  # forget the finished layers' interventions (their summary marks them)
            for layer in entry.layers:
                (out / "generator" / layer / "summary.json").unlink(missing_ok=True)
        run_gan(generator, entry.layers, segmenter, entry.samples, out, opts,
                progress=ctx.progress, command=["unitdissect", "build"], replace=True)
        found = json.loads((out / "generator" / "manifest.json").read_text(encoding="utf-8"))
        return (f"{entry.samples} samples, {len(entry.layers)} layers, "
                f"{len(found['concepts'])} concepts")

    _stage(ctx.summary, ctx.state, name, fp, [out / "generator" / "manifest.json"], work,
           ctx.force, ctx.log)
    ctx.shown.append(name)
    return out


def _as_dict(config: WorkspaceConfig) -> dict:
    data = dataclasses.asdict(config)
    data["path"] = portable_path(config.path, config.path.parent) if config.path else None
    return data

"""``unitdissect build``: dataset -> dissect -> ablate -> generator -> render, each stage cached.

A stage's fingerprint chains the fingerprints of its inputs with its own options; a stage whose
fingerprint matches the one recorded after its last success is skipped. Stages that write runs
resume on their own (the dissection runner checkpoints), so an interrupted build continues from
where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..errors import ConfigError
from ..fingerprint import fingerprint
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
        rows = [f"  {s.name:<28} {s.seconds:7.1f}s  {'cached' if s.cached else 'built ':<6}  "
                f"{s.detail}" for s in self.stages]
        total = sum(s.seconds for s in self.stages)
        rows.append(f"  {'total':<28} {total:7.1f}s")
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
    detail = work()
    state.done(name, fp)
    summary.stages.append(StageReport(name, time.perf_counter() - started, False, detail))


def _templates_fingerprint() -> str:
    from ..report.render import TEMPLATES_DIR

    files = sorted(p for p in Path(TEMPLATES_DIR).rglob("*") if p.is_file())
    return fingerprint([(str(p.relative_to(TEMPLATES_DIR)), p.stat().st_size,
                         p.stat().st_mtime_ns) for p in files])


def dry_run(config: WorkspaceConfig) -> list[str]:
    """Validate a config offline: every spec parses, every layer exists; return what was checked."""
    from ..datasets import open_sources
    from ..models import load_model, resolve_layers

    checked = []
    open_sources(config.dataset.sources)
    checked.append(f"dataset: {', '.join(config.dataset.sources)}")
    for entry in [*config.dissect, *config.gan]:
        model = load_model(entry.model, seed=config.seed)  # random init unless demo weights
        resolve_layers(model.module, entry.layers)
        checked.append(f"{entry.name}: {entry.model} layers {', '.join(entry.layers)}")
    if config.ablate or config.gan:
        raise ConfigError("[[ablate]] and [[gan]] stages are not available in this version yet")
    return checked


def build(workspace: Path, config: WorkspaceConfig, force: bool = False,
          progress: bool = True, log: Callable[[str], None] = lambda s: None) -> BuildSummary:
    """Run every stage of the workspace's config; return the summary."""
    from ..datasets import build_dataset, default_build_options, open_sources
    from ..datasets.probe import ProbeSet
    from ..dissect.manifest import machine_info, software_versions, utc_now
    from ..io import write_json

    if config.ablate or config.gan:
        raise ConfigError("[[ablate]] and [[gan]] stages are not available in this version yet")
    workspace = Path(workspace).resolve()
    started = utc_now()
    summary, state = BuildSummary(), _State(workspace)
    manifest: dict[str, Any] = {
        "format": "unitdissect-build", "format_version": 1, "started": started,
        "config": {"path": str(config.path) if config.path else None,
                   "resolved": _as_dict(config)},
        "versions": software_versions(), "machine": machine_info(config.device),
        "seed": config.seed, "datasets": {}, "models": {}, "stages": {},
    }

    # -- dataset -----------------------------------------------------------------------
    d = config.dataset
    sources = open_sources(d.sources)
    options = default_build_options(sources, image_size=d.image_size, mask_size=d.mask_size,
                                    min_frequency=d.min_frequency,
                                    val_fraction=d.val_fraction)
    result = {}

    def dataset_stage() -> str:
        r = build_dataset(sources, None, options, force=force, progress=progress,
                          cache_dir=workspace / "data" / "datasets")
        result["dataset"] = r
        return f"{r.images} images" + (f", {len(r.skipped)} skipped" if r.skipped else "")

    from ..datasets.build import dataset_fingerprint

    data_fp = dataset_fingerprint(sources, options)
    _stage(summary, state, "dataset", data_fp, [], dataset_stage, False, log)
    if "dataset" not in result:  # up to date: still resolve the folder (instant)
        result["dataset"] = build_dataset(sources, None, options, progress=False,
                                          cache_dir=workspace / "data" / "datasets")
    probe = ProbeSet(result["dataset"].path)
    manifest["datasets"]["main"] = {"sources": d.sources, "path": str(probe.path),
                                    "fingerprint": probe.fingerprint,
                                    "options": options.content()}

    # -- dissect -----------------------------------------------------------------------
    run_dirs = []
    for entry in config.dissect:
        run_dirs.append(_dissect_stage(summary, state, workspace, config, entry, probe,
                                       force, progress, log, manifest))

    # -- render ------------------------------------------------------------------------
    site_dir = (workspace / config.site.out).resolve()
    upstream = [state.data.get(f"dissect:{e.name}", "") for e in config.dissect]
    render_fp = fingerprint("render", PIPELINE_VERSION, __version__, upstream,
                            dataclasses.asdict(config.site), _templates_fingerprint())

    def render_stage() -> str:
        from ..report.render import render_site

        r = render_site(run_dirs, site_dir)
        return f"{getattr(r, 'pages', '')} pages".strip()

    _stage(summary, state, "render", render_fp, [site_dir / "index.html"], render_stage,
           force, log)
    summary.site = site_dir / "index.html"
    manifest["stages"] = {s.name: {"seconds": round(s.seconds, 3), "cached": s.cached,
                                   "fingerprint": state.data.get(s.name)}
                          for s in summary.stages}
    manifest["finished"] = utc_now()
    summary.manifest = write_json(workspace / MANIFEST_FILE, manifest)
    return summary


def _dissect_stage(summary, state, workspace, config, entry, probe, force, progress, log,
                   manifest) -> Path:
    from ..dissect.runner import DissectOptions, dissect
    from ..models import load_model

    model = load_model(entry.model, weights=entry.weights, seed=config.seed)
    out = workspace / "runs" / entry.name
    opts = DissectOptions(quantile=entry.quantile, iou_threshold=entry.iou_threshold,
                          threshold_on=entry.threshold_on, category_aware=entry.category_aware,
                          split=entry.split, batch_size=entry.batch_size, device=config.device,
                          mean=tuple(entry.mean) if entry.mean else None,
                          std=tuple(entry.std) if entry.std else None, seed=config.seed,
                          topk=entry.topk)
    fp = fingerprint("dissect", PIPELINE_VERSION, model.weights_sha256, probe.fingerprint,
                     entry.layers, {k: v for k, v in dataclasses.asdict(opts).items()
                                    if k not in ("num_workers", "checkpoint_every")})
    manifest["models"][entry.name] = {"spec": entry.model, "weights": str(model.weights or ""),
                                      "weights_sha256": model.weights_sha256,
                                      "seed": config.seed, "layers": entry.layers}

    def work() -> str:
        dissect(model, entry.layers, probe, out, opts, progress=progress,
                dataset_spec=",".join(config.dataset.sources),
                command=["unitdissect", "build"])
        return f"{len(entry.layers)} layers of {entry.model}"

    _stage(summary, state, f"dissect:{entry.name}", fp, [out / "manifest.json"], work, force,
           log)
    return out


def _as_dict(config: WorkspaceConfig) -> dict:
    data = dataclasses.asdict(config)
    data["path"] = str(config.path) if config.path else None
    return data

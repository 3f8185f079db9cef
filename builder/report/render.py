"""Write the site: one Jinja Environment, pages from the gathered model, unit pages in worker processes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from builder.errors import ConfigError
from builder.io import reporting
from builder.lock import LOCK_NAME, hold_folder
from builder.workers import ignore_interrupts
from builder.report import charts
from builder.report.gather import (
    MIN_DROP,
    ClassInfo,
    Layer,
    Run,
    Site,
    SiteConcept,
    TopK,
    Unit,
    gather_site,
)
from builder.report.images import (
    STRIP_PX,
    STRIP_TILES,
    CachedImages,
    ImageSource,
    ProbeImages,
    UnitImages,
    draw_unit,
    placeholder_source,
    ramp_css,
)
from builder.report.search import search_index_js

log = logging.getLogger("unitdissect.report")

#: The site's templates: builder/templates/ in an installed wheel, else templates/ of the source
#: tree (the packaged copy wins so an unrelated top-level "templates" folder is never used).
_PACKAGED_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
TEMPLATES_DIR = (_PACKAGED_TEMPLATES if _PACKAGED_TEMPLATES.is_dir()
                 else Path(__file__).resolve().parents[2] / "templates")
#: The file that marks a folder as a site written by `unitdissect render` (so it may be emptied).
MARKER = ".unitdissect-site"
#: Top-level files of the output folder that are kept when it is emptied.
KEEP = frozenset({"README.md", ".gitkeep", LOCK_NAME})  # the lock: a writer holds it
#: A unit page lists the classes that rank it among their first TOP_RANK units.
TOP_RANK = 5
#: Units per worker task.
CHUNK = 24
#: Units listed per concept on a generator page.
TOP_RANKED = 8

Progress = Callable[[int, int], None]


@dataclass
class RenderResult:
    """What render_site wrote."""

    out: Path
    pages: int
    images: int
    units: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        """The site's home page."""
        return self.out / "index.html"


# --------------------------------------------------------------------------- output folder


def check_output(out: str | Path, run_dirs: Sequence[str | Path] = ()) -> Path:
    """Validate the output folder before anything is written; refuse folders that are not ours to empty."""
    path = Path(out).expanduser().resolve()
    hint = "pick a new or empty folder with --out"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output path is a file, not a folder: {out}", hint=hint)
    if path == Path(path.anchor) or path == Path.home().resolve():
        raise ConfigError(f"refusing to write the site into {path}", hint=hint)
    if (path / ".git").exists() or (path / "pyproject.toml").exists():
        raise ConfigError(f"refusing to empty {path}: it looks like a project folder", hint=hint)
    for run_dir in run_dirs:
        run_path = Path(run_dir).expanduser().resolve()
        if run_path == path or path in run_path.parents:
            raise ConfigError(f"refusing to empty {path}: it contains the run directory {run_dir}", hint=hint)
    if path.is_dir() and not (path / MARKER).is_file():
        foreign = sorted(p.name for p in path.iterdir() if p.name not in KEEP)
        if foreign:
            raise ConfigError(
                f"refusing to empty {path}: it has files that unitdissect did not write "
                f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})",
                hint=hint,
            )
    return path


def empty_output(path: Path) -> None:
    """Empty the output folder but keep it (and its README); never follows links out of it."""
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.name in KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (path / MARKER).write_text("This folder is written by `unitdissect render`; it is emptied on each render.\n")


# --------------------------------------------------------------------------- environment


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


def _pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{float(value) * 100:.{digits}f}%"


def _when(value: Any) -> str:
    """An ISO 8601 time as 'YYYY-MM-DD HH:MM UTC' (anything else as it is)."""
    if not value:
        return "at an unknown time"
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.tzinfo is not None else "")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def make_environment(templates: Path = TEMPLATES_DIR) -> Environment:
    """The site's one Jinja Environment (autoescaping, strict undefined, site filters)."""
    env = Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(["html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fmt=_fmt, pct=_pct, json=charts.script_json, pretty=_pretty, when=_when)
    env.globals.update(
        category_color=charts.category_color,
        ramp_css=ramp_css(),
        strip_tiles=STRIP_TILES,
        strip_px=STRIP_PX,
    )
    return env


# --------------------------------------------------------------------------- pages


#: Breadcrumbs: (text, path from the site root, or None for the current page).
Crumbs = list[tuple[str, str | None]]
_HOME: Crumbs = [("Overview", "index.html")]


@dataclass
class Page:
    """One HTML page to write: its path from the site root, its template and its variables."""

    path: str
    template: str
    title: str
    context: dict[str, Any]
    crumbs: Crumbs = field(default_factory=list)

    @property
    def root(self) -> str:
        """The relative URL of the site root from this page."""
        return "../" * self.path.count("/")


def _run_crumbs(run: Run) -> Crumbs:
    return _HOME + [(run.name, run.page_path)]


def _layer_crumbs(layer: Layer) -> Crumbs:
    return _run_crumbs(layer.run) + [(layer.name, layer.path)]


def _site_pages(site: Site) -> Iterator[Page]:
    """Every page except the unit pages."""
    yield Page(
        "index.html",
        "home.html",
        "Overview",
        {"kind": "home", "charts": {f"detectors-{r.slug}": charts.unique_detectors_chart(r) for r in site.runs}},
    )
    yield Page("search.html", "search.html", "Search", {"kind": "search", "charts": {}}, _HOME + [("Search", None)])
    yield Page(
        "concepts/index.html",
        "concepts.html",
        "Concepts",
        {"kind": "concepts", "charts": {}},
        _HOME + [("Concepts", None)],
    )
    for concept in site.concepts:
        yield _concept_page(concept)
    if site.classes:
        yield Page(
            "classes/index.html",
            "classes.html",
            "Classes",
            {"kind": "classes", "class_rows": _class_rows(site), **_class_overview(site)},
            _HOME + [("Classes", None)],
        )
    for run in site.runs:
        yield Page(run.page_path, "run.html", run.name, {"kind": "run", "run": run, "charts": {}}, _run_crumbs(run))
        for layer in run.layers:
            yield _layer_page(layer)
            if layer.generator is not None:
                yield _generator_page(layer)
        for cls in run.classes:
            yield _class_page(cls)


def _class_overview(site: Site) -> dict[str, Any]:
    """Per run, the ablated layers with every class's curves and the science check's spread."""
    figures: dict[str, Any] = {}
    layers: dict[str, list[dict[str, Any]]] = {}
    for run in site.runs:
        for layer in run.layers:
            if layer.ablation is None:
                continue
            entry: dict[str, Any] = {"layer": layer, "science": layer.ablation.science}
            for key, make in (("curves", charts.all_classes_curves_chart),
                              ("science_chart", charts.science_chart),
                              ("important", charts.important_units_chart)):
                figure = make(layer)
                name = f"{key}-{run.slug}-{layer.slug}"
                if figure:
                    figures[name] = figure
                entry[key] = name if figure else None
            layers.setdefault(run.slug, []).append(entry)
    return {"charts": figures, "ablated": layers}


def _class_rows(site: Site) -> dict[str, list[dict[str, Any]]]:
    """Per run, one row per (class, ablated layer): baseline and the unit whose removal hurts most."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for run in site.runs:
        for cls in run.classes:
            for layer in cls.layers:
                if layer.ablation is None:
                    continue
                i = layer.ablation.class_index(cls)
                drops = layer.ablation.drops[:, i]
                first = layer.ablation.top_units(i, 1)
                best = first[0] if first else int(drops.argmax())
                rows.setdefault(run.slug, []).append(
                    {
                        "cls": cls,
                        "layer": layer,
                        "baseline": float(layer.ablation.baseline[i]),
                        "unit": layer.units[best],
                        "drop": float(drops[best]),
                    }
                )
    return rows


def _concept_page(concept: SiteConcept) -> Page:
    by_run: dict[str, list[Any]] = {}
    for stats in concept.layers:
        by_run.setdefault(stats.layer.run.slug, []).append(stats)
    return Page(
        concept.path,
        "concept.html",
        concept.name,
        {
            "kind": "concept",
            "concept": concept,
            "by_run": [(rows[0].layer.run, rows) for rows in by_run.values()],
            "charts": {"depth": charts.concept_depth_chart(concept)} if concept.layers else {},
        },
        _HOME + [("Concepts", "concepts/index.html"), (concept.name, None)],
    )


def _layer_page(layer: Layer) -> Page:
    categories = layer.detectors
    return Page(
        layer.path,
        "layer.html",
        f"{layer.name} · {layer.run.name}",
        {
            "kind": "layer",
            "layer": layer,
            "run": layer.run,
            "categories": categories,
            "charts": {
                "categories": charts.layer_categories_chart(layer),
                "labels": charts.layer_labels_chart(layer),
            }
            if categories
            else {},
        },
        _run_crumbs(layer.run) + [(layer.name, None)],
    )


def _generator_page(layer: Layer) -> Page:
    figures = {
        "ablation": charts.generator_ablation_chart(layer),
        "insertion": charts.generator_insertion_chart(layer),
    }
    ranking = {
        concept: [(layer.units[u], iou) for u, iou in rows[:TOP_RANKED]]
        for concept, rows in layer.generator.ranking.items()  # type: ignore[union-attr]
    }
    return Page(
        layer.generator_path,
        "generator.html",
        f"Generator experiments · {layer.name}",
        {
            "kind": "generator",
            "layer": layer,
            "run": layer.run,
            "ranking": ranking,
            "charts": {k: v for k, v in figures.items() if v},
        },
        _layer_crumbs(layer) + [("generator", None)],
    )


def _removal_effect(ablation: Any, unit: int, class_index: int) -> str:
    """What removing one unit does to one class: its balanced accuracy drop, else (when no
    prediction flips) the drop of its mean logit margin."""
    drop = float(ablation.drops[unit, class_index])
    if drop >= MIN_DROP or ablation.margin_drops is None:
        return f"removing it: −{100 * drop:.2f}%"
    margin = float(ablation.margin_drops[unit, class_index])
    if math.isnan(margin):
        return "removing it: no change"
    return f"removing it: margin {'−' if margin > 0 else '+'}{abs(margin):.2f}"


def _class_page(cls: ClassInfo) -> Page:
    sections = []
    figures: dict[str, Any] = {}
    for layer in cls.layers:
        ablation = layer.ablation
        if ablation is None:
            continue
        i = ablation.class_index(cls)
        figure = charts.class_curves_chart(layer, i)
        if figure:
            figures[f"curves-{layer.slug}"] = figure
        sections.append(
            {
                "layer": layer,
                "chart": f"curves-{layer.slug}" if figure else None,
                "baseline": float(ablation.baseline[i]),
                "ranked": ablation.ranking is not None,
                "splits": ablation.splits,
                "units": [(layer.units[u], _removal_effect(ablation, u, i))
                          for u in ablation.top_units(i, 12)],
            }
        )
    crumbs = _run_crumbs(cls.run) + [("Classes", "classes/index.html"), (cls.name, None)]
    return Page(cls.path, "class.html", cls.name, {"kind": "class", "cls": cls, "sections": sections, "charts": figures}, crumbs)


def _unit_page(unit: Unit, images: UnitImages | None) -> Page:
    layer = unit.layer
    figures: dict[str, Any] = {"iou": charts.unit_iou_chart(unit)}
    histogram = charts.unit_histogram_chart(unit)
    if histogram:
        figures["histogram"] = histogram
    tiles = []
    if layer.topk is not None and images is not None:
        tiles = [
            {
                "rank": r + 1,
                "index": int(layer.topk.index[unit.index, r]),
                "score": float(layer.topk.score[unit.index, r]),
                "top": images.position(r),
                "act": images.position(images.k + r),
            }
            for r in range(layer.topk.k)
        ]
    ablation = []
    if layer.ablation is not None:
        drops = layer.ablation.drops[unit.index]
        positions = layer.ablation.positions
        rank = None if positions is None else positions[unit.index]
        # the classes this unit's removal hurts, and those that rank it among their first
        # TOP_RANK units even when removing it alone flips no prediction
        listed = [c for c in range(len(drops))
                  if drops[c] >= MIN_DROP or (rank is not None and rank[c] < TOP_RANK)]
        listed.sort(key=lambda c: (-drops[c], 0 if rank is None else rank[c]))
        top = max(float(drops.max(initial=0.0)), 1e-9)
        ablation = [
            {
                "cls": layer.ablation.classes[int(c)],
                "drop": float(drops[c]),
                "before": float(layer.ablation.baseline[c]),
                "after": float(layer.ablation.single_unit[unit.index, c]),
                "width": max(float(drops[c]), 0.0) / top * 100,
                "rank": None if rank is None else int(rank[c]) + 1,
            }
            for c in listed[:10]
        ]
    n = len(layer.units)
    return Page(
        unit.path,
        "unit.html",
        f"{layer.name} unit {unit.index}" + (f" · {unit.label}" if unit.label else ""),
        {
            "kind": "unit",
            "unit": unit,
            "layer": layer,
            "run": layer.run,
            "prev": layer.units[unit.index - 1] if unit.index > 0 else None,
            "next": layer.units[unit.index + 1] if unit.index + 1 < n else None,
            "images": images,
            "tiles": tiles,
            "ablation": ablation,
            "top_rank": TOP_RANK,
            "charts": figures,
        },
        _layer_crumbs(layer) + [(f"unit {unit.index}", None)],
    )


def _write_page(env: Environment, site: Site, out: Path, page: Page) -> None:
    template = env.get_template(page.template)
    html = template.render(
        site=site, root=page.root, path=page.path, title=page.title, crumbs=page.crumbs, **page.context
    )
    target = out / page.path
    target.parent.mkdir(parents=True, exist_ok=True)
    with reporting(target, len(html)):
        target.write_text(html, encoding="utf-8")


# --------------------------------------------------------------------------- unit pages (workers)


@dataclass
class _State:
    site: Site
    env: Environment
    out: Path
    images: CachedImages
    maps: tuple[str, np.ndarray] | None = None


_STATE: _State | None = None


def _layer_maps(state: _State, layer: Layer, topk: TopK) -> np.ndarray:
    key = f"{layer.run.slug}/{layer.slug}"
    if state.maps is None or state.maps[0] != key:
        state.maps = None  # free the previous layer first
        with np.load(topk.path, allow_pickle=False) as data:
            state.maps = (key, data["maps"])
    return state.maps[1]


def _units_task(task: tuple[int, int, int, int]) -> tuple[int, int]:
    """Draw and write the unit pages [start, stop) of one layer; returns (pages, images)."""
    state = _STATE
    if state is None:
        raise RuntimeError("worker state is not set")
    run_i, layer_i, start, stop = task
    layer = state.site.runs[run_i].layers[layer_i]
    images_written = 0
    topk = layer.topk
    maps = _layer_maps(state, layer, topk) if topk is not None else None
    folder = state.out / layer.dir / "img"
    for unit in layer.units[start:stop]:
        drawn = None
        if maps is not None and topk is not None:
            pixels = state.images.batch(layer.run, topk.index[unit.index])
            drawn = draw_unit(pixels, maps[unit.index], unit.threshold, folder, unit.stem)
            images_written += 2
        _write_page(state.env, state.site, state.out, _unit_page(unit, drawn))
    return stop - start, images_written


def _tasks(site: Site) -> list[tuple[int, int, int, int]]:
    return [
        (r, l, start, min(start + CHUNK, len(layer.units)))
        for r, run in enumerate(site.runs)
        for l, layer in enumerate(run.layers)
        for start in range(0, len(layer.units), CHUNK)
    ]


# --------------------------------------------------------------------------- images


def _resolve_sources(site: Site, image_for: ImageSource | None, warnings: list[str]) -> ImageSource:
    """One image source for all runs; runs whose probe images cannot be read get gray placeholders."""
    default = ProbeImages() if image_for is None else None
    gray = placeholder_source()
    usable: dict[str, ImageSource] = {}
    for run in site.runs:
        first = next((layer.topk for layer in run.layers if layer.topk is not None), None)
        if first is None:
            continue
        source: ImageSource = image_for if image_for is not None else default  # type: ignore[assignment]
        try:
            source(run, int(first.index.flat[0]) if first.index.size else 0)
        except Exception as e:  # noqa: BLE001 - any failure of a data source means "no images"
            where = run.dataset_path or "(no path in the manifest)"
            warnings.append(f"{run.name}: probe images unavailable at {where} ({e}); overlays drawn on gray")
            source = gray
        usable[run.slug] = source

    def image_for_run(run: Run, index: int) -> np.ndarray:
        return usable.get(run.slug, gray)(run, index)

    return image_for_run


def _image_size(run: Run) -> tuple[int, int] | None:
    return (run.image_size, run.image_size) if run.image_size else None


# --------------------------------------------------------------------------- entry point


def _copy_static(site: Site, out: Path) -> None:
    import plotly.offline

    shutil.copytree(TEMPLATES_DIR / "static", out / "static", dirs_exist_ok=True)
    (out / "static" / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    (out / "static" / "search-index.js").write_text(search_index_js(site), encoding="utf-8")


def _copy_galleries(site: Site, out: Path) -> int:
    """Copy the generator layers' gallery strips beside their pages; return how many."""
    copied = 0
    for layer in site.layers:
        if layer.generator is None or not layer.generator.strips:
            continue
        folder = out / layer.gallery_dir
        folder.mkdir(parents=True, exist_ok=True)
        for strip in layer.generator.strips:
            shutil.copyfile(strip.source, folder / strip.file)
            copied += 1
    return copied


def _worker_count(workers: int | None, units: int) -> int:
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    if units < 2 * CHUNK or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return workers


def render_site(
    run_dirs: Sequence[str | Path],
    out: str | Path = "site",
    *,
    image_for: ImageSource | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    title: str | None = None,
) -> RenderResult:
    """Render run directories into a static site in `out` (emptied but kept); returns what was written.

    `title` names the home page (a workspace's ``[site] title``); default "Overview".
    """
    global _STATE
    started = time.perf_counter()
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    site = gather_site(run_dirs)
    path = check_output(out, run_dirs)
    env = make_environment()
    for name in env.list_templates(filter_func=lambda n: n.endswith(".html")):
        env.get_template(name)  # compile once, before workers fork
    warnings: list[str] = []
    source = _resolve_sources(site, image_for, warnings)
    for message in warnings:
        log.warning(message)
    pages = list(_site_pages(site))
    if title:
        pages = [dataclasses.replace(p, title=title) if p.path == "index.html" else p for p in pages]
    tasks = _tasks(site)
    total_units = len(site.units)
    total = total_units + len(pages)

    with hold_folder(path, f"the site {path}"):  # one writer at a time
        empty_output(path)
        _copy_static(site, path)
        for layer in site.layers:
            (path / layer.dir / "img").mkdir(parents=True, exist_ok=True)
        images = _copy_galleries(site, path)

        done = 0
        _STATE = _State(site, env, path, CachedImages(source, _image_size))
        n_workers = _worker_count(workers, total_units)
        try:
            with contextlib.ExitStack() as stack:
                if n_workers > 1:
                    pool = stack.enter_context(
                        multiprocessing.get_context("fork").Pool(n_workers, initializer=ignore_interrupts)
                    )
                    results: Iterator[tuple[int, int]] = pool.imap_unordered(_units_task, tasks)
                else:
                    results = map(_units_task, tasks)
                for page in pages:  # with workers, the main process writes these meanwhile
                    _write_page(env, site, path, page)
                    done += 1
                    if progress:
                        progress(done, total)
                for n_pages, n_images in results:
                    done += n_pages
                    images += n_images
                    if progress:
                        progress(done, total)
                if n_workers > 1:
                    pool.close()  # workers exit on their own (terminating them can leak semaphores)
                    pool.join()
        finally:
            _STATE = None
        return RenderResult(path, total, images, total_units, time.perf_counter() - started, warnings)

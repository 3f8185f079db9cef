"""The site-wide search index: a JS file that assigns the entries to a global, loaded by <script>."""

from __future__ import annotations

from typing import Any

from builder.report.charts import dumps
from builder.report.gather import Site

#: Order in which result kinds are listed.
KINDS = ("concept", "class", "layer", "unit", "run")


def search_entries(site: Site) -> list[list[Any]]:
    """Entries [kind, title, detail, path, category, score] for every page worth finding."""
    many = len(site.runs) > 1
    entries: list[list[Any]] = []
    for concept in site.concepts:
        detectors = len(concept.detector_units)
        best = concept.best
        detail = f"{concept.category} · {detectors} detector unit{'s' if detectors != 1 else ''}"
        entries.append(["concept", concept.name, detail, concept.path, concept.category, best.best_iou if best else 0])
    for run in site.runs:
        entries.append(["run", run.name, f"{run.model_spec} on {run.dataset_label}", run.page_path, "", 0])
        where = f"{run.name} · " if many else ""
        for cls in run.classes:
            entries.append(["class", cls.name, f"{where}ablation in {len(cls.layers)} layer(s)", cls.path, "", 0])
        for layer in run.layers:
            entries.append(
                ["layer", layer.name, f"{where}{len(layer.units)} units · {layer.detector_count} detectors", layer.path, "", 0]
            )
            for unit in layer.units:
                label = unit.label or "no label"
                entries.append(
                    [
                        "unit",
                        f"{layer.name} · unit {unit.index}",
                        f"{where}{label} · IoU {unit.iou:.3f}",
                        unit.path,
                        unit.category if unit.detector else "",
                        round(unit.iou, 4),
                    ]
                )
    return entries


def search_index_js(site: Site) -> str:
    """The contents of static/search-index.js."""
    return "window.UD_SEARCH_INDEX = " + dumps(search_entries(site)) + ";\n"

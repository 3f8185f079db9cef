"""Plotly figures as small plain dicts (data + layout), serialised once into the pages as safe JSON."""

from __future__ import annotations

import html
import json
import math
from typing import Any, Sequence

import numpy as np
from markupsafe import Markup

from builder.report.gather import CATEGORY_ORDER, Layer, Run, SiteConcept, Unit

#: One colour per concept category, shared by the charts and the CSS badges.
CATEGORY_COLORS = {
    "object": "#2563eb",
    "part": "#0d9488",
    "material": "#d97706",
    "color": "#db2777",
    "scene": "#7c3aed",
    "texture": "#65a30d",
}
OTHER_COLOR = "#64748b"
#: Colours of series that are not categories (runs, concepts of an experiment).
_SERIES = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d")
ACCENT = "#2563eb"
MUTED = "#94a3b8"
_FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12, "color": "#334155"}
_GRID = "#e2e8f0"


def category_color(category: str) -> str:
    """The colour of a concept category."""
    return CATEGORY_COLORS.get(category, OTHER_COLOR)


def text(value: str) -> str:
    """Escape a label for Plotly, which interprets a subset of HTML tags in its strings."""
    return html.escape(str(value), quote=False)


def _clean(value: Any) -> Any:
    """Plain JSON values: arrays to lists, floats rounded to 6 decimals, NaN and inf to null."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            rounded = np.round(value.astype(np.float64), 6)
            if np.isfinite(rounded).all():
                return rounded.tolist()
        return _clean(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return round(number, 6) if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def dumps(value: Any) -> str:
    """Compact JSON that is safe inside an HTML <script> element or a JS file."""
    encoded = json.dumps(_clean(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        encoded = encoded.replace(char, escape)
    return encoded.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def script_json(value: Any) -> Markup:
    """dumps() marked safe for a Jinja template."""
    return Markup(dumps(value))


def short(value: str, limit: int = 24) -> str:
    """Shorten a long label for an axis (the full text stays in the hover)."""
    value = str(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _names(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Short axis labels for (name, category) pairs; a name that repeats gets its category."""
    names = [name for name, _ in pairs]
    return [
        text(short(f"{name} ({category})" if names.count(name) > 1 else name, 28 if names.count(name) > 1 else 24))
        for name, category in pairs
    ]


def _ticks(labels: list[str]) -> dict[str, Any]:
    """A y axis with one labelled row per bar (labels need not be unique)."""
    return {
        "tickmode": "array",
        "tickvals": list(range(len(labels))),
        "ticktext": labels,
        "range": [-0.6, len(labels) - 0.4],
        "showgrid": False,
        "zeroline": False,
    }


def _layout(height: int = 320, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 36, "b": 48},
        "font": _FONT,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "hoverlabel": {"font": {"family": _FONT["family"]}},
        "legend": {
            "orientation": "h",
            "x": 1,
            "xanchor": "right",
            "y": 1.02,
            "yanchor": "bottom",
            "traceorder": "normal",
        },
        "xaxis": {"gridcolor": _GRID, "zerolinecolor": _GRID, "automargin": True},
        "yaxis": {"gridcolor": _GRID, "zerolinecolor": _GRID, "automargin": True},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def _categories(counts: Sequence[dict[str, int]]) -> list[str]:
    present = {c for count in counts for c, n in count.items() if n}
    return [c for c in CATEGORY_ORDER if c in present] + sorted(present - set(CATEGORY_ORDER))


def unique_detectors_chart(run: Run) -> dict[str, Any]:
    """Stacked bars: unique concepts detected per category, for each layer (as the papers draw it)."""
    layers = [layer.name for layer in run.layers]
    counts = [layer.unique_detectors for layer in run.layers]
    data = [
        {
            "type": "bar",
            "name": category,
            "x": layers,
            "y": [count.get(category, 0) for count in counts],
            "marker": {"color": category_color(category)},
            "hovertemplate": f"%{{x}}<br>{text(category)}: %{{y}} unique detectors<extra></extra>",
        }
        for category in _categories(counts)
    ]
    return {
        "data": data,
        "layout": _layout(
            340,
            barmode="stack",
            xaxis={"title": {"text": "layer (input → output)"}, "type": "category"},
            yaxis={"title": {"text": "unique detectors"}},
        ),
    }


def layer_categories_chart(layer: Layer) -> dict[str, Any]:
    """Grouped bars per category: detector units and unique concepts in one layer."""
    units, unique = layer.detectors, layer.unique_detectors
    categories = _categories([units])
    colors = [category_color(c) for c in categories]
    return {
        "data": [
            {
                "type": "bar",
                "name": "detector units",
                "x": categories,
                "y": [units.get(c, 0) for c in categories],
                "marker": {"color": colors},
                "hovertemplate": "%{x}: %{y} units<extra></extra>",
            },
            {
                "type": "bar",
                "name": "unique concepts",
                "x": categories,
                "y": [unique.get(c, 0) for c in categories],
                "marker": {"color": colors, "opacity": 0.45},
                "hovertemplate": "%{x}: %{y} concepts<extra></extra>",
            },
        ],
        "layout": _layout(300, barmode="group", showlegend=False, yaxis={"title": {"text": "count"}}),
    }


def layer_labels_chart(layer: Layer, limit: int = 15) -> dict[str, Any]:
    """Horizontal bars: the concepts most units of the layer detect."""
    counts: dict[tuple[str, str], int] = {}
    for unit in layer.units:
        if unit.detector:
            counts[(unit.label, unit.category)] = counts.get((unit.label, unit.category), 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0]))[:limit][::-1]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": list(range(len(top))),
                "x": [n for _, n in top],
                "customdata": [text(f"{label} ({cat})") for (label, cat), _ in top],
                "marker": {"color": [category_color(cat) for (_, cat), _ in top]},
                "hovertemplate": "%{customdata}: %{x} units<extra></extra>",
            }
        ],
        "layout": _layout(
            max(220, 22 * len(top) + 70),
            margin={"l": 8, "t": 8},
            xaxis={"title": {"text": "detector units"}},
            yaxis=_ticks(_names([key for key, _ in top])),
            showlegend=False,
        ),
    }


def unit_iou_chart(unit: Unit) -> dict[str, Any]:
    """Horizontal bars: the unit's IoU with its best concepts (one row of iou.npy)."""
    layer = unit.layer
    concepts = layer.run.concepts
    ids = [] if layer.top_concepts is None else layer.top_concepts[unit.index].tolist()
    rows = [(concepts[i], float(layer.iou[unit.index, i])) for i in ids if i in concepts]  # type: ignore[index]
    rows = rows[::-1]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": list(range(len(rows))),
                "x": [iou for _, iou in rows],
                "customdata": [text(f"{ref.name} ({ref.category})") for ref, _ in rows],
                "marker": {"color": [category_color(ref.category) for ref, _ in rows]},
                "hovertemplate": "%{customdata}: IoU %{x:.4f}<extra></extra>",
            }
        ],
        "layout": _layout(
            max(240, 24 * len(rows) + 70),
            margin={"l": 8, "t": 8},
            xaxis={"title": {"text": "IoU"}, "rangemode": "tozero"},
            yaxis=_ticks(_names([(ref.name, ref.category) for ref, _ in rows])),
            showlegend=False,
            shapes=[_vline(layer.iou_threshold, MUTED, "dash")],
        ),
    }


def _vline(x: float, color: str, dash: str = "solid") -> dict[str, Any]:
    return {
        "type": "line",
        "xref": "x",
        "yref": "paper",
        "x0": x,
        "x1": x,
        "y0": 0,
        "y1": 1,
        "line": {"color": color, "width": 2, "dash": dash},
    }


def _hline(y: float, color: str, dash: str = "dot") -> dict[str, Any]:
    return {
        "type": "line",
        "xref": "paper",
        "yref": "y",
        "x0": 0,
        "x1": 1,
        "y0": y,
        "y1": y,
        "line": {"color": color, "width": 1.5, "dash": dash},
    }


def unit_histogram_chart(unit: Unit) -> dict[str, Any] | None:
    """The unit's activation histogram (log counts) with its threshold as a vertical line."""
    if unit.layer.histogram is None:
        return None
    edges, counts = (a[unit.index] for a in unit.layer.histogram)
    centres = (edges[:-1] + edges[1:]) / 2
    return {
        "data": [
            {
                "type": "bar",
                "x": centres,
                "y": counts,
                "width": np.diff(edges),
                "marker": {"color": np.where(centres > unit.threshold, "#f59e0b", "#94a3b8")},
                "hovertemplate": "activation %{x:.3g}<br>%{y} pixels<extra></extra>",
            }
        ],
        "layout": _layout(
            260,
            bargap=0,
            showlegend=False,
            xaxis={"title": {"text": "activation"}},
            yaxis={"title": {"text": "pixels"}, "type": "log"},
            shapes=[_vline(unit.threshold, "#dc2626")],
            annotations=[
                {
                    "x": unit.threshold,
                    "y": 1,
                    "xref": "x",
                    "yref": "paper",
                    "text": f"threshold {unit.threshold:.3g}",
                    "showarrow": False,
                    "xanchor": "left",
                    "yanchor": "top",
                    "xshift": 4,
                    "font": {"color": "#dc2626"},
                }
            ],
        ),
    }


def concept_depth_chart(concept: SiteConcept) -> dict[str, Any]:
    """Best IoU of any unit with the concept, layer by layer, one line per run."""
    by_run: dict[str, list[Any]] = {}
    for stats in concept.layers:
        by_run.setdefault(stats.layer.run.slug, []).append(stats)
    data = []
    for i, rows in enumerate(by_run.values()):
        run = rows[0].layer.run
        color = category_color(concept.category) if len(by_run) == 1 else _SERIES[i % len(_SERIES)]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": text(run.name),
                "x": [r.layer.name for r in rows],
                "y": [r.best_iou for r in rows],
                "customdata": [[len(r.detectors), r.best_unit.index] for r in rows],
                "line": {"color": color, "width": 2.5},
                "marker": {"size": 8},
                "hovertemplate": "%{x}: best IoU %{y:.4f} (unit %{customdata[1]})"
                "<br>%{customdata[0]} detector units<extra>" + text(run.name) + "</extra>",
            }
        )
    threshold = concept.layers[0].layer.iou_threshold if concept.layers else 0.04
    return {
        "data": data,
        "layout": _layout(
            300,
            showlegend=len(data) > 1,
            xaxis={"title": {"text": "layer (input → output)"}, "type": "category"},
            yaxis={"title": {"text": "best IoU"}, "rangemode": "tozero"},
            shapes=[_hline(threshold, MUTED)],
        ),
    }


#: The two removal orders of the ablation curves: their names and colours.
_ORDER_NAMES = {"top": "most important first", "rest": "least important first"}
_ORDER_COLORS = {"top": "#dc2626", "rest": "#2563eb"}


def _removal_layout(y_title: str) -> dict[str, Any]:
    """The layout of accuracy against units removed, with chance (50%) marked."""
    chance = {"x": 1, "y": 0.5, "xref": "paper", "yref": "y", "text": "chance",
              "showarrow": False, "xanchor": "right", "yanchor": "bottom",
              "font": {"color": MUTED}}
    return _layout(
        340,
        xaxis={"title": {"text": "units removed"}},
        yaxis={"title": {"text": y_title}, "tickformat": ".0%", "range": [0, 1.02]},
        shapes=[_hline(0.5, MUTED)],
        annotations=[chance],
    )


def class_curves_chart(layer: Layer, class_index: int) -> dict[str, Any] | None:
    """Class accuracy as units are removed: most important first vs the rest."""
    ablation = layer.ablation
    if ablation is None or class_index not in ablation.curves:
        return None
    names, colors = _ORDER_NAMES, _ORDER_COLORS
    data = []
    for order, rows in ablation.curves[class_index].items():
        x = [r["n_removed"] for r in rows]
        color = colors.get(order, OTHER_COLOR)
        label = names.get(order, order)
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"{text(label)}: class (balanced)",
                "x": x,
                "y": [r["balanced_accuracy"] for r in rows],
                "line": {"color": color, "width": 2.5},
                "hovertemplate": "%{x} removed: %{y:.1%}<extra>" + text(label) + "</extra>",
            }
        )
        if any(r["accuracy"] is not None for r in rows):
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{text(label)}: all classes",
                    "x": x,
                    "y": [r["accuracy"] for r in rows],
                    "line": {"color": color, "width": 1.5, "dash": "dot"},
                    "hovertemplate": "%{x} removed: overall %{y:.1%}<extra>" + text(label) + "</extra>",
                }
            )
    return {
        "data": data,
        "layout": _removal_layout("accuracy"),
    }


def all_classes_curves_chart(layer: Layer) -> dict[str, Any] | None:
    """Every class's balanced accuracy as units are removed, most important first and least
    important first, with the median over classes: the distribution of the class pages' curves."""
    ablation = layer.ablation
    if ablation is None or not ablation.curves:
        return None
    colors, names = _ORDER_COLORS, _ORDER_NAMES
    data = []
    for order in ("top", "rest"):
        per_class = {c: {r["n_removed"]: r["balanced_accuracy"] for r in orders.get(order, [])}
                     for c, orders in ablation.curves.items()}
        for c, points in sorted(per_class.items()):
            if points:
                xs = sorted(points)
                data.append({
                    "type": "scatter", "mode": "lines", "x": xs, "y": [points[x] for x in xs],
                    "line": {"color": _rgba(colors[order], 0.25), "width": 1},
                    "showlegend": False, "name": text(ablation.classes[c].name),
                    "hovertemplate": "%{x} removed: %{y:.1%}<extra>%{fullData.name}</extra>",
                })
        common = sorted(set.intersection(*(set(p) for p in per_class.values() if p))) \
            if any(per_class.values()) else []
        if common:
            median = [float(np.median([p[x] for p in per_class.values() if p])) for x in common]
            data.append({
                "type": "scatter", "mode": "lines+markers", "x": common, "y": median,
                "name": f"{names[order]}: median class", "line": {"color": colors[order], "width": 3},
                "hovertemplate": "%{x} removed: median %{y:.1%}<extra>" + names[order] + "</extra>",
            })
    return {"data": data, "layout": _removal_layout("balanced accuracy")}


def important_units_chart(layer: Layer, k: int = 4) -> dict[str, Any] | None:
    """Per unit, for how many classes it is among the ``k`` most important, against its IoU:
    the PNAS paper's finding that units important to many classes are the interpretable ones."""
    ablation = layer.ablation
    if ablation is None or ablation.ranking is None or not layer.units:
        return None
    counts = np.bincount(ablation.ranking[:, :k].reshape(-1), minlength=len(layer.units))
    data = []
    for category in [*CATEGORY_ORDER, ""]:
        units = [u for u in layer.units if (u.category if u.detector else "") == category]
        if not units:
            continue
        data.append({
            "type": "scatter", "mode": "markers",
            "name": text(category or "no detector"),
            "x": [u.iou for u in units], "y": [int(counts[u.index]) for u in units],
            "customdata": [text(f"unit {u.index} · {u.label or 'no label'}") for u in units],
            "marker": {"color": category_color(category) if category else MUTED, "size": 9,
                       "opacity": 0.8, "line": {"width": 1, "color": "white"}},
            "hovertemplate": "%{customdata}: IoU %{x:.3f}, top " + str(k)
                             + " of %{y} classes<extra></extra>",
        })
    return {
        "data": data,
        "layout": _layout(
            300,
            xaxis={"title": {"text": "IoU of the unit's label"}, "rangemode": "tozero"},
            yaxis={"title": {"text": f"classes with it in their top {k}"}, "rangemode": "tozero",
                   "dtick": 1 if counts.max(initial=0) <= 10 else None},
        ),
    }


def science_chart(layer: Layer) -> dict[str, Any] | None:
    """How many classes lose how much balanced accuracy when their k most important units are
    removed, against k random units (science.json): the density of the PNAS figure."""
    science = layer.ablation.science if layer.ablation is not None else None
    rows = (science or {}).get("per_class") or []
    k = (science or {}).get("k", 5)
    series = [(f"top {k} removed", "drop_top5", "#dc2626"),
              (f"{k} random removed", "drop_random5", MUTED)]
    values = {key: [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
              for _, key, _ in series}
    if not any(values.values()):
        return None
    edges = np.linspace(0, 0.5, 11)
    centers = (edges[:-1] + edges[1:]) / 2
    data = []
    for name, key, color in series:
        counts, _ = np.histogram(np.clip(values[key], 0, 0.5), bins=edges)
        data.append({
            "type": "bar", "name": name, "x": centers, "y": counts, "width": 0.045,
            "marker": {"color": color},
            "hovertemplate": "drop %{x:.0%} ± 2.5 points: %{y} classes<extra>" + name + "</extra>",
        })
    return {
        "data": data,
        "layout": _layout(
            300, barmode="group",
            xaxis={"title": {"text": "drop of the class's balanced accuracy"}, "tickformat": ".0%",
                   "range": [-0.01, 0.51]},
            yaxis={"title": {"text": "classes"}, "rangemode": "tozero"},
        ),
    }


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def generator_ablation_chart(layer: Layer) -> dict[str, Any] | None:
    """Fraction of a concept's pixels that remain as its units are removed, with confidence bands."""
    if layer.generator is None or not layer.generator.ablation:
        return None
    data = []
    for i, (concept, rows) in enumerate(layer.generator.ablation.items()):
        color = _SERIES[i % len(_SERIES)]
        x = [r["n_removed"] for r in rows]
        if all(r["ci_low"] is not None and r["ci_high"] is not None for r in rows):
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": x + x[::-1],
                    "y": [r["ci_high"] for r in rows] + [r["ci_low"] for r in rows][::-1],
                    "fill": "toself",
                    "fillcolor": _rgba(color, 0.15),
                    "line": {"width": 0, "color": _rgba(color, 0)},
                    "hoverinfo": "skip",
                    "showlegend": False,
                    "legendgroup": text(concept),
                }
            )
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": text(concept),
                "legendgroup": text(concept),
                "x": x,
                "y": [r["fraction_remaining"] for r in rows],
                "line": {"color": color, "width": 2.5},
                "hovertemplate": "%{x} units removed: %{y:.1%} remain<extra>" + text(concept) + "</extra>",
            }
        )
    return {
        "data": data,
        "layout": _layout(
            340,
            xaxis={"title": {"text": "units removed"}},
            yaxis={"title": {"text": "concept pixels remaining"}, "tickformat": ".0%", "rangemode": "tozero"},
        ),
    }


def generator_insertion_chart(layer: Layer) -> dict[str, Any] | None:
    """Grouped bars: how often inserting a concept's units adds it, by the context at that location."""
    if layer.generator is None or not layer.generator.insertion:
        return None
    data = []
    for i, (concept, rows) in enumerate(layer.generator.insertion.items()):
        data.append(
            {
                "type": "bar",
                "name": text(concept),
                "x": [text(r["context"]) for r in rows],
                "y": [r["added_fraction"] for r in rows],
                "customdata": [r["n"] if r["n"] is not None else "?" for r in rows],
                "marker": {"color": _SERIES[i % len(_SERIES)]},
                "hovertemplate": "in %{x}: %{y:.1%} (n = %{customdata})<extra>" + text(concept) + "</extra>",
            }
        )
    return {
        "data": data,
        "layout": _layout(
            320,
            barmode="group",
            xaxis={"title": {"text": "context at the inserted location"}, "type": "category"},
            yaxis={"title": {"text": "concept added"}, "tickformat": ".0%", "rangemode": "tozero"},
        ),
    }

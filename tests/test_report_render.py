"""Writing the site (builder/report/render.py): pages, links, escaping, the output folder, the CLI."""

from __future__ import annotations

import argparse
import json
import re
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from builder.errors import ConfigError, DatasetError
from builder.report import MARKER, render_site
from builder.report.charts import dumps
from builder.report.serve import HOST, make_server, url
from report_fixtures import fake_image_for, write_run


class _Refs(HTMLParser):
    """Collects every URL a page refers to, and the contents of its JSON script blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.json_blocks: list[str] = []
        self._in_json = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("href", "src", "action"):
            if values.get(name):
                self.urls.append(values[name] or "")
        for found in re.findall(r"url\(([^)]+)\)", values.get("style") or ""):
            self.urls.append(found.strip("'\""))
        self._in_json = tag == "script" and values.get("type") == "application/json"

    def handle_data(self, data: str) -> None:
        if self._in_json:
            self.json_blocks.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_json = False


def _parse(page: Path) -> _Refs:
    refs = _Refs()
    refs.feed(page.read_text(encoding="utf-8"))
    return refs


def _walk(site: Path) -> dict[Path, _Refs]:
    """Every page reachable from index.html by relative links."""
    seen: dict[Path, _Refs] = {}
    todo = [site / "index.html"]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen[page] = refs = _parse(page)
        for ref in refs.urls:
            target = (page.parent / unquote(urlsplit(ref).path)).resolve()
            if target.suffix == ".html" and target.is_file():
                todo.append(target)
    return seen


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    a = write_run(root, "toy-a")
    b = write_run(root, "toy-b", seed=1, ablation=False, generator=False)
    render_site([a, b], root / "site", image_for=fake_image_for, workers=1)
    return root / "site"


def test_every_page_type_is_written(site: Path) -> None:
    expected = [
        "index.html",
        "search.html",
        "concepts/index.html",
        "concepts/tree.html",
        "classes/index.html",
        "toy-a/index.html",
        "toy-a/layer3/index.html",
        "toy-a/layer4/unit-0000.html",
        "toy-a/layer4/unit-0013.html",
        "toy-a/layer4/img/unit-0013.jpg",
        "toy-a/layer4/img/unit-0013-strip.jpg",
        "toy-a/classes/ski-resort.html",
        "toy-a/generator/layer3.html",
        "toy-a/generator/layer3/ablation-tree.png",
        "toy-a/generator/layer3/insertion-evil.png",
        "toy-b/layer4/unit-0013.html",
        "static/plotly.min.js",
        "static/search-index.js",
        "static/site.js",
        "static/style.css",
        MARKER,
    ]
    missing = [p for p in expected if not (site / p).is_file()]
    assert not missing
    assert not (site / "toy-b" / "classes").exists()
    assert (site / "static" / "plotly.min.js").stat().st_size > 1_000_000


def test_all_pages_reachable_and_every_reference_resolves(site: Path) -> None:
    pages = _walk(site)
    written = set(site.rglob("*.html"))
    assert set(pages) == {p.resolve() for p in written}  # nothing orphaned
    for page, refs in pages.items():
        for ref in refs.urls:
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, f"{page}: absolute URL {ref}"
            assert not ref.startswith("/"), f"{page}: root-relative URL {ref}"
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: broken reference {ref}"
            assert site.resolve() in target.parents, f"{page}: reference leaves the site: {ref}"


def test_generator_pages_show_science_rankings_and_galleries(site: Path) -> None:
    page = (site / "toy-a" / "generator" / "layer3.html").read_text(encoding="utf-8")
    assert "removes\n  <strong>55.0%</strong>" in page and "passes" in page
    assert page.count('class="gallery"') == 2 and 'src="../../toy-a/generator/layer3/ablation-tree.png"' in page
    assert page.index('href="../../toy-a/layer3/unit-0002.html"') < page.index('href="../../toy-a/layer3/unit-0000.html"')
    unit = (site / "toy-a" / "layer3" / "unit-0001.html").read_text(encoding="utf-8")
    assert "insertion-evil.png" in unit and "ablation-tree.png" not in unit
    assert "No gallery edit" in (site / "toy-a" / "layer3" / "unit-0005.html").read_text(encoding="utf-8")


def test_html_in_concept_names_is_escaped_everywhere(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "<img src=x" not in text, page  # as text: &lt;img ... in HTML, \u003cimg ... in JSON
    concept = (site / "concepts" / "img-src-x-onerror-alert-1.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;" in concept
    index = (site / "static" / "search-index.js").read_text(encoding="utf-8")
    assert "<" not in index and ">" not in index


def test_embedded_json_is_valid_and_cannot_close_its_script(site: Path) -> None:
    blocks = 0
    for page, refs in _walk(site).items():
        for block in refs.json_blocks:
            figure = json.loads(block)
            assert set(figure) == {"data", "layout"}, page
            blocks += 1
    assert blocks > 20
    unsafe = {"name": "</script><script>alert(1)</script>", "x": [float("nan"), np.float32(1.5)], "s": "a\u2028b"}
    encoded = dumps(unsafe)
    assert "</" not in encoded and "\u2028" not in encoded
    assert json.loads(encoded) == {"name": unsafe["name"], "x": [None, 1.5], "s": "a\u2028b"}


def test_unit_page_shows_ablation_and_histogram(site: Path) -> None:
    page = (site / "toy-a" / "layer4" / "unit-0000.html").read_text(encoding="utf-8")
    assert "Classes that depend on this unit" in page
    assert 'id="fig-histogram"' in page and 'id="fig-iou"' in page
    assert page.count('src="img/unit-0000.jpg"') == 12  # 6 overlays + 6 heatmaps
    assert 'href="unit-0001.html"' not in page  # links go through the root prefix
    assert 'href="../../toy-a/layer4/unit-0001.html"' in page



def test_class_and_unit_pages_follow_the_ablation_ranking(tmp_path: Path) -> None:
    """With ranking.npy, a class page lists units in the curves' order even where removing one
    alone flips no prediction (its margin drop is shown), and unit pages give their rank."""
    run = write_run(tmp_path, "toy", generator=False)
    folder = run / "ablation" / "layer4"
    baseline = json.loads((folder / "baseline.json").read_text(encoding="utf-8"))
    classes, units = len(baseline["classes"]), np.load(folder / "single_unit.npy").shape[0]
    base = np.asarray(baseline["balanced_accuracy"])
    np.save(folder / "single_unit.npy", np.tile(base, (units, 1)).astype(np.float32))  # no drop
    margin = np.full((units, classes), 4.0, dtype=np.float32)
    margin[7, 0], margin[3, 0] = 1.0, 2.5  # class 0 leans on unit 7, then unit 3
    np.save(folder / "single_unit_margin.npy", margin)
    baseline["margin"] = [5.0] * classes
    (folder / "baseline.json").write_text(json.dumps(baseline), encoding="utf-8")
    ranking = np.tile(np.arange(units), (classes, 1))
    ranking[0] = [7, 3] + [u for u in range(units) if u not in (7, 3)]
    np.save(folder / "ranking.npy", ranking)
    rows = [{"class": c, "drop_top5": 0.4, "drop_random5": 0.01, "pass": True}
            for c in baseline["classes"]]
    (folder / "science.json").write_text(json.dumps(
        {"k": 5, "factor": 3.0, "required_fraction": 0.8, "classes": classes,
         "passed_classes": classes, "pass": True, "per_class": rows}), encoding="utf-8")
    render_site([run], tmp_path / "site", image_for=fake_image_for, workers=1)
    overview = (tmp_path / "site" / "classes" / "index.html").read_text(encoding="utf-8")
    assert f"science check passed: {classes} of {classes} classes" in overview
    assert 'id="fig-curves-toy-layer4"' in overview and 'id="fig-science_chart-toy-layer4"' in overview
    assert 'id="fig-important-toy-layer4"' in overview
    page = (tmp_path / "site" / "toy" / "classes" / "ski-resort.html").read_text(encoding="utf-8")
    assert "Removing any single unit" not in page
    first, second = page.index('data-unit="7"'), page.index('data-unit="3"')
    assert first < second < page.index('data-unit="0"')
    assert "removing it: margin −4.00" in page and "removing it: margin −2.50" in page
    unit = (tmp_path / "site" / "toy" / "layer4" / "unit-0007.html").read_text(encoding="utf-8")
    assert "<th class=\"num\">Rank</th>" in unit and ">#1<" in unit and "ski resort" in unit

    # a ranking that is not a permutation of the units is refused, naming the file
    np.save(folder / "ranking.npy", np.zeros((classes, units), dtype=np.int64))
    with pytest.raises(DatasetError, match="ranking.npy"):
        render_site([run], tmp_path / "site2", workers=1)

def test_search_index_lists_units_concepts_classes(site: Path) -> None:
    text = (site / "static" / "search-index.js").read_text(encoding="utf-8")
    entries = json.loads(text.removeprefix("window.UD_SEARCH_INDEX = ").rstrip(";\n"))
    kinds = {e[0] for e in entries}
    assert kinds == {"concept", "class", "layer", "unit", "run"}
    assert sum(e[0] == "unit" for e in entries) == 2 * (10 + 14)
    assert all((site / e[3]).is_file() for e in entries)


def test_workers_give_the_same_site(tmp_path: Path) -> None:
    run = write_run(tmp_path, "toy", layers=(("l1", 60, (4, 4)),))
    serial = render_site([run], tmp_path / "one", image_for=fake_image_for, workers=1)
    parallel = render_site([run], tmp_path / "two", image_for=fake_image_for, workers=2)
    files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert files(serial.out) == files(parallel.out)
    assert parallel.units == 60 and parallel.images == 2 * 60 + 2  # two per unit, two gallery strips
    same = "toy/l1/unit-0042.html"
    strip_dates = lambda s: re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "", s)  # noqa: E731
    assert strip_dates((serial.out / same).read_text()) == strip_dates((parallel.out / same).read_text())


def test_progress_reaches_the_total(tmp_path: Path) -> None:
    run = write_run(tmp_path, "toy", ablation=False, generator=False)
    seen: list[tuple[int, int]] = []
    render_site([run], tmp_path / "site", image_for=fake_image_for, workers=1, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] and all(b[0] >= a[0] for a, b in zip(seen, seen[1:]))


def test_missing_probe_images_fall_back_to_gray_with_a_warning(tmp_path: Path) -> None:
    run = write_run(tmp_path, "toy", generator=False)
    result = render_site([run], tmp_path / "site", workers=1)  # the manifest's dataset does not exist
    assert len(result.warnings) == 1 and "probe images unavailable" in result.warnings[0]
    assert (tmp_path / "site" / "toy" / "layer3" / "img" / "unit-0000.jpg").is_file()


def test_runs_without_topk_render_without_images(tmp_path: Path) -> None:
    run = write_run(tmp_path, "toy", ablation=False, generator=False)
    for layer in ("layer3", "layer4"):
        (run / "layers" / layer / "topk.npz").unlink()
    result = render_site([run], tmp_path / "site", workers=1)
    assert result.images == 0 and result.units == 24
    assert "no top images" in (tmp_path / "site" / "toy" / "layer3" / "index.html").read_text()


# ----------------------------------------------------------------------------- output folder


def test_output_is_emptied_but_kept_with_its_readme(tmp_path: Path) -> None:
    run = write_run(tmp_path, "toy", ablation=False, generator=False)
    out = tmp_path / "site"
    out.mkdir()
    (out / "README.md").write_text("kept")
    render_site([run], out, image_for=fake_image_for, workers=1)
    (out / "stale.html").write_text("old")
    (out / "toy" / "old-folder").mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    (out / "link").symlink_to(outside)
    render_site([run], out, image_for=fake_image_for, workers=1)
    assert (out / "README.md").read_text() == "kept"
    assert not (out / "stale.html").exists() and not (out / "toy" / "old-folder").exists()
    assert not (out / "link").exists() and outside.read_text() == "x"
    assert (out / MARKER).is_file()


@pytest.mark.parametrize("setup", ["foreign", "run-parent", "file", "project"])
def test_refuses_folders_it_should_not_empty(tmp_path: Path, setup: str) -> None:
    run = write_run(tmp_path / "runs", "toy", ablation=False, generator=False)
    out = tmp_path / "out"
    if setup == "foreign":
        out.mkdir()
        (out / "thesis.tex").write_text("precious")
    elif setup == "run-parent":
        out = tmp_path / "runs"
    elif setup == "file":
        out.write_text("a file")
    else:
        out.mkdir()
        (out / "pyproject.toml").write_text("")
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    with pytest.raises(ConfigError) as info:
        render_site([run], out, image_for=fake_image_for)
    assert "\n" not in str(info.value)
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else None) == before
    assert (run / "manifest.json").is_file()


def test_bad_run_dir_leaves_the_output_untouched(tmp_path: Path) -> None:
    run = write_run(tmp_path, "toy", ablation=False, generator=False)
    out = tmp_path / "site"
    render_site([run], out, image_for=fake_image_for, workers=1)
    with pytest.raises(DatasetError):
        render_site([run, tmp_path / "missing"], out, image_for=fake_image_for)
    assert (out / "index.html").is_file()


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workers"):
        render_site([tmp_path], tmp_path / "site", workers=0)


# ----------------------------------------------------------------------------- CLI and server


def _parser(module: object) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unitdissect")
    module.register(parser.add_subparsers(dest="command"))  # type: ignore[attr-defined]
    return parser


def test_cli_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from builder.cli import render as cli_render

    run = write_run(tmp_path, "toy", ablation=False, generator=False)
    args = _parser(cli_render).parse_args(["render", str(run), "--out", str(tmp_path / "web"), "--workers", "1"])
    assert args.run(args) == 0
    assert "open " in capsys.readouterr().out
    assert (tmp_path / "web" / "index.html").is_file()
    bad = _parser(cli_render).parse_args(["render", str(tmp_path / "nope")])
    with pytest.raises(DatasetError, match="run directory not found"):
        bad.run(bad)


def test_cli_serve_parses_defaults() -> None:
    from builder.cli import serve as cli_serve

    args = _parser(cli_serve).parse_args(["serve"])
    assert args.site_dir == "site" and args.port == 8000 and args.run is cli_serve.run


def test_server_binds_localhost_and_serves_the_site(site: Path) -> None:
    server = make_server(site, port=0)
    assert server.server_address[0] == HOST
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(url(server) + "index.html", timeout=10) as response:
            assert response.status == 200 and b"unitdissect" in response.read()
    finally:
        server.shutdown()
        server.server_close()


def test_server_refuses_a_folder_without_a_site(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a rendered site"):
        make_server(tmp_path, port=0)

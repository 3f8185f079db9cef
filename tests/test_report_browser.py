"""The rendered site in a real browser: headless Chromium (Debian's package) driven by playwright.

Pages load from file:// with no network and no console errors, charts draw, sorting, filtering
and search work, every link and image resolves, and HTML in a concept name never runs.
Set UNITDISSECT_SHOTS=DIR to also save screenshots of every page type (laptop and phone widths).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import pytest

from builder.report import render_site
from report_fixtures import EVIL, fake_image_for, write_run

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_TYPES = {
    "home": "index.html",
    "run": "toy-a/index.html",
    "layer": "toy-a/layer4/index.html",
    "unit": "toy-a/layer4/unit-0000.html",
    "concepts": "concepts/index.html",
    "concept": "concepts/img-src-x-onerror-alert-1.html",
    "classes": "classes/index.html",
    "class": "toy-a/classes/ski-resort.html",
    "generator": "toy-a/generator/layer3.html",
    "search": "search.html",
}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    a = write_run(root, "toy-a")
    b = write_run(root, "toy-b", seed=1, ablation=False, generator=False)
    render_site([a, b], root / "site", image_for=fake_image_for, workers=1)
    return root / "site"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A page that records console errors, uncaught exceptions, dialogs and network requests."""

    def __init__(self, browser: object, width: int = 1280, height: int = 800, js: bool = True) -> None:
        self.context = browser.new_context(  # type: ignore[attr-defined]
            viewport={"width": width, "height": height}, java_script_enabled=js
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.remote: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else self.remote.append(r.url))

    def _dialog(self, dialog: object) -> None:
        self.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    def open(self, site: Path, rel: str, query: str = "") -> object:
        self.page.goto((site / rel).resolve().as_uri() + query)
        self.page.wait_for_load_state("load")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: object) -> Iterator[Tab]:
    t = Tab(browser)
    yield t
    assert not t.dialogs, f"a dialog opened: {t.dialogs}"
    assert not t.remote, f"network requests: {t.remote}"
    t.close()


@pytest.mark.parametrize("kind", sorted(PAGE_TYPES))
def test_page_loads_cleanly_and_charts_draw(site: Path, tab: Tab, kind: str) -> None:
    page = tab.open(site, PAGE_TYPES[kind])
    charts = page.locator(".chart[data-figure]").count()
    if charts:
        page.wait_for_function(
            "n => document.querySelectorAll('.chart .main-svg').length >= n", arg=charts, timeout=15000
        )
    assert tab.errors == []
    assert page.locator("img[src='x']").count() == 0


def test_every_link_and_image_resolves_on_every_page(site: Path, browser: object) -> None:
    tab = Tab(browser, js=False)  # the links are all in the HTML; skipping scripts makes the walk fast
    todo, seen = [(site / "index.html").resolve()], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        page = tab.open(site, str(path.relative_to(site.resolve())))
        refs = page.eval_on_selector_all(
            "[href], [src], form[action]",
            "els => els.map(e => e.href || e.src || e.action).filter(u => typeof u === 'string')",
        )
        for ref in refs:
            parts = urlsplit(ref)
            assert parts.scheme == "file", f"{path}: non-local reference {ref}"
            target = Path(unquote(parts.path))
            assert target.is_file(), f"{path.relative_to(site.resolve())}: broken reference {ref}"
            if target.suffix == ".html":
                todo.append(target.resolve())
    assert len(seen) == len(list(site.rglob("*.html")))
    assert tab.errors == [] and not tab.remote
    tab.close()


def test_unit_images_load(site: Path, tab: Tab) -> None:
    page = tab.open(site, PAGE_TYPES["unit"])
    page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    page.wait_for_function("[...document.images].every(i => i.complete)")
    sizes = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert len(sizes) == 12 and all(w > 0 for w in sizes)


def test_layer_grid_sorts_filters_and_searches(site: Path, tab: Tab) -> None:
    page = tab.open(site, PAGE_TYPES["layer"])
    visible = "els => els.filter(e => !e.hidden).map(e => [+e.dataset.unit, +e.dataset.iou, e.dataset.label, e.dataset.category, e.dataset.detector])"
    cards = lambda: page.eval_on_selector_all("#unit-grid .unit-card", visible)  # noqa: E731
    assert [c[0] for c in cards()] == list(range(14))

    page.select_option("select[data-sort]", "iou")
    ious = [c[1] for c in cards()]
    assert ious == sorted(ious, reverse=True)
    page.select_option("select[data-sort]", "label")
    labels = [c[2] for c in cards()]
    assert labels == sorted(labels)

    page.click(".chip[data-category='object']")
    shown = cards()
    assert shown and all(c[3] == "object" for c in shown)
    assert page.locator("[data-count]").inner_text().startswith(f"{len(shown)} of 14")
    page.click(".chip[data-category='']")
    assert len(cards()) == 14

    page.check("[data-detectors-only]")
    assert all(c[4] == "1" for c in cards()) and len(cards()) < 14
    page.uncheck("[data-detectors-only]")

    page.fill("[data-filter-text]", "sky")
    assert cards() and all("sky" in c[2] for c in cards())
    page.fill("[data-filter-text]", "zzzz")
    assert cards() == [] and page.locator("[data-empty]").is_visible()
    page.fill("[data-filter-text]", "")
    assert len(cards()) == 14
    assert tab.errors == []


def test_concept_table_sorts_and_filters(site: Path, tab: Tab) -> None:
    page = tab.open(site, PAGE_TYPES["concepts"])
    rows = lambda: page.eval_on_selector_all(  # noqa: E731
        "#concept-table tbody tr", "els => els.filter(e => !e.hidden).map(e => [e.dataset.label, +e.cells[3].dataset.value])"
    )
    page.click("th:has-text('Best IoU')")
    values = [r[1] for r in rows()]
    assert values == sorted(values, reverse=True)
    page.click(".chip[data-category='color']")
    assert {r[0] for r in rows()} == {"red", "blue"}
    assert tab.errors == []


def test_header_search_finds_concepts_and_units(site: Path, tab: Tab) -> None:
    page = tab.open(site, "toy-a/layer3/index.html")
    page.fill(".topbar input[name=q]", "tree")
    page.wait_for_selector(".search-results a.result")
    first = page.locator(".search-results a.result").first
    assert first.locator(".result-kind").inner_text().lower() == "concept"
    assert first.locator(".result-title").inner_text() == "tree"
    with page.expect_navigation():
        first.click()
    assert page.url.endswith("/concepts/tree.html")

    page.fill(".topbar input[name=q]", "layer4 13")
    page.wait_for_selector(".search-results a.result")
    assert page.locator(".search-results a.result .result-title").first.inner_text() == "layer4 · unit 13"
    page.keyboard.press("ArrowDown")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/layer4/unit-0013.html")
    assert tab.errors == []


def test_search_page_lists_all_results(site: Path, tab: Tab) -> None:
    page = tab.open(site, "search.html", "?q=ski")
    page.wait_for_selector("[data-search-results] a.result")
    titles = page.locator("[data-search-results] .result-title").all_inner_texts()
    assert "ski resort" in titles and 'ski "resort" & co' in titles
    assert "result" in page.locator("[data-search-summary]").inner_text()
    assert tab.errors == []


def test_html_in_names_is_shown_as_text_and_never_runs(site: Path, tab: Tab) -> None:
    page = tab.open(site, PAGE_TYPES["concept"])
    page.wait_for_selector(".chart .main-svg")
    assert page.locator("h1").inner_text().startswith(EVIL)
    page.fill(".topbar input[name=q]", "onerror")
    page.wait_for_selector(".search-results a.result")
    assert EVIL in page.locator(".search-results").inner_text()
    unit = tab.open(site, PAGE_TYPES["unit"])
    unit.wait_for_selector("#chart-iou .main-svg")
    assert "<img src=x" in unit.locator("#chart-iou").inner_text()  # the axis label, shortened, as text
    for rel in ("toy-a/generator/layer3.html", "toy-a/classes/img-src-x-onerror-alert-1.html", "toy-a/layer4/index.html"):
        tab.open(site, rel).wait_for_timeout(200)
    assert tab.page.locator("img[src='x']").count() == 0
    assert tab.errors == []
    # the tab fixture asserts that no dialog opened


def test_phone_width_has_no_horizontal_scroll(site: Path, browser: object) -> None:
    tab = Tab(browser, 390, 844)
    try:
        for kind, rel in PAGE_TYPES.items():
            page = tab.open(site, rel)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"{kind} page scrolls sideways by {overflow}px at phone width"
        assert tab.errors == [] and not tab.dialogs
    finally:
        tab.close()


@pytest.mark.skipif(not os.environ.get("UNITDISSECT_SHOTS"), reason="set UNITDISSECT_SHOTS=DIR for screenshots")
def test_screenshots(site: Path, browser: object) -> None:
    out = Path(os.environ["UNITDISSECT_SHOTS"])
    out.mkdir(parents=True, exist_ok=True)
    for width, height, name in ((1280, 800, "laptop"), (390, 844, "phone")):
        tab = Tab(browser, width, height)
        try:
            for kind, rel in PAGE_TYPES.items():
                page = tab.open(site, rel)
                page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
                page.wait_for_timeout(500)
                page.screenshot(path=str(out / f"{kind}-{name}.png"), full_page=True)
        finally:
            tab.close()

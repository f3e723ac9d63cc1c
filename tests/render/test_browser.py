"""Report pages in a real browser: Debian Chromium driven by Playwright, pages served locally."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from partybal import layout
from tests.helpers import ARTIFACTS, ROOT, StaticSite
from tests.helpers import playwright_api as _playwright_api
from tests.render.test_render_r import MARKER, render_hostile
from tests.support import synthetic
from tests.support.synthetic import MetricSpec

pytestmark = [pytest.mark.browser, pytest.mark.r]
playwright_api = _playwright_api(module_level=True)


@pytest.fixture
def page(browser, site):
    pg = browser.new_page(viewport={"width": 1280, "height": 1000})
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    pg.goto(site.url + "sample_new_tab_layout.html")
    yield pg
    pg.close()


def visible_count(pg, selector: str) -> int:
    return pg.eval_on_selector_all(selector, "els => els.filter(e => e.offsetParent !== null).length")


def test_page_loads_without_errors_and_shows_the_summary(page):
    page.wait_for_load_state("networkidle")
    assert page.console_errors == []
    assert page.locator("#summary-table tbody tr").count() == 5
    assert page.locator("#summary-table td.good").count() >= 1
    assert page.locator("section.errors tbody tr").count() == 2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-overall.png"), full_page=False)


def test_tabs_switch_periods_and_images_load(page):
    assert page.locator("#tab-overall").is_visible() and not page.locator("#tab-weekly").is_visible()
    assert page.locator("button[data-tab=days28]").is_disabled()
    page.click("button[data-tab=weekly]")
    assert page.locator("#tab-weekly").is_visible() and not page.locator("#tab-overall").is_visible()
    assert page.url.endswith("#tab=weekly")  # the view is in the URL (report.js)
    # only enrollments / segment all are shown by default: bases are never mixed on screen
    assert visible_count(page, "#tab-weekly section.view") == 1
    img = page.locator("#tab-weekly section.view:not(.hidden) img.plot").first
    img.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-weekly.png"))
    assert page.console_errors == []


def test_filters_hide_and_show_sections(page):
    page.click("button[data-tab=weekly]")
    metrics_before = visible_count(page, "#tab-weekly article.metric")
    page.select_option("#filter-statistic", "binomial")
    assert (
        visible_count(page, "#tab-weekly .statistic")
        == visible_count(page, "#tab-weekly .statistic[data-statistic=binomial]")
        >= 1
    )
    assert visible_count(page, "#tab-weekly article.metric") < metrics_before
    page.select_option("#filter-statistic", "")
    page.fill("#filter-metric", "uri")
    assert visible_count(page, "#tab-weekly article.metric") == 1
    assert "Uri Count" in page.locator("#toc").inner_text()
    page.fill("#filter-metric", "")
    page.select_option("#filter-basis", "")
    page.select_option("#filter-segment", "")
    assert visible_count(page, "#tab-weekly section.view") == 4
    page.select_option("#filter-segment", "windows_users")
    assert visible_count(page, "#tab-weekly section.view") == 2
    assert page.console_errors == []


def test_hostile_page_runs_no_script(browser, tmp_path):
    dialogs = []
    with StaticSite(render_hostile(tmp_path)) as server:
        pg = browser.new_page()
        pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        pg.goto(server.url + "hostile.html")
        pg.click("button[data-tab=weekly]")
        pg.wait_for_timeout(300)
        assert dialogs == []
        text = pg.locator("#summary").inner_text() + pg.locator("#errors").inner_text()
        assert "</script><script>alert(1)</script>" in text
        assert pg.evaluate("document.querySelectorAll('script').length") == 1
        pg.close()
    assert not MARKER.exists()


def render_names(tmp_path):
    """Names that differ only in case or by a non-ASCII letter, carry control characters, or are
    very long: as segments, metrics and branches (issue 12, item 6)."""
    from tests.helpers import write_json
    from tests.render.test_report import row

    segments = ["new", "New", "nеw", "a\x00b", "z" * 600]
    branches = ["control", "Control", "tre\x00at\x1bment"]
    rows = []
    for seg in segments:
        for metric in ("Metric", "metric", "m" * 400):
            for w in ("1", "2"):
                for b in branches:
                    rows.append(row(metric=metric, branch=b, segment=seg, window=w))
                    if b != "control":
                        rows.append(
                            row(
                                metric=metric,
                                branch=b,
                                segment=seg,
                                window=w,
                                comparison="relative_uplift",
                                to="control",
                                point=0.1,
                            )
                        )
    results = tmp_path / "results"
    write_json(results / "statistics/statistics_names_weekly.json", rows)
    out = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "partybal", "render", "names", "--results", str(results), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return out, segments


def test_names_from_data_never_break_the_page_or_the_filters(browser, tmp_path):
    out, segments = render_names(tmp_path)
    html = (out / "names.html").read_text()
    assert html.rstrip().endswith("</html>") and 'id="sources"' in html
    assert html.count('<article class="metric"') == len(segments) * 3
    assert 'class="plot-error"' not in html and html.count('<img class="plot"') == len(segments) * 3
    with StaticSite(out) as server:
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server.url + "names.html#weekly")
        labels = pg.eval_on_selector_all("#filter-segment option", "os => os.map(o => o.textContent)")
        assert sorted(labels) == sorted(["any", *(s.replace("\x00", "\u2400") for s in segments)])
        for value, label in zip(
            pg.eval_on_selector_all("#filter-segment option", "os => os.map(o => o.value)")[1:], labels[1:]
        ):
            pg.select_option("#filter-segment", value)
            assert visible_count(pg, "#tab-weekly section.view") == 1, label
            heading = pg.locator("#tab-weekly section.view:not(.hidden) h3").inner_text()
            assert heading.split("segment ", 1)[1].startswith(label[:50]), (label, heading)
        # long names wrap: the page never scrolls sideways
        pg.select_option("#filter-segment", "")
        assert pg.evaluate("document.documentElement.scrollWidth") <= 1280
        pg.locator("#tab-weekly section.view:not(.hidden) h3").last.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "report-names.png"))
        assert errors == []
        pg.close()


# --- a large generated page: 10 branches, 60 daily windows ----------------------------------------


def large_spec() -> synthetic.ExperimentSpec:
    """10 branches (long names), overall + 8 weekly + 60 daily windows, a series statistic, a
    distribution, a count, a sum and an unknown statistic: every kind of figure and wide table."""
    return dataclasses.replace(
        synthetic.many_branches_spec("large-browser-page"),
        metrics=(
            MetricSpec("active_hours", ("mean", "kernel_density_estimate"), True, "Active Hours"),
            MetricSpec("retained", ("binomial",), True, "Retained"),
            MetricSpec("identity", ("count",), True, "Clients"),
            MetricSpec("search_count", ("sum",), True, "Search Count"),
            MetricSpec("engagement_index", ("geometric_mean",), True, "Engagement index"),
        ),
        grid_points=32,
    )


@pytest.fixture(scope="module")
def large_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("large")
    spec = large_spec()
    synthetic.write_experiment(tmp / "results", spec)
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "partybal",
            "render",
            spec.slug,
            "--results",
            str(tmp / "results"),
            "--out",
            str(tmp / "site"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    print(f"\nlarge page rendered in {time.monotonic() - started:.1f} s: {proc.stdout.strip()}")
    with StaticSite(tmp / "site") as server:
        yield server, layout.page_name(layout.file_slug(spec.slug))


def open_timed(browser, url: str) -> tuple:
    """Open ``url``; returns the page and when the summary became visible (ms after navigation
    start, as the browser measured it) with first contentful paint and load, for the report."""
    pg = browser.new_page(viewport={"width": 1280, "height": 1000})
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    # the first animation frame in which the summary heading is laid out (rendered in that frame)
    pg.add_init_script(
        """(function () { function check() { var h = document.querySelector('#summary h2');
        if (h && h.getBoundingClientRect().height > 0) { window.__summaryVisible = performance.now(); return; }
        requestAnimationFrame(check); } requestAnimationFrame(check); })();"""
    )
    pg.goto(url, wait_until="commit")
    pg.wait_for_selector("#summary h2", state="visible")
    pg.wait_for_load_state("load")
    summary_ms = pg.evaluate("window.__summaryVisible || null")
    timing = pg.evaluate(
        """() => { const n = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        return {dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd,
                first_contentful_paint_ms: fcp ? fcp.startTime : null, bytes: n.transferSize}; }"""
    )
    timing["summary_visible_ms"] = summary_ms
    return pg, timing


def check_large_page(pg) -> dict:
    """The checks every large page passes; returns counts for the report."""
    # the summary is on the first screen
    box = pg.locator("#summary h2").bounding_box()
    assert box and box["y"] < 1000
    found = {"figures": 0, "tables": 0}
    for tab in pg.eval_on_selector_all("button.tab:not([disabled])", "els => els.map(e => e.dataset.tab)"):
        pg.click(f"button[data-tab={tab}]")
        panel = f"#tab-{tab}"
        # every table stays within its card (wide ones scroll sideways inside it)
        overflow = pg.eval_on_selector_all(
            f"{panel} article.metric table.data",
            """els => els.filter(t => t.offsetParent !== null).map(t => {
                const card = t.closest('article.metric').getBoundingClientRect();
                const r = t.getBoundingClientRect();
                return {right: r.right - card.right, scrolls: t.scrollWidth > t.clientWidth, cols: t.rows[0].cells.length}; })""",
        )
        assert all(o["right"] <= 1 for o in overflow), (tab, overflow)
        assert all(o["scrolls"] for o in overflow if o["cols"] > 20), (tab, overflow)
        found["tables"] += len(overflow)
        # every figure loads, at its own size: never zero-height or giant, never wider than its card
        imgs = pg.locator(f"{panel} section.view:not(.hidden) img.plot")
        for i in range(imgs.count()):
            img = imgs.nth(i)
            img.scroll_into_view_if_needed()
            pg.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
            size = img.evaluate(
                "i => [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().right - i.closest('article').getBoundingClientRect().right]"
            )
            assert size[0] == 850 and 200 <= size[1] <= 1300 and size[2] <= 1, (tab, i, size)
        found["figures"] += imgs.count()
    assert pg.console_errors == []
    return found


def visible_statistics(pg, panel: str) -> set[str]:
    return set(
        pg.eval_on_selector_all(
            f"{panel} .statistic", "els => els.filter(e => e.offsetParent !== null).map(e => e.dataset.statistic)"
        )
    )


def test_large_page_loads_filters_and_fits(browser, large_site):
    server, page_name = large_site
    pg, timing = open_timed(browser, server.url + page_name)
    found = check_large_page(pg)
    assert found["figures"] >= 6 and found["tables"] >= 3
    # filters: statistic, metric text; the per-window tables and figures follow
    pg.click("button[data-tab=daily]")
    assert visible_statistics(pg, "#tab-daily") >= {"binomial", "count", "sum", "kernel_density_estimate"}
    pg.select_option("#filter-statistic", "count")
    assert visible_statistics(pg, "#tab-daily") == {"count"}
    pg.select_option("#filter-statistic", "")
    pg.fill("#filter-metric", "retained")
    assert visible_count(pg, "#tab-daily article.metric") == 1 and "Retained" in pg.locator("#toc").inner_text()
    pg.fill("#filter-metric", "")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # the artifacts: a long series (60 daily windows, small multiples per branch) and a 10-branch
    # figure (a distribution with every branch in one panel and a legend that wraps), a wide table
    shots = {
        "long-series-figure.png": "#tab-daily .statistic[data-statistic=binomial] img.plot",
        "ten-branch-figure.png": "#tab-daily .statistic[data-statistic=kernel_density_estimate] img.plot",
        "per-window-table.png": "#tab-daily .statistic[data-statistic=count]",
    }
    for name, selector in shots.items():
        el = pg.locator(selector).first
        el.scroll_into_view_if_needed()
        if "img" in selector:
            pg.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=el.element_handle())
        el.screenshot(path=str(ARTIFACTS / name))
    assert pg.console_errors == []
    timing.update(found)
    (ARTIFACTS / "large-page-timing.json").write_text(json.dumps(timing, indent=1))
    print(f"\nlarge page in Chromium: {json.dumps(timing)}")
    pg.close()


REAL_SIZE_PAGE = os.environ.get("PARTYBAL_REAL_SIZE_PAGE")


@pytest.mark.skipif(
    not REAL_SIZE_PAGE,
    reason="set PARTYBAL_REAL_SIZE_PAGE to a page rendered by benchmarks/render_real_size.py --keep-site",
)
def test_real_size_page(browser):
    """The real-size page (rendered by the benchmark, too slow for make test): the same checks."""
    page = Path(REAL_SIZE_PAGE)
    with StaticSite(page.parent) as server:
        pg, timing = open_timed(browser, server.url + page.name)
        timing.update(check_large_page(pg))
        (ARTIFACTS / "real-size-page-timing.json").write_text(json.dumps(timing, indent=1))
        print(f"\nreal-size page in Chromium: {json.dumps(timing)}")
        pg.close()

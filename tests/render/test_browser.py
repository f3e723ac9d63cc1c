"""Report pages in a real browser: Debian Chromium driven by Playwright, pages served locally."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ARTIFACTS, ROOT, SAMPLE, StaticSite, launch_chromium
from tests.helpers import playwright_api as _playwright_api
from tests.render.test_render_r import MARKER, render_hostile

pytestmark = [pytest.mark.browser, pytest.mark.r]
playwright_api = _playwright_api(module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "partybal", "render", "sample-new-tab-layout", "--results", str(SAMPLE), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    with StaticSite(out) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


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
    assert page.url.endswith("#weekly")
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
    assert visible_count(page, "#tab-weekly .statistic") == visible_count(page, "#tab-weekly .statistic[data-statistic=binomial]") >= 1
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

"""The sample-ratio warning (present and absent) and the completeness map in a real browser:
pages knitted with R, Debian Chromium driven by Playwright. Screenshots under tests/artifacts/."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from partybal import layout
from tests.helpers import ARTIFACTS, ROOT, StaticSite
from tests.helpers import playwright_api as _playwright_api
from tests.support import synthetic
from tests.support.synthetic import MetricSpec

pytestmark = [pytest.mark.browser, pytest.mark.r]
playwright_api = _playwright_api(module_level=True)

METRICS = (
    MetricSpec("active_hours", ("mean",), True, "Active Hours"),
    MetricSpec("uri_count", ("mean",), True, "URI Count"),
    MetricSpec("identity", ("count",), True, "Clients"),
)


def spec(slug: str, shares=None) -> synthetic.ExperimentSpec:
    return dataclasses.replace(
        synthetic.small_spec(slug),
        branches=("control", "treatment-a", "treatment-b"),
        segments=("all", "new_users"),
        windows={"overall": 1, "weekly": 2},
        metrics=METRICS,
        enrolled_shares=shares,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("checks")
    results, out = tmp / "results", tmp / "site"
    for s in (spec("srm-mismatch", (0.36, 0.33, 0.31)), spec("srm-balanced")):
        synthetic.write_experiment(results, s)
        # a metric the metadata lists that Jetstream never wrote and reported no error for
        path = results / layout.results_name(layout.Kind.METADATA, layout.file_slug(s.slug))
        md = json.loads(path.read_text())
        md["metrics"]["search_clicks"] = {
            "friendly_name": "Search clicks",
            "description": "",
            "bigger_is_better": True,
            "analysis_bases": ["enrollments"],
        }
        path.write_text(json.dumps(md))
        proc = subprocess.run(
            [sys.executable, "-m", "partybal", "render", s.slug, "--results", str(results), "--out", str(out)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
    with StaticSite(out) as server:
        yield server


def open_page(browser, site, name):
    pg = browser.new_page(viewport={"width": 1280, "height": 1100})
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    pg.goto(site.url + name)
    pg.wait_for_load_state("networkidle")
    return pg


def visible(pg, selector: str) -> int:
    return pg.eval_on_selector_all(selector, "els => els.filter(e => e.offsetParent !== null).length")


def test_mismatch_opens_with_a_red_warning(browser, site):
    pg = open_page(browser, site, "srm_mismatch.html")
    warning = pg.locator("#srm-warning")
    assert warning.is_visible()
    # it comes before the tabs, filters and every result
    assert pg.evaluate(
        "document.querySelector('#srm-warning').getBoundingClientRect().bottom < document.querySelector('.toolbar').getBoundingClientRect().top"
    )
    text = warning.inner_text()
    assert "Sample-ratio mismatch" in text and "Enrollments, segment all" in text
    assert "expected 33.33%" in text and "p = " in text and "biased" in text
    color = pg.evaluate("getComputedStyle(document.querySelector('#srm-warning')).backgroundColor")
    r, g, b = (int(x) for x in color[color.index("(") + 1 : color.index(")")].split(",")[:3])
    assert r > 200 and g < r - 20 and b < r - 20, color  # red
    assert "mismatch" in pg.locator(".srm-line").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "report-srm-warning.png"))
    assert pg.console_errors == []
    pg.close()


def test_balanced_page_has_no_warning(browser, site):
    pg = open_page(browser, site, "srm_balanced.html")
    assert pg.locator("#srm-warning").count() == 0
    assert "no mismatch" in pg.locator(".srm-line").inner_text()
    assert "ratio ok" in pg.locator("#completeness-map tr.map-srm").inner_text()
    pg.screenshot(path=str(ARTIFACTS / "report-srm-absent.png"))
    assert pg.console_errors == []
    pg.close()


def test_completeness_map_filters_and_links(browser, site):
    pg = open_page(browser, site, "srm_mismatch.html")
    cmap = pg.locator("#completeness-map")
    assert cmap.is_visible()
    names = pg.eval_on_selector_all("#completeness-map tbody th.map-metric", "els => els.map(e => e.textContent)")
    assert names == ["Active Hours", "URI Count", "Clients", "Search clicks"]
    # the default filters (enrollments, segment all): that segment's columns only, O and W
    assert visible(pg, "#completeness-map tbody tr:first-child td[data-basis]") == 2
    assert pg.locator("#completeness-map tr.no-results").inner_text().count("?") == 2  # hidden columns have no text
    assert "reported no error" in pg.locator("#completeness-map tr.no-results td.map-reason").inner_text()
    # the generated analysis error (active_hours, segment all) marks its cells
    assert visible(pg, "#completeness-map tbody tr:first-child td.cell-partial") == 2
    assert visible(pg, "#completeness-map tr.map-srm th.srm-mismatch") == 1
    pg.locator("#completeness").scroll_into_view_if_needed()
    pg.screenshot(path=str(ARTIFACTS / "report-completeness-map.png"))
    # every segment: twice the columns, and the segment's own sample-ratio test
    pg.select_option("#filter-segment", "")
    assert visible(pg, "#completeness-map tbody tr:first-child td[data-basis]") == 4
    assert visible(pg, "#completeness-map tr.map-srm th.srm-mismatch") == 2
    # the metric filter and the statistic filter pick rows
    pg.fill("#filter-metric", "uri")
    assert visible(pg, "#completeness-map tr.map-row") == 1
    pg.fill("#filter-metric", "")
    pg.select_option("#filter-statistic", "count")
    assert visible(pg, "#completeness-map tr.map-row") == 1
    pg.select_option("#filter-statistic", "")
    # a weekly cell opens the weekly tab at that metric
    link = pg.locator("#completeness-map tbody tr:nth-child(2) td[data-segment=all] a").nth(1)
    target = link.get_attribute("href")[1:]
    link.click()
    assert pg.locator("#tab-weekly").is_visible() and pg.locator(f"#{target}").is_visible()
    assert pg.locator("button[data-tab=weekly]").get_attribute("aria-selected") == "true"
    assert pg.console_errors == []
    pg.close()


# --- the header from Experimenter (the local stand-in), and without it ------------------------------


@pytest.fixture(scope="module")
def context_site(tmp_path_factory):
    import socket

    from partybal.local.experimenter_standin import StandIn
    from tests.helpers import SAMPLE

    out = tmp_path_factory.mktemp("context")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there once closed
    with StandIn() as standin:
        for slug, url in (("sample-new-tab-layout", standin.url), ("sample-search-defaults", down)):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "partybal",
                    "render",
                    slug,
                    "--results",
                    str(SAMPLE),
                    "--out",
                    str(out),
                    "--experimenter",
                    url,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=600,
            )
            assert proc.returncode == 0, proc.stderr
        with StaticSite(out) as server:
            yield server, standin.url


def test_header_shows_experimenters_context(browser, context_site):
    server, standin_url = context_site
    pg = open_page(browser, server, "sample_new_tab_layout.html")
    assert pg.locator("h1").inner_text() == "New Tab layout: compact tiles sample-new-tab-layout"
    ctx = pg.locator("#experiment-context")
    assert ctx.is_visible()
    text = ctx.inner_text()
    for words in (
        "Tests a compact layout",
        "Firefox desktop, release",
        "Experiment",
        "2026-09-18",
        "2026-09-25",
        "enrollment 7 days, duration 28 days",
        "control (reference)",
        "50%",
    ):
        assert words in text, words
    assert (
        pg.locator("#experiment-context a").get_attribute("href")
        == f"{standin_url}/nimbus/sample-new-tab-layout/summary"
    )
    assert pg.title() == "New Tab layout: compact tiles · experiment results"
    assert pg.locator("#srm-warning").count() == 0
    pg.screenshot(path=str(ARTIFACTS / "report-experimenter-header.png"))
    assert pg.console_errors == []
    pg.close()


def test_header_without_experimenter_says_so(browser, context_site):
    server, _ = context_site
    pg = open_page(browser, server, "sample_search_defaults.html")
    assert pg.locator("h1").inner_text() == "sample-search-defaults"
    assert "could not be read" in pg.locator("#experiment-context").inner_text()
    pg.screenshot(path=str(ARTIFACTS / "report-experimenter-down.png"))
    assert pg.console_errors == []
    pg.close()


# --- the TOC with Experimenter's names, applications and stages ---------------------------------------


def test_toc_filters_by_application_and_stage(browser, tmp_path):
    import datetime as dt

    from partybal.local.experimenter_standin import FIXTURE
    from partybal.pipeline import experimenter, toc
    from partybal.pipeline.state import Experiment

    _, infos, _ = experimenter.parse_entries(json.loads(FIXTURE.read_bytes()), "fixture")
    snapshot = experimenter.toc_bytes(infos.values())
    slugs = [
        "sample_new_tab_layout",
        "sample_search_defaults",
        "fenix_onboarding_cards",
        "ios_tab_tray_rollout",
        "desktop_pip_nudge_v2",
        "not_in_experimenter",
    ]
    exps, statuses = {}, {}
    for i, fs in enumerate(slugs):
        name = layout.results_name(layout.Kind.STATISTICS, fs, "overall")
        exps[fs] = Experiment(fs, {name: 1}, {"overall"}, dt.datetime(2026, 11, 20 - i, tzinfo=dt.UTC))
        statuses[fs] = {
            "state": "ok",
            "input_generations": {name: 1},
            "page": layout.page_name(fs),
            "name": fs,
            "srm": {"mismatch": fs == "fenix_onboarding_cards", "p_value": 3e-9, "basis": "enrollments"},
        }
    page = toc.toc_page(
        exps,
        statuses,
        set(),
        "",
        now=dt.datetime(2026, 11, 26, tzinfo=dt.UTC),
        catalog=experimenter.toc_entries(snapshot),
    )
    (tmp_path / "index.html").write_text(toc.render_html(page))
    with StaticSite(tmp_path) as server:
        pg = open_page(browser, server, "index.html")
        assert visible(pg, "#toc-table tbody tr") == 6
        assert "New Tab layout: compact tiles" in pg.locator("#toc-table").inner_text()
        pg.select_option("#toc-app", "firefox_desktop")
        assert visible(pg, "#toc-table tbody tr") == 3
        pg.select_option("#toc-run", "complete")
        assert visible(pg, "#toc-table tbody tr") == 2
        pg.select_option("#toc-app", "")
        pg.select_option("#toc-run", "")
        assert pg.locator("#toc-table .srm-flag").count() == 1
        pg.click("th[data-key=launch] button")
        firsts = pg.eval_on_selector_all("#toc-table tbody tr", "rs => rs.map(r => r.dataset.launch)")
        assert firsts == sorted(firsts) and firsts[-1] == "2026-10-01"  # ascending launch dates, unlisted first
        pg.screenshot(path=str(ARTIFACTS / "toc-experimenter.png"))
        assert pg.console_errors == []
        pg.close()

"""The index's filter and sort on a few hundred rows in headless Chromium (behaviour, not timing)."""

from __future__ import annotations

import datetime as dt

import pytest

from partybal.pipeline import toc
from partybal.pipeline.state import Experiment
from tests.helpers import launch_chromium, playwright_api

pytestmark = pytest.mark.browser

VISIBLE = "rows => rows.map(r => r.getAttribute('data-name'))"


def _page_html(n: int) -> str:
    exps, statuses = {}, {}
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(n):
        fs = f"exp_{i}_v{i % 13}"  # numeric parts: exp_2 sorts before exp_10
        exp = Experiment(fs, {f"metadata/metadata_{fs}.json": 1}, {"overall"}, t0 + dt.timedelta(minutes=(i * 37) % n))
        exps[fs] = exp
        gens = exp.generations if i % 4 else {}
        statuses[fs] = {
            "state": "failed" if i % 9 == 0 else "ok",
            "reason": "boom",
            "input_generations": gens,
            "page": f"{fs}.html",
            "name": fs.replace("_", "-"),
        }
    return toc.render_html(toc.toc_page(exps, statuses, set(), ""))


def test_filter_and_sort(tmp_path):
    playwright = playwright_api()
    (tmp_path / "index.html").write_text(_page_html(300))
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((tmp_path / "index.html").as_uri())
            names = page.eval_on_selector_all("#toc-table tbody tr:not([hidden])", VISIBLE)
            assert len(names) == 300

            header = page.locator('th[data-key="name"]')
            header.locator("button").click()
            assert header.get_attribute("aria-sort") == "ascending"
            asc = page.eval_on_selector_all("#toc-table tbody tr:not([hidden])", VISIBLE)
            expected = page.evaluate(
                "names => names.slice().sort((x, y) => x.localeCompare(y, undefined, {numeric: true, sensitivity: 'base'}))",
                names,
            )
            assert asc == expected and asc[:3] == ["exp-0-v0 exp_0_v0", "exp-1-v1 exp_1_v1", "exp-2-v2 exp_2_v2"]
            header.locator("button").click()
            assert header.get_attribute("aria-sort") == "descending"
            assert page.eval_on_selector_all("#toc-table tbody tr:not([hidden])", VISIBLE) == list(reversed(asc))
            assert page.locator('th[data-key="updated"]').get_attribute("aria-sort") == "none"

            page.fill("#toc-filter", "V12")  # case-insensitive, on name and file slug
            shown = page.eval_on_selector_all("#toc-table tbody tr:not([hidden])", VISIBLE)
            assert shown and all("v12" in n for n in shown) and len(shown) == sum(1 for n in names if "v12" in n)
            assert page.inner_text("#toc-shown") == f"{len(shown)} of 300 shown"
            page.select_option("#toc-state", "failed")
            both = page.eval_on_selector_all(
                "#toc-table tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.state)"
            )
            assert both and set(both) == {"failed"}
            page.fill("#toc-filter", "")
            states = page.eval_on_selector_all(
                "#toc-table tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.state)"
            )
            assert set(states) == {"failed"} and len(states) > len(both)
            page.select_option("#toc-state", "")
            assert len(page.eval_on_selector_all("#toc-table tbody tr:not([hidden])", VISIBLE)) == 300
            assert page.inner_text("#toc-shown") == ""
            assert not errors
        finally:
            browser.close()

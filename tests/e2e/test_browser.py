"""The table of contents in headless Chromium, served from the local stack's site bucket."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import playwright_api, unavailable, wait_until

pytestmark = [pytest.mark.emulators, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    sync_api = playwright_api()
    if not shutil.which(CHROMIUM):
        unavailable(f"{CHROMIUM} is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def visible_names(page) -> list[str]:
    return page.eval_on_selector_all(
        "#toc-table tbody tr:not([hidden])", "rows => rows.map(r => r.getAttribute('data-name'))"
    )


def test_toc_sort_filter_and_links(stack, sample_site, browser):
    page = browser.new_page()
    offsite: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:")) else offsite.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(stack.site_url)
    assert page.title()
    names = visible_names(page)
    assert any("sample_search_defaults" in n for n in names) and any("sample_new_tab_layout" in n for n in names)

    # sort by experiment name: ascending, then descending
    header = page.locator('th[data-key="name"]')
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    asc = visible_names(page)
    # the page sorts with the reader's collation (localeCompare): check against the same
    expected = page.evaluate(
        "names => names.slice().sort((x, y) => x.localeCompare(y, undefined, {numeric: true, sensitivity: 'base'}))",
        names,
    )
    assert asc == expected
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    assert visible_names(page) == list(reversed(asc))

    # filter by name, then by status
    page.fill("#toc-filter", "search")
    shown = visible_names(page)
    assert shown and all("search" in n.lower() for n in shown)
    assert "shown" in page.inner_text("#toc-shown")
    page.fill("#toc-filter", "")
    page.select_option("#toc-state", "ok")
    assert all(
        s == "ok"
        for s in page.eval_on_selector_all(
            "#toc-table tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.state)"
        )
    )
    page.select_option("#toc-state", "")
    assert len(visible_names(page)) == len(names)

    # every link resolves to a page whose figures load
    hrefs = page.eval_on_selector_all("#toc-table tbody a", "as => as.map(a => a.href)")
    assert hrefs
    for href in hrefs:
        resp = page.goto(href)
        assert resp is not None and resp.status == 200, href
        srcs = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.src)")
        assert srcs, f"no figures on {href}"
        for src in srcs:  # figures are lazy-loaded: fetch each one the way the browser would
            r = page.request.get(src)
            assert r.status == 200 and r.headers["content-type"] == "image/png", src
        page.locator("img").first.scroll_into_view_if_needed()
        page.wait_for_function(
            "() => { const i = document.querySelector('img'); return i.complete && i.naturalWidth > 0; }"
        )
    assert not errors, errors
    assert not offsite, offsite
    page.close()


def test_an_open_page_keeps_its_figures_across_a_rerender(stack, sample_site, browser):
    """A reader opens a report; before they scroll (figures load lazily), it is re-rendered. Every
    figure of the page they have must still load — the job keeps the replaced page's figures."""
    fslug = "sample_search_defaults"
    page = browser.new_page()
    page.goto(stack.site_url + f"{fslug}.html")
    srcs = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.src)")
    assert srcs
    before = stack.storage().bucket(stack.site_bucket).get_blob(f"{fslug}.html").metadata["render_id"]

    stack.publish_render(fslug)
    after = wait_until(
        lambda: (r := stack.status_record(fslug)) and r["state"] == "ok" and r["render_id"] != before and r,
        180,
        what="the re-render",
    )
    assert (
        stack.storage().bucket(stack.site_bucket).get_blob(f"{fslug}.html").metadata["render_id"] == after["render_id"]
    )

    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    for src in srcs:
        r = page.request.get(src)
        assert r.status == 200 and r.headers["content-type"] == "image/png", src
    page.locator("img").last.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const i = [...document.querySelectorAll('img')].pop(); return i.complete && i.naturalWidth > 0; }"
    )
    page.close()

"""Shareable views (issue 17, item 4) in a real browser: the page's state (tab, basis, segment,
statistic, metric filter, open sections) lives in the URL's fragment, a copied link opens the same
view, the back button moves between views. Debian Chromium driven by Playwright, the sample
experiment knitted with R and served from 127.0.0.1 (and opened as a file)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.helpers import ARTIFACTS
from tests.helpers import playwright_api as _playwright_api

pytestmark = [pytest.mark.browser, pytest.mark.r]
playwright_api = _playwright_api(module_level=True)

PAGE = "sample_new_tab_layout.html"


@pytest.fixture(scope="module")
def site_dir(sample_new_tab_dir):
    return sample_new_tab_dir


def open_page(context_or_browser, url: str):
    if hasattr(context_or_browser, "new_context"):  # a browser: a page of its own
        pg = context_or_browser.new_page(viewport={"width": 1280, "height": 900})
    else:  # a context (its permissions, its viewport)
        pg = context_or_browser.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_load_state("domcontentloaded")
    return pg


def view(pg) -> dict:
    """What a person sees: the tab, the filters, open sections, which metric sections are shown."""
    return pg.evaluate(
        """() => ({
        tab: (document.querySelector('.tab[aria-selected=true]') || {dataset: {}}).dataset.tab || null,
        basis: document.getElementById('filter-basis').value,
        segment: document.getElementById('filter-segment').value,
        statistic: document.getElementById('filter-statistic').value,
        filter: document.getElementById('filter-metric').value,
        open: Array.from(document.querySelectorAll('#content details')).filter(d => d.open)
              .map(d => d.closest('[id]').id),
        panels: Array.from(document.querySelectorAll('.tab-panel')).filter(p => p.offsetParent !== null).map(p => p.id),
        metrics: Array.from(document.querySelectorAll('article.metric'))
                 .filter(a => a.offsetParent !== null).map(a => a.id),
        statistics: Array.from(document.querySelectorAll('.statistic')).filter(a => a.offsetParent !== null).length,
        })"""
    )


def fragment(pg) -> str:
    return pg.evaluate("location.hash")


def in_viewport(pg, element_id: str) -> bool:
    return pg.evaluate(
        """id => { const r = document.getElementById(id).getBoundingClientRect();
        return r.top >= 0 && r.top < innerHeight && r.height > 0; }""",
        element_id,
    )


def test_each_change_goes_into_the_url_and_the_url_opens_the_same_view(browser, site):
    url = site.url + PAGE
    pg = open_page(browser, url)
    assert fragment(pg) == ""  # the default view needs nothing in the URL
    default = view(pg)
    assert default["tab"] == "overall" and default["basis"] == "enrollments" and default["segment"] == "all"

    pg.select_option("#filter-basis", "exposures")
    assert fragment(pg) == "#basis=exposures"
    pg.select_option("#filter-segment", "")  # any segment: an empty value, not the default
    assert fragment(pg) == "#basis=exposures&segment="
    pg.select_option("#filter-statistic", "mean")
    pg.fill("#filter-metric", "active hours")
    assert fragment(pg) == "#basis=exposures&segment=&statistic=mean&filter=active%20hours"
    # open a section: the pairwise comparisons of the first metric shown
    pairwise = pg.locator("#tab-overall section.view:not(.hidden) article.metric:not(.hidden) details.pairwise").first
    owner = pairwise.evaluate("d => d.closest('article').id")
    pairwise.locator("summary").click()
    pg.wait_for_function("() => location.hash.includes('open=')")
    assert fragment(pg) == f"#basis=exposures&segment=&statistic=mean&filter=active%20hours&open={owner}"
    pg.click("button[data-tab=weekly]")
    assert fragment(pg) == f"#tab=weekly&basis=exposures&segment=&statistic=mean&filter=active%20hours&open={owner}"
    shown = view(pg)
    assert shown["tab"] == "weekly" and shown["open"] == [owner] and len(shown["metrics"]) == 2  # one per segment
    assert shown["statistics"] == len(shown["metrics"])  # one statistic (mean) per shown metric

    # the same URL in a fresh page, and a reload: the same view
    copied = pg.url
    other = open_page(browser, copied)
    assert view(other) == shown and other.url == copied
    other.reload()
    assert view(other) == shown
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    other.screenshot(path=str(ARTIFACTS / "report-shared-view.png"))
    assert pg.console_errors == [] and other.console_errors == []
    other.close()
    pg.close()


def test_back_and_forward_move_between_views(browser, site):
    pg = open_page(browser, site.url + PAGE)
    start_length = pg.evaluate("history.length")
    pg.wait_for_timeout(200)
    assert pg.evaluate("history.length") == start_length  # loading the page adds no entry
    pg.click("button[data-tab=weekly]")
    pg.select_option("#filter-segment", "windows_users")
    pg.locator("#filter-metric").press_sequentially("uri")  # three keystrokes: one entry
    assert pg.evaluate("history.length") == start_length + 3
    typed = view(pg)
    assert typed["filter"] == "uri" and typed["segment"] == "windows_users" and len(typed["metrics"]) == 1

    def back():
        before = pg.url
        pg.evaluate("history.back()")
        pg.wait_for_function("u => location.href !== u", arg=before)

    def forward():
        before = pg.url
        pg.evaluate("history.forward()")
        pg.wait_for_function("u => location.href !== u", arg=before)

    back()
    v = view(pg)
    assert (v["tab"], v["segment"], v["filter"]) == ("weekly", "windows_users", "")
    back()
    v = view(pg)
    assert (v["tab"], v["segment"], v["filter"]) == ("weekly", "all", "")
    back()
    v = view(pg)
    assert (v["tab"], v["segment"], v["panels"]) == ("overall", "all", ["tab-overall"]) and fragment(pg) == ""
    forward()
    assert view(pg)["tab"] == "weekly" and view(pg)["panels"] == ["tab-weekly"]
    forward()
    forward()
    assert view(pg) == typed
    # a link in the page (the list on the side) is a step too, and back returns from it
    # (each of its links names the view too, so it can be copied as it is)
    href = pg.locator("#toc a").first.get_attribute("href")
    target = pg.locator("#tab-weekly section.view:not(.hidden) article.metric:not(.hidden)").first.get_attribute("id")
    assert href == f"#tab=weekly&segment=windows_users&filter=uri&section={target}"
    pg.locator("#toc a").first.click()
    assert fragment(pg) == href
    pg.wait_for_timeout(300)
    assert in_viewport(pg, target)
    back()
    assert view(pg) == typed
    assert pg.console_errors == []
    pg.close()


def test_copy_link_copies_the_view_with_that_section(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url.rstrip("/"))
    pg = open_page(context, site.url + PAGE)
    pg.click("button[data-tab=weekly]")
    pg.select_option("#filter-segment", "windows_users")
    article = pg.locator("#tab-weekly section.view:not(.hidden) article.metric:not(.hidden)").nth(1)
    section = article.get_attribute("id")
    control = article.locator(".copy-link")
    assert control.is_visible() and control.text_content() == "Copy link"
    history_length = pg.evaluate("history.length")
    control.click()
    expected = f"{site.url}{PAGE}#tab=weekly&segment=windows_users&section={section}"
    assert pg.evaluate("navigator.clipboard.readText()") == expected
    assert control.inner_text() == "Copied"
    assert pg.evaluate("history.length") == history_length and "section=" not in pg.url  # copying is not navigating
    article.screenshot(path=str(ARTIFACTS / "report-copy-link.png"))

    # the copied link opens that section, in that view, on screen
    other = open_page(context, expected)
    v = view(other)
    assert (v["tab"], v["basis"], v["segment"]) == ("weekly", "enrollments", "windows_users")
    other.wait_for_timeout(300)
    assert in_viewport(other, section)
    other.screenshot(path=str(ARTIFACTS / "report-copied-link-opened.png"))
    assert pg.console_errors == [] and other.console_errors == []
    context.close()


CLIPBOARD_STUBS = {
    # the asynchronous clipboard refuses (no permission): the page copies the older way
    "refused": "navigator.clipboard.writeText = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));",
    # no asynchronous clipboard at all (a page that is not a secure context)
    "absent": "Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined});",
}


@pytest.mark.parametrize("how", ["refused", "absent"])
@pytest.mark.parametrize("served", ["http", "file"])
def test_copy_link_without_the_clipboard_api(browser, site, site_dir, how, served):
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.add_init_script(
        CLIPBOARD_STUBS[how]
        + """ window.__copied = [];
        document.execCommand = function (cmd) { if (cmd !== 'copy') return false;
          const el = document.activeElement;
          window.__copied.push(el && 'value' in el ? el.value.substring(el.selectionStart, el.selectionEnd)
                                                   : String(getSelection()));
          return true; };"""
    )
    base = site.url + PAGE if served == "http" else (site_dir / PAGE).as_uri()
    pg.goto(base + "#tab=daily&statistic=mean")
    article = pg.locator("#tab-daily section.view:not(.hidden) article.metric:not(.hidden)").first
    article.locator(".copy-link").click(timeout=5000)
    pg.wait_for_function("() => window.__copied.length > 0")
    section = article.get_attribute("id")
    assert pg.evaluate("window.__copied") == [f"{base}#tab=daily&statistic=mean&section={section}"]
    assert article.locator(".copy-link").inner_text() == "Copied"
    assert errors == []
    pg.close()


INVALID = [
    "#tab=nope&basis=zzz&segment=%E0%A4&statistic=%3Cscript%3E&open=nothing,x&section=missing&junk=1",
    "#tab=days28",  # a period without results: its tab is disabled
    "#%%%=&&==",
    "#tab=weekly&section=filter-basis",  # an id outside the report's content is no section
]


@pytest.mark.parametrize("fragment_text", INVALID)
def test_unknown_values_fall_back_to_defaults(browser, site, fragment_text):
    pg = open_page(browser, site.url + PAGE + fragment_text)
    v = view(pg)
    expected_tab = "weekly" if "tab=weekly" in fragment_text else "overall"
    assert (v["tab"], v["basis"], v["segment"], v["statistic"], v["filter"], v["open"]) == (
        expected_tab,
        "enrollments",
        "all",
        "",
        "",
        [],
    )
    assert v["panels"] == [f"tab-{expected_tab}"] and len(v["metrics"]) > 0
    # the address shows what is on screen: what was not understood is dropped
    assert fragment(pg) == ("#tab=weekly" if expected_tab == "weekly" else "")
    assert pg.console_errors == []
    pg.close()


def test_valid_values_are_kept_beside_invalid_ones_and_old_links_still_work(browser, site):
    pg = open_page(browser, site.url + PAGE + "#tab=weekly&segment=bogus&statistic=binomial&filter=" + quote("<b>&"))
    v = view(pg)
    assert (v["tab"], v["segment"], v["statistic"], v["filter"]) == ("weekly", "all", "binomial", "<b>&")
    assert v["metrics"] == []  # nothing matches that text: nothing shown, nothing broken
    assert fragment(pg) == "#tab=weekly&statistic=binomial&filter=%3Cb%3E%26"
    pg.close()
    # the fragments of earlier pages: a period, or an element to reveal
    pg = open_page(browser, site.url + PAGE + "#daily")
    assert view(pg)["tab"] == "daily" and fragment(pg) == "#tab=daily"
    pg.close()
    pg = open_page(browser, site.url + PAGE + "#tab-weekly")
    assert view(pg)["tab"] == "weekly"
    pg.close()
    pg = open_page(browser, site.url + PAGE)
    target = pg.evaluate(
        "document.querySelector('#tab-daily section.view[data-segment=windows_users][data-basis=exposures]"
        " article.metric').id"
    )
    pg.close()
    pg = open_page(browser, site.url + PAGE + "#" + target)
    v = view(pg)
    assert (v["tab"], v["basis"], v["segment"]) == ("daily", "exposures", "windows_users") and target in v["metrics"]
    pg.wait_for_timeout(300)
    assert (
        in_viewport(pg, target) and fragment(pg) == f"#tab=daily&basis=exposures&segment=windows_users&section={target}"
    )
    assert pg.console_errors == []
    pg.close()

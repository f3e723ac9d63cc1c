"""Benchmark: a report page in Chromium — time to the summary, lazy figures, and how long
switching tabs, filters and history entries takes. Reported in docs/performance.md (section
``browser-views``), never asserted.

    .venv/bin/python benchmarks/browser_views.py --page build/real-size/real/bench_real_size.html
    .venv/bin/python benchmarks/browser_views.py --render large          # render, then measure
    .venv/bin/python benchmarks/browser_views.py --page P --baseline HEAD --no-write

A page rendered before the page's script or CSS last changed is measured with today's
``templates/static/report.js`` and ``partybal.css``: the inlined ``<style>`` and last ``<script>``
are replaced in a copy served beside the page's figures (the report body, what R drew, is unchanged
by those files). ``--baseline REV`` measures the same page with that git revision's script and CSS
too, in the same run, for a before/after.

Each action is timed inside the page: ``performance.now()`` just before the click or change event
is dispatched, until a ``setTimeout(0)`` queued from the next ``requestAnimationFrame`` callback runs,
i.e. after the style, layout and paint of that frame. Headless Debian Chromium, 1280×1000,
page served from 127.0.0.1; medians over ``--runs`` fresh page loads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.procstats import write_section  # noqa: E402
from partybal import layout  # noqa: E402
from tests.helpers import StaticSite, launch_chromium  # noqa: E402
from tests.support import synthetic  # noqa: E402

STATIC = ROOT / "templates" / "static"
SECTION = "browser-views"
REPRODUCE = (
    "Reproduce: `.venv/bin/python benchmarks/browser_views.py [--page PAGE]… [--render large]… [--baseline REV]` "
    "(a page rendered earlier is measured with today's script and CSS inlined; see the script's docstring)."
)
SIZES = ("large", "10 branches", "real")  # synthetic.BENCHMARK_SHAPES

# Timed in the page: dispatch, then the next frame's rAF, then a task after its paint.
TIMED = """async ([sel, kind, value]) => {
  const el = document.querySelector(sel);
  if (!el || (kind === 'back' && history.length <= window.__historyAtLoad)) return null;
  const t0 = performance.now();
  if (kind === 'click') el.click();
  else if (kind === 'back') history.back();
  else { el.value = value; el.dispatchEvent(new Event(kind === 'type' ? 'input' : 'change', {bubbles: true})); }
  if (kind === 'back') await new Promise(r => addEventListener('popstate', r, {once: true}));
  await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  return performance.now() - t0;
}"""

SUMMARY_PROBE = """performance.setResourceTimingBufferSize(100000);
(function () { function check() { var h = document.querySelector('#summary h2');
if (h && h.getBoundingClientRect().height > 0) { window.__summaryVisible = performance.now(); return; }
requestAnimationFrame(check); } requestAnimationFrame(check); })();"""


def static_from(rev: str | None, name: str) -> str:
    if rev is None:
        return (STATIC / name).read_text()
    return subprocess.run(
        ["git", "show", f"{rev}:templates/static/{name}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def reinline(html: str, css: str, js: str) -> str:
    """The page with its inlined stylesheet (the first <style>) and script (the last <script>)
    replaced; the report body in between is left as rendered."""
    head, sep, rest = html.partition("<style>\n")
    _, sep2, rest = rest.partition("</style>")
    if not (sep and sep2):
        raise SystemExit("the page has no inlined <style>: not a partybal report page")
    html = head + sep + css + "\n" + sep2 + rest
    at = html.rfind("<script>\n")
    end = html.find("</script>", at)
    if at < 0 or end < 0:
        raise SystemExit("the page has no inlined <script>: not a partybal report page")
    # timing marks around the page's script (this copy only): how long the script takes to start
    before = "<script>window.__scriptStart = performance.now();</script>\n"
    after = "</script>\n<script>window.__scriptEnd = performance.now();"
    return html[:at] + before + "<script>\n" + js + "\n" + after + html[end:]


def stage(page: Path, into: Path, name: str, css: str, js: str) -> str:
    """Write the re-inlined copy into ``into`` beside a link to the page's figures; its file name."""
    files = page.with_name(page.stem + "_files")
    link = into / files.name
    if files.exists() and not link.exists():
        link.symlink_to(files.resolve(), target_is_directory=True)
    out = into / f"{page.stem}.{name}.html"
    out.write_text(reinline(page.read_text(), css, js))
    return out.name


def actions(pg) -> list[tuple[str, str, str, str]]:
    """(label, selector, kind, value), in order, from the page's own tabs and options."""
    tabs = pg.eval_on_selector_all("button.tab:not([disabled])", "els => els.map(e => e.dataset.tab)")
    opts = {
        key: pg.eval_on_selector_all(f"#filter-{key} option", "os => os.map(o => o.value)")
        for key in ("basis", "segment", "statistic")
    }
    out = []
    for tab in tabs[1:] + tabs[:1]:
        out.append((f"tab: {tab}", f"button[data-tab='{tab}']", "click", ""))
    if len(opts["basis"]) > 2:
        out += [
            ("basis: any", "#filter-basis", "change", ""),
            (f"basis: {opts['basis'][1]}", "#filter-basis", "change", opts["basis"][1]),
        ]
    if len(opts["segment"]) > 2:
        out += [("segment: any", "#filter-segment", "change", ""), ("segment: all", "#filter-segment", "change", "all")]
    if len(opts["statistic"]) > 1:
        st = "mean" if "mean" in opts["statistic"] else opts["statistic"][1]
        out += [
            (f"statistic: {st}", "#filter-statistic", "change", st),
            ("statistic: any", "#filter-statistic", "change", ""),
        ]
    out += [
        ("metric filter: type `a`", "#filter-metric", "type", "a"),
        ("metric filter: type `active`", "#filter-metric", "type", "active"),
        ("metric filter: clear", "#filter-metric", "type", ""),
        ("history back (popstate)", "body", "back", ""),
    ]
    return out


def measure(browser, url: str, runs: int) -> dict:
    loads: list[dict] = []
    times: dict[str, list[float]] = {}
    order: list[str] = []
    for _ in range(runs):
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        pg.add_init_script(SUMMARY_PROBE)
        pg.goto(url, wait_until="commit")
        pg.wait_for_selector("#summary h2", state="visible")
        pg.wait_for_load_state("load")
        pg.wait_for_timeout(300)
        load = pg.evaluate(
            """() => { const n = performance.getEntriesByType('navigation')[0];
            const fcp = performance.getEntriesByName('first-contentful-paint')[0];
            const imgs = Array.from(document.querySelectorAll('img.plot'));
            const fetched = performance.getEntriesByType('resource').filter(r => r.initiatorType === 'img').length;
            window.__historyAtLoad = history.length;
            return {script: window.__scriptEnd - window.__scriptStart, summary: window.__summaryVisible || null,
                    fcp: fcp ? fcp.startTime : null,
                    dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, bytes: n.encodedBodySize,
                    images: imgs.length, fetched: fetched,
                    lazy: imgs.filter(i => i.loading === 'lazy').length}; }"""
        )
        loads.append(load)
        # lazy figures: open the tab with the most figures in view, scroll to its first figure, wait
        # 1.5 s, count the figures fetched (the rest of the tab's figures wait for the reader)
        lazy = pg.evaluate(
            """async () => {
            const fetched = () => performance.getEntriesByType('resource')
                .filter(r => r.initiatorType === 'img').length;
            const tabs = Array.from(document.querySelectorAll('button.tab:not([disabled])'));
            const shown = () => Array.from(document.querySelectorAll('.tab-panel:not(.hidden) img.plot'))
                .filter(i => i.offsetParent !== null);
            let best = [tabs[0], -1];
            for (const t of tabs) { t.click(); const n = shown().length; if (n > best[1]) best = [t, n]; }
            best[0].click();
            const before = fetched();
            const first = shown()[0];
            if (first) first.closest('article').scrollIntoView();
            await new Promise(r => setTimeout(r, 1500));
            const after = fetched();
            scrollTo(0, 0);
            tabs[0].click();  // back where the actions start
            window.__historyAtLoad = history.length;
            return {tab_figures: best[1], tab_fetched: after - before, tab: best[0].dataset.tab}; }"""
        )
        loads[-1].update(lazy)
        for label, sel, kind, value in actions(pg):
            if label not in times:
                order.append(label)
            ms = pg.evaluate(TIMED, [sel, kind, value])
            if ms is not None:
                times.setdefault(label, []).append(ms)
        loads[-1]["errors"] = len(errors)
        pg.close()
    return {"loads": loads, "times": {k: times[k] for k in order if k in times}}


def med(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def intro(runs: int) -> list[str]:
    load_avg = os.getloadavg()[0]
    return [
        "## The report page in the browser: first screen, lazy figures, switching views",
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, 2 cores shared with other work "
        f"(load average {load_avg:.1f} at the end), by `benchmarks/browser_views.py`: headless Debian Chromium, "
        f"1280×1000, page served from 127.0.0.1, {runs} fresh page loads, median (max) ms. "
        "Each action is timed in the page from just before the event is dispatched until a task queued by the "
        "next `requestAnimationFrame` runs (after that frame's style, layout and paint). Reported, never asserted. "
        "Targets (issue 18): summary on screen within 1 s, switching tabs or filters within 100 ms.",
        "",
        "What keeps it fast (`templates/static/report.js`, `partybal.css`): metric sections off screen are "
        "neither laid out nor painted (`content-visibility: auto`, each keeping its last size); a filter touches "
        "only the tab on screen (another tab catches up when it is chosen) and only elements whose visibility "
        'changes; the page\'s parts are read once at start-up; figures are `loading="lazy" decoding="async"` '
        "(Chromium fetches lazy images before it prints). The summary comes first in the HTML, so it is on "
        "screen long before the whole page is parsed.",
        "",
    ]


def report(page_desc: str, results: dict[str, dict]) -> str:
    names = list(results)
    lines = [f"**{page_desc}**", ""]
    head = "| | " + " | ".join(names) + " |"
    lines += [head, "|---|" + "---:|" * len(names)]

    def row(label, key, fmt="{:.0f}"):
        cells = []
        for n in names:
            vals = [ld[key] for ld in results[n]["loads"]]
            cells.append(
                fmt.format(med(vals))
                + (
                    f" ({fmt.format(max(v for v in vals if v is not None))})"
                    if len(vals) > 1
                    and key not in ("images", "fetched", "lazy", "bytes", "tab_figures", "tab_fetched", "errors")
                    else ""
                )
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("summary heading laid out (ms after navigation start)", "summary")
    row("first contentful paint (ms)", "fcp")
    row("DOMContentLoaded (ms)", "dcl")
    row("load event (ms)", "load")
    row("the page's script: start-up (ms)", "script")
    row("script errors", "errors")
    row("figures on the page", "images")
    row("figures with `loading=lazy`", "lazy")
    row("figures fetched by the load event + 300 ms (first screen)", "fetched")
    tab = results[names[-1]]["loads"][0].get("tab", "?")
    row(f"figures shown on the {tab} tab (the tab with the most)", "tab_figures")
    row("… fetched 1.5 s after scrolling to its first figure (lazy: only those near the viewport)", "tab_fetched")
    for label in dict.fromkeys(k for n in names for k in results[n]["times"]):
        cells = []
        for n in names:
            vals = results[n]["times"].get(label)
            cells.append(f"{med(vals):.0f} ({max(vals):.0f})" if vals else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_page(page: Path) -> str:
    page = page.resolve()
    html = page.read_text()
    mb = len(html.encode()) / 1e6
    articles, figures = html.count('<article class="metric"'), html.count('<img class="plot"')
    name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
    when = dt.datetime.fromtimestamp(page.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"`{name}` (rendered {when}): {mb:.1f} MB of HTML, {articles:,} metric sections, {figures:,} figures"


def render(size: str, out: Path) -> Path:
    spec = synthetic.benchmark_spec(size, "bench")
    page = out / "site" / layout.page_name(layout.file_slug(spec.slug))
    if page.exists():
        return page
    results = out / "results"
    if not results.exists():
        synthetic.write_experiment(results, spec)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "partybal", "render", spec.slug, "--results", str(results), "--out", str(out / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"render failed: {proc.stderr.strip().splitlines()[-1:]}")
    print(f"rendered {size} in {time.monotonic() - started:.0f} s: {page}", file=sys.stderr)
    return page


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--page", type=Path, action="append", help="a rendered report page (its _files folder beside it)")
    ap.add_argument(
        "--render",
        choices=sorted(SIZES),
        action="append",
        help="render this synthetic size into build/browser-views/ (kept, reused)",
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--baseline", metavar="REV", help="also measure with this git revision's report.js and partybal.css"
    )
    ap.add_argument("--no-write", action="store_true", help="print, do not write docs/performance.md")
    args = ap.parse_args()
    pages = list(args.page or [])
    for size in args.render or []:
        pages.append(render(size, ROOT / "build" / "browser-views" / size.replace(" ", "-")))
    if not pages:
        raise SystemExit("give --page PAGE or --render SIZE")
    for page in pages:
        if not page.is_file():
            raise SystemExit(f"no page at {page}")
    import playwright.sync_api as api

    variants = {}
    if args.baseline:
        variants[f"script of {args.baseline}"] = (
            static_from(args.baseline, "partybal.css"),
            static_from(args.baseline, "report.js"),
        )
    variants["today's script"] = (static_from(None, "partybal.css"), static_from(None, "report.js"))
    tables = []
    for page in pages:
        results = {}
        with tempfile.TemporaryDirectory(prefix="browser-views-") as tmp:
            names = {
                label: stage(page, Path(tmp), re.sub(r"\W+", "-", label), css, js)
                for label, (css, js) in variants.items()
            }
            with StaticSite(Path(tmp)) as server, api.sync_playwright() as p:
                browser = launch_chromium(p)
                for label, name in names.items():
                    results[label] = measure(browser, server.url + name, args.runs)
                browser.close()
        tables.append(report(describe_page(page), results))
    text = "\n".join(intro(args.runs)) + "\n" + "\n\n".join(tables) + "\n\n" + REPRODUCE
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "performance.md", SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

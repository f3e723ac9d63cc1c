"""Case 7: a corpus of bad input (tests/corpus/) through the whole pipeline.

Every case ends in a clear status on the TOC or is ignored with a log line; no function crashes
(processes stay up, no tracebacks in their logs), nothing runs code (a marker file never appears),
nothing escapes HTML (Chromium: no dialog, the text shows literally) and nothing writes outside its
own experiment's objects in the site bucket.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from partybal import layout
from partybal.local import stack as localstack
from tests.reliability import support

pytestmark = pytest.mark.emulators

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
P = "rel_c_"


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def content_cases(marker: str) -> dict[str, dict[str, bytes]]:
    """case → {object name: content}; every object name valid, the content bad or hostile."""
    md, stats, errs = corpus("metadata.json"), corpus("statistics_valid.json"), corpus("errors_valid.json")

    def exp(
        case: str, statistics: bytes | None = None, metadata: bytes = md, errors: bytes | None = errs
    ) -> dict[str, bytes]:
        fs = P + case
        out = {layout.results_name(layout.Kind.METADATA, fs): metadata}
        if statistics is not None:
            out[layout.results_name(layout.Kind.STATISTICS, fs, "overall")] = statistics
        if errors is not None:
            out[layout.results_name(layout.Kind.ERRORS, fs)] = errors
        return out

    def hostile(name: str) -> bytes:
        return corpus(name).replace(b"MARKER", marker.encode())

    big = b"[" + b" " * (50 * 1024 * 1024) + stats.strip()[1:]  # 50 MB: whitespace, then valid rows
    return {
        "malformed": exp("malformed", corpus("malformed.json")),
        "truncated": exp("truncated", corpus("truncated.json")),
        "empty_array": exp("empty_array", corpus("empty_array.json")),
        "not_an_array": exp("not_an_array", corpus("not_an_array.json")),
        "schema_invalid": exp("schema_invalid", corpus("schema_invalid.json")),
        "nan_infinity": exp("nan_infinity", corpus("nan_infinity.json")),
        "unknown_statistic": exp("unknown_statistic", corpus("unknown_statistic.json")),
        "malformed_metadata": exp("malformed_metadata", stats, metadata=corpus("truncated.json")),
        "big_50mb": exp("big_50mb", big),
        "hostile_metrics": exp(
            "hostile_metrics",
            hostile("hostile_metrics_statistics.json"),
            metadata=hostile("hostile_metrics_metadata.json"),
        ),
        "hostile_branches": exp("hostile_branches", hostile("hostile_branches_statistics.json")),
        "hostile_errors": exp(
            "hostile_errors",
            None,
            metadata=hostile("hostile_description_metadata.json"),
            errors=hostile("hostile_errors.json"),
        ),
    }


def ignored_names() -> list[str]:
    return [n.replace("SLUG", P + "ign") for n in json.loads(corpus("object_names.json"))]


def render_requests(marker: str) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for r in json.loads(corpus("render_requests.json")):
        data = bytes.fromhex(r["data_hex"]) if "data_hex" in r else r["data"].replace("MARKER", marker).encode()
        out.append((data, r.get("attributes", {}), r["expect"]))
    return out


def test_bad_input_corpus(rstack, evidence, tmp_path):
    s = rstack
    marker = str(tmp_path / f"pwned-{uuid.uuid4().hex[:8]}")
    support.wait_quiet(s)
    offsets = support.log_offsets(s)
    site_before = support.site_objects(s)
    exec_before = len(s.executions())
    cases = content_cases(marker)
    bucket = s.storage().bucket(s.results_bucket)

    for files in cases.values():
        support.upload(s, files)
    upload_errors = {}
    names = ignored_names()
    for name in names:
        try:
            bucket.blob(name).upload_from_string(b"[]", content_type="application/json")
        except Exception as exc:  # noqa: BLE001 - the emulator may refuse a name: that is fine, recorded
            upload_errors[name] = type(exc).__name__
    publisher = s.publisher()
    requests = render_requests(marker)
    for data, attrs, _ in requests:
        publisher.publish(s.topic_path(localstack.RENDER_TOPIC), data, **attrs).result(timeout=30)

    # every content case settles with a status record; nothing stays pending or running
    fslugs = [P + c for c in cases]
    support.wait_until(
        lambda: all(s.status_record(f) for f in fslugs) and not support.busy(s),
        300,
        what="a status for every corpus experiment",
    )
    support.wait_quiet(s)
    s.check_alive()  # every function process (and the stand-in) still up

    index = support.index_html(s)
    outcomes = {}
    for case in cases:
        fs = P + case
        record = s.status_record(fs)
        state = record["state"]
        toc = support.toc_state(index, fs)
        outcomes[case] = state if state == "ok" else f"failed: {record['reason'][:80]}"
        assert state in ("ok", "failed"), (case, record)
        assert state == "ok" or record["reason"].strip(), f"{case}: failed without a reason"
        assert toc == state, f"{case}: TOC says {toc}, status says {state}"
        exs = support.executions_for(s, fs)
        swept = support.sweeper_requests(s, fs, offsets["sweep_pending"])
        assert 1 <= len(exs) <= len(cases[case]) + swept, (
            f"{case}: {len(exs)} executions for {len(cases[case])} uploads and {swept} sweeper requests"
        )
        assert all(len(e["attempts"]) <= 4 for e in exs), f"{case}: more attempts than max_retries allows"
    for case in ("malformed", "truncated", "not_an_array", "schema_invalid", "malformed_metadata"):
        assert s.status_record(P + case)["state"] == "failed", f"{case} must fail validation"

    # ignored object names: no render, no marker, no status; each left a log line
    finalize_log = support.log_lines(support.fn_log(s, "on_results_finalized"), offsets["on_results_finalized"])
    ignored_lines = [
        e.get("message", "") for e in finalize_log if str(e.get("message", "")).startswith("ignored event")
    ]
    for name in names:
        if name in upload_errors:
            continue
        if any(ord(c) < 0x20 for c in name):
            assert any("control characters" in line for line in ignored_lines), f"no 'ignored event' line for {name!r}"
            continue
        assert any(repr(name[:200]) in line or name in line for line in ignored_lines), (
            f"no 'ignored event' line for {name!r}"
        )
    # fake-gcs-server (filesystem backend) stores "a/../b" as "b"; Cloud Storage keeps names as
    # they are. A name the emulator normalised into a valid results name is, from then on, that
    # object: the sweeper's reconciliation renders it (a deviation of the emulator, recorded).
    stored = {b.name for b in s.storage().list_blobs(bucket) if (P + "ign") in b.name}
    normalised = sorted(n for n in stored if n not in names)
    normalised_slugs = set()
    for n in normalised:
        try:
            normalised_slugs.add(layout.parse_results_name(n).file_slug)
        except layout.Ignored:
            pass
    state_names = [b.name for b in s.storage().list_blobs(s.storage().bucket(s.state_bucket))]
    made = [n for n in state_names if (P + "ign") in n and not any(f"/{fs}" in n for fs in normalised_slugs)]
    assert not made, "an ignored object made a marker or status"
    # render requests: odd characters map to a harmless file slug (by design, see
    # tests/pipeline/test_dispatch.py::test_odd_characters_become_a_harmless_file_slug): that
    # render finds no results and fails; the rest are rejected with one ERROR line each
    harmless = {layout.file_slug(d.decode().strip()) for d, _, expect in requests if expect == "harmless file slug"}
    new_execs = s.executions()[exec_before:]
    stray = [
        e["slug"]
        for e in new_execs
        if not any(layout.file_slug(e["slug"] or "") == f for f in [*fslugs, *normalised_slugs, *harmless])
    ]
    assert not stray, f"executions for ignored names or rejected requests: {stray}"
    for f in harmless:
        assert layout.is_file_slug(f)
        record = s.status_record(f)
        assert record and record["state"] == "failed" and record["page"] is None, (f, record)
        assert support.toc_state(support.index_html(s), f) is None, f"{f}: listed in the TOC without results"
    dispatch_log = support.log_lines(support.fn_log(s, "dispatch_render"), offsets["dispatch_render"])
    rejected = [e for e in dispatch_log if str(e.get("message", "")).startswith("render request rejected")]
    n_rejected = sum(1 for *_, expect in requests if expect == "rejected")
    assert len(rejected) == n_rejected, f"{len(rejected)} rejections for {n_rejected} bad requests"

    # no traceback in any function's log, no code ran
    assert support.tracebacks(s, offsets) == {fn: 0 for fn in offsets}
    assert not Path(marker).exists(), "hostile input ran code"

    # the site bucket: only index.html and the corpus experiments' own objects changed
    site_after = support.site_objects(s)
    changed = {n for n, g in site_after.items() if site_before.get(n) != g} | (set(site_before) - set(site_after))
    own = [*fslugs, *normalised_slugs]

    def own_object(n: str, f: str) -> bool:  # its page, figures, history summaries (pipeline/history.py) and feed
        return n in (layout.page_name(f), layout.experiment_feed_name(f)) or n.startswith(
            (layout.assets_root(f) + "/", layout.history_dir(f))
        )

    # the TOC's own objects: each prefix's index and site feed (a snapshot rebuilds every prefix's)
    toc_objects = {name(p) for p in layout.ALLOWED_PREFIXES for name in (layout.index_name, layout.feed_name)}
    outside = [n for n in changed if n not in toc_objects and not any(own_object(n, f) for f in own)]
    assert not outside, f"written outside the experiments' own objects: {outside}"

    # hostile text on the pages: shown literally, no dialog, no injected element (Chromium)
    pages = [
        P + c
        for c in ("hostile_metrics", "hostile_branches", "hostile_errors")
        if s.status_record(P + c)["state"] == "ok"
    ]
    assert P + "hostile_errors" in pages, "the errors-only hostile page must render"
    dialogs, literal = browse(s, pages + ["index"], marker)
    assert dialogs == [], f"a dialog fired: {dialogs}"
    assert literal, "the hostile strings are not shown literally"
    assert not Path(marker).exists()

    ev = evidence
    ev.row(
        "7 bad input: content",
        f"{len(cases)} experiments with bad/hostile files (malformed, truncated, [] , not an array, schema-invalid, NaN/Infinity, unknown statistic, bad metadata, 50 MB, hostile metric/branch/error names)",
        1,
        "status ok|failed with a reason, TOC shows the same state, ≤ 1 execution per upload, ≤ 4 attempts each",
        "; ".join(f"{k}: {v}" for k, v in outcomes.items()),
    )
    ev.row(
        "7 bad input: object names",
        f"{len(names)} ignorable names (unknown period, temps, outside prefixes, traversal-looking, hostile/300-char slugs)",
        1,
        "no marker/status/execution, an 'ignored event' log line each",
        f"{len(names) - len(upload_errors)} ignored with a log line; {len(upload_errors)} refused by the emulator: {sorted(upload_errors)}; "
        f"stored under a normalised name by fake-gcs-server (then rendered as that name): {normalised}",
    )
    ev.row(
        "7 bad input: render requests",
        f"{len(requests)} hostile render-request messages",
        1,
        "rejected with one ERROR line each and acknowledged, or (odd characters, by design) mapped to a harmless [A-Za-z0-9_] file slug whose render fails with no page and no TOC row",
        f"{len(rejected)} rejected; {len(harmless)} mapped to harmless file slugs (status failed, no page)",
    )
    ev.row(
        "7 bad input: safety",
        "all of the above",
        1,
        "functions up, 0 tracebacks, marker file absent, site bucket changes only index.html + own objects, Chromium: 0 dialogs, hostile text literal",
        f"{len(changed)} site objects changed, 0 outside; pages checked: {', '.join(pages)} + index",
    )


def browse(stack, pages: list[str], marker: str) -> tuple[list[str], bool]:
    from playwright.sync_api import sync_playwright

    from tests.helpers import launch_chromium

    probes = [
        "</script><script>alert('xss-script')</script>",
        "<img src=x onerror=alert('xss-img')>",
        '"); system("touch ' + marker + '"); ("',
    ]
    dialogs: list[str] = []
    seen_literal = True
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            for name in pages:
                url = stack.site_url + ("index.html" if name == "index" else layout.page_name(name))
                page.goto(url, wait_until="load")
                page.wait_for_timeout(300)
                text = page.inner_text("body")
                inline_scripts = page.evaluate(
                    "() => Array.from(document.scripts).filter(s => s.textContent.includes('xss-')).length"
                )
                assert inline_scripts == 0, f"{name}: a hostile string became a script"
                if name != "index":
                    found = [h for h in probes if h in text]
                    seen_literal = seen_literal and bool(found)
                    assert not page.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length"), (
                        f"{name}: injected <img>"
                    )
        finally:
            browser.close()
    return dialogs, seen_literal

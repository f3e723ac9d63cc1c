"""Render history: the summary of what a page showed, and what changed since the previous one
(pure functions; the bucket side is in test_history_job.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from partybal import layout
from partybal.page import templating
from partybal.page.report import build_page
from partybal.page.results import load_experiment
from partybal.pipeline import history
from partybal.storage import LocalResults
from tests.support import history_data, synthetic

SLUG = "hist-exp"
FSLUG = layout.file_slug(SLUG)
RID1 = "20261120T040000000000Z-aaaaaa"
RID2 = "20261121T040000000000Z-bbbbbb"
RID3 = "20261122T040000000000Z-cccccc"
OVERALL = layout.results_name(layout.Kind.STATISTICS, FSLUG, "overall")
WEEKLY = layout.results_name(layout.Kind.STATISTICS, FSLUG, "weekly")
METADATA = layout.results_name(layout.Kind.METADATA, FSLUG)
ERRORS = layout.results_name(layout.Kind.ERRORS, FSLUG)


def spec():
    return history_data.spec(SLUG)


def files() -> dict[str, bytes]:
    return history_data.files(SLUG)


set_uplift = history_data.set_uplift


def load(tmp_path: Path, content: dict[str, bytes], name: str = "a"):
    root = tmp_path / name
    for rel, data in content.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return load_experiment(LocalResults(root), SLUG)


def summarize(tmp_path, content, rid=RID1, name="a"):
    return history.summarize(load(tmp_path, content, name), rid, rendered_at=history.render_time(rid))


def metric_of(text: str) -> str:
    """``uri_count`` of ``URI Count (uri_count), treatment vs control …``."""
    return text.split(",")[0].split("(")[-1].rstrip(")")


def estimates(summary):
    rows = history.flatten(summary["estimates"])
    return {tuple(r[:4]): dict(zip(history.ESTIMATE_COLUMNS, r, strict=True)) for r in rows}


def test_summary_records_what_the_page_showed(tmp_path):
    content = files()
    content[OVERALL] = set_uplift(content[OVERALL], "uri_count", 0.02, 0.05, 0.08)
    content[OVERALL] = set_uplift(content[OVERALL], "crash_rate", 0.02, 0.05, 0.08)  # lower is better
    meta = json.loads(content[METADATA])
    meta["version_info"] = {
        "jetstream_image": {"path": "gcr.io/moz-fx-data-experiments/jetstream", "revision": "2026.11.1"}
    }
    content[METADATA] = json.dumps(meta).encode()
    results = load(tmp_path, content)
    s = history.summarize(results, RID1)
    assert s["format"] == history.FORMAT and s["render_id"] == RID1 and s["file_slug"] == FSLUG
    assert s["inputs"] == {f.name: f.generation for f in results.files} and len(s["inputs"]) == 5
    assert s["analysis_start_time"] == "2026-09-20T04:10:00+00:00"
    assert s["version_info"]["jetstream_image"]["revision"] == "2026.11.1"
    assert s["windows"] == {"overall": [1], "weekly": [1], "daily": [1, 2]}
    assert s["reference_branch"] == "control"
    assert s["metrics"] == ["crash_rate", "search_count", "uri_count"]
    assert s["metric_names"] == {"uri_count": "URI Count", "crash_rate": "Crash rate", "search_count": "Search Count"}
    est = estimates(s)
    # one per metric × branch (not the reference) × basis × segment, overall
    assert set(est) == {(m, "treatment", "enrollments", "all") for m in ("uri_count", "crash_rate", "search_count")}
    uri = est[("uri_count", "treatment", "enrollments", "all")]
    assert (uri["statistic"], uri["period"], uri["window"]) == ("mean", "overall", 1)
    assert (uri["lower"], uri["point"], uri["upper"], uri["ci_width"]) == (0.02, 0.05, 0.08, 0.95)
    assert uri["significance"] == "better"
    assert est[("crash_rate", "treatment", "enrollments", "all")]["significance"] == "worse"  # higher crash rate
    assert est[("search_count", "treatment", "enrollments", "all")]["significance"] == "unclear"
    assert (
        s["errors_total"] == 1
        and s["errors"][0]["message"] == "Synthetic error 0"
        and s["errors"][0]["level"] == "ERROR"
    )
    json.loads(history.encode(s))  # JSON, no NaN


def test_without_overall_the_latest_window_is_summarized(tmp_path):
    content = files()
    del content[OVERALL]
    sp = dataclasses.replace(spec(), windows={"weekly": 3})
    content[WEEKLY] = synthetic.experiment_files(sp)[WEEKLY]
    s = summarize(tmp_path, content)
    uri = estimates(s)[("uri_count", "treatment", "enrollments", "all")]
    assert (uri["period"], uri["window"]) == ("weekly", 3)


def test_significance_direction():
    assert history.significance(0.01, 0.2, True) == "better"
    assert history.significance(0.01, 0.2, False) == "worse"
    assert history.significance(-0.3, -0.1, True) == "worse"
    assert history.significance(-0.3, -0.1, None) == "lower"  # the metadata does not know the metric
    assert history.significance(-0.1, 0.1, True) == "unclear"
    assert history.significance(None, None, True) is None


def test_first_render_says_so(tmp_path):
    d = history.diff(None, summarize(tmp_path, files()))
    assert d.first and d.items == []
    changes = history.page_changes(d, FSLUG)
    assert changes.first and "first render" in changes.note


def test_significance_flips_both_ways_and_nothing_else(tmp_path):
    base = files()
    base[OVERALL] = set_uplift(base[OVERALL], "search_count", 0.01, 0.03, 0.05)  # better before
    before = summarize(tmp_path, base, RID1, "a")
    changed = dict(base)
    changed[OVERALL] = set_uplift(changed[OVERALL], "uri_count", 0.02, 0.05, 0.08)  # became better
    changed[OVERALL] = set_uplift(changed[OVERALL], "crash_rate", 0.02, 0.05, 0.08)  # became worse
    changed[OVERALL] = set_uplift(changed[OVERALL], "search_count", -0.01, 0.0, 0.01)  # no longer clear
    after = summarize(tmp_path, changed, RID2, "b")
    d = history.diff(before, after)
    assert not d.first and d.since_render_id == RID1
    assert {i.group for i in d.items} == {"significance"}, d.items
    by_metric = {metric_of(i.text): i for i in d.items}
    assert by_metric["uri_count"].kind == "better" and "became better" in by_metric["uri_count"].text
    assert (
        "+5.0% [+2.0%, +8.0%]" in by_metric["uri_count"].text
        and "(was +0.0% [-1.0%, +1.0%])" in by_metric["uri_count"].text
    )
    assert by_metric["crash_rate"].kind == "worse"
    assert (
        by_metric["search_count"].kind == "unclear" and "no longer clear (was better)" in by_metric["search_count"].text
    )
    # and back: the reverse diff says the opposite
    back = {metric_of(i.text): i.kind for i in history.diff(after, before).items}
    assert back == {"uri_count": "unclear", "crash_rate": "unclear", "search_count": "better"}
    # the same summary twice: no change at all
    assert history.diff(after, after).items == []
    assert "Nothing" in history.page_changes(history.diff(after, after), FSLUG).note


def test_better_to_worse_names_both(tmp_path):
    a, b = files(), files()
    a[OVERALL] = set_uplift(a[OVERALL], "uri_count", 0.02, 0.05, 0.08)
    b[OVERALL] = set_uplift(b[OVERALL], "uri_count", -0.08, -0.05, -0.02)
    (item,) = history.diff(summarize(tmp_path, a, RID1, "a"), summarize(tmp_path, b, RID2, "b")).items
    assert item.kind == "worse" and "became worse (was better)" in item.text


def test_windows_added_metric_vanished_errors_cleared_config_changed(tmp_path):
    before = summarize(tmp_path, files(), RID1, "a")
    content = files()
    sp = dataclasses.replace(spec(), windows={"overall": 1, "weekly": 3, "daily": 2})
    content[WEEKLY] = set_uplift(synthetic.experiment_files(sp)[WEEKLY], None, -0.01, 0.0, 0.01)  # weekly 1 → 1, 2, 3
    for name in (OVERALL, WEEKLY, layout.results_name(layout.Kind.STATISTICS, FSLUG, "daily")):
        content[name] = json.dumps([r for r in json.loads(content[name]) if r["metric"] != "search_count"]).encode()
    content[ERRORS] = b"[]"
    meta = json.loads(content[METADATA])
    meta["version_info"] = {"metric_definitions": [{"path": "metric-hub", "revision": "abc123"}]}
    meta["metrics"]["uri_count"]["bigger_is_better"] = False
    content[METADATA] = json.dumps(meta).encode()
    after = summarize(tmp_path, content, RID2, "b")
    d = history.diff(before, after)
    texts = {g: [i.text for i in d.of(g)] for g in history.GROUPS}
    assert texts["windows"] == ["Weekly: new windows 2–3"]
    assert texts["metrics"] == ["Search Count (search_count) vanished"]
    assert texts["errors"] == [
        "Cleared: ERROR StatisticComputationException: Synthetic error 0"
        " (metric uri_count, statistic deciles, segment all, basis enrollments)"
    ]
    assert any(t.startswith("version_info: null → ") and "abc123" in t for t in texts["config"]), texts["config"]
    assert any("Metric or outcome definitions" in t for t in texts["config"])
    assert texts["significance"] == []  # search_count vanished: not a flip; the rest held 0 both times
    # and the other way round: windows gone, metric appeared, error new
    rev = history.diff(after, before)
    assert [i.text for i in rev.of("metrics")] == ["Search Count (search_count) appeared"]
    assert [i.kind for i in rev.of("errors")] == ["error-new"]
    assert [i.kind for i in rev.of("windows")] == ["window-removed"]
    page = history.page_changes(d, FSLUG)
    assert [g.title for g in page.groups] == [
        "New windows",
        "Metrics that appeared or vanished",
        "Analysis errors",
        "Analysis configuration and versions",
    ]
    assert page.since == "2026-11-20 04:00 UTC"
    assert page.since_href == layout.history_name(FSLUG, RID1)


def test_a_period_that_appears_is_a_new_window(tmp_path):
    content = files()
    del content[WEEKLY]
    before = summarize(tmp_path, content, RID1, "a")
    after = summarize(tmp_path, files(), RID2, "b")
    assert [i.text for i in history.diff(before, after).of("windows")] == ["Weekly results appeared (1 window)"]


def test_digest_fits_custom_metadata_and_describes_the_render(tmp_path):
    before = summarize(tmp_path, files(), RID1, "a")
    d = history.Diff(first=False, since_render_id=RID1, items=[history.Item("significance", "better", "x" * 300)] * 500)
    meta = history.digest(d, before, recovered="R exited with status 1")
    assert len(json.dumps(meta).encode()) <= history.MAX_DIGEST_BYTES
    dg = history.read_digest(meta)
    assert dg["counts"] == {"significance": 500} and dg["recovered"] and 1 <= len(dg["lines"]) < 500
    assert history.describe(dg["counts"], recovered=True) == "recovered from a failed render, 500 significance changes"
    assert history.describe({}, first=True) == "first render"
    assert history.describe({}) == "no changes"


def test_real_size_summary_is_within_its_bound(tmp_path):
    """The real-size experiment (49 metrics, 4 branches, 4 segments, 2 bases: 1,128 estimates)
    without its daily file (≈ 270 MB, and it only adds its 28 window numbers to the summary): the
    summary is at most 128 KiB (measured ≈ 90 KiB); a summary never exceeds MAX_SUMMARY_BYTES."""
    sp = dataclasses.replace(synthetic.real_size_spec(), windows={"overall": 1, "weekly": 4}, grid_points=8)
    synthetic.write_experiment(tmp_path / "real", sp)
    results = load_experiment(LocalResults(tmp_path / "real"), sp.slug)
    s = history.summarize(results, RID1)
    size = len(history.encode(s)) + len(json.dumps(list(range(1, 29))))
    assert len(history.flatten(s["estimates"])) == 47 * 3 * 4 * 2 and s["estimates_left_out"] == 0
    assert size <= 128 * 1024, size
    # the hard cap: what does not fit is left out (segment "all" kept first) and counted
    cut = history.fit({**s, "estimates": history.flatten(s["estimates"])}, limit=40 * 1024)
    assert len(history.encode(cut)) <= 40 * 1024 and cut["estimates_left_out"] > 0
    kept = history.flatten(cut["estimates"])
    all_segment = [r for r in history.flatten(s["estimates"]) if r[3] == "all"]
    assert len([r for r in kept if r[3] == "all"]) == min(len(all_segment), len(kept))


def test_history_entries_newest_first_with_links():
    listed = [
        history.PastRender(layout.history_name(FSLUG, RID1), RID1, None, {"first": True, "counts": {}}),
        history.PastRender(
            layout.history_name(FSLUG, RID2), RID2, None, {"first": False, "counts": {"significance": 2, "windows": 1}}
        ),
    ]
    current = "20261122T040000000000Z-cccccc"
    entries, note = history.history_entries(listed, FSLUG, current, "1 error change")
    assert [e.render_id for e in entries] == [current, RID2, RID1] and entries[0].current
    assert [e.summary for e in entries] == ["1 error change", "1 window change, 2 significance changes", "first render"]
    assert entries[1].href == f"history/{FSLUG}/{RID2}.json" and entries[2].rendered_at == "2026-11-20 04:00 UTC"
    assert note == ""


def test_page_shows_changes_and_history(tmp_path):
    """The sections through the page shell (page.html.j2), fed by report.Changes / HistoryEntry."""
    a, b = files(), files()
    b[OVERALL] = set_uplift(b[OVERALL], "uri_count", 0.02, 0.05, 0.08)
    before = summarize(tmp_path, a, RID1, "a")
    results = load(tmp_path, b, "b")
    after = history.summarize(results, RID2)
    d = history.diff(before, after)
    entries, note = history.history_entries(
        [history.PastRender(layout.history_name(FSLUG, RID1), RID1, None, {"first": True})],
        FSLUG,
        RID2,
        "1 significance change",
    )
    page, _ = build_page(results, plotted=frozenset())
    page = dataclasses.replace(page, changes=history.page_changes(d, FSLUG), history=entries, history_note=note)
    html = templating.render("page.html.j2", page=page, body=templating.Markup("<p>body</p>"), index_href="index.html")
    assert "Changes since 2026-11-20 04:00 UTC" in html
    assert (
        '<li class="change better">URI Count (uri_count), treatment vs control'
        " (enrollments, segment all, overall): became better" in html
    )
    assert f'href="history/{FSLUG}/{RID1}.json"' in html and f"<code>{RID2}</code>" in html and "(this page)" in html
    first = dataclasses.replace(page, changes=history.page_changes(history.diff(None, after), FSLUG))
    assert "Changes: first render" in templating.render(
        "page.html.j2", page=first, body=templating.Markup(""), index_href="index.html"
    )
    plain = dataclasses.replace(page, changes=None, history=[])
    assert 'id="changes"' not in templating.render(
        "page.html.j2", page=plain, body=templating.Markup(""), index_href="index.html"
    )


@pytest.mark.parametrize("value", [{"estimates": "nonsense"}, {"estimates": {"m": {"b": {"x": {"s": [1]}}}}}, {}])
def test_a_malformed_previous_summary_is_read_as_empty(tmp_path, value):
    after = summarize(tmp_path, files())
    d = history.diff({"format": history.FORMAT, **value}, after)
    assert not d.first and d.of("significance") == []


def test_an_incomparable_previous_summary_does_not_stop_the_page(tmp_path, monkeypatch):
    """A summary of another partybal version (a field of another type): the page still renders
    and says the comparison was not possible."""

    class Site:  # list_history / read_previous stand-ins: one earlier summary
        pass

    results = load(tmp_path, files())
    odd = {"format": history.FORMAT, "render_id": RID1, "windows": {"weekly": 5}}
    monkeypatch.setattr(history, "list_history", lambda *a: [history.PastRender("x", RID1, None, None)])
    monkeypatch.setattr(history, "read_previous", lambda *a: odd)
    prepared = history.prepare(Site(), results, RID2)
    changes = prepared.sections[0]
    assert not changes.first and "could not be compared" in changes.groups[0].changes[0].text


def test_a_repeat_of_the_same_inputs_shows_the_page_it_repeats(tmp_path, monkeypatch):
    """A re-render with the same input generations (a duplicate delivery) writes no summary and
    shows the page of the render it repeats: the same "Changes since" and History, whose newest
    entry is that render; a recovery from a failed render is no repeat."""
    a, b = files(), files()
    b[OVERALL] = set_uplift(b[OVERALL], "uri_count", 0.02, 0.05, 0.08)
    first = summarize(tmp_path, a, RID1, "a")
    results = load(tmp_path, b, "b")
    second = history.summarize(results, RID2)
    assert history.content_key(second) == history.content_key(history.summarize(results, RID3))
    assert history.content_key(second) != history.content_key(first)
    listed = [
        history.PastRender(
            layout.history_name(FSLUG, rid), rid, None, history.read_digest(history.digest(history.diff(prev, s), s))
        )
        for rid, prev, s in ((RID1, None, first), (RID2, first, second))
    ]
    summaries = {RID1: first, RID2: second}
    monkeypatch.setattr(history, "list_history", lambda *a: listed)
    monkeypatch.setattr(
        history,
        "read_previous",
        lambda _site, _listed, rid: summaries.get(max((r for r in summaries if r < rid), default="")),
    )

    class Site:
        pass

    monkeypatch.setattr(history, "list_history", lambda *a: listed[:1])  # what RID2 listed
    shown_by_second = history.prepare(Site(), results, RID2)
    monkeypatch.setattr(history, "list_history", lambda *a: listed)
    again = history.prepare(Site(), results, RID3)
    assert again.repeat_of == listed[1] and again.write(Site()) == listed[1].name  # nothing written
    assert again.sections == shown_by_second.sections and again.sections[0].groups  # the flip, as RID2 showed it
    assert [e.render_id for e in again.sections[1]] == [RID2, RID1]
    recovery = history.prepare(Site(), results, RID3, previous_status={"state": "failed", "reason": "boom"})
    assert recovery.repeat_of is None and recovery.sections[0].note.startswith("Nothing")


def test_concurrent_duplicates_are_one_history_entry():
    key = {"key": "k1", "first": True, "counts": {}}
    listed = [
        history.PastRender("a", RID1, None, key),
        history.PastRender("b", RID2, None, key),  # a duplicate that ran at the same time: same summary
        history.PastRender("c", RID3, None, {"key": "k1", "recovered": "boom", "counts": {}}),
        history.PastRender("d", "20261124T040000000000Z-dddddd", None, None),  # written before keys were kept
        history.PastRender("e", "20261125T040000000000Z-eeeeee", None, None),
    ]
    assert [x.name for x in history.collapse(listed)] == ["a", "c", "d", "e"]

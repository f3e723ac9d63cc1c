"""The table of contents: pure row logic, the real buckets on fake-gcs-server, the 412 retry."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from pathlib import Path

import pytest

from partybal import layout
from partybal.pipeline import toc
from partybal.pipeline.state import Experiment, Listed, group_results, row_state
from tests.helpers import unavailable

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def listed(*names, gen=1):
    return [Listed(n, gen + i, T0 + dt.timedelta(hours=i)) for i, n in enumerate(names)]


def test_group_results_skips_junk_and_other_prefixes():
    objs = listed(
        "statistics/statistics_a_overall.json",
        "statistics/statistics_a_weekly.json",
        "statistics/statistics_a_weekly-abcdefgh.json",
        "metadata/metadata_a.json",
        "preview/metadata/metadata_p.json",
        "statistics/statistics_b_preenrollment_days28.json",
        "errors/errors_b.json",
    )
    got = group_results(objs, "")
    assert sorted(got) == ["a", "b"]
    assert got["a"].periods == {"overall", "weekly"} and len(got["a"].generations) == 3
    assert got["a"].updated == T0 + dt.timedelta(hours=3)
    assert got["b"].periods == {"preenrollment_days28"}
    assert sorted(group_results(objs, "preview/")) == ["p"]


def test_periods_text():
    assert toc.periods_text({"daily", "overall", "weekly"}, {"weekly": 3, "daily": 21, "overall": 1}) == "O W3 D21"
    assert toc.periods_text({"daily", "overall", "weekly", "days28"}, {}) == "O W D M"
    assert toc.periods_text({"preenrollment_weekly"}, {"preenrollment_weekly": 2}) == "PW2"
    assert toc.periods_text(set(), {"weekly": 3}) == ""


@pytest.mark.parametrize(
    "status,pending,expected",
    [
        (None, False, ("new", "")),
        (None, True, ("pending", "")),
        ({"state": "ok", "input_generations": {"m": 1}}, False, ("ok", "")),
        ({"state": "ok", "input_generations": {"m": "1"}}, False, ("ok", "")),
        (
            {"state": "ok", "input_generations": {"m": 0}},
            False,
            ("stale", "results changed since the page was rendered"),
        ),
        ({"state": "ok", "input_generations": {}}, False, ("stale", "results changed since the page was rendered")),
        ({"state": "failed", "reason": "x.json: bad", "input_generations": {"m": 1}}, False, ("failed", "x.json: bad")),
        (
            {"state": "failed", "reason": "x.json: bad", "input_generations": {}},
            False,
            ("stale", "last render failed: x.json: bad"),
        ),
        (
            {"state": "failed", "reason": "x.json: bad", "input_generations": {"m": 1}},
            True,
            ("pending", "last render failed: x.json: bad"),
        ),
        (
            {"state": "ok", "input_generations": "junk"},
            False,
            ("unknown", "status record: input_generations is not an object"),
        ),
        # written by another version, or corrupted: never a crash, the row says unknown and why
        (
            {"state": "ok", "input_generations": {"m": "²"}},
            False,
            ("unknown", "status record: generation of 'm' is not a number ('²')"),
        ),
        (
            {"state": "ok", "input_generations": {"m": "١"}},
            False,
            ("unknown", "status record: generation of 'm' is not a number ('١')"),
        ),
        (
            {"state": "ok", "input_generations": {"m": -1}},
            False,
            ("unknown", "status record: generation of 'm' is not a number ('-1')"),
        ),
        (
            {"state": "ok", "input_generations": {"m": True}},
            False,
            ("unknown", "status record: generation of 'm' is not a number ('True')"),
        ),
        (
            {"state": "done", "input_generations": {"m": 1}},
            False,
            ("unknown", "status record has an unknown state 'done'"),
        ),
        (
            {"state": "failed", "reason": ["x"], "input_generations": {"m": 1}},
            False,
            ("unknown", "status record: reason is not text"),
        ),
    ],
)
def test_row_state(status, pending, expected):
    exp = Experiment("e", {"m": 1}, {"overall"}, T0)
    assert row_state(exp, status, pending) == expected


def test_html_escapes_everything_and_needs_no_network():
    exp = Experiment("evil", {"metadata/metadata_evil.json": 1}, {"overall"}, T0)
    status = {
        "state": "failed",
        "reason": "<img src=x onerror=alert(1)> `r system('id')`",
        "name": '"><script>alert(1)</script>',
        "input_generations": {"metadata/metadata_evil.json": 1},
        "page": "https://evil.example/x.html",
    }
    html = toc.render_html(toc.toc_page({"evil": exp}, {"evil": status}, set(), ""))
    assert "<script>alert" not in html and "<img src=x" not in html and "`" not in html
    assert "&lt;script&gt;" in html
    assert "evil.example" not in html  # links are computed from the layout, never taken from a record
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)", html)  # no external resources


@pytest.fixture
def settings(buckets):
    return toc.Settings(results_bucket=buckets.results, site_bucket=buckets.site, state_bucket=buckets.state)


def put(gcs, bucket, name, body=b"{}"):
    blob = gcs.bucket(bucket).blob(name)
    blob.upload_from_string(body)
    return blob


def status_record(fslug, gens, state="ok", prefix="", **extra):
    return json.dumps(
        {
            "slug": fslug,
            "file_slug": fslug,
            "state": state,
            "reason": extra.pop("reason", ""),
            "input_generations": gens,
            "page": layout.page_name(fslug, prefix),
            "page_rendered_at": "2024-05-02T10:00:00+00:00",
            **extra,
        }
    ).encode()


def rows_of(html):
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r'<tr data-name="[^"]* ([A-Za-z0-9_]+)" data-state="([a-z]+)"', html)
    }


@pytest.mark.emulators
def test_index_from_buckets(gcs, buckets, settings):
    r = buckets.results
    done = [
        put(gcs, r, "statistics/statistics_done_overall.json"),
        put(gcs, r, "statistics/statistics_done_weekly.json"),
    ]
    put(gcs, r, "statistics/statistics_done_weekly-abcdefgh.ndjson")
    bad = put(gcs, r, "metadata/metadata_bad.json")
    put(gcs, r, "metadata/metadata_waiting.json")
    changed = put(gcs, r, "metadata/metadata_changed.json")
    put(gcs, r, "metadata/metadata_never.json")
    put(gcs, r, "preview/metadata/metadata_early.json")
    put(gcs, r, "unrelated/readme.txt")
    s = buckets.state
    put(
        gcs,
        s,
        layout.status_name("done"),
        status_record(
            "done",
            {b.name: b.generation for b in done},
            name="done-exp",
            windows={"overall": 1, "weekly": 4},
            analysis_start="2024-04-01T00:00:00+00:00",
        ),
    )
    put(
        gcs,
        s,
        layout.status_name("bad"),
        status_record(
            "bad", {bad.name: bad.generation}, state="failed", reason="metadata/metadata_bad.json: not valid JSON"
        ),
    )
    put(gcs, s, layout.pending_name("waiting"))
    put(gcs, s, layout.status_name("changed"), status_record("changed", {changed.name: changed.generation - 1}))
    put(gcs, s, layout.status_name("gone"), status_record("gone", {}))  # results deleted since: not listed

    name, attempts = toc.publish_index(gcs, settings, "")
    blob = gcs.bucket(buckets.site).get_blob(name)
    html = blob.download_as_text()
    assert name == "index.html" and attempts == 1
    assert blob.content_type == "text/html; charset=utf-8"
    assert rows_of(html) == {"done": "ok", "bad": "failed", "waiting": "pending", "changed": "stale", "never": "new"}
    assert "O W4" in html and "2024-04-01" in html and ">done-exp</a>" in html
    assert 'href="done.html"' in html and 'href="never.html"' not in html
    assert "not valid JSON" in html and "early" not in html

    name, _ = toc.publish_index(gcs, settings, "preview/")
    preview = gcs.bucket(buckets.site).blob(name).download_as_text()
    assert name == "preview/index.html" and rows_of(preview) == {"early": "new"}
    assert 'href="../index.html"' in preview


@pytest.mark.emulators
def test_concurrent_writer_causes_a_rebuild_not_a_lost_entry(gcs, buckets, settings, monkeypatch):
    put(gcs, buckets.results, "metadata/metadata_first.json")
    real_build = toc.build_index
    calls = []

    def racing_build(client, s, prefix):
        page = real_build(client, s, prefix)
        calls.append(len(page.rows))
        if len(calls) == 1:
            # another rebuild, which saw a newer listing, writes while we were listing
            put(gcs, buckets.results, "metadata/metadata_second.json")
            gcs.bucket(buckets.site).blob("index.html").upload_from_string(
                toc.render_html(real_build(client, s, prefix))
            )
        return page

    monkeypatch.setattr(toc, "build_index", racing_build)
    name, attempts = toc.publish_index(gcs, settings, "")
    assert attempts == 2 and calls == [1, 2]
    assert set(rows_of(gcs.bucket(buckets.site).blob(name).download_as_text())) == {"first", "second"}


@pytest.mark.emulators
def test_rebuild_stops_when_a_rebuild_that_listed_later_has_written(gcs, buckets, settings, monkeypatch):
    put(gcs, buckets.results, "metadata/metadata_first.json")
    toc.publish_index(gcs, settings, "")
    site = gcs.bucket(buckets.site)
    real_build = toc.build_index
    calls = []

    def racing_build(client, s, prefix):
        page = real_build(client, s, prefix)
        calls.append(len(page.rows))
        put(gcs, buckets.results, "metadata/metadata_second.json")
        # while we list: one rebuild writes, then another that read *that* index (so it read,
        # and listed, after we began) writes over it
        first = site.blob("index.html")
        first.upload_from_string("<p>an earlier rebuild</p>")
        later = site.blob("index.html")
        later.metadata = {"base_generation": str(first.generation)}
        later.upload_from_string(toc.render_html(real_build(client, s, prefix)), if_generation_match=first.generation)
        return page

    monkeypatch.setattr(toc, "build_index", racing_build)
    name, attempts = toc.publish_index(gcs, settings, "")
    assert attempts == 0 and calls == [1]  # no second listing: the later one already shows our change
    assert set(rows_of(site.blob(name).download_as_text())) == {"first", "second"}


@pytest.mark.emulators
def test_rebuild_toc_function_from_raw_push(gcs, buckets, monkeypatch):
    monkeypatch.setenv("RESULTS_BUCKET", buckets.results)
    monkeypatch.setenv("SITE_BUCKET", buckets.site)
    monkeypatch.setenv("STATE_BUCKET", buckets.state)
    put(gcs, buckets.results, "preview/metadata/metadata_pv.json")
    marker = put(gcs, buckets.state, layout.pending_name("pv", "preview/"))
    import functions_framework

    client = functions_framework.create_app(
        "rebuild_toc", str(ROOT / "functions" / "main.py"), signature_type="cloudevent"
    ).test_client()

    def push(bucket, name, event_type="OBJECT_FINALIZE"):
        obj = {"kind": "storage#object", "name": name, "bucket": bucket, "generation": marker.generation}
        attrs = {
            "bucketId": bucket,
            "objectId": name,
            "eventType": event_type,
            "objectGeneration": str(marker.generation),
            "payloadFormat": "JSON_API_V1",
        }
        body = {
            "message": {
                "data": base64.b64encode(json.dumps(obj).encode()).decode(),
                "attributes": attrs,
                "messageId": "3",
                "publishTime": "2024-05-01T00:00:00Z",
            },
            "subscription": "projects/p/subscriptions/toc",
        }
        assert client.post("/", json=body).status_code == 200

    push(buckets.site, "index.html")  # its own output: ignored, so it can never trigger itself
    push(buckets.results, "preview/metadata/metadata_pv.json")  # not the state bucket
    push(buckets.state, "preview/pending/pv/extra")  # not a state object
    assert list(gcs.list_blobs(buckets.site)) == []
    push(buckets.state, "preview/pending/pv")
    assert [b.name for b in gcs.list_blobs(buckets.site)] == ["preview/index.html"]
    assert rows_of(gcs.bucket(buckets.site).blob("preview/index.html").download_as_text()) == {"pv": "pending"}
    marker.delete()
    push(buckets.state, "preview/pending/pv", "OBJECT_DELETE")
    assert rows_of(gcs.bucket(buckets.site).blob("preview/index.html").download_as_text()) == {"pv": "new"}


def test_toc_script_is_valid_javascript(tmp_path):
    import shutil
    import subprocess

    node = shutil.which("node")
    if not node:
        unavailable("node is not installed (apt: nodejs)")
    script = tmp_path / "toc.js"
    script.write_text((ROOT / "templates" / "static" / "toc.js").read_text())
    proc = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr

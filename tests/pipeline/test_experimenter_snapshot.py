"""The Experimenter snapshot in the state bucket (fake-gcs-server) through the local Experimenter
stand-in: written only when the list changed, kept when Experimenter is down or answers nonsense,
and read by the render job (a real R render) — with and without a snapshot."""

from __future__ import annotations

import json
import socket

import pytest

from partybal import layout
from partybal.local.experimenter_standin import FIXTURE, StandIn
from partybal.pipeline import experimenter, job
from tests.pipeline.pipeline_support import upload_sample
from tests.pipeline.test_job import job_env, status_of

pytestmark = pytest.mark.emulators
SLUG = "sample_search_defaults"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_snapshot_is_written_only_when_the_list_changes(gcs, buckets, tmp_path):
    state = gcs.bucket(buckets.state)
    name = layout.experimenter_snapshot_name()
    env = {"STATE_BUCKET": buckets.state}
    with StandIn() as s:
        assert experimenter.handle_snapshot_event(environ={**env, "EXPERIMENTER_URL": s.url}, client=gcs) == "written"
        first = state.get_blob(name)
        doc = json.loads(first.download_as_bytes())
        assert len(doc["experiments"]) == 5 and doc["source"] == s.url + experimenter.API_PATH
        assert experimenter.handle_snapshot_event(environ={**env, "EXPERIMENTER_URL": s.url}, client=gcs) == "unchanged"
        assert state.get_blob(name).generation == first.generation
    # Experimenter changes an experiment: a new snapshot
    entries = json.loads(FIXTURE.read_bytes())
    entries[0]["userFacingName"] = "Renamed"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(entries))
    with StandIn(changed) as s:
        assert experimenter.handle_snapshot_event(environ={**env, "EXPERIMENTER_URL": s.url}, client=gcs) == "written"
    second = state.get_blob(name)
    assert second.generation != first.generation
    # down, nonsense, or nothing valid: the last snapshot stays
    assert (
        experimenter.handle_snapshot_event(
            environ={**env, "EXPERIMENTER_URL": f"http://127.0.0.1:{free_port()}"}, client=gcs
        )
        == "failed"
    )
    junk = tmp_path / "junk.json"
    for body in ('{"detail": "maintenance"}', json.dumps([{"slug": "x"}, {"slug": "y"}])):
        junk.write_text(body)
        with StandIn(junk) as s:
            assert experimenter.handle_snapshot_event(environ={**env, "EXPERIMENTER_URL": s.url}, client=gcs) in (
                "failed",
                "kept",
            )
    assert state.get_blob(name).generation == second.generation
    assert experimenter.handle_snapshot_event(environ={**env, "EXPERIMENTER_URL": "off"}, client=gcs) == "off"


def test_job_reads_the_snapshot_or_says_there_is_none(gcs, buckets):
    state = gcs.bucket(buckets.state)
    missing = job.read_experimenter(state)
    assert missing.experiments == {} and missing.note.startswith("No Experimenter snapshot")
    with StandIn() as s:
        experimenter.refresh_snapshot(state, s.url)
        catalog = job.read_experimenter(state)
    assert catalog.get("sample-search-defaults").name == "Search defaults in the address bar"
    assert catalog.link("sample-search-defaults") == f"{s.url}/nimbus/sample-search-defaults/summary"
    state.blob(layout.experimenter_snapshot_name()).upload_from_string(b"not json")
    assert "unreadable" in job.read_experimenter(state).note


@pytest.mark.r
def test_rendered_page_shows_experimenter_context_from_the_snapshot(gcs, buckets):
    upload_sample(gcs, buckets.results, SLUG)
    state = gcs.bucket(buckets.state)
    # no snapshot yet (Experimenter never reached): the page renders and says so
    assert job.main(job_env(buckets, slug="sample-search-defaults")) == 0
    html = gcs.bucket(buckets.site).blob(layout.page_name(SLUG)).download_as_text()
    assert "No Experimenter snapshot yet" in html and "<h1>sample-search-defaults</h1>" in html
    with StandIn() as s:
        experimenter.refresh_snapshot(state, s.url)
    assert job.main(job_env(buckets, slug="sample-search-defaults")) == 0
    html = gcs.bucket(buckets.site).blob(layout.page_name(SLUG)).download_as_text()
    assert '<h1>Search defaults in the address bar <code class="slug">sample-search-defaults</code></h1>' in html
    assert "Compares two ways of suggesting" in html and "/nimbus/sample-search-defaults/summary" in html
    assert 'id="srm-warning"' not in html  # 1:1:1 configured, about equal counts
    assert status_of(gcs, buckets, SLUG)["srm"]["mismatch"] is False


def test_toc_shows_experimenter_names_and_dates_and_follows_the_snapshot(gcs, buckets):
    import datetime as dt

    from partybal.pipeline import toc

    settings = toc.Settings(buckets.results, buckets.site, buckets.state)
    results = gcs.bucket(buckets.results)
    for fslug in ("sample_new_tab_layout", "desktop_pip_nudge_v2", "not_in_experimenter"):
        results.blob(layout.results_name(layout.Kind.STATISTICS, fslug, "overall")).upload_from_string(b"[]")
    # Experimenter never reached: the TOC is what the results say
    page = toc.build_index(gcs, settings, "")
    assert {r.name for r in page.rows} == {"sample_new_tab_layout", "desktop_pip_nudge_v2", "not_in_experimenter"}
    assert all(r.app == "" and r.launch == "" for r in page.rows) and page.apps == []
    state = gcs.bucket(buckets.state)
    with StandIn() as s:
        experimenter.refresh_snapshot(state, s.url)
    # the snapshot's finalize rebuilds the index (rebuild_toc's event)
    snap = state.get_blob(layout.experimenter_snapshot_name())
    event = {"bucket": buckets.state, "name": snap.name, "generation": str(snap.generation), "metageneration": "1"}
    assert (
        toc.handle_state_event("google.cloud.storage.object.v1.finalized", event, settings=settings, client=gcs)
        is not None
    )
    html = gcs.bucket(buckets.site).blob(layout.index_name()).download_as_text()
    assert "New Tab layout: compact tiles" in html and 'data-app="firefox_desktop"' in html
    page = toc.toc_page(
        *_listing(gcs, settings),
        now=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        catalog=toc.read_catalog(gcs, settings.state_bucket),
    )
    rows = {r.file_slug: r for r in page.rows}
    assert (
        rows["sample_new_tab_layout"].name,
        rows["sample_new_tab_layout"].app,
        rows["sample_new_tab_layout"].run_status,
    ) == ("New Tab layout: compact tiles", "firefox_desktop", "observing")
    assert (
        rows["desktop_pip_nudge_v2"].launch,
        rows["desktop_pip_nudge_v2"].end,
        rows["desktop_pip_nudge_v2"].run_status,
    ) == ("2026-05-02", "2026-06-13", "complete")
    assert rows["not_in_experimenter"].app == "" and rows["not_in_experimenter"].name == "not_in_experimenter"
    assert [(a.state, a.count) for a in page.apps] == [("firefox_desktop", 2)]
    assert {c.state for c in page.run_statuses} == {"observing", "complete"}
    # newest launch first, experiments Experimenter does not know last; the header says so
    launches = [r.launch for r in page.rows]
    assert launches[-1] == "" and launches[:-1] == sorted(launches[:-1], reverse=True) and all(launches[:-1])
    assert (page.sort_launch, page.sort_updated) == ("descending", "none")
    assert 'data-key="launch" aria-sort="descending"' in toc.render_html(page)


def _listing(gcs, settings):
    from partybal.pipeline.state import group_results, list_results, read_state

    experiments = group_results(list_results(gcs, settings.results_bucket, ""), "")
    statuses, pending = read_state(gcs, settings.state_bucket, "")
    return experiments, statuses, pending, ""

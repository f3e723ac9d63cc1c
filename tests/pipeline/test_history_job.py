"""Render history and Atom feeds against fake-gcs-server: the job writes one summary per render
next to the page, the page says what changed since the previous one, clean-up never deletes
history, and the feeds (checked with feedparser) are built from listings.

R is replaced by a build that renders the real page shell (page.html.j2) around an empty body:
the R path is covered end to end in tests/e2e/test_history_e2e.py."""

from __future__ import annotations

import dataclasses
import json

import feedparser
import pytest

from partybal import layout
from partybal.page import render, report, templating
from partybal.pipeline import feed, history, job
from tests.pipeline.pipeline_support import job_env
from tests.pipeline.test_history import ERRORS, FSLUG, OVERALL, SLUG, files, set_uplift

pytestmark = pytest.mark.emulators


@pytest.fixture
def shell_build(monkeypatch):
    """render.build without R: the real page model and page shell, one fake figure."""
    pages = []

    def build(results, workdir, *, render_id=None, index_href="index.html", history=None, **_kw):
        rid = render_id or layout.new_render_id()
        page, _ = report.build_page(results, plotted=frozenset())
        if history is not None:
            page = dataclasses.replace(page, changes=history[0], history=list(history[1]), history_note=history[2])
        fig_dir = layout.assets_dir(results.file_slug, rid)
        (workdir / fig_dir).mkdir(parents=True)
        (workdir / fig_dir / "fig-1.png").write_bytes(b"\x89PNG " + rid.encode())
        name = layout.page_name(results.file_slug)
        (workdir / name).write_text(
            templating.render("page.html.j2", page=page, body=templating.Markup(""), index_href=index_href)
        )
        pages.append(page)
        return render.BuiltPage(workdir, results.file_slug, rid, name, [f"{fig_dir}/fig-1.png"], 1, results, 0.0)

    monkeypatch.setattr(render, "build", build)
    return pages


def upload(gcs, buckets, content):
    bucket = gcs.bucket(buckets.results)
    for name, data in content.items():
        bucket.blob(name).upload_from_string(data)


def history_names(gcs, buckets):
    return sorted(b.name for b in gcs.list_blobs(buckets.site, prefix=layout.history_dir(FSLUG)))


def status(gcs, buckets):
    return json.loads(gcs.bucket(buckets.state).blob(layout.status_name(FSLUG)).download_as_bytes())


def parse(gcs, buckets, name):
    blob = gcs.bucket(buckets.site).get_blob(name)
    assert blob is not None, name
    assert blob.content_type.startswith("application/atom+xml")
    parsed = feedparser.parse(blob.download_as_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


def test_history_changes_and_feeds_across_renders(gcs, buckets, shell_build):
    site = gcs.bucket(buckets.site)
    upload(gcs, buckets, files())
    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 0
    first = status(gcs, buckets)
    (name1,) = history_names(gcs, buckets)
    assert name1 == layout.history_name(FSLUG, first["render_id"]) == first["history"]
    blob1 = site.get_blob(name1)
    summary1 = json.loads(blob1.download_as_bytes())
    assert summary1["render_id"] == first["render_id"] and summary1["inputs"] == first["input_generations"]
    assert blob1.content_type == "application/json" and len(blob1.download_as_bytes()) < 8 * 1024
    assert history.read_digest(blob1.metadata)["first"] is True
    assert shell_build[-1].changes.first
    assert "Changes: first render" in site.blob(layout.page_name(FSLUG)).download_as_text()

    # Jetstream re-runs: one metric becomes significantly better, nothing else changes
    changed = files()
    changed[OVERALL] = set_uplift(changed[OVERALL], "uri_count", 0.02, 0.05, 0.08)
    upload(gcs, buckets, {OVERALL: changed[OVERALL]})
    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 0
    second = status(gcs, buckets)
    assert history_names(gcs, buckets) == sorted([name1, layout.history_name(FSLUG, second["render_id"])])
    changes = shell_build[-1].changes
    assert not changes.first and [g.title for g in changes.groups] == ["Significance changes"]
    (change,) = changes.groups[0].changes
    assert change.kind == "better" and change.text.startswith(
        "URI Count (uri_count), treatment vs control (enrollments, segment all, overall): became better"
    )
    html = site.blob(layout.page_name(FSLUG)).download_as_text()
    assert "Changes since" in html and change.text in html
    assert [h.render_id for h in shell_build[-1].history] == [second["render_id"], first["render_id"]]
    assert f'href="{name1}"' in html  # the History section links the first render's summary

    # the figures of the first render are cleaned up (grace 0) — its history never is. A re-render
    # of the same inputs (a duplicate request) repeats the second render: no new history entry,
    # the same "Changes since" and History, its summary stands for this render too
    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 0
    third = status(gcs, buckets)
    assert not list(gcs.list_blobs(buckets.site, prefix=layout.assets_dir(FSLUG, first["render_id"]) + "/"))
    assert history_names(gcs, buckets) == sorted([name1, second["history"]])
    assert third["render_id"] != second["render_id"] and third["history"] == second["history"]
    assert shell_build[-1].changes == shell_build[-2].changes and shell_build[-1].history == shell_build[-2].history

    # feeds: built from listings, valid Atom, one entry per render that was news
    feed.publish_feeds(gcs, buckets.site, buckets.state, "", (FSLUG,))
    mine = parse(gcs, buckets, layout.experiment_feed_name(FSLUG))
    titles = [e.title for e in mine.entries]
    assert titles == [f"{SLUG}: 1 significance change", f"{SLUG}: new experiment, first render"]
    flip = mine.entries[0]
    assert flip.id == feed.tag_uri(buckets.site, "", FSLUG, second["render_id"])
    assert change.text in flip.content[0].value
    assert {link.rel: link.href for link in flip.links} == {
        "alternate": f"../{FSLUG}.html",
        "related": f"../history/{FSLUG}/{second['render_id']}.json",
    }
    site_feed = parse(gcs, buckets, layout.feed_name())
    assert [e.id for e in site_feed.entries] == [e.id for e in mine.entries]
    assert site_feed.entries[0].links[0].href == f"{FSLUG}.html"

    # a failed render is an entry; the render that recovers from it is another
    upload(gcs, buckets, {ERRORS: b"[{broken"})
    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 1
    feed.publish_feeds(gcs, buckets.site, buckets.state, "", (FSLUG,))
    mine = parse(gcs, buckets, layout.experiment_feed_name(FSLUG))
    assert mine.entries[0].title == f"{SLUG}: render failed" and ERRORS in mine.entries[0].content[0].value
    upload(gcs, buckets, {ERRORS: changed[ERRORS]})
    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 0
    feed.publish_feeds(gcs, buckets.site, buckets.state, "", (FSLUG,))
    again = parse(gcs, buckets, layout.experiment_feed_name(FSLUG))
    assert again.entries[0].title == f"{SLUG}: recovered from a failed render"
    assert "The render before failed" in again.entries[0].content[0].value
    ids = [e.id for e in again.entries]
    assert len(set(ids)) == len(ids) and flip.id in ids  # stable ids across rebuilds
    assert third["render_id"] not in " ".join(ids)  # a render without news is no entry


def test_toc_rebuild_rebuilds_the_feeds(gcs, buckets, shell_build):
    from partybal.pipeline import toc

    upload(gcs, buckets, files())
    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 0
    event = {"bucket": buckets.state, "name": layout.status_name(FSLUG), "generation": "1"}
    toc.handle_state_event(
        "google.cloud.storage.object.v1.finalized",
        event,
        settings=toc.Settings(buckets.results, buckets.site, buckets.state),
        client=gcs,
    )
    assert parse(gcs, buckets, layout.feed_name()).entries[0].title == f"{SLUG}: new experiment, first render"
    assert len(parse(gcs, buckets, layout.experiment_feed_name(FSLUG)).entries) == 1


def test_atom_escapes_names_and_reasons():
    entry = feed.Entry(
        id=feed.tag_uri("site", "", "x", "r1"),
        title=feed._text('a <b> & "c"\x00\x1b[31m'),
        updated=history.render_time("20261120T040000000000Z-aaaaaa"),
        kind="failed",
        page="x.html",
        lines=[feed._text("R exited: <script>alert(1)</script> \ud800")],
    )
    body = feed.atom("t & <t>", "tag:partybal,2026:site/feed", "feed.xml", "index.html", [entry])
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.feed.title == "t & <t>" and parsed.entries[0].title.startswith('a <b> & "c"')
    assert "<script>" in parsed.entries[0].content[0].value  # text, not markup
    assert parsed.feed.updated == "2026-11-20T04:00:00Z"


def test_a_feed_write_that_loses_to_a_later_rebuild_is_done(gcs, buckets):
    """Concurrent TOC rebuilds (tests/reliability/test_toc_integrity.py): the feed is written
    conditionally, as the index is; losing to a rebuild that read the feed after this one first
    did means that rebuild listed at least as late — done, no second listing, no exception."""
    site = gcs.bucket(buckets.site)
    name = layout.feed_name()
    site.blob(name).upload_from_string(b"<old/>")
    calls = []

    def make_while_a_later_rebuild_writes() -> bytes:
        calls.append(1)
        site.blob(name).upload_from_string(b"<another rebuild/>")  # written after this one read the feed
        later = site.blob(name)
        later.metadata = {"base_generation": str(site.get_blob(name).generation)}
        later.upload_from_string(b"<a later rebuild/>")
        return b"<this rebuild/>"

    assert feed._write(site, name, make_while_a_later_rebuild_writes) is False
    assert len(calls) == 1 and site.blob(name).download_as_bytes() == b"<a later rebuild/>"


def test_a_feed_write_that_keeps_losing_gives_up_quietly(gcs, buckets, caplog):
    site = gcs.bucket(buckets.site)
    name = layout.experiment_feed_name(FSLUG)
    calls = []

    def make_while_an_earlier_rebuild_writes() -> bytes:
        calls.append(1)
        site.blob(name).upload_from_string(b"<an earlier rebuild/>")  # no base_generation: listed before
        return b"<this rebuild/>"

    with caplog.at_level("WARNING"):
        assert feed._write(site, name, make_while_an_earlier_rebuild_writes) is False
    assert len(calls) == feed.WRITE_ATTEMPTS
    assert any("left to the next rebuild" in r.getMessage() for r in caplog.records)
    assert feed._write(site, name, lambda: b"<quiet/>") is True
    assert site.blob(name).download_as_bytes() == b"<quiet/>"


def test_no_feed_for_a_slug_that_never_had_a_page(gcs, buckets, shell_build):
    """A render request for a slug without results (a typo, a hostile name) fails with a status
    record; the site's feed lists the failure, but no public feed object is made for the slug."""
    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 1
    assert status(gcs, buckets)["state"] == "failed"
    feed.publish_feeds(gcs, buckets.site, buckets.state, "", (FSLUG,))
    assert gcs.bucket(buckets.site).get_blob(layout.experiment_feed_name(FSLUG)) is None
    assert parse(gcs, buckets, layout.feed_name()).entries[0].title == f"{SLUG}: render failed"

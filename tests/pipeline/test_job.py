"""The render job against fake-gcs-server: a real R render of the small sample, the failure path
keeping the live page, previews and the cleanup of earlier renders' figures."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from partybal import layout
from partybal.page import render
from partybal.page.results import load_experiment
from partybal.pipeline import job, status
from partybal.storage import GcsResults
from tests.pipeline.pipeline_support import job_env, upload_sample

pytestmark = pytest.mark.emulators
ROOT = Path(__file__).resolve().parents[2]
SLUG = "sample_search_defaults"


def status_of(gcs, buckets, fslug, prefix=""):
    return json.loads(gcs.bucket(buckets.state).blob(layout.status_name(fslug, prefix)).download_as_bytes())


def site_names(gcs, buckets):
    return sorted(b.name for b in gcs.list_blobs(buckets.site))


@pytest.mark.r
def test_real_render_then_bad_input_keeps_the_page(gcs, buckets, fake_gcs):
    inputs = upload_sample(gcs, buckets.results, SLUG)
    gcs.bucket(buckets.state).blob(layout.pending_name(SLUG)).upload_from_string("{}")
    env = {
        **os.environ,
        **job_env(buckets, slug="sample-search-defaults"),
        "STORAGE_EMULATOR_HOST": fake_gcs,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "partybal.pipeline.job"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"severity", "message", "slug"} <= set(entry) for entry in lines)
    assert any(entry["message"] == "page published" for entry in lines)

    assert gcs.bucket(buckets.state).get_blob(layout.pending_name(SLUG)) is None  # marker consumed
    st = status_of(gcs, buckets, SLUG)
    assert st["state"] == "ok" and st["reason"] == ""
    assert st["slug"] == "sample-search-defaults" and st["file_slug"] == SLUG
    assert st["page"] == layout.page_name(SLUG) and st["figures"] > 0
    assert st["windows"] == {"overall": 1}
    assert st["analysis_start"]
    listed = {b.name: b.generation for b in gcs.list_blobs(buckets.results)}
    assert st["input_generations"] == {n: listed[n] for n in inputs}
    page = gcs.bucket(buckets.site).get_blob(layout.page_name(SLUG))
    assert page.content_type == "text/html; charset=utf-8" and "max-age=60" in page.cache_control
    html = page.download_as_text()
    folder = layout.assets_dir(SLUG, st["render_id"])
    assets = [n for n in site_names(gcs, buckets) if n.startswith(layout.assets_root(SLUG) + "/")]
    figures = [n for n in assets if n.startswith(layout.figures_dir(SLUG) + "/")]  # by content hash
    assert assets and all(n.startswith(folder + "/") for n in assets if n not in figures)
    assert len(figures) == st["figures"]
    assert (
        sorted(set(re.findall(r'<img class="plot"[^>]* src="([^"]+)"', html))) == figures
    )  # the page points at the figures published with it
    assert 'href="index.html"' in html

    # Jetstream republishes a broken file: the job fails, the page stays, the status says why
    broken = gcs.bucket(buckets.results).blob(inputs[-1])
    broken.upload_from_string(b'[{"metric": 1}]')
    rc = job.main(job_env(buckets, SLUG))
    assert rc == 1
    assert gcs.bucket(buckets.site).blob(layout.page_name(SLUG)).download_as_text() == html
    assert [n for n in site_names(gcs, buckets) if n.startswith(layout.assets_root(SLUG) + "/")] == assets
    failed = status_of(gcs, buckets, SLUG)
    assert failed["state"] == "failed" and inputs[-1] in failed["reason"] and "\n" not in failed["reason"]
    assert failed["page"] == layout.page_name(SLUG) and failed["page_rendered_at"] == st["page_rendered_at"]
    assert failed["input_generations"][inputs[-1]] == broken.generation
    assert failed["name"] == "sample-search-defaults" and failed["windows"] == {"overall": 1}


def test_unknown_experiment_is_a_failed_status(gcs, buckets):
    assert job.main(job_env(buckets, slug="no_such_experiment")) == 1
    st = status_of(gcs, buckets, "no_such_experiment")
    assert st["state"] == "failed" and "no statistics, metadata or errors files" in st["reason"]
    assert st["page"] is None and site_names(gcs, buckets) == []


@pytest.mark.parametrize(
    "env_change", [{"PARTYBAL_SLUG": "../../etc"}, {"PARTYBAL_PREFIX": "../"}, {"SITE_BUCKET": ""}]
)
def test_bad_configuration_exits_without_writing(gcs, buckets, env_change):
    environ = {**job_env(buckets, SLUG), **env_change}
    if environ["PARTYBAL_SLUG"] == "../../etc":
        environ["PARTYBAL_SLUG"] = "../" * 100  # longer than a slug may be once in file form
    assert job.main(environ) == 2
    assert list(gcs.list_blobs(buckets.state)) == []


@pytest.fixture
def fake_build(monkeypatch):
    """render.build without R: a page pointing at two figures, like the real one."""
    calls = []

    def build(
        results, workdir, *, render_id=None, cores=None, banner=None, index_href="index.html", catalog=None, **_kw
    ):
        rid = render_id or layout.new_render_id()
        fig_dir = layout.assets_dir(results.file_slug, rid)
        (workdir / fig_dir).mkdir(parents=True)
        assets = []
        for i in (1, 2):
            rel = f"{fig_dir}/fig-{i}.png"
            (workdir / rel).write_bytes(b"\x89PNG fake " + rid.encode())
            assets.append(rel)
        page = layout.page_name(results.file_slug)
        (workdir / page).write_text(f'<a href="{index_href}">index</a><img src="{assets[0]}">')
        calls.append(rid)
        return render.BuiltPage(workdir, results.file_slug, rid, page, assets, 2, results, 0.0)

    monkeypatch.setattr(render, "build", build)
    return calls


def folders_of(gcs, buckets, prefix=""):
    return set(job.asset_folders(gcs.bucket(buckets.site), SLUG, prefix))


def test_preview_publish_keeps_the_replaced_figures_only(gcs, buckets, fake_build):
    upload_sample(gcs, buckets.results, SLUG, prefix="preview/")
    env = {**job_env(buckets, SLUG, prefix="preview/"), "ASSET_GRACE_SECONDS": "0"}
    rids = []
    for _ in range(3):
        assert job.main(env) == 0
        rids.append(status_of(gcs, buckets, SLUG, "preview/")["render_id"])
    assert len(set(rids)) == 3 and fake_build == rids
    # the page shows the third render; the second's figures stay for readers of the page it replaced
    expected = sorted(
        [layout.page_name(SLUG, "preview/")]
        + [f"{layout.assets_dir(SLUG, rid, 'preview/')}/fig-{i}.png" for rid in rids[1:] for i in (1, 2)]
        + [layout.figure_list_name(SLUG, rid, "preview/") for rid in rids[1:]]
        # history: never cleaned up; renders 2 and 3 read the same inputs as the first, which stands for them
        + [layout.history_name(SLUG, rids[0], "preview/")]
    )
    assert site_names(gcs, buckets) == expected
    page = gcs.bucket(buckets.site).get_blob(layout.page_name(SLUG, "preview/"))
    assert page.metadata == {job.PAGE_RENDER_ID: rids[2]} and rids[2] in page.download_as_text()
    second = status_of(gcs, buckets, SLUG, "preview/")
    assert second["page"] == "preview/sample_search_defaults.html" and second["run_id"] == rids[2]
    assert set(second["input_generations"]) == {b.name for b in gcs.list_blobs(buckets.results)}
    assert gcs.bucket(buckets.state).get_blob(layout.status_name(SLUG)) is None  # main status untouched


def test_replaced_figures_outlive_the_page_for_the_grace_period(gcs, buckets, fake_build):
    """The CI failure this guards against: a reader had the page open (figures load lazily, copies
    are cached for 60 s) when a re-render replaced it, and its figures were already gone (404)."""
    upload_sample(gcs, buckets.results, SLUG)
    site = gcs.bucket(buckets.site)
    assert job.main(job_env(buckets, SLUG)) == 0
    first_page = site.blob(layout.page_name(SLUG)).download_as_text()
    assert job.main(job_env(buckets, SLUG)) == 0  # default grace (an hour)
    assert job.main(job_env(buckets, SLUG)) == 0
    r1, r2, r3 = fake_build
    assert folders_of(gcs, buckets) == {r1, r2, r3}  # r1 has been off the page only since r2 went live
    for src in re.findall(r'src="([^"]+)"', first_page):  # the first reader's figures still load
        assert site.get_blob(src) is not None, src
    assert job.main({**job_env(buckets, SLUG), "ASSET_GRACE_SECONDS": "0"}) == 0
    r4 = fake_build[-1]
    assert folders_of(gcs, buckets) == {r3, r4}  # the replaced page's figures are kept whatever the grace


def test_concurrent_later_render_figures_are_kept(gcs, buckets, fake_build):
    """A job never deletes figures of a render that started after it (its page may be on its way);
    figures of renders that never went live are removed."""
    upload_sample(gcs, buckets.results, SLUG)
    later = layout.assets_dir(SLUG, "99991231T235959Z-ffffff") + "/fig-1.png"
    earlier = layout.assets_dir(SLUG, "20000101T000000Z-000000") + "/fig-1.png"
    for name in (later, earlier):
        gcs.bucket(buckets.site).blob(name).upload_from_string(b"x")
    assert job.main(job_env(buckets, SLUG)) == 0
    names = site_names(gcs, buckets)
    assert later in names and earlier not in names


def test_a_render_finishing_after_a_later_one_leaves_its_page_and_status(gcs, buckets, fake_build):
    """Two renders of one experiment: the one that started later read newer inputs. If it published
    first, the earlier one must not put its older page over it (nor delete its figures)."""
    upload_sample(gcs, buckets.results, SLUG)
    site, state = gcs.bucket(buckets.site), gcs.bucket(buckets.state)
    later = "99991231T235959000000Z-ffffff"
    site.blob(layout.assets_dir(SLUG, later) + "/fig-1.png").upload_from_string(b"later figure")
    page = site.blob(layout.page_name(SLUG))
    page.metadata = {job.PAGE_RENDER_ID: later}
    page.upload_from_string(f'<img src="{layout.assets_dir(SLUG, later)}/fig-1.png">', content_type="text/html")
    record = {"file_slug": SLUG, "state": "ok", "run_id": later, "render_id": later}
    assert job.write_status(state, record, "")
    before = status_of(gcs, buckets, SLUG)

    assert job.main(job_env(buckets, SLUG)) == 0
    ours = fake_build[-1]
    assert ours < later
    assert (
        site.blob(layout.page_name(SLUG)).download_as_text()
        == f'<img src="{layout.assets_dir(SLUG, later)}/fig-1.png">'
    )
    assert folders_of(gcs, buckets) == {later}  # ours never went live: removed
    assert status_of(gcs, buckets, SLUG) == before


def test_publish_decides_again_when_the_page_changes_under_it(gcs, buckets, fake_build, tmp_path):
    """The page write is conditional on the generation read: a later render publishing between our
    read and our write makes ours fail its precondition, read again and step aside."""
    upload_sample(gcs, buckets.results, SLUG)
    real = gcs.bucket(buckets.site)
    later = "99991231T235959000000Z-ffffff"
    reads = []

    real_get_blob = real.get_blob

    def racing_get_blob(name, *args, **kwargs):  # a later render publishes right after our first read
        blob = real_get_blob(name, *args, **kwargs)
        reads.append(blob.metadata if blob is not None else None)
        if len(reads) == 1:
            other = real.blob(name)
            other.metadata = {job.PAGE_RENDER_ID: later}
            other.upload_from_string("<p>later page</p>", content_type="text/html")
        return blob

    real.get_blob = racing_get_blob
    results = load_experiment(GcsResults(buckets.results, client=gcs), SLUG)
    built = render.build(results, tmp_path, render_id=layout.new_render_id())
    published = job.publish_site(real, built, "")
    assert reads == [None, {job.PAGE_RENDER_ID: later}]
    assert published.page is None and published.superseded_by == later
    assert real.blob(layout.page_name(SLUG)).download_as_text() == "<p>later page</p>"
    assert folders_of(gcs, buckets) == set()


def test_assets_to_delete_rules():
    t0 = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    folders = {"a", "b", "c", "d", "e", "z"}  # live page was "c"; we are "e"; "d" never went live; "z" started after us

    def doomed(now_minus, grace=3600, replaced="c", folders=folders):
        return job.assets_to_delete(folders, "e", replaced, t0, t0 + dt.timedelta(seconds=now_minus), grace)

    assert doomed(10) == {"d"}  # a and b were on pages until 10 s ago
    assert doomed(3600) == {"a", "b", "d"}
    assert doomed(10, grace=0) == {"a", "b", "d"}
    assert job.assets_to_delete(folders, "e", None, None, t0, 3600) == {"a", "b", "c", "d"}  # no page before ours
    assert job.assets_to_delete({"e"}, "e", None, None, t0, 0) == set()


def test_write_status_keeps_the_record_of_the_run_that_started_last(gcs, buckets):
    state = gcs.bucket(buckets.state)
    b = {"file_slug": SLUG, "state": "failed", "run_id": "20261123T120000000000Z-bbbbbb"}
    a = {
        "file_slug": SLUG,
        "state": "ok",
        "run_id": "20261123T110000000000Z-aaaaaa",
        "render_id": "20261123T110000000000Z-aaaaaa",
    }
    c = {**a, "run_id": "20261123T130000000000Z-cccccc"}
    assert job.write_status(state, b, "")
    assert not job.write_status(state, a, "")  # an older run finishing late
    assert status_of(gcs, buckets, SLUG) == b
    assert job.write_status(state, c, "")
    assert status_of(gcs, buckets, SLUG) == c
    crash = {**c, "state": "failed", "run_id": None}  # a crash record (no run): always written
    assert job.write_status(state, crash, "")
    assert status_of(gcs, buckets, SLUG)["state"] == "failed"


def test_render_error_keeps_page_and_records_inputs(gcs, buckets, monkeypatch):
    upload_sample(gcs, buckets.results, SLUG)
    gcs.bucket(buckets.site).blob(layout.page_name(SLUG)).upload_from_string("<p>good old page</p>")

    def broken_build(results, workdir, **kw):
        raise render.RenderError("R exited with status 1: Error in plot_foo(): boom\nline two")

    monkeypatch.setattr(render, "build", broken_build)
    assert job.main(job_env(buckets, SLUG)) == 1
    st = status_of(gcs, buckets, SLUG)
    assert st["state"] == "failed" and st["reason"] == "R exited with status 1: Error in plot_foo(): boom line two"
    assert len(st["input_generations"]) == 2 and st["name"] == SLUG
    assert gcs.bucket(buckets.site).blob(layout.page_name(SLUG)).download_as_text() == "<p>good old page</p>"


def test_render_ids_sort_in_start_order_within_a_second():
    import datetime as dt

    t = dt.datetime(2024, 5, 1, 12, 0, 0, 999, tzinfo=dt.UTC)
    ids = [layout.new_render_id(t + dt.timedelta(microseconds=i)) for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert all(layout.is_file_slug(i.replace("-", "_")) for i in ids)  # a plain folder name


def test_running_record_covers_the_render_from_before_the_marker_is_deleted(gcs, buckets, monkeypatch):
    state = gcs.bucket(buckets.state)
    state.blob(layout.pending_name("no_such_experiment")).upload_from_string("{}")
    env = {
        **job_env(buckets, slug="no_such_experiment"),
        "RUN_JOB": "projects/p/locations/l/jobs/j",
        "CLOUD_RUN_EXECUTION": "j-0001",
    }
    seen = {}
    real_delete = job.delete_marker

    def delete_marker(bucket, fslug, prefix):
        record = bucket.get_blob(layout.running_name(fslug, prefix))
        seen["at_delete"] = record.metadata if record else None
        seen["body"] = json.loads(record.download_as_bytes()) if record else None
        return real_delete(bucket, fslug, prefix)

    monkeypatch.setattr(job, "delete_marker", delete_marker)
    job.main(env)  # fails (no results): the record goes all the same
    meta = seen["at_delete"]
    assert meta["execution"] == "projects/p/locations/l/jobs/j/executions/j-0001" and meta["attempt"] == "0"
    assert (
        re.fullmatch(r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{6}", meta["run_id"]) and meta["max_attempts"] == ""
    )  # JOB_MAX_RETRIES not set
    assert seen["body"]["execution"].endswith("/executions/j-0001") and seen["body"]["started_at"]
    assert state.get_blob(layout.running_name("no_such_experiment")) is None
    assert state.get_blob(layout.pending_name("no_such_experiment")) is None


def test_running_record_is_deleted_only_if_still_ours():
    """GCS deletes with ``ifGenerationMatch`` (fake-gcs-server ignores preconditions on DELETE,
    so the request itself is what can be checked here)."""
    from google.api_core import exceptions as gexc

    calls = []

    class Blob:
        def __init__(self, name):
            self.name = name

        def delete(self, **kwargs):
            calls.append((self.name, kwargs))
            if kwargs.get("if_generation_match") != 7:
                raise gexc.PreconditionFailed("a later execution replaced it")

    class Bucket:
        def blob(self, name):
            return Blob(name)

    settings = job.JobSettings(
        "exp", "preview/", "r", "s", "st", execution="projects/p/locations/l/jobs/j/executions/a"
    )
    job.clear_running(Bucket(), settings, 7)
    job.clear_running(Bucket(), settings, 8)  # replaced meanwhile: 412 is not an error
    job.clear_running(Bucket(), settings, None)  # never written: nothing to delete
    assert calls == [
        ("preview/running/exp", {"if_generation_match": 7}),
        ("preview/running/exp", {"if_generation_match": 8}),
    ]
    assert job.execution_name({"CLOUD_RUN_EXECUTION": "x"}) == ""  # run by hand: no name to record


# --- failure containment (issue 14) -------------------------------------------------------------


def job_log(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "partybal.pipeline.job"]


def test_any_exception_while_rendering_is_a_failed_status_not_a_crash(gcs, buckets, monkeypatch, caplog):
    upload_sample(gcs, buckets.results, SLUG)

    def overflowing_build(results, workdir, **kw):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(render, "build", overflowing_build)
    assert job.main(job_env(buckets, SLUG)) == 1
    st = status_of(gcs, buckets, SLUG)
    assert st["state"] == "failed" and st["reason"] == "render error: OverflowError: date value out of range"
    assert len(st["input_generations"]) == 2
    assert not any("crashed" in m for m in job_log(caplog))
    assert gcs.bucket(buckets.state).get_blob(layout.running_name(SLUG)) is None


def test_overflowing_timestamps_render_through_the_job(gcs, buckets, fake_build):
    corpus = ROOT / "tests" / "corpus"
    upload_sample(gcs, buckets.results, SLUG)
    results = gcs.bucket(buckets.results)
    results.blob(layout.results_name(layout.Kind.METADATA, SLUG)).upload_from_filename(
        str(corpus / "overflow_time_metadata.json")
    )
    results.blob(layout.results_name(layout.Kind.ERRORS, SLUG)).upload_from_filename(
        str(corpus / "overflow_time_errors.json")
    )
    assert job.main(job_env(buckets, SLUG)) == 0
    st = status_of(gcs, buckets, SLUG)
    assert st["state"] == "ok" and st["analysis_start"] == "9999-12-31T23:59:59-01:00"


def test_an_infrastructure_error_still_leaves_a_failed_record(gcs, buckets, fake_build, monkeypatch, caplog):
    from google.api_core import exceptions as gexc

    upload_sample(gcs, buckets.results, SLUG)

    def unavailable(*a, **k):
        raise gexc.ServiceUnavailable("site bucket is down")

    monkeypatch.setattr(job, "publish_site", unavailable)
    assert job.main(job_env(buckets, SLUG)) == 1  # Cloud Run retries the attempt
    st = status_of(gcs, buckets, SLUG)
    assert st["state"] == "failed" and st["reason"].startswith(
        "infrastructure error (Cloud Run retries while the job has retries left): ServiceUnavailable"
    )
    assert "\n" not in st["reason"]


def test_the_next_attempt_records_an_attempt_killed_from_outside(gcs, buckets, monkeypatch):
    """Attempt 0 was SIGKILLed (OOM): its running record stayed. Attempt 1 records
    ``failed: killed (attempt 1 of 4)`` first, then renders (here: fails on its own input)."""
    state = gcs.bucket(buckets.state)
    execution = "projects/p/locations/l/jobs/j/executions/j-0001"
    killed_run = "20261123T120000000000Z-aaaaaa"
    rec = state.blob(layout.running_name("no_such_experiment"))
    rec.metadata = {"execution": execution, "attempt": "0", "run_id": killed_run, "max_attempts": "4"}
    rec.upload_from_string("{}")
    written = []
    real_write = status.write

    def recording_write(bucket, record, prefix, **kw):
        written.append(dict(record))
        return real_write(bucket, record, prefix, **kw)

    monkeypatch.setattr(status, "write", recording_write)
    env = {
        **job_env(buckets, slug="no_such_experiment"),
        "RUN_JOB": "projects/p/locations/l/jobs/j",
        "CLOUD_RUN_EXECUTION": "j-0001",
        "CLOUD_RUN_TASK_ATTEMPT": "1",
        "JOB_MAX_RETRIES": "3",
    }
    assert job.main(env) == 1
    assert len(written) == 2 and [w["state"] for w in written] == ["failed", "failed"]
    assert written[0]["reason"] == "killed (attempt 1 of 4)" and written[0]["run_id"] == killed_run
    assert "no statistics, metadata or errors files" in written[1]["reason"] and written[1]["run_id"] > killed_run
    assert (
        "no statistics, metadata or errors files" in status_of(gcs, buckets, "no_such_experiment")["reason"]
    )  # this attempt's own
    assert state.get_blob(layout.running_name("no_such_experiment")) is None
    # a record of another execution (maybe running right now) is not ours to judge
    rec = state.blob(layout.running_name("no_such_experiment"))
    rec.metadata = {"execution": execution + "x", "attempt": "0", "run_id": killed_run, "max_attempts": "4"}
    rec.upload_from_string("{}")
    written.clear()
    assert job.main(env) == 1
    assert [w["reason"] for w in written if w["reason"].startswith("killed")] == []


def test_a_killed_record_never_replaces_what_that_run_wrote(gcs, buckets):
    state = gcs.bucket(buckets.state)
    run_id = "20261123T120000000000Z-aaaaaa"
    assert status.write(state, {"file_slug": SLUG, "state": "ok", "run_id": run_id, "reason": ""}, "")
    killed = status.killed_record(
        None, {"attempt": "0", "max_attempts": "2", "run_id": run_id}, SLUG, SLUG, "", dt.datetime.now(dt.UTC)
    )
    assert not status.write(state, killed, "", not_over_run=run_id)
    assert status_of(gcs, buckets, SLUG)["state"] == "ok"


def test_job_refuses_to_start_on_malformed_bounds(gcs, buckets, monkeypatch, caplog):
    monkeypatch.setenv("PARTYBAL_R_TIMEOUT", "ten")
    assert job.main(job_env(buckets, SLUG)) == 2
    assert any("PARTYBAL_R_TIMEOUT must be a whole number" in m for m in job_log(caplog))
    monkeypatch.delenv("PARTYBAL_R_TIMEOUT")
    assert job.main({**job_env(buckets, SLUG), "PARTYBAL_MAX_FILE_BYTES": "2G"}) == 2
    assert job.main({**job_env(buckets, SLUG), "JOB_MAX_RETRIES": "-1"}) == 2
    assert list(gcs.list_blobs(buckets.state)) == []


def test_a_file_over_the_size_limit_fails_before_download(gcs, buckets, monkeypatch):
    names = upload_sample(gcs, buckets.results, SLUG)
    sizes = {b.name: b.size for b in gcs.list_blobs(buckets.results)}
    biggest = max(names, key=sizes.get)
    monkeypatch.setenv("PARTYBAL_MAX_FILE_BYTES", str(sizes[biggest] - 1))
    monkeypatch.setattr(GcsResults, "read", lambda self, info: pytest.fail("downloaded a file over the limit"))
    assert job.main(job_env(buckets, SLUG)) == 1
    st = status_of(gcs, buckets, SLUG)
    assert (
        st["reason"]
        == f"{biggest}: file is {sizes[biggest]} bytes, over the limit of {sizes[biggest] - 1} bytes per file (PARTYBAL_MAX_FILE_BYTES)"
    )
    assert "PARTYBAL_MAX_FILE_BYTES" in st["reason"] and st["input_generations"]


def test_gcs_cleanup_lists_only_render_folders_of_the_experiment(gcs, buckets, fake_build):
    upload_sample(gcs, buckets.results, SLUG)
    site = gcs.bucket(buckets.site)
    foreign = [
        layout.assets_root(SLUG) + "/README.txt",  # no render-id folder
        layout.assets_root(SLUG) + "/not-a-render/fig.png",
        layout.assets_root(SLUG) + "x/20000101T000000Z-000000/fig.png",  # another experiment's prefix
        "other_files/20000101T000000Z-000000/fig.png",
    ]
    for name in foreign:
        site.blob(name).upload_from_string(b"x")
    for _ in range(3):
        assert job.main({**job_env(buckets, SLUG), "ASSET_GRACE_SECONDS": "0"}) == 0
    names = set(site_names(gcs, buckets))
    assert set(foreign) <= names
    assert folders_of(gcs, buckets) == set(fake_build[-2:])

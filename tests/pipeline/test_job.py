"""The render job against fake-gcs-server: a real R render of the small sample, the failure path
keeping the live page, previews and the cleanup of earlier renders' figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from partybal import job, layout, render
from tests.pipeline.pipeline_support import upload_sample

pytestmark = pytest.mark.emulators
ROOT = Path(__file__).resolve().parents[2]
SLUG = "sample_search_defaults"


def job_env(buckets, slug=SLUG, prefix=""):
    return {
        "PARTYBAL_SLUG": slug,
        "PARTYBAL_PREFIX": prefix,
        "RESULTS_BUCKET": buckets.results,
        "SITE_BUCKET": buckets.site,
        "STATE_BUCKET": buckets.state,
        "CLOUD_RUN_TASK_ATTEMPT": "0",
    }


def status_of(gcs, buckets, fslug, prefix=""):
    return json.loads(gcs.bucket(buckets.state).blob(layout.status_name(fslug, prefix)).download_as_bytes())


def site_names(gcs, buckets):
    return sorted(b.name for b in gcs.list_blobs(buckets.site))


@pytest.mark.r
def test_real_render_then_bad_input_keeps_the_page(gcs, buckets, fake_gcs):
    inputs = upload_sample(gcs, buckets.results, SLUG)
    gcs.bucket(buckets.state).blob(layout.pending_name(SLUG)).upload_from_string("{}")
    env = {**os.environ, **job_env(buckets, slug="sample-search-defaults"), "STORAGE_EMULATOR_HOST": fake_gcs, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "partybal.job"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
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
    assert assets and all(n.startswith(folder + "/") for n in assets)
    assert len(assets) == st["figures"]
    assert f'src="{assets[0]}"' in html  # the page points at the figures published with it
    assert 'href="index.html"' in html

    # Jetstream republishes a broken file: the job fails, the page stays, the status says why
    broken = gcs.bucket(buckets.results).blob(inputs[-1])
    broken.upload_from_string(b'[{"metric": 1}]')
    rc = job.main(job_env(buckets))
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


@pytest.mark.parametrize("env_change", [{"PARTYBAL_SLUG": "../../etc"}, {"PARTYBAL_PREFIX": "../"}, {"SITE_BUCKET": ""}])
def test_bad_configuration_exits_without_writing(gcs, buckets, env_change):
    environ = {**job_env(buckets), **env_change}
    if environ["PARTYBAL_SLUG"] == "../../etc":
        environ["PARTYBAL_SLUG"] = "../" * 100  # longer than a slug may be once in file form
    assert job.main(environ) == 2
    assert list(gcs.list_blobs(buckets.state)) == []


@pytest.fixture
def fake_build(monkeypatch):
    """render.build without R: a page pointing at two figures, like the real one."""
    calls = []

    def build(results, workdir, *, render_id=None, cores=None, banner=None, index_href="index.html"):
        rid = render_id or render.new_render_id()
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


def test_preview_publish_replaces_earlier_figures(gcs, buckets, fake_build):
    upload_sample(gcs, buckets.results, SLUG, prefix="preview/")
    assert job.main(job_env(buckets, prefix="preview/")) == 0
    first = status_of(gcs, buckets, SLUG, "preview/")
    assert job.main(job_env(buckets, prefix="preview/")) == 0
    second = status_of(gcs, buckets, SLUG, "preview/")
    assert first["render_id"] != second["render_id"] and fake_build == [first["render_id"], second["render_id"]]
    expected = sorted(
        [layout.page_name(SLUG, "preview/")] + [f"{layout.assets_dir(SLUG, second['render_id'], 'preview/')}/fig-{i}.png" for i in (1, 2)]
    )
    assert site_names(gcs, buckets) == expected
    assert second["page"] == "preview/sample_search_defaults.html"
    assert set(second["input_generations"]) == {b.name for b in gcs.list_blobs(buckets.results)}
    assert gcs.bucket(buckets.state).get_blob(layout.status_name(SLUG)) is None  # main status untouched


def test_concurrent_later_render_figures_are_kept(gcs, buckets, fake_build):
    """A job never deletes figures of a render that started after it (its page may be on its way)."""
    upload_sample(gcs, buckets.results, SLUG)
    later = layout.assets_dir(SLUG, "99991231T235959Z-ffffff") + "/fig-1.png"
    earlier = layout.assets_dir(SLUG, "20000101T000000Z-000000") + "/fig-1.png"
    for name in (later, earlier):
        gcs.bucket(buckets.site).blob(name).upload_from_string(b"x")
    assert job.main(job_env(buckets)) == 0
    names = site_names(gcs, buckets)
    assert later in names and earlier not in names


def test_render_error_keeps_page_and_records_inputs(gcs, buckets, monkeypatch):
    upload_sample(gcs, buckets.results, SLUG)
    gcs.bucket(buckets.site).blob(layout.page_name(SLUG)).upload_from_string("<p>good old page</p>")

    def broken_build(results, workdir, **kw):
        raise render.RenderError("R exited with status 1: Error in plot_foo(): boom\nline two")

    monkeypatch.setattr(render, "build", broken_build)
    assert job.main(job_env(buckets)) == 1
    st = status_of(gcs, buckets, SLUG)
    assert st["state"] == "failed" and st["reason"] == "R exited with status 1: Error in plot_foo(): boom line two"
    assert len(st["input_generations"]) == 2 and st["name"] == SLUG
    assert gcs.bucket(buckets.site).blob(layout.page_name(SLUG)).download_as_text() == "<p>good old page</p>"


def test_render_ids_sort_in_start_order_within_a_second():
    import datetime as dt

    t = dt.datetime(2024, 5, 1, 12, 0, 0, 999, tzinfo=dt.timezone.utc)
    ids = [job.new_render_id(t + dt.timedelta(microseconds=i)) for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert all(layout.is_file_slug(i.replace("-", "_")) for i in ids)  # a plain folder name


def test_running_record_covers_the_render_from_before_the_marker_is_deleted(gcs, buckets, monkeypatch):
    state = gcs.bucket(buckets.state)
    state.blob(layout.pending_name("no_such_experiment")).upload_from_string("{}")
    env = {**job_env(buckets, slug="no_such_experiment"), "RUN_JOB": "projects/p/locations/l/jobs/j", "CLOUD_RUN_EXECUTION": "j-0001"}
    seen = {}
    real_delete = job.delete_marker

    def delete_marker(bucket, fslug, prefix):
        record = bucket.get_blob(layout.running_name(fslug, prefix))
        seen["at_delete"] = record.metadata if record else None
        seen["body"] = json.loads(record.download_as_bytes()) if record else None
        return real_delete(bucket, fslug, prefix)

    monkeypatch.setattr(job, "delete_marker", delete_marker)
    job.main(env)  # fails (no results): the record goes all the same
    assert seen["at_delete"] == {"execution": "projects/p/locations/l/jobs/j/executions/j-0001"}
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

    settings = job.JobSettings("exp", "preview/", "r", "s", "st", execution="projects/p/locations/l/jobs/j/executions/a")
    job.clear_running(Bucket(), settings, 7)
    job.clear_running(Bucket(), settings, 8)  # replaced meanwhile: 412 is not an error
    job.clear_running(Bucket(), settings, None)  # never written: nothing to delete
    assert calls == [("preview/running/exp", {"if_generation_match": 7}), ("preview/running/exp", {"if_generation_match": 8})]
    assert job.execution_name({"CLOUD_RUN_EXECUTION": "x"}) == ""  # run by hand: no name to record

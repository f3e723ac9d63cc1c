"""Figures by content hash in the site bucket (issue 18.1), against fake-gcs-server: the job reuses
the figures the live page shows (not drawn, not uploaded again) and deletes the figures no live or
grace-period page shows."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re

import pytest

from partybal import layout
from partybal.page import render
from partybal.pipeline import job
from tests.pipeline.pipeline_support import job_env
from tests.support.synthetic import ExperimentSpec, MetricSpec, experiment_files

pytestmark = pytest.mark.emulators
SLUG = "reuse-job"
FSLUG = layout.file_slug(SLUG)


def figure_objects(gcs, buckets) -> dict[str, int]:
    """Stored figure name → generation."""
    return {b.name: b.generation for b in gcs.list_blobs(buckets.site, prefix=layout.figures_dir(FSLUG) + "/")}


def figures_log(caplog) -> dict:
    """The job's one log line about figures, with its fields (what the JSON line carries), since
    the last call. caplog, not stderr: a JSON handler set up by an earlier test keeps that test's stream."""
    records = [r for r in caplog.records if r.getMessage() == "figures"]
    caplog.clear()
    (record,) = records
    return {"message": record.getMessage(), **record.fields}


def upload_experiment(gcs, buckets) -> None:
    spec = ExperimentSpec(
        slug=SLUG,
        branches=("control", "treatment"),
        segments=("all",),
        bases=("enrollments",),
        windows={"overall": 1, "weekly": 2},
        metrics=(MetricSpec("active_hours", ("mean", "deciles"), True, "Active Hours"),),
        grid_points=8,
        errors=0,
    )
    for name, data in experiment_files(spec).items():
        gcs.bucket(buckets.results).blob(name).upload_from_string(data, content_type="application/json")


@pytest.mark.r
def test_the_job_skips_drawing_and_uploading_reused_figures(gcs, buckets, caplog, monkeypatch):
    monkeypatch.setattr(job.logs, "setup", lambda *a, **k: None)  # it would replace caplog's handler
    caplog.set_level(logging.INFO)
    upload_experiment(gcs, buckets)
    assert job.main(job_env(buckets, SLUG)) == 0
    first = figures_log(caplog)
    stored = figure_objects(gcs, buckets)
    assert (
        first["figures"] > 0
        and first["drawn"] == first["figures"] == first["uploaded"] == len(stored)
        and first["reused"] == 0
    )
    html = gcs.bucket(buckets.site).blob(layout.page_name(FSLUG)).download_as_text()
    assert sorted(set(re.findall(r'<img class="plot"[^>]* src="([^"]+)"', html))) == sorted(stored)

    assert job.main(job_env(buckets, SLUG)) == 0
    second = figures_log(caplog)
    assert {k: second[k] for k in ("figures", "drawn", "reused", "uploaded", "deleted")} == {
        "figures": first["figures"],
        "drawn": 0,
        "reused": first["figures"],
        "uploaded": 0,
        "deleted": 0,
    }
    assert figure_objects(gcs, buckets) == stored  # the same objects, same generations: nothing uploaded
    assert gcs.bucket(buckets.site).blob(layout.page_name(FSLUG)).download_as_text().count("<img") == html.count("<img")


def digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


@pytest.fixture
def hashed_build(monkeypatch):
    """render.build without R: each call shows the figures named by the next list of seeds and
    "draws" those ``reuse`` does not report as stored."""
    plan: list[list[str]] = []
    calls: list[render.BuiltPage] = []

    def build(results, workdir, *, render_id=None, reuse=None, **_kw):
        rid = render_id or layout.new_render_id()
        hashes = sorted(digest(s) for s in plan.pop(0))
        have = set(reuse(hashes)) if reuse else set()
        files = []
        for h in hashes:
            if h not in have:
                rel = layout.figure_name(results.file_slug, h)
                (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
                (workdir / rel).write_bytes(b"\x89PNG " + h.encode())
                files.append(rel)
        page = layout.page_name(results.file_slug)
        (workdir / page).write_text("".join(f'<img src="{layout.figure_name(results.file_slug, h)}">' for h in hashes))
        built = render.BuiltPage(
            workdir,
            results.file_slug,
            rid,
            page,
            [],
            len(hashes),
            results,
            0.0,
            figure_files=files,
            figure_refs=hashes,
            figures_drawn=len(files),
            figures_reused=len(hashes) - len(files),
        )
        calls.append(built)
        return built

    monkeypatch.setattr(render, "build", build)
    return plan, calls


def stored_hashes(gcs, buckets) -> set[str]:
    return {layout.figure_hash_of(n.rsplit("/", 1)[1]) for n in figure_objects(gcs, buckets)}


def test_figures_of_the_replaced_page_survive_its_grace_period_and_unreferenced_ones_go(gcs, buckets, hashed_build):
    plan, calls = hashed_build
    upload_experiment(gcs, buckets)
    h = {s: digest(s) for s in ("a", "b", "c", "d")}
    plan += [["a", "b"], ["b", "c"], ["c", "d"], ["d"]]

    assert job.main(job_env(buckets, SLUG)) == 0  # A shows a, b
    gen_b = figure_objects(gcs, buckets)[layout.figure_name(FSLUG, h["b"])]
    assert job.main(job_env(buckets, SLUG)) == 0  # B shows b (reused: the live page shows it), c
    assert calls[1].figures_drawn == 1 and calls[1].figures_uploaded == 1
    assert figure_objects(gcs, buckets)[layout.figure_name(FSLUG, h["b"])] == gen_b  # not uploaded again
    assert stored_hashes(gcs, buckets) == {h["a"], h["b"], h["c"]}  # a: A's page was replaced just now

    assert job.main(job_env(buckets, SLUG)) == 0  # C shows c, d; A is within its grace period (B went live < 1 h ago)
    assert stored_hashes(gcs, buckets) == {h["a"], h["b"], h["c"], h["d"]}

    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 0  # D shows d; grace over for A and B
    # c: shown only by the page D replaced (kept whatever the grace); a, b: nobody's any more
    assert stored_hashes(gcs, buckets) == {h["c"], h["d"]}
    folders = set(job.asset_folders(gcs.bucket(buckets.site), FSLUG, ""))
    assert folders == {calls[2].render_id, calls[3].render_id}


class _Bucket:
    """Just enough of a bucket for delete_unreferenced_figures, with GCS's ifGenerationMatch on
    delete (fake-gcs-server ignores that precondition on deletes)."""

    def __init__(self, objects: dict[str, int]):
        self.objects = objects  # name -> generation

    def blob(self, name):
        from google.api_core import exceptions as gexc

        bucket = self

        class _Blob:
            def delete(self, if_generation_match=None):
                if name not in bucket.objects:
                    raise gexc.NotFound(name)
                if if_generation_match is not None and bucket.objects[name] != if_generation_match:
                    raise gexc.PreconditionFailed(name)
                del bucket.objects[name]

        return _Blob()


def test_a_figure_uploaded_again_after_the_listing_is_not_deleted():
    """Clean-up deletes with ifGenerationMatch on the listed generation: a render that uploads the
    same figure meanwhile (it is about to show it) keeps it."""

    class Listed:
        def __init__(self, name, generation):
            self.name, self.generation = name, generation

    again, gone = layout.figure_name(FSLUG, digest("x")), layout.figure_name(FSLUG, digest("y"))
    stored = {digest("x"): Listed(again, 1), digest("y"): Listed(gone, 1)}
    site = _Bucket({again: 2, gone: 1})  # x was uploaded again after the listing
    assert job.delete_unreferenced_figures(site, FSLUG, "", {}, stored, set(), {}) == 1
    assert site.objects == {again: 2}


def test_reuse_needs_the_live_page_to_show_it_and_preview_figures_expire(gcs, buckets):
    site = gcs.bucket(buckets.site)
    rid = layout.new_render_id()
    shown, unshown = digest("shown"), digest("unshown")
    for prefix in ("", "preview/"):
        for d in (shown, unshown):
            site.blob(layout.figure_name(FSLUG, d, prefix)).upload_from_string(b"png")
        site.blob(layout.figure_list_name(FSLUG, rid, prefix)).upload_from_string(f'{{"figures": ["{shown}"]}}')
        page = site.blob(layout.page_name(FSLUG, prefix))
        page.metadata = {job.PAGE_RENDER_ID: rid}
        page.upload_from_string("<p>page</p>")
    assert job.reusable_figures(site, FSLUG, "", [shown, unshown, digest("absent")]) == {shown}
    assert job.reusable_figures(site, FSLUG, "preview/", [shown, unshown]) == {shown}
    # the lifecycle rule deletes preview/ objects 7 days after their creation: not reused near that
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=layout.PREVIEW_EXPIRY_DAYS - 1)
    assert job.reusable_figures(site, FSLUG, "preview/", [shown], now=later) == set()
    assert job.reusable_figures(site, FSLUG, "", [shown], now=later) == {shown}

"""The render job's list mode (backfill on Cloud Run) against a real fake-gcs-server."""

from __future__ import annotations

import json

import pytest

from partybal import layout
from partybal.pipeline import backfill, job
from tests.support import synthetic

pytestmark = pytest.mark.emulators

TINY = dict(
    branches=("control", "treatment"),
    segments=("all",),
    bases=("enrollments",),
    windows={"overall": 1},
    metrics=(synthetic.MetricSpec("uri_count", ("mean",)),),
    errors=0,
)


def _upload(gcs, bucket, files):
    for name, data in files.items():
        gcs.bucket(bucket).blob(name).upload_from_string(data, content_type="application/json")


def _env(buckets, uri, index, count, attempt="0"):
    return {
        "PARTYBAL_SLUGS_URI": uri,
        "CLOUD_RUN_TASK_INDEX": str(index),
        "CLOUD_RUN_TASK_COUNT": str(count),
        "CLOUD_RUN_TASK_ATTEMPT": attempt,
        "RESULTS_BUCKET": buckets.results,
        "SITE_BUCKET": buckets.site,
        "STATE_BUCKET": buckets.state,
    }


def _status(gcs, buckets, fslug):
    blob = gcs.bucket(buckets.state).get_blob(layout.status_name(fslug))
    return None if blob is None else json.loads(blob.download_as_bytes())


def test_list_mode_renders_its_share_and_fails_at_the_end(gcs, buckets):
    _upload(gcs, buckets.results, synthetic.experiment_files(synthetic.ExperimentSpec(slug="good-one", **TINY)))
    _upload(gcs, buckets.results, {"metadata/metadata_broken_one.json": b"{not json"})
    _upload(gcs, buckets.results, {"metadata/metadata_other_task.json": b"{}"})
    # the broken one first: its failure must not stop the good one after it
    uri = backfill.write_slug_list(gcs, buckets.state, ["broken_one", "other_task", "good_one"], "", "test-run")
    assert uri == f"gs://{buckets.state}/backfill/test-run.json"

    rc = job.main(_env(buckets, uri, 0, 2), client=gcs)  # task 0 of 2: positions 0 and 2

    assert rc == 1
    good, broken = _status(gcs, buckets, "good_one"), _status(gcs, buckets, "broken_one")
    assert good["state"] == "ok" and good["page"] == "good_one.html"
    assert gcs.bucket(buckets.site).get_blob("good_one.html") is not None
    assert broken["state"] == "failed" and "metadata_broken_one.json" in broken["reason"]
    assert _status(gcs, buckets, "other_task") is None  # task 1's share
    # the status objects carry the TOC's fields as metadata
    meta = gcs.bucket(buckets.state).get_blob(layout.status_name("good_one")).metadata
    assert json.loads(meta["partybal-toc"])["input_generations"] == good["input_generations"]

    # a retried attempt skips what is already rendered ok since the list was written
    before = gcs.bucket(buckets.site).get_blob("good_one.html").generation
    assert job.main(_env(buckets, uri, 0, 2, attempt="1"), client=gcs) == 1  # broken still fails
    assert gcs.bucket(buckets.site).get_blob("good_one.html").generation == before


def test_list_mode_all_ok_and_bad_configuration(gcs, buckets):
    _upload(gcs, buckets.results, synthetic.experiment_files(synthetic.ExperimentSpec(slug="fine", **TINY)))
    uri = backfill.write_slug_list(gcs, buckets.state, ["fine"], "", "ok-run")
    assert job.main(_env(buckets, uri, 0, 1), client=gcs) == 0
    assert _status(gcs, buckets, "fine")["state"] == "ok"
    assert job.main(_env(buckets, uri, 1, 1), client=gcs) == 2  # index outside the count
    assert job.main(_env(buckets, "http://nope", 0, 1), client=gcs) == 2
    # single-slug mode is unchanged: without the list variable, PARTYBAL_SLUG is required
    env = _env(buckets, "", 0, 1)
    env.pop("PARTYBAL_SLUGS_URI")
    assert job.main(env, client=gcs) == 2
    assert job.main({**env, "PARTYBAL_SLUG": "fine"}, client=gcs) == 0


def test_local_workers_on_emulated_buckets_and_only_stale(gcs, buckets, monkeypatch, capsys):
    """`partybal backfill --results gs://…` without RUN_JOB: local workers run the job's code."""
    import argparse

    _upload(gcs, buckets.results, synthetic.experiment_files(synthetic.ExperimentSpec(slug="local-good", **TINY)))
    _upload(gcs, buckets.results, {"metadata/metadata_local_bad.json": b"[]"})
    for k, v in {"RESULTS_BUCKET": buckets.results, "SITE_BUCKET": buckets.site, "STATE_BUCKET": buckets.state}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RUN_JOB", raising=False)

    def args(only_stale):
        return argparse.Namespace(
            results=f"gs://{buckets.results}", out=None, only_stale=only_stale, parallel=2, cores=None
        )

    assert backfill.cmd_backfill(args(False)) == 1
    err = capsys.readouterr().err
    assert "1 ok, 1 failed of 2" in err and "  local_bad: " in err
    assert _status(gcs, buckets, "local_good")["state"] == "ok"
    assert _status(gcs, buckets, "local_bad")["state"] == "failed"
    # only the failed one is not up to date (read from the status records' metadata)
    assert backfill.cmd_backfill(args(True), renderer=None) == 1
    assert "backfill: 1 of 2 experiments to render" in capsys.readouterr().err

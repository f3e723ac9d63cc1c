"""The sweeper (``sweep_pending``) against the real fake-gcs-server, with a recording publisher."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from partybal import layout
from partybal.pipeline import status, sweeper

pytestmark = pytest.mark.emulators
TOPIC = "projects/partybal-test/topics/render-requests"


@pytest.fixture
def settings(buckets):
    return sweeper.Settings(
        results_bucket=buckets.results, state_bucket=buckets.state, topic=TOPIC, min_age_seconds=60, interval_seconds=10
    )


def later(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def results(gcs, buckets, fslug: str) -> dict[str, int]:
    out = {}
    for name in (
        layout.results_name(layout.Kind.METADATA, fslug),
        layout.results_name(layout.Kind.STATISTICS, fslug, "overall"),
    ):
        blob = gcs.bucket(buckets.results).blob(name)
        blob.upload_from_string(b"[]")
        out[name] = int(blob.generation)
    return out


def write_status(gcs, buckets, fslug: str, gens: dict[str, int], state: str = "ok") -> None:
    record = {
        "file_slug": fslug,
        "name": fslug,
        "state": state,
        "reason": "bad" if state == "failed" else "",
        "input_generations": gens,
        "page": None,
    }
    blob = gcs.bucket(buckets.state).blob(layout.status_name(fslug))
    blob.metadata = status.toc_metadata(record)
    blob.upload_from_string(json.dumps(record))


def test_fresh_markers_and_rendered_experiments_are_left_alone(gcs, buckets, settings, publisher):
    gens = results(gcs, buckets, "done")
    write_status(gcs, buckets, "done", gens)
    gcs.bucket(buckets.state).blob(layout.pending_name("queued")).upload_from_string("{}")
    report = sweeper.sweep(gcs, publisher, settings)
    assert publisher.messages == [] and report.republished == [] and report.reconciled == []


def test_old_marker_is_taken_over_once_and_backs_off(gcs, buckets, settings, publisher):
    gcs.bucket(buckets.state).blob(layout.pending_name("lost")).upload_from_string("{}")
    report = sweeper.sweep(gcs, publisher, settings, now=later(61))
    assert report.republished == ["lost"]
    assert [(m[1], m[2]["origin"]) for m in publisher.messages] == [(b"lost", "sweeper")]
    marker = gcs.bucket(buckets.state).get_blob(layout.pending_name("lost"))
    assert marker.metadata["sweeps"] == "1"
    # a second sweep soon after: the marker was just rewritten, and now waits 2 × the threshold
    assert sweeper.sweep(gcs, publisher, settings, now=later(100)).republished == []
    assert sweeper.sweep(gcs, publisher, settings, now=later(125)).republished == ["lost"]
    assert len(publisher.messages) == 2


def dispatched_marker(gcs, buckets, fslug: str, execution: str) -> None:
    blob = gcs.bucket(buckets.state).blob(layout.pending_name(fslug))
    blob.metadata = {"token": "event-1", "execution": execution, "dispatched_at": later(0).isoformat()}
    blob.upload_from_string("{}")


def test_marker_of_a_queued_or_running_execution_is_never_re_requested(gcs, buckets, settings, publisher):
    dispatched_marker(gcs, buckets, "queued", "projects/p/locations/l/jobs/j/executions/e1")
    asked: list[str] = []

    def active(name: str) -> str:
        asked.append(name)
        return sweeper.ACTIVE

    for age in (61, 1000, 100_000):  # however long it waits in the queue
        report = sweeper.sweep(gcs, publisher, settings, now=later(age), executions=active)
        assert report.republished == [] and report.in_progress == 1
    assert publisher.messages == [] and asked == ["projects/p/locations/l/jobs/j/executions/e1"] * 3
    # young markers are not even asked about
    assert sweeper.sweep(gcs, publisher, settings, executions=active).in_progress == 0 and len(asked) == 3


@pytest.mark.parametrize("answer", [sweeper.ENDED, sweeper.UNKNOWN])
def test_marker_of_an_ended_or_unknown_execution_falls_back_to_the_age_rule(gcs, buckets, settings, publisher, answer):
    dispatched_marker(gcs, buckets, "died", "projects/p/locations/l/jobs/j/executions/e2")
    assert sweeper.sweep(gcs, publisher, settings, now=later(30), executions=lambda name: answer).republished == []
    report = sweeper.sweep(gcs, publisher, settings, now=later(61), executions=lambda name: answer)
    assert report.republished == ["died"] and report.in_progress == 0
    marker = gcs.bucket(buckets.state).get_blob(layout.pending_name("died"))
    assert "execution" not in marker.metadata and marker.metadata["sweeps"] == "1"  # a new request


@pytest.mark.parametrize(
    "answer,expected",
    [(sweeper.ACTIVE, []), (sweeper.ENDED, ["being_rendered"]), (sweeper.UNKNOWN, ["being_rendered"])],
)
def test_results_being_rendered_right_now_are_not_reconciled(gcs, buckets, settings, publisher, answer, expected):
    """The job deleted its marker and has written no status yet: only its running record shows it.
    A record of an execution that ended (a killed job) does not hold the experiment up."""
    results(gcs, buckets, "being_rendered")
    record = gcs.bucket(buckets.state).blob(layout.running_name("being_rendered"))
    record.metadata = {"execution": "projects/p/locations/l/jobs/j/executions/e3"}
    record.upload_from_string("{}")
    report = sweeper.sweep(gcs, publisher, settings, now=later(61), executions=lambda name: answer)
    assert report.reconciled == expected and report.in_progress == (answer == sweeper.ACTIVE)


def test_marker_changed_between_listing_and_takeover_is_not_republished(gcs, buckets, settings, publisher, monkeypatch):
    state = gcs.bucket(buckets.state)
    state.blob(layout.pending_name("raced")).upload_from_string("{}")
    real_list = gcs.list_blobs

    def list_then_replace(*args, **kwargs):
        listed = list(real_list(*args, **kwargs))
        if kwargs.get("prefix") == "pending/":
            state.blob(layout.pending_name("raced")).upload_from_string("{}")  # a fresh request meanwhile
        return listed

    monkeypatch.setattr(gcs, "list_blobs", list_then_replace)
    assert sweeper.sweep(gcs, publisher, settings, now=later(61)).republished == []
    assert publisher.messages == []


def test_unrendered_and_changed_results_are_reconciled_but_failed_ones_are_not(gcs, buckets, settings, publisher):
    bad = results(gcs, buckets, "poison")
    write_status(gcs, buckets, "poison", bad, state="failed")
    odd = results(gcs, buckets, "odd")  # a render since the last change that still mismatches
    write_status(gcs, buckets, "odd", {k: v + 1 for k, v in odd.items()}, state="failed")
    write_status(gcs, buckets, "changed", {"metadata/metadata_changed.json": 1})
    results(gcs, buckets, "changed")  # results newer than its status: its notification was lost
    results(gcs, buckets, "never")  # no marker, no status
    assert sweeper.sweep(gcs, publisher, settings).reconciled == []  # too recent
    report = sweeper.sweep(gcs, publisher, settings, now=later(61))
    assert sorted(report.reconciled) == ["changed", "never"]
    assert sorted(m[1] for m in publisher.messages) == [b"changed", b"never"]
    pending = {b.name for b in gcs.list_blobs(gcs.bucket(buckets.state), prefix="pending/")}
    assert pending == {layout.pending_name("changed"), layout.pending_name("never")}
    # the markers now exist: the next sweep does not reconcile them again
    assert sweeper.sweep(gcs, publisher, settings, now=later(61)).reconciled == []


@pytest.mark.parametrize("age,expected", [(59, False), (61, True), (75, False), (125, True), (200, False), (245, True)])
def test_reconciliation_retries_a_dying_render_at_doubling_ages_only(age, expected):
    assert sweeper.crossed(age, 60, 10) is expected


def test_no_more_than_a_few_reconciliations_of_one_state():
    ages = [t * 3.0 for t in range(1, 100_000)]  # a sweep every 3 s for ~3 days, threshold 30 s
    assert sum(sweeper.crossed(a, 30, 3.0) for a in ages) == 11  # 30 s · 2**k, k = 0…10


def test_execution_lookup_asks_the_cloud_run_api(tmp_path):
    """Against the local Cloud Run stand-in: queued and running are ACTIVE, finished and unknown
    executions are ENDED, an unreachable API is UNKNOWN (so the sweeper falls back to ages)."""
    import socket
    import time

    from partybal.local import cloudrun as runstub
    from partybal.pipeline import dispatch

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gate = tmp_path / "gate"
    stub = runstub.RunStub(
        command=["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"], parallelism=1, max_retries=0
    )
    stub.serve(port)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        jobs = dispatch.jobs_client(endpoint)
        job = "projects/p/locations/l/jobs/j"
        names = [
            dispatch.execution_name(
                jobs.run_job(request=dispatch.run_job_request(job, dispatch.RenderRequest(s, s, "", {})))
            )
            for s in ("first", "second")
        ]
        lookup = sweeper.execution_lookup(endpoint)
        assert [lookup(n) for n in names] == [sweeper.ACTIVE, sweeper.ACTIVE]  # running, queued
        gate.touch()
        deadline = time.monotonic() + 20
        while lookup(names[1]) != sweeper.ENDED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [lookup(n) for n in names] == [sweeper.ENDED, sweeper.ENDED]
        assert lookup(f"{job}/executions/never-existed") == sweeper.ENDED
    finally:
        stub.shutdown()
    assert sweeper.execution_lookup(f"http://127.0.0.1:{port}")(names[0]) == sweeper.UNKNOWN


# --- killed renders and state of another shape (issue 14) ---------------------------------------

KILLED_RUN = "20261123T120000000000Z-aaaaaa"


def running_record(
    gcs,
    buckets,
    fslug: str,
    attempt="3",
    max_attempts="4",
    run_id=KILLED_RUN,
    execution="projects/p/locations/l/jobs/j/executions/e9",
):
    record = gcs.bucket(buckets.state).blob(layout.running_name(fslug))
    record.metadata = {"execution": execution, "attempt": attempt, "run_id": run_id, "max_attempts": max_attempts}
    record.upload_from_string("{}")


def test_a_render_killed_on_its_last_attempt_is_recorded_not_retried(gcs, buckets, settings, publisher):
    gens = results(gcs, buckets, "oom")
    running_record(gcs, buckets, "oom")
    asked = []
    report = sweeper.sweep(
        gcs, publisher, settings, now=later(61), executions=lambda name: asked.append(name) or sweeper.ENDED
    )
    assert report.killed == ["oom"] and report.reconciled == [] and publisher.messages == []
    record = json.loads(gcs.bucket(buckets.state).blob(layout.status_name("oom")).download_as_bytes())
    assert (
        record["state"] == "failed"
        and record["reason"] == "killed (attempt 4 of 4)"
        and record["input_generations"] == gens
    )
    assert gcs.bucket(buckets.state).get_blob(layout.running_name("oom")) is None
    from partybal.pipeline import toc

    t = toc.Settings(buckets.results, buckets.site, buckets.state)
    (row,) = toc.build_index(gcs, t, "").rows
    assert (row.state, row.reason) == ("failed", "killed (attempt 4 of 4)")
    # later sweeps: nothing more to do for these inputs (no endless retries)
    for age in (121, 241, 481, 961):
        assert (
            sweeper.sweep(gcs, publisher, settings, now=later(age), executions=lambda name: sweeper.ENDED).reconciled
            == []
        )
    assert publisher.messages == []


@pytest.mark.parametrize("answer", [sweeper.ACTIVE, sweeper.UNKNOWN])
def test_a_running_record_of_a_live_or_unknown_execution_is_not_called_killed(
    gcs, buckets, settings, publisher, answer
):
    results(gcs, buckets, "busy")
    running_record(gcs, buckets, "busy")
    report = sweeper.sweep(gcs, publisher, settings, now=later(61), executions=lambda name: answer)
    assert report.killed == [] and gcs.bucket(buckets.state).get_blob(layout.status_name("busy")) is None


def test_a_run_that_wrote_its_status_but_not_its_running_deletion_is_not_called_killed(
    gcs, buckets, settings, publisher
):
    gens = results(gcs, buckets, "done")
    status.write(
        gcs.bucket(buckets.state),
        {"file_slug": "done", "state": "ok", "reason": "", "run_id": KILLED_RUN, "input_generations": gens},
        "",
    )
    running_record(gcs, buckets, "done")
    report = sweeper.sweep(gcs, publisher, settings, now=later(61), executions=lambda name: sweeper.ENDED)
    assert report.killed == []
    assert json.loads(gcs.bucket(buckets.state).blob(layout.status_name("done")).download_as_bytes())["state"] == "ok"


def test_state_of_another_version_or_corrupted_never_stops_a_sweep_or_the_toc(gcs, buckets, settings, publisher):
    from partybal.pipeline import toc

    state = gcs.bucket(buckets.state)
    for fslug, body, meta in [
        ("arabic", {"state": "ok", "input_generations": {"m": "١٢"}}, None),
        ("superscript", {"state": "ok", "input_generations": {"m": "²"}}, None),
        ("notjson", b"\xff{", None),
        ("listed", None, {status.TOC_METADATA_KEY: json.dumps({"state": "ok", "input_generations": {"m": "²"}})}),
        ("badmeta", {"state": "ok", "input_generations": {}}, {status.TOC_METADATA_KEY: "{not json"}),
    ]:
        results(gcs, buckets, fslug)
        blob = state.blob(layout.status_name(fslug))
        blob.metadata = meta
        blob.upload_from_string(body if isinstance(body, bytes) else json.dumps(body or {}))
    marker = state.blob(layout.pending_name("oddmarker"))
    marker.metadata = {"sweeps": "²", "execution": ""}
    marker.upload_from_string("{}")
    running_record(gcs, buckets, "arabic", attempt="٣", max_attempts="x")
    sweeper.sweep(gcs, publisher, settings, now=later(61), executions=lambda name: sweeper.ENDED)
    rows = {
        r.file_slug: r
        for r in toc.build_index(gcs, toc.Settings(buckets.results, buckets.site, buckets.state), "").rows
    }
    assert rows["superscript"].state == "unknown" and "is not a number" in rows["superscript"].reason
    assert rows["notjson"].state == "unknown" and "unreadable status record" in rows["notjson"].reason
    assert rows["listed"].state == "unknown"
    assert rows["arabic"].state == "failed" and rows["arabic"].reason == "killed (attempt ? of ?)"

"""The sweeper (``sweep_pending``) against the real fake-gcs-server, with a recording publisher."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from partybal import layout, status, sweeper

pytestmark = pytest.mark.emulators
TOPIC = "projects/partybal-test/topics/render-requests"


@pytest.fixture
def settings(buckets):
    return sweeper.Settings(results_bucket=buckets.results, state_bucket=buckets.state, topic=TOPIC, min_age_seconds=60, interval_seconds=10)


def later(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


def results(gcs, buckets, fslug: str) -> dict[str, int]:
    out = {}
    for name in (layout.results_name(layout.Kind.METADATA, fslug), layout.results_name(layout.Kind.STATISTICS, fslug, "overall")):
        blob = gcs.bucket(buckets.results).blob(name)
        blob.upload_from_string(b"[]")
        out[name] = int(blob.generation)
    return out


def write_status(gcs, buckets, fslug: str, gens: dict[str, int], state: str = "ok") -> None:
    record = {"file_slug": fslug, "name": fslug, "state": state, "reason": "bad" if state == "failed" else "", "input_generations": gens, "page": None}
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

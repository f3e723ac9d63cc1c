"""Coalescing against the real fake-gcs-server (and one test with the real Pub/Sub emulator)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from google.api_core import exceptions as gexc

from partybal import layout
from partybal.pipeline import coalesce
from partybal.pipeline.job import delete_marker

pytestmark = pytest.mark.emulators
TOPIC = "projects/partybal-test/topics/render-requests"


def finalize(name, bucket, eid):
    return "google.cloud.storage.object.v1.finalized", {"bucket": bucket, "name": name, "generation": "1"}, eid


@pytest.fixture
def settings(buckets):
    return coalesce.Settings(results_bucket=buckets.results, state_bucket=buckets.state, topic=TOPIC, stale_seconds=900)


def test_emulator_honours_generation_preconditions(gcs, buckets):
    """The design rests on these; fake-gcs-server implements them for writes."""
    b = gcs.bucket(buckets.state)
    first = b.blob("pending/x")
    first.upload_from_string("1", if_generation_match=0)
    with pytest.raises(gexc.PreconditionFailed):
        b.blob("pending/x").upload_from_string("2", if_generation_match=0)
    second = b.blob("pending/x")
    second.upload_from_string("3", if_generation_match=first.generation)
    assert second.generation != first.generation
    with pytest.raises(gexc.PreconditionFailed):
        b.blob("pending/x").upload_from_string("4", if_generation_match=first.generation)
    assert b.blob("pending/x").download_as_bytes() == b"3"


def test_burst_is_one_render_and_later_upload_is_another(gcs, buckets, settings, publisher):
    names = [layout.results_name(layout.Kind.STATISTICS, "exp_a", p) for p in ("overall", "weekly", "daily")]
    names.append(layout.results_name(layout.Kind.METADATA, "exp_a"))
    outcomes = [
        coalesce.handle_results_event(
            *finalize(n, buckets.results, f"e{i}"), settings=settings, client=gcs, publisher=publisher
        )
        for i, n in enumerate(names)
    ]
    assert outcomes == [coalesce.PUBLISHED] + [coalesce.COALESCED] * 3
    assert len(publisher.messages) == 1
    topic, data, attrs = publisher.messages[0]
    marker = gcs.bucket(buckets.state).get_blob(layout.pending_name("exp_a"))
    assert (topic, data) == (TOPIC, b"exp_a")
    assert attrs == {"origin": "finalize", "generation": str(marker.generation)}

    # the job starts: deletes the marker before reading; an upload after that renders again
    assert delete_marker(gcs.bucket(buckets.state), "exp_a", "") is True
    assert (
        coalesce.handle_results_event(
            *finalize(names[0], buckets.results, "e9"), settings=settings, client=gcs, publisher=publisher
        )
        == coalesce.PUBLISHED
    )
    assert len(publisher.messages) == 2


def test_other_experiments_and_previews_are_separate(gcs, buckets, settings, publisher):
    for i, name in enumerate(
        ["metadata/metadata_one.json", "metadata/metadata_two.json", "preview/metadata/metadata_one.json"]
    ):
        assert (
            coalesce.handle_results_event(
                *finalize(name, buckets.results, f"x{i}"), settings=settings, client=gcs, publisher=publisher
            )
            == coalesce.PUBLISHED
        )
    got = sorted((data, attrs.get("prefix", "")) for _, data, attrs in publisher.messages)
    assert got == [(b"one", ""), (b"one", "preview/"), (b"two", "")]
    assert gcs.bucket(buckets.state).get_blob("preview/pending/one") is not None


def test_ambiguous_statistics_name_goes_to_the_experiment_whose_files_exist(gcs, buckets, settings, publisher):
    """``statistics_study_preenrollment_weekly`` reads as ``study``'s pre-enrollment weekly file or
    ``study-preenrollment``'s weekly file: the listing decides, never the first reading."""
    results = gcs.bucket(buckets.results)
    ambiguous = "statistics/statistics_study_preenrollment_weekly.json"
    results.blob(ambiguous).upload_from_string("[]")
    # neither experiment has other files: nobody's
    assert (
        coalesce.handle_results_event(
            *finalize(ambiguous, buckets.results, "a1"), settings=settings, client=gcs, publisher=publisher
        )
        == coalesce.IGNORED
    )
    results.blob("metadata/metadata_study_preenrollment.json").upload_from_string("{}")
    assert (
        coalesce.handle_results_event(
            *finalize(ambiguous, buckets.results, "a2"), settings=settings, client=gcs, publisher=publisher
        )
        == coalesce.PUBLISHED
    )
    assert [data for _, data, _ in publisher.messages] == [b"study_preenrollment"]
    assert gcs.bucket(buckets.state).get_blob(layout.pending_name("study")) is None


def test_ignored_events_touch_nothing(gcs, buckets, settings, publisher):
    for name in (
        "statistics/statistics_a_overall-abcdefgh.json",
        "notes.txt",
        "../statistics/statistics_a_overall.json",
    ):
        assert (
            coalesce.handle_results_event(
                *finalize(name, buckets.results, "i"), settings=settings, client=gcs, publisher=publisher
            )
            == coalesce.IGNORED
        )
    assert (
        coalesce.handle_results_event(
            *finalize("metadata/metadata_a.json", "other-bucket", "i"),
            settings=settings,
            client=gcs,
            publisher=publisher,
        )
        == coalesce.IGNORED
    )
    assert publisher.messages == []
    assert list(gcs.list_blobs(buckets.state)) == []


def test_concurrent_uploads_make_exactly_one_request(gcs, buckets, publisher):
    bucket = gcs.bucket(buckets.state)
    barrier = threading.Barrier(6)
    outcomes = []

    def one(i):
        barrier.wait()
        outcomes.append(coalesce.request_render(bucket, publisher, TOPIC, "busy", token=f"t{i}"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == sorted([coalesce.PUBLISHED] + [coalesce.COALESCED] * 5)
    assert len(publisher.messages) == 1


def test_stale_marker_is_taken_over_once(gcs, buckets, publisher):
    bucket = gcs.bucket(buckets.state)
    assert coalesce.request_render(bucket, publisher, TOPIC, "old", token="first") == coalesce.PUBLISHED
    stale = bucket.get_blob(layout.pending_name("old"))
    later = stale.updated + dt.timedelta(seconds=1000)
    assert (
        coalesce.request_render(
            bucket, publisher, TOPIC, "old", token="second", now=stale.updated + dt.timedelta(seconds=10)
        )
        == coalesce.COALESCED
    )
    assert coalesce.request_render(bucket, publisher, TOPIC, "old", token="third", now=later) == coalesce.TOOK_OVER
    assert len(publisher.messages) == 2
    taken = bucket.get_blob(layout.pending_name("old"))
    assert taken.generation != stale.generation and taken.metadata["token"] == "third"
    assert publisher.messages[1][2]["generation"] == str(taken.generation)
    # a second taker that saw the same stale generation loses the precondition and does not publish
    with pytest.raises(gexc.PreconditionFailed):
        coalesce._write_marker(bucket, layout.pending_name("old"), "{}", "fourth", int(stale.generation))
    # and the now-fresh marker coalesces (its `updated` is the emulator's clock, compared as such)
    assert (
        coalesce.request_render(bucket, publisher, TOPIC, "old", token="fifth", now=taken.updated) == coalesce.COALESCED
    )
    assert len(publisher.messages) == 2


def test_redelivered_event_publishes_again(gcs, buckets):
    """A crash between creating the marker and publishing must not strand the render: the same
    event (same id) redelivered recognises its marker and publishes."""
    bucket = gcs.bucket(buckets.state)

    class Failing:
        def publish(self, *a, **k):
            raise RuntimeError("pubsub down")

    with pytest.raises(RuntimeError):
        coalesce.request_render(bucket, Failing(), TOPIC, "crashy", token="event-1")
    from tests.pipeline.pipeline_support import RecordingPublisher

    pub = RecordingPublisher()
    assert coalesce.request_render(bucket, pub, TOPIC, "crashy", token="event-2") == coalesce.COALESCED
    assert coalesce.request_render(bucket, pub, TOPIC, "crashy", token="event-1") == coalesce.PUBLISHED
    assert [m[1] for m in pub.messages] == [b"crashy"]


def test_publishes_to_the_real_pubsub_emulator(gcs, buckets, settings, pubsub_emulator, monkeypatch):
    host, project = pubsub_emulator
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, f"render-requests-{buckets.state}")
    sub = subscriber.subscription_path(project, f"dispatch-{buckets.state}")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    s = coalesce.Settings(buckets.results, buckets.state, topic, 900)
    for i, name in enumerate(
        ["preview/statistics/statistics_real_overall.json", "preview/metadata/metadata_real.json"]
    ):
        coalesce.handle_results_event(
            *finalize(name, buckets.results, f"r{i}"), settings=s, client=gcs, publisher=publisher
        )
    received = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not received:
        resp = subscriber.pull(subscription=sub, max_messages=10, timeout=5)
        received.extend(resp.received_messages)
    # one more pull proves there is no second request (the burst coalesced)
    extra = subscriber.pull(subscription=sub, max_messages=10, timeout=3, return_immediately=True) if received else None
    assert len(received) == 1 and (extra is None or not extra.received_messages)
    msg = received[0].message
    assert msg.data == b"real"
    assert dict(msg.attributes)["prefix"] == "preview/" and dict(msg.attributes)["origin"] == "finalize"
    subscriber.close()

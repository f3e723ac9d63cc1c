"""Event parsing: both event shapes, junk, hostile names, and the exact raw push body the Pub/Sub
emulator sends, through functions-framework's own conversion."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from partybal import layout
from partybal.pipeline import coalesce, events

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "results-bkt"


def storage_event(name, bucket=BUCKET, generation="1700000000000001"):
    return events.STORAGE_FINALIZED, {
        "kind": "storage#object",
        "bucket": bucket,
        "name": name,
        "generation": generation,
        "updated": "2024-05-01T12:00:00.000Z",
    }


def notification_event(name, bucket=BUCKET, event_type="OBJECT_FINALIZE", generation=1700000000000002):
    """What functions-framework makes of fake-gcs-server's notification (see raw_push_body)."""
    obj = {
        "kind": "storage#object",
        "name": name,
        "bucket": bucket,
        "generation": generation,
        "updated": "2024-05-01T12:00:00Z",
    }
    return events.PUBSUB_PUBLISHED, {
        "message": {
            "@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
            "data": base64.b64encode(json.dumps(obj).encode()).decode(),
            "attributes": {
                "bucketId": bucket,
                "objectId": name,
                "objectGeneration": str(generation),
                "eventType": event_type,
                "eventTime": "2024-05-01T12:00:00Z",
                "payloadFormat": "JSON_API_V1",
            },
            "messageId": "42",
            "publishTime": "2024-05-01T12:00:00.1Z",
        }
    }


@pytest.mark.parametrize("make", [storage_event, notification_event])
@pytest.mark.parametrize(
    "name,slug,prefix",
    [
        ("statistics/statistics_my_exp_weekly.json", "my_exp", ""),
        ("statistics/statistics_my_exp_preenrollment_weekly.json", "my_exp", ""),
        ("metadata/metadata_my_exp.json", "my_exp", ""),
        ("errors/errors_my_exp.json", "my_exp", ""),
        ("preview/statistics/statistics_pre_x_overall.json", "pre_x", "preview/"),
    ],
)
def test_results_finalize_is_understood(make, name, slug, prefix):
    blob = events.results_blob(*make(name), BUCKET)
    assert (blob.file_slug, blob.prefix) == (slug, prefix)


@pytest.mark.parametrize("make", [storage_event, notification_event])
@pytest.mark.parametrize(
    "name",
    [
        "statistics/statistics_my_exp_weekly-abcdefgh.json",  # Jetstream temp files
        "statistics/statistics_my_exp_weekly-abcdefgh.ndjson",
        "statistics/statistics_my_exp_weekly.ndjson",
        "../statistics/statistics_my_exp_weekly.json",  # path traversal
        "statistics/../statistics/statistics_my_exp_weekly.json",
        "other/statistics/statistics_my_exp_weekly.json",  # unwatched prefix
        "statistics/statistics_my_exp_hourly.json",  # unknown period
        "statistics/statistics_my exp_weekly.json",
        "statistics/statistics_my_exp_weekly.json\n",
        "statistics/statistics_<script>_weekly.json",
        "metadata/metadata_" + "x" * 300 + ".json",
        "statistics/statistics_a\x00b_weekly.json",
        "index.html",
        "statistics/",
    ],
)
def test_junk_and_hostile_names_are_ignored(make, name):
    with pytest.raises(events.NotUnderstood):
        events.results_blob(*make(name), BUCKET)


def test_other_bucket_and_other_event_types_are_ignored():
    name = "statistics/statistics_my_exp_weekly.json"
    with pytest.raises(events.NotUnderstood, match="not the results bucket"):
        events.results_blob(*storage_event(name, bucket="elsewhere"), BUCKET)
    with pytest.raises(events.NotUnderstood, match="not the results bucket"):
        events.results_blob(*notification_event(name, bucket="elsewhere"), BUCKET)
    with pytest.raises(events.NotUnderstood, match="only finalize"):
        events.results_blob(*notification_event(name, event_type="OBJECT_DELETE"), BUCKET)
    with pytest.raises(events.NotUnderstood, match="only finalize"):
        events.results_blob(events.STORAGE_DELETED, storage_event(name)[1], BUCKET)
    with pytest.raises(events.NotUnderstood, match="not a storage change"):
        events.results_blob("google.cloud.audit.log.v1.written", {}, BUCKET)


@pytest.mark.parametrize(
    "data",
    [
        None,
        "text",
        {},
        {"message": "nope"},
        {"message": {"data": "!!!not base64!!!", "attributes": {"eventType": "OBJECT_FINALIZE"}}},
        {"message": {"data": base64.b64encode(b"render me").decode()}},  # no eventType: not a notification
        {"message": {"data": "", "attributes": {"eventType": "OBJECT_FINALIZE", "bucketId": BUCKET}}},  # no name
        {
            "message": {
                "data": "",
                "attributes": {
                    "eventType": "OBJECT_FINALIZE",
                    "bucketId": BUCKET,
                    "objectId": "metadata/metadata_x.json",
                    "objectGeneration": "x1",
                },
            }
        },
    ],
)
def test_malformed_pubsub_events_raise_not_understood(data):
    with pytest.raises(events.NotUnderstood):
        events.results_blob(events.PUBSUB_PUBLISHED, data, BUCKET)


def test_notification_without_payload_uses_attributes():
    etype, data = notification_event("metadata/metadata_x.json")
    data["message"]["data"] = ""  # payloadFormat NONE
    change = events.object_change(etype, data)
    assert (change.bucket, change.name, change.generation, change.kind) == (
        BUCKET,
        "metadata/metadata_x.json",
        1700000000000002,
        "finalize",
    )


def test_state_events():
    etype, data = notification_event("preview/status/x.json", bucket="st", event_type="OBJECT_DELETE")
    blob = events.state_blob(etype, data, "st")
    assert (blob.what, blob.file_slug, blob.prefix) == ("status", "x", "preview/")
    assert events.state_blob(*storage_event("pending/y", bucket="st"), "st").what == "pending"
    assert layout.parse_state_name("preview/running/z") == layout.StateBlob(
        "preview/running/z", "running", "z", "preview/"
    )
    for bad in (
        "index.html",
        "status/x.json.tmp",
        "pending/../status/x.json",
        "other/status/x.json",
        "running/z",
        "running/z.json",
    ):
        with pytest.raises(events.NotUnderstood):
            events.state_blob(*storage_event(bad, bucket="st"), "st")
    with pytest.raises(events.NotUnderstood):
        events.state_blob(*storage_event("status/x.json", bucket="results"), "st")


def raw_push_body(name, bucket=BUCKET, event_type="OBJECT_FINALIZE", generation=1714564800123456):
    """Exactly what the Pub/Sub emulator POSTs for a push subscription, wrapping what
    fake-gcs-server publishes (internal/notification/event.go: generation is a JSON number)."""
    obj = {
        "kind": "storage#object",
        "id": f"{bucket}/{name}",
        "name": name,
        "bucket": bucket,
        "generation": generation,
        "contentType": "application/json",
        "timeCreated": "2024-05-01T12:00:00.123456Z",
        "updated": "2024-05-01T12:00:00.123456Z",
        "storageClass": "STANDARD",
        "size": "1234",
        "md5Hash": "XUFAKrxLKna5cZ2REBfFkg==",
        "crc32c": "yZRlqg==",
    }
    data = base64.b64encode(json.dumps(obj).encode()).decode()
    attrs = {
        "bucketId": bucket,
        "eventTime": "2024-05-01T12:00:00Z",
        "eventType": event_type,
        "objectGeneration": str(generation),
        "objectId": name,
        "payloadFormat": "JSON_API_V1",
    }
    return {
        "message": {
            "attributes": attrs,
            "data": data,
            "messageId": "7",
            "message_id": "7",
            "publishTime": "2024-05-01T12:00:00.200Z",
            "publish_time": "2024-05-01T12:00:00.200Z",
        },
        "subscription": "projects/partybal-local/subscriptions/results-finalized-push",
    }


@pytest.fixture
def finalize_app(monkeypatch, publisher):
    """functions-framework serving functions/main.py's on_results_finalized, with the coalescing
    call recorded instead of touching GCS."""
    calls = []
    monkeypatch.setenv("RESULTS_BUCKET", BUCKET)
    monkeypatch.setenv("STATE_BUCKET", "state-bkt")
    monkeypatch.setenv("RENDER_TOPIC", "projects/p/topics/render-requests")

    def fake_request_render(bucket, pub, topic, fslug, prefix="", **kw):
        calls.append((bucket.name, topic, fslug, prefix, kw["trigger"]))
        return coalesce.PUBLISHED

    class FakeClient:
        def bucket(self, name):
            from types import SimpleNamespace

            return SimpleNamespace(name=name)

    monkeypatch.setattr(coalesce, "request_render", fake_request_render)
    monkeypatch.setattr(coalesce, "default_publisher", lambda: publisher)
    monkeypatch.setattr(coalesce, "gcs_client", lambda *a, **k: FakeClient())
    import functions_framework

    app = functions_framework.create_app(
        "on_results_finalized", str(ROOT / "functions" / "main.py"), signature_type="cloudevent"
    )
    return app.test_client(), calls


def test_functions_framework_raw_push_reaches_the_handler(finalize_app):
    client, calls = finalize_app
    resp = client.post("/", json=raw_push_body("preview/statistics/statistics_my_exp_daily.json"))
    assert resp.status_code == 200, resp.data
    assert calls == [
        (
            "state-bkt",
            "projects/p/topics/render-requests",
            "my_exp",
            "preview/",
            "preview/statistics/statistics_my_exp_daily.json",
        )
    ]


def test_functions_framework_direct_storage_cloudevent(finalize_app):
    client, calls = finalize_app
    etype, data = storage_event("metadata/metadata_exp_2.json")
    headers = {
        "ce-id": "1",
        "ce-specversion": "1.0",
        "ce-type": etype,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{BUCKET}",
        "ce-subject": "objects/metadata/metadata_exp_2.json",
    }
    resp = client.post("/", json=data, headers=headers)
    assert resp.status_code == 200, resp.data
    assert [c[2:4] for c in calls] == [("exp_2", "")]


def test_functions_framework_junk_is_acknowledged_and_logged(finalize_app, caplog):
    client, calls = finalize_app
    with caplog.at_level(logging.DEBUG, logger="partybal"):
        for body in (
            raw_push_body("statistics/statistics_my_exp_daily-abcdefgh.ndjson"),
            raw_push_body("statistics/statistics_my_exp_daily.json", bucket="someone-else"),
            raw_push_body("statistics/statistics_my_exp_daily.json", event_type="OBJECT_DELETE"),
            raw_push_body("../statistics/statistics_my_exp_daily.json"),
        ):
            assert client.post("/", json=body).status_code == 200
    assert calls == []
    ignored = [r for r in caplog.records if r.getMessage().startswith("ignored event")]
    assert len(ignored) == 4 and all(r.levelno == logging.DEBUG for r in ignored)
    assert all("slug" in r.fields for r in ignored)


def test_log_lines_are_json(capsys):
    import io

    from partybal import logs

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("partybal.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        events.ignored(logger, events.NotUnderstood("why"), event_id="e1")
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["severity"] == "DEBUG" and entry["message"] == "ignored event: why" and entry["slug"] is None


def test_layout_rejects_names_with_trailing_newline():
    assert not layout.is_file_slug("abc\n")
    assert layout.parse_state_name("status/x.json\n") is None


def test_settings_from_env():
    from partybal.errors import ConfigError

    s = coalesce.Settings.from_env({"RESULTS_BUCKET": "r", "STATE_BUCKET": "s", "RENDER_TOPIC": "t"})
    assert s.stale_seconds == coalesce.DEFAULT_STALE_SECONDS
    assert (
        coalesce.Settings.from_env(
            {"RESULTS_BUCKET": "r", "STATE_BUCKET": "s", "RENDER_TOPIC": "t", "COALESCE_STALE_SECONDS": "5"}
        ).stale_seconds
        == 5
    )
    with pytest.raises(ConfigError, match="RENDER_TOPIC"):
        coalesce.Settings.from_env({"RESULTS_BUCKET": "r", "STATE_BUCKET": "s"})
    with pytest.raises(ConfigError, match="whole number"):
        coalesce.Settings.from_env(
            {"RESULTS_BUCKET": "r", "STATE_BUCKET": "s", "RENDER_TOPIC": "t", "COALESCE_STALE_SECONDS": "soon"}
        )

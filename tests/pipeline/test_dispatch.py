"""dispatch_render: a render request → one run_job POST with the right overrides, against a tiny
local HTTP server standing in for the Cloud Run Admin API."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from partybal import layout
from partybal.pipeline import dispatch, events

ROOT = Path(__file__).resolve().parents[2]
JOB = "projects/partybal-test/locations/europe-west1/jobs/partybal-render"


@pytest.fixture
def run_api():
    calls: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            calls.append((self.path, json.loads(body or b"{}")))
            execution = {
                "@type": "type.googleapis.com/google.cloud.run.v2.Execution",
                "name": f"{JOB}/executions/ex-{len(calls)}",
            }
            reply = json.dumps(
                {
                    "name": f"projects/partybal-test/locations/europe-west1/operations/op-{len(calls)}",
                    "done": False,
                    "metadata": execution,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


def message(data: bytes, attributes=None):
    msg = {"data": base64.b64encode(data).decode(), "messageId": "1", "publishTime": "2024-05-01T00:00:00Z"}
    if attributes is not None:
        msg["attributes"] = attributes
    return events.PUBSUB_PUBLISHED, {"message": msg}


def env_of(body):
    [override] = body["overrides"]["containerOverrides"]
    return {e["name"]: e.get("value", "") for e in override["env"]}


def test_request_from_finalize_starts_the_job(run_api):
    endpoint, calls = run_api
    environ = {"RUN_JOB": JOB, "RUN_API_ENDPOINT": endpoint}
    req = dispatch.handle_render_request(
        *message(b"my_exp", {"prefix": "preview/", "origin": "finalize", "generation": "5"}), environ=environ
    )
    assert req is not None and req.file_slug == "my_exp"
    [(path, body)] = calls
    assert path.startswith(f"/v2/{JOB}:run")
    assert env_of(body) == {"PARTYBAL_SLUG": "my_exp", "PARTYBAL_PREFIX": "preview/"}


def test_manual_publish_without_attributes_always_renders(run_api):
    """gcloud pubsub topics publish render-requests --message='my-exp.v2 ' (with stray whitespace)"""
    endpoint, calls = run_api
    environ = {"RUN_JOB": JOB, "RUN_API_ENDPOINT": endpoint}
    for _ in range(2):  # twice: no coalescing on this path
        dispatch.handle_render_request(*message(b" my-exp.v2 \n"), environ=environ)
    assert len(calls) == 2
    assert all(env_of(body) == {"PARTYBAL_SLUG": "my-exp.v2", "PARTYBAL_PREFIX": ""} for _, body in calls)


@pytest.mark.parametrize(
    "event",
    [
        message(b""),
        message(b"   "),
        message(b"\xff\xfe"),
        message(b"y" * 300),  # longer than a file slug may be
        message(b"x" * 2000),
        message(b"ok_slug", {"prefix": "../"}),
        message(b"ok_slug", {"prefix": "other/"}),
        (events.PUBSUB_PUBLISHED, {"message": {"data": "%%%"}}),
        (events.PUBSUB_PUBLISHED, {}),
        ("google.cloud.storage.object.v1.finalized", {"bucket": "b", "name": "n"}),
    ],
)
def test_bad_requests_are_logged_and_acknowledged(run_api, event, caplog):
    endpoint, calls = run_api
    environ = {"RUN_JOB": JOB, "RUN_API_ENDPOINT": endpoint}
    result = dispatch.handle_render_request(*event, environ=environ)
    assert result is None and calls == []
    assert any(r.levelname == "ERROR" and "rejected" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("raw,fslug", [(b"bad/../slug", "bad____slug"), ("exp\u00e9".encode(), "exp_")])
def test_odd_characters_become_a_harmless_file_slug(run_api, raw, fslug):
    """file_slug() maps every character outside [A-Za-z0-9_] to '_' (as Jetstream does)."""
    endpoint, calls = run_api
    req = dispatch.handle_render_request(*message(raw), environ={"RUN_JOB": JOB, "RUN_API_ENDPOINT": endpoint})
    assert req.file_slug == fslug and len(calls) == 1


def test_dispatch_through_functions_framework_raw_push(run_api, monkeypatch):
    endpoint, calls = run_api
    monkeypatch.setenv("RUN_JOB", JOB)
    monkeypatch.setenv("RUN_API_ENDPOINT", endpoint)
    import functions_framework

    app = functions_framework.create_app(
        "dispatch_render", str(ROOT / "functions" / "main.py"), signature_type="cloudevent"
    )
    client = app.test_client()
    push = {
        "message": {
            "data": base64.b64encode(b"sample-search-defaults").decode(),
            "messageId": "9",
            "message_id": "9",
            "publishTime": "2024-05-01T00:00:00Z",
        },
        "subscription": "projects/partybal-test/subscriptions/render-requests-push",
    }
    assert client.post("/", json=push).status_code == 200
    junk = {"message": {"data": base64.b64encode(b"\n").decode(), "messageId": "10"}, "subscription": "s"}
    assert client.post("/", json=junk).status_code == 200  # acknowledged, no crash loop
    assert [env_of(body)["PARTYBAL_SLUG"] for _, body in calls] == ["sample-search-defaults"]


def test_run_job_request_shape():
    req = dispatch.run_job_request(JOB, dispatch.RenderRequest("a-b", "a_b", "", {}))
    assert req.name == JOB
    [override] = req.overrides.container_overrides
    assert [(e.name, e.value) for e in override.env] == [("PARTYBAL_SLUG", "a-b"), ("PARTYBAL_PREFIX", "")]


@pytest.mark.emulators
def test_started_execution_is_recorded_on_its_pending_marker(run_api, gcs, buckets):
    endpoint, calls = run_api
    state = gcs.bucket(buckets.state)
    marker = state.blob(layout.pending_name("my_exp"))
    marker.metadata = {"token": "event-1"}
    marker.upload_from_string("{}", if_generation_match=0)
    environ = {"RUN_JOB": JOB, "RUN_API_ENDPOINT": endpoint, "STATE_BUCKET": buckets.state}
    attrs = {"origin": "finalize", "generation": str(marker.generation)}
    assert dispatch.handle_render_request(*message(b"my_exp", attrs), environ=environ, storage_client=gcs) is not None
    meta = state.get_blob(layout.pending_name("my_exp")).metadata
    assert meta["execution"] == f"{JOB}/executions/ex-1" and meta["token"] == "event-1"
    assert dt.datetime.fromisoformat(meta["dispatched_at"]).tzinfo is not None


@pytest.mark.emulators
def test_marking_never_creates_a_marker_or_fails_the_request(run_api, gcs, buckets, caplog):
    endpoint, calls = run_api
    environ = {"RUN_JOB": JOB, "RUN_API_ENDPOINT": endpoint, "STATE_BUCKET": buckets.state}
    # the job already started and deleted the marker
    assert dispatch.handle_render_request(
        *message(b"gone", {"generation": "12345"}), environ=environ, storage_client=gcs
    )
    # published by hand: no generation, no marker to mark (an existing marker is not touched)
    gcs.bucket(buckets.state).blob(layout.pending_name("manual")).upload_from_string("{}")
    assert dispatch.handle_render_request(*message(b"manual"), environ=environ, storage_client=gcs)
    assert gcs.bucket(buckets.state).get_blob(layout.pending_name("gone")) is None
    assert not (gcs.bucket(buckets.state).get_blob(layout.pending_name("manual")).metadata or {})

    class Broken:
        def bucket(self, name):
            raise RuntimeError("storage is down")

    assert dispatch.handle_render_request(*message(b"x", {"generation": "7"}), environ=environ, storage_client=Broken())
    assert len(calls) == 3
    assert any(r.levelname == "WARNING" and "storage is down" in r.getMessage() for r in caplog.records)


def test_marking_patches_only_the_marker_the_request_names():
    """GCS applies the PATCH only if the marker is still that generation (fake-gcs-server ignores
    the precondition, so the request itself is what is checked here)."""
    from google.api_core import exceptions as gexc

    calls = []

    class Marker:
        def __init__(self, name):
            self.name, self.metadata = name, None

        def patch(self, **kwargs):
            calls.append((self.name, dict(self.metadata), kwargs))
            if kwargs["if_generation_match"] != 5:
                raise gexc.PreconditionFailed("replaced by a newer request")

    class Bucket:
        def blob(self, name):
            return Marker(name)

    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    ok = dispatch.mark_dispatched(Bucket(), dispatch.RenderRequest("a", "a", "preview/", {"generation": "5"}), "E", now)
    stale = dispatch.mark_dispatched(
        Bucket(), dispatch.RenderRequest("a", "a", "preview/", {"generation": "4"}), "E", now
    )
    assert (ok, stale) == (True, False)
    assert calls[0] == (
        "preview/pending/a",
        {"execution": "E", "dispatched_at": "2026-01-02T00:00:00+00:00"},
        {"if_generation_match": 5},
    )

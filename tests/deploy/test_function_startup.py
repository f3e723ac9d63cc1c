"""The deployed Cloud Functions start and handle the events GCP sends them.

The function source is staged by `make bundle` (what terraform zips), only its requirements.txt is
installed into a clean venv, and each entry point runs the way the python311 runtime runs it:
``functions-framework`` in the source folder with ``FUNCTION_TARGET``/``FUNCTION_SIGNATURE_TYPE``
set and the environment docs/architecture.md ("Environment contract") gives that function. Each
gets an HTTP request of the shape GCP delivers, with the real clients pointed at fake-gcs-server,
the Pub/Sub emulator and the local Cloud Run stand-in (partybal/local/cloudrun.py):

* ``on_results_finalized``, ``rebuild_toc``: an Eventarc ``google.cloud.storage.object.v1.finalized``
  CloudEvent (binary content mode) whose data is the object resource the emulator returns;
* ``dispatch_render``: the Pub/Sub push (wrapped JSON, topic in the URL path) of the very message
  ``on_results_finalized`` published, pulled from the emulator (terraform/pubsub.tf);
* ``sweep_pending``: an Eventarc ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent carrying
  Cloud Scheduler's tick (terraform/sweeper.tf).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from partybal.local.experimenter_standin import StandIn
from tests.helpers import unavailable
from tests.pipeline.conftest import fake_gcs_argv, free_port, stop, wait_for_port

from .bundle_support import clean_venv, installed, make_bundle, tail
from .conftest import ROOT, cloud_event_handlers, contract_table

pytestmark = pytest.mark.emulators

PROJECT = "partybal-test"
JOB = f"projects/{PROJECT}/locations/us-central1/jobs/partybal-render"
SLUG = "sample_search_defaults"
SAMPLE = ROOT / "sample"
# docs/architecture.md "used by" label of each entry point
USED_BY = {
    "on_results_finalized": "finalize fn",
    "dispatch_render": "dispatch fn",
    "rebuild_toc": "TOC fn",
    "sweep_pending": "sweep fn",
    "snapshot_experimenter": "experimenter fn",
}


@pytest.fixture(scope="module")
def function_source(tmp_path_factory):
    """(bundle folder, python of a clean venv holding only the bundle's requirements.txt)."""
    base = tmp_path_factory.mktemp("functions")
    bundle = make_bundle(base / "function-source")
    python = clean_venv(bundle / "requirements.txt", base / "venv")
    return bundle, python


def test_main_imports_with_only_the_bundle_requirements(function_source):
    bundle, python = function_source
    handlers = sorted(cloud_event_handlers(ROOT / "functions" / "main.py"))
    assert set(handlers) == set(USED_BY), "an entry point was added or renamed: give it a case here"
    code = f"import main; print(','.join(n for n in {handlers!r} if callable(getattr(main, n, None))))"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(bundle.parent)}
    proc = subprocess.run([str(python), "-c", code], cwd=bundle, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"import main failed in a venv holding only the bundle's requirements.txt:\n{tail(proc.stderr, 4)}"
    )
    assert proc.stdout.strip().split(",") == handlers


def test_the_venv_holds_exactly_the_pinned_distributions(function_source):
    """Nothing the buildpack would resolve on its own (unpinned): every installed distribution is a
    pin of the bundle's requirements.txt, at that version."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    bundle, python = function_source
    pins = {}
    for line in (bundle / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    assert installed(python) == pins


def stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process group we started at once, then wait (SIGKILL after 10 s)."""
    import signal

    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        stop(proc)  # already terminating: waits, and kills what is left


# --- the emulators (this module's own: stopped as soon as it is done) ----------------------------


@pytest.fixture(scope="module")
def emulators(tmp_path_factory):
    """(STORAGE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST, project): fake-gcs-server and the Pub/Sub
    emulator, started as tests/pipeline/conftest.py starts them."""
    import shutil

    gcloud = shutil.which("gcloud")
    if not gcloud:
        unavailable("gcloud is not installed")
    root = tmp_path_factory.mktemp("emulators")
    gcs_port, pubsub_port = free_port(), free_port()
    gcs_argv = fake_gcs_argv(gcs_port, root / "gcs")
    procs = []
    with (root / "fake-gcs.log").open("wb") as gcs_log, (root / "pubsub.log").open("wb") as pubsub_log:
        procs.append(
            subprocess.Popen(
                gcs_argv,
                stdout=gcs_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        (root / "pubsub").mkdir()
        procs.append(
            subprocess.Popen(
                [
                    gcloud,
                    "beta",
                    "emulators",
                    "pubsub",
                    "start",
                    f"--host-port=127.0.0.1:{pubsub_port}",
                    f"--project={PROJECT}",
                    f"--data-dir={root}/pubsub",
                ],
                stdout=pubsub_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        wait_for_port(gcs_port, procs[0], 15, "fake-gcs-server")
        wait_for_port(pubsub_port, procs[1], 60, "the Pub/Sub emulator")
        yield f"http://127.0.0.1:{gcs_port}", f"127.0.0.1:{pubsub_port}", PROJECT
    finally:
        stop_all(procs)


# --- the four functions, served as the runtime serves them --------------------------------------


class Function:
    def __init__(self, target: str, proc: subprocess.Popen, port: int, log: Path):
        self.target, self.proc, self.port, self.log = target, proc, port, log

    def post(self, path: str, headers: dict[str, str], body: bytes) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code

    def logs(self) -> str:
        return tail(self.log.read_text(errors="replace"), 30)


def _wait_listening(fn: Function, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn.proc.poll() is not None:
            pytest.fail(
                f"{fn.target} exited with status {fn.proc.returncode} before serving:\n{fn.logs()}", pytrace=False
            )
        try:
            with socket.create_connection(("127.0.0.1", fn.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{fn.target} did not listen within {timeout} s:\n{fn.logs()}", pytrace=False)


@pytest.fixture(scope="module")
def stack(function_source, emulators, tmp_path_factory):
    """Buckets, topics, the Cloud Run stand-in and the four functions serving on local ports."""
    from google.cloud import pubsub_v1

    from partybal.local.cloudrun import RunStub
    from partybal.storage import gcs_client

    bundle, python = function_source
    storage_host, pubsub_host, project = emulators
    tmp = tmp_path_factory.mktemp("function-run")
    tag = uuid.uuid4().hex[:8]
    old_env = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")}
    os.environ.update(STORAGE_EMULATOR_HOST=storage_host, PUBSUB_EMULATOR_HOST=pubsub_host)
    functions: dict[str, Function] = {}
    runstub = None
    experimenter_standin = None
    try:
        gcs = gcs_client(PROJECT)
        buckets = {k: f"{k.lower()}-{tag}" for k in ("RESULTS_BUCKET", "SITE_BUCKET", "STATE_BUCKET")}
        for name in buckets.values():
            gcs.create_bucket(name)

        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = f"projects/{project}/topics/render-requests-{tag}"
        requests_sub = f"projects/{project}/subscriptions/partybal-dispatch-render-{tag}"
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=requests_sub, topic=topic)

        # The job: waits for `release` so a test can see its execution queued/running, then ends.
        release = tmp / "release"
        (tmp / "jobs").mkdir()
        command = [
            sys.executable,
            "-c",
            "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)",
            str(release),
        ]
        runstub = RunStub(command=command, parallelism=1, max_retries=0, log_dir=tmp / "jobs", cwd=tmp)
        run_port = free_port()
        runstub.serve(run_port)
        experimenter_standin = StandIn().start()  # the recorded Experimenter list (sample/experimenter/)

        values = {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            **buckets,
            "RENDER_TOPIC": topic,
            "COALESCE_STALE_SECONDS": "1",  # so the sweeper looks at the marker within the test
            "RUN_JOB": JOB,
            "RUN_API_ENDPOINT": f"http://127.0.0.1:{run_port}",
            "STORAGE_EMULATOR_HOST": storage_host,
            "PUBSUB_EMULATOR_HOST": pubsub_host,
            "SWEEP_INTERVAL_SECONDS": "600",
            "EXPERIMENTER_URL": experimenter_standin.url,
        }
        contract = contract_table()
        for target, label in USED_BY.items():
            names = [n for n, used in contract.items() if label in used or used.startswith("all")]
            env = {n: values[n] for n in names if n in values}
            env.update(
                PATH=f"{python.parent}:/usr/bin:/bin",
                HOME=str(tmp),
                FUNCTION_TARGET=target,
                FUNCTION_SIGNATURE_TYPE="cloudevent",
                HOST="127.0.0.1",
                PORT=str(free_port()),
            )
            log = tmp / f"{target}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [str(python.parent / "functions-framework")],
                    cwd=bundle,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            functions[target] = Function(target, proc, int(env["PORT"]), log)
        for fn in functions.values():
            _wait_listening(fn)
        yield {
            "gcs": gcs,
            "buckets": buckets,
            "functions": functions,
            "subscriber": subscriber,
            "requests_sub": requests_sub,
            "topic": topic,
            "project": project,
            "runstub": runstub,
            "release": release,
        }
    finally:
        stop_all([fn.proc for fn in functions.values()])
        if runstub is not None:
            runstub.shutdown()
        if experimenter_standin is not None:
            experimenter_standin.stop()
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def storage_finalized(bucket, name: str) -> CloudEvent:
    """What Eventarc delivers for a Cloud Storage finalize: the object resource as data."""
    resource = bucket.get_blob(name)._properties
    return CloudEvent(
        {
            "specversion": "1.0",
            "type": "google.cloud.storage.object.v1.finalized",
            "source": f"//storage.googleapis.com/projects/_/buckets/{bucket.name}",
            "subject": f"objects/{name}",
            "id": str(uuid.uuid4().int)[:16],
            "time": resource["updated"],
            "datacontenttype": "application/json",
            "bucket": bucket.name,
        },
        resource,
    )


def pubsub_published(
    topic: str, subscription: str, data: bytes, message_id: str, attributes: dict | None = None
) -> CloudEvent:
    """What Eventarc delivers for a Pub/Sub message (google.events.cloud.pubsub.v1.MessagePublishedData)."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    message = {
        "data": base64.b64encode(data).decode(),
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": now,
        "publish_time": now,
    }
    if attributes:
        message["attributes"] = attributes
    return CloudEvent(
        {
            "specversion": "1.0",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": f"//pubsub.googleapis.com/{topic}",
            "id": message_id,
            "time": now,
            "datacontenttype": "application/json",
        },
        {"message": message, "subscription": subscription},
    )


def deliver(fn: Function, event: CloudEvent) -> None:
    headers, body = to_binary(event)
    status = fn.post("/", headers, body)
    assert status == 200, f"{fn.target} answered {status}:\n{fn.logs()}"


def pull(stack, expect: int, wait: float = 20.0) -> list:
    """Up to ``expect`` messages from the render-requests subscription (acknowledged)."""
    sub, got = stack["subscriber"], []
    deadline = time.monotonic() + wait
    while len(got) < expect and time.monotonic() < deadline:
        resp = sub.pull(request={"subscription": stack["requests_sub"], "max_messages": 10}, timeout=5)
        if resp.received_messages:
            sub.acknowledge(
                request={"subscription": stack["requests_sub"], "ack_ids": [m.ack_id for m in resp.received_messages]}
            )
            got.extend(m.message for m in resp.received_messages)
        else:
            time.sleep(0.2)
    return got


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}", pytrace=False)


def test_each_entry_point_handles_the_event_gcp_delivers(stack):
    from partybal import layout

    gcs, b, fns = stack["gcs"], stack["buckets"], stack["functions"]
    results, state, site = gcs.bucket(b["RESULTS_BUCKET"]), gcs.bucket(b["STATE_BUCKET"]), gcs.bucket(b["SITE_BUCKET"])
    names = []
    for path in sorted(SAMPLE.glob(f"*/*_{SLUG}*.json")):
        name = f"{path.parent.name}/{path.name}"
        results.blob(name).upload_from_filename(str(path), content_type="application/json")
        names.append(name)
    assert names
    marker_name = layout.pending_name(SLUG)

    # on_results_finalized: a results upload -> pending marker + render request on RENDER_TOPIC
    deliver(fns["on_results_finalized"], storage_finalized(results, names[0]))
    marker = state.get_blob(marker_name)
    assert marker is not None, f"no pending marker after the finalize event:\n{fns['on_results_finalized'].logs()}"
    [request] = pull(stack, 1)
    assert request.data.decode() == SLUG
    assert request.attributes["generation"] == str(marker.generation)

    # dispatch_render: the push of that very message -> a run_job call on the Cloud Run API
    push = {
        "message": {
            "data": base64.b64encode(request.data).decode(),
            "attributes": dict(request.attributes),
            "messageId": request.message_id,
            "message_id": request.message_id,
            "publishTime": request.publish_time.isoformat().replace("+00:00", "Z"),
            "publish_time": request.publish_time.isoformat().replace("+00:00", "Z"),
        },
        "subscription": stack["requests_sub"],
    }
    status = fns["dispatch_render"].post(
        f"/{stack['topic']}", {"Content-Type": "application/json"}, json.dumps(push).encode()
    )
    assert status == 200, f"dispatch_render answered {status}:\n{fns['dispatch_render'].logs()}"
    [execution] = stack["runstub"].list()
    assert (execution["job"], execution["slug"], execution["prefix"]) == (JOB, SLUG, "")
    marker = state.get_blob(marker_name)
    assert (marker.metadata or {}).get("execution") == execution["name"], (
        "the dispatcher did not record the execution on the marker"
    )

    # rebuild_toc: the marker's finalize -> index.html listing the experiment as pending
    deliver(fns["rebuild_toc"], storage_finalized(state, marker_name))
    index = site.get_blob(layout.index_name())
    assert index is not None, f"no index.html:\n{fns['rebuild_toc'].logs()}"
    html = index.download_as_text()
    assert SLUG in html and "pending" in html

    # sweep_pending: the marker is old enough to be looked at; its execution is still running, so
    # the sweeper (asking the Cloud Run API) leaves it alone ...
    wait_for(lambda: time.time() - state.get_blob(marker_name).updated.timestamp() > 1.5, 10, "the marker to age")
    tick = lambda n: pubsub_published(
        f"projects/{stack['project']}/topics/partybal-sweep-pending",
        f"projects/{stack['project']}/subscriptions/eventarc-sweep",
        b"sweep",
        str(n),
    )  # noqa: E731
    before = state.get_blob(marker_name).generation
    deliver(fns["sweep_pending"], tick(1))
    assert state.get_blob(marker_name).generation == before and not pull(stack, 1, wait=2), (
        "the sweeper re-requested a render whose execution is running"
    )
    # ... and once the execution has ended without deleting the marker, re-requests the render.
    stack["release"].touch()
    wait_for(lambda: stack["runstub"].list()[0]["state"] == "succeeded", 20, "the execution to end")
    deliver(fns["sweep_pending"], tick(2))
    [again] = pull(stack, 1)
    assert again.data.decode() == SLUG and again.attributes.get("origin") == "sweeper"
    assert state.get_blob(marker_name).metadata.get("sweeps") == "1"

    # snapshot_experimenter: Cloud Scheduler's tick -> the validated Experimenter list in the state
    # bucket; the next tick finds it unchanged and writes nothing
    tick = lambda n: pubsub_published(
        f"projects/{stack['project']}/topics/partybal-experimenter-snapshot",
        f"projects/{stack['project']}/subscriptions/eventarc-experimenter",
        b"snapshot",
        str(n),
    )  # noqa: E731
    deliver(fns["snapshot_experimenter"], tick(1))
    snapshot = state.get_blob(layout.experimenter_snapshot_name())
    assert snapshot is not None, f"no Experimenter snapshot:\n{fns['snapshot_experimenter'].logs()}"
    assert (
        len(json.loads(snapshot.download_as_bytes())["experiments"]) == 5
    )  # the fixture's 7 less its 2 invalid entries
    deliver(fns["snapshot_experimenter"], tick(2))
    assert state.get_blob(layout.experimenter_snapshot_name()).generation == snapshot.generation

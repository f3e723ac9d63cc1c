"""Fixtures for the pipeline tests: a real fake-gcs-server (session), the Pub/Sub emulator
(session, started only when a test asks for it), fresh buckets per test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import unavailable
from tests.pipeline.pipeline_support import RecordingPublisher

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    """Stop a process we started (its own session: gcloud forks a JVM)."""
    try:
        os.killpg(proc.pid, 15)  # the group we created: gcloud and the JVM it forked
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=5)


def fake_gcs_argv(port: int, root: Path | None = None, extra: dict[str, str] | None = None) -> list[str]:
    """fake-gcs-server's command line as ``partybal local up`` builds it (files under ``root``,
    None: in memory); the test is skipped, or fails in CI, when the server is not installed."""
    from partybal.local.stack import StackError, fake_gcs_server_argv

    try:
        return fake_gcs_server_argv(port, root, extra)
    except StackError as exc:
        unavailable(str(exc))
        raise


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory):
    port = free_port()
    root = tmp_path_factory.mktemp("fake-gcs")
    argv = fake_gcs_argv(port, root / "data")
    log = open(root.parent / "fake-gcs.log", "w")
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    host = f"http://127.0.0.1:{port}"
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        wait_for_port(port, proc, 15, "fake-gcs-server")
        os.environ["STORAGE_EMULATOR_HOST"] = host
        yield host
    finally:
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
        stop(proc)
        log.close()


@pytest.fixture(scope="session")
def gcs(fake_gcs):
    from partybal.storage import gcs_client

    return gcs_client("partybal-test")


@dataclass
class Buckets:
    results: str
    site: str
    state: str


@pytest.fixture
def buckets(gcs) -> Buckets:
    tag = uuid.uuid4().hex[:10]
    b = Buckets(results=f"results-{tag}", site=f"site-{tag}", state=f"state-{tag}")
    for name in (b.results, b.site, b.state):
        gcs.create_bucket(name)
    return b


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory):
    gcloud = shutil.which("gcloud")
    if not gcloud:
        unavailable("gcloud is not installed")
    port = free_port()
    project = "partybal-test"
    logdir = tmp_path_factory.mktemp("pubsub")
    (logdir / "data").mkdir()
    log = open(logdir / "pubsub.log", "w")
    proc = subprocess.Popen(
        [
            gcloud,
            "beta",
            "emulators",
            "pubsub",
            "start",
            f"--host-port=127.0.0.1:{port}",
            f"--project={project}",
            f"--data-dir={logdir}/data",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc, 60, "the Pub/Sub emulator")
        yield f"127.0.0.1:{port}", project
    finally:
        stop(proc)
        log.close()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()

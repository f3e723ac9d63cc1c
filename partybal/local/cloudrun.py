"""A local stand-in for the Cloud Run Admin API, just enough for ``JobsClient.run_job``.

There is no Cloud Run (and no Docker) locally, so an execution is the job's entrypoint
(``python -m partybal.pipeline.job``) run as a subprocess, with the job's base environment plus the
per-execution ``overrides.containerOverrides[].env`` of the request.  With ``--job-image IMAGE``
(``partybal local up --job-image`` / ``PARTYBAL_JOB_IMAGE``) an execution is instead the image's
entrypoint run in a fresh copy of the image's filesystem as its user, with the job's variables only
(:mod:`partybal.local.jobimage`; ``make image-local`` builds the image).  Like Cloud Run it:

- answers ``POST /v2/projects/P/locations/L/jobs/J:run`` at once with a long-running
  ``Operation`` (the execution runs in the background);
- runs at most ``parallelism`` executions at a time (the rest queue);
- re-runs a task that exits non-zero, up to ``max_retries`` times
  (``CLOUD_RUN_TASK_ATTEMPT`` counts from 0);
- kills an attempt that runs longer than ``task_timeout`` seconds.

For tests and benchmarks it also serves:

- ``GET /executions`` — JSON list, one object per execution: ``id``, ``slug``, ``prefix``, ``state``
  (``queued``/``running``/``succeeded``/``failed``), ``requested`` (epoch seconds),
  ``attempts`` (``[{"attempt", "start", "end", "exit_code", "log"}]``);
- ``POST /config`` — JSON ``{"start_delay": seconds}``: hold every later execution that long
  between the request and the process start (to widen race windows in tests);
  ``{"env_for_slug": {file_slug: {NAME: VALUE}}}``: extra env for later executions of that
  experiment (fault injection: ``PARTYBAL_FAULT``); ``{"reject_slugs": [file_slug]}``: answer
  ``:run`` for those experiments with 503 (a dispatch that always fails; ``GET /rejected`` lists them). Test-only knobs.
- ``GET /healthz``.

Binds to 127.0.0.1 only.  Run it alone with ``python -m partybal.local.cloudrun --port N``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .. import layout, logs

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COMMAND = (sys.executable, "-m", "partybal.pipeline.job")


@dataclass
class Attempt:
    attempt: int
    start: float
    end: float | None = None
    exit_code: int | None = None
    log: str = ""


@dataclass
class Execution:
    id: str
    job: str  # projects/P/locations/L/jobs/J
    env: dict[str, str]  # the per-execution overrides only
    requested: float
    state: str = "queued"
    attempts: list[Attempt] = field(default_factory=list)
    timeout: float | None = None

    @property
    def name(self) -> str:
        return f"{self.job}/executions/{self.id}"

    def summary(self) -> dict:
        d = asdict(self)
        d["slug"] = self.env.get("PARTYBAL_SLUG")
        d["prefix"] = self.env.get("PARTYBAL_PREFIX", "")
        d["name"] = self.name
        d["start"] = self.attempts[0].start if self.attempts else None
        d["end"] = self.attempts[-1].end if self.attempts else None
        d["exit_codes"] = [a.exit_code for a in self.attempts]
        return d


class RunStub:
    """The executor; :meth:`serve` puts an HTTP front on it."""

    def __init__(
        self,
        base_env: dict[str, str] | None = None,
        command: tuple[str, ...] | list[str] = DEFAULT_COMMAND,
        parallelism: int = 2,
        max_retries: int = 3,
        task_timeout: float = 1800.0,
        log_dir: str | Path | None = None,
        cwd: str | Path = REPO_ROOT,
        start_delay: float = 0.0,
        job_image: str | None = None,
    ):
        self.base_env = dict(base_env or {})
        self.job_image = job_image or None  # run executions from this image (partybal.local.jobimage)
        self.command = list(command)
        self.parallelism = parallelism
        self.max_retries = max_retries
        self.task_timeout = task_timeout
        self.log_dir = Path(log_dir) if log_dir else None
        self.cwd = str(cwd)
        self.start_delay = start_delay
        self.env_for_slug: dict[str, dict[str, str]] = {}  # test-only fault injection
        self.reject_slugs: set[str] = set()
        self.rejected: list[dict] = []
        self.executions: dict[str, Execution] = {}
        self._order: list[str] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[Execution | None] = queue.Queue()
        self._procs: dict[int, subprocess.Popen] = {}
        self._stopping = threading.Event()
        self._counter = itertools.count(1)
        self._workers = [
            threading.Thread(target=self._work, name=f"runstub-worker-{i}", daemon=True) for i in range(parallelism)
        ]
        for w in self._workers:
            w.start()
        self.httpd: ThreadingHTTPServer | None = None

    # --- API ---------------------------------------------------------------------------------

    def run_job(self, job: str, body: dict) -> Execution:
        overrides = body.get("overrides") or {}
        env: dict[str, str] = {}
        for container in overrides.get("containerOverrides") or []:
            for item in container.get("env") or []:
                if "name" in item:
                    env[item["name"]] = str(item.get("value", ""))
        env.update(self.env_for_slug.get(layout.file_slug(env.get("PARTYBAL_SLUG", "")), {}))
        timeout = overrides.get("timeout")
        ex = Execution(
            id=f"{job.rsplit('/', 1)[-1]}-{next(self._counter):04d}-{uuid.uuid4().hex[:5]}",
            job=job,
            env=env,
            requested=time.time(),
            timeout=_seconds(timeout) if timeout else None,
        )
        with self._lock:
            self.executions[ex.id] = ex
            self._order.append(ex.id)
        logs.log(logger, logging.INFO, "execution requested", execution=ex.id, slug=env.get("PARTYBAL_SLUG"))
        self._queue.put(ex)
        return ex

    def rejects(self, body: dict) -> str | None:
        """The file slug when a ``:run`` request is for an experiment in ``reject_slugs``."""
        for container in (body.get("overrides") or {}).get("containerOverrides") or []:
            for item in container.get("env") or []:
                if item.get("name") == "PARTYBAL_SLUG":
                    fslug = layout.file_slug(str(item.get("value", "")))
                    if fslug in self.reject_slugs:
                        with self._lock:
                            self.rejected.append({"slug": fslug, "time": time.time()})
                        return fslug
        return None

    def list(self) -> list[dict]:
        with self._lock:
            return [self.executions[i].summary() for i in self._order]

    # --- workers -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            ex = self._queue.get()
            if ex is None or self._stopping.is_set():
                return
            try:
                self._execute(ex)
            except Exception:  # pragma: no cover - defensive: a worker must not die
                logger.exception("execution %s crashed the stand-in", ex.id)
                ex.state = "failed"

    def _execute(self, ex: Execution) -> None:
        if self.start_delay > 0:
            time.sleep(self.start_delay)
        ex.state = "running"
        for attempt in range(self.max_retries + 1):
            if self._stopping.is_set():
                ex.state = "failed"
                return
            a = self._run_attempt(ex, attempt)
            logs.log(
                logger,
                logging.INFO if a.exit_code == 0 else logging.WARNING,
                "attempt finished",
                execution=ex.id,
                slug=ex.env.get("PARTYBAL_SLUG"),
                attempt=attempt,
                exit_code=a.exit_code,
                seconds=round(a.end - a.start, 3),
            )
            if a.exit_code == 0:
                ex.state = "succeeded"
                return
        ex.state = "failed"

    def _attempt_env(self, ex: Execution, attempt: int) -> dict[str, str]:
        """This process's environment with Cloud Run's task variables and the execution's overrides."""
        env = dict(os.environ)
        # The job must not inherit the stand-in's own pub/sub wiring or function settings.
        for k in ("PUBSUB_EMULATOR_HOST", "RUN_API_ENDPOINT", "RUN_JOB", "RENDER_TOPIC"):
            env.pop(k, None)
        env.update(self.base_env)
        env.update(
            {
                "CLOUD_RUN_JOB": ex.job.rsplit("/", 1)[-1],
                "CLOUD_RUN_EXECUTION": ex.id,
                "CLOUD_RUN_TASK_INDEX": "0",
                "CLOUD_RUN_TASK_COUNT": "1",
                "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
            }
        )
        env.update(ex.env)
        return env

    def _attempt_command(self, ex: Execution, env: dict[str, str]) -> list[str]:
        if not self.job_image:
            return self.command
        # The production container: it gets the job's variables only.
        from .jobimage import stand_in_command

        names = {*self.base_env, *ex.env} | {k for k in env if k.startswith("CLOUD_RUN_")}
        return stand_in_command(self.job_image, sorted(names))

    def _run_attempt(self, ex: Execution, attempt: int) -> Attempt:
        """One task attempt as a child process in its own session, killed at the task timeout."""
        env = self._attempt_env(ex, attempt)
        command = self._attempt_command(ex, env)
        log_path = self.log_dir / f"job-{ex.id}-{attempt}.log" if self.log_dir else None
        a = Attempt(attempt=attempt, start=time.time(), log=str(log_path or ""))
        ex.attempts.append(a)
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            proc = subprocess.Popen(
                command, env=env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            with self._lock:
                self._procs[proc.pid] = proc
            try:
                a.exit_code = proc.wait(timeout=ex.timeout or self.task_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                a.exit_code = -9
            finally:
                with self._lock:
                    self._procs.pop(proc.pid, None)
        finally:
            if log_path:
                out.close()
        a.end = time.time()
        return a

    # --- HTTP --------------------------------------------------------------------------------

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # noqa: D401 - quiet; we log structured lines
                logger.debug(fmt, *args)

            def _send(self, code: int, payload) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(*stub.answer_get(self.path.split("?", 1)[0]))

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                self._send(*stub.answer_post(self.path.split("?", 1)[0], raw))

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="runstub-http", daemon=True).start()
        return self.httpd

    def answer_get(self, path: str) -> tuple[int, object]:
        """HTTP status and JSON payload for ``GET path``: the stand-in's own views, or the Run API's."""
        if path == "/executions":
            return 200, self.list()
        if path == "/rejected":
            return 200, list(self.rejected)
        if path == "/healthz":
            return 200, {"ok": True}
        for marker, render, missing in (
            ("/operations/", _operation, "no such operation"),
            ("/executions/", _execution_resource, "no such execution"),
        ):
            if path.startswith("/v2/") and marker in path:
                ex = self.executions.get(path.rsplit("/", 1)[-1])
                if ex is None:
                    return 404, _error(404, "NOT_FOUND", missing)
                return 200, render(ex)
        return 404, _error(404, "NOT_FOUND", f"unknown path {path}")

    def answer_post(self, path: str, raw: bytes) -> tuple[int, object]:
        """HTTP status and JSON payload for ``POST path``: a job ``:run``, or ``/config`` (tests)."""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return 400, _error(400, "INVALID_ARGUMENT", "body is not JSON")
        if path.startswith("/v2/") and path.endswith(":run"):
            return self._answer_run(path[len("/v2/") : -len(":run")], body)
        if path == "/config":
            return 200, self.configure(body)
        return 404, _error(404, "NOT_FOUND", f"unknown path {path}")

    def _answer_run(self, job: str, body: dict) -> tuple[int, object]:
        parts = job.split("/")
        if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations" or parts[4] != "jobs":
            return 400, _error(400, "INVALID_ARGUMENT", f"bad job name {job}")
        fslug = self.rejects(body)
        if fslug:
            return 503, _error(503, "UNAVAILABLE", f"fault injected: run rejected for {fslug}")
        return 200, _operation(self.run_job(job, body))

    def configure(self, body: dict) -> dict:
        """``POST /config``: change the start delay, per-slug environment or rejected slugs."""
        if "start_delay" in body:
            self.start_delay = float(body["start_delay"])
        if "env_for_slug" in body:
            self.env_for_slug = {
                str(k): {str(n): str(v) for n, v in e.items()} for k, e in body["env_for_slug"].items()
            }
        if "reject_slugs" in body:
            self.reject_slugs = {str(x) for x in body["reject_slugs"]}
        return {
            "start_delay": self.start_delay,
            "env_for_slug": self.env_for_slug,
            "reject_slugs": sorted(self.reject_slugs),
        }

    def shutdown(self) -> None:
        self._stopping.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            _kill_group(proc)
        for _ in self._workers:
            self._queue.put(None)


def _seconds(value) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return float(str(value).rstrip("s"))


def _kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1e6):06d}Z"


def _execution_resource(ex: Execution) -> dict:
    project, _, location = ex.job.split("/")[1:4]
    done = ex.state in ("succeeded", "failed")
    out = {
        "name": ex.name,
        "job": ex.job.rsplit("/", 1)[-1],
        "createTime": _rfc3339(ex.requested),
        "taskCount": 1,
        "runningCount": 1 if ex.state == "running" else 0,
        "succeededCount": 1 if ex.state == "succeeded" else 0,
        "failedCount": 1 if ex.state == "failed" else 0,
        "retriedCount": max(0, len(ex.attempts) - 1),
    }
    if ex.attempts:
        out["startTime"] = _rfc3339(ex.attempts[0].start)
    if done and ex.attempts:
        out["completionTime"] = _rfc3339(ex.attempts[-1].end)
    return out


def _operation(ex: Execution) -> dict:
    project, location = ex.job.split("/")[1], ex.job.split("/")[3]
    op = {
        "name": f"projects/{project}/locations/{location}/operations/{ex.id}",
        "metadata": {"@type": "type.googleapis.com/google.cloud.run.v2.Execution", **_execution_resource(ex)},
        "done": ex.state in ("succeeded", "failed"),
    }
    if ex.state == "succeeded":
        op["response"] = {"@type": "type.googleapis.com/google.cloud.run.v2.Execution", **_execution_resource(ex)}
    elif ex.state == "failed":
        op["error"] = {"code": 2, "message": f"execution {ex.id} failed"}
    return op


def _error(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "status": status, "message": message}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m partybal.local.cloudrun", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--task-timeout", type=float, default=1800.0)
    p.add_argument("--start-delay", type=float, default=0.0)
    p.add_argument("--log-dir", default=None)
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="job base environment (repeatable)")
    p.add_argument("--command", default=None, help="job command (default: python -m partybal.pipeline.job)")
    p.add_argument("--job-image", default=None, help="run executions from this local image instead (make image-local)")
    args = p.parse_args(argv)
    logs.setup()
    base_env = dict(item.split("=", 1) for item in args.env)
    command = args.command.split() if args.command else DEFAULT_COMMAND
    if args.log_dir:
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    stub = RunStub(
        base_env=base_env,
        command=command,
        parallelism=args.parallelism,
        max_retries=args.max_retries,
        task_timeout=args.task_timeout,
        log_dir=args.log_dir,
        start_delay=args.start_delay,
        job_image=args.job_image,
    )
    stub.serve(args.port)
    logs.log(logger, logging.INFO, "Cloud Run stand-in listening", port=args.port, job_image=args.job_image)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    stub.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

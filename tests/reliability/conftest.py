"""The reliability suite's own local stack (one per session) and its evidence recorder.

Stack: ``build/reliability/run/`` (component logs kept for post-mortems). It differs from the e2e
stack in three settings, all documented in docs/reliability.md: ``COALESCE_STALE_SECONDS=20`` (the
sweeper's and the stale take-over's threshold; 900 on GCP), a sweep every 3 s (Cloud Scheduler:
every 10 minutes), and ``PARTYBAL_LOG_LEVEL=DEBUG`` (so ignored events leave a log line).

Evidence: every test calls ``evidence.row(...)`` with what it injected and what it checked; the
outcome is filled in from the test's result, rows are merged into
``build/reliability/results.json`` and ``docs/reliability.md`` is rendered from that file at the
end of a ``make evidence`` session (``benchmarks/reliability_report.py`` renders it again by hand).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from partybal.local import stack as localstack
from tests.helpers import unavailable
from tests.reliability import support
from tests.support import faulty_job

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = REPO / "build" / "reliability" / "run"
RESULTS = REPO / "build" / "reliability" / "results.json"
STALE_SECONDS = support.STALE_SECONDS
SWEEP_INTERVAL = support.SWEEP_INTERVAL

_ROWS: dict[str, list[dict]] = {}


@pytest.fixture(scope="session")
def rstack(tmp_path_factory):
    missing = support.missing_tools()
    if missing:
        unavailable(f"local stack needs: {', '.join(missing)}")
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    s = localstack.LocalStack(
        run_dir=RUN_DIR,
        gcs_root=tmp_path_factory.mktemp("rel-gcs"),
        port_base=None,
        sweep_interval=SWEEP_INTERVAL,
        # JOB_MAX_RETRIES: what terraform sets from job_max_retries (the stand-in retries 3 times)
        extra_env={"COALESCE_STALE_SECONDS": str(STALE_SECONDS), "PARTYBAL_LOG_LEVEL": "DEBUG", "JOB_MAX_RETRIES": "3"},
        job_command=faulty_job.COMMAND,  # PARTYBAL_FAULT: the job dies at a named step (test_crash)
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


class Evidence:
    def __init__(self, nodeid: str, slow: bool):
        self.nodeid = nodeid
        self.slow = slow
        self.rows: list[dict] = []

    def row(self, case: str, injected: str, times: int | str, checked: str, measured: str = "") -> dict:
        row = {"case": case, "injected": injected, "times": str(times), "checked": checked, "measured": measured}
        self.rows.append(row)
        return row


@pytest.fixture
def evidence(request):
    ev = Evidence(request.node.nodeid, request.node.get_closest_marker("slow") is not None)
    started = time.time()
    yield ev
    for row in ev.rows:
        row.update(
            test=ev.nodeid,
            slow=ev.slow,
            seconds=round(time.time() - started, 1),
            finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
    _ROWS[ev.nodeid] = ev.rows


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        item._rel_outcome = report.outcome
        if report.outcome == "failed":
            item._rel_reason = " ".join(str(report.longrepr).splitlines()[-1:])[:300]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/reliability/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.emulators)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    rows = _ROWS.get(item.nodeid)
    outcome = getattr(item, "_rel_outcome", None)
    if not rows:
        if outcome is None:
            return
        rows = [
            {
                "case": item.name,
                "injected": "",
                "times": "",
                "checked": "",
                "measured": "",
                "test": item.nodeid,
                "slow": item.get_closest_marker("slow") is not None,
                "seconds": None,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        ]
        _ROWS[item.nodeid] = rows
    for row in rows:
        row["result"] = {"passed": "pass", "failed": "FAIL", "skipped": "skipped"}.get(
            outcome or "", outcome or "unknown"
        )
        if outcome == "failed":
            row["reason"] = getattr(item, "_rel_reason", "")


def pytest_sessionfinish(session, exitstatus):
    if not _ROWS:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = {}
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text()).get("tests", {})
        except ValueError:
            previous = {}
    previous.update(_ROWS)
    RESULTS.write_text(json.dumps({"tests": previous}, indent=1, sort_keys=True))
    if os.environ.get("PARTYBAL_EVIDENCE"):  # `make evidence`; a plain `make test` leaves the tree clean
        from benchmarks.reliability_report import write_report

        write_report(RESULTS, REPO / "docs" / "reliability.md")

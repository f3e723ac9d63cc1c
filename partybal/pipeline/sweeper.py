"""``sweep_pending``: recover render requests that were lost — run periodically (Cloud Scheduler →
a small topic on GCP; a timer thread in the local stack).

Two sweeps, both idempotent, both older than ``COALESCE_STALE_SECONDS`` (the same setting after
which ``on_results_finalized`` takes a marker over: a marker that old has lost its request):

1. **Pending markers** (``[prefix]pending/<slug>`` older than the threshold): the request was lost
   (Pub/Sub restarted, the dispatcher dead-lettered it, the job died before deleting the marker).
   The marker is *taken over* with ``if_generation_match=<its generation>`` — so of two concurrent
   sweeps (or a sweep racing a fresh upload) only one wins — and the winner publishes a render
   request. A marker that vanished or changed meanwhile is left alone: its owner is alive. A
   marker is never created by this sweep. A marker that ``dispatch_render`` marked with its
   execution is asked about first (Cloud Run ``GetExecution``): while that execution is queued or
   running, its job will delete the marker and read the newest inputs, so nothing is re-requested
   however long the queue. Only an execution that ended (or vanished) without consuming the
   marker, or one Cloud Run cannot tell us about, falls back to the age rule. A marker swept ``k``
   times waits ``threshold * 2**k`` before the next one, counted in its ``sweeps`` metadata.
2. **Reconciliation**: an experiment whose results differ from what its status record says was
   rendered (the TOC's ``new``/``stale``), with no pending marker and results last written longer
   ago than the threshold, and no status record written since the results last changed, lost its
   finalize notification (or its job was killed before writing the status). It gets a normal
   coalesced request (:func:`partybal.pipeline.coalesce.request_render`) — when the results' age passes
   ``threshold * 2**k`` (k ≤ 10), so a job that keeps dying is retried a few times, not forever. A
   render tried since the results last changed (``failed``, or whatever it read) is *not* retried.
   An experiment whose ``running/<slug>`` record names an execution Cloud Run says is queued or
   running is being rendered right now (the job deleted its marker and has no status yet): left
   alone. A record left by a killed job names an ended execution and does not hold anything up.

3. **Killed renders**: a ``running/<slug>`` record whose execution Cloud Run says has *ended* was
   left by an attempt killed from outside (OOM, SIGKILL, task timeout: a clean exit deletes it, and
   every earlier attempt's record is taken over by the next one). The sweeper records
   ``failed: killed (attempt n of m)`` for it (never over a record that run or a later one wrote)
   and deletes the record, so reconciliation does not request that render again: a render that
   keeps getting killed stops after the job's own retries.

Records and markers written by another version of partybal, or corrupted, are read defensively:
a value that is not what we write is treated as absent (logged), never a crash.

Each request is logged (``pending marker re-requested`` / ``unrendered results re-requested``)
with the slug, so every extra render the sweeper causes can be counted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc

from .. import layout, logs
from ..settings import DEFAULT_SWEEP_INTERVAL_SECONDS, SweepSettings
from ..storage import gcs_client
from . import coalesce, dispatch, status
from .state import group_results, list_results, read_state, row_state

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = DEFAULT_SWEEP_INTERVAL_SECONDS
MAX_DOUBLINGS = 10


# COALESCE_STALE_SECONDS (coalesce's), SWEEP_INTERVAL_SECONDS, RUN_API_ENDPOINT
Settings = SweepSettings


ACTIVE, ENDED, UNKNOWN = "active", "ended", "unknown"  # what Cloud Run says of an execution

ExecutionLookup = Callable[[str], str]  # execution resource name → ACTIVE | ENDED | UNKNOWN


def execution_lookup(api_endpoint: str | None = None) -> ExecutionLookup:
    """``GetExecution`` on the Cloud Run Admin API: ACTIVE until the execution has a completion
    time (queued, running, retrying), ENDED once it has one or when it no longer exists, UNKNOWN
    when the API cannot answer (the caller then falls back to the marker's age)."""
    client = None

    def lookup(name: str) -> str:
        nonlocal client
        try:
            if client is None:
                client = dispatch.run_api_client("ExecutionsClient", api_endpoint)
            execution = client.get_execution(name=name, timeout=10)
        except gexc.NotFound:
            return ENDED
        except Exception as why:  # noqa: BLE001 - any API trouble: decide by age as before
            logs.log(log, logging.WARNING, f"cannot get execution state: {why}", slug=None, execution=name)
            return UNKNOWN
        return ENDED if execution.completion_time else ACTIVE

    return lookup


@dataclass
class SweepReport:
    markers_seen: int = 0
    in_progress: int = 0  # markers or running records whose execution is still queued or running
    republished: list[str] = field(default_factory=list)  # [prefix]slug of re-requested markers
    reconciled: list[str] = field(default_factory=list)  # [prefix]slug of re-requested results
    killed: list[str] = field(default_factory=list)  # [prefix]slug recorded as killed


def _age(t: dt.datetime | None, now: dt.datetime) -> float:
    return (now - t).total_seconds() if t is not None else float("inf")


def _int(value: Any) -> int:
    n = status.as_int(value)  # int('²') raises although '²'.isdigit(): only ASCII digits count
    return n if n is not None else 0


def record_killed(
    client,
    settings: Settings,
    prefix: str,
    now: dt.datetime,
    report: SweepReport,
    executions: ExecutionLookup,
    experiments: dict | None = None,
) -> set[str]:
    """Running records of ended executions: their last attempt was killed. Record
    ``failed: killed (attempt n of m)`` and delete the record; the file slugs recorded."""
    bucket = client.bucket(settings.state_bucket)
    recorded: set[str] = set()
    for sb, b in state_objects(client, bucket, layout.RUNNING, prefix, "name,generation,updated,metadata"):
        meta = b.metadata if isinstance(b.metadata, dict) else {}
        execution = str(meta.get("execution") or "")
        if not execution or not meta.get("run_id"):
            continue  # a run by hand, or a record of an older job: nothing to ask / no run to name
        if executions(execution) != ENDED:
            continue
        try:
            previous = status.read(bucket, sb.file_slug, prefix)
            slug = (
                previous.get("slug")
                if previous and isinstance(previous.get("slug"), str) and previous.get("slug")
                else sb.file_slug
            )
            body = status.killed_record(previous, meta, slug, sb.file_slug, prefix, now)
            if experiments is not None and sb.file_slug in experiments:  # what it was rendering (as listed now)
                body["input_generations"] = dict(experiments[sb.file_slug].generations)
            written = status.write(bucket, body, prefix, not_over_run=body["run_id"])
            bucket.blob(b.name).delete(if_generation_match=int(b.generation))
        except (gexc.NotFound, gexc.PreconditionFailed):
            continue
        except Exception as why:  # noqa: BLE001 - one bad record must not stop the sweep
            logs.log(log, logging.WARNING, f"could not record a killed render: {why}", slug=sb.file_slug, prefix=prefix)
            continue
        recorded.add(sb.file_slug)
        if written:
            report.killed.append(prefix + sb.file_slug)
            logs.log(
                log, logging.ERROR, f"render {body['reason']}", slug=sb.file_slug, prefix=prefix, execution=execution
            )
    return recorded


def sweep_markers(
    client,
    publisher,
    settings: Settings,
    prefix: str,
    now: dt.datetime,
    report: SweepReport,
    executions: ExecutionLookup,
) -> None:
    bucket = client.bucket(settings.state_bucket)
    for sb, b in state_objects(client, bucket, layout.PENDING, prefix, "name,generation,updated,metadata"):
        report.markers_seen += 1
        meta = b.metadata or {}
        sweeps = _int(meta.get("sweeps"))
        execution = meta.get("execution") or ""
        if execution and _age(b.updated, now) >= settings.min_age_seconds and executions(execution) == ACTIVE:
            report.in_progress += 1  # queued or running: its job deletes the marker, then reads
            continue
        # back off: a marker re-requested k times waits threshold * 2**k (when Cloud Run cannot
        # say, its render may just be queued), so a request that keeps getting lost, or an API
        # outage during a long queue, costs a few extra renders, not one per sweep
        if _age(b.updated, now) < settings.min_age_seconds * 2 ** min(sweeps, 10):
            continue
        _take_over_marker(bucket, publisher, settings, prefix, now, report, b, sb.file_slug, sweeps)


def _take_over_marker(
    bucket,
    publisher,
    settings: Settings,
    prefix: str,
    now: dt.datetime,
    report: SweepReport,
    b,
    fslug: str,
    sweeps: int,
) -> None:
    """Rewrite marker ``b`` as the sweeper's (only if it is unchanged since listed), publish again."""
    token = f"sweep-{b.generation}"
    body = coalesce._marker_body(fslug, prefix, token, now, "sweeper")
    taken = bucket.blob(b.name)
    taken.metadata = {"token": token, "sweeps": str(sweeps + 1)}
    try:  # take it over only if it is still the marker we listed
        taken.upload_from_string(body, content_type="application/json", if_generation_match=int(b.generation))
    except (gexc.PreconditionFailed, gexc.NotFound):
        return  # deleted (its job started) or replaced (a fresh request) meanwhile
    message_id = coalesce.publish_request(publisher, settings.topic, fslug, prefix, taken.generation, origin="sweeper")
    report.republished.append(prefix + fslug)
    logs.log(
        log,
        logging.WARNING,
        "pending marker re-requested",
        slug=fslug,
        prefix=prefix,
        marker_age_seconds=round(_age(b.updated, now), 1),
        marker_generation=taken.generation,
        sweeps=sweeps + 1,
        message_id=message_id,
    )


def crossed(age: float, threshold: float, interval: float) -> bool:
    """Did ``age`` pass ``threshold * 2**k`` (k = 0…MAX_DOUBLINGS) since the previous sweep?

    Reconciliation has no object to count its attempts in (the job deletes the marker, a killed job
    writes no status), so it retries each state of the results at these ages only: about
    log2(age / threshold) times in all, then never again until the results change."""
    if age == float("inf"):
        return False
    return any(age - interval < threshold * 2**k <= age for k in range(MAX_DOUBLINGS + 1))


INFRA_PREFIX = "infrastructure error"  # such a failure is worth retrying (job.run writes it)


def reconcile(
    client,
    publisher,
    settings: Settings,
    prefix: str,
    now: dt.datetime,
    report: SweepReport,
    executions: ExecutionLookup,
    killed: set[str] = frozenset(),
    experiments: dict | None = None,
) -> None:
    if experiments is None:
        experiments = group_results(list_results(client, settings.results_bucket, prefix), prefix)
    statuses, pending = read_state(client, settings.state_bucket, prefix)
    state_bucket = client.bucket(settings.state_bucket)
    written = _status_written(client, state_bucket, prefix)
    running = _running_executions(client, state_bucket, prefix)
    for fslug, exp in sorted(experiments.items()):
        if fslug in pending or (prefix + fslug) in report.republished or fslug in killed:
            continue
        state, _ = row_state(exp, statuses.get(fslug), False)
        if state not in ("new", "stale") or _age(exp.updated, now) < settings.min_age_seconds:
            continue
        infra = str((statuses.get(fslug) or {}).get("reason") or "").startswith(INFRA_PREFIX)
        if not infra and written.get(fslug) is not None and exp.updated is not None and written[fslug] >= exp.updated:
            continue  # a render was tried since the results last changed: another cannot do better
        if not crossed(_age(exp.updated, now), settings.min_age_seconds, settings.interval_seconds):
            continue  # between two retries of these results (a job that keeps dying writes no status)
        if running.get(fslug) and executions(running[fslug]) == ACTIVE:
            report.in_progress += 1  # being rendered now (it deleted its marker, has no status yet)
            continue
        _request_again(state_bucket, publisher, settings, prefix, fslug, exp, state, report)


def state_objects(client, bucket, what: str, prefix: str, fields: str):
    """``(parsed name, blob)`` of each ``what`` record (pending/running/status) under ``prefix``:
    one listing asking only for ``fields``; objects named otherwise are skipped."""
    listing = client.list_blobs(
        bucket, prefix=layout.state_folder(what, prefix), fields=f"items({fields}),nextPageToken"
    )
    for b in listing:
        sb = layout.parse_state_name(b.name)
        if sb is not None and sb.what == what and sb.prefix == prefix:
            yield sb, b


def _status_written(client, state_bucket, prefix: str) -> dict:
    """When each status record under ``prefix`` was last written, by file slug."""
    return {
        sb.file_slug: b.updated for sb, b in state_objects(client, state_bucket, layout.STATUS, prefix, "name,updated")
    }


def _running_executions(client, state_bucket, prefix: str) -> dict[str, str]:
    """The execution each running record under ``prefix`` names, by file slug."""
    return {
        sb.file_slug: (b.metadata or {}).get("execution") or ""
        for sb, b in state_objects(client, state_bucket, layout.RUNNING, prefix, "name,metadata")
    }


def _request_again(
    state_bucket, publisher, settings: Settings, prefix: str, fslug: str, exp, state: str, report: SweepReport
) -> None:
    """Request a render of results nothing rendered; coalesced with a request already pending."""
    # one token per input state: a retried sweep of the same inputs recognises its own marker
    digest = hashlib.sha256(repr(sorted(exp.generations.items())).encode()).hexdigest()[:16]
    outcome = coalesce.request_render(
        state_bucket,
        publisher,
        settings.topic,
        fslug,
        prefix,
        token=f"sweep-{digest}",
        stale_seconds=settings.min_age_seconds,
        trigger="sweeper",
    )
    if outcome != coalesce.COALESCED:
        report.reconciled.append(prefix + fslug)
        logs.log(log, logging.WARNING, "unrendered results re-requested", slug=fslug, prefix=prefix, toc_state=state)


def sweep(
    client,
    publisher,
    settings: Settings,
    now: dt.datetime | None = None,
    prefixes=layout.ALLOWED_PREFIXES,
    executions: ExecutionLookup | None = None,
) -> SweepReport:
    now = now or dt.datetime.now(dt.UTC)
    executions = executions or execution_lookup(settings.run_api_endpoint)
    report = SweepReport()
    for prefix in prefixes:
        sweep_markers(client, publisher, settings, prefix, now, report, executions)
        experiments = group_results(list_results(client, settings.results_bucket, prefix), prefix)
        killed = record_killed(client, settings, prefix, now, report, executions, experiments)
        reconcile(client, publisher, settings, prefix, now, report, executions, killed, experiments)
    logs.log(
        log,
        logging.INFO,
        "sweep done",
        slug=None,
        markers=report.markers_seen,
        in_progress=report.in_progress,
        republished=len(report.republished),
        reconciled=len(report.reconciled),
        killed=len(report.killed),
    )
    return report


def handle_sweep_event(
    event_type: str, data: Any, event_id: str = "", *, settings: Settings | None = None, client=None, publisher=None
) -> SweepReport:
    """Any message on the sweep topic (its content is ignored) runs one sweep."""
    settings = settings or Settings.from_env()
    client = client or gcs_client()
    return sweep(client, publisher or coalesce.default_publisher(), settings)

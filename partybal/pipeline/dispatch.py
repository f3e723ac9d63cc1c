"""``dispatch_render``: a render request message → one Cloud Run job execution.

The message data is the experiment slug (UTF-8; either form). Attributes are optional: ``prefix``
(``preview/`` for previews) is the only one read. A message published by hand
(``gcloud pubsub topics publish render-requests --message=<slug>``) has none and always renders.
Bad requests are logged and acknowledged (never raised): redelivering them cannot help.

Once the execution is started, the request's pending marker (the ``generation`` attribute names
it) is *marked dispatched*: its metadata gets the execution's resource name and the time. The
sweeper then asks Cloud Run about that execution instead of guessing from the marker's age, so a
render that is merely queued is not requested again. Marking is best effort and never raises (the
execution already exists; a redelivery would start a second one): a marker that is gone (the job
started and deleted it) or replaced (a newer request) is left alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc

from .. import layout, logs, settings
from ..errors import Rejected
from ..storage import gcs_client
from . import events

log = logging.getLogger(__name__)

MAX_SLUG_BYTES = 1024


class BadRequest(Rejected):
    """A render request we cannot act on (one-line reason)."""


@dataclass(frozen=True)
class RenderRequest:
    slug: str  # as published (either form), validated
    file_slug: str
    prefix: str
    attributes: dict[str, str]


def parse_request(event_type: str, data: Any) -> RenderRequest:
    if event_type != events.PUBSUB_PUBLISHED:
        raise BadRequest(f"event type {str(event_type)[:100]!r} is not a Pub/Sub message")
    try:
        msg = events.pubsub_message(data)
    except events.NotUnderstood as why:
        raise BadRequest(str(why)) from None
    if len(msg.data) > MAX_SLUG_BYTES:
        raise BadRequest(f"message of {len(msg.data)} bytes is too long for a slug")
    try:
        slug = msg.data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadRequest("message data is not UTF-8 text") from None
    if not slug:
        raise BadRequest("empty message: no experiment slug")
    fslug = layout.file_slug(slug)
    if not layout.is_file_slug(fslug):
        raise BadRequest(f"not a valid experiment slug: {slug[:200]!r}")
    prefix = msg.attributes.get("prefix", "")
    if prefix not in layout.ALLOWED_PREFIXES:
        raise BadRequest(f"prefix {prefix[:100]!r} is not one of {layout.ALLOWED_PREFIXES!r}")
    return RenderRequest(slug=slug, file_slug=fslug, prefix=prefix, attributes=msg.attributes)


def run_job_request(
    job: str, request: RenderRequest | None = None, *, env: Mapping[str, str] | None = None, task_count: int = 0
):
    """The one way partybal starts the renderer job: one execution of ``job`` whose container gets
    per-execution environment overrides only — a render request's ``PARTYBAL_SLUG`` and
    ``PARTYBAL_PREFIX``, and/or ``env`` (``partybal backfill``: ``PARTYBAL_SLUGS_URI``) — with
    ``task_count`` tasks (0: the job's own, one)."""
    from google.cloud import run_v2

    overrides = []
    if request is not None:
        overrides += [
            run_v2.EnvVar(name="PARTYBAL_SLUG", value=request.slug),
            run_v2.EnvVar(name="PARTYBAL_PREFIX", value=request.prefix),
        ]
    overrides += [run_v2.EnvVar(name=k, value=v) for k, v in (env or {}).items()]
    return run_v2.RunJobRequest(
        name=job,
        overrides=run_v2.RunJobRequest.Overrides(
            container_overrides=[run_v2.RunJobRequest.Overrides.ContainerOverride(env=overrides)], task_count=task_count
        ),
    )


def run_api_client(kind: str = "JobsClient", api_endpoint: str | None = None):
    """A Cloud Run Admin API client (``run_v2.<kind>``): anonymous REST to ``api_endpoint`` when
    given (the local stand-in), default credentials otherwise."""
    from google.cloud import run_v2

    cls = getattr(run_v2, kind)
    if api_endpoint:
        from google.auth.credentials import AnonymousCredentials

        return cls(transport="rest", credentials=AnonymousCredentials(), client_options={"api_endpoint": api_endpoint})
    return cls()


def jobs_client(api_endpoint: str | None = None):
    return run_api_client("JobsClient", api_endpoint)


def execution_name(operation) -> str:
    """The execution's resource name from ``run_job``'s operation (its metadata is the Execution)."""
    try:
        return str(getattr(operation.metadata, "name", "") or "")
    except Exception:  # noqa: BLE001 - an operation without readable metadata: nothing to record
        return ""


def mark_dispatched(state_bucket, request: RenderRequest, execution: str, now: dt.datetime | None = None) -> bool:
    """Record ``execution`` on the request's pending marker, if it is still that marker. True if
    recorded. ``PATCH`` with ``ifGenerationMatch`` leaves the marker's generation and body alone
    on GCS (fake-gcs-server gives it a new generation and ignores the precondition on PATCH; the
    sweeper re-reads generations from its listing, so neither matters)."""
    raw = request.attributes.get("generation", "")
    if not execution or not re.fullmatch(
        r"[0-9]{1,30}", raw
    ):  # not str.isdigit(): '²'.isdigit() is True, int('²') raises
        return False  # a request published by hand has no marker (or another version's attribute)
    marker = state_bucket.blob(layout.pending_name(request.file_slug, request.prefix))
    marker.metadata = {"execution": execution, "dispatched_at": (now or dt.datetime.now(dt.UTC)).isoformat()}
    try:
        marker.patch(if_generation_match=int(raw))
    except (gexc.NotFound, gexc.PreconditionFailed):
        return False
    return True


def handle_render_request(
    event_type: str,
    data: Any,
    event_id: str = "",
    *,
    environ: Mapping[str, str] | None = None,
    client=None,
    storage_client=None,
) -> RenderRequest | None:
    """Start one job execution for a valid request; the request, or None when it was rejected."""
    environ = environ if environ is not None else os.environ
    job = settings.env("RUN_JOB", environ)
    try:
        request = parse_request(event_type, data)
    except BadRequest as why:
        logs.log(log, logging.ERROR, f"render request rejected: {why}", slug=None, event_id=event_id)
        return None
    if client is None:
        client = jobs_client(environ.get("RUN_API_ENDPOINT") or None)
    operation = client.run_job(request=run_job_request(job, request))  # not waited for
    op_name = getattr(getattr(operation, "operation", None), "name", "") or ""
    execution = execution_name(operation)
    marked = False
    state_bucket = environ.get("STATE_BUCKET")
    if state_bucket and execution:
        try:
            storage_client = storage_client or gcs_client()
            marked = mark_dispatched(storage_client.bucket(state_bucket), request, execution)
        except Exception as why:  # noqa: BLE001 - never redeliver a request whose job already started
            logs.log(
                log,
                logging.WARNING,
                f"could not mark the pending marker dispatched: {why}",
                slug=request.file_slug,
                prefix=request.prefix,
            )
    logs.log(
        log,
        logging.INFO,
        "render job started",
        slug=request.file_slug,
        prefix=request.prefix,
        job=job,
        operation=op_name,
        execution=execution,
        marker_marked=marked,
        origin=request.attributes.get("origin", "manual"),
        event_id=event_id,
    )
    return request

"""Coalescing results uploads into render requests.

Jetstream writes an experiment's files one by one, so one analysis run is a burst of finalize
events. Each event tries to *create* the marker ``layout.pending_name(slug, prefix)`` in the state
bucket with ``if_generation_match=0``; only the creator publishes a render request. The render job
deletes the marker *before* it reads its inputs, so:

* a burst for one experiment → one marker → one request → one render;
* an upload landing after the job has deleted the marker (i.e. possibly after it read its inputs)
  creates a new marker → another render: no update is lost;
* a marker older than ``COALESCE_STALE_SECONDS`` (its request was lost, or its job died before
  deleting it) is taken over with ``if_generation_match=<its generation>``, and the taker publishes.

The marker carries a token (the CloudEvent id) in its metadata: if a create succeeded but its
response was lost (the client retries and gets 412), or the function crashed before publishing and
the event is redelivered, the same event recognises its own marker and publishes (a duplicate
render at worst, never a lost one).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any, Protocol

from google.api_core import exceptions as gexc

from .. import layout, logs
from ..settings import DEFAULT_STALE_SECONDS, CoalesceSettings
from ..storage import GcsResults, gcs_client, list_experiment_objects
from . import events

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 60

PUBLISHED = "published"  # we created the marker and published the request
TOOK_OVER = "took_over"  # the marker was stale; we replaced it and published
COALESCED = "coalesced"  # a fresh marker exists: its render will read our upload
IGNORED = "ignored"


class Publisher(Protocol):
    """What we need of ``google.cloud.pubsub_v1.PublisherClient``."""

    def publish(self, topic: str, data: bytes, **attributes: str) -> Any: ...


Settings = CoalesceSettings  # RESULTS_BUCKET, STATE_BUCKET, RENDER_TOPIC, COALESCE_STALE_SECONDS


_publisher: Any = None


def default_publisher() -> Publisher:
    """One PublisherClient per process (it honours PUBSUB_EMULATOR_HOST by itself)."""
    global _publisher
    if _publisher is None:
        from google.cloud import pubsub_v1

        _publisher = pubsub_v1.PublisherClient()
    return _publisher


def request_attributes(prefix: str, generation: int | None, origin: str = "finalize") -> dict[str, str]:
    attrs = {"origin": origin}
    if prefix:
        attrs["prefix"] = prefix
    if generation is not None:
        attrs["generation"] = str(generation)
    return attrs


def publish_request(
    publisher: Publisher, topic: str, fslug: str, prefix: str, generation: int | None, origin: str = "finalize"
) -> str:
    """Publish one render request and wait until Pub/Sub has it; the message id."""
    future = publisher.publish(topic, fslug.encode("utf-8"), **request_attributes(prefix, generation, origin))
    result = future.result(timeout=PUBLISH_TIMEOUT_SECONDS) if hasattr(future, "result") else future
    return str(result)


def _marker_body(fslug: str, prefix: str, token: str, now: dt.datetime, trigger: str) -> str:
    return json.dumps(
        {"slug": fslug, "prefix": prefix, "token": token, "requested_at": now.isoformat(), "trigger": trigger}
    )


def _write_marker(bucket, name: str, body: str, token: str, if_generation_match: int):
    blob = bucket.blob(name)
    blob.metadata = {"token": token}
    blob.upload_from_string(body, content_type="application/json", if_generation_match=if_generation_match)
    return blob


def claim_marker(
    bucket,
    fslug: str,
    prefix: str,
    *,
    token: str,
    stale_seconds: int,
    now: dt.datetime | None = None,
    trigger: str = "",
    attempts: int = 4,
) -> tuple[str, int | None]:
    """Create (or take over a stale) pending marker. Returns (PUBLISHED|TOOK_OVER, generation) when
    the caller must publish the render request, (COALESCED, None) when a fresh marker exists."""
    name = layout.pending_name(fslug, prefix)
    for _ in range(attempts):
        now_ = now or dt.datetime.now(dt.UTC)
        body = _marker_body(fslug, prefix, token, now_, trigger)
        try:
            return PUBLISHED, _write_marker(bucket, name, body, token, 0).generation
        except gexc.PreconditionFailed:
            pass
        existing = bucket.get_blob(name)
        if existing is None:
            continue  # the job deleted it in between: try to create it again
        if (existing.metadata or {}).get("token") == token:
            return PUBLISHED, existing.generation  # ours: a retried create or a redelivered event
        updated = existing.updated or existing.time_created
        if updated is not None and (now_ - updated).total_seconds() < stale_seconds:
            return COALESCED, None
        try:
            return TOOK_OVER, _write_marker(bucket, name, body, token, int(existing.generation)).generation
        except gexc.PreconditionFailed:
            continue  # someone else took it over or recreated it: look again
    return COALESCED, None


def request_render(
    bucket,
    publisher: Publisher,
    topic: str,
    fslug: str,
    prefix: str = "",
    *,
    token: str | None = None,
    stale_seconds: int = DEFAULT_STALE_SECONDS,
    now: dt.datetime | None = None,
    trigger: str = "",
) -> str:
    """Claim the marker and, if ours, publish the render request. The outcome."""
    outcome, generation = claim_marker(
        bucket, fslug, prefix, token=token or uuid.uuid4().hex, stale_seconds=stale_seconds, now=now, trigger=trigger
    )
    if outcome == COALESCED:
        logs.log(
            log, logging.INFO, "render already pending; upload coalesced", slug=fslug, prefix=prefix, trigger=trigger
        )
        return outcome
    message_id = publish_request(publisher, topic, fslug, prefix, generation)
    logs.log(
        log,
        logging.INFO,
        "render requested" if outcome == PUBLISHED else "stale pending marker taken over; render requested",
        slug=fslug,
        prefix=prefix,
        marker_generation=generation,
        message_id=message_id,
        trigger=trigger,
    )
    return outcome


def owners_of(blob: layout.ResultBlob, client, results_bucket: str) -> list[str]:
    """The experiments an ambiguous statistics name belongs to, decided by the bucket's listing the
    way the render job decides it (:func:`partybal.storage.list_experiment_objects`)."""
    source = GcsResults(results_bucket, blob.prefix, client=client)
    name = blob.name[len(blob.prefix) :]
    return [s for s, _ in blob.readings if any(b.name == name for b, _ in list_experiment_objects(source, s)[0])]


def handle_results_event(
    event_type: str,
    data: Any,
    event_id: str = "",
    *,
    settings: Settings | None = None,
    client=None,
    publisher: Publisher | None = None,
) -> str:
    """``on_results_finalized``: a results upload → at most one pending render request."""
    settings = settings or Settings.from_env()
    try:
        blob = events.results_blob(event_type, data, settings.results_bucket)
    except events.NotUnderstood as why:
        events.ignored(log, why, event_id=event_id)
        return IGNORED
    client = client or gcs_client()
    fslug = blob.file_slug
    if blob.alternatives:
        owners = owners_of(blob, client, settings.results_bucket)
        if len(owners) != 1:
            events.ignored(
                log,
                events.NotUnderstood(
                    f"ambiguous statistics name {blob.name}: "
                    f"the listing names no single owner among {[s for s, _ in blob.readings]}"
                ),
                event_id=event_id,
            )
            return IGNORED
        fslug = owners[0]
    return request_render(
        client.bucket(settings.state_bucket),
        publisher or default_publisher(),
        settings.topic,
        fslug,
        blob.prefix,
        token=event_id or None,
        stale_seconds=settings.stale_seconds,
        trigger=blob.name,
    )

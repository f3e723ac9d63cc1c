"""Understanding the CloudEvents the pipeline functions receive.

Two shapes carry a Cloud Storage object change:

* a direct ``google.cloud.storage.object.v1.finalized`` / ``…deleted`` CloudEvent (Eventarc), whose
  data is the object resource (``bucket``, ``name``, ``generation``, ``updated``…);
* a ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent wrapping a Cloud Storage Pub/Sub
  notification: ``data = {"message": {"data": base64(object JSON), "attributes": {"eventType":
  "OBJECT_FINALIZE", "bucketId", "objectId", "objectGeneration", …}, "messageId", …}}``. This is
  what functions-framework makes of a raw Pub/Sub push (the local stack: fake-gcs-server →
  Pub/Sub emulator → push subscription → functions-framework).

Nothing here raises on bad input except :class:`NotUnderstood`, which carries a one-line reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import layout, logs
from ..errors import Rejected

log = logging.getLogger(__name__)

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
STORAGE_DELETED = "google.cloud.storage.object.v1.deleted"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"

FINALIZE = "finalize"
DELETE = "delete"
_DIRECT_KINDS = {STORAGE_FINALIZED: FINALIZE, STORAGE_DELETED: DELETE}
_NOTIFICATION_KINDS = {"OBJECT_FINALIZE": FINALIZE, "OBJECT_DELETE": DELETE}
MAX_NAME_LENGTH = 1024  # Cloud Storage's own limit, in bytes


class NotUnderstood(Rejected):
    """The event is not one we act on; the message says why (one line)."""


@dataclass(frozen=True)
class PubsubMessage:
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    message_id: str = ""


@dataclass(frozen=True)
class ObjectChange:
    """One Cloud Storage object change, whichever way it was delivered."""

    kind: str  # FINALIZE | DELETE | other notification/event type verbatim
    bucket: str
    name: str
    generation: int | None
    updated: str | None = None


def pubsub_message(data: Any) -> PubsubMessage:
    """The Pub/Sub message of a messagePublished event's data."""
    if not isinstance(data, Mapping) or not isinstance(data.get("message"), Mapping):
        raise NotUnderstood("messagePublished event without a message")
    msg = data["message"]
    raw = msg.get("data") or ""
    if not isinstance(raw, str):
        raise NotUnderstood("Pub/Sub message data is not a base64 string")
    try:
        payload = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise NotUnderstood("Pub/Sub message data is not valid base64") from None
    attributes = msg.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise NotUnderstood("Pub/Sub message attributes are not a mapping")
    return PubsubMessage(
        data=payload,
        attributes={str(k): str(v) for k, v in attributes.items()},
        message_id=str(msg.get("messageId") or msg.get("message_id") or ""),
    )


def _generation(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NotUnderstood(f"object generation {str(value)[:40]!r} is not a number") from None


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise NotUnderstood("event without an object name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_LENGTH:
        raise NotUnderstood("object name longer than 1024 bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise NotUnderstood("object name contains control characters")
    return name


def object_change(event_type: str, data: Any) -> ObjectChange:
    """Read an object change from either event shape, or raise :class:`NotUnderstood`."""
    if event_type in _DIRECT_KINDS:
        if not isinstance(data, Mapping):
            raise NotUnderstood("storage event without an object resource")
        return ObjectChange(
            kind=_DIRECT_KINDS[event_type],
            bucket=str(data.get("bucket") or ""),
            name=_checked_name(data.get("name")),
            generation=_generation(data.get("generation")),
            updated=data.get("updated"),
        )
    if event_type == PUBSUB_PUBLISHED:
        msg = pubsub_message(data)
        attrs = msg.attributes
        if "eventType" not in attrs:
            raise NotUnderstood("Pub/Sub message is not a Cloud Storage notification (no eventType)")
        resource: Mapping[str, Any] = {}
        if msg.data:
            try:
                parsed = json.loads(msg.data)
                resource = parsed if isinstance(parsed, Mapping) else {}
            except (UnicodeDecodeError, ValueError):
                resource = {}  # payloadFormat NONE or junk: the attributes carry what we need
        kind = attrs["eventType"]
        return ObjectChange(
            kind=_NOTIFICATION_KINDS.get(kind, kind),
            bucket=str(attrs.get("bucketId") or resource.get("bucket") or ""),
            name=_checked_name(attrs.get("objectId") or resource.get("name")),
            generation=_generation(attrs.get("objectGeneration") or resource.get("generation")),
            updated=resource.get("updated"),
        )
    raise NotUnderstood(f"event type {str(event_type)[:100]!r} is not a storage change")


def results_blob(event_type: str, data: Any, results_bucket: str) -> layout.ResultBlob:
    """The results object a finalize event is about, or :class:`NotUnderstood` saying why not."""
    change = object_change(event_type, data)
    if change.bucket != results_bucket:
        raise NotUnderstood(f"bucket {change.bucket[:100]!r} is not the results bucket")
    if change.kind != FINALIZE:
        raise NotUnderstood(f"{change.kind[:40]} event, only finalize starts a render")
    try:
        return layout.parse_results_name(change.name)
    except layout.Ignored as why:
        raise NotUnderstood(f"{why}: {change.name[:200]!r}") from None


def state_blob(event_type: str, data: Any, state_bucket: str) -> layout.StateBlob:
    """The state object (status record or pending marker) a change is about."""
    change = object_change(event_type, data)
    if change.bucket != state_bucket:
        raise NotUnderstood(f"bucket {change.bucket[:100]!r} is not the state bucket")
    if change.kind not in (FINALIZE, DELETE):
        raise NotUnderstood(f"{change.kind[:40]} event does not change the table of contents")
    blob = layout.parse_state_name(change.name)
    if blob is None:
        raise NotUnderstood(f"not a status record or pending marker: {change.name[:200]!r}")
    if blob.what == layout.RUNNING:
        raise NotUnderstood(f"a running record does not change the table of contents: {change.name[:200]!r}")
    return blob


def ignored(logger: logging.Logger, why: Exception, **fields) -> None:
    """The DEBUG line every ignored event gets."""
    logs.log(logger, logging.DEBUG, f"ignored event: {why}", **{"slug": None, **fields})

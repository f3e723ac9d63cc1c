"""Experiment state: what the buckets say about each experiment, as one listing sees it.

* :func:`listed` / :func:`list_results`: one listing of the results (names, generations, update
  times — nothing downloaded), :func:`group_results`: grouped by experiment (junk skipped,
  ambiguous statistics names decided by the listing);
* :func:`read_state`: the status records and pending markers of the state bucket;
* :func:`row_state`: what those say together — ``ok``, ``new``, ``stale``, ``failed``,
  ``pending`` or ``unknown`` (a record this version cannot read).

Read by the TOC (:mod:`partybal.pipeline.toc`), the sweeper (which experiments lost a request),
``partybal backfill`` (which are stale) and ``partybal preview`` (its own index).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import layout, logs
from ..storage import GcsResults
from ..storage import list_results as list_results_of
from . import status as status_mod

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listed:
    """One object of a listing: only what the listing API returns."""

    name: str
    generation: int
    updated: dt.datetime | None


@dataclass
class Experiment:
    """What the listing says about one experiment's results."""

    file_slug: str
    generations: dict[str, int] = field(default_factory=dict)
    periods: set[str] = field(default_factory=set)
    updated: dt.datetime | None = None


def listed(source, prefix: str = "") -> list[Listed]:
    """One listing of a results source (bucket or folder) under ``prefix`` (:func:`storage.list_results`)."""
    return [Listed(i.name, int(i.generation), i.updated) for i in list_results_of(source, prefix)]


def group_results(listed: Iterable[Listed], prefix: str) -> dict[str, Experiment]:
    """Final results objects under ``prefix`` grouped by experiment; junk is skipped."""
    out: dict[str, Experiment] = {}
    objects: dict[str, Listed] = {}
    blobs = []
    for obj in listed:
        try:
            blobs.append(layout.parse_results_name(obj.name, allowed_prefixes=(prefix,)))
        except layout.Ignored:
            continue
        objects[obj.name] = obj
    resolved, ambiguous = layout.resolve_listing(blobs)  # the listing decides ambiguous names
    for name, why in ambiguous:
        logs.log(log, logging.WARNING, f"ignored results object: {name}: {why}", slug=None, prefix=prefix)
    for blob in resolved:
        obj = objects[blob.name]
        exp = out.setdefault(blob.file_slug, Experiment(blob.file_slug))
        exp.generations[obj.name] = obj.generation
        if blob.period:
            exp.periods.add(blob.period)
        if obj.updated and (exp.updated is None or obj.updated > exp.updated):
            exp.updated = obj.updated
    return out


def row_state(exp: Experiment, status: Mapping[str, Any] | None, pending: bool) -> tuple[str, str]:
    """(state, reason)."""
    last_failure = ""
    if status and isinstance(status, Mapping) and status.get("state") == "failed":
        last_failure = str(status.get("reason") or "unknown reason")
    if pending:
        return "pending", (f"last render failed: {last_failure}" if last_failure else "")
    if not status:
        return "new", ""
    if status.get("state") == "unknown":  # read_state: a record it could not read at all
        return "unknown", str(status.get("reason") or "unreadable status record")
    problem = status_mod.record_problem(dict(status))
    if problem:
        return "unknown", problem
    inputs = status.get("input_generations")
    same_inputs = {k: status_mod.as_int(v) for k, v in inputs.items()} == exp.generations
    if last_failure:
        return ("failed", last_failure) if same_inputs else ("stale", f"last render failed: {last_failure}")
    if not same_inputs:
        return "stale", "results changed since the page was rendered"
    return "ok", ""


def list_results(client, results_bucket: str, prefix: str) -> list[Listed]:
    """The results bucket's objects under ``prefix`` (full names), as :func:`group_results` reads them."""
    return listed(GcsResults(results_bucket, client=client), prefix)


def read_state(client, state_bucket: str, prefix: str) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(status records by file slug, file slugs with a pending marker)."""
    from google.api_core import exceptions as gexc

    bucket = client.bucket(state_bucket)
    statuses: dict[str, dict[str, Any]] = {}
    pending: set[str] = set()
    for folder in layout.state_listing_prefixes(prefix):
        for b in client.list_blobs(bucket, prefix=folder, fields="items(name,generation,metadata),nextPageToken"):
            sb = layout.parse_state_name(b.name)
            if sb is None or sb.prefix != prefix:
                continue
            if sb.what == layout.PENDING:
                pending.add(sb.file_slug)
                continue
            listed = status_mod.from_toc_metadata(b.metadata)  # the job keeps the TOC's fields there
            if listed is not None:
                statuses[sb.file_slug] = listed
                continue
            try:  # a record written without metadata (older jobs, previews): download it
                data = bucket.blob(b.name, generation=b.generation).download_as_bytes()
            except gexc.NotFound:
                continue  # replaced since the listing: the next rebuild sees the new one
            record, why = status_mod.parse_json_object(data)
            statuses[sb.file_slug] = (
                record if not why else {"state": "unknown", "reason": f"unreadable status record: {why}"}
            )
    return statuses, pending

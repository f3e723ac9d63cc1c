"""The status record a render leaves in the state bucket (``[prefix]status/<file-slug>.json``).

Written by the render job (and by local previews), read by the TOC. Fields::

    slug, file_slug, prefix, name, analysis_start (ISO|null), windows {period: n},
    state "ok"|"failed", reason (one line), input_generations {object name: generation},
    results_updated (ISO|null), render_seconds, render_id, rendered_at, figures,
    page (name of the live page, or null), page_rendered_at, attempt,
    run_id (drawn when the render started, sorts in start order; the record of the run that started
    last wins — ``job.write_status``; an ok record's render_id equals it),
    srm (the sample-ratio check of segment ``all``, :func:`srm_field`: ``{"mismatch": bool,
    "p_value": float, "basis": str}`` of the basis with the lowest p-value; null without a test),
    history (ok records of a published page: the name of the render's summary in the site bucket,
    ``pipeline/history.py``)

The fields the TOC needs are also kept in the object's custom metadata (``toc_metadata``), so the
TOC rebuild gets them from a listing (``fields=items(name,generation,metadata)``) without
downloading one record per experiment; the JSON body stays the full record.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..layout import status_name
from ..page.report import window_of
from ..page.results import ExperimentResults
from ..storage import metadata_json
from ..times import iso

OK, FAILED = "ok", "failed"  # the two values of ``state``
KILLED_REASON = "killed (attempt {n} of {m})"
_DIGITS = re.compile(r"[0-9]{1,30}\Z")  # str.isdigit() also says yes to '²' and '١٢'


@dataclass
class StatusRecord:
    """The record's fields, typed, with the values a render starts from (a ``failed`` record that
    has not read anything yet). On the wire (and for every reader) it is the JSON object
    :meth:`as_dict` gives; records are read back as dicts and checked by :func:`record_problem`,
    since another version of partybal may have written them."""

    slug: str
    file_slug: str
    prefix: str
    name: str
    analysis_start: str | None = None
    windows: dict[str, int] = field(default_factory=dict)
    state: str = FAILED
    reason: str = ""
    input_generations: dict[str, int] = field(default_factory=dict)
    results_updated: str | None = None
    render_seconds: float | None = None
    run_id: str | None = None
    render_id: str | None = None
    rendered_at: str | None = None
    figures: int = 0
    page: str | None = None
    page_rendered_at: str | None = None
    attempt: str = ""
    srm: dict[str, Any] | None = None
    killed: bool = False  # written only when True (an attempt killed from outside)

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        if not self.killed:
            del record["killed"]
        return record


def new_record(slug: str, fslug: str, prefix: str, run_id: str | None, attempt: str = "") -> dict[str, Any]:
    """The record a render starts with: ``failed`` with no reason yet, nothing read, no page."""
    return StatusRecord(slug=slug, file_slug=fslug, prefix=prefix, name=slug, run_id=run_id, attempt=attempt).as_dict()


def live_page_fields(previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a ``failed`` record keeps of the previous one: the page still live, its time and its
    sample-ratio check."""
    previous = previous if isinstance(previous, Mapping) else {}
    return {
        "page": previous.get("page"),
        "page_rendered_at": previous.get("page_rendered_at"),
        "srm": previous.get("srm") if isinstance(previous.get("srm"), dict) else None,  # of the page still live
    }


def crash_record(
    previous: Mapping[str, Any] | None,
    slug: str,
    fslug: str,
    prefix: str,
    reason: str,
    now: dt.datetime,
    attempt: str = "",
    run_id: str | None = None,
) -> dict[str, Any]:
    """The ``failed`` record of a render that crashed (infrastructure): the previous record (if it
    is one we can read) with the new state, reason, time, attempt and run."""
    previous = dict(previous) if isinstance(previous, Mapping) and not record_problem(dict(previous)) else {}
    record = {**previous, "slug": slug, "file_slug": fslug, "prefix": prefix}
    record.update(state=FAILED, reason=reason, rendered_at=iso(now), attempt=attempt, run_id=run_id)
    record.setdefault("input_generations", {})
    return record


def outcome_record(
    fslug: str,
    input_generations: Mapping[str, int],
    reason: str,
    page: str | None,
    now: dt.datetime,
    fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A record of a render outside the buckets (``partybal preview``, ``partybal backfill --out``):
    ``ok`` with its page, or ``failed`` with ``reason``; ``fields``: :func:`results_fields` when
    the results were loaded."""
    return {
        **(fields or {}),
        "file_slug": fslug,
        "state": FAILED if reason else OK,
        "reason": reason,
        "input_generations": dict(input_generations),
        "page": page,
        "page_rendered_at": iso(now) if page else None,
    }


def window_counts(results: ExperimentResults) -> dict[str, int]:
    """Windows per period present, for the TOC's ``O W3 D21``."""
    if results.released_windows is not None:  # rows dropped before R drew (render.build)
        return dict(results.released_windows)
    return {p: len({window_of(r) for r in rows}) for p, rows in results.statistics.items()}


def results_fields(results: ExperimentResults, name_prefix: str = "") -> dict[str, Any]:
    """What a status record says about the inputs a render read."""
    md = results.metadata
    return {
        "name": results.slug,
        "analysis_start": iso(md.analysis_start_time) if md and md.analysis_start_time else None,
        "windows": window_counts(results),
        "input_generations": {name_prefix + name: gen for name, gen in results.generations.items()},
        "results_updated": iso(results.updated),
    }


def srm_field(checks) -> dict[str, Any] | None:
    """The record's ``srm`` from the page's sample-ratio tests (``srm.SrmCheck``; the job computes
    them, scipy stays out of the functions): the segment-``all`` test with the lowest p-value."""
    tests = [c for c in checks or () if c.segment == "all"]
    if not tests:
        return None
    worst = min(tests, key=lambda c: c.p_value)
    return {"mismatch": bool(worst.mismatch), "p_value": float(worst.p_value), "basis": worst.basis}


def srm_flag(record: Any) -> tuple[bool, str]:
    """(mismatch?, p-value text) from a record's ``srm``; (False, "") when absent or malformed."""
    value = record.get("srm") if isinstance(record, dict) else None
    if not isinstance(value, dict) or value.get("mismatch") is not True:
        return False, ""
    p = value.get("p_value")
    basis = value.get("basis") if isinstance(value.get("basis"), str) else ""
    p_text = f"p = {p:.1e}" if isinstance(p, (int, float)) and not isinstance(p, bool) and p > 0 else "p < 0.001"
    return True, f"{p_text}{', ' + basis[:40] if basis else ''}"


TOC_FIELDS = (
    "name",
    "analysis_start",
    "windows",
    "state",
    "reason",
    "input_generations",
    "page",
    "page_rendered_at",
    "srm",
)
TOC_METADATA_KEY = "partybal-toc"
MAX_TOC_METADATA_BYTES = 6000  # GCS allows 8 KiB of custom metadata per object


def toc_metadata(record: dict[str, Any]) -> dict[str, str] | None:
    """``{TOC_METADATA_KEY: json}`` of the TOC's fields, or None when too big for metadata."""
    subset = {k: record.get(k) for k in TOC_FIELDS}
    if isinstance(subset.get("reason"), str):
        subset["reason"] = subset["reason"][:500]
    text = json.dumps(subset, separators=(",", ":"), sort_keys=True)
    return {TOC_METADATA_KEY: text} if len(text.encode()) <= MAX_TOC_METADATA_BYTES else None


def from_toc_metadata(metadata: Any) -> dict[str, Any] | None:
    """The TOC fields of a listed status object, or None (no metadata: download the record)."""
    return metadata_json(metadata, TOC_METADATA_KEY)


def failure_reason(exc: BaseException) -> str:
    """The one-line reason a ``failed`` record (or a preview's index) gives for an exception raised
    while loading or rendering: the message of partybal's own errors (they name the file), else
    the exception's type and message (a bug, or a value Python could not handle)."""
    from ..errors import PartybalError, one_line

    if isinstance(exc, PartybalError):
        return one_line(exc)
    if isinstance(exc, MemoryError):
        return "render error: out of memory (MemoryError) while rendering"
    return f"render error: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}".rstrip(": ")


# --- reading our own state robustly (records written by another version, or corrupted) ---------


def as_int(value: Any) -> int | None:
    """A non-negative integer written by us (an int, or ASCII digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        return int(value.strip())
    return None


def record_problem(record: Any) -> str:
    """ "" when ``record`` has the shape of a status record the TOC can show, else why not (one line)."""
    if not isinstance(record, dict):
        return f"status record is not a JSON object ({type(record).__name__})"
    state = record.get("state")
    if state not in (OK, FAILED):
        return f"status record has an unknown state {str(state)[:40]!r}"
    inputs = record.get("input_generations", {})
    if not isinstance(inputs, dict):
        return "status record: input_generations is not an object"
    bad = [k for k, v in inputs.items() if as_int(v) is None]
    if bad:
        return f"status record: generation of {str(bad[0])[:80]!r} is not a number ({str(inputs[bad[0]])[:20]!r})"
    for key in ("reason", "page", "name", "analysis_start", "page_rendered_at"):
        if record.get(key) is not None and not isinstance(record.get(key), str):
            return f"status record: {key} is not text"
    return ""


def parse_json_object(data: bytes) -> tuple[dict[str, Any], str]:
    """(object, "") or ({}, why it is unreadable) for a JSON object we wrote."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return {}, f"not valid JSON ({' '.join(str(exc).split())[:80]})"
    if not isinstance(value, dict):
        return {}, f"not a JSON object ({type(value).__name__})"
    return value, ""


# --- attempts killed from outside (OOM, SIGKILL, timeout) --------------------------------------


def killed_reason(attempt: Any, max_attempts: Any) -> str:
    """``killed (attempt n of m)`` from a running record's 0-based ``attempt`` and ``max_attempts``."""
    a, m = as_int(attempt), as_int(max_attempts)
    n = str(a + 1) if a is not None else "?"
    return KILLED_REASON.format(n=n, m=m if m else "?")


def killed_record(
    previous: dict[str, Any] | None, running: dict[str, Any], slug: str, fslug: str, prefix: str, now: dt.datetime
) -> dict[str, Any]:
    """The ``failed`` record for a render that was killed from outside: the previous record's
    page and description kept, the reason ``killed (attempt n of m)``, the killed run's ``run_id``
    (so it never replaces the record of a run that started later)."""
    previous = previous if isinstance(previous, dict) and not record_problem(previous) else {}
    return StatusRecord(
        slug=slug,
        file_slug=fslug,
        prefix=prefix,
        name=previous.get("name") or slug,
        analysis_start=previous.get("analysis_start"),
        windows=previous.get("windows") if isinstance(previous.get("windows"), dict) else {},
        **live_page_fields(previous),
        state=FAILED,
        reason=killed_reason(running.get("attempt"), running.get("max_attempts")),
        rendered_at=iso(now),
        run_id=str(running.get("run_id") or "") or None,
        attempt=str(running.get("attempt") or ""),
        killed=True,
    ).as_dict()


# --- the record in the state bucket -------------------------------------------------------------

WRITE_ATTEMPTS = 5
STATUS_CACHE_CONTROL = "no-store"


def read_blob(blob) -> dict[str, Any]:
    """The record in ``blob``: {} when missing, unreadable or not an object (never raises for its content)."""
    from google.api_core import exceptions as gexc

    try:
        data = blob.download_as_bytes()
    except gexc.NotFound:
        return {}
    record, _ = parse_json_object(data)
    return record


def read(state_bucket, fslug: str, prefix: str) -> dict[str, Any] | None:
    return read_blob(state_bucket.blob(status_name(fslug, prefix))) or None


def write(state_bucket, record: dict[str, Any], prefix: str, *, not_over_run: str | None = None) -> bool:
    """Write the status record, unless the one there is of a run that started after ours
    (``run_id``; two renders of one experiment finishing out of order): the record of the run that
    started last wins. Conditional on the generation read, so the check and the write cannot
    interleave with another job's. A record without ``run_id`` is written regardless. False when
    not written. ``not_over_run``: also not over a record of that very run (a killed-run record
    never replaces what the run itself wrote)."""
    from google.api_core import exceptions as gexc

    name = status_name(record["file_slug"], prefix)
    toc_fields = toc_metadata(record)  # lets the TOC read a listing instead of 10,000 downloads
    body = json.dumps(record, indent=1, sort_keys=True, default=str)
    for _ in range(WRITE_ATTEMPTS):
        current = state_bucket.get_blob(name)
        generation = 0
        if current is not None:
            generation = current.generation
            theirs = str(read_blob(current).get("run_id") or "")
            mine = record.get("run_id")
            if mine and theirs > mine:
                return False
            if not_over_run and theirs and theirs >= not_over_run:
                return False
        blob = state_bucket.blob(name)
        blob.cache_control = STATUS_CACHE_CONTROL
        if toc_fields is not None:
            blob.metadata = toc_fields
        try:
            blob.upload_from_string(body, content_type="application/json", if_generation_match=generation)
            return True
        except gexc.PreconditionFailed:
            continue
    raise RuntimeError(f"{name} changed {WRITE_ATTEMPTS} times while writing it")

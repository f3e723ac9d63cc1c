"""The status record a render leaves in the state bucket (``[prefix]status/<file-slug>.json``).

Written by the render job (and by local previews), read by the TOC. Fields::

    slug, file_slug, prefix, name, analysis_start (ISO|null), windows {period: n},
    state "ok"|"failed", reason (one line), input_generations {object name: generation},
    results_updated (ISO|null), render_seconds, render_id, rendered_at, figures,
    page (name of the live page, or null), page_rendered_at, attempt,
    run_id (drawn when the render started, sorts in start order; the record of the run that started
    last wins — ``job.write_status``; an ok record's render_id equals it)

The fields the TOC needs are also kept in the object's custom metadata (``toc_metadata``), so the
TOC rebuild gets them from a listing (``fields=items(name,generation,metadata)``) without
downloading one record per experiment; the JSON body stays the full record.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .report import window_of
from .results import ExperimentResults


OK, FAILED = "ok", "failed"  # the two values of ``state``


def iso(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.timezone.utc).isoformat() if t else None


def window_counts(results: ExperimentResults) -> dict[str, int]:
    """Windows per period present, for the TOC's ``O W3 D21``."""
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


TOC_FIELDS = ("name", "analysis_start", "windows", "state", "reason", "input_generations", "page", "page_rendered_at")
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
    if not isinstance(metadata, dict) or TOC_METADATA_KEY not in metadata:
        return None
    try:
        value = json.loads(metadata[TOC_METADATA_KEY])
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None

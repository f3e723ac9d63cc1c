"""The status record a render leaves in the state bucket (``[prefix]status/<file-slug>.json``).

Written by the render job (and by local previews), read by the TOC. Fields::

    slug, file_slug, prefix, name, analysis_start (ISO|null), windows {period: n},
    state "ok"|"failed", reason (one line), input_generations {object name: generation},
    results_updated (ISO|null), render_seconds, render_id, rendered_at, figures,
    page (name of the live page, or null), page_rendered_at, attempt
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .report import window_of
from .results import ExperimentResults


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

"""Time, as partybal writes and shows it: one owner for every format.

* :func:`iso` — what records and metadata store (UTC ISO 8601);
* :func:`parse_iso` — reading it back (a naive time is UTC; junk is None);
* :func:`fmt_time` — what a reader sees on a page or the TOC: ``2024-05-01 12:00 UTC``;
* :func:`fmt_date` — a date alone: ``2024-05-01``.

A time whose UTC value falls outside years 1-9999 (``0001-01-01T00:00+01:00``,
``9999-12-31T23:59-01:00``) keeps its own offset instead of raising OverflowError.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def iso(t: dt.datetime | None) -> str | None:
    """UTC ISO text, or None for no time."""
    if not t:
        return None
    try:
        return t.astimezone(dt.UTC).isoformat()
    except OverflowError:
        return t.isoformat()


def parse_iso(value: Any) -> dt.datetime | None:
    """The time an ISO text (``Z`` allowed) names, timezone-aware; None when it names none."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def fmt_time(t: dt.datetime | None, missing: str = "unknown") -> str:
    """``2024-05-01 12:00 UTC`` (a naive time is UTC); ``missing`` for no time."""
    if t is None:
        return missing
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    try:
        return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except OverflowError:  # no UTC value: shown as written
        return t.isoformat(sep=" ", timespec="minutes")


def fmt_date(t: dt.datetime | dt.date | None, missing: str = "") -> str:
    """``2024-05-01``; ``missing`` for no date."""
    return t.strftime("%Y-%m-%d") if t else missing

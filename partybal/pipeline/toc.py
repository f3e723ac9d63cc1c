"""The table of contents: ``index.html`` (and ``preview/index.html``) of the site bucket.

Built only from a listing of the results bucket (names, generations and update times: statistics
files are never downloaded), the pending markers and the small status records of the state bucket
— read from the status objects' custom metadata in the same listing when the job put them there
(one listing instead of one download per experiment), else downloaded.
Written with a generation precondition, read *before* listing: when two rebuilds race, the one
that listed older state gets 412 and lists again, so no entry is ever lost.

Each index records, in its ``base_generation`` metadata, the generation it was written over. A
rebuild that gets 412 first looks at the index that beat it: if that one's base is newer than the
generation *this* rebuild first read, its writer read the index — and so listed — after this
rebuild began, i.e. after the change that triggered it, so the change is already shown and the
rebuild stops. So a rebuild lists at most twice, however many run at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import layout, logs
from ..page import templating
from ..settings import TocSettings
from ..storage import gcs_client
from ..times import fmt_date, fmt_time, parse_iso
from . import events, experimenter, feed
from . import status as status_mod
from .state import Experiment, group_results, list_results, read_state, row_state

log = logging.getLogger(__name__)

INDEX_CACHE_CONTROL = "public, max-age=60"
MAX_ATTEMPTS = 8
STATE_LABELS = {
    "ok": "ok",
    "failed": "failed",
    "pending": "pending",
    "stale": "stale",
    "new": "not rendered",
    "unknown": "unknown",  # a status record this version cannot read (another version's, or corrupted)
}


Settings = TocSettings  # RESULTS_BUCKET, SITE_BUCKET, STATE_BUCKET


@dataclass(frozen=True)
class TocRow:
    name: str
    file_slug: str
    href: str  # "" when no page has been published
    analysis_start: str
    periods: str
    updated: str
    updated_sort: str
    state: str
    state_label: str
    reason: str
    rendered_at: str
    srm: str = ""  # the live page's sample-ratio mismatch ("p = 1.2e-09, enrollments"), "" when none
    # from Experimenter's snapshot (experimenter.toc_entries); "" when it does not list the experiment
    app: str = ""  # Experimenter's appName (the filter's value)
    app_label: str = ""
    run_status: str = ""  # live / observing / complete / scheduled / unknown
    run_status_label: str = ""
    launch: str = ""  # YYYY-MM-DD
    end: str = ""


@dataclass(frozen=True)
class StateCount:
    state: str
    label: str
    count: int


@dataclass(frozen=True)
class TocPage:
    title: str
    is_preview: bool
    other_href: str  # the main TOC from the preview one
    generated_at: str
    rows: list[TocRow]
    counts: list[StateCount]
    apps: list[StateCount] = field(default_factory=list)  # the application filter's options
    run_statuses: list[StateCount] = field(default_factory=list)  # the Experimenter status filter's
    sort_launch: str = "none"  # aria-sort of the column the rows come sorted by
    sort_updated: str = "descending"


def _fmt_time(t: dt.datetime | None) -> str:
    """The page's time format (:func:`partybal.times.fmt_time`); empty for no time."""
    return fmt_time(t, missing="")


_parse_time = parse_iso


def periods_text(periods: set[str], windows: Mapping[str, Any]) -> str:
    """``O W3 D21``: one code per period present, with its window count when the job recorded it."""
    parts = []
    for period in layout.PERIODS:
        if period not in periods:
            continue
        code = layout.PERIOD_CODES[period]
        n = windows.get(period) if isinstance(windows, Mapping) else None
        parts.append(code if period == "overall" or not isinstance(n, int) or n < 1 else f"{code}{n}")
    return " ".join(parts)


RUN_STATUS_LABELS = {
    "live": "live",
    "observing": "enrollment ended",
    "complete": "complete",
    "scheduled": "scheduled",
    "unknown": "not started",
}


def make_row(
    exp: Experiment,
    status: Mapping[str, Any] | None,
    pending: bool,
    prefix: str,
    info=None,
    today: dt.date | None = None,
) -> TocRow:
    """``info``: the experiment's ``experimenter.ExperimentInfo`` from the snapshot, if listed."""
    status = status if isinstance(status, Mapping) else {}
    state, reason = row_state(exp, status or None, pending)
    has_page = status.get("page") == layout.page_name(exp.file_slug, prefix)
    start = _parse_time(status.get("analysis_start"))
    name = status.get("name") if isinstance(status.get("name"), str) and status.get("name") else exp.file_slug
    run = info.status(today or dt.datetime.now(dt.UTC).date()) if info is not None else ""
    if info is not None and info.name:
        name = info.name
    windows = status.get("windows") if isinstance(status.get("windows"), Mapping) else {}
    return TocRow(
        name=name,
        file_slug=exp.file_slug,
        href=layout.page_name(exp.file_slug) if has_page else "",  # relative to [prefix]index.html
        analysis_start=fmt_date(start),
        periods=periods_text(exp.periods, windows),
        updated=_fmt_time(exp.updated),
        updated_sort=exp.updated.isoformat() if exp.updated else "",
        state=state,
        state_label=STATE_LABELS[state],
        reason=" ".join(str(reason).split())[:500],
        rendered_at=_fmt_time(_parse_time(status.get("page_rendered_at"))),
        srm=status_mod.srm_flag(dict(status))[1] if has_page else "",
        app=info.app_name if info is not None else "",
        app_label=experimenter.app_label(info.app_name) if info is not None else "",
        run_status=run,
        run_status_label=RUN_STATUS_LABELS.get(run, run),
        launch=info.start_date.isoformat() if info is not None and info.start_date else "",
        end=info.end_date.isoformat() if info is not None and info.end_date else "",
    )


def toc_page(
    experiments: Mapping[str, Experiment],
    statuses: Mapping[str, Mapping[str, Any]],
    pending: set[str],
    prefix: str,
    now: dt.datetime | None = None,
    catalog: Mapping[str, Any] | None = None,
) -> TocPage:
    """``catalog``: Experimenter's experiments by file slug (experimenter.toc_entries)."""
    catalog = catalog or {}
    today = (now or dt.datetime.now(dt.UTC)).date()
    rows = [
        make_row(exp, statuses.get(fs), fs in pending, prefix, catalog.get(fs), today)
        for fs, exp in experiments.items()
    ]
    # newest launch first (Experimenter's start date); experiments Experimenter does not know
    # after them, newest results first
    rows.sort(key=lambda r: (r.launch, r.updated_sort, r.file_slug), reverse=True)
    by_launch = any(r.launch for r in rows)
    counts = Counter(r.state for r in rows)
    preview = prefix == layout.PREVIEW_PREFIX
    return TocPage(
        title="Experiment results — previews" if preview else "Experiment results",
        is_preview=preview,
        other_href="../" + layout.index_name() if preview else "",
        generated_at=_fmt_time(now or dt.datetime.now(dt.UTC)),
        rows=rows,
        counts=[StateCount(s, STATE_LABELS[s], counts[s]) for s in STATE_LABELS if counts[s]],
        apps=[
            StateCount(a, experimenter.app_label(a), n)
            for a, n in sorted(Counter(r.app for r in rows if r.app).items())
        ],
        run_statuses=[
            StateCount(k, RUN_STATUS_LABELS[k], n)
            for k, n in ((k, sum(r.run_status == k for r in rows)) for k in RUN_STATUS_LABELS)
            if n
        ],
        sort_launch="descending" if by_launch else "none",
        sort_updated="none" if by_launch else "descending",
    )


def render_html(page: TocPage) -> str:
    return templating.render("toc.html.j2", toc=page)


# --- reading the buckets ------------------------------------------------------------------------


def build_index(client, settings: Settings, prefix: str) -> TocPage:
    experiments = group_results(list_results(client, settings.results_bucket, prefix), prefix)
    statuses, pending = read_state(client, settings.state_bucket, prefix)
    return toc_page(experiments, statuses, pending, prefix, catalog=read_catalog(client, settings.state_bucket))


def read_catalog(client, state_bucket: str) -> dict[str, Any]:
    """Experimenter's experiments from the snapshot's compact TOC copy (one download); {} without one."""
    from google.api_core import exceptions as gexc

    try:
        data = client.bucket(state_bucket).blob(layout.experimenter_toc_name()).download_as_bytes()
    except gexc.NotFound:
        return {}
    return experimenter.toc_entries(data)


def _base_generation(blob) -> int:
    try:
        return int((blob.metadata or {}).get("base_generation", -1))
    except (TypeError, ValueError):
        return -1


def _rebuilt_later(site, name: str, first_read: int, attempt: int) -> bool:
    """After losing a write race: whether the index that won was built from a listing made after
    this rebuild began (then this one has nothing to add; logged)."""
    winner = site.get_blob(name)
    if winner is not None and _base_generation(winner) > first_read:
        logs.log(log, logging.INFO, "index already rebuilt by a later listing", slug=None, index=name, attempt=attempt)
        return True
    return False


def publish_index(client, settings: Settings, prefix: str = "", max_attempts: int = MAX_ATTEMPTS) -> tuple[str, int]:
    """Rebuild and write ``[prefix]index.html``; (object name, attempts it took — 0 when a
    concurrent rebuild that listed after this one began had already written it)."""
    from google.api_core import exceptions as gexc

    site = client.bucket(settings.site_bucket)
    name = layout.index_name(prefix)
    first_read: int | None = None
    for attempt in range(1, max_attempts + 1):
        current = site.get_blob(name)
        generation = int(current.generation) if current is not None else 0  # read BEFORE listing
        if first_read is None:
            first_read = generation
        page = build_index(client, settings, prefix)
        blob = site.blob(name)
        blob.cache_control = INDEX_CACHE_CONTROL
        blob.metadata = {"base_generation": str(generation)}
        try:
            blob.upload_from_string(
                render_html(page), content_type="text/html; charset=utf-8", if_generation_match=generation
            )
        except gexc.PreconditionFailed:
            if _rebuilt_later(site, name, first_read, attempt):
                return name, 0
            logs.log(
                log,
                logging.INFO,
                "index changed while rebuilding; rebuilding again",
                slug=None,
                index=name,
                attempt=attempt,
            )
            continue
        logs.log(log, logging.INFO, "index rebuilt", slug=None, index=name, experiments=len(page.rows), attempt=attempt)
        return name, attempt
    raise RuntimeError(f"{name}: gave up after {max_attempts} concurrent rebuilds")


def _is_snapshot_change(event_type: str, data: Any, state_bucket: str) -> bool:
    """A new Experimenter snapshot (experimenter.refresh_snapshot) in the state bucket."""
    try:
        change = events.object_change(event_type, data)
    except events.NotUnderstood:
        return False
    return (
        change.bucket == state_bucket
        and change.kind == events.FINALIZE
        and change.name == layout.experimenter_snapshot_name()
    )


def handle_state_event(
    event_type: str, data: Any, event_id: str = "", *, settings: Settings | None = None, client=None
) -> str | None:
    """``rebuild_toc``: a status/marker change → rebuild the index it belongs to. The index name."""
    settings = settings or Settings.from_env()
    try:
        blob = events.state_blob(event_type, data, settings.state_bucket)
    except events.NotUnderstood as why:
        if _is_snapshot_change(event_type, data, settings.state_bucket):  # names and dates changed: both indexes
            client = client or gcs_client()
            for prefix in layout.ALLOWED_PREFIXES:
                name, _ = publish_index(client, settings, prefix)
                feed.publish_feeds(client, settings.site_bucket, settings.state_bucket, prefix)  # names changed
            return name
        events.ignored(log, why, event_id=event_id)
        return None
    client = client or gcs_client()
    name, _ = publish_index(client, settings, blob.prefix)
    if blob.what == layout.STATUS:  # the Atom feeds (pipeline/feed.py): only a render's outcome changes them
        feed.publish_feeds(client, settings.site_bucket, settings.state_bucket, blob.prefix, (blob.file_slug,))
    return name

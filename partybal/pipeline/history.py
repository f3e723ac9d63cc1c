"""Render history: what each render showed, and what changed since the one before.

Every successful render of the job writes, next to its page in the site bucket,
``[prefix]history/<file-slug>/<render-id>.json`` (:func:`partybal.layout.history_name`): a compact
summary of what the page showed (:func:`summarize`) — the inputs with their generations, Jetstream's
``version_info``, ``analysis_start_time`` and analysis configuration, the windows per period, for
every metric × branch × analysis basis × segment the relative uplift against the reference (overall,
else the latest window) with its interval and significance, and the analysis errors. An object is
written once and never replaced; the job's clean-up never touches ``history/`` and the site bucket
keeps it ``history_retention_days`` (terraform). Bound: :data:`MAX_SUMMARY_BYTES` (the real-size
experiment of ``tests/support/synthetic.py`` makes about 90 KiB, tested ≤ 128 KiB).

Before building the page the job lists the experiment's history folder (one listing) and reads
the newest earlier summary (one small download); :func:`diff` compares it with this render's and the
page opens with "Changes since <previous render>" (:func:`page_changes`) and lists earlier renders
in its History section (:func:`history_entries`). What changed is also kept, a few lines long, in
the history object's custom metadata (:func:`digest`), so that the Atom feeds
(partybal/pipeline/feed.py) are built from listings alone.

The summary is computed from the same loaded results the page is built from (before the rows are
released, :func:`partybal.page.render.build`); everything here but the bucket access is pure.

Why here and not in ``page/``: a summary exists because the pipeline keeps a series of renders in
the site bucket (render ids, earlier objects, retention); the page only shows the outcome, through
the typed dataclasses of ``page/report.py`` (``Changes``, ``HistoryEntry``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import layout, logs
from ..page import report
from ..page.report import basis_of, fmt_ci, fmt_pct, shown, window_of
from ..page.results import ExperimentResults, finite, out_of_bounds
from ..storage import metadata_json
from ..times import fmt_time, parse_iso

log = logging.getLogger(__name__)

FORMAT = "partybal-history/1"
MAX_SUMMARY_BYTES = 256 * 1024  # a summary over it keeps segment "all" first and says how many estimates it left out
MAX_ERRORS = 200  # analysis errors kept per summary (the page lists them all)
MAX_MESSAGE = 300  # characters of an error message kept
MAX_DIGEST_BYTES = 4000  # custom metadata of the history object (GCS allows 8 KiB per object)
DIGEST_KEY = "partybal-history"
MAX_PAGE_CHANGES = 60  # per group on the page; the rest is counted
MAX_PAGE_HISTORY = 60  # renders listed in the History section
HISTORY_CACHE_CONTROL = "public, max-age=31536000, immutable"  # never rewritten
# Where the "overall else latest window" estimate comes from, in order.
LATEST_PERIODS = ("overall", "weekly", "days28", "daily")
KEY_COLUMNS = ("metric", "branch", "basis", "segment")  # estimates[metric][branch][basis][segment] = [VALUE_COLUMNS…]
VALUE_COLUMNS = ("statistic", "period", "window", "point", "lower", "upper", "ci_width", "significance")
ESTIMATE_COLUMNS = KEY_COLUMNS + VALUE_COLUMNS
SIGNIFICANT = ("better", "worse", "higher", "lower")


# --- the summary (pure) ------------------------------------------------------------------------


def _num(x: float | None) -> float | None:
    """4 significant digits: what the page shows, a third of the bytes of a float's repr."""
    x = finite(x)
    return float(f"{x:.4g}") if x is not None else None


def significance(lower: float | None, upper: float | None, bigger_is_better: bool | None) -> str | None:
    """``better``/``worse`` when the interval excludes 0 and the metric's direction is known,
    ``higher``/``lower`` when it is not, ``unclear`` when the interval holds 0, None without one."""
    lower, upper = finite(lower), finite(upper)
    if lower is None and upper is None:
        return None
    if lower is not None and lower > 0:
        up = True
    elif upper is not None and upper < 0:
        up = False
    else:
        return "unclear"
    if bigger_is_better is None:
        return "higher" if up else "lower"
    return "better" if up == bigger_is_better else "worse"


def _direction(results: ExperimentResults, metric: str) -> bool | None:
    md = results.metadata
    m = md.metrics.get(metric) if md else None
    return m.bigger_is_better if m is not None else None


def _jsonable(model) -> Any:
    if model is None:
        return None
    return json.loads(model.model_dump_json(exclude_none=True)) if hasattr(model, "model_dump_json") else model


def _config(results: ExperimentResults) -> dict[str, Any]:
    """Metadata fields whose change changes what the numbers mean (not the numbers themselves)."""
    md = results.metadata
    if md is None:
        return {}
    definitions = json.dumps(
        {
            "metrics": {k: _jsonable(v) for k, v in md.metrics.items()},
            "outcomes": {k: _jsonable(v) for k, v in (md.outcomes or {}).items()},
        },
        sort_keys=True,
    )
    return {
        "schema_version": md.schema_version,
        "external_config": _jsonable(md.external_config),
        "version_date": md.version_date.isoformat() if md.version_date else None,
        "metric_definitions_crc32": f"{zlib.crc32(definitions.encode()):08x}",  # metric/outcome metadata as written
    }


def _friendly_names(results: ExperimentResults, metrics: list[str]) -> dict[str, str]:
    """Metadata's friendly names of the metrics that have one other than their own name."""
    md = results.metadata
    out = {}
    for m in metrics:
        info = md.metrics.get(m) if md else None
        if info is not None and info.friendly_name and info.friendly_name != m:
            out[m] = info.friendly_name[:200]
    return out


def _estimates(results: ExperimentResults) -> tuple[list[list], str | None]:
    """One row per metric × branch × basis × segment: the relative uplift against the reference,
    overall (else the latest window of the first period that has one), of the first summary
    statistic (``report.SUMMARY_STATISTICS``) that has one."""
    targets = report.Targets(results.statistics)
    reference = report.choose_reference(results, targets).shown
    if reference is None:
        return [], None
    chosen = _choose_estimates(results, targets, reference)
    ordered = sorted(chosen.items(), key=lambda kv: (kv[0][3] != "all", kv[0]))
    return [_estimate_row(results, key, r, period) for key, (_, r, period) in ordered], reference


def _choose_estimates(results: ExperimentResults, targets: report.Targets, reference: str) -> dict[tuple, tuple]:
    """(metric, branch, basis, segment) → (rank, row, period): of the rows against ``reference``,
    the best ranked one — overall before later windows before earlier, summary statistics in order."""
    rank = {p: i for i, p in enumerate(LATEST_PERIODS)}
    stat_rank = {s: i for i, s in enumerate(report.SUMMARY_STATISTICS)}
    chosen: dict[tuple, tuple] = {}
    for period, rows in results.statistics.items():
        if period not in rank:
            continue
        for r in rows:
            if r.comparison != "relative_uplift" or r.statistic not in stat_rank or r.branch == reference:
                continue
            if targets.of(period, r) != reference:
                continue
            key = (r.metric, r.branch, basis_of(r), r.segment)
            candidate = (rank[period], -window_of(r), stat_rank[r.statistic])
            if key not in chosen or candidate < chosen[key][0]:
                chosen[key] = (candidate, r, period)
    return chosen


def _estimate_row(results: ExperimentResults, key: tuple, r, period: str) -> list:
    """A summary row: ``KEY_COLUMNS`` then ``VALUE_COLUMNS``."""
    metric = key[0]
    sig = None if out_of_bounds(r) else significance(r.lower, r.upper, _direction(results, metric))
    values = [r.statistic, period, window_of(r), _num(r.point), _num(r.lower), _num(r.upper), r.ci_width, sig]
    return [*key, *values]


def summarize(
    results: ExperimentResults, render_id: str, *, prefix: str = "", rendered_at: dt.datetime | None = None
) -> dict[str, Any]:
    """The history summary of a render of ``results`` (JSON-ready, within :data:`MAX_SUMMARY_BYTES`).
    Call it before ``render.build`` releases the rows."""
    md = results.metadata
    estimates, reference = _estimates(results)
    windows = {p: sorted({window_of(r) for r in rows}) for p, rows in results.statistics.items()}
    metrics = sorted({r.metric for rows in results.statistics.values() for r in rows})
    errors = [
        {
            "level": e.log_level,
            "type": e.exception_type or "",
            "metric": e.metric or "",
            "statistic": e.statistic or "",
            "segment": e.segment or "",
            "basis": e.analysis_basis.value if e.analysis_basis else "",
            "message": " ".join((e.message or "").split())[:MAX_MESSAGE],
        }
        for e in results.errors
    ]
    summary = {
        "format": FORMAT,
        "slug": results.slug,
        "file_slug": results.file_slug,
        "prefix": prefix,
        "render_id": render_id,
        "rendered_at": (rendered_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(),
        "page": layout.page_name(results.file_slug, prefix),
        "inputs": {prefix + f.name: f.generation for f in sorted(results.files, key=lambda f: f.name)},
        "results_updated": results.updated.astimezone(dt.UTC).isoformat() if results.updated else None,
        "analysis_start_time": md.analysis_start_time.isoformat() if md and md.analysis_start_time else None,
        "version_info": _jsonable(md.version_info) if md else None,
        "config": _config(results),
        "reference_branch": reference,
        "windows": {p: windows[p] for p in layout.PERIODS if p in windows},
        "metrics": metrics,
        "metric_names": _friendly_names(results, metrics),
        "estimate_columns": list(VALUE_COLUMNS),
        "estimates": estimates,  # flat rows here; nested by fit()
        "estimates_left_out": 0,
        "errors": errors[:MAX_ERRORS],
        "errors_total": len(errors),
    }
    return fit(summary)


def encode(summary: dict[str, Any]) -> bytes:
    return json.dumps(summary, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


IDENTITY_FIELDS = ("render_id", "rendered_at")  # differ between two renders of the same inputs


def content_key(summary: dict[str, Any]) -> str:
    """What a summary shows, without which render showed it: equal for a re-render of the same
    input generations (a duplicate delivery, a retried or repeated request)."""
    rest = {k: v for k, v in summary.items() if k not in IDENTITY_FIELDS}
    return hashlib.sha256(encode(rest)).hexdigest()[:20]


def nest(rows: list[list]) -> dict[str, Any]:
    """Flat estimate rows → ``{metric: {branch: {basis: {segment: [VALUE_COLUMNS…]}}}}`` (names once)."""
    out: dict[str, Any] = {}
    for row in rows:
        metric, branch, basis, segment = row[:4]
        out.setdefault(metric, {}).setdefault(branch, {}).setdefault(basis, {})[segment] = list(row[4:])
    return out


def flatten(nested: Any) -> list[list]:
    """:func:`nest` undone (malformed parts skipped)."""
    out = []
    if not isinstance(nested, dict):
        return out
    for metric, branches in nested.items():
        for branch, bases in (branches or {}).items() if isinstance(branches, dict) else ():
            for basis, segments in (bases or {}).items() if isinstance(bases, dict) else ():
                for segment, values in (segments or {}).items() if isinstance(segments, dict) else ():
                    if isinstance(values, list) and len(values) == len(VALUE_COLUMNS):
                        out.append([metric, branch, basis, segment, *values])
    return out


def fit(summary: dict[str, Any], limit: int = MAX_SUMMARY_BYTES) -> dict[str, Any]:
    """``summary`` with its estimates nested, cut to ``limit`` bytes: estimates of other segments
    than ``all`` go first (they are sorted last), then the rest; ``estimates_left_out`` says how
    many went."""
    rows = sorted(summary["estimates"], key=lambda r: r[3] != "all")  # stable: segment "all" first
    keep = len(rows)
    while True:
        cut = {**summary, "estimates": nest(rows[:keep]), "estimates_left_out": len(rows) - keep}
        size = len(encode(cut))
        if size <= limit or keep == 0:
            return cut
        keep = max(0, min(keep - 1, int(keep * limit / size * 0.98)))


# --- what changed (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    group: str  # one of GROUPS
    kind: str  # css class on the page (report.Change.kind)
    text: str


GROUPS = {
    "windows": "New windows",
    "significance": "Significance changes",
    "metrics": "Metrics that appeared or vanished",
    "errors": "Analysis errors",
    "config": "Analysis configuration and versions",
}


@dataclass
class Diff:
    first: bool  # no earlier summary to compare with
    since_render_id: str = ""
    since_at: str = ""  # ISO
    items: list[Item] = field(default_factory=list)

    def of(self, group: str) -> list[Item]:
        return [i for i in self.items if i.group == group]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.group] = out.get(i.group, 0) + 1
        return out


def _estimate_map(summary: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    out = {}
    for row in flatten(summary.get("estimates")):
        d = dict(zip(ESTIMATE_COLUMNS, row, strict=True))
        out[(d["metric"], d["branch"], d["basis"], d["segment"])] = d
    return out


def _ci_text(d: dict[str, Any]) -> str:
    return fmt_ci(d.get("point"), d.get("lower"), d.get("upper"), fmt_pct)


def metric_label(metric: str, *summaries: dict[str, Any]) -> str:
    """``URI Count (uri_count)`` when a summary knows a friendly name, else ``uri_count``."""
    for s in summaries:
        names = s.get("metric_names") if isinstance(s, dict) else None
        name = names.get(metric) if isinstance(names, dict) else None
        if isinstance(name, str) and name and name != metric:
            return f"{shown(name)} ({shown(metric)})"
    return shown(metric)


def _where(d: dict[str, Any], reference: str | None, metric: str = "") -> str:
    when = (
        "overall"
        if d.get("period") == "overall"
        else f"{layout.PERIOD_LABELS.get(d.get('period'), d.get('period'))} window {d.get('window')}".lower()
    )
    vs = f" vs {shown(reference)}" if reference else ""
    where = f"{d['basis']}, segment {shown(d['segment'])}, {when}"
    return f"{metric or shown(d['metric'])}, {shown(d['branch'])}{vs} ({where})"


def _flip(before: str | None, after: str | None) -> tuple[str, str] | None:
    """(kind, words) of a significance change, or None when it is no change."""
    b = before if before in SIGNIFICANT else "unclear"
    a = after if after in SIGNIFICANT else "unclear"
    if a == b:
        return None
    if a == "unclear":
        return "unclear", f"no longer clear (was {b})"
    if a in ("better", "worse"):
        return a, f"became {a}" + (f" (was {b})" if b != "unclear" else "")
    return "changed", f"became clearly {a}" + (
        f" (was {b})" if b != "unclear" else ""
    ) + "; the metadata does not say which direction is better"


def _error_key(e: dict[str, Any]) -> tuple:
    return tuple(str(e.get(k, "")) for k in ("level", "type", "metric", "statistic", "segment", "basis", "message"))


def _error_text(e: dict[str, Any]) -> str:
    where = ", ".join(f"{k} {shown(e[k])}" for k in ("metric", "statistic", "segment", "basis") if e.get(k))
    kind = f"{e.get('level', '')} {e.get('type', '')}".strip()
    return f"{kind}: {shown(e.get('message', ''))}" + (f" ({where})" if where else "")


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dict_changes(name: str, before: Any, after: Any) -> list[str]:
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after))
        return [
            f"{name}.{k}: {_short(before.get(k))} → {_short(after.get(k))}"
            for k in keys
            if before.get(k) != after.get(k)
        ]
    return [f"{name}: {_short(before)} → {_short(after)}"]


def diff(previous: dict[str, Any] | None, current: dict[str, Any]) -> Diff:
    """What changed from ``previous`` (None: this is the first render) to ``current``."""
    if not previous:
        return Diff(first=True)
    out = Diff(
        first=False,
        since_render_id=str(previous.get("render_id") or ""),
        since_at=str(previous.get("rendered_at") or ""),
    )
    for step in (_window_changes, _metric_changes, _significance_changes, _error_changes, _config_changes):
        out.items.extend(step(previous, current))
    return out


def _plural(n: int, word: str) -> str:
    return f"{word}{'s' if n != 1 else ''}"


def _window_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[Item]:
    before, after = previous.get("windows") or {}, current.get("windows") or {}
    out = []
    for period in layout.PERIODS:
        label = layout.PERIOD_LABELS[period]
        old, new = set(before.get(period) or ()), set(after.get(period) or ())
        if period in after and period not in before:
            count = f" ({len(new)} {_plural(len(new), 'window')})" if period != "overall" else ""
            out.append(Item("windows", "window", f"{label} results appeared{count}"))
        elif period in before and period not in after:
            out.append(Item("windows", "window-removed", f"{label} results are no longer published"))
        else:
            if new - old:
                out.append(
                    Item("windows", "window", f"{label}: new {_plural(len(new - old), 'window')} {_ranges(new - old)}")
                )
            if old - new:
                gone = f"{label}: {_plural(len(old - new), 'window')} {_ranges(old - new)} no longer in the results"
                out.append(Item("windows", "window-removed", gone))
    return out


def _metric_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[Item]:
    old, new = set(previous.get("metrics") or ()), set(current.get("metrics") or ())
    return [Item("metrics", "metric-added", f"{metric_label(m, current)} appeared") for m in sorted(new - old)] + [
        Item("metrics", "metric-removed", f"{metric_label(m, previous)} vanished") for m in sorted(old - new)
    ]


def _significance_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[Item]:
    """Flips of the estimates both summaries have, of metrics both had (a changed reference
    branch is a configuration change: the estimates are not comparable)."""
    reference = current.get("reference_branch")
    if previous.get("reference_branch") != reference:
        before_ref = shown(previous.get("reference_branch") or "none")
        return [Item("config", "config", f"Reference branch: {before_ref} → {shown(reference or 'none')}")]
    metrics = set(previous.get("metrics") or ())
    before = _estimate_map(previous)
    out = []
    for key, now in _estimate_map(current).items():
        was = before.get(key)
        flip = (
            _flip(was.get("significance"), now.get("significance")) if was is not None and key[0] in metrics else None
        )
        if flip:
            kind, words = flip
            where = _where(now, reference, metric_label(key[0], current, previous))
            out.append(Item("significance", kind, f"{where}: {words}: {_ci_text(now)} (was {_ci_text(was)})"))
    return out


def _error_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[Item]:
    old = {_error_key(e): e for e in previous.get("errors") or [] if isinstance(e, dict)}
    new = {_error_key(e): e for e in current.get("errors") or [] if isinstance(e, dict)}
    return [Item("errors", "error-new", "New: " + _error_text(e)) for k, e in new.items() if k not in old] + [
        Item("errors", "error-cleared", "Cleared: " + _error_text(e)) for k, e in old.items() if k not in new
    ]


def _config_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[Item]:
    texts = _dict_changes("version_info", previous.get("version_info"), current.get("version_info"))
    if previous.get("analysis_start_time") != current.get("analysis_start_time"):
        before, after = (
            previous.get("analysis_start_time") or "unknown",
            current.get("analysis_start_time") or "unknown",
        )
        texts.append(f"Analysis start: {before} → {after}")
    before_c, after_c = previous.get("config") or {}, current.get("config") or {}
    for key in sorted(set(before_c) | set(after_c)):
        if before_c.get(key) == after_c.get(key):
            continue
        if key == "metric_definitions_crc32":
            texts.append(
                "Metric or outcome definitions in the metadata changed (names, descriptions, directions or bases)"
            )
        else:
            texts.extend(_dict_changes(key, before_c.get(key), after_c.get(key)))
    return [Item("config", "config", t) for t in texts]


def _ranges(values: Iterable[int]) -> str:
    """``{1, 2, 3, 7}`` → ``1–3, 7``."""
    vals = sorted(values)
    parts, start = [], None
    for i, v in enumerate(vals):
        if start is None:
            start = v
        if i + 1 == len(vals) or vals[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}–{v}")
            start = None
    return ", ".join(parts)


def describe(counts: dict[str, int], first: bool = False, recovered: bool = False) -> str:
    """ "2 significance changes, 1 new window" from :meth:`Diff.counts` (or a digest's)."""
    if first:
        return "first render"
    words = {
        "windows": ("window change", "window changes"),
        "significance": ("significance change", "significance changes"),
        "metrics": ("metric appeared or vanished", "metrics appeared or vanished"),
        "errors": ("error change", "error changes"),
        "config": ("configuration change", "configuration changes"),
    }
    parts = [f"{n} {words[g][n != 1]}" for g in words if isinstance(n := counts.get(g), int) and n > 0]
    if recovered:
        parts.insert(0, "recovered from a failed render")
    return ", ".join(parts) or "no changes"


def digest(d: Diff, summary: dict[str, Any], recovered: str = "") -> dict[str, str]:
    """The history object's custom metadata: what changed, a few lines (the feeds read it from a
    listing). ``recovered``: the reason the render before this one failed ("" when it did not)."""
    body: dict[str, Any] = {
        "first": d.first,
        "since": d.since_render_id,
        "key": content_key(summary),
        "counts": d.counts(),
        "windows": {p: len(w) for p, w in (summary.get("windows") or {}).items()},
        "lines": [],
    }
    if recovered:
        body["recovered"] = " ".join(recovered.split())[:300]
    # significance changes first: what a reader of the feed came for
    ordered_items = sorted(d.items, key=lambda i: list(GROUPS).index(i.group) if i.group != "significance" else -1)
    for item in ordered_items:
        candidate = body["lines"] + [item.text[:240]]
        if len(json.dumps({**body, "lines": candidate}, ensure_ascii=True).encode()) > MAX_DIGEST_BYTES - 100:
            break
        body["lines"] = candidate
    return {DIGEST_KEY: json.dumps(body, separators=(",", ":"), ensure_ascii=True)}


def read_digest(metadata: Any) -> dict[str, Any] | None:
    return metadata_json(metadata, DIGEST_KEY)


# --- the page's sections (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class PastRender:
    """One history object of a listing: an earlier render's summary, not downloaded."""

    name: str
    render_id: str
    updated: dt.datetime | None
    digest: dict[str, Any] | None

    @property
    def key(self) -> str | None:
        """:func:`content_key` of its summary (None for a summary written before keys were kept)."""
        key = (self.digest or {}).get("key")
        return key if isinstance(key, str) and key else None

    @property
    def recovered(self) -> bool:
        return bool((self.digest or {}).get("recovered"))


def repeats(later: PastRender, earlier: PastRender | None) -> bool:
    """``later`` showed what ``earlier`` showed (and was no recovery from a failed render)."""
    return earlier is not None and later.key is not None and later.key == earlier.key and not later.recovered


def collapse(listed: list[PastRender]) -> list[PastRender]:
    """A listing (oldest first) without renders that repeat the one before them: two renders of
    the same inputs (concurrent duplicates each wrote one) are one entry, the first."""
    out: list[PastRender] = []
    for x in listed:
        if not repeats(x, out[-1] if out else None):
            out.append(x)
    return out


def summary_href(fslug: str, render_id: str) -> str:
    """The summary's URL relative to the page (both are under the same ``[prefix]``)."""
    return layout.history_name(fslug, render_id)


def render_time(render_id: str) -> dt.datetime | None:
    """When a render started, from its id (``20261126T133000123456Z-abcdef``)."""
    stamp = render_id.split("-", 1)[0]
    for fmt in ("%Y%m%dT%H%M%S%fZ", "%Y%m%dT%H%M%SZ"):
        try:
            return dt.datetime.strptime(stamp, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


def page_changes(d: Diff, fslug: str) -> report.Changes:
    if d.first:
        return report.Changes(
            first=True, note="This is the first render of this experiment: there is nothing earlier to compare with."
        )
    since = fmt_time(render_time(d.since_render_id) or parse_iso(d.since_at))  # as History lists it
    groups = []
    for group, title in GROUPS.items():
        items = d.of(group)
        if not items:
            continue
        changes = [report.Change(i.kind, i.text) for i in items[:MAX_PAGE_CHANGES]]
        if len(items) > MAX_PAGE_CHANGES:
            changes.append(
                report.Change(
                    "more", f"… and {len(items) - MAX_PAGE_CHANGES} more (both summaries are linked under History)"
                )
            )
        groups.append(report.ChangeGroup(title, changes))
    note = (
        ""
        if groups
        else "Nothing the summary records changed: the same windows, metrics, significance, errors and configuration."
    )
    return report.Changes(
        first=False,
        since=since,
        since_href=summary_href(fslug, d.since_render_id) if d.since_render_id else "",
        groups=groups,
        note=note,
    )


def history_entries(
    listed: list[PastRender], fslug: str, current: str, current_summary: str
) -> tuple[list[report.HistoryEntry], str]:
    """The History section: this render, then earlier ones newest first (at most
    :data:`MAX_PAGE_HISTORY`), and a note on what is not listed."""
    earlier = sorted((x for x in listed if x.render_id < current), key=lambda x: x.render_id, reverse=True)
    entries = [
        report.HistoryEntry(
            fmt_time(render_time(current)), current, summary_href(fslug, current), current_summary, current=True
        )
    ]
    for x in earlier[: MAX_PAGE_HISTORY - 1]:
        dg = x.digest or {}
        text = describe(dg.get("counts") or {}, bool(dg.get("first")), bool(dg.get("recovered"))) if dg else "summary"
        entries.append(
            report.HistoryEntry(
                fmt_time(render_time(x.render_id) or x.updated), x.render_id, summary_href(fslug, x.render_id), text
            )
        )
    note = (
        f"{len(earlier) - (MAX_PAGE_HISTORY - 1)} earlier renders are not listed here."
        if len(earlier) > MAX_PAGE_HISTORY - 1
        else ""
    )
    return entries, note


# --- the site bucket ---------------------------------------------------------------------------


def list_history(site_bucket, fslug: str, prefix: str = "") -> list[PastRender]:
    """The experiment's history objects, oldest first, repeats collapsed (:func:`collapse`): one
    listing (names, update times, digests), nothing downloaded."""
    out = []
    for b in site_bucket.client.list_blobs(
        site_bucket, prefix=layout.history_dir(fslug, prefix), fields="items(name,updated,metadata),nextPageToken"
    ):
        parsed = layout.parse_history_name(b.name)
        if parsed is None or parsed[0] != prefix or parsed[1] != fslug:
            continue
        out.append(PastRender(b.name, parsed[2], b.updated, read_digest(b.metadata)))
    return collapse(sorted(out, key=lambda x: x.render_id))


def read_previous(site_bucket, listed: list[PastRender], render_id: str) -> dict[str, Any] | None:
    """The newest summary of a render earlier than ``render_id`` (one download), or None. An
    unreadable one is skipped for the one before it (at most three are tried)."""
    from google.api_core import exceptions as gexc

    for x in [x for x in reversed(listed) if x.render_id < render_id][:3]:
        try:
            data = site_bucket.blob(x.name).download_as_bytes()
            value = json.loads(data)
        except gexc.NotFound:
            continue  # deleted since the listing (retention)
        except (ValueError, UnicodeDecodeError) as exc:
            logs.log(
                log,
                logging.WARNING,
                f"unreadable history summary {x.name}: {' '.join(str(exc).split())[:200]}",
                slug=None,
            )
            continue
        if isinstance(value, dict) and value.get("format") == FORMAT:
            return value
    return None


def write(site_bucket, summary: dict[str, Any], metadata: dict[str, str]) -> str:
    """Write the summary at its own name (never over an existing object); the name."""
    from google.api_core import exceptions as gexc

    name = layout.history_name(summary["file_slug"], summary["render_id"], summary.get("prefix") or "")
    blob = site_bucket.blob(name)
    blob.cache_control = HISTORY_CACHE_CONTROL
    blob.metadata = metadata
    with contextlib.suppress(gexc.PreconditionFailed):  # this render's summary is already there (a retried write)
        blob.upload_from_string(encode(summary), content_type="application/json", if_generation_match=0)
    return name


# --- the job's two steps -----------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """What the job needs of the history for one render: the summary to write once the page is
    live, its custom metadata, and the page's sections (``render.build(history=…)``).
    ``repeat_of``: the earlier render this one repeats (same :func:`content_key`): its summary
    stands for this render too, nothing is written, and the page is the one that render built."""

    summary: dict[str, Any]
    metadata: dict[str, str]
    sections: tuple  # (report.Changes, [report.HistoryEntry], note)
    diff: Diff
    repeat_of: PastRender | None = None

    def write(self, site_bucket) -> str:
        """Once the page is live: the summary's name (written unless this render is a repeat)."""
        if self.repeat_of is not None:
            return self.repeat_of.name
        return write(site_bucket, self.summary, self.metadata)


def prepare(
    site_bucket,
    results: ExperimentResults,
    render_id: str,
    prefix: str = "",
    previous_status: dict[str, Any] | None = None,
) -> Prepared:
    """Before the page is built (the rows are still loaded): this render's summary, the earlier
    renders (one listing) and the newest earlier summary (one download), what changed.
    ``previous_status``: the experiment's status record before this render (a ``failed`` one
    makes this render a recovery). A render that repeats the newest earlier one (same inputs,
    same summary, no recovery) shows that render's page: same changes, same History."""
    summary = summarize(results, render_id, prefix=prefix)
    listed = list_history(site_bucket, results.file_slug, prefix)
    recovered = ""
    if isinstance(previous_status, dict) and previous_status.get("state") == "failed":
        recovered = str(previous_status.get("reason") or "unknown reason")
    repeat_of = _repeated(listed, render_id, summary, recovered)
    shown_id = repeat_of.render_id if repeat_of is not None else render_id
    if repeat_of is not None:
        recovered = str((repeat_of.digest or {}).get("recovered") or "")
        logs.log(
            log, logging.INFO, "render repeats an earlier one", slug=results.file_slug, repeats=repeat_of.render_id
        )
    d = _compare(read_previous(site_bucket, listed, shown_id), summary, results.file_slug)
    meta = digest(d, summary, recovered)
    entries, note = history_entries(listed, results.file_slug, shown_id, describe(d.counts(), d.first, bool(recovered)))
    return Prepared(summary, meta, (page_changes(d, results.file_slug), entries, note), d, repeat_of)


def _repeated(listed: list[PastRender], render_id: str, summary: dict[str, Any], recovered: str) -> PastRender | None:
    """The newest earlier render when this one repeats it (:func:`repeats`), else None."""
    earlier = [x for x in listed if x.render_id < render_id]
    if not earlier or recovered:
        return None
    me = PastRender("", render_id, None, {"key": content_key(summary)})
    return earlier[-1] if repeats(me, earlier[-1]) else None


def _compare(previous: dict[str, Any] | None, summary: dict[str, Any], fslug: str) -> Diff:
    """:func:`diff`, or a note that the previous summary (another version wrote it) is not comparable."""
    try:
        return diff(previous, summary)
    except Exception as exc:  # noqa: BLE001 - a summary another version wrote must not stop the page
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        logs.log(log, logging.WARNING, f"previous history summary not comparable: {why}", slug=fslug)
        d = Diff(
            first=False,
            since_render_id=str(previous.get("render_id") or ""),
            since_at=str(previous.get("rendered_at") or ""),
        )
        d.items.append(
            Item("config", "config", f"The previous render's summary could not be compared with this one ({why}).")
        )
        return d

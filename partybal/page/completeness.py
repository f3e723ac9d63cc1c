"""The completeness map: for each metric, which (analysis basis × segment × period) cells have
results, which have an analysis error, and which metadata says should exist but are missing.

What is *expected* comes from what the files say, nothing else:

* metrics: those the metadata lists (``metrics``, and the metrics of its ``outcomes``), plus any
  metric with rows or analysis errors;
* bases: a metric's ``analysis_bases`` in the metadata (when it lists none — older files — the
  bases present in the data);
* periods: every period with a statistics file;
* segments: every segment present in that period's rows (Jetstream computes every metric for
  every segment) and ``all``.

Analysis errors name a metric, basis and segment, but no period: an error counts for every period
of its metric, basis and segment (or every basis / segment when it names none). Pure functions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import layout
from .report import (
    BASIS_ORDER,
    STATISTIC_LABELS,
    STATISTIC_ORDER,
    CompletenessMap,
    MapCell,
    MapColumn,
    MapGroup,
    MapRow,
    PeriodTab,
    basis_of,
    ordered,
    shown,
)
from .results import ExperimentResults

if TYPE_CHECKING:  # srm imports scipy, which the Cloud Functions do not ship
    from .srm import SrmCheck

SYMBOLS = {"results": "✓", "partial": "!", "error": "✗", "missing": "?", "none": ""}
STATE_WORDS = {
    "results": "results",
    "partial": "results, and analysis errors for some statistics",
    "error": "no results: analysis error",
    "missing": "no results: expected by the metadata, and Jetstream reported no error",
    "none": "not expected (basis not in the metric's analysis_bases) and no results",
}


def _metric_anchors(tabs: list[PeriodTab]) -> dict[tuple[str, str, str, str], str]:
    """(period, basis, segment key, metric as shown) -> the metric's element id in that view."""
    out = {}
    for tab in tabs:
        for view in tab.views:
            for group in view.groups:
                for m in group.metrics:
                    out.setdefault((tab.period, view.basis, view.segment_key, m.metric), m.anchor)
    return out


@dataclass
class _Facts:
    """What the files say, gathered once for the whole map."""

    periods: list[str]
    present: dict[tuple[str, str, str, str], set[str]]  # (metric, period, basis, segment) -> statistics
    segments_in: dict[str, set[str]]  # period -> segments in its rows, and "all"
    bases_seen: set[str]  # in the rows and the analysis errors
    expected_bases: dict[str, set[str]]  # metric -> bases the metadata expects
    errors: dict[str, list[tuple[int, object]]]  # metric -> [(index in results.errors, error)]


def completeness_map(
    results: ExperimentResults,
    tabs: list[PeriodTab],
    error_anchors: list[str],
    segment_key: Callable[[str], str],
    statistic_key: Callable[[str], str],
    metric_name: Callable[[str], str],
    metric_order: Callable[[set[str]], list[str]],
    srm_checks: list[SrmCheck] | None = None,
    srm_text: Callable[[SrmCheck], tuple[str, str, str]] | None = None,
) -> CompletenessMap | None:
    """The map, or None when there is nothing to map (no statistics files and no metadata)."""
    periods = [p for p in layout.PERIODS if p in results.statistics]
    if not periods:
        return None
    facts = _gather(results, periods)
    metrics = {k[0] for k in facts.present} | set(facts.expected_bases) | set(facts.errors)
    if not metrics:
        return None
    for name, bases in facts.expected_bases.items():
        if not bases:  # older metadata: no analysis_bases; expect what the data has
            facts.expected_bases[name] = set(facts.bases_seen) or {"enrollments"}
    checks = {(c.basis, c.segment): c for c in (srm_checks or [])}
    groups, columns, col_keys = _columns(facts, checks, srm_text, segment_key)
    anchors = _metric_anchors(tabs)
    rows: list[MapRow] = []
    tally: dict[str, int] = defaultdict(int)
    for metric in metric_order(metrics):
        cells, stats_all, states = [], set(), set()
        for period, basis, seg in col_keys:
            cell, stats = _cell(facts, metric, period, basis, seg, anchors, error_anchors, segment_key)
            stats_all |= stats
            states.add(cell.state)
            cells.append(cell)
        reason, css, kind = _row_verdict(facts, metric, stats_all, states)
        tally[kind] += 1
        ordered_stats = ordered(stats_all, tuple(STATISTIC_ORDER))
        rows.append(
            MapRow(
                metric=shown(metric),
                name=shown(metric_name(metric)),
                search_text=shown(f"{metric} {metric_name(metric)}").lower(),
                statistic_keys=" ".join(statistic_key(s) for s in ordered_stats),
                statistics=", ".join(STATISTIC_LABELS.get(s, shown(s)) for s in ordered_stats),
                cells=cells,
                reason=reason,
                css=css,
            )
        )
    return CompletenessMap(groups, columns, rows, _counts(rows, tally))


def _gather(results: ExperimentResults, periods: list[str]) -> _Facts:
    """What the rows have, what the metadata expects, and the analysis errors by metric."""
    present: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    segments_in: dict[str, set[str]] = defaultdict(lambda: {"all"})
    bases_seen: set[str] = set()
    for period in periods:
        for r in results.statistics[period]:
            basis = basis_of(r)
            present[(r.metric, period, basis, r.segment)].add(r.statistic)
            segments_in[period].add(r.segment)
            bases_seen.add(basis)
    expected_bases: dict[str, set[str]] = {}
    md = results.metadata
    if md:
        for name, m in md.metrics.items():
            expected_bases[name] = {b.value if hasattr(b, "value") else str(b) for b in (m.analysis_bases or [])}
        for outcome in (md.outcomes or {}).values():
            for name in outcome.metrics:
                expected_bases.setdefault(name, set())
    errors: dict[str, list[tuple[int, object]]] = defaultdict(list)
    for i, e in enumerate(results.errors):
        if e.metric:
            errors[e.metric].append((i, e))
            if e.analysis_basis:
                bases_seen.add(e.analysis_basis.value)
    return _Facts(periods, present, segments_in, bases_seen, expected_bases, errors)


def _columns(facts: _Facts, checks: dict, srm_text, segment_key: Callable[[str], str]):
    """Column groups (basis × segment, with its sample-ratio verdict), columns, and each column's
    (period, basis, segment)."""
    all_bases = ordered(facts.bases_seen | {b for bs in facts.expected_bases.values() for b in bs}, BASIS_ORDER)
    all_segments = ordered({s for p in facts.periods for s in facts.segments_in[p]}, ("all",))
    groups: list[MapGroup] = []
    columns: list[MapColumn] = []
    col_keys: list[tuple[str, str, str]] = []
    for basis in all_bases:
        for seg in all_segments:
            cols = [p for p in facts.periods if seg in facts.segments_in[p]]
            if not cols:
                continue
            check = checks.get((basis, seg))
            if check is not None and srm_text:
                text, css, title = srm_text(check)
            else:
                text, css, title = "", "", "no sample-ratio test (no counts for two branches)"
            groups.append(MapGroup(basis, shown(seg), segment_key(seg), len(cols), text, css, title))
            for p in cols:
                columns.append(MapColumn(p, layout.PERIOD_CODES[p], layout.PERIOD_LABELS[p], basis, segment_key(seg)))
                col_keys.append((p, basis, seg))
    return groups, columns, col_keys


def _cell(facts: _Facts, metric, period, basis, seg, anchors, error_anchors, segment_key) -> tuple[MapCell, set[str]]:
    """One cell of a metric's row, and the statistics it has."""
    stats = facts.present.get((metric, period, basis, seg), set())
    errs = [
        (i, e)
        for i, e in facts.errors.get(metric, [])
        if (e.analysis_basis is None or e.analysis_basis.value == basis) and (e.segment is None or e.segment == seg)
    ]
    expected = basis in facts.expected_bases.get(metric, set())
    where = f"{shown(metric)} · {layout.PERIOD_LABELS[period]} · {basis} · segment {shown(seg)}"
    if stats:
        state = "partial" if errs else "results"
        labels = ", ".join(STATISTIC_LABELS.get(s, shown(s)) for s in ordered(stats, tuple(STATISTIC_ORDER)))
        title = f"{where}: {labels}"
        if errs:
            failed = sorted({shown(e.statistic) for _, e in errs if e.statistic}) or ["unnamed statistic"]
            title += f"; analysis errors for {', '.join(failed)}"
        href = "#" + anchors.get((period, basis, segment_key(seg), shown(metric)), "")
    elif errs:
        state = "error"
        i, e = errs[0]
        message = " ".join(str(e.message).split())[:200]
        title = f"{where}: analysis error: {e.exception_type or e.log_level}: {message}"
        if len(errs) > 1:
            title += f" (and {len(errs) - 1} more)"
        href = "#" + error_anchors[i] if i < len(error_anchors) else ""
    elif expected:
        state, title, href = "missing", f"{where}: {STATE_WORDS['missing']}", ""
    else:
        state, title, href = "none", f"{where}: {STATE_WORDS['none']}", ""
    if href == "#":
        href = ""
    return MapCell(state, SYMBOLS[state], title, href, basis, segment_key(seg)), stats


def _row_verdict(facts: _Facts, metric: str, stats_all: set[str], states: set[str]) -> tuple[str, str, str]:
    """The row's reason line, its CSS class and its kind (for the counts above the map)."""
    reason = ""
    css = ""
    if not stats_all:
        css = "no-results"
        errs = facts.errors.get(metric, [])
        if errs:
            first = errs[0][1]
            message = " ".join(str(first.message).split())[:160]
            plural = "s" if len(errs) != 1 else ""
            example = f"{first.exception_type or first.log_level}: {message}"
            reason = f"No results: {len(errs)} analysis error{plural}, e.g. {example}"
        elif metric in facts.expected_bases:
            reason = "No results in any period, and Jetstream reported no error for it (listed in the metadata)."
    elif "missing" in states:
        reason = "Missing in some cells the metadata expects, with no error reported."
    elif "error" in states or "partial" in states:
        reason = "Analysis errors in some cells."
    if not stats_all:
        kind = "no-results"
    elif states & {"error", "partial"}:
        kind = "errors"
    else:
        kind = "missing" if "missing" in states else "complete"
    return reason, css, kind


def _counts(rows: list[MapRow], tally: dict[str, int]) -> str:
    words = {
        "complete": "complete",
        "errors": "with analysis errors",
        "missing": "with expected cells missing",
        "no-results": "with no results at all",
    }
    counted = ", ".join(f"{tally[k]} {w}" for k, w in words.items() if tally[k])
    return f"{len(rows)} metric{'s' if len(rows) != 1 else ''}: " + counted

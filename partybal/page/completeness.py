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
from typing import TYPE_CHECKING, Callable

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


def completeness_map(
    results: ExperimentResults,
    tabs: list[PeriodTab],
    error_anchors: list[str],
    segment_key: Callable[[str], str],
    statistic_key: Callable[[str], str],
    metric_name: Callable[[str], str],
    metric_order: Callable[[set[str]], list[str]],
    srm_checks: list["SrmCheck"] | None = None,
    srm_text: Callable[["SrmCheck"], tuple[str, str, str]] | None = None,
) -> CompletenessMap | None:
    """The map, or None when there is nothing to map (no statistics files and no metadata)."""
    md = results.metadata
    periods = [p for p in layout.PERIODS if p in results.statistics]
    if not periods:
        return None
    # what the rows have: (metric, period, basis, segment) -> statistics
    present: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    segments_in: dict[str, set[str]] = defaultdict(lambda: {"all"})
    bases_seen: set[str] = set()
    for period in periods:
        for r in results.statistics[period]:
            basis = basis_of(r)
            present[(r.metric, period, basis, r.segment)].add(r.statistic)
            segments_in[period].add(r.segment)
            bases_seen.add(basis)
    # what metadata expects
    expected_bases: dict[str, set[str]] = {}
    if md:
        for name, m in md.metrics.items():
            expected_bases[name] = {b.value if hasattr(b, "value") else str(b) for b in (m.analysis_bases or [])}
        for outcome in (md.outcomes or {}).values():
            for name in outcome.metrics:
                expected_bases.setdefault(name, set())
    # errors: (metric, basis or None, segment or None) -> [(index, message)]
    errors: dict[str, list[tuple[int, object]]] = defaultdict(list)
    for i, e in enumerate(results.errors):
        if e.metric:
            errors[e.metric].append((i, e))
            if e.analysis_basis:
                bases_seen.add(e.analysis_basis.value)
    metrics = {k[0] for k in present} | set(expected_bases) | set(errors)
    if not metrics:
        return None
    for name, bases in expected_bases.items():
        if not bases:  # older metadata: no analysis_bases; expect what the data has
            expected_bases[name] = set(bases_seen) or {"enrollments"}
    all_bases = ordered(bases_seen | {b for bs in expected_bases.values() for b in bs}, BASIS_ORDER)
    all_segments = ordered({s for p in periods for s in segments_in[p]}, ("all",))
    anchors = _metric_anchors(tabs)
    checks = {(c.basis, c.segment): c for c in (srm_checks or [])}

    groups: list[MapGroup] = []
    columns: list[MapColumn] = []
    col_keys: list[tuple[str, str, str]] = []  # (period, basis, segment) of each column
    for basis in all_bases:
        for seg in all_segments:
            cols = [p for p in periods if seg in segments_in[p]]
            if not cols:
                continue
            check = checks.get((basis, seg))
            text, css, title = srm_text(check) if (check is not None and srm_text) else ("", "", "no sample-ratio test (no counts for two branches)")
            groups.append(MapGroup(basis, shown(seg), segment_key(seg), len(cols), text, css, title))
            for p in cols:
                columns.append(MapColumn(p, layout.PERIOD_CODES[p], layout.PERIOD_LABELS[p], basis, segment_key(seg)))
                col_keys.append((p, basis, seg))

    rows: list[MapRow] = []
    tally: dict[str, int] = defaultdict(int)
    for metric in metric_order(metrics):
        cells = []
        stats_all: set[str] = set()
        states: set[str] = set()
        for period, basis, seg in col_keys:
            stats = present.get((metric, period, basis, seg), set())
            stats_all |= stats
            errs = [
                (i, e)
                for i, e in errors.get(metric, [])
                if (e.analysis_basis is None or e.analysis_basis.value == basis) and (e.segment is None or e.segment == seg)
            ]
            expected = basis in expected_bases.get(metric, set())
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
                title = f"{where}: analysis error: {e.exception_type or e.log_level}: {' '.join(str(e.message).split())[:200]}"
                if len(errs) > 1:
                    title += f" (and {len(errs) - 1} more)"
                href = "#" + error_anchors[i] if i < len(error_anchors) else ""
            elif expected:
                state, title, href = "missing", f"{where}: {STATE_WORDS['missing']}", ""
            else:
                state, title, href = "none", f"{where}: {STATE_WORDS['none']}", ""
            if href == "#":
                href = ""
            states.add(state)
            cells.append(MapCell(state, SYMBOLS[state], title, href, basis, segment_key(seg)))
        reason = ""
        css = ""
        if not stats_all:
            css = "no-results"
            errs = errors.get(metric, [])
            if errs:
                first = errs[0][1]
                reason = f"No results: {len(errs)} analysis error{'s' if len(errs) != 1 else ''}, e.g. {first.exception_type or first.log_level}: {' '.join(str(first.message).split())[:160]}"
            elif metric in expected_bases:
                reason = "No results in any period, and Jetstream reported no error for it (listed in the metadata)."
        elif "missing" in states:
            reason = "Missing in some cells the metadata expects, with no error reported."
        elif "error" in states or "partial" in states:
            reason = "Analysis errors in some cells."
        kind = "no-results" if not stats_all else ("errors" if states & {"error", "partial"} else ("missing" if "missing" in states else "complete"))
        tally[kind] += 1
        rows.append(
            MapRow(
                metric=shown(metric),
                name=shown(metric_name(metric)),
                search_text=shown(f"{metric} {metric_name(metric)}").lower(),
                statistic_keys=" ".join(statistic_key(s) for s in ordered(stats_all, tuple(STATISTIC_ORDER))),
                statistics=", ".join(STATISTIC_LABELS.get(s, shown(s)) for s in ordered(stats_all, tuple(STATISTIC_ORDER))),
                cells=cells,
                reason=reason,
                css=css,
            )
        )
    words = {"complete": "complete", "errors": "with analysis errors", "missing": "with expected cells missing", "no-results": "with no results at all"}
    counts = f"{len(rows)} metric{'s' if len(rows) != 1 else ''}: " + ", ".join(f"{tally[k]} {w}" for k, w in words.items() if tally[k])
    return CompletenessMap(groups, columns, rows, counts)

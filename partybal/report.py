"""Turn validated results into the typed page model the templates show and the figure specs R draws.

Pure functions: no I/O. Everything a template prints is a field of a dataclass here.
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mozilla_nimbus_schemas.jetstream import Metadata, Statistic

from . import layout
from .results import ExperimentResults, finite

R_DIR = Path(__file__).resolve().parent.parent / "r"

# Statistics whose comparisons make the summary, in order of preference.
SUMMARY_STATISTICS = ("binomial", "mean", "mean_lm", "per_client_dau_impact", "population_ratio")
# Shown as tables of values per branch (and window), never plotted.
TABLE_STATISTICS = ("count", "sum")
STATISTIC_LABELS = {
    "mean": "Mean",
    "mean_lm": "Mean (linear model adjusted)",
    "per_client_dau_impact": "Per-client DAU impact",
    "binomial": "Proportion (binomial)",
    "population_ratio": "Population ratio",
    "deciles": "Deciles",
    "kernel_density_estimate": "Kernel density estimate",
    "empirical_cdf": "Empirical CDF",
    "count": "Clients (count)",
    "sum": "Sum",
}
STATISTIC_ORDER = list(STATISTIC_LABELS)
BASIS_ORDER = ("enrollments", "exposures")
MAX_TABLE_ROWS = 400
_PLOT_FN_RE = re.compile(r"^plot_([a-z0-9_]+)\s*<-", re.M)


def plotted_statistics(r_dir: Path = R_DIR) -> frozenset[str]:
    """Statistics that have a ``plot_<statistic>`` function in r/plots.R."""
    return frozenset(_PLOT_FN_RE.findall((r_dir / "plots.R").read_text()))


# --- the page model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """A confidence interval drawn in a table cell: positions in percent of the cell width."""

    lower: float
    width: float
    point: float
    zero: float | None


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""
    bar: Bar | None = None


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    note: str = ""


@dataclass(frozen=True)
class Figure:
    number: int
    alt: str


@dataclass(frozen=True)
class StatisticBlock:
    statistic: str
    label: str
    figure: Figure | None = None
    table: Table | None = None
    note: str = ""


@dataclass(frozen=True)
class MetricBlock:
    anchor: str
    metric: str
    name: str
    description: str
    search_text: str
    statistics: list[StatisticBlock]
    pairwise: Table | None = None


@dataclass(frozen=True)
class MetricGroup:
    title: str
    description: str
    metrics: list[MetricBlock]


@dataclass(frozen=True)
class View:
    anchor: str
    period: str
    basis: str
    segment: str
    windows_label: str
    groups: list[MetricGroup]


@dataclass(frozen=True)
class PeriodTab:
    period: str
    label: str
    present: bool
    windows: int
    views: list[View]
    note: str = ""


@dataclass(frozen=True)
class SummaryRow:
    name: str
    anchor_metric: str
    cells: list[Cell]


@dataclass(frozen=True)
class Summary:
    source_label: str
    branches: list[str]
    rows: list[SummaryRow]
    populations: Table | None


@dataclass(frozen=True)
class ErrorRow:
    level: str
    css: str
    exception_type: str
    metric: str
    statistic: str
    segment: str
    basis: str
    timestamp: str
    message: str
    exception: str


@dataclass(frozen=True)
class SourceLink:
    name: str
    url: str
    updated: str


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True)
class Banner:
    title: str
    text: str


@dataclass(frozen=True)
class Page:
    slug: str
    file_slug: str
    title: str
    reference_branch: str
    reference_reason: str
    branches: list[str]
    analysis_start_time: str
    results_updated: str
    rendered_at: str
    periods_line: str
    summary: Summary | None
    tabs: list[PeriodTab]
    errors: list[ErrorRow]
    sources: list[SourceLink]
    bases: list[Option]
    segments: list[Option]
    statistics: list[Option]
    ignored: list[str]
    banner: Banner | None = None


@dataclass
class FigureSpec:
    """What R needs to draw one figure; written to plots.json."""

    number: int
    statistic: str
    metric_label: str
    reference: str
    branches: list[str]
    series: bool
    windows: list[int]
    alt: str
    rows: dict[str, list] = field(default_factory=dict)


# --- formatting ---------------------------------------------------------------------------------


def fmt_time(t: dt.datetime | None) -> str:
    if t is None:
        return "unknown"
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def fmt_num(x: float | None) -> str:
    x = finite(x)
    if x is None:
        return "—"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e6 or ax < 1e-3:
        return f"{x:.3g}"
    if ax >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def fmt_pct(x: float | None) -> str:
    x = finite(x)
    if x is None:
        return "—"
    return f"{x * 100:+.1f}%"


def fmt_ci(point, lower, upper, fmt=fmt_num) -> str:
    if finite(lower) is None and finite(upper) is None:
        return fmt(point)
    return f"{fmt(point)} [{fmt(lower)}, {fmt(upper)}]"


def significance(lower: float | None, upper: float | None, bigger_is_better: bool) -> str:
    """'good', 'bad' or 'neutral' for a relative uplift CI."""
    lower, upper = finite(lower), finite(upper)
    if lower is not None and lower > 0:
        return "good" if bigger_is_better else "bad"
    if upper is not None and upper < 0:
        return "bad" if bigger_is_better else "good"
    return "neutral"


def interval_scale(rows) -> tuple[float, float] | None:
    """The [low, high] range that holds every interval (and 0) of a column."""
    values = [0.0]
    for r in rows:
        if r is not None:
            values.extend(v for v in (finite(r.lower), finite(r.upper), finite(r.point)) if v is not None)
    low, high = min(values), max(values)
    return (low, high) if high > low else None


def bar_for(r: Statistic, scale: tuple[float, float] | None) -> Bar | None:
    point, lower, upper = finite(r.point), finite(r.lower), finite(r.upper)
    if scale is None or point is None:
        return None
    low, high = scale

    def pos(v: float) -> float:
        return round((v - low) / (high - low) * 100, 2)

    lo = pos(lower if lower is not None else point)
    hi = pos(upper if upper is not None else point)
    return Bar(lower=lo, width=round(max(hi - lo, 0.0), 2), point=pos(point), zero=pos(0.0) if low <= 0 <= high else None)


def anchor(*parts: str) -> str:
    """A DOM id made from our own keys; data-derived parts are reduced to [a-z0-9-]."""
    text = "-".join(parts).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "x"


# --- reading the rows ---------------------------------------------------------------------------


def window_of(row: Statistic) -> int:
    try:
        return int(row.window_index) if row.window_index is not None else 1
    except ValueError:
        return 1


def basis_of(row: Statistic) -> str:
    return row.analysis_basis.value if row.analysis_basis is not None else "enrollments"


def choose_reference(results: ExperimentResults) -> tuple[str, str]:
    md = results.metadata
    if md and md.external_config and md.external_config.reference_branch:
        return md.external_config.reference_branch, "set in the experiment's analysis configuration"
    branches = set()
    compared_to: Counter[str] = Counter()
    for rows in results.statistics.values():
        for r in rows:
            branches.add(r.branch)
            if r.comparison_to_branch:
                compared_to[r.comparison_to_branch] += 1
    if "control" in branches:
        return "control", "the branch named control"
    if compared_to:
        # most compared-against first; ties broken by name so the choice is stable
        best = sorted(compared_to.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        return best, "the branch most comparisons are made against"
    if branches:
        return sorted(branches)[0], "the only comparison point available (no comparisons in the data)"
    return "control", "no branches in the data"


def ordered(values, first: tuple[str, ...] = ()) -> list[str]:
    vals = set(values)
    return [v for v in first if v in vals] + sorted(vals - set(first))


def comparison_of(row: Statistic, reference: str) -> str | None:
    """'absolute', 'relative_uplift' or 'difference' for rows against the reference; None for
    pairwise comparisons to other branches."""
    if row.comparison is None:
        return "absolute"
    if row.comparison_to_branch in (None, reference):
        return row.comparison
    return None


class _Metrics:
    """Friendly names, descriptions and directions from metadata, with fallbacks."""

    def __init__(self, md: Metadata | None):
        self.md = md

    def name(self, metric: str) -> str:
        m = self.md.metrics.get(metric) if self.md else None
        return (m.friendly_name if m and m.friendly_name else None) or metric

    def description(self, metric: str) -> str:
        m = self.md.metrics.get(metric) if self.md else None
        return (m.description if m and m.description else "") or ""

    def bigger_is_better(self, metric: str) -> bool:
        m = self.md.metrics.get(metric) if self.md else None
        return m.bigger_is_better if m is not None else True

    def order(self, metrics) -> list[str]:
        known = list(self.md.metrics) if self.md else []
        return [m for m in known if m in metrics] + sorted(set(metrics) - set(known))

    def groups(self, metrics: list[str]) -> list[tuple[str, str, list[str]]]:
        """(title, description, metrics) per outcome, then the rest."""
        out = []
        used: set[str] = set()
        if self.md:
            for outcome in self.md.outcomes.values():
                members = [m for m in metrics if m in outcome.metrics]
                if members:
                    out.append((f"Outcome: {outcome.friendly_name}", outcome.description, members))
                    used.update(members)
        rest = [m for m in metrics if m not in used]
        if rest:
            out.append(("Other metrics" if out else "Metrics", "", rest))
        return out


# --- building -----------------------------------------------------------------------------------


class _Builder:
    def __init__(self, results: ExperimentResults, plotted: frozenset[str]):
        self.results = results
        self.plotted = plotted
        self.metrics = _Metrics(results.metadata)
        self.reference, self.reference_reason = choose_reference(results)
        all_branches = {r.branch for rows in results.statistics.values() for r in rows}
        self.branches = ordered(all_branches, (self.reference,))
        self.figures: list[FigureSpec] = []

    # one (period, basis, segment) view
    def view(self, period: str, basis: str, segment: str, rows: list[Statistic]) -> View:
        windows = sorted({window_of(r) for r in rows})
        series = len(windows) > 1
        by_metric: dict[str, dict[str, list[Statistic]]] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            by_metric[r.metric][r.statistic].append(r)
        view_anchor = anchor(period, basis, segment)
        blocks: dict[str, MetricBlock] = {}
        for metric in by_metric:
            blocks[metric] = self.metric_block(
                view_anchor, period, basis, segment, metric, by_metric[metric], windows, series
            )
        ordered_metrics = self.metrics.order(by_metric)
        groups = [
            MetricGroup(title, desc, [blocks[m] for m in members])
            for title, desc, members in self.metrics.groups(ordered_metrics)
        ]
        wl = f"{len(windows)} window{'s' if len(windows) != 1 else ''}" if period != "overall" else ""
        return View(view_anchor, period, basis, segment, wl, groups)

    def metric_block(self, view_anchor, period, basis, segment, metric, by_stat, windows, series) -> MetricBlock:
        name = self.metrics.name(metric)
        blocks = []
        pairwise_rows: list[Statistic] = []
        for stat in ordered(by_stat, tuple(STATISTIC_ORDER)):
            rows = by_stat[stat]
            ref_rows = [(comparison_of(r, self.reference), r) for r in rows]
            pairwise_rows.extend(r for c, r in ref_rows if c is None)
            mine = [(c, r) for c, r in ref_rows if c is not None]
            label = STATISTIC_LABELS.get(stat, stat)
            if stat in TABLE_STATISTICS:
                blocks.append(StatisticBlock(stat, label, table=self.value_table(mine, windows)))
            elif stat in SUMMARY_STATISTICS and not series:
                # One window: a table with the intervals drawn in it says it all, and costs no plot.
                blocks.append(StatisticBlock(stat, label, table=self.ci_table(mine, self.metrics.bigger_is_better(metric))))
            elif stat in self.plotted:
                fig = self.figure(stat, name, mine, windows, series, period, basis, segment)
                blocks.append(StatisticBlock(stat, label, figure=fig))
            else:
                blocks.append(
                    StatisticBlock(
                        stat,
                        label,
                        table=self.raw_table(rows),
                        note="partybal has no plot for this statistic yet; its rows are shown as a table.",
                    )
                )
        pairwise = self.pairwise_table(pairwise_rows) if pairwise_rows and not series else None
        return MetricBlock(
            anchor=anchor(view_anchor, "m", metric) + f"-{zlib.crc32(metric.encode()):08x}",
            metric=metric,
            name=name,
            description=self.metrics.description(metric),
            search_text=f"{metric} {name}".lower(),
            statistics=blocks,
            pairwise=pairwise,
        )

    def figure(self, stat, metric_name, rows, windows, series, period, basis, segment) -> Figure:
        number = len(self.figures) + 1
        cols: dict[str, list] = {k: [] for k in ("branch", "comparison", "window", "parameter", "point", "lower", "upper")}
        for comparison, r in rows:
            cols["branch"].append(r.branch)
            cols["comparison"].append(comparison)
            cols["window"].append(window_of(r))
            cols["parameter"].append(finite(r.parameter))
            cols["point"].append(finite(r.point))
            cols["lower"].append(finite(r.lower))
            cols["upper"].append(finite(r.upper))
        alt = (
            f"{STATISTIC_LABELS.get(stat, stat)} of {metric_name}, {layout.PERIOD_LABELS[period].lower()}, "
            f"{basis}, segment {segment}, by branch"
        )
        branches = ordered({r.branch for _, r in rows}, (self.reference,))
        self.figures.append(
            FigureSpec(number, stat, metric_name, self.reference, branches, series, windows, alt, cols)
        )
        return Figure(number, alt)

    def value_table(self, rows, windows) -> Table:
        values: dict[str, dict[int, Statistic]] = defaultdict(dict)
        for c, r in rows:
            if c == "absolute":
                values[r.branch][window_of(r)] = r
        columns = ["Branch"] + (["Value"] if len(windows) == 1 else [f"Window {w}" for w in windows])
        body = []
        for b in ordered(values, (self.reference,)):
            cells = [Cell(b)]
            for w in windows:
                r = values[b].get(w)
                cells.append(Cell(fmt_num(r.point) if r else "—", "num"))
            body.append(cells)
        return Table(columns, body)

    def ci_table(self, rows, bigger_is_better: bool) -> Table:
        """Value, uplift and difference per branch with their intervals, drawn as bars."""
        by_branch: dict[str, dict[str, Statistic]] = defaultdict(dict)
        for c, r in rows:
            by_branch[r.branch][c] = r
        columns = (("absolute", fmt_num), ("relative_uplift", fmt_pct), ("difference", fmt_num))
        scales = {comp: interval_scale(d.get(comp) for d in by_branch.values()) for comp, _ in columns}
        body = []
        for b in ordered(by_branch, (self.reference,)):
            d = by_branch[b]
            cells = [Cell(b)]
            for comp, fmt in columns:
                r = d.get(comp)
                if r is None:
                    cells.append(Cell("—", "num"))
                    continue
                css = "num" if comp == "absolute" else "num " + significance(r.lower, r.upper, bigger_is_better)
                cells.append(Cell(fmt_ci(r.point, r.lower, r.upper, fmt), css, bar_for(r, scales[comp])))
            body.append(cells)
        return Table(
            ["Branch", "Value [95% CI]", f"Relative uplift vs {self.reference}", f"Difference vs {self.reference}"], body
        )

    def pairwise_table(self, rows: list[Statistic]) -> Table:
        body = [
            [
                Cell(STATISTIC_LABELS.get(r.statistic, r.statistic)),
                Cell(r.branch),
                Cell(r.comparison_to_branch or ""),
                Cell(r.comparison or ""),
                Cell(fmt_num(r.parameter) if r.parameter is not None else ""),
                Cell(
                    fmt_ci(r.point, r.lower, r.upper, fmt_pct if r.comparison == "relative_uplift" else fmt_num),
                    "num",
                ),
            ]
            for r in rows[:MAX_TABLE_ROWS]
        ]
        note = f"First {MAX_TABLE_ROWS} of {len(rows)} rows." if len(rows) > MAX_TABLE_ROWS else ""
        return Table(["Statistic", "Branch", "Compared to", "Comparison", "Parameter", "Estimate [CI]"], body, note)

    def raw_table(self, rows: list[Statistic]) -> Table:
        body = [
            [
                Cell(r.branch),
                Cell(r.comparison or "value"),
                Cell(r.comparison_to_branch or ""),
                Cell(r.window_index or ""),
                Cell(fmt_num(r.parameter) if r.parameter is not None else ""),
                Cell(fmt_num(r.point), "num"),
                Cell(fmt_num(r.lower), "num"),
                Cell(fmt_num(r.upper), "num"),
            ]
            for r in rows[:MAX_TABLE_ROWS]
        ]
        note = f"First {MAX_TABLE_ROWS} of {len(rows)} rows." if len(rows) > MAX_TABLE_ROWS else ""
        return Table(["Branch", "Comparison", "Compared to", "Window", "Parameter", "Point", "Lower", "Upper"], body, note)

    # the summary at the top
    def summary(self) -> Summary | None:
        stats = self.results.statistics
        if stats.get("overall"):
            rows, label = stats["overall"], "overall period"
        elif stats.get("weekly"):
            latest = max(window_of(r) for r in stats["weekly"])
            rows = [r for r in stats["weekly"] if window_of(r) == latest]
            label = f"weekly period, latest window ({latest})"
        else:
            return None
        bases = {basis_of(r) for r in rows}
        basis = "enrollments" if "enrollments" in bases else (sorted(bases)[0] if bases else "enrollments")
        rows = [r for r in rows if r.segment == "all" and basis_of(r) == basis]
        label += f", {basis}, segment all"
        uplift: dict[str, dict[str, dict[str, Statistic]]] = defaultdict(lambda: defaultdict(dict))
        counts: dict[str, Statistic] = {}
        for r in rows:
            if r.statistic == "count" and r.comparison is None:
                counts[r.branch] = r
            elif (
                r.statistic in SUMMARY_STATISTICS
                and r.comparison == "relative_uplift"
                and r.comparison_to_branch in (None, self.reference)
            ):
                uplift[r.metric][r.statistic][r.branch] = r
        others = [b for b in self.branches if b != self.reference]
        body = []
        for metric in self.metrics.order(uplift):
            stat = next(s for s in SUMMARY_STATISTICS if s in uplift[metric])
            cells = []
            for b in others:
                r = uplift[metric][stat].get(b)
                if r is None:
                    cells.append(Cell("—", "neutral"))
                else:
                    css = significance(r.lower, r.upper, self.metrics.bigger_is_better(metric))
                    cells.append(Cell(fmt_ci(r.point, r.lower, r.upper, fmt_pct), css))
            body.append(SummaryRow(self.metrics.name(metric), metric, cells))
        populations = None
        if counts:
            total = sum(finite(c.point) or 0 for c in counts.values())
            populations = Table(
                ["Branch", "Clients", "Share"],
                [
                    [
                        Cell(b),
                        Cell(fmt_num(counts[b].point), "num"),
                        Cell(f"{(finite(counts[b].point) or 0) / total * 100:.1f}%" if total else "—", "num"),
                    ]
                    for b in ordered(counts, (self.reference,))
                ],
            )
        return Summary(label, others, body, populations)


def build_page(
    results: ExperimentResults,
    *,
    plotted: frozenset[str] | None = None,
    rendered_at: dt.datetime | None = None,
    banner: Banner | None = None,
) -> tuple[Page, list[FigureSpec]]:
    """The page model and the figures R must draw for it."""
    b = _Builder(results, plotted if plotted is not None else plotted_statistics())
    tabs: list[PeriodTab] = []
    bases: set[str] = set()
    segments: set[str] = set()
    statistics: set[str] = set()
    for period in layout.PERIODS:
        label = layout.PERIOD_LABELS[period]
        if period not in results.statistics:
            tabs.append(PeriodTab(period, label, False, 0, [], note=f"No {label.lower()} results have been published."))
            continue
        rows = results.statistics[period]
        groups: dict[tuple[str, str], list[Statistic]] = defaultdict(list)
        for r in rows:
            groups[(basis_of(r), r.segment)].append(r)
            statistics.add(r.statistic)
        keys = sorted(groups, key=lambda k: (ordered({k[0]} | set(BASIS_ORDER), BASIS_ORDER).index(k[0]), k[1] != "all", k[1]))
        views = [b.view(period, basis, seg, groups[(basis, seg)]) for basis, seg in keys]
        bases.update(k[0] for k in keys)
        segments.update(k[1] for k in keys)
        n_windows = len({window_of(r) for r in rows})
        note = "" if rows else f"The {label.lower()} results file is empty."
        tabs.append(PeriodTab(period, label, True, n_windows, views, note=note))
    present = [
        f"{t.label} ({t.windows} window{'s' if t.windows != 1 else ''})" if t.period != "overall" else t.label
        for t in tabs
        if t.present
    ]
    missing = [t.label for t in tabs if not t.present]
    periods_line = "Available: " + (", ".join(present) or "none")
    if missing:
        periods_line += ". Not available: " + ", ".join(missing)
    md = results.metadata
    errors = [
        ErrorRow(
            level=e.log_level,
            css=e.log_level.lower() if e.log_level.lower() in ("error", "warning", "critical", "info") else "",
            exception_type=e.exception_type or "",
            metric=e.metric or "",
            statistic=e.statistic or "",
            segment=e.segment or "",
            basis=e.analysis_basis.value if e.analysis_basis else "",
            timestamp=fmt_time(e.timestamp),
            message=e.message,
            exception=e.exception or "",
        )
        for e in results.errors
    ]
    page = Page(
        slug=results.slug,
        file_slug=results.file_slug,
        title=results.slug,
        reference_branch=b.reference,
        reference_reason=b.reference_reason,
        branches=b.branches,
        analysis_start_time=fmt_time(md.analysis_start_time) if md and md.analysis_start_time else "unknown",
        results_updated=fmt_time(results.updated),
        rendered_at=fmt_time(rendered_at or dt.datetime.now(dt.timezone.utc)),
        periods_line=periods_line,
        summary=b.summary(),
        tabs=tabs,
        errors=errors,
        sources=[SourceLink(f.name, f.url, fmt_time(f.updated)) for f in sorted(results.files, key=lambda f: f.name)],
        bases=[Option(x, x.capitalize()) for x in ordered(bases, BASIS_ORDER)],
        segments=[Option(x, x) for x in ordered(segments, ("all",))],
        statistics=[Option(x, STATISTIC_LABELS.get(x, x)) for x in ordered(statistics, tuple(STATISTIC_ORDER))],
        ignored=[f"{name} ({why})" for name, why in results.ignored],
        banner=banner,
    )
    return page, b.figures

"""Turn validated results into the typed page model the templates show and the figure specs R draws.

Pure functions: no I/O. Everything a template prints is a field of a dataclass here.
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from mozilla_nimbus_schemas.jetstream import Metadata, Statistic

from .. import layout
from ..times import fmt_time
from .exports import ExportRow
from .results import ExperimentResults, finite, out_of_bounds, pct

R_DIR = Path(__file__).resolve().parents[2] / "r"

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
    csv: str = ""  # link to the CSV of its numbers (exports.py); "" when not exported


@dataclass(frozen=True)
class Figure:
    number: int
    alt: str
    csv: str = ""  # link to the CSV of exactly the rows R drew (exports.py)


@dataclass(frozen=True)
class StatisticBlock:
    statistic: str
    label: str
    figure: Figure | None = None
    table: Table | None = None
    note: str = ""
    key: str = ""  # the statistic filter's value (unique, safe in HTML)


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
    segment_key: str = "all"  # the filter's value for this segment (unique, safe in HTML)


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
    ci_label: str = "confidence intervals"  # e.g. "95% confidence intervals", from the rows
    csv: str = ""  # link to the CSV of the uplift table's numbers


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
    anchor: str = ""  # the row's id, linked from the completeness map


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

    @classmethod
    def preview(cls, source: str, rendered_at: dt.datetime) -> Banner:
        """The banner of a preview page (expires with the bucket's preview lifecycle rule)."""
        days = layout.PREVIEW_EXPIRY_DAYS
        expires = (rendered_at + dt.timedelta(days=days)).astimezone(dt.UTC)
        return cls(
            title="Preview — not final results.",
            text=(
                f"Rendered from {source} on {rendered_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC; "
                f"this preview expires on {expires:%Y-%m-%d} ({days} days)."
            ),
        )


# --- sample-ratio mismatch and the completeness map (built by srm.py / completeness.py) ---------


@dataclass(frozen=True)
class SrmShare:
    branch: str
    clients: str
    observed: str  # "52.1%"
    expected: str
    css: str = ""  # "off" when the branch is over- or under-represented by more than 1 point


@dataclass(frozen=True)
class SrmResult:
    """One sample-ratio test (one basis and segment) as the page shows it."""

    basis: str
    segment: str
    segment_key: str
    source: str
    shares_from: str
    p_text: str  # "p = 2.1e-09"
    mismatch: bool
    shares: list[SrmShare]
    summary: str  # "control 52.1% (expected 50.0%), treatment 47.9% (expected 50.0%)"


@dataclass(frozen=True)
class SrmSection:
    """The page's sample-ratio check: the tests of segment ``all``, one per analysis basis."""

    mismatch: bool  # any of ``results`` failed: the page opens with a warning
    results: list[SrmResult]
    meaning: str

    @property
    def failed(self) -> list[SrmResult]:
        return [r for r in self.results if r.mismatch]


@dataclass(frozen=True)
class MapGroup:
    """Columns of one (analysis basis, segment) in the completeness map, one per period."""

    basis: str
    segment: str
    segment_key: str
    span: int
    srm_text: str
    srm_css: str  # "srm-ok", "srm-mismatch" or "" (no test)
    srm_title: str


@dataclass(frozen=True)
class MapColumn:
    period: str
    code: str
    label: str
    basis: str
    segment_key: str


@dataclass(frozen=True)
class MapCell:
    state: str  # "results", "partial", "error", "missing", "none"
    symbol: str
    title: str
    href: str
    basis: str
    segment_key: str


@dataclass(frozen=True)
class MapRow:
    metric: str
    name: str
    search_text: str
    statistic_keys: str  # space-separated statistic filter values present anywhere
    statistics: str  # their labels
    cells: list[MapCell]
    reason: str
    css: str  # "no-results" when the metric has no rows anywhere


@dataclass(frozen=True)
class CompletenessMap:
    groups: list[MapGroup]
    columns: list[MapColumn]
    rows: list[MapRow]
    counts: str  # "12 metrics: 10 with results everywhere expected, 1 with errors, 1 missing"


# --- experiment context from Experimenter (partybal/pipeline/experimenter.py) ----------------------------


@dataclass(frozen=True)
class ContextBranch:
    slug: str
    ratio: str  # "1"
    share: str  # "50%"
    reference: bool


@dataclass(frozen=True)
class ContextFact:
    label: str
    value: str


@dataclass(frozen=True)
class ExperimentContext:
    """The page header's Experimenter part; ``found`` False: only ``note`` (why there is none)."""

    found: bool
    note: str = ""
    name: str = ""
    description: str = ""
    facts: list[ContextFact] = field(default_factory=list)
    branches: list[ContextBranch] = field(default_factory=list)
    reference_note: str = ""  # Experimenter's reference branch disagrees with the analysis's
    url: str = ""


# --- render history (partybal/pipeline/history.py): what changed since the previous render ----


@dataclass(frozen=True)
class Change:
    # css class: window, better, worse, unclear, significant, metric-added, metric-removed, error-new,
    # error-cleared, config
    kind: str
    text: str


@dataclass(frozen=True)
class ChangeGroup:
    title: str
    changes: list[Change]


@dataclass(frozen=True)
class Changes:
    """The page's "Changes since <previous render>" (``first``: there is no earlier render)."""

    first: bool
    since: str = ""  # when the previous render was made ("2026-11-25 04:10 UTC")
    since_href: str = ""  # its summary
    groups: list[ChangeGroup] = field(default_factory=list)
    note: str = ""  # "Nothing changed …", "… and 12 more"


@dataclass(frozen=True)
class HistoryEntry:
    """One render of this experiment in the History section (newest first)."""

    rendered_at: str
    render_id: str
    href: str  # its summary (JSON)
    summary: str  # "first render", "2 significance changes, 1 new window", "no changes"
    current: bool = False


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
    reference_known: bool = True
    compared_to: str = ""  # the branch comparisons are shown against (the reference when known)
    reference_notes: list[str] = field(default_factory=list)
    data_notes: list[str] = field(default_factory=list)  # how older or odd files were read
    problems: Table | None = None  # rows that cannot be shown as clean
    srm: SrmSection | None = None  # the sample-ratio check (None: no counts for two branches)
    context: ExperimentContext | None = None  # from Experimenter (None: not looked up)
    completeness: CompletenessMap | None = None
    manifest: str = ""  # link to the render's manifest.json ("" when the page is not built by a render)
    changes: Changes | None = None  # since the previous render (None: no history kept, e.g. partybal render)
    history: list[HistoryEntry] = field(default_factory=list)
    history_note: str = ""  # "12 earlier renders not listed" / how long summaries are kept


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
    # How to draw it and how big, from its content (figure_layout); computed when not given.
    layout: str = ""
    width: float = 0.0
    height: float = 0.0
    legend_rows: int = 1
    caption: str = ""
    # What the rows are (metric, period, basis, segment, labels, raw branch names by label): the
    # figure's CSV export is written from rows + context (exports.figure_rows); R does not read it.
    context: dict = field(default_factory=dict)
    # Segments side by side (one column each, in this order; rows carry a ``segment`` column):
    # one figure for every segment view of a basis (SEGMENT_COLUMNS). Empty: one segment.
    segments: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.layout or self.height <= 0:
            self.layout, self.width, self.height, self.legend_rows = figure_layout(
                self.statistic, self.reference, self.branches, self.windows, self.series, len(self.segments)
            )
            # caption lines under the plot: the given caption, and the small multiples' key
            lines = (1 if self.caption else 0) + (
                1 if self.layout in ("small-multiples", "segments-small-multiples") else 0
            )
            self.height = round(self.height + 0.2 * lines, 2)


# --- figure layout: a figure's size follows its content ---------------------------------------

FIGURE_WIDTH_IN = 8.5
INTERVAL_STATISTICS = ("mean", "mean_lm", "per_client_dau_impact", "binomial", "population_ratio")
DISTRIBUTION_STATISTICS = ("kernel_density_estimate", "empirical_cdf")
# Above these, a series of intervals is drawn as lines + ribbons in one small multiple per branch.
DODGE_MAX_WINDOWS = 8
DODGE_MAX_COMPARED = 3
# A series of intervals in a basis with 2 to this many segments is one figure with a column per
# segment, shown in each segment's view (drawn once instead of once per segment).
SEGMENT_COLUMNS = 4
# Distribution figures of a series draw at most this many windows (first, latest, evenly between).
SHOWN_WINDOWS = {"deciles": 4, "kernel_density_estimate": 8, "empirical_cdf": 8}
# ... and with the segments of a basis side by side (a column each): fewer rows of windows.
SHOWN_WINDOWS_SEGMENTS = {"deciles": 2, "kernel_density_estimate": 4, "empirical_cdf": 4}


def shown_windows(statistic: str, windows: list[int], limits: dict[str, int] | None = None) -> list[int]:
    """The windows a figure draws: all of them, except for distributions of a long series."""
    limit = (SHOWN_WINDOWS if limits is None else limits).get(statistic)
    if limit is None or len(windows) <= limit:
        return list(windows)
    idx = sorted({round(i * (len(windows) - 1) / (limit - 1)) for i in range(limit)})
    return [windows[i] for i in idx]


def legend_rows(branches: list[str], width: float = FIGURE_WIDTH_IN) -> int:
    """Rows a bottom legend of these branch names needs at ``width`` inches (11 pt text)."""
    if not branches:
        return 1
    entry = 0.45 + 0.085 * max(len(b) for b in branches)  # key + the longest label, inches
    per_row = max(1, int((width - 0.6) // entry))
    return -(-len(branches) // per_row)


def figure_layout(
    statistic: str, reference: str, branches: list[str], windows: list[int], series: bool, segments: int = 1
) -> tuple[str, float, float, int]:
    """(layout, width, height in inches, legend rows) for one figure, from what it shows.
    ``segments`` > 1: a series with one column per segment (``segments-*`` layouts)."""
    n_windows = len(windows)
    rows = legend_rows(branches)
    legend = 0.25 * rows + 0.2
    if statistic in INTERVAL_STATISTICS or statistic not in (*DISTRIBUTION_STATISTICS, "deciles"):
        if not series:
            return "intervals", FIGURE_WIDTH_IN, round(max(2.2, 0.9 + 0.45 * len(branches)), 2), rows
        compared = [b for b in branches if b != reference] or list(branches)
        if segments > 1:
            # rows: the values, then the uplift (all compared branches side by side in a short
            # series; one row per compared branch in a long one); one column per segment
            if n_windows <= DODGE_MAX_WINDOWS and len(compared) <= DODGE_MAX_COMPARED:
                return "segments-dodged", FIGURE_WIDTH_IN, round(1.0 + 2 * 1.6 + legend, 2), rows
            per_row = 1.3 if len(compared) <= 3 else 1.1
            return (
                "segments-small-multiples",
                FIGURE_WIDTH_IN,
                round(1.0 + per_row * (1 + len(compared)) + legend, 2),
                rows,
            )
        if n_windows <= DODGE_MAX_WINDOWS and len(compared) <= DODGE_MAX_COMPARED:
            return "dodged", FIGURE_WIDTH_IN, round(3.0 + legend, 2), rows
        per_row = 1.6 if len(compared) <= 3 else 1.25
        return "small-multiples", FIGURE_WIDTH_IN, round(1.0 + per_row * len(compared), 2), 0
    if segments > 1:  # distributions: a row per window (deciles: values and uplift), a column per segment
        per_window = 2 if statistic == "deciles" else 1
        n_rows = per_window * (n_windows if series else 1)
        return "lines", FIGURE_WIDTH_IN, round(0.9 + 1.5 * n_rows + legend, 2), rows
    if statistic == "deciles":
        panels = n_windows if series else 1
        return "lines", FIGURE_WIDTH_IN, round(0.7 + (1.7 if series else 2.6) * panels + legend, 2), rows
    grid_rows = -(-n_windows // 4) if series else 1
    return "lines", FIGURE_WIDTH_IN, round(0.7 + (1.9 if series else 3.0) * grid_rows + legend, 2), rows


# --- formatting ---------------------------------------------------------------------------------


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


OUT_OF_BOUNDS = "⚠ estimate outside its interval"


def problem_cell() -> Cell:
    return Cell("conflicting rows: not shown (see Data problems)", "num problem")


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
    return Bar(
        lower=lo, width=round(max(hi - lo, 0.0), 2), point=pos(point), zero=pos(0.0) if low <= 0 <= high else None
    )


def anchor(*parts: str) -> str:
    """A DOM id made from our own keys; data-derived parts are reduced to [a-z0-9-] and cut to
    a readable length. Not unique by itself (``Control`` and ``control`` give the same): ids on a
    page come from :class:`_Ids`, which makes them unique."""
    text = "-".join(parts).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:80].strip("-") or "x"


class _Ids:
    """Unique element ids for one page: a readable base, a hash of the exact name when the base
    lost information, and a counter if even that repeats."""

    def __init__(self):
        self.used: set[str] = set()

    def __call__(self, *parts: str, exact: str | None = None) -> str:
        base = anchor(*parts)
        if exact is not None and anchor(exact) != exact:
            base += f"-{zlib.crc32(exact.encode('utf-8', 'surrogatepass')):08x}"
        out, n = base, 1
        while out in self.used:
            n += 1
            out = f"{base}-{n}"
        self.used.add(out)
        return out


# C0 controls, DEL and C1 controls shown as visible symbols or escapes; lone surrogates (JSON can
# carry them) as escapes. Everything else, whatever script, is shown as it is.
_VISIBLE = {i: chr(0x2400 + i) for i in range(0x20)} | {0x7F: "\u2421"} | {i: f"\\x{i:02x}" for i in range(0x80, 0xA0)}


# In figures, control characters become ASCII escapes (R's fonts have no control pictures).
_ESCAPED = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def shown(text: object, table: dict = _VISIBLE) -> str:
    """A name from the data as the page prints it: faithful, but every control character visible
    (a NUL, a newline or an escape sequence in a branch name must neither vanish nor act)."""
    text = str(text)
    if text.isprintable():
        return text
    out = text.translate(table)
    if any("\ud800" <= ch <= "\udfff" for ch in out):
        out = "".join(f"\\u{ord(ch):04x}" if "\ud800" <= ch <= "\udfff" else ch for ch in out)
    return out


class _Keys:
    """Filter values for names from the data: the name itself when it is plain, else a unique
    key (names differing by case, non-ASCII letters or control characters never share one)."""

    def __init__(self, fixed: tuple[str, ...] = ()):
        self.keys: dict[str, str] = {}
        self.used: set[str] = set(fixed)

    def __call__(self, value: str) -> str:
        if value in self.keys:
            return self.keys[value]
        key = value if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value) and value not in self.used else None
        if key is None:
            base = "k-" + f"{zlib.crc32(value.encode('utf-8', 'surrogatepass')):08x}"
            key, n = base, 1
            while key in self.used:
                n += 1
                key = f"{base}-{n}"
        self.used.add(key)
        self.keys[value] = key
        return key


def ci_label(rows) -> str:
    """What the intervals of these rows are, from their ci_width: "95% CI", "CI, level not
    stated", or for mixed levels "CI (90%, 95%)"."""
    widths = {r.ci_width for r in rows if r is not None and (r.lower is not None or r.upper is not None)}
    if not widths:
        return "CI"
    if len(widths) == 1:
        (w,) = widths
        return f"{pct(w)} CI" if w is not None else "CI, level not stated"
    return "CI (" + ", ".join(sorted(pct(w) for w in widths)) + ")"


def shown_unique(values) -> dict[str, str]:
    """name -> name as a figure shows it, distinct for distinct names (figures key branches by
    their label)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for v in values:
        label = shown(v, _ESCAPED)
        n = 1
        while label in taken:
            n += 1
            label = f"{shown(v, _ESCAPED)} ({n})"
        taken.add(label)
        out[v] = label
    return out


# --- reading the rows ---------------------------------------------------------------------------


_WINDOWS: dict[str | None, int] = {None: 1}  # window_index text -> window number (called per row, often)
_WINDOWS_CACHED = 10_000


def window_of(row: Statistic) -> int:
    """The row's window as a number; 1 when it has none or it is not a number."""
    w = row.window_index
    try:
        return _WINDOWS[w]
    except KeyError:
        pass
    try:
        n = int(w)
    except ValueError:
        n = 1
    if len(_WINDOWS) < _WINDOWS_CACHED:
        _WINDOWS[w] = n
    return n


def basis_of(row: Statistic) -> str:
    basis = row.analysis_basis
    return basis._value_ if basis is not None else "enrollments"  # _value_: .value without the descriptor


def _group(period: str, r: Statistic) -> tuple:
    return (period, r.metric, r.statistic, r.segment, basis_of(r), window_of(r))


class Targets:
    """The branch each comparison row is against: its ``comparison_to_branch``, or for rows
    without one (older output) the branch the others were compared to, which has no comparison
    rows of its own: within the row's own estimate group when that tells, else experiment-wide."""

    def __init__(self, statistics: dict[str, list[Statistic]]):
        self.implied: dict[tuple, str] = {}
        self.global_implied: str | None = None
        self.unstated = any(
            r.comparison is not None and not r.comparison_to_branch for rows in statistics.values() for r in rows
        )
        if self.unstated:
            self._imply(statistics)
        # target -> branches compared to it
        self.compared: dict[str, set[str]] = defaultdict(set)
        cmp_stats: set[str] = set()
        for period, rows in statistics.items():
            for r in rows:
                if r.comparison is not None:
                    cmp_stats.add(r.statistic)
                    t = self.of(period, r)
                    if t is not None:
                        self.compared[t].add(r.branch)
        # every branch with rows of a statistic that makes comparisons
        self.comparable = {r.branch for rows in statistics.values() for r in rows if r.statistic in cmp_stats}

    def _imply(self, statistics: dict[str, list[Statistic]]) -> None:
        """The target of each estimate group whose comparison rows do not name one: the one branch
        of the group without comparison rows, else the one such branch experiment-wide."""
        plain: dict[tuple, set[str]] = defaultdict(set)
        compared: dict[tuple, set[str]] = defaultdict(set)
        needs: set[tuple] = set()
        in_stats: set[str] = set()
        with_cmp: set[str] = set()
        cmp_stats = {r.statistic for rows in statistics.values() for r in rows if r.comparison is not None}
        for period, rows in statistics.items():
            for r in rows:
                g = _group(period, r)
                if r.comparison is None:
                    plain[g].add(r.branch)
                else:
                    compared[g].add(r.branch)
                    with_cmp.add(r.branch)
                    if not r.comparison_to_branch:
                        needs.add(g)
                if r.statistic in cmp_stats:
                    in_stats.add(r.branch)
        candidates = in_stats - with_cmp
        self.global_implied = next(iter(candidates)) if len(candidates) == 1 else None
        for g in needs:
            local = plain[g] - compared[g]
            target = next(iter(local)) if len(local) == 1 else self.global_implied
            if target is not None:
                self.implied[g] = target

    def of(self, period: str, r: Statistic) -> str | None:
        """The branch a comparison row is against (None: the data does not tell)."""
        if r.comparison_to_branch:
            return r.comparison_to_branch
        if not self.unstated:
            return None
        return self.implied.get(_group(period, r))


@dataclass(frozen=True)
class Reference:
    """The reference branch and how it was decided.

    ``branch`` is the reference when it is known; ``shown`` the branch comparisons on the page are
    shown against (the reference, or when it cannot be told, one branch the data compares others
    to, named as such); ``reason`` says how, ``notes`` what did not match."""

    branch: str | None
    shown: str | None
    reason: str
    notes: tuple[str, ...] = ()


def choose_reference(results: ExperimentResults, targets: Targets | None = None) -> Reference:
    """Metadata's reference (exactly, then ignoring case); else what the comparison rows say;
    else a branch named control; else the page says it cannot tell."""
    targets = targets or Targets(results.statistics)
    branches = {r.branch for rows in results.statistics.values() for r in rows}
    notes: list[str] = []
    md = results.metadata
    configured = (
        md.external_config.reference_branch if md and md.external_config else None
    ) or results.legacy_reference_branch
    if configured:
        chosen = _configured_reference(configured, branches, targets, notes)
        if chosen is not None:
            return chosen
    return _reference_from_data(branches, targets, tuple(notes))


def _configured_reference(configured: str, branches: set[str], targets: Targets, notes: list[str]) -> Reference | None:
    """The reference the analysis configuration names, exactly or ignoring case; None (and a
    note in ``notes``) when no rows have that branch."""
    why = "set in the experiment's analysis configuration (metadata)"
    if configured in branches or not branches:
        return Reference(configured, configured, why, _check_config(configured, targets))
    folded = [b for b in branches if b.casefold() == configured.casefold()]
    if len(folded) == 1:
        b = folded[0]
        notes.append(
            f"The analysis configuration names the reference branch “{shown(configured)}”; "
            f"the data spells it “{shown(b)}”, which is used."
        )
        return Reference(b, b, why + ", matched ignoring case", tuple(notes) + _check_config(b, targets))
    notes.append(
        f"The analysis configuration names the reference branch “{shown(configured)}”, but no rows have that branch."
    )
    return None


def _reference_from_data(branches: set[str], targets: Targets, notes: tuple[str, ...]) -> Reference:
    """What the comparison rows say; else a branch named control; else the page cannot tell."""
    compared = targets.compared
    if len(compared) == 1:
        (t,) = compared
        how = (
            "every comparison row is against it"
            if not targets.unstated
            else "the branch the others are compared to: the one without comparison rows of its own"
        )
        return Reference(t, t, how, notes)
    central = sorted(t for t, bs in compared.items() if bs >= targets.comparable - {t})
    if len(central) == 1:
        return Reference(central[0], central[0], "every other branch is compared to it", notes)
    control = "control" if "control" in branches else None
    if control and (not compared or control in compared):
        return Reference(control, control, "the branch named control", notes)
    if compared:
        base = sorted(compared, key=lambda t: (-len(compared[t]), t))[0]
        return Reference(
            None,
            base,
            "Neither the metadata nor the rows say which branch is the reference, and no branch is named "
            f"control. Comparisons are shown against {shown(base)}, the first by name of the branches the data "
            "compares the others to; comparisons against other branches are listed with each metric",
            notes,
        )
    return Reference(
        None,
        None,
        "The data has no comparisons between branches, so it does not say which is the reference",
        notes,
    )


def _check_config(branch: str, targets: Targets) -> tuple[str, ...]:
    if targets.compared and branch not in targets.compared:
        others = ", ".join(shown(t) for t in sorted(targets.compared))
        return (
            f"No comparison row is against {shown(branch)}; "
            f"the data compares branches to {others} (listed with each metric).",
        )
    return ()


def ordered(values, first: tuple[str, ...] = ()) -> list[str]:
    vals = set(values)
    return [v for v in first if v in vals] + sorted(vals - set(first))


def comparison_of(row: Statistic, target: str | None, reference: str | None) -> str | None:
    """'absolute', 'relative_uplift' or 'difference' for values and rows against the reference
    (``target``: the branch the row is against, :class:`Targets`); None for comparisons to other
    branches or to a branch the data does not name."""
    if row.comparison is None:
        return "absolute"
    if reference is not None and target == reference:
        return row.comparison
    return None


class _Metrics:
    """Friendly names, descriptions and directions from metadata, with fallbacks."""

    def __init__(self, md: Metadata | None):
        self.md = md
        # each outcome's metric names as a set, once: matching is O(metrics) per view, not O(metrics × names)
        self.outcome_sets = [(o, set(o.metrics)) for o in md.outcomes.values()] if md and md.outcomes else []

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
            for outcome, names in self.outcome_sets:
                members = [m for m in metrics if m in names]
                if members:
                    out.append((f"Outcome: {outcome.friendly_name}", outcome.description, members))
                    used.update(members)
        rest = [m for m in metrics if m not in used]
        if rest:
            out.append(("Other metrics" if out else "Metrics", "", rest))
        return out


# --- building -----------------------------------------------------------------------------------


def _figure_windows(stat: str, rows, windows: list[int], series: bool, segments) -> tuple[list, list[int], str]:
    """(rows, windows drawn, caption): the windows this figure has rows in, not every window of
    the view (metrics present in different windows would make figures × windows quadratic), of a
    series only those ``shown_windows`` keeps (the caption then says which)."""
    windows = sorted({window_of(r) for _, r in rows}) or windows[-1:]
    drawn = shown_windows(stat, windows, SHOWN_WINDOWS_SEGMENTS if segments else None) if series else windows
    caption = ""
    if len(drawn) < len(windows):
        caption = f"{len(drawn)} of {len(windows)} windows shown: {', '.join(map(str, drawn))}."
        keep = set(drawn)
        rows = [(c, r) for c, r in rows if window_of(r) in keep]
    return rows, drawn, caption


def _figure_context(stat, metric_name, period, basis, segment, metrics, reference, names, segment_labels) -> dict:
    """A figure's figure-wide values (exports.figure_rows): what its rows share, and the names
    in the data behind the labels R draws."""
    context = {
        "metric": next(iter(metrics)) if len(metrics) == 1 else "",
        "metric_label": shown(metric_name),
        "statistic_label": STATISTIC_LABELS.get(stat, shown(stat)),
        "period": period,
        "basis": basis,
        "segment": segment,
        "compared_to": reference or "",
        "branch_names": {label: name for name, label in names.items()},
    }
    if segment_labels:
        context["segment_names"] = {label: name for name, label in segment_labels.items()}
    return context


def _figure_columns(rows: list[tuple[str, Statistic]]) -> dict[str, list]:
    """The columns R draws a figure from, one entry per (comparison, row); ``metric`` only when
    the rows are of several metrics (one metric per figure today)."""
    cols: dict[str, list] = {
        k: [] for k in ("branch", "comparison", "window", "parameter", "point", "lower", "upper", "ci_level")
    }
    for comparison, r in rows:
        cols["branch"].append(r.branch)
        cols["comparison"].append(comparison)
        cols["window"].append(window_of(r))
        cols["parameter"].append(finite(r.parameter))
        cols["point"].append(finite(r.point))
        cols["lower"].append(finite(r.lower))
        cols["upper"].append(finite(r.upper))
        cols["ci_level"].append(finite(r.ci_width) if r.lower is not None or r.upper is not None else None)
    if len({r.metric for _, r in rows}) > 1:  # a figure of several metrics names each row's
        cols["metric"] = [r.metric for _, r in rows]
    return cols


def _figure_alt(stat: str, metric_name: str, period: str, basis: str, segment: str, segments) -> str:
    """A figure's text alternative: what it shows, where, by branch."""
    where = (
        f"segments {', '.join(shown(s) for s in segments)} side by side" if segments else f"segment {shown(segment)}"
    )
    return (
        f"{STATISTIC_LABELS.get(stat, shown(stat))} of {shown(metric_name)}, "
        f"{layout.PERIOD_LABELS[period].lower()}, {basis}, {where}, by branch"
    )


class _Builder:
    def __init__(
        self,
        results: ExperimentResults,
        plotted: frozenset[str],
        render_dir: str = "",
        table_exports: list | None = None,
    ):
        self.results = results
        self.plotted = plotted
        # exports (exports.py): the render's asset folder the page links them in ("" : no links),
        # and where each table's rows go as it is built: (number, title, [ExportRow])
        self.render_dir = render_dir
        self.table_exports = table_exports
        self.metrics = _Metrics(results.metadata)
        self.targets = Targets(results.statistics)
        self.ref = choose_reference(results, self.targets)
        # the branch comparisons are shown against (None: the data has no comparisons)
        self.reference = self.ref.shown
        self.reference_reason = self.ref.reason
        all_branches = {r.branch for rows in results.statistics.values() for r in rows}
        self.branches = ordered(all_branches, (self.reference,) if self.reference else ())
        self.figures: list[FigureSpec] = []
        # series figures with the segments of a basis side by side (segments_figure): the rows of
        # each period by (basis, segment), set by build_page before its views are built
        self.period_groups: dict[str, dict[tuple[str, str], list[Statistic]]] = {}
        self.segment_figures: dict[tuple, tuple[Figure, list[str]] | None] = {}
        self._segment_index: tuple[tuple, dict] = ((), {})
        self.ids = _Ids()
        self.segment_keys = _Keys(("all",))
        self.statistic_keys = _Keys()
        # estimates set aside as conflicting, by where they would have been shown
        self.conflicts: dict[tuple, set[tuple]] = defaultdict(set)
        for period, problems in results.problems.items():
            for group in problems.conflicts:
                r = group[0]
                comp = comparison_of(r, self.targets.of(period, r), self.reference)
                self.conflicts[(period, r.metric, r.statistic, r.segment, basis_of(r))].add(
                    (r.branch, comp, window_of(r))
                )

    def segment_key(self, segment: str) -> str:
        return "all" if segment == "all" else self.segment_keys(segment)

    # --- exports: every table's numbers as rows, as the table is built ---------------------------
    def export_href(self, kind: str, number: int) -> str:
        return f"{self.render_dir}/{layout.export_file(kind, number)}" if self.render_dir else ""

    def export_row(self, period: str, r: Statistic, column: str = "", text: str = "") -> ExportRow:
        """One statistics row as an export row: exact names and numbers, the page's labels."""
        interval = r.lower is not None or r.upper is not None
        return ExportRow(
            r.metric,
            shown(self.metrics.name(r.metric)),
            r.statistic,
            STATISTIC_LABELS.get(r.statistic, shown(r.statistic)),
            r.branch,
            shown(r.branch),
            r.comparison or "absolute",
            "" if r.comparison is None else (self.targets.of(period, r) or ""),
            basis_of(r),
            r.segment,
            period,
            window_of(r),
            finite(r.parameter),
            finite(r.point),
            finite(r.lower),
            finite(r.upper),
            finite(r.ci_width) if interval else None,
            column,
            text,
        )

    def exported(self, table: Table, title: str, rows: list[ExportRow]) -> Table:
        """``table`` linked to the CSV of ``rows`` (the numbers its cells show)."""
        if self.table_exports is None:
            return table
        number = len(self.table_exports) + 1
        self.table_exports.append((number, title, rows))
        return replace(table, csv=self.export_href("table", number))

    def export_title(self, what: str, period: str, first: Statistic | None) -> str:
        where = f", {layout.PERIOD_LABELS.get(period, period).lower()}" if period else ""
        if first is not None:
            where += f", {basis_of(first)}, segment {shown(first.segment)}"
            what = f"{what} of {shown(self.metrics.name(first.metric))}"
        return what + where

    # one (period, basis, segment) view
    def view(self, period: str, basis: str, segment: str, rows: list[Statistic]) -> View:
        windows = sorted({window_of(r) for r in rows})
        series = len(windows) > 1
        by_metric: dict[str, dict[str, list[Statistic]]] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            by_metric[r.metric][r.statistic].append(r)
        view_anchor = self.ids(period, basis, segment, exact=segment)
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
        return View(view_anchor, period, basis, shown(segment), wl, groups, self.segment_key(segment))

    def metric_block(self, view_anchor, period, basis, segment, metric, by_stat, windows, series) -> MetricBlock:
        name = self.metrics.name(metric)
        blocks = []
        pairwise_rows: list[Statistic] = []
        for stat in ordered(by_stat, tuple(STATISTIC_ORDER)):
            rows = by_stat[stat]
            ref_rows = [(comparison_of(r, self.targets.of(period, r), self.reference), r) for r in rows]
            pairwise_rows.extend(r for c, r in ref_rows if c is None)
            mine = [(c, r) for c, r in ref_rows if c is not None]
            label = STATISTIC_LABELS.get(stat, shown(stat))
            key = self.statistic_keys(stat)
            conflicted = self.conflicts.get((period, metric, stat, segment, basis), set())
            if stat in TABLE_STATISTICS:
                blocks.append(StatisticBlock(stat, label, table=self.value_table(mine, windows, period), key=key))
            elif stat in SUMMARY_STATISTICS and not series:
                # One window: a table with the intervals drawn in it says it all, and costs no plot.
                table = self.ci_table(mine, self.metrics.bigger_is_better(metric), conflicted, period)
                blocks.append(StatisticBlock(stat, label, table=table, key=key))
            elif stat in self.plotted:
                fig, note = self.plotted_figure(
                    stat, name, mine, windows, series, period, basis, segment, metric, conflicted
                )
                blocks.append(StatisticBlock(stat, label, figure=fig, note=note, key=key))
            else:
                note = "partybal has no plot for this statistic yet; its rows are shown as a table."
                blocks.append(StatisticBlock(stat, label, table=self.raw_table(rows, period), note=note, key=key))
        pairwise = self.pairwise_table(pairwise_rows, period) if pairwise_rows and not series else None
        return MetricBlock(
            anchor=self.ids(view_anchor, "m", metric, exact=metric),
            metric=shown(metric),
            name=shown(name),
            description=self.metrics.description(metric),
            search_text=shown(f"{metric} {name}").lower(),
            statistics=blocks,
            pairwise=pairwise,
        )

    def plotted_figure(
        self, stat, name, mine, windows, series, period, basis, segment, metric, conflicted
    ) -> tuple[Figure, str]:
        """The figure of one statistic in one view (its own, or the segments side by side) and the
        note under it: what was left out of the drawing, and which column is this view's."""
        flagged = [(c, r) for c, r in mine if out_of_bounds(r)]
        notes = []
        if flagged:
            mine = [(c, r) for c, r in mine if not out_of_bounds(r)]
            notes.append(
                f"{len(flagged)} row{'s' if len(flagged) != 1 else ''} whose interval does not contain "
                "the estimate not drawn (see Data problems)."
            )
        if conflicted:
            notes.append(
                f"{len(conflicted)} estimate{'s' if len(conflicted) != 1 else ''} with conflicting rows "
                "not drawn (see Data problems)."
            )
        fig = self.segments_figure(stat, name, period, basis, metric)
        if fig is not None and segment not in fig[1]:  # nothing of this segment to draw there
            fig = None
        if fig is not None:
            fig, shown_segments = fig
            notes.append(
                f"The {len(shown_segments)} segments of {basis} side by side "
                f"({', '.join(map(shown, shown_segments))}): "
                f"this view's segment {shown(segment)} is the column of that name."
            )
        else:
            fig = self.figure(stat, name, mine, windows, series, period, basis, segment)
        return fig, " ".join(notes)

    def segments_figure(self, stat, metric_name, period, basis, metric) -> tuple[Figure, list[str]] | None:
        """One figure of a series of intervals, or of a distribution, for every segment of ``basis``
        side by side (2 to SEGMENT_COLUMNS segments with rows), drawn once and shown in each
        segment's view; None:
        a figure per view instead. Rows whose interval misses the estimate are left out, as in
        the per-view figure (each view's note says so for its segment)."""
        if stat not in (*INTERVAL_STATISTICS, *DISTRIBUTION_STATISTICS, "deciles"):
            return None
        key = (period, basis, metric, stat)
        if key in self.segment_figures:
            return self.segment_figures[key]
        groups = self.period_groups.get(period) or {}
        segments = ordered({s for b_, s in groups if b_ == basis}, ("all",))
        if not 2 <= len(segments) <= SEGMENT_COLUMNS:
            return None
        if self._segment_index[0] != (period, basis):  # one pass over the basis's rows, once
            index: dict[tuple[str, str], list[Statistic]] = defaultdict(list)
            for seg in segments:
                for r in groups[(basis, seg)]:
                    index[(r.metric, r.statistic)].append(r)
            self._segment_index = ((period, basis), index)
        rows = []
        for r in self._segment_index[1].get((metric, stat), ()):
            c = comparison_of(r, self.targets.of(period, r), self.reference)
            if c is not None and not out_of_bounds(r):
                rows.append((c, r))
        present = [s for s in segments if any(r.segment == s for _, r in rows)]
        if len(present) < 2:
            self.segment_figures[key] = None
            return None
        windows = sorted({window_of(r) for _, r in rows})
        if stat in INTERVAL_STATISTICS and len(windows) < 2:  # one window of intervals: the view's own figure
            self.segment_figures[key] = None
            return None
        fig = self.figure(stat, metric_name, rows, windows, len(windows) > 1, period, basis, "", segments=present)
        self.segment_figures[key] = (fig, present)
        return fig, present

    def figure(
        self, stat, metric_name, rows, windows, series, period, basis, segment, segments: list[str] | None = None
    ) -> Figure:
        number = len(self.figures) + 1
        rows, drawn, caption = _figure_windows(stat, rows, windows, series, segments)
        cols = _figure_columns(rows)
        metrics = {r.metric for _, r in rows}
        alt = _figure_alt(stat, metric_name, period, basis, segment, segments)
        segment_labels: dict[str, str] = shown_unique(segments) if segments else {}
        if segments:  # one column per segment: each row says its own (as the figure labels it)
            cols["segment"] = [segment_labels[r.segment] for _, r in rows]
        branches = ordered({r.branch for _, r in rows}, (self.reference,) if self.reference else ())
        # R gets names as the page shows them (no control characters), distinct per branch
        names = shown_unique(branches + ([self.reference] if self.reference and self.reference not in branches else []))
        cols["branch"] = [names[b] for b in cols["branch"]]
        branches = [names[b] for b in branches]
        if any(r.lower is not None or r.upper is not None for _, r in rows):
            level = ci_label(r for _, r in rows)
            caption = (caption + " " if caption else "") + f"Intervals: {level}."
        if caption:
            alt += f" ({caption[:-1]})"
        context = _figure_context(
            stat, metric_name, period, basis, segment, metrics, self.reference, names, segment_labels
        )
        self.figures.append(
            FigureSpec(
                number,
                stat,
                shown(metric_name, _ESCAPED),
                names[self.reference] if self.reference else "",
                branches,
                series,
                drawn,
                alt,
                cols,
                caption=caption,
                context=context,
                segments=[segment_labels[s] for s in segments or ()],
            )
        )
        return Figure(number, alt, csv=self.export_href("figure", number))

    def value_table(self, rows, windows, period: str = "") -> Table:
        values: dict[str, dict[int, Statistic]] = defaultdict(dict)
        for c, r in rows:
            if c == "absolute":
                values[r.branch][window_of(r)] = r
        # columns for the windows this table has values in, not every window of the view (one
        # metric per window made tables × windows quadratic: 1,500 rows → over 2 GB)
        windows = sorted({w for by_window in values.values() for w in by_window}) or windows[-1:]
        if len(windows) == 1:
            columns = ["Branch", "Value"]
        else:  # the latest window first, then one compact column per window (the table scrolls)
            columns = ["Branch", f"Latest (window {windows[-1]})"] + [str(w) for w in windows]
        body = []
        exported: list[ExportRow] = []
        for b in ordered(values, (self.reference,) if self.reference else ()):
            cells = [Cell(shown(b))]
            if len(windows) > 1:
                r = values[b].get(windows[-1])
                cells.append(Cell(fmt_num(r.point) if r else "—", "num latest"))
            for w in windows:
                r = values[b].get(w)
                cells.append(Cell(fmt_num(r.point) if r else "—", "num"))
                if r is not None:  # the "Latest" column repeats one of these: exported once
                    exported.append(
                        self.export_row(period, r, columns[-1] if len(windows) == 1 else str(w), cells[-1].text)
                    )
            body.append(cells)
        note = f"Columns {windows[0]}–{windows[-1]}: the value in each window." if len(windows) > 1 else ""
        first = next((r for by_window in values.values() for r in by_window.values()), None)
        return self.exported(Table(columns, body, note), self.export_title("Values", period, first), exported)

    def ci_columns(self, by_branch: dict[str, dict[str, Statistic]], held: set[tuple]) -> tuple[list[tuple], list[str]]:
        """The (comparison, formatter) of each column with rows (or held rows), and the header."""
        columns = [
            (comp, fmt)
            for comp, fmt in (("absolute", fmt_num), ("relative_uplift", fmt_pct), ("difference", fmt_num))
            if comp == "absolute" or any(comp in d for d in by_branch.values()) or any(c == comp for _, c in held)
        ]
        ref = shown(self.reference) if self.reference else ""
        titles = {
            "absolute": "Value",
            "relative_uplift": f"Relative uplift vs {ref}",
            "difference": f"Difference vs {ref}",
        }
        header = ["Branch"] + [
            f"{titles[comp]} [{ci_label(d.get(comp) for d in by_branch.values())}]" for comp, _ in columns
        ]
        return columns, header

    def ci_table(self, rows, bigger_is_better: bool, conflicted: set[tuple] = frozenset(), period: str = "") -> Table:
        """Value, uplift and difference per branch with their intervals, drawn as bars. Headers
        name the rows' CI level and the branch the comparisons are against; a comparison column
        exists only when there are rows for it."""
        by_branch: dict[str, dict[str, Statistic]] = defaultdict(dict)
        for c, r in rows:
            by_branch[r.branch][c] = r
        held = {(b, c) for b, c, _ in conflicted}
        for b, _ in held:
            by_branch.setdefault(b, {})
        columns, header = self.ci_columns(by_branch, held)
        scales = {comp: interval_scale(d.get(comp) for d in by_branch.values()) for comp, _ in columns}
        body = []
        exported: list[ExportRow] = []
        for b in ordered(by_branch, (self.reference,) if self.reference else ()):
            d = by_branch[b]
            cells = [Cell(shown(b))]
            for i, (comp, fmt) in enumerate(columns, start=1):
                r = d.get(comp)
                if r is None:
                    cells.append(problem_cell() if (b, comp) in held else Cell("—", "num"))
                    continue
                text = fmt_ci(r.point, r.lower, r.upper, fmt)
                if out_of_bounds(r):
                    cells.append(Cell(text + " " + OUT_OF_BOUNDS, "num problem"))
                else:
                    css = "num" if comp == "absolute" else "num " + significance(r.lower, r.upper, bigger_is_better)
                    cells.append(Cell(text, css, bar_for(r, scales[comp])))
                exported.append(self.export_row(period, r, header[i], cells[-1].text))
            body.append(cells)
        first = next((r for d in by_branch.values() for r in d.values()), None)
        label = STATISTIC_LABELS.get(first.statistic, shown(first.statistic)) if first is not None else "Estimates"
        return self.exported(Table(header, body), self.export_title(label, period, first), exported)

    def compared_to(self, period: str, r: Statistic) -> str:
        """The branch a comparison row is against, as the page says it."""
        if r.comparison is None:
            return ""
        if r.comparison_to_branch:
            return shown(r.comparison_to_branch)
        t = self.targets.of(period, r)
        return (
            f"{shown(t)} (not stated in the row; the branch without comparisons of its own)"
            if t
            else "not stated in the data"
        )

    def pairwise_table(self, rows: list[Statistic], period: str) -> Table:
        body = [
            [
                Cell(STATISTIC_LABELS.get(r.statistic, shown(r.statistic))),
                Cell(shown(r.branch)),
                Cell(self.compared_to(period, r)),
                Cell(shown(r.comparison or "")),
                Cell(fmt_num(r.parameter) if r.parameter is not None else ""),
                Cell(
                    fmt_ci(r.point, r.lower, r.upper, fmt_pct if r.comparison == "relative_uplift" else fmt_num)
                    + (f" ({pct(r.ci_width)} CI)" if r.lower is not None or r.upper is not None else "")
                    + (" " + OUT_OF_BOUNDS if out_of_bounds(r) else ""),
                    "num problem" if out_of_bounds(r) else "num",
                ),
            ]
            for r in rows[:MAX_TABLE_ROWS]
        ]
        note = f"First {MAX_TABLE_ROWS} of {len(rows)} rows." if len(rows) > MAX_TABLE_ROWS else ""
        exported = [
            self.export_row(period, r, "Estimate [CI]", cells[-1].text)
            for r, cells in zip(rows[:MAX_TABLE_ROWS], body, strict=True)
        ]
        table = Table(["Statistic", "Branch", "Compared to", "Comparison", "Parameter", "Estimate [CI]"], body, note)
        return self.exported(
            table, self.export_title("Pairwise comparisons", period, rows[0] if rows else None), exported
        )

    def raw_table(self, rows: list[Statistic], period: str) -> Table:
        # the latest window first: a long series cut at MAX_TABLE_ROWS keeps the recent windows
        listed = sorted(rows, key=lambda r: -window_of(r))[:MAX_TABLE_ROWS]
        body = [
            [
                Cell(shown(r.branch)),
                Cell(shown(r.comparison or "value")),
                Cell(self.compared_to(period, r)),
                Cell(shown(r.window_index or "")),
                Cell(fmt_num(r.parameter) if r.parameter is not None else ""),
                Cell(fmt_num(r.point), "num"),
                Cell(fmt_num(r.lower), "num"),
                Cell(fmt_num(r.upper), "num"),
                Cell(pct(r.ci_width) if r.lower is not None or r.upper is not None else ""),
                Cell(OUT_OF_BOUNDS if out_of_bounds(r) else "", "problem" if out_of_bounds(r) else ""),
            ]
            for r in listed
        ]
        note = (
            f"First {MAX_TABLE_ROWS} of {len(rows)} rows, latest windows first." if len(rows) > MAX_TABLE_ROWS else ""
        )
        exported = [self.export_row(period, r, "Point", cells[5].text) for r, cells in zip(listed, body, strict=True)]
        table = Table(
            [
                "Branch",
                "Comparison",
                "Compared to",
                "Window",
                "Parameter",
                "Point",
                "Lower",
                "Upper",
                "CI level",
                "Check",
            ],
            body,
            note,
        )
        first = listed[0] if listed else None
        label = STATISTIC_LABELS.get(first.statistic, shown(first.statistic)) if first is not None else "Rows"
        return self.exported(table, self.export_title(label, period, first), exported)

    def problems_table(self) -> Table | None:
        """Rows set aside or flagged: conflicting duplicates and intervals that miss their estimate."""
        listed: list[tuple[str, str, Statistic]] = []
        for period, problems in self.results.problems.items():
            for group in problems.conflicts:
                listed.extend((period, f"conflicting rows ({len(group)} with this key), not shown", r) for r in group)
            listed.extend((period, "interval does not contain the estimate", r) for r in problems.out_of_bounds)
        if not listed:
            return None

        def estimate(period: str, r: Statistic) -> str:
            what = f"{shown(r.comparison)} vs {self.compared_to(period, r)}" if r.comparison else "value"
            parts = [
                layout.PERIOD_LABELS.get(period, period),
                shown(r.metric),
                shown(r.statistic),
                shown(r.branch),
                what,
                f"segment {shown(r.segment)}",
                basis_of(r),
                f"window {shown(r.window_index or '1')}",
            ]
            if r.parameter is not None:
                parts.append(f"parameter {fmt_num(r.parameter)}")
            return " · ".join(parts)

        body = [
            [
                Cell(estimate(period, r)),
                Cell(pct(r.ci_width) if r.ci_width is not None else ""),
                Cell(fmt_num(r.point), "num"),
                Cell(fmt_num(r.lower), "num"),
                Cell(fmt_num(r.upper), "num"),
                Cell(problem, "problem"),
            ]
            for period, problem, r in listed[:MAX_TABLE_ROWS]
        ]
        note = f"First {MAX_TABLE_ROWS} of {len(listed)} rows." if len(listed) > MAX_TABLE_ROWS else ""
        columns = ["Estimate", "CI level", "Point", "Lower", "Upper", "Problem"]
        exported = [self.export_row(period, r, "Problem", problem) for period, problem, r in listed[:MAX_TABLE_ROWS]]
        return self.exported(Table(columns, body, note), "Data problems: rows not shown as results", exported)

    # the summary at the top
    def summary(self) -> Summary | None:
        chosen = self.summary_rows()
        if chosen is None:
            return None
        rows, label, period, basis, latest = chosen
        uplift, counts = self.summary_estimates(rows, period)
        held = self.summary_held(uplift, period, basis, latest)
        others = [b for b in self.branches if b != self.reference] if self.reference else []
        shown_rows = [r for m in uplift.values() for d in m.values() for r in d.values()]
        level = ci_label(shown_rows)
        mixed = level.startswith("CI (")
        body, exported = self.summary_body(uplift, held, others, mixed, period)
        populations = self.populations(counts, period, label)
        summary = Summary(label, [shown(b) for b in others], body, populations, _ci_text(level, mixed))
        if body and others and self.table_exports is not None:
            summary = replace(
                summary,
                csv=self.exported(Table([], []), f"Relative uplift vs {shown(self.reference)}, {label}", exported).csv,
            )
        return summary

    def summary_rows(self) -> tuple[list[Statistic], str, str, str, int | None] | None:
        """(rows, label, period, basis, latest window) the summary is of: the overall period, else the
        latest weekly window; one basis (enrollments when present), segment all. None: neither."""
        stats = self.results.statistics
        latest = None
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
        period = "overall" if stats.get("overall") else "weekly"
        return rows, label, period, basis, latest

    def summary_estimates(self, rows: list[Statistic], period: str) -> tuple[dict, dict[str, Statistic]]:
        """The relative uplifts against the reference (metric -> statistic -> branch -> row) and
        each branch's client count."""
        uplift: dict[str, dict[str, dict[str, Statistic]]] = defaultdict(lambda: defaultdict(dict))
        counts: dict[str, Statistic] = {}
        for r in rows:
            if r.statistic == "count" and r.comparison is None:
                counts[r.branch] = r
            elif (
                r.statistic in SUMMARY_STATISTICS
                and r.comparison == "relative_uplift"
                and self.reference is not None
                and self.targets.of(period, r) == self.reference
            ):
                uplift[r.metric][r.statistic][r.branch] = r
        return uplift, counts

    def summary_held(self, uplift: dict, period: str, basis: str, latest: int | None) -> dict[str, dict[str, set[str]]]:
        """Estimates set aside as conflicting still get their row, saying so: the branches of each
        (metric, statistic) held back; ``uplift`` gains an entry for each."""
        held: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for (p, metric, stat, seg, b_), keys in self.conflicts.items():
            if p == period and seg == "all" and b_ == basis and stat in SUMMARY_STATISTICS:
                for branch, comp, window in keys:
                    if comp == "relative_uplift" and (period == "overall" or window == latest):
                        held[metric][stat].add(branch)
                        uplift[metric].setdefault(stat, {})
        return held

    def summary_body(self, uplift, held, others: list[str], mixed: bool, period: str) -> tuple[list, list[ExportRow]]:
        """One row per metric, one cell per branch against the reference; and the rows to export."""
        body = []
        exported: list[ExportRow] = []
        for metric in self.metrics.order(uplift):
            stat = next(s for s in SUMMARY_STATISTICS if s in uplift[metric])
            cells = []
            for b in others:
                r = uplift[metric][stat].get(b)
                if r is None:
                    cells.append(problem_cell() if b in held[metric][stat] else Cell("—", "neutral"))
                    continue
                if out_of_bounds(r):
                    cells.append(Cell(fmt_ci(r.point, r.lower, r.upper, fmt_pct) + " " + OUT_OF_BOUNDS, "problem"))
                else:
                    css = significance(r.lower, r.upper, self.metrics.bigger_is_better(metric))
                    text = fmt_ci(r.point, r.lower, r.upper, fmt_pct)
                    if mixed and (r.lower is not None or r.upper is not None):
                        text += f" ({pct(r.ci_width)})"
                    cells.append(Cell(text, css))
                exported.append(self.export_row(period, r, shown(b), cells[-1].text))
            body.append(SummaryRow(shown(self.metrics.name(metric)), metric, cells))
        return body, exported

    def populations(self, counts: dict[str, Statistic], period: str, label: str) -> Table | None:
        """Clients and share of each branch (None: no counts)."""
        if not counts:
            return None
        total = sum(finite(c.point) or 0 for c in counts.values())
        branch_order = ordered(counts, (self.reference,) if self.reference else ())
        populations = Table(
            ["Branch", "Clients", "Share"],
            [
                [
                    Cell(shown(b)),
                    Cell(fmt_num(counts[b].point), "num"),
                    Cell(f"{(finite(counts[b].point) or 0) / total * 100:.1f}%" if total else "—", "num"),
                ]
                for b in branch_order
            ],
        )
        return self.exported(
            populations,
            f"Branch populations, {label}",
            [
                self.export_row(period, counts[b], "Clients", cells[1].text)
                for b, cells in zip(branch_order, populations.rows, strict=True)
            ],
        )


def _ci_text(level: str, mixed: bool) -> str:
    """What the summary's intervals are, in words."""
    if mixed:
        return "confidence intervals at the level each cell states"
    if level == "CI, level not stated":
        return "intervals whose confidence level the data does not state"
    return level.replace("CI", "confidence intervals")


def grouped_notes(notes) -> list[str]:
    """One line per distinct note, naming every file it is about."""
    files: dict[str, list[str]] = {}
    for n in notes:
        files.setdefault(n.text, []).append(n.file)
    return [f"{', '.join(shown(f) for f in names)}: {text}" for text, names in files.items()]


# --- sample-ratio checks as the page shows them (the tests themselves: partybal/page/srm.py) ----------

SRM_MEANING = (
    "The branches did not receive the shares of clients expected of them. "
    "Enrollment or exposure did not work as designed (a bug in the branch assignment, in a "
    "feature's exposure, or clients dropping out of one branch), so the branch populations may "
    "differ in more than the treatment: treat every comparison below as possibly biased until "
    "the cause is understood."
)


def fmt_p(p: float) -> str:
    """A p-value as the page prints it: ``p = 0.43``, ``p = 3.2e-09``, ``p < 1e-300``."""
    if p != p:  # NaN
        return "p unknown"
    if p <= 0:
        return "p < 1e-300"
    if p < 1e-4:
        return f"p = {p:.1e}"
    return f"p = {p:.2g}" if p < 0.01 else f"p = {p:.2f}"


def srm_result(check, segment_key) -> SrmResult:
    """One :class:`partybal.page.srm.SrmCheck` as the page shows it."""
    shares = []
    for b, n, obs, exp in zip(
        check.branches, check.observed, check.observed_shares, check.expected_shares, strict=True
    ):
        shares.append(
            SrmShare(
                shown(b), fmt_num(n), f"{obs * 100:.2f}%", f"{exp * 100:.2f}%", "off" if abs(obs - exp) > 0.01 else ""
            )
        )
    summary = ", ".join(f"{s.branch} {s.observed} (expected {s.expected})" for s in shares)
    return SrmResult(
        basis=check.basis,
        segment=shown(check.segment),
        segment_key=segment_key(check.segment),
        source=check.source,
        shares_from=check.shares_from,
        p_text=fmt_p(check.p_value),
        mismatch=check.mismatch,
        shares=shares,
        summary=summary,
    )


def srm_section(checks, segment_key) -> SrmSection | None:
    """The checks of segment ``all`` (one per basis); None when there are none."""
    results = [srm_result(c, segment_key) for c in checks if c.segment == "all"]
    if not results:
        return None
    return SrmSection(any(r.mismatch for r in results), results, SRM_MEANING)


def srm_cell(check) -> tuple[str, str, str]:
    """(text, css class, title) of a segment's sample-ratio result in the completeness map."""
    r = srm_result(check, str)
    if check.mismatch:
        return f"SRM {r.p_text}", "srm-mismatch", f"Sample-ratio mismatch ({r.p_text}, {check.source}): {r.summary}"
    return f"ratio ok, {r.p_text}", "srm-ok", f"No sample-ratio mismatch ({r.p_text}, {check.source}): {r.summary}"


STATUS_LABELS = {
    "live": "live (enrolling)",
    "observing": "enrollment ended, still running",
    "complete": "complete",
    "scheduled": "scheduled",
    "unknown": "not started",
}


def app_label(app_name: str) -> str:
    from ..pipeline.experimenter import app_label as label

    return label(app_name)


def _days(n: int | None) -> str:
    return f"{n} day{'s' if n != 1 else ''}" if n is not None else "not stated"


def experiment_context(
    info, note: str, url: str, analysis_reference: str | None, today: dt.date | None = None
) -> ExperimentContext:
    """The header's Experimenter part from an ``experimenter.ExperimentInfo`` (None: ``note``
    says why there is none)."""
    if info is None:
        return ExperimentContext(False, note=note)
    today = today or dt.datetime.now(dt.UTC).date()
    total = sum(b.ratio for b in info.branches if b.ratio > 0)
    branches = [
        ContextBranch(
            shown(b.slug),
            str(b.ratio),
            f"{b.ratio / total * 100:.3g}%" if total and b.ratio > 0 else "—",
            b.slug == info.reference_branch,
        )
        for b in info.branches
    ]
    start = info.start_date.isoformat() if info.start_date else "not started"
    facts = [
        ContextFact("Application", f"{shown(app_label(info.app_name))}, {shown(info.channel) or 'any channel'}"),
        ContextFact("Type", "Rollout" if info.is_rollout else "Experiment"),
        ContextFact("Status", STATUS_LABELS.get(info.status(today), info.status(today))),
        ContextFact("Start", start),
        ContextFact(
            "Enrollment end",
            info.enrollment_end_date.isoformat()
            if info.enrollment_end_date
            else ("paused" if info.is_enrollment_paused else "not yet"),
        ),
        ContextFact("End", info.end_date.isoformat() if info.end_date else "not yet"),
        ContextFact(
            "Proposed", f"enrollment {_days(info.proposed_enrollment)}, duration {_days(info.proposed_duration)}"
        ),
    ]
    ref_note = _reference_note(info.reference_branch, analysis_reference)
    return ExperimentContext(True, "", shown(info.name), shown(info.description), facts, branches, ref_note, url)


def _reference_note(ref: str | None, analysis_reference: str | None) -> str:
    """What the header says when Experimenter's reference branch is not the one the analysis uses."""
    if ref and analysis_reference and ref != analysis_reference:
        return (
            f"Experimenter names {shown(ref)} as the reference branch; "
            f"the analysis compares against {shown(analysis_reference)}."
        )
    if ref and not analysis_reference:
        return (
            f"Experimenter names {shown(ref)} as the reference branch; "
            "the results do not say which branch they compare against."
        )
    return ""


def build_page(
    results: ExperimentResults,
    *,
    plotted: frozenset[str] | None = None,
    rendered_at: dt.datetime | None = None,
    banner: Banner | None = None,
    srm_checks: list | None = None,
    experiment=None,
    experiment_note: str | None = None,
    experiment_url: str = "",
    render_dir: str = "",
    table_exports: list | None = None,
) -> tuple[Page, list[FigureSpec]]:
    """The page model and the figures R must draw for it. ``srm_checks``: the sample-ratio tests
    (:func:`partybal.page.srm.srm_checks`; computed by the renderer, which has scipy). ``experiment``:
    the ``experimenter.ExperimentInfo`` of this experiment; without one, ``experiment_note`` says
    why there is none (None: Experimenter was not consulted, the header says nothing about it).
    ``render_dir``: the render's asset folder, relative to the page: tables, figures and the page
    link their exports there (``layout.export_file``, ``layout.RENDER_MANIFEST``); ``table_exports``:
    a list each exported table's ``(number, title, [ExportRow])`` is appended to (exports.py)."""
    b = _Builder(results, plotted if plotted is not None else plotted_statistics(), render_dir, table_exports)
    context = None
    if experiment is not None or experiment_note is not None:
        context = experiment_context(experiment, experiment_note or "", experiment_url, b.ref.branch)
    facets = _Facets(set(), set(), set())
    tabs = [_period_tab(b, period, facets) for period in layout.PERIODS]
    errors = _error_rows(results)
    page = _page(results, b, context, tabs, facets, errors, rendered_at, banner, srm_checks, render_dir)
    return page, b.figures


@dataclass
class _Facets:
    """The bases, segments and statistics the page's tabs show (its filters' options)."""

    bases: set[str]
    segments: set[str]
    statistics: set[str]


def _period_tab(b: _Builder, period: str, facets: _Facets) -> PeriodTab:
    """One period's tab: a view per (basis, segment), bases in BASIS_ORDER, segment all first."""
    label = layout.PERIOD_LABELS[period]
    if period not in b.results.statistics:
        return PeriodTab(period, label, False, 0, [], note=f"No {label.lower()} results have been published.")
    rows = b.results.statistics[period]
    groups: dict[tuple[str, str], list[Statistic]] = defaultdict(list)
    for r in rows:
        groups[(basis_of(r), r.segment)].append(r)
        facets.statistics.add(r.statistic)
    keys = sorted(
        groups, key=lambda k: (ordered({k[0]} | set(BASIS_ORDER), BASIS_ORDER).index(k[0]), k[1] != "all", k[1])
    )
    b.period_groups[period] = groups
    views = [b.view(period, basis, seg, groups[(basis, seg)]) for basis, seg in keys]
    facets.bases.update(k[0] for k in keys)
    facets.segments.update(k[1] for k in keys)
    n_windows = len({window_of(r) for r in rows})
    note = "" if rows else f"The {label.lower()} results file is empty."
    return PeriodTab(period, label, True, n_windows, views, note=note)


def _periods_line(tabs: list[PeriodTab]) -> str:
    """Which periods the page has (with their number of windows) and which it has not."""
    present = [
        f"{t.label} ({t.windows} window{'s' if t.windows != 1 else ''})" if t.period != "overall" else t.label
        for t in tabs
        if t.present
    ]
    missing = [t.label for t in tabs if not t.present]
    periods_line = "Available: " + (", ".join(present) or "none")
    if missing:
        periods_line += ". Not available: " + ", ".join(missing)
    return periods_line


def _error_rows(results: ExperimentResults) -> list[ErrorRow]:
    """Jetstream's errors file as the page lists it."""
    return [
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
            anchor=f"error-{i}",
        )
        for i, e in enumerate(results.errors, start=1)
    ]


def _page(
    results: ExperimentResults,
    b: _Builder,
    context: ExperimentContext | None,
    tabs: list[PeriodTab],
    facets: _Facets,
    errors: list[ErrorRow],
    rendered_at: dt.datetime | None,
    banner: Banner | None,
    srm_checks: list | None,
    render_dir: str,
) -> Page:
    """The page model from its parts; the summary, data problems and completeness map are built
    here, after the tabs (in this order: each numbers its exported tables as it goes)."""
    md = results.metadata
    return Page(
        slug=results.slug,
        file_slug=results.file_slug,
        title=context.name if context is not None and context.found and context.name else results.slug,
        reference_branch=shown(b.ref.branch) if b.ref.branch else "not stated in the data",
        reference_reason=b.reference_reason,
        branches=[shown(x) for x in b.branches],
        analysis_start_time=fmt_time(md.analysis_start_time) if md and md.analysis_start_time else "unknown",
        results_updated=fmt_time(results.updated),
        rendered_at=fmt_time(rendered_at or dt.datetime.now(dt.UTC)),
        periods_line=_periods_line(tabs),
        summary=b.summary(),
        tabs=tabs,
        errors=errors,
        sources=[SourceLink(f.name, f.url, fmt_time(f.updated)) for f in sorted(results.files, key=lambda f: f.name)],
        bases=[Option(x, x.capitalize()) for x in ordered(facets.bases, BASIS_ORDER)],
        segments=[Option(b.segment_key(x), shown(x)) for x in ordered(facets.segments, ("all",))],
        statistics=[
            Option(b.statistic_keys(x), STATISTIC_LABELS.get(x, shown(x)))
            for x in ordered(facets.statistics, tuple(STATISTIC_ORDER))
        ],
        ignored=[f"{name} ({why})" for name, why in results.ignored],
        banner=banner,
        reference_known=b.ref.branch is not None,
        compared_to=shown(b.reference) if b.reference else "",
        reference_notes=list(b.ref.notes),
        data_notes=grouped_notes(results.notes),
        problems=b.problems_table(),
        srm=srm_section(srm_checks or [], b.segment_key),
        context=context,
        completeness=_completeness(results, tabs, errors, b, srm_checks),
        manifest=f"{render_dir}/{layout.RENDER_MANIFEST}" if render_dir else "",
    )


def _completeness(
    results: ExperimentResults, tabs: list[PeriodTab], errors: list[ErrorRow], b: _Builder, srm_checks
) -> CompletenessMap | None:
    from .completeness import completeness_map  # it builds on this module's names

    return completeness_map(
        results,
        tabs,
        [e.anchor for e in errors],
        b.segment_key,
        b.statistic_keys,
        b.metrics.name,
        b.metrics.order,
        srm_checks,
        srm_cell,
    )

"""The figure plan at real size (issue 18): a bounded number of figures for the real-size shape,
and every number of the input still on the page — in some figure's data or some table.

Structural (the page model, no R): the real-size shape of tests/support/synthetic.py with fewer
windows and grid points (the plan depends on which periods are series, not on how long they are).
"""

import dataclasses
import math

import pytest

from partybal.page import report
from partybal.page.results import load_experiment
from partybal.storage import LocalResults
from tests.support import synthetic

# 2 series periods (weekly, daily) × 2 bases × 53 interval statistics (41 + 4 metrics with one,
# 6 with a second, 2 distribution metrics' mean) + 3 periods × 2 bases × 6 distribution figures
# (2 metrics × deciles, KDE, ECDF): the segments of a basis share one figure. Was 992.
REAL_SIZE_FIGURES = 2 * 2 * 53 + 3 * 2 * 6


@pytest.fixture(scope="module")
def real_size(tmp_path_factory):
    spec = dataclasses.replace(
        synthetic.real_size_spec("plan-real-size"), windows={"overall": 1, "weekly": 2, "daily": 2}, grid_points=4
    )
    root = tmp_path_factory.mktemp("real-size")
    synthetic.write_experiment(root, spec)
    res = load_experiment(LocalResults(root), spec.slug)
    tables: list = []
    page, figures = report.build_page(res, plotted=report.plotted_statistics(), render_dir="r", table_exports=tables)
    return spec, res, page, figures, tables


def _key(period, metric, statistic, branch, comparison, basis, segment, window, parameter):
    p = (
        None
        if parameter is None or (isinstance(parameter, float) and math.isnan(parameter))
        else round(float(parameter), 9)
    )
    return (period, metric, statistic, branch, comparison, basis, segment, int(window), p)


def test_real_size_plans_at_most_the_structural_count(real_size):
    spec, _, page, figures, _ = real_size
    assert len(figures) <= REAL_SIZE_FIGURES
    # the segments of a basis side by side: each series figure shows all four
    assert all(len(f.segments) == len(spec.segments) for f in figures)
    # and each segment's view still has its figure: every plotted statistic block refers to one
    numbers = {f.number for f in figures}
    referenced = {
        sb.figure.number
        for tab in page.tabs
        for view in tab.views
        for group in view.groups
        for metric in group.metrics
        for sb in metric.statistics
        if sb.figure is not None
    }
    assert referenced == numbers
    views = [v for t in page.tabs for v in t.views]
    assert len(views) == 3 * len(spec.segments) * len(spec.bases)


def test_every_number_of_the_input_is_in_a_figure_or_a_table(real_size):
    _, res, _, figures, tables = real_size
    reference = "control"
    shown: dict[tuple, float | None] = {}
    drawn_windows: dict[tuple, set[int]] = {}
    for f in figures:
        ctx, rows = f.context, f.rows
        names = ctx["branch_names"]
        seg_names = ctx.get("segment_names", {})
        segments = rows.get("segment") or [ctx["segment"]] * len(rows["point"])
        for i, point in enumerate(rows["point"]):
            key = _key(
                ctx["period"],
                ctx["metric"],
                f.statistic,
                names[rows["branch"][i]],
                rows["comparison"][i],
                ctx["basis"],
                seg_names.get(segments[i], segments[i]),
                rows["window"][i],
                rows["parameter"][i],
            )
            shown[key] = point
        for seg in set(segments):
            drawn_windows[(ctx["period"], ctx["metric"], f.statistic, ctx["basis"], seg_names.get(seg, seg))] = set(
                f.windows
            )
    for _, _, rows in tables:
        for r in rows:
            shown.setdefault(
                _key(
                    r.period, r.metric, r.statistic, r.branch, r.comparison, r.basis, r.segment, r.window, r.parameter
                ),
                r.point,
            )
    missing = []
    checked = 0
    all_windows: dict[tuple, set[int]] = {}
    for period, rows in res.statistics.items():
        for r in rows:
            all_windows.setdefault((period, r.metric, r.statistic, report.basis_of(r), r.segment), set()).add(
                report.window_of(r)
            )
            if r.comparison is not None and r.comparison_to_branch != reference:
                continue  # comparisons between two treatment branches: the pairwise tables (overall) only
            basis = report.basis_of(r)
            window = report.window_of(r)
            where = (period, r.metric, r.statistic, basis, r.segment)
            if r.statistic in report.SHOWN_WINDOWS and where in drawn_windows and window not in drawn_windows[where]:
                continue  # a distribution window the figure's caption says is not drawn
            key = _key(
                period,
                r.metric,
                r.statistic,
                r.branch,
                r.comparison or "absolute",
                basis,
                r.segment,
                window,
                r.parameter,
            )
            checked += 1
            if key not in shown or shown[key] != report.finite(r.point):
                missing.append(key)
    assert checked > 5_000
    assert not missing, f"{len(missing)} numbers of the input are on no figure and in no table, e.g. {missing[:3]}"
    # every distribution figure of a series draws its first and its latest window
    for where, windows in drawn_windows.items():
        assert {min(all_windows[where]), max(all_windows[where])} <= windows


def test_a_figure_is_drawn_once_and_shown_in_each_segment_view(real_size):
    spec, _, page, figures, _ = real_size
    (daily,) = [t for t in page.tabs if t.period == "daily"]
    by_number = {f.number: f for f in figures}
    seen: dict[int, set[str]] = {}
    for view in daily.views:
        for group in view.groups:
            for metric in group.metrics:
                for sb in metric.statistics:
                    if sb.figure is None:
                        continue
                    seen.setdefault(sb.figure.number, set()).add(view.segment)
                    fig = by_number[sb.figure.number]
                    assert view.segment in fig.segments
                    assert f"this view's segment {view.segment} is the column" in sb.note
    assert all(segs == set(spec.segments) for segs in seen.values())


# --- the segment figures drawn by R: one column per segment, no empty or "NA" panel -------------

SEGMENTS = ["all", "new_users", "existing_users", "a-segment-with-a-very-long-name-indeed"]


def _segment_rows(
    branches,
    windows,
    segments,
    *,
    reference="control",
    comparisons=("absolute", "relative_uplift"),
    grid=(None,),
    skip=(),
):
    keys = ("branch", "comparison", "window", "parameter", "point", "lower", "upper", "segment")
    rows = {k: [] for k in keys}
    for s, seg in enumerate(segments):
        for w in windows:
            for i, b in enumerate(branches):
                for c in comparisons:
                    if (c != "absolute" and b == reference) or (seg, c) in skip:
                        continue
                    for p in grid:
                        point = (0.02 * i if c != "absolute" else 5 + i / 10 + s) + (p or 0)
                        for k, v in zip(keys, (b, c, w, p, point, point - 0.3, point + 0.3, seg)):
                            rows[k].append(v)
    return rows


def test_segment_figures_draw_a_column_per_segment(tmp_path):
    import json
    import shutil
    import subprocess

    from tests.helpers import unavailable

    if shutil.which("Rscript") is None:
        unavailable("Rscript not found: R is needed to draw figures")
    branches = ["control", "treatment-a", "treatment-b", "treatment-c"]
    grid = [0.1 * i for i in range(1, 10)]
    cases = [  # (statistic, windows, segments, comparisons, skip, rows of panels)
        ("mean", list(range(1, 29)), SEGMENTS, ("absolute", "relative_uplift"), (), 4),  # value + 3 uplift rows
        ("binomial", [1, 2, 3, 4], SEGMENTS[:2], ("absolute", "relative_uplift"), (), 2),  # dodged: value, uplift
        (
            "mean",
            list(range(1, 29)),
            SEGMENTS[:3],
            ("absolute", "relative_uplift"),
            (("existing_users", "relative_uplift"),),
            4,
        ),
        ("deciles", [1, 28], SEGMENTS, ("absolute", "relative_uplift"), (), 4),  # 2 windows × (value, uplift)
        ("kernel_density_estimate", [1, 10, 19, 28], SEGMENTS[:2], ("absolute",), (), 4),
        ("empirical_cdf", [1], SEGMENTS[:3], ("absolute",), (), 1),  # overall: one row
    ]
    figures = []
    for stat, windows, segs, comps, skip, _ in cases:
        rows = _segment_rows(
            branches,
            windows,
            segs,
            comparisons=comps,
            skip=skip,
            grid=grid if stat not in ("mean", "binomial") else (None,),
        )
        figures.append(
            report.FigureSpec(
                len(figures) + 1,
                stat,
                "Metric",
                "control",
                branches,
                len(windows) > 1,
                windows,
                "alt",
                rows,
                segments=segs,
            )
        )
    assert [f.layout for f in figures[:3]] == [
        "segments-small-multiples",
        "segments-dodged",
        "segments-small-multiples",
    ]
    plots = tmp_path / "plots.json"
    plots.write_text(json.dumps({"figures": [dataclasses.asdict(f) for f in figures]}))
    script = (
        "args <- commandArgs(TRUE); source(file.path(args[1], 'plots.R')); source(file.path(args[1], 'report.R'));"
        "spec <- jsonlite::fromJSON(args[2], simplifyVector = TRUE, simplifyDataFrame = FALSE);"
        "out <- lapply(spec$figures, function(f) { lay <- ggplot2::ggplot_build(partybal_plot(f))$layout$layout;"
        "  list(panels = nrow(lay), cols = length(unique(lay$COL)), rows = length(unique(lay$ROW)),"
        "  na = any(is.na(lay[setdiff(names(lay), c('PANEL', 'ROW', 'COL', 'SCALE_X', 'SCALE_Y'))]))) });"
        "r <- partybal_draw_all(args[2], args[3], 'figs', 1L);"
        "cat(jsonlite::toJSON(list(built = out, drawn = r), auto_unbox = TRUE))"
    )
    proc = subprocess.run(
        ["Rscript", "-e", script, str(report.R_DIR), str(plots), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for f, (stat, windows, segs, *_, n_rows), built in zip(figures, cases, result["built"]):
        what = (stat, len(windows), len(segs))
        assert not built["na"], what
        assert (built["cols"], built["rows"]) == (len(segs), n_rows), (what, built)
        assert built["panels"] == len(segs) * n_rows, (what, built)  # the grid is full: no segment column missing
        drawn = result["drawn"][str(f.number)]
        assert "error" not in drawn, (what, drawn)
        head = (tmp_path / drawn["src"]).read_bytes()[:24]
        assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (
            850,
            round(f.height * 100),
        ), what

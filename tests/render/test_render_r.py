"""Real knits with R: the CLI, edge cases, hostile names, failure safety, every plot function."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from partybal import layout
from partybal.page import render as partybal_render
from partybal.page.report import R_DIR, FigureSpec, plotted_statistics
from tests.helpers import ROOT, copy_sample, write_json
from tests.render.test_report import HOSTILE, row
from tests.support.synthetic import ExperimentSpec, MetricSpec, write_experiment

pytestmark = pytest.mark.r


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "partybal", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def render(results: Path, slug: str, out: Path) -> subprocess.CompletedProcess:
    return cli("render", slug, "--results", str(results), "--out", str(out))


def assets_of(html: str) -> list[str]:
    return re.findall(r'<img class="plot"[^>]* src="([^"]+)"', html)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sample_page_renders_with_existing_assets(tmp_path, sample_dir):
    out = tmp_path / "site"
    proc = render(sample_dir, "sample-search-defaults", out)
    assert proc.returncode == 0, proc.stderr
    page = out / "sample_search_defaults.html"
    html = page.read_text()
    srcs = assets_of(html)
    assert srcs and all((out / s).is_file() and (out / s).stat().st_size > 1000 for s in srcs)
    assert 'id="summary-table"' in html and "Search Count" in html and "Outcome: Search" in html
    assert "branch-b" in html and "branch-c" in html
    # exactly the assets the page uses and the render manifest (what it may delete later), nothing
    # else, and no work folders left behind
    manifest = partybal_render.manifest_path(out, "sample_search_defaults")
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    exported = re.findall(r'<a class="csv" href="([^"]+)"', html) + re.findall(
        r'<a href="([^"]+)" id="render-manifest"', html
    )
    assert len(exported) > len(srcs)  # a CSV per table and figure, and the render's manifest.json
    assert files == {"sample_search_defaults.html", manifest.name, *srcs, *exported}
    assert [p for p in out.iterdir() if p.name.startswith(".")] == [manifest]


def test_rerender_replaces_assets_and_removes_old_ones(tmp_path, sample_dir):
    out = tmp_path / "site"
    assert render(sample_dir, "sample_search_defaults", out).returncode == 0
    first = assets_of((out / "sample_search_defaults.html").read_text())
    assert render(sample_dir, "sample_search_defaults", out).returncode == 0
    second = assets_of((out / "sample_search_defaults.html").read_text())
    assert first == second  # the same figures (by content hash): reused, not drawn again
    assert all((out / s).exists() for s in second)
    assert {
        p.relative_to(out).as_posix() for p in (out / layout.figures_dir("sample_search_defaults")).iterdir()
    } == set(second)
    # the earlier render's folder is gone: one render folder and the figures folder are left
    assert len(list((out / "sample_search_defaults_files").iterdir())) == 2


def small(slug: str, **kw) -> ExperimentSpec:
    metrics = kw.pop(
        "metrics",
        (
            MetricSpec("active_hours", ("mean", "deciles"), True, "Active Hours"),
            MetricSpec("retained", ("binomial",), True),
            MetricSpec("identity", ("count",)),
        ),
    )
    return ExperimentSpec(slug=slug, segments=("all",), bases=("enrollments",), grid_points=8, metrics=metrics, **kw)


EDGE_CASES = {
    "one-branch": (
        small("one-branch", branches=("control",), windows={"overall": 1, "weekly": 2}),
        ["No comparisons between branches"],
    ),
    "no-overall": (small("no-overall", windows={"weekly": 3}), ["latest window (3)", "Not available: Overall"]),
    "unknown-stat": (
        small("unknown-stat", windows={"overall": 1}, metrics=(MetricSpec("m", ("quantum_flux",)),)),
        ["no plot for this statistic yet", "quantum_flux"],
    ),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_render(tmp_path, name):
    spec, expected = EDGE_CASES[name]
    write_experiment(tmp_path / "results", spec)
    proc = render(tmp_path / "results", spec.slug, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "site" / layout.page_name(layout.file_slug(spec.slug))).read_text()
    for text in expected:
        assert text in html


def test_only_errors_and_empty_array(tmp_path):
    results = tmp_path / "results"
    write_json(
        results / "errors/errors_broken_exp.json",
        [
            {
                "filename": "a.py",
                "func_name": "f",
                "log_level": "ERROR",
                "message": "Enrollment query failed",
                "exception_type": "EnrollmentNotCompleteException",
                "timestamp": "2026-01-01T00:00:00Z",
                "experiment": "broken-exp",
            }
        ],
    )
    proc = render(results, "broken_exp", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "site/broken_exp.html").read_text()
    assert "EnrollmentNotCompleteException" in html and "Enrollment query failed" in html
    assert "<h1>broken-exp</h1>" in html and "No overall or weekly results yet" in html

    write_json(results / "statistics/statistics_empty_exp_overall.json", [])
    proc = render(results, "empty-exp", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    assert "The overall results file is empty." in (tmp_path / "site/empty_exp.html").read_text()


MARKER = Path("/tmp/partybal-pwned")


def render_hostile(tmp_path: Path) -> Path:
    """Render an experiment whose names, descriptions and errors try to break out; returns the site."""
    MARKER.unlink(missing_ok=True)
    results = tmp_path / "results"
    rows = []
    for name in HOSTILE:
        for w in ("1", "2"):
            rows += [
                row(metric=name, branch=name, window=w),
                row(metric=name, branch="control", window=w),
                row(metric=name, branch=name, comparison="relative_uplift", to="control", window=w, point=0.1),
            ]
    write_json(results / "statistics/statistics_hostile_weekly.json", rows)
    write_json(
        results / "statistics/statistics_hostile_overall.json",
        [dict(r, window_index="1") for r in rows if r["window_index"] == "1"],
    )
    write_json(
        results / "metadata/metadata_hostile.json",
        {
            "metrics": {
                HOSTILE[0]: {
                    "bigger_is_better": True,
                    "analysis_bases": ["enrollments"],
                    "friendly_name": HOSTILE[1],
                    "description": HOSTILE[2],
                }
            }
        },
    )
    write_json(
        results / "errors/errors_hostile.json",
        [
            {
                "filename": "x",
                "func_name": "f",
                "log_level": "ERROR",
                "message": m,
                "metric": m,
                "timestamp": "2026-01-01T00:00:00Z",
            }
            for m in HOSTILE
        ],
    )
    proc = render(results, "hostile", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "site"


def test_hostile_names_render_escaped_and_run_nothing(tmp_path):
    html = (render_hostile(tmp_path) / "hostile.html").read_text()
    assert not MARKER.exists()
    assert "<script>alert(1)</script>" not in html
    assert html.count("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;") >= 3
    assert "back\\slash ünï 📈" in html
    assert len(assets_of(html)) >= len(HOSTILE)


def test_bad_input_fails_cleanly_and_keeps_the_good_page(tmp_path, sample_dir):
    results = copy_sample(tmp_path / "results", "sample_search_defaults")
    out = tmp_path / "site"
    assert render(results, "sample-search-defaults", out).returncode == 0
    before = snapshot(out)
    bad = results / "statistics/statistics_sample_search_defaults_overall.json"
    bad.write_text(bad.read_text()[:5000])  # truncated upload
    proc = render(results, "sample-search-defaults", out)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "partybal render: error: statistics/statistics_sample_search_defaults_overall.json: not valid JSON"
    )
    assert snapshot(out) == before  # the earlier good page and its figures are untouched, nothing added


def test_unknown_slug_is_a_clear_error(tmp_path, sample_dir):
    proc = render(sample_dir, "no-such-experiment", tmp_path / "site")
    assert proc.returncode == 1
    assert "no statistics, metadata or errors files for experiment 'no_such_experiment'" in proc.stderr
    assert not (tmp_path / "site" / "no_such_experiment.html").exists()


def test_every_plot_function_draws(tmp_path):
    """Each plot_<statistic> in r/plots.R draws a PNG, for one window and for a series."""
    figures = []
    for stat in sorted(plotted_statistics()):
        for series in (False, True):
            windows = [1, 2, 3] if series else [1]
            rows = {k: [] for k in ("branch", "comparison", "window", "parameter", "point", "lower", "upper")}
            for w in windows:
                for b in ("control", "treatment"):
                    for comparison in ("absolute", "relative_uplift", "difference"):
                        for p in (
                            [0.1, 0.5, 0.9]
                            if stat in ("deciles", "kernel_density_estimate", "empirical_cdf")
                            else [None]
                        ):
                            rows["branch"].append(b)
                            rows["comparison"].append(comparison)
                            rows["window"].append(w)
                            rows["parameter"].append(p)
                            rows["point"].append(1.0 + w / 10)
                            rows["lower"].append(
                                0.8 if comparison != "absolute" or stat not in ("kernel_density_estimate",) else None
                            )
                            rows["upper"].append(1.3)
            figures.append(
                FigureSpec(
                    len(figures) + 1, stat, "Metric", "control", ["control", "treatment"], series, windows, "alt", rows
                )
            )
    plots = tmp_path / "plots.json"
    plots.write_text(json.dumps({"figures": [f.__dict__ for f in figures]}))
    script = (
        "args <- commandArgs(TRUE); source(file.path(args[1], 'plots.R')); source(file.path(args[1], 'report.R'));"
        "r <- partybal_draw_all(args[2], args[3], 'figs', 2L);"
        "cat(jsonlite::toJSON(r, auto_unbox = TRUE))"
    )
    proc = subprocess.run(
        ["Rscript", "-e", script, str(R_DIR), str(plots), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for f in figures:
        drawn = result[str(f.number)]
        assert "error" not in drawn, (f.statistic, f.series, drawn)
        assert (tmp_path / drawn["src"]).stat().st_size > 2000


# --- readable at real size: layouts, sizes and facets follow the content ------------------------

LONG_NAMES = ["control"] + [f"treatment-{c}-{'long-name-' * (i % 3)}variant" for i, c in enumerate("abcdefghi")]


def test_figure_layout_follows_content():
    """Pure: a figure's layout and size come from its branches and windows, within bounds."""
    from partybal.page.report import figure_layout, legend_rows, shown_windows

    for stat in ("mean", "binomial", "deciles", "kernel_density_estimate", "empirical_cdf", "quantum_flux"):
        for n_branches in range(2, 11):
            for n_windows in (1, 3, 8, 28, 60, 90):
                windows = shown_windows(stat, list(range(1, n_windows + 1)))
                lay, width, height, _ = figure_layout(stat, "control", LONG_NAMES[:n_branches], windows, n_windows > 1)
                assert width == 8.5 and 2.0 <= height <= 13.0, (stat, n_branches, n_windows, height)
    # long series and many branches: lines in one row of small multiples per compared branch
    assert figure_layout("mean", "control", LONG_NAMES[:4], list(range(1, 29)), True)[0] == "small-multiples"
    assert figure_layout("mean", "control", LONG_NAMES[:3], [1, 2, 3], True)[0] == "dodged"
    assert figure_layout("mean", "control", LONG_NAMES, [1, 2, 3], True)[0] == "small-multiples"
    heights = [figure_layout("mean", "control", LONG_NAMES[:n], list(range(1, 61)), True)[2] for n in range(2, 11)]
    assert heights == sorted(heights) and heights[0] < 3 < 10 < heights[-1]
    # distributions of a long series: first, latest and evenly between, at most 4 or 8
    assert shown_windows("deciles", list(range(1, 61))) == [1, 21, 40, 60]
    assert (
        shown_windows("empirical_cdf", list(range(1, 29)))[::7] == [1, 28]
        and len(shown_windows("empirical_cdf", list(range(1, 91)))) == 8
    )
    assert shown_windows("mean", list(range(1, 91))) == list(range(1, 91))
    # the legend wraps onto rows that fit the figure's width
    assert legend_rows(["control", "treatment"]) == 1 and legend_rows(LONG_NAMES) >= 4


def _series_rows(
    branches, windows, *, reference="control", comparisons=("absolute", "relative_uplift", "difference"), grid=(None,)
):
    rows = {k: [] for k in ("branch", "comparison", "window", "parameter", "point", "lower", "upper")}
    for w in windows:
        for i, b in enumerate(branches):
            for c in comparisons:
                if c != "absolute" and b == reference:
                    continue
                for p in grid:
                    point = (0.02 * i if c != "absolute" else 5 + i / 10) + (p or 0)
                    for k, v in zip(
                        ("branch", "comparison", "window", "parameter", "point", "lower", "upper"),
                        (b, c, w, p, point, point - 0.3, point + 0.3),
                    ):
                        rows[k].append(v)
    return rows


def test_real_size_figures_have_no_empty_facets_and_sizes_follow_content(tmp_path):
    """Long series (28, 60, 90 windows) and 10 branches: small multiples with thinned window labels,
    no "NA" or empty panel (also when a series has no uplift rows or the reference is not among the
    branches), and each PNG exactly the size its layout asked for."""
    from partybal.page.report import shown_windows

    grid = [0.1 * i for i in range(1, 10)]
    cases = [  # (statistic, branches, windows, reference, comparisons, expected panels)
        ("mean", LONG_NAMES, 60, "control", ("absolute", "relative_uplift", "difference"), 18),
        ("binomial", LONG_NAMES[:4], 28, "control", ("absolute", "relative_uplift"), 6),
        ("mean", LONG_NAMES[:4], 90, "control", ("absolute",), 3),  # no uplift rows: value panels only
        ("mean", ["control", "treatment"], 3, "control", ("absolute",), 1),  # dodged, no uplift rows
        ("mean", ["control", "treatment"], 29, "Control", ("absolute",), 2),  # reference not among the branches
        ("binomial", ["a", "b", "c"], 5, None, ("absolute", "relative_uplift"), 2),  # no reference known
        ("deciles", LONG_NAMES, 60, "control", ("absolute", "relative_uplift"), 8),
        ("kernel_density_estimate", LONG_NAMES, 60, "control", ("absolute",), 8),
        ("empirical_cdf", LONG_NAMES[:4], 28, "control", ("absolute",), 8),
    ]
    figures = []
    for stat, branches, n, ref, comps, _ in cases:
        windows = shown_windows(stat, list(range(1, n + 1)))
        rows = _series_rows(
            branches,
            windows,
            reference=ref,
            comparisons=comps,
            grid=grid if stat not in ("mean", "binomial") else (None,),
        )
        figures.append(FigureSpec(len(figures) + 1, stat, "Metric", ref, branches, True, windows, "alt", rows))
    plots = tmp_path / "plots.json"
    plots.write_text(json.dumps({"figures": [f.__dict__ for f in figures]}))
    script = (
        "args <- commandArgs(TRUE); source(file.path(args[1], 'plots.R')); source(file.path(args[1], 'report.R'));"
        "spec <- jsonlite::fromJSON(args[2], simplifyVector = TRUE, simplifyDataFrame = FALSE);"
        "out <- lapply(spec$figures, function(f) { b <- ggplot2::ggplot_build(partybal_plot(f)); lay <- b$layout$layout;"
        "  keys <- setdiff(names(lay), c('PANEL', 'ROW', 'COL', 'SCALE_X', 'SCALE_Y'));"
        "  labels <- if (length(keys)) do.call(paste, c(lapply(keys, function(k) as.character(lay[[k]])), sep = '|')) else character(0);"
        "  x <- b$layout$panel_params[[1]]$x$get_breaks(); list(panels = nrow(lay), labels = labels,"
        "  na = any(is.na(lay[keys])) || any(grepl('(^|\\\\|)NA($|\\\\|)', labels)), breaks = sum(!is.na(x))) });"
        "r <- partybal_draw_all(args[2], args[3], 'figs', 2L);"
        "cat(jsonlite::toJSON(list(built = out, drawn = r), auto_unbox = TRUE))"
    )
    proc = subprocess.run(
        ["Rscript", "-e", script, str(R_DIR), str(plots), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for f, (stat, branches, n, ref, comps, panels), built in zip(figures, cases, result["built"]):
        what = (stat, len(branches), n, ref, comps)
        assert not built["na"], (what, built["labels"])
        assert built["panels"] == panels, (what, built["labels"])
        if stat in ("mean", "binomial"):
            assert 2 <= built["breaks"] <= 12, (what, built["breaks"])  # window labels thinned to fit
        drawn = result["drawn"][str(f.number)]
        assert "error" not in drawn, (what, drawn)
        head = (tmp_path / drawn["src"]).read_bytes()[:24]
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        assert abs(width - f.width * 100) <= 1 and abs(height - f.height * 100) <= 1, (what, width, height)
        assert 200 <= height <= 1300, (what, height)

"""Real knits with R: the CLI, edge cases, hostile names, failure safety, every plot function."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from partybal import layout
from partybal.report import R_DIR, FigureSpec, plotted_statistics
from partybal.synthetic import ExperimentSpec, MetricSpec, write_experiment
from tests.helpers import ROOT, copy_sample, write_json
from tests.render.test_report import HOSTILE, row

pytestmark = pytest.mark.r


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "partybal", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


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
    # exactly the assets the page uses, nothing else, and no work folders left behind
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"sample_search_defaults.html", *srcs}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_rerender_replaces_assets_and_removes_old_ones(tmp_path, sample_dir):
    out = tmp_path / "site"
    assert render(sample_dir, "sample_search_defaults", out).returncode == 0
    first = assets_of((out / "sample_search_defaults.html").read_text())
    assert render(sample_dir, "sample_search_defaults", out).returncode == 0
    second = assets_of((out / "sample_search_defaults.html").read_text())
    assert first != second
    assert all((out / s).exists() for s in second) and not any((out / s).exists() for s in first)
    assert len(list((out / "sample_search_defaults_files").iterdir())) == 1


def small(slug: str, **kw) -> ExperimentSpec:
    metrics = kw.pop("metrics", (
        MetricSpec("active_hours", ("mean", "deciles"), True, "Active Hours"),
        MetricSpec("retained", ("binomial",), True),
        MetricSpec("identity", ("count",)),
    ))
    return ExperimentSpec(slug=slug, segments=("all",), bases=("enrollments",), grid_points=8, metrics=metrics, **kw)


EDGE_CASES = {
    "one-branch": (small("one-branch", branches=("control",), windows={"overall": 1, "weekly": 2}), ["No comparisons between branches"]),
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
    write_json(results / "errors/errors_broken_exp.json", [
        {"filename": "a.py", "func_name": "f", "log_level": "ERROR", "message": "Enrollment query failed",
         "exception_type": "EnrollmentNotCompleteException", "timestamp": "2026-01-01T00:00:00Z", "experiment": "broken-exp"}])
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
            rows += [row(metric=name, branch=name, window=w), row(metric=name, branch="control", window=w),
                     row(metric=name, branch=name, comparison="relative_uplift", to="control", window=w, point=0.1)]
    write_json(results / "statistics/statistics_hostile_weekly.json", rows)
    write_json(results / "statistics/statistics_hostile_overall.json", [dict(r, window_index="1") for r in rows if r["window_index"] == "1"])
    write_json(results / "metadata/metadata_hostile.json", {"metrics": {HOSTILE[0]: {
        "bigger_is_better": True, "analysis_bases": ["enrollments"], "friendly_name": HOSTILE[1], "description": HOSTILE[2]}}})
    write_json(results / "errors/errors_hostile.json", [
        {"filename": "x", "func_name": "f", "log_level": "ERROR", "message": m, "metric": m, "timestamp": "2026-01-01T00:00:00Z"}
        for m in HOSTILE])
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
    assert lines[0].startswith("partybal: error: statistics/statistics_sample_search_defaults_overall.json: not valid JSON")
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
                        for p in ([0.1, 0.5, 0.9] if stat in ("deciles", "kernel_density_estimate", "empirical_cdf") else [None]):
                            rows["branch"].append(b)
                            rows["comparison"].append(comparison)
                            rows["window"].append(w)
                            rows["parameter"].append(p)
                            rows["point"].append(1.0 + w / 10)
                            rows["lower"].append(0.8 if comparison != "absolute" or stat not in ("kernel_density_estimate",) else None)
                            rows["upper"].append(1.3)
            figures.append(FigureSpec(len(figures) + 1, stat, "Metric", "control", ["control", "treatment"], series, windows, "alt", rows))
    plots = tmp_path / "plots.json"
    plots.write_text(json.dumps({"figures": [f.__dict__ for f in figures]}))
    script = (
        "args <- commandArgs(TRUE); source(file.path(args[1], 'plots.R')); source(file.path(args[1], 'report.R'));"
        "r <- partybal_draw_all(args[2], args[3], 'figs', 2L);"
        "cat(jsonlite::toJSON(r, auto_unbox = TRUE))"
    )
    proc = subprocess.run(["Rscript", "-e", script, str(R_DIR), str(plots), str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for f in figures:
        drawn = result[str(f.number)]
        assert "error" not in drawn, (f.statistic, f.series, drawn)
        assert (tmp_path / drawn["src"]).stat().st_size > 2000

"""Exact exports (issue 17.2), without R: every table's and figure's CSV holds exactly the numbers it
shows, hostile names survive quoting, and the render manifest names its inputs' generations."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from partybal import layout
from partybal.page import exports
from partybal.page.report import FigureSpec, Table, build_page
from tests.helpers import ROOT
from tests.render.test_report import PLOTTED, experiment, meta, row

HOSTILE = json.loads((ROOT / "tests/corpus/hostile_strings.json").read_text())
RENDER_DIR = "exp_files/20261126T101010Z-abcdef"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == exports.COLUMNS
    assert all(len(r) == len(exports.COLUMNS) for r in rows), "every line has every column"
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def tables_of(page) -> list[Table]:
    out = [page.summary.populations] if page.summary and page.summary.populations else []
    for tab in page.tabs:
        for view in tab.views:
            for group in view.groups:
                for metric in group.metrics:
                    out.extend(sb.table for sb in metric.statistics if sb.table is not None)
                    if metric.pairwise is not None:
                        out.append(metric.pairwise)
    if page.problems is not None:
        out.append(page.problems)
    return out


def figures_of(page):
    return [
        sb.figure
        for tab in page.tabs
        for v in tab.views
        for g in v.groups
        for m in g.metrics
        for sb in m.statistics
        if sb.figure
    ]


def hostile_experiment(results_dir):
    """Hostile names as metric, branch and segment, in a plotted weekly series and overall tables."""
    rows = []
    for i, name in enumerate(HOSTILE):
        for w in ("1", "2"):
            rows += [
                row(metric=name, branch=name, window=w, point=1.0 + i / 7),
                row(metric=name, branch="control", window=w, point=2.0 + i / 3),
                row(
                    metric=name, branch=name, comparison="relative_uplift", to="control", window=w, point=0.1 + i / 100
                ),
                row(metric=name, statistic="count", branch=name, window=w, point=100.0 + i),
            ]
    overall = [dict(r, window_index="1") for r in rows if r["window_index"] == "1"]
    overall += [row(metric="seg", branch=b, segment=HOSTILE[6]) for b in ("control", HOSTILE[0])]
    md = meta(
        {
            HOSTILE[0]: {
                "bigger_is_better": True,
                "analysis_bases": ["enrollments"],
                "friendly_name": HOSTILE[1],
                "description": HOSTILE[2],
            }
        }
    )
    return experiment(results_dir, {"weekly": rows, "overall": overall}, md)


def test_csv_quoting_keeps_hostile_names_exact(results_dir, tmp_path):
    sink: list = []
    page, figures = build_page(
        hostile_experiment(results_dir), plotted=PLOTTED, render_dir=RENDER_DIR, table_exports=sink
    )
    entries = exports.write_all(tmp_path, RENDER_DIR, figures, sink)
    assert figures and sink
    names: set[str] = set()
    for e in entries:
        path = tmp_path / RENDER_DIR / e["file"]
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n") and "\r" not in text
        rows = read_csv(path)
        assert len(rows) == e["rows"]
        names.update(r["metric"] for r in rows)
        names.update(r["branch"] for r in rows)
        names.update(r["segment"] for r in rows)
    # every hostile string comes back exactly (quotes, backslashes, a line break, 300 characters, …)
    assert set(HOSTILE) <= names
    # the friendly name (itself hostile) is the metric's label, the raw name its metric
    text = "".join((tmp_path / RENDER_DIR / e["file"]).read_text() for e in entries)
    parsed = [r for e in entries for r in read_csv(tmp_path / RENDER_DIR / e["file"])]
    assert {(r["metric"], r["metric_label"]) for r in parsed if r["metric"] == HOSTILE[0]} == {(HOSTILE[0], HOSTILE[1])}
    assert '"line\nbreak"' in text  # a field with a line break is quoted, not split


def test_lone_surrogates_and_non_finite_numbers():
    rows = [
        exports.ExportRow(
            "m\ud800",
            "m",
            "mean",
            "Mean",
            'b,"x"',
            "b",
            "absolute",
            "",
            "enrollments",
            "all",
            "overall",
            1,
            None,
            1.5,
            float("nan"),
            float("inf"),
            0.95,
        )
    ]
    spec = FigureSpec(
        1,
        "mean",
        "m",
        "control",
        ["b"],
        False,
        [1],
        "alt",
        {
            "branch": ["b"],
            "comparison": ["absolute"],
            "window": [1],
            "parameter": [None],
            "point": [0.1],
            "lower": [float("nan")],
            "upper": [None],
        },
        context={"metric": "m"},
    )
    assert [(r.point, r.lower, r.upper) for r in exports.figure_rows(spec)] == [(0.1, None, None)]
    text = exports.csv_text(rows)
    assert '"b,""x"""' in text
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        n, digest = exports.write_csv(Path(tmp) / "x.csv", rows)
        data = (Path(tmp) / "x.csv").read_bytes()
    assert n == 1 and len(digest) == 64
    assert b"m\\ud800" in data  # UTF-8 cannot carry a lone surrogate: written as an escape
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8"))))[1]
    assert parsed[exports.COLUMNS.index("lower")] == "nan"  # an ExportRow keeps what it was given …
    spec_rows = exports.figure_rows(spec)
    assert exports.csv_text(spec_rows).splitlines()[1].split(",")[13:16] == [
        "0.1",
        "",
        "",
    ]  # … figure rows are finite or empty


def test_every_table_and_figure_links_the_csv_of_exactly_its_numbers(results_dir, tmp_path):
    rows = []
    for b in ("control", "t"):
        rows += [
            row(metric="m", branch=b, point=5.0 if b == "control" else 5.5),
            row(metric="m", statistic="count", branch=b, point=1000.0),
            row(metric="q", statistic="deciles", branch=b, parameter=0.5, point=3.0),
        ]
    rows += [
        row(metric="m", branch="t", comparison="relative_uplift", to="control", point=0.1),
        row(metric="m", branch="t", comparison="difference", to="control", point=0.5),
        row(metric="m", statistic="binomial", branch="t", comparison="relative_uplift", to="control", point=0.02),
        row(metric="m", statistic="binomial", branch="control", point=0.4),
        row(metric="m", statistic="binomial", branch="t", point=0.41),
    ]
    weekly = [dict(r, window_index=w) for r in rows for w in ("1", "2", "3") if r["statistic"] != "count" or w == "3"]
    res = experiment(
        results_dir,
        {"overall": rows, "weekly": weekly},
        meta({"m": {"friendly_name": "Em", "bigger_is_better": True, "analysis_bases": ["enrollments"]}}),
    )
    sink: list = []
    page, figures = build_page(res, plotted=PLOTTED, render_dir=RENDER_DIR, table_exports=sink)
    entries = exports.write_all(tmp_path, RENDER_DIR, figures, sink)
    tables, figs = tables_of(page), figures_of(page)
    assert tables and figs
    links = [t.csv for t in tables] + [f.csv for f in figs] + [page.summary.csv]
    assert all(links) and len(set(links)) == len(links) == len(entries)
    assert {f"{RENDER_DIR}/{e['file']}" for e in entries} == set(links)
    assert page.manifest == f"{RENDER_DIR}/manifest.json"
    # a table's CSV: one row per number its cells show, the cell text with it
    for t in tables:
        data = read_csv(tmp_path / t.csv)
        shown = {c.text for r in t.rows for c in r}
        assert data and all(d["shown"] in shown and d["column"] in t.columns for d in data), t.columns
    ci = next(t for t in tables if t.columns[0] == "Branch" and t.columns[1].startswith("Value [95% CI]"))
    data = read_csv(tmp_path / ci.csv)
    assert [
        (d["branch"], d["comparison"], d["compared_to"], float(d["point"]), float(d["lower"]), d["ci_level"])
        for d in data
    ] == [
        ("control", "absolute", "", 5.0, 4.9, "0.95"),
        ("t", "absolute", "", 5.5, 5.4, "0.95"),
        ("t", "relative_uplift", "control", 0.1, 0.1 - 0.1, "0.95"),
        ("t", "difference", "control", 0.5, 0.4, "0.95"),
    ]
    assert {(d["metric"], d["metric_label"], d["period"], d["basis"], d["segment"], d["window"]) for d in data} == {
        ("m", "Em", "overall", "enrollments", "all", "1")
    }
    # a figure's CSV: exactly the rows R is given (the same FigureSpec), with what they are
    for fig, spec in zip(sorted(figs, key=lambda f: f.number), sorted(figures, key=lambda s: s.number), strict=True):
        data = read_csv(tmp_path / fig.csv)
        assert len(data) == len(spec.rows["point"])
        assert [float(d["point"]) for d in data] == spec.rows["point"]
        assert [d["branch_label"] for d in data] == spec.rows["branch"]
        (period,) = {d["period"] for d in data}
        assert {d["window"] for d in data} == ({"1", "2", "3"} if period == "weekly" else {"1"})
        assert {(d["metric"], d["statistic"], d["basis"], d["segment"]) for d in data} == {
            (spec.context["metric"], spec.statistic, "enrollments", "all")
        }
    summary = read_csv(tmp_path / page.summary.csv)
    assert {(d["metric"], d["statistic"], d["branch"], float(d["point"])) for d in summary} == {
        ("m", "binomial", "t", 0.02)
    }


def test_without_a_render_folder_nothing_links_exports(results_dir):
    res = experiment(
        results_dir,
        {
            "overall": [
                row(branch="control"),
                row(branch="t"),
                row(branch="t", comparison="relative_uplift", to="control"),
            ]
        },
        meta(),
    )
    page, _ = build_page(res, plotted=PLOTTED)
    assert page.manifest == "" and all(t.csv == "" for t in tables_of(page)) and page.summary.csv == ""


def test_a_figure_of_several_metrics_or_segments_exports_each_rows_names():
    """A figure that draws several metrics or segments (small multiples) names each row's in its
    rows, as R labels it: the CSV has the names in the data."""
    spec = FigureSpec(
        1,
        "mean",
        "m",
        "control",
        ["control", "t"],
        False,
        [1],
        "alt",
        {
            "branch": ["control", "t"],
            "comparison": ["absolute", "relative_uplift"],
            "window": [1, 1],
            "parameter": [None, None],
            "point": [1.0, 0.2],
            "lower": [0.9, 0.1],
            "upper": [1.1, 0.3],
            "metric": ["a", "b"],
            "ci_level": [0.95, 0.9],
            "segment": ["all", "n\\x0a"],
        },
        context={
            "metric": "",
            "period": "overall",
            "segment": "all",
            "compared_to": "control",
            "branch_names": {"t": "t\x00raw"},
            "segment_names": {"n\\x0a": "n\n"},
        },
    )
    rows = exports.figure_rows(spec)
    assert [(r.metric, r.branch, r.branch_label, r.compared_to, r.ci_level, r.period, r.segment) for r in rows] == [
        ("a", "control", "control", "", 0.95, "overall", "all"),
        ("b", "t\x00raw", "t", "control", 0.9, "overall", "n\n"),
    ]


def test_manifest_names_inputs_with_generations_and_versions(results_dir):
    md = meta()
    md["version_info"] = {
        "jetstream_image": {"path": "jetstream", "revision": "abc123"},
        "metric_definitions": [{"path": "defs", "revision": "def456"}],
    }
    res = experiment(results_dir, {"overall": [row(branch="control")]}, md)
    doc = exports.manifest(
        res,
        "20261126T101010Z-abcdef",
        "exp.html",
        [{"file": "exports/table-1.csv"}],
        r_versions={"R": "4.2.2", "ggplot2": "3.4.1"},
    )
    json.dumps(doc, allow_nan=False)
    assert {
        "schema",
        "render_id",
        "slug",
        "rendered_at",
        "page",
        "inputs",
        "versions",
        "exports",
        "csv_columns",
        "analysis_start_time",
    } <= set(doc)
    assert doc["render_id"] == "20261126T101010Z-abcdef" and doc["exports"] == [{"file": "exports/table-1.csv"}]
    assert {i["name"]: i["generation"] for i in doc["inputs"]} == res.generations and len(doc["inputs"]) == 2
    assert all(isinstance(i["generation"], int) and i["updated"].endswith("Z") for i in doc["inputs"])
    v = doc["versions"]
    assert v["partybal"] and v["R"] == "4.2.2" and v["ggplot2"] == "3.4.1"
    assert v["jetstream"]["version_info"]["jetstream_image"]["revision"] == "abc123"
    assert v["jetstream"]["version_info"]["metric_definitions"][0]["revision"] == "def456"
    assert doc["csv_columns"] == list(exports.COLUMNS)


def test_export_names_come_from_layout():
    assert layout.export_file("figure", 3) == "exports/figure-3.csv"
    assert (
        layout.render_manifest_name("exp", "20261126T101010Z-abcdef", "preview/")
        == "preview/exp_files/20261126T101010Z-abcdef/manifest.json"
    )
    assert layout.exports_dir("exp", "r") == "exp_files/r/exports"

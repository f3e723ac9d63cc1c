"""Exact exports through a real render with R (issue 17.2): every table and figure on the page links
a CSV that exists; the CSV behind each figure has exactly the rows of the statistics file it came
from (numbers equal, labels right), and R reads back the same doubles."""

from __future__ import annotations

import csv
import json
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from partybal import layout
from partybal.page import exports
from partybal.page.render import render_to_dir
from partybal.page.report import STATISTIC_LABELS, shown
from partybal.storage import LocalResults
from tests.support.synthetic import ExperimentSpec, MetricSpec, write_experiment

pytestmark = pytest.mark.r

# Tables without numbers of the results (or not from the statistics files) carry no CSV.
NOT_EXPORTED = {"completeness-map", "errors-table", "context-branches", "srm-table"}
ODD_METRIC = 'we"ird, metric\nname'
ODD_BRANCH = 'tr,"eat'


class Links(HTMLParser):
    """The page's figures, tables and CSV links, in document order."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple[str, str]] = []
        self.manifest = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if tag == "img" and "plot" in classes:
            self.events.append(("figure", a.get("src") or ""))
        elif tag == "p" and "plot-error" in classes:
            self.events.append(("figure", ""))
        elif tag == "table" and not classes & NOT_EXPORTED:
            self.events.append(("table", " ".join(sorted(classes))))
        elif tag == "a" and "csv" in classes:
            self.events.append(("csv", a.get("href") or ""))
        elif tag == "a" and a.get("id") == "render-manifest":
            self.manifest = a.get("href") or ""


def spec() -> ExperimentSpec:
    return ExperimentSpec(
        slug="exports-check",
        branches=("control", ODD_BRANCH),
        segments=("all", "new_users"),  # a series figure may show both side by side
        bases=("enrollments",),
        windows={"overall": 1, "weekly": 3},
        metrics=(
            MetricSpec("active_hours", ("mean", "deciles"), True, "Active Hours"),
            MetricSpec(ODD_METRIC, ("binomial",), True),
            MetricSpec("identity", ("count",)),
        ),
        grid_points=8,
        errors=1,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == exports.COLUMNS
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def num(text: str) -> float | None:
    return float(text) if text != "" else None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    results = root / "results"
    write_experiment(results, spec())
    page, built = render_to_dir(LocalResults(results), "exports-check", root / "site", cores=1)
    return results, root / "site", page, built


def test_every_figure_and_table_links_a_csv_that_exists(rendered):
    _, site, page, built = rendered
    parser = Links()
    parser.feed(page.read_text())
    events = parser.events
    figures = [i for i, (kind, _) in enumerate(events) if kind == "figure"]
    tables = [i for i, (kind, _) in enumerate(events) if kind == "table"]
    assert figures and len(tables) >= 5
    link = {}
    for i in figures + tables:
        nxt = events[i + 1] if i + 1 < len(events) else ("end", "")
        assert nxt[0] == "csv", f"{events[i]} has no CSV link"
        link[i] = nxt[1]
    assert len(link) == len([e for e in events if e[0] == "csv"])  # no stray links
    table_links = [link[i] for i in tables]
    assert len(set(table_links)) == len(table_links)  # a table is shown once
    # a figure of several segments is shown in each of their views: the same figure, the same CSV
    assert len({link[i] for i in figures}) == built.figures > 0
    linked = sorted(set(link.values()))
    render_dir = layout.assets_dir(built.file_slug, built.render_id)
    for href in linked:
        assert href.startswith(render_dir + "/exports/") and (site / href).is_file(), href
    # the manifest: linked, in the same render folder, listing exactly these files with their checksums
    assert parser.manifest == layout.render_manifest_name(built.file_slug, built.render_id)
    doc = json.loads((site / parser.manifest).read_text())
    assert doc["render_id"] == built.render_id and doc["page"] == page.name
    assert {f"{render_dir}/{e['file']}" for e in doc["exports"]} == set(linked)
    import hashlib

    for e in doc["exports"]:
        assert hashlib.sha256((site / render_dir / e["file"]).read_bytes()).hexdigest() == e["sha256"]
    assert {i["name"]: i["generation"] for i in doc["inputs"]} == built.results.generations
    assert doc["versions"]["R"] and doc["versions"]["ggplot2"]


def test_figure_csvs_hold_exactly_the_rows_of_their_statistics_file(rendered):
    results, site, page, built = rendered
    md = json.loads(next((results / "metadata").glob("*.json")).read_text())
    friendly = {m: (d.get("friendly_name") or m) for m, d in md["metrics"].items()}
    source: dict[tuple, dict] = {}
    for f in (results / "statistics").glob("*.json"):
        period = f.stem.rsplit("_", 1)[1]
        for r in json.loads(f.read_text()):
            key = (
                period,
                r["metric"],
                r["statistic"],
                r["branch"],
                r["comparison"] or "absolute",
                r["segment"],
                r["analysis_basis"],
                int(r["window_index"]),
                None if r["parameter"] is None else float(r["parameter"]),
            )
            assert key not in source
            source[key] = {**r, "period": period}
    parser = Links()
    parser.feed(page.read_text())
    events = parser.events
    figure_csvs = sorted({events[i + 1][1] for i, (kind, _) in enumerate(events) if kind == "figure"})
    checked = Counter()
    for href in figure_csvs:
        rows = read_csv(site / href)
        assert rows, href
        (where,) = {(d["period"], d["metric"], d["statistic"], d["basis"]) for d in rows}
        segments = {d["segment"] for d in rows}
        for d in rows:
            key = (
                d["period"],
                d["metric"],
                d["statistic"],
                d["branch"],
                d["comparison"],
                d["segment"],
                d["basis"],
                int(d["window"]),
                num(d["parameter"]),
            )
            s = source[key]  # a row the statistics file has
            assert (num(d["point"]), num(d["lower"]), num(d["upper"])) == (s["point"], s["lower"], s["upper"]), key
            assert num(d["ci_level"]) == s["ci_width"]
            assert d["compared_to"] == (s["comparison_to_branch"] or "")
            assert (
                d["metric_label"] == shown(friendly[d["metric"]])
                and d["statistic_label"] == STATISTIC_LABELS[d["statistic"]]
            )
            assert d["branch_label"] == shown(d["branch"])  # as the page prints it (a line break made visible)
        # … and every row of the file the figure is about: the values and the comparisons against the reference
        # (a distribution figure of a long series draws some of its windows: those, completely)
        windows = {int(d["window"]) for d in rows}
        if where[2] != "deciles":
            assert len(windows) == spec().windows[where[0]], href
        expected = [
            s
            for s in source.values()
            if (s["period"], s["metric"], s["statistic"], s["analysis_basis"]) == where
            and s["segment"] in segments
            and int(s["window_index"]) in windows
            and (s["comparison"] is None or s["comparison_to_branch"] == "control")
        ]
        assert len(rows) == len(expected), href
        checked[where[2]] += 1
    assert (
        checked["deciles"] and checked["mean"] and checked["binomial"]
    )  # weekly mean/binomial, deciles in both periods
    assert any(d["metric"] == ODD_METRIC for h in figure_csvs for d in read_csv(site / h))
    assert any(d["branch"] == ODD_BRANCH for h in figure_csvs for d in read_csv(site / h))


def test_r_reads_back_the_same_numbers(rendered):
    """A data scientist's read.csv gets the doubles of the statistics file, names intact."""
    _, site, page, built = rendered
    folder = site / layout.exports_dir(built.file_slug, built.render_id)
    files = sorted(folder.glob("figure-*.csv"))
    script = (
        "for (f in commandArgs(TRUE)) { d <- read.csv(f, stringsAsFactors = FALSE, encoding = 'UTF-8', na.strings = '');"
        " cat(f, nrow(d), paste(sprintf('%.17g', c(d$point, d$lower, d$upper)), collapse = ' '), sep = '\\t');"
        " cat('\\t', paste(unique(d$metric), collapse = '|'), '\\n', sep = '') }"
    )
    out = subprocess.run(
        ["Rscript", "--vanilla", "-e", script, *map(str, files)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # a quoted line break inside a name splits R's printed line: rejoin by file
    by_file = {}
    for line in lines:
        if line.startswith(str(folder)):
            by_file[line.split("\t", 1)[0]] = line
        else:
            by_file[list(by_file)[-1]] += "\n" + line
    assert len(by_file) == len(files)
    for f in files:
        name, n, values, metrics = by_file[str(f)].split("\t")
        rows = read_csv(f)
        assert int(n) == len(rows)
        expected = [num(d[c]) for c in ("point", "lower", "upper") for d in rows]
        got = [None if v == "NA" else float(v) for v in values.split(" ")]
        assert got == expected, f.name
        assert metrics.split("|") == list(dict.fromkeys(d["metric"] for d in rows))

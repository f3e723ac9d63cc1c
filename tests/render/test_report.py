"""The page model: pure functions from validated results to dataclasses (no R)."""

import re

import pytest

from partybal.page import templating
from partybal.page.report import build_page, choose_reference, significance
from partybal.page.results import load_experiment
from partybal.storage import LocalResults
from tests.generations import SITUATIONS, reference_case
from tests.helpers import write_json

PLOTTED = frozenset({"mean", "binomial", "deciles", "kernel_density_estimate", "empirical_cdf"})


def row(
    metric="m",
    statistic="mean",
    branch="control",
    comparison=None,
    to=None,
    point=1.0,
    window="1",
    segment="all",
    basis="enrollments",
    parameter=None,
):
    return {
        "metric": metric,
        "statistic": statistic,
        "branch": branch,
        "parameter": parameter,
        "comparison": comparison,
        "comparison_to_branch": to,
        "ci_width": 0.95,
        "point": point,
        "lower": point - 0.1,
        "upper": point + 0.1,
        "segment": segment,
        "analysis_basis": basis,
        "window_index": window,
    }


def experiment(root, periods, metadata=None, errors=None, slug="exp"):
    for period, rows in periods.items():
        write_json(root / f"statistics/statistics_{slug}_{period}.json", rows)
    if metadata is not None:
        write_json(root / f"metadata/metadata_{slug}.json", metadata)
    if errors is not None:
        write_json(root / f"errors/errors_{slug}.json", errors)
    return load_experiment(LocalResults(root), slug)


def meta(metrics=None, reference=None, outcomes=None):
    return {
        "metrics": metrics or {},
        "outcomes": outcomes or {},
        "external_config": {"reference_branch": reference, "url": "https://example.org/x.toml"} if reference else None,
        "analysis_start_time": "2026-09-20T04:10:00+00:00",
    }


def test_reference_order_config_then_data_then_control(results_dir):
    rows = [
        row(branch="a"),
        row(branch="b"),
        row(branch="control"),
        row(branch="a", comparison="difference", to="b"),
        row(branch="control", comparison="difference", to="b"),
    ]
    res = experiment(results_dir, {"overall": rows}, meta(reference="a"))
    assert choose_reference(res).branch == "a"
    # the data: every comparison is against b (a branch named control does not outrank that)
    res = experiment(results_dir, {"overall": rows}, meta())
    ref = choose_reference(res)
    assert (ref.branch, ref.reason) == ("b", "every comparison row is against it")
    # every branch compared to every other: the data cannot tell, control decides
    pairwise = [row(branch=x) for x in ("a", "control")] + [
        row(branch=x, comparison="difference", to=y) for x, y in (("a", "control"), ("control", "a"))
    ]
    res = experiment(results_dir, {"overall": pairwise}, meta())
    assert choose_reference(res).branch == "control"
    renamed = [
        {
            **r,
            "branch": r["branch"].replace("control", "ctl"),
            "comparison_to_branch": (r["comparison_to_branch"] or "").replace("control", "ctl") or None,
        }
        for r in pairwise
    ]
    res = experiment(results_dir, {"overall": renamed}, meta())
    ref = choose_reference(res)
    assert ref.branch is None and ref.shown == "a" and ref.reason.startswith("Neither the metadata nor the rows")


def _number(text: str) -> float:
    m = re.match(r"[+-]?[\d,]*\.?\d+%?", text)
    assert m, text
    value = float(m.group(0).rstrip("%").replace(",", ""))
    return value / 100 if m.group(0).endswith("%") else value


def _target(code: float, branches: list[str]) -> str:
    """The branch a generated comparison row is against (tests/generations.reference_case)."""
    return branches[int(round(code)) // 1000 - 1]


@pytest.mark.parametrize("situation", SITUATIONS)
def test_every_vs_label_is_true_of_the_rows_under_it(results_dir, situation):
    for n in range(2, 11):
        rows, md, truth, branches = reference_case(situation, n)
        by_period = {}
        for r in rows:
            by_period.setdefault(r["period"], []).append({k: v for k, v in r.items() if k != "period"})
        for f in results_dir.rglob("*.json"):
            f.unlink()
        res = experiment(results_dir, by_period, md)
        page, figures = build_page(res, plotted=PLOTTED)
        where = f"{situation}, {n} branches"
        if truth is not None:
            assert page.reference_known and page.reference_branch == truth, where
        else:
            assert not page.reference_known and page.reference_branch == "not stated in the data", where
        if situation == "config-case":
            assert any("spells it" in note for note in page.reference_notes), where
        if situation == "config-absent-branch":
            assert any("no rows have that branch" in note for note in page.reference_notes), where
        vs = page.compared_to
        checked = 0
        # tables of the overall period
        for view in page.tabs[0].views:
            for metric in view.groups[0].metrics:
                for sb in metric.statistics:
                    for col, title in enumerate(sb.table.columns):
                        assert "None" not in title and "NA" not in title.split(), (where, title)
                        if " vs " not in title:
                            continue
                        label = title.split(" vs ", 1)[1].rsplit(" [", 1)[0]
                        assert label == vs, (where, title)
                        for cells in sb.table.rows:
                            if cells[col].text != "—":
                                assert _target(_number(cells[col].text), branches) == label, (
                                    where,
                                    title,
                                    cells[col].text,
                                )
                                checked += 1
                if metric.pairwise:
                    for cells in metric.pairwise.rows:
                        assert _target(_number(cells[5].text), branches) == cells[2].text, where
        # the summary
        if page.summary and page.summary.rows:
            for srow in page.summary.rows:
                for cell in srow.cells:
                    assert _target(_number(cell.text), branches) == vs, where
                    checked += 1
        # the figures of the weekly series
        for fig in figures:
            assert fig.reference == vs, where
            for comp, point in zip(fig.rows["comparison"], fig.rows["point"]):
                if comp in ("relative_uplift", "difference"):
                    assert _target(point, branches) == fig.reference, where
                    checked += 1
        if situation == "none":
            assert vs == "" and checked == 0 and not (page.summary and page.summary.rows), where
        else:
            # every branch but the one compared against has its comparisons shown
            assert vs in branches and checked >= 2 * (n - 1), where


@pytest.mark.parametrize(
    "lower,upper,bigger,expected",
    [
        (0.1, 0.2, True, "good"),
        (0.1, 0.2, False, "bad"),
        (-0.2, -0.1, True, "bad"),
        (-0.2, -0.1, False, "good"),
        (-0.1, 0.1, True, "neutral"),
        (None, None, True, "neutral"),
    ],
)
def test_significance(lower, upper, bigger, expected):
    assert significance(lower, upper, bigger) == expected


def pairwise_rows(window="1", basis="enrollments", segment="all", base=1.0):
    out = []
    for b in ("control", "a", "b"):
        out.append(row(branch=b, point=base, window=window, basis=basis, segment=segment))
    for b, to in (("a", "control"), ("b", "control")):
        out.append(
            row(branch=b, comparison="relative_uplift", to=to, point=0.5, window=window, basis=basis, segment=segment)
        )
    # pairwise comparisons not against the reference: a marker value that must never be plotted
    out.append(
        row(branch="a", comparison="relative_uplift", to="b", point=-99.0, window=window, basis=basis, segment=segment)
    )
    out.append(
        row(branch="b", comparison="relative_uplift", to="a", point=-99.0, window=window, basis=basis, segment=segment)
    )
    return out


def test_figures_never_mix_bases_segments_or_pairwise_comparisons(results_dir):
    """A figure holds one basis; the segments of a basis are one figure with a column per segment
    (shown in each segment's view), every row labelled with its own segment."""
    weekly = []
    for w in ("1", "2"):
        weekly += pairwise_rows(w, "enrollments", "all", base=1.0)
        weekly += pairwise_rows(w, "exposures", "all", base=1000.0)
        weekly += pairwise_rows(w, "enrollments", "new", base=50.0)
    res = experiment(results_dir, {"weekly": weekly}, meta())
    page, figures = build_page(res, plotted=PLOTTED)
    by_number = {f.number: f for f in figures}
    (tab,) = [t for t in page.tabs if t.period == "weekly"]
    assert [(v.basis, v.segment) for v in tab.views] == [
        ("enrollments", "all"),
        ("enrollments", "new"),
        ("exposures", "all"),
    ]
    expected_base = {("enrollments", "all"): 1.0, ("exposures", "all"): 1000.0, ("enrollments", "new"): 50.0}
    for view in tab.views:
        for group in view.groups:
            for metric in group.metrics:
                for sb in metric.statistics:
                    fig = by_number[sb.figure.number]
                    segs = fig.rows.get("segment") or [view.segment] * len(fig.rows["point"])
                    assert view.segment in segs
                    for p, c, seg in zip(fig.rows["point"], fig.rows["comparison"], segs):
                        if c == "absolute":
                            assert p == expected_base[(view.basis, seg)]
                    assert fig.segments == (["all", "new"] if view.basis == "enrollments" else [])
                    assert -99.0 not in fig.rows["point"]
                    assert set(fig.rows["comparison"]) == {"absolute", "relative_uplift"}
                    assert fig.series and fig.windows == [1, 2]


def test_overall_has_tables_with_intervals_and_pairwise_details(results_dir):
    res = experiment(results_dir, {"overall": pairwise_rows()}, meta())
    page, figures = build_page(res, plotted=PLOTTED)
    (view,) = page.tabs[0].views
    metric = view.groups[0].metrics[0]
    (sb,) = metric.statistics
    assert sb.figure is None and sb.table is not None  # one window: intervals drawn in the table
    assert [c.text for c in sb.table.rows[0]][0] == "control"
    assert sb.table.rows[1][2].bar is not None
    assert metric.pairwise is not None and all("-9900.0%" in r[-1].text for r in metric.pairwise.rows)
    assert figures == []


def test_summary_colours_follow_bigger_is_better(results_dir):
    rows = [
        row(metric="up", branch="control"),
        row(metric="down", branch="control"),
        row(metric="up", branch="t", comparison="relative_uplift", to="control", point=0.3),
        row(metric="down", branch="t", comparison="relative_uplift", to="control", point=0.3),
        row(metric="identity", statistic="count", branch="control", point=300),
        row(metric="identity", statistic="count", branch="t", point=100),
    ]
    md = meta(
        {
            "up": {"bigger_is_better": True, "analysis_bases": ["enrollments"], "friendly_name": "Up"},
            "down": {"bigger_is_better": False, "analysis_bases": ["enrollments"]},
        }
    )
    page, _ = build_page(experiment(results_dir, {"overall": rows}, md), plotted=PLOTTED)
    s = page.summary
    assert s.branches == ["t"]
    assert [(r.name, r.cells[0].css) for r in s.rows] == [("Up", "good"), ("down", "bad")]
    assert s.rows[0].cells[0].text == "+30.0% [+20.0%, +40.0%]"
    assert [[c.text for c in r] for r in s.populations.rows] == [["control", "300", "75.0%"], ["t", "100", "25.0%"]]


def test_summary_falls_back_to_latest_weekly_window(results_dir):
    weekly = [
        row(branch="t", comparison="relative_uplift", to="control", point=p, window=w)
        for w, p in (("1", -0.5), ("2", 0.5))
    ] + [row(window="1"), row(window="2")]
    page, _ = build_page(experiment(results_dir, {"weekly": weekly}, meta()), plotted=PLOTTED)
    assert "latest window (2)" in page.summary.source_label
    assert page.summary.rows[0].cells[0].text.startswith("+50.0%")
    assert "Overall" in page.periods_line.split("Not available:")[1]


def test_unknown_statistic_is_a_table_with_a_note(results_dir):
    rows = [row(statistic="brand_new_stat", branch=b) for b in ("control", "t")]
    page, figures = build_page(experiment(results_dir, {"overall": rows}, meta()), plotted=PLOTTED)
    (sb,) = page.tabs[0].views[0].groups[0].metrics[0].statistics
    assert sb.figure is None and len(sb.table.rows) == 2 and "no plot" in sb.note
    assert figures == []


def test_outcomes_group_metrics(results_dir):
    rows = [row(metric=m) for m in ("a", "b", "c")]
    md = meta(
        outcomes={
            "o": {"slug": "o", "friendly_name": "Search", "description": "d", "metrics": ["b"], "default_metrics": []}
        }
    )
    page, _ = build_page(experiment(results_dir, {"overall": rows}, md), plotted=PLOTTED)
    groups = page.tabs[0].views[0].groups
    assert [(g.title, [m.metric for m in g.metrics]) for g in groups] == [
        ("Outcome: Search", ["b"]),
        ("Other metrics", ["a", "c"]),
    ]


HOSTILE = [
    '"); system("touch /tmp/partybal-pwned',
    "`r system('touch /tmp/partybal-pwned')`",
    "```{r}\nsystem('touch /tmp/partybal-pwned')\n```",
    "</script><script>alert(1)</script>",
    "back\\slash ünï 📈",
]


def test_rmd_never_carries_data_into_code(results_dir):
    rows = []
    for i, name in enumerate(HOSTILE):
        rows += [row(metric=name, branch=name, window=w) for w in ("1", "2")]
        rows += [row(metric=name, branch="control", window=w) for w in ("1", "2")]
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
    errors = [
        {
            "filename": "x.py",
            "func_name": "f",
            "log_level": "ERROR",
            "message": m,
            "metric": m,
            "timestamp": "2026-01-01T00:00:00Z",
            "exception": m,
        }
        for m in HOSTILE
    ]
    res = experiment(results_dir, {"weekly": rows}, md, errors)
    page, figures = build_page(res, plotted=PLOTTED)
    rmd = templating.render("report.Rmd.j2", page=page)
    # the one R chunk is ours (it draws the figures); each figure's place is a comment with an
    # integer (r/render.R fills it), and data never writes one: its "<" is escaped
    chunks = re.findall(r"^```\{r[^}]*\}\n(.*?)^```$", rmd, flags=re.S | re.M)
    assert len(chunks) == 1 and chunks[0].startswith("knitr::opts_chunk")
    places = re.findall(r"<!--partybal-figure:(\d+)-->", rmd)
    assert len(places) == len(figures) > 0
    assert rmd.count("<!--partybal-figure:") == len(places)
    # outside our own fences there is no backtick at all, so no inline `r …` code can exist
    body = re.sub(r"^```(\{r[^}]*\}|\{=html\})?$", "", rmd, flags=re.M)
    assert "`" not in body
    # fences are balanced: every raw block and chunk is closed
    assert rmd.count("\n```{=html}\n") + rmd.count("\n```{r") == len(re.findall(r"^```$", rmd, flags=re.M))
    assert "<script>" not in rmd and "&lt;/script&gt;" in rmd


def _ci_rows(width, metric="m", lower_shift=0.1):
    out = []
    for b in ("control", "t"):
        out.append({**row(metric=metric, branch=b), "ci_width": width})
    out.append(
        {**row(metric=metric, branch="t", comparison="relative_uplift", to="control", point=0.3), "ci_width": width}
    )
    return out


def test_ci_level_is_the_rows(results_dir):
    overall = _ci_rows(0.9)
    weekly = [{**r, "window_index": w} for r in _ci_rows(0.8) for w in ("1", "2")]
    page, figures = build_page(experiment(results_dir, {"overall": overall, "weekly": weekly}, meta()), plotted=PLOTTED)
    (sb,) = page.tabs[0].views[0].groups[0].metrics[0].statistics
    assert sb.table.columns[1:] == ["Value [90% CI]", "Relative uplift vs control [90% CI]"]
    assert page.summary.ci_label == "90% confidence intervals"
    (fig,) = figures
    assert "Intervals: 80% CI." in fig.caption
    rmd = templating.render("report.Rmd.j2", page=page)
    assert "95%" not in rmd and "with 90% confidence intervals" in rmd


def test_mixed_ci_levels_are_said_per_cell(results_dir):
    rows = _ci_rows(0.9, "a") + [r for r in _ci_rows(0.95, "b")]
    page, _ = build_page(experiment(results_dir, {"overall": rows}, meta()), plotted=PLOTTED)
    assert page.summary.ci_label == "confidence intervals at the level each cell states"
    assert sorted(r.cells[0].text.rsplit(" ", 1)[1] for r in page.summary.rows) == ["(90%)", "(95%)"]


def test_conflicting_rows_are_a_data_problem_not_a_result(results_dir):
    rows = _ci_rows(0.95)
    rows.append({**rows[-1], "point": 0.9, "lower": 0.8, "upper": 1.0})  # same key, other numbers
    page, _ = build_page(experiment(results_dir, {"overall": rows}, meta()), plotted=PLOTTED)
    cell = page.summary.rows[0].cells[0]
    assert "conflicting rows" in cell.text and "problem" in cell.css
    (sb,) = page.tabs[0].views[0].groups[0].metrics[0].statistics
    t_row = [r for r in sb.table.rows if r[0].text == "t"][0]
    assert "conflicting rows" in t_row[2].text and "problem" in t_row[2].css
    assert len(page.problems.rows) == 2 and all("conflicting" in r[-1].text for r in page.problems.rows)
    assert sorted(r[2].text for r in page.problems.rows) == ["0.3", "0.9"]  # both listed, neither as the result
    rmd = templating.render("report.Rmd.j2", page=page)
    assert 'id="data-problems"' in rmd and "+90.0%" not in rmd


def test_interval_missing_its_estimate_is_flagged_not_green(results_dir):
    rows = _ci_rows(0.95)
    rows[-1] = {**rows[-1], "point": 0.3, "lower": 0.4, "upper": 0.5}  # significant, but point outside
    weekly = [{**r, "window_index": w} for r in rows for w in ("1", "2")]
    page, figures = build_page(experiment(results_dir, {"overall": rows, "weekly": weekly}, meta()), plotted=PLOTTED)
    cell = page.summary.rows[0].cells[0]
    assert cell.css == "problem" and "estimate outside its interval" in cell.text
    (sb,) = page.tabs[0].views[0].groups[0].metrics[0].statistics
    assert "good" not in sb.table.rows[1][2].css and "problem" in sb.table.rows[1][2].css
    assert len(page.problems.rows) == 3  # overall + two weekly windows
    (fig,) = figures
    assert 0.3 not in fig.rows["point"]
    weekly_sb = page.tabs[1].views[0].groups[0].metrics[0].statistics[0]
    assert "2 rows whose interval does not contain the estimate not drawn" in weekly_sb.note


NAMES = [
    "new",
    "New",
    "nеw",  # Latin e, Cyrillic е
    "a\x00b",
    "a\u2400b",  # a NUL, and the symbol partybal shows for it
    "tab\there",
    "esc\x1b[31mred",
    "line\nbreak",
    "del\x7fc1\x85",
    "x" * 5000,
]


def test_names_from_data_are_faithful_unique_and_safe(results_dir):
    rows = []
    for seg in NAMES:
        for metric in ("Metric", "metric", "métric", "y" * 3000 + "\x07"):
            for b in ("control", "Control", "contröl\x00"):
                rows.append(row(metric=metric, branch=b, segment=seg, statistic="mean"))
                rows.append(row(metric=metric, branch=b, segment=seg, statistic="Odd\x00Stat"))
    page, _ = build_page(experiment(results_dir, {"overall": rows}, meta()), plotted=PLOTTED)
    (tab,) = [t for t in page.tabs if t.present]
    views = tab.views
    assert len(views) == len(NAMES)
    ids = [v.anchor for v in views] + [m.anchor for v in views for g in v.groups for m in g.metrics]
    assert len(ids) == len(set(ids)) == len(NAMES) * 5
    assert all(re.fullmatch(r"[a-z0-9-]{1,100}", i) for i in ids)
    # filter values: one per segment and statistic, unique, plain, and those the views carry
    seg_values = [o.value for o in page.segments]
    assert len(set(seg_values)) == len(NAMES) and {v.segment_key for v in views} == set(seg_values)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v) for v in seg_values + [o.value for o in page.statistics])
    assert len({o.value for o in page.statistics}) == 2
    # names shown whole, control characters visible, nothing dropped
    labels = [o.label for o in page.segments]
    assert "x" * 5000 in labels and "a\u2400b" in labels and "new" in labels and "New" in labels
    assert len(set(labels)) == len(NAMES) - 1  # a NUL is shown as the NUL symbol
    rmd = templating.render("report.Rmd.j2", page=page)
    assert "\x00" not in rmd and "\x1b" not in rmd and "\x07" not in rmd
    assert "esc\u241b[31mred" in rmd and "del\u2421c1\\x85" in rmd and "y" * 3000 + "\u2407" in rmd
    html = templating.render("page.html.j2", page=page, body=templating.Markup(""), index_href="index.html")
    assert html.count("<option") == 3 + 1 + len(NAMES) + 2  # "any" x3, a basis, segments, statistics

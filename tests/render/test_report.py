"""The page model: pure functions from validated results to dataclasses (no R)."""

import re

import pytest

from partybal import templating
from partybal.report import build_page, choose_reference, significance
from partybal.results import load_experiment
from partybal.storage import LocalResults
from tests.helpers import write_json

PLOTTED = frozenset({"mean", "binomial", "deciles", "kernel_density_estimate", "empirical_cdf"})


def row(metric="m", statistic="mean", branch="control", comparison=None, to=None, point=1.0, window="1",
        segment="all", basis="enrollments", parameter=None):
    return {
        "metric": metric, "statistic": statistic, "branch": branch, "parameter": parameter,
        "comparison": comparison, "comparison_to_branch": to, "ci_width": 0.95,
        "point": point, "lower": point - 0.1, "upper": point + 0.1,
        "segment": segment, "analysis_basis": basis, "window_index": window,
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


def test_reference_from_config_then_control_then_most_compared(results_dir):
    rows = [row(branch="a"), row(branch="b"), row(branch="control"),
            row(branch="a", comparison="difference", to="b"), row(branch="control", comparison="difference", to="b")]
    res = experiment(results_dir, {"overall": rows}, meta(reference="a"))
    assert choose_reference(res)[0] == "a"
    res = experiment(results_dir, {"overall": rows}, meta())
    assert choose_reference(res)[0] == "control"
    no_control = [r for r in rows if r["branch"] != "control"]
    res = experiment(results_dir, {"overall": no_control + [row(branch="c", comparison="difference", to="b")]}, meta())
    assert choose_reference(res) == ("b", "the branch most comparisons are made against")


@pytest.mark.parametrize(
    "lower,upper,bigger,expected",
    [(0.1, 0.2, True, "good"), (0.1, 0.2, False, "bad"), (-0.2, -0.1, True, "bad"),
     (-0.2, -0.1, False, "good"), (-0.1, 0.1, True, "neutral"), (None, None, True, "neutral")],
)
def test_significance(lower, upper, bigger, expected):
    assert significance(lower, upper, bigger) == expected


def pairwise_rows(window="1", basis="enrollments", segment="all", base=1.0):
    out = []
    for b in ("control", "a", "b"):
        out.append(row(branch=b, point=base, window=window, basis=basis, segment=segment))
    for b, to in (("a", "control"), ("b", "control")):
        out.append(row(branch=b, comparison="relative_uplift", to=to, point=0.5, window=window, basis=basis, segment=segment))
    # pairwise comparisons not against the reference: a marker value that must never be plotted
    out.append(row(branch="a", comparison="relative_uplift", to="b", point=-99.0, window=window, basis=basis, segment=segment))
    out.append(row(branch="b", comparison="relative_uplift", to="a", point=-99.0, window=window, basis=basis, segment=segment))
    return out


def test_figures_never_mix_bases_segments_or_pairwise_comparisons(results_dir):
    weekly = []
    for w in ("1", "2"):
        weekly += pairwise_rows(w, "enrollments", "all", base=1.0)
        weekly += pairwise_rows(w, "exposures", "all", base=1000.0)
        weekly += pairwise_rows(w, "enrollments", "new", base=50.0)
    res = experiment(results_dir, {"weekly": weekly}, meta())
    page, figures = build_page(res, plotted=PLOTTED)
    by_number = {f.number: f for f in figures}
    (tab,) = [t for t in page.tabs if t.period == "weekly"]
    assert [(v.basis, v.segment) for v in tab.views] == [("enrollments", "all"), ("enrollments", "new"), ("exposures", "all")]
    expected_base = {("enrollments", "all"): 1.0, ("exposures", "all"): 1000.0, ("enrollments", "new"): 50.0}
    for view in tab.views:
        for group in view.groups:
            for metric in group.metrics:
                for sb in metric.statistics:
                    fig = by_number[sb.figure.number]
                    absolute = [p for p, c in zip(fig.rows["point"], fig.rows["comparison"]) if c == "absolute"]
                    assert set(absolute) == {expected_base[(view.basis, view.segment)]}
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
    rows = [row(metric="up", branch="control"), row(metric="down", branch="control"),
            row(metric="up", branch="t", comparison="relative_uplift", to="control", point=0.3),
            row(metric="down", branch="t", comparison="relative_uplift", to="control", point=0.3),
            row(metric="identity", statistic="count", branch="control", point=300),
            row(metric="identity", statistic="count", branch="t", point=100)]
    md = meta({"up": {"bigger_is_better": True, "analysis_bases": ["enrollments"], "friendly_name": "Up"},
               "down": {"bigger_is_better": False, "analysis_bases": ["enrollments"]}})
    page, _ = build_page(experiment(results_dir, {"overall": rows}, md), plotted=PLOTTED)
    s = page.summary
    assert s.branches == ["t"]
    assert [(r.name, r.cells[0].css) for r in s.rows] == [("Up", "good"), ("down", "bad")]
    assert s.rows[0].cells[0].text == "+30.0% [+20.0%, +40.0%]"
    assert [[c.text for c in r] for r in s.populations.rows] == [["control", "300", "75.0%"], ["t", "100", "25.0%"]]


def test_summary_falls_back_to_latest_weekly_window(results_dir):
    weekly = [row(branch="t", comparison="relative_uplift", to="control", point=p, window=w)
              for w, p in (("1", -0.5), ("2", 0.5))] + [row(window="1"), row(window="2")]
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
    md = meta(outcomes={"o": {"slug": "o", "friendly_name": "Search", "description": "d", "metrics": ["b"], "default_metrics": []}})
    page, _ = build_page(experiment(results_dir, {"overall": rows}, md), plotted=PLOTTED)
    groups = page.tabs[0].views[0].groups
    assert [(g.title, [m.metric for m in g.metrics]) for g in groups] == [("Outcome: Search", ["b"]), ("Other metrics", ["a", "c"])]


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
    md = meta({HOSTILE[0]: {"bigger_is_better": True, "analysis_bases": ["enrollments"],
                            "friendly_name": HOSTILE[1], "description": HOSTILE[2]}})
    errors = [{"filename": "x.py", "func_name": "f", "log_level": "ERROR", "message": m, "metric": m,
               "timestamp": "2026-01-01T00:00:00Z", "exception": m} for m in HOSTILE]
    res = experiment(results_dir, {"weekly": rows}, md, errors)
    page, figures = build_page(res, plotted=PLOTTED)
    rmd = templating.render("report.Rmd.j2", page=page)
    # every R chunk is ours: a figure call with an integer
    chunks = re.findall(r"^```\{r[^}]*\}\n(.*?)^```$", rmd, flags=re.S | re.M)
    assert chunks[0].startswith("knitr::opts_chunk")
    assert all(re.fullmatch(r"partybal_figure\(figures, \d+\)\n", c) for c in chunks[1:])
    assert len(chunks) - 1 == len(figures) > 0
    # outside our own fences there is no backtick at all, so no inline `r …` code can exist
    body = re.sub(r"^```(\{r[^}]*\}|\{=html\})?$", "", rmd, flags=re.M)
    assert "`" not in body
    # fences are balanced: every raw block and chunk is closed
    assert rmd.count("\n```{=html}\n") + rmd.count("\n```{r") == len(re.findall(r"^```$", rmd, flags=re.M))
    assert "<script>" not in rmd and "&lt;/script&gt;" in rmd

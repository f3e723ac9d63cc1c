"""Loading and validating one experiment's files (no R)."""

import json

import pytest

from partybal.page.results import InputError, NoResults, load_experiment
from partybal.storage import LocalResults
from tests.helpers import copy_sample, write_json

ROW = {
    "metric": "m",
    "statistic": "mean",
    "branch": "control",
    "parameter": None,
    "comparison": None,
    "comparison_to_branch": None,
    "ci_width": 0.95,
    "point": 1.0,
    "lower": 0.5,
    "upper": 1.5,
    "segment": "all",
    "analysis_basis": "enrollments",
    "window_index": "1",
}


def test_sample_loads_with_both_slug_forms(sample_dir):
    src = LocalResults(sample_dir)
    a = load_experiment(src, "sample-new-tab-layout")
    b = load_experiment(src, "sample_new_tab_layout")
    assert a.file_slug == b.file_slug == "sample_new_tab_layout"
    assert set(a.statistics) == {"overall", "weekly", "daily"}
    assert a.metadata is not None and len(a.errors) == 2
    # the errors file names the experiment, so the file form is shown with its real slug
    assert b.slug == "sample-new-tab-layout"
    assert {f.name for f in a.files} >= {"metadata/metadata_sample_new_tab_layout.json"}


def test_other_slugs_sharing_a_prefix_are_not_mixed_in(tmp_path, sample_dir):
    copy_sample(tmp_path, "sample_search_defaults")
    write_json(tmp_path / "statistics/statistics_sample_search_defaults_extra_overall.json", [ROW])
    res = load_experiment(LocalResults(tmp_path), "sample-search-defaults")
    assert set(res.statistics) == {"overall"}
    assert all("extra" not in f.name for f in res.files)


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "file is empty"),
        (b"[{", "not valid JSON"),
        (b'{"not": "a list"}', "valid array"),
        (json.dumps([ROW, {**ROW, "branch": None}]).encode(), "row 2, field branch"),
        (json.dumps([{**ROW, "point": "abc"}]).encode(), "row 1, field point"),
        (json.dumps([{**ROW, "ci_width": 7}]).encode(), "less than or equal to 1"),
    ],
)
def test_invalid_statistics_give_one_clear_line(results_dir, content, expected):
    (results_dir / "statistics/statistics_bad_overall.json").write_bytes(content)
    with pytest.raises(InputError) as err:
        load_experiment(LocalResults(results_dir), "bad")
    message = str(err.value)
    assert message.startswith("statistics/statistics_bad_overall.json: ")
    assert expected in message
    assert "\n" not in message and len(message) < 400


def test_invalid_metadata_is_reported_with_its_file(results_dir):
    write_json(results_dir / "metadata/metadata_bad.json", {"metrics": {"m": {"bigger_is_better": "maybe"}}})
    with pytest.raises(InputError, match=r"^metadata/metadata_bad.json: .*metrics.m"):
        load_experiment(LocalResults(results_dir), "bad")


def test_empty_array_and_nan_are_valid(results_dir):
    write_json(results_dir / "statistics/statistics_e_overall.json", [])
    (results_dir / "statistics/statistics_e_weekly.json").write_text(
        json.dumps([{**ROW, "point": float("nan"), "upper": float("inf")}])
    )
    res = load_experiment(LocalResults(results_dir), "e")
    assert res.statistics["overall"] == []
    assert len(res.statistics["weekly"]) == 1


def test_unknown_period_is_listed_as_ignored(results_dir):
    write_json(results_dir / "statistics/statistics_e_overall.json", [ROW])
    write_json(results_dir / "statistics/statistics_e_hourly.json", [ROW])
    res = load_experiment(LocalResults(results_dir), "e")
    assert set(res.statistics) == {"overall"}
    assert res.ignored == [("statistics/statistics_e_hourly.json", "unknown period suffix")]


def test_no_files_is_a_clear_error(results_dir):
    with pytest.raises(NoResults, match="no statistics, metadata or errors files for experiment 'nothing_here'"):
        load_experiment(LocalResults(results_dir), "nothing-here")


def test_exact_duplicates_are_dropped_and_conflicts_set_aside(results_dir):
    """The schema's own duplicate check never runs (a root model): partybal's does."""
    rows = [ROW, dict(ROW), {**ROW, "branch": "t", "point": 1.0}, {**ROW, "branch": "t", "point": 2.0}]
    write_json(results_dir / "statistics/statistics_d_overall.json", rows)
    res = load_experiment(LocalResults(results_dir), "d")
    assert [(r.branch, r.point) for r in res.statistics["overall"]] == [("control", 1.0)]
    (group,) = res.problems["overall"].conflicts
    assert sorted(r.point for r in group) == [1.0, 2.0]
    notes = " ".join(n.text for n in res.notes)
    assert "1 exact duplicate row dropped" in notes and "1 estimate has conflicting rows" in notes


def test_rows_differing_only_in_ci_width_keep_the_widest(results_dir):
    rows = [{**ROW, "ci_width": 0.9, "lower": 0.8, "upper": 1.2}, ROW, {**ROW, "branch": "t", "ci_width": 0.9}]
    write_json(results_dir / "statistics/statistics_w_overall.json", rows)
    res = load_experiment(LocalResults(results_dir), "w")
    assert sorted((r.branch, r.ci_width) for r in res.statistics["overall"]) == [("control", 0.95), ("t", 0.9)]
    assert any(
        "several confidence levels (90%, 95%)" in n.text and "1 narrower row not shown" in n.text for n in res.notes
    )


def test_intervals_that_miss_their_estimate_are_reported(results_dir):
    rows = [
        ROW,
        {**ROW, "branch": "t", "point": 2.0},
        {**ROW, "branch": "u", "lower": 3.0, "upper": 2.0, "point": None},
    ]
    write_json(results_dir / "statistics/statistics_b_overall.json", rows)
    res = load_experiment(LocalResults(results_dir), "b")
    assert sorted(r.branch for r in res.problems["overall"].out_of_bounds) == ["t", "u"]
    assert len(res.statistics["overall"]) == 3  # kept, and flagged on the page

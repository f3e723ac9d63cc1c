"""Every Jetstream output generation since 2020 loads, is labelled correctly, and renders (issue 12).

The fixtures come from tests/generations.py (a generator, not stored files): each generation's
shape follows Jetstream's history as documented there.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from partybal.page.report import build_page
from partybal.page.results import InputError, load_experiment
from partybal.storage import LocalResults
from tests.generations import GENERATIONS, generation_files, generation_spec, write_generation
from tests.helpers import ROOT

PLOTTED = frozenset({"mean", "binomial", "deciles"})

# What each generation's page must say it was missing, and the reference it must name.
EXPECTED = {
    "2020": (
        ["analysis_basis", "no segment", "ci_width", "comparison_to_branch", "no outcomes", "analysis_bases"],
        "msw_control",
    ),
    "2021": (
        [
            "analysis_basis",
            "ci_width",
            "comparison_to_branch",
            "no schema_version",
            "analysis_bases (4 metrics)",
            "default_metrics (1 outcome)",
        ],
        "msw_control",
    ),
    "2021-06": (["no external_config", "no analysis_start_time"], "msw_control"),
    "2021-08": (["top-level reference_branch is used", "no analysis_start_time"], "msw_control"),
    "2022": (["no external_config", "no version_info"], None),  # pairwise rows, no metadata reference
    "2023": (["no version_info"], "msw_control"),
    "current": ([], "msw_control"),
}


def load(tmp_path, generation):
    spec = generation_spec(f"gen-{generation}", generation)
    write_generation(tmp_path, generation, spec)
    return load_experiment(LocalResults(tmp_path), spec.slug)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_generation_loads_and_says_what_was_missing(tmp_path, generation):
    res = load(tmp_path, generation)
    page, figures = build_page(res, plotted=PLOTTED)
    missing, reference = EXPECTED[generation]
    notes = " ".join(page.data_notes)
    for word in missing:
        assert word in notes, (word, page.data_notes)
    if generation == "current":
        assert page.data_notes == []
    if reference:
        assert page.reference_known and page.reference_branch == reference
        assert page.compared_to == reference
    else:
        assert not page.reference_known and page.reference_branch == "not stated in the data"
        assert (
            "Neither the metadata nor the rows say" in page.reference_reason
            and page.compared_to in page.reference_reason
        )
    # every figure and table compares against the branch the page names
    assert all(f.reference == page.compared_to for f in figures)
    assert figures and page.summary and page.summary.rows
    older = generation in ("2020", "2021")
    assert page.summary.ci_label == (
        "intervals whose confidence level the data does not state" if older else "95% confidence intervals"
    )


def test_generation_2021_is_the_issue_case(tmp_path):
    """The issue's 2021 experiment: metadata without analysis bases is read (not refused), and
    the reference is the branch without comparison rows, not the alphabetically first."""
    res = load(tmp_path, "2021")
    assert res.metadata is not None and res.metadata.metrics["retained"].analysis_bases == []
    page, _ = build_page(res, plotted=PLOTTED)
    assert sorted(page.branches)[0] == "control-no-show" != page.reference_branch
    assert page.reference_branch == "msw_control"


@pytest.mark.parametrize(
    "metadata,expected",
    [
        ({"outcomes": {}}, "field metrics: Field required"),
        ({"metrics": {"m": {"bigger_is_better": "maybe"}}}, "metrics.m.bigger_is_better"),
        ({"metrics": {"m": {"friendly_name": "M"}}}, "metrics.m.bigger_is_better: Field required"),
        ({"metrics": {"m": {"bigger_is_better": True}}, "outcomes": {"o": {"slug": "o"}}}, "outcomes.o"),
        ({"metrics": [1, 2]}, "field metrics"),
        ([1], "Input should be an object"),
    ],
)
def test_broken_metadata_still_fails_in_one_line(results_dir, metadata, expected):
    (results_dir / "metadata/metadata_bad.json").write_text(json.dumps(metadata))
    with pytest.raises(InputError) as err:
        load_experiment(LocalResults(results_dir), "bad")
    message = str(err.value)
    assert message.startswith("metadata/metadata_bad.json: ") and expected in message, message
    assert "\n" not in message


def test_2021_06_metadata_uses_its_analysis_basis(results_dir):
    md = {
        "metrics": {
            "m": {"bigger_is_better": True, "friendly_name": "M", "description": "d", "analysis_basis": "exposures"},
            "n": {
                "bigger_is_better": True,
                "friendly_name": "N",
                "description": "d",
                "analysis_basis": ["enrollments"],
            },
        },
        "outcomes": {},
        "schema_version": 4,
    }
    (results_dir / "metadata/metadata_x.json").write_text(json.dumps(md))
    res = load_experiment(LocalResults(results_dir), "x")
    assert [b.value for b in res.metadata.metrics["m"].analysis_bases] == ["exposures"]
    assert [b.value for b in res.metadata.metrics["n"].analysis_bases] == ["enrollments"]


def test_generations_differ_as_documented():
    """The generator itself: keys present per generation (so the corpus cannot silently become
    all-current)."""

    def keys(gen):
        files = generation_files(gen, generation_spec("k", gen))
        rows = json.loads(files["statistics/statistics_k_overall.json"])
        md = json.loads(files["metadata/metadata_k.json"])
        return set().union(*(r.keys() for r in rows)), set(md), set().union(*(m.keys() for m in md["metrics"].values()))

    rows, md, metric = keys("2020")
    assert not rows & {"analysis_basis", "ci_width", "comparison_to_branch", "segment"} and "probesets" in md
    assert metric == {"friendly_name", "description", "bigger_is_better"}
    rows, md, metric = keys("2021")
    assert "segment" in rows and "outcomes" in md and "analysis_bases" not in metric
    rows, md, metric = keys("2021-06")
    assert {"analysis_basis", "ci_width", "comparison_to_branch"} <= rows and "analysis_basis" in metric
    rows, md, metric = keys("2021-08")
    assert "reference_branch" in md and "external_config" not in md
    rows, md, metric = keys("current")
    assert {
        "external_config",
        "analysis_start_time",
        "version_info",
        "schema_version",
    } <= md and "analysis_bases" in metric


@pytest.mark.r
@pytest.mark.parametrize("generation", GENERATIONS)
def test_generation_renders_with_r(tmp_path, generation):
    spec = generation_spec(f"gen-{generation}", generation)
    # small: the weekly series only, one metric with a figure, so each knit takes a few seconds
    files = generation_files(generation, spec)
    for name, data in files.items():
        if name.endswith(("_daily.json",)):
            continue
        if "statistics_" in name:
            rows = [r for r in json.loads(data) if r["metric"] in ("retained", "identity")]
            data = json.dumps(rows).encode()
        path = tmp_path / "results" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    out = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "partybal",
            "render",
            spec.slug,
            "--results",
            str(tmp_path / "results"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    html = (out / f"gen_{generation.replace('-', '_')}.html").read_text()
    assert html.rstrip().endswith("</html>")
    srcs = re.findall(r'<img class="plot"[^>]* src="([^"]+)"', html)
    assert srcs and all((out / s).stat().st_size > 1000 for s in srcs)
    assert 'class="plot-error"' not in html
    missing, reference = EXPECTED[generation]
    if missing:
        assert 'id="data-notes"' in html and "About these results" in html
    else:
        assert 'id="data-notes"' not in html
    if reference:
        assert f"Relative uplift vs {reference}" in html
    else:
        assert "Reference branch not stated in the data." in html
    older = generation in ("2020", "2021")
    assert ("CI, level not stated" in html) == older
    assert ("95% CI" in html) != older

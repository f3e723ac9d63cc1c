"""Sample-ratio mismatch (partybal/page/srm.py), its place in the page model, the status record and
the TOC, and the completeness map (partybal/page/completeness.py): pure functions, no R."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from partybal.page import srm, templating
from partybal.page.report import build_page, fmt_p
from partybal.pipeline import status, toc
from partybal.pipeline.state import Experiment
from tests.render.test_report import PLOTTED, experiment, meta, row


def count(branch, n, segment="all", basis="enrollments", window="1", metric="identity"):
    return {
        **row(metric=metric, statistic="count", branch=branch, point=n, segment=segment, basis=basis, window=window),
        "lower": None,
        "upper": None,
    }


# --- the test itself, against known values -------------------------------------------------------


def test_chi_square_matches_known_values():
    # scipy.stats.chisquare's documented examples: six categories, equal and unequal expectations
    stat, p = srm.chi_square([16, 18, 16, 14, 12, 12], [1] * 6)
    assert stat == pytest.approx(2.0) and p == pytest.approx(0.84914503608460956)
    stat, p = srm.chi_square([16, 18, 16, 14, 12, 12], [16, 16, 16, 16, 16, 8])
    assert stat == pytest.approx(3.5) and p == pytest.approx(0.62338762774958223)


def test_two_branches_match_the_closed_form():
    # one degree of freedom: p = erfc(sqrt(chi2 / 2)); 5000 vs 5200 clients, a 50/50 split
    stat, p = srm.chi_square([5000, 5200], [0.5, 0.5])
    assert stat == pytest.approx(2 * 100**2 / 5100)
    assert p == pytest.approx(math.erfc(math.sqrt(stat / 2)))
    assert 0.04 < p < 0.05


def test_three_branches_with_unequal_ratios():
    # 2:1:1 configured; 5200/2400/2400 observed -> expected 5000/2500/2500, chi2 = 8 + 4 + 4 = 16,
    # two degrees of freedom: p = exp(-chi2 / 2)
    stat, p = srm.chi_square([5200, 2400, 2400], [2, 1, 1])
    assert stat == pytest.approx(16.0) and p == pytest.approx(math.exp(-8))
    # the same counts are a perfect fit for 52:24:24 and a gross mismatch for equal shares
    assert srm.chi_square([5200, 2400, 2400], [52, 24, 24])[1] == pytest.approx(1.0)
    assert srm.chi_square([5200, 2400, 2400], [1, 1, 1])[1] < 1e-100


def test_four_branches_match_the_closed_form():
    # three degrees of freedom: p = erfc(sqrt(x/2)) + sqrt(2x/pi) exp(-x/2)
    stat, p = srm.chi_square([1000, 1100, 950, 990], [1, 1, 1, 1])
    expected = math.erfc(math.sqrt(stat / 2)) + math.sqrt(2 * stat / math.pi) * math.exp(-stat / 2)
    assert p == pytest.approx(expected)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        srm.chi_square([10], [1])
    with pytest.raises(ValueError):
        srm.chi_square([10, 10], [1, 0])
    with pytest.raises(ValueError):
        srm.chi_square([10, 10, 10], [1, 1])


def test_expected_shares_from_ratios_or_equal():
    shares, why = srm.expected_for(["a", "b", "c"], {"a": 50, "b": 25, "c": 25})
    assert shares == pytest.approx([0.5, 0.25, 0.25]) and "Experimenter" in why
    shares, why = srm.expected_for(["a", "b"], None)
    assert shares == [0.5, 0.5] and why == "equal shares"
    shares, why = srm.expected_for(["a", "b"], {"a": 1})  # ratios that miss a branch: not used
    assert shares == [0.5, 0.5] and "do not name every branch" in why


def test_fmt_p():
    assert fmt_p(0.4321) == "p = 0.43"
    assert fmt_p(0.00123) == "p = 0.0012"
    assert fmt_p(3.2e-9) == "p = 3.2e-09"
    assert fmt_p(0.0) == "p < 1e-300"


# --- from results ----------------------------------------------------------------------------------


def test_checks_per_basis_and_segment_from_overall_counts(results_dir):
    rows = [
        count("control", 5000),
        count("treatment", 5010),  # fine
        count("control", 5000, segment="new"),
        count("treatment", 4000, segment="new"),  # mismatch
        count("control", 3000, basis="exposures"),
        count("treatment", 3100, basis="exposures"),
        count("control", 1, metric="other"),
        count("treatment", 900, metric="other"),  # identity wins
        row(metric="m", branch="control"),
        row(metric="m", branch="treatment"),
    ]
    res = experiment(
        results_dir,
        {"overall": rows, "weekly": [count("control", 10, window="3"), count("treatment", 90, window="3")]},
        meta(),
    )
    checks = srm.srm_checks(res)
    assert [(c.basis, c.segment) for c in checks] == [
        ("enrollments", "all"),
        ("enrollments", "new"),
        ("exposures", "all"),
    ]
    by = {(c.basis, c.segment): c for c in checks}
    assert by[("enrollments", "all")].source == "overall period" and by[("enrollments", "all")].metric == "identity"
    assert not by[("enrollments", "all")].mismatch and by[("enrollments", "all")].p_value > 0.9
    assert by[("enrollments", "new")].mismatch
    assert by[("enrollments", "all")].observed == (5000.0, 5010.0)
    assert by[("enrollments", "all")].observed_shares == pytest.approx((5000 / 10010, 5010 / 10010))


def test_without_overall_the_latest_weekly_window_is_tested(results_dir):
    weekly = [
        count("control", 5000, window="1"),
        count("treatment", 5000, window="1"),
        count("control", 5000, window="2"),
        count("treatment", 6000, window="2"),
    ]
    res = experiment(results_dir, {"weekly": weekly}, meta())
    (check,) = srm.srm_checks(res)
    assert check.source == "weekly period, latest window (2)" and check.observed == (5000.0, 6000.0) and check.mismatch


def test_configured_ratios_change_the_verdict(results_dir):
    rows = [count("control", 6000), count("a", 2000), count("b", 2000)]
    res = experiment(results_dir, {"overall": rows}, meta())
    assert srm.srm_checks(res)[0].mismatch  # equal shares expected: 60/20/20 is a mismatch
    (check,) = srm.srm_checks(res, {"control": 60, "a": 20, "b": 20})
    assert not check.mismatch and check.expected_shares == pytest.approx((0.2, 0.2, 0.6))  # branches by name
    assert "Experimenter" in check.shares_from


def test_no_counts_or_one_branch_means_no_test(results_dir):
    res = experiment(results_dir, {"overall": [row(branch="control"), row(branch="t")]}, meta())
    assert srm.srm_checks(res) == []
    res = experiment(results_dir, {"overall": [count("control", 100)]}, meta())
    assert srm.srm_checks(res) == []
    page, _ = build_page(res, plotted=PLOTTED, srm_checks=srm.srm_checks(res))
    assert page.srm is None


# --- the page model, the status record, the TOC ----------------------------------------------------


def test_page_model_warns_only_on_a_mismatch(results_dir):
    rows = [count("control", 5000), count("treatment", 4000), row(branch="control"), row(branch="treatment")]
    res = experiment(results_dir, {"overall": rows}, meta())
    page, _ = build_page(res, plotted=PLOTTED, srm_checks=srm.srm_checks(res))
    assert page.srm.mismatch and [r.basis for r in page.srm.failed] == ["enrollments"]
    (r,) = page.srm.failed
    assert r.summary == "control 55.56% (expected 50.00%), treatment 44.44% (expected 50.00%)"
    assert r.p_text.startswith("p = ") and "e-" in r.p_text
    html = templating.render("page.html.j2", page=page, body=templating.Markup(""), index_href="index.html")
    assert 'id="srm-warning"' in html and "control 55.56% (expected 50.00%)" in html and r.p_text in html
    balanced = [count("control", 5000), count("treatment", 5001), row(branch="control"), row(branch="treatment")]
    res = experiment(results_dir, {"overall": balanced}, meta())
    page, _ = build_page(res, plotted=PLOTTED, srm_checks=srm.srm_checks(res))
    assert page.srm is not None and not page.srm.mismatch
    html = templating.render("page.html.j2", page=page, body=templating.Markup(""), index_href="index.html")
    assert 'id="srm-warning"' not in html


def _listed(fslug="exp"):
    return Experiment(
        fslug,
        {f"statistics/statistics_{fslug}_overall.json": 1},
        {"overall"},
        dt.datetime(2026, 9, 1, tzinfo=dt.UTC),
    )


def test_status_record_and_toc_row_carry_the_flag(results_dir):
    rows = [
        count("control", 5000),
        count("treatment", 4000),
        count("control", 10, basis="exposures"),
        count("treatment", 10, basis="exposures"),
    ]
    res = experiment(results_dir, {"overall": rows}, meta())
    field = status.srm_field(srm.srm_checks(res))
    assert field["mismatch"] is True and field["basis"] == "enrollments" and field["p_value"] < 1e-3
    assert status.srm_field([]) is None
    record = {
        "state": "ok",
        "input_generations": {"statistics/statistics_exp_overall.json": 1},
        "page": "exp.html",
        "name": "exp",
        "srm": field,
    }
    listed = status.from_toc_metadata(status.toc_metadata(record))  # what the TOC reads from a listing
    assert listed["srm"] == field
    row_ = toc.make_row(_listed(), listed, False, "")
    assert row_.srm.startswith("p = ") and row_.srm.endswith("enrollments")
    html = toc.render_html(toc.toc_page({"exp": _listed()}, {"exp": listed}, set(), ""))
    assert 'class="srm-flag"' in html
    # no mismatch, no record field, or a malformed one: no flag
    for value in ({**field, "mismatch": False}, None, "yes", {"mismatch": "true"}):
        assert toc.make_row(_listed(), {**listed, "srm": value}, False, "").srm == ""
    html = toc.render_html(toc.toc_page({"exp": _listed()}, {"exp": {**listed, "srm": None}}, set(), ""))
    assert 'class="srm-flag"' not in html


def test_killed_record_keeps_the_live_pages_flag():
    previous = {
        "state": "ok",
        "input_generations": {},
        "page": "exp.html",
        "srm": {"mismatch": True, "p_value": 1e-9, "basis": "enrollments"},
    }
    rec = status.killed_record(
        previous, {"attempt": "0", "max_attempts": "3"}, "exp", "exp", "", dt.datetime.now(dt.UTC)
    )
    assert rec["srm"] == previous["srm"]


# --- the completeness map ----------------------------------------------------------------------------


def _metric(bases=("enrollments",), name=None):
    return {"friendly_name": name or "M", "description": "d", "bigger_is_better": True, "analysis_bases": list(bases)}


def _error(metric, segment="all", basis="enrollments", statistic="mean", message="boom"):
    return {
        "analysis_basis": basis,
        "source": "jetstream",
        "exception": "Traceback",
        "exception_type": "StatisticComputationException",
        "experiment": "exp",
        "filename": "statistics.py",
        "func_name": "apply",
        "log_level": "ERROR",
        "message": message,
        "metric": metric,
        "segment": segment,
        "statistic": statistic,
        "timestamp": "2026-09-20T04:22:10+00:00",
    }


def test_completeness_map_cells(results_dir):
    overall = [row(metric="ok", branch=b) for b in ("control", "t")] + [count(b, 100) for b in ("control", "t")]
    overall += [
        row(metric="ok", branch="control", segment="new"),
        row(metric="ok", branch="control", basis="exposures"),
    ]
    overall += [row(metric="half", branch="control")]  # no exposures rows though metadata expects them
    overall += [row(metric="partial", branch="control", statistic="binomial")]
    weekly = [row(metric="ok", branch="control")]
    metadata = meta(
        metrics={
            "ok": _metric(("enrollments", "exposures"), "OK metric"),
            "half": _metric(("enrollments", "exposures")),
            "failed": _metric(),
            "silent": _metric(),
            "partial": _metric(),
        },
        outcomes={
            "o": {
                "slug": "o",
                "friendly_name": "O",
                "description": "",
                "metrics": ["from_outcome"],
                "default_metrics": [],
            }
        },
    )
    errors = [_error("failed", message="division by zero"), _error("partial", statistic="mean")]
    res = experiment(results_dir, {"overall": overall, "weekly": weekly}, metadata, errors)
    page, _ = build_page(res, plotted=PLOTTED, srm_checks=srm.srm_checks(res))
    cmap = page.completeness
    cols = [(c.period, c.basis, c.segment_key) for c in cmap.columns]
    assert cols == [
        ("overall", "enrollments", "all"),
        ("weekly", "enrollments", "all"),
        ("overall", "enrollments", "new"),
        ("overall", "exposures", "all"),
        ("weekly", "exposures", "all"),
        ("overall", "exposures", "new"),
    ]
    assert [(g.basis, g.segment, g.span) for g in cmap.groups] == [
        ("enrollments", "all", 2),
        ("enrollments", "new", 1),
        ("exposures", "all", 2),
        ("exposures", "new", 1),
    ]
    assert cmap.groups[0].srm_css == "srm-ok" and cmap.groups[1].srm_css == ""  # no counts in segment new
    rows = {r.metric: r for r in cmap.rows}
    assert set(rows) == {"ok", "half", "failed", "silent", "partial", "identity", "from_outcome"}
    states = {m: [c.state for c in r.cells] for m, r in rows.items()}
    assert states["ok"] == ["results", "results", "results", "results", "missing", "missing"]
    assert states["half"] == ["results", "missing", "missing", "missing", "missing", "missing"]
    assert states["failed"] == ["error", "error", "missing", "none", "none", "none"]  # the error names segment all only
    assert states["silent"] == ["missing", "missing", "missing", "none", "none", "none"]
    assert states["partial"][0] == "partial"
    # links: results to the metric in its view, errors to the error row
    ok_link = rows["ok"].cells[0].href
    assert ok_link.startswith("#overall-enrollments-all") and ok_link[1:] in {
        m.anchor for t in page.tabs for v in t.views for g in v.groups for m in g.metrics
    }
    assert rows["failed"].cells[0].href == "#error-1" and page.errors[0].anchor == "error-1"
    assert "division by zero" in rows["failed"].cells[0].title
    # metrics without results anywhere are listed with the reason when known
    assert rows["failed"].css == "no-results" and "division by zero" in rows["failed"].reason
    assert rows["silent"].css == "no-results" and "reported no error" in rows["silent"].reason
    assert rows["from_outcome"].css == "no-results"
    assert rows["ok"].statistics == "Mean" and rows["identity"].statistics == "Clients (count)"
    assert rows["ok"].name == "OK metric"
    assert cmap.counts.startswith("7 metrics: ")


def test_completeness_map_in_the_page_body(results_dir):
    res = experiment(
        results_dir,
        {"overall": [row(metric="ok"), count("control", 1), count("t", 1)]},
        meta(metrics={"gone": _metric()}),
    )
    page, _ = build_page(res, plotted=PLOTTED, srm_checks=srm.srm_checks(res))
    rmd = templating.render("report.Rmd.j2", page=page)
    assert 'id="completeness-map"' in rmd and 'data-statistics="mean"' in rmd and 'class="map-row no-results"' in rmd


def test_no_statistics_files_no_map(results_dir):
    res = experiment(results_dir, {}, meta(metrics={"gone": _metric()}))
    page, _ = build_page(res, plotted=PLOTTED, srm_checks=srm.srm_checks(res))
    assert page.completeness is None and page.srm is None


def test_chi_square_is_scipys_chisquare():
    """The statistic and p-value are scipy.stats.chisquare's (computed without importing
    scipy.stats, which costs ≈ 1.5 s per page)."""
    import random

    from scipy.stats import chisquare

    from partybal.page.srm import chi_square

    rng = random.Random(18)
    for _ in range(300):
        k = rng.randint(2, 10)
        observed = [rng.randint(1, 10 ** rng.randint(1, 7)) for _ in range(k)]
        shares = [rng.random() + 0.01 for _ in range(k)]
        expected = [sum(observed) * s / sum(shares) for s in shares]
        want = chisquare(observed, expected)
        stat, p = chi_square(observed, shares)
        assert stat == pytest.approx(float(want.statistic), rel=1e-12)
        assert p == pytest.approx(float(want.pvalue), rel=1e-9, abs=1e-300)

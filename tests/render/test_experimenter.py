"""Experimenter context (partybal/pipeline/experimenter.py): validating the API's entries, the local
stand-in, the page header's model, the CLI flag. Nothing here reaches the real Experimenter."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import socket
import subprocess
import sys

import pytest

from partybal.local.experimenter_standin import FIXTURE, StandIn
from partybal.page import srm, templating
from partybal.page.report import build_page
from partybal.page.results import load_experiment
from partybal.pipeline import experimenter
from partybal.storage import LocalResults
from tests.helpers import ROOT
from tests.render.test_report import PLOTTED
from tests.support import synthetic

VALID = {
    "sample_new_tab_layout",
    "sample_search_defaults",
    "fenix_onboarding_cards",
    "ios_tab_tray_rollout",
    "desktop_pip_nudge_v2",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def standin():
    with StandIn() as s:
        yield s


def test_tests_never_default_to_the_real_experimenter():
    assert experimenter.configured() == "off"  # tests/conftest.py
    assert experimenter.configured(None, {}) == experimenter.DEFAULT_URL  # what a person gets


def test_fixture_entries_validate_and_broken_ones_are_skipped_and_logged(caplog):
    entries = json.loads(FIXTURE.read_bytes())
    with caplog.at_level(logging.WARNING, logger="partybal.pipeline.experimenter"):
        valid, infos, skipped = experimenter.parse_entries(entries, "fixture")
    assert set(infos) == VALID and skipped == 2 and len(valid) == 5
    messages = [r.getMessage() for r in caplog.records]
    assert any("bucketConfig: Field required" in m for m in messages)
    assert any("branches.0.ratio" in m for m in messages)
    # desktop entries are checked with the desktop model: one without the pre-95 `feature` fails
    desktop = next(e for e in entries if e["slug"] == "sample-new-tab-layout")
    broken = {**desktop, "branches": [{k: v for k, v in b.items() if k != "feature"} for b in desktop["branches"]]}
    with pytest.raises(ValueError):
        experimenter.validate_entry(broken)
    info = infos["fenix_onboarding_cards"]
    assert info.ratios == {"control": 2, "treatment-a": 1, "treatment-b": 1} and info.reference_branch == "control"
    assert infos["ios_tab_tray_rollout"].is_rollout and infos["fenix_onboarding_cards"].app_name == "fenix"


def test_status_from_dates():
    info = experimenter.validate_entry(
        next(e for e in json.loads(FIXTURE.read_bytes()) if e["slug"] == "desktop-pip-nudge.v2")
    )
    assert info.status(dt.date(2026, 4, 1)) == "scheduled"
    assert info.status(dt.date(2026, 5, 10)) == "live"
    assert info.status(dt.date(2026, 6, 1)) == "observing"
    assert info.status(dt.date(2026, 6, 13)) == "complete"


def test_load_through_the_standin(standin):
    catalog = experimenter.load(standin.url)
    assert set(catalog.experiments) == VALID and catalog.skipped == 2 and catalog.note == ""
    assert catalog.get("sample-new-tab-layout").name == "New Tab layout: compact tiles"
    assert catalog.get("desktop-pip-nudge.v2") is catalog.get("desktop_pip_nudge_v2")  # matched by file slug
    assert catalog.link("desktop-pip-nudge.v2") == f"{standin.url}/nimbus/desktop-pip-nudge.v2/summary"
    assert "lists no published experiment" in catalog.missing_note("unknown")


def test_off_down_or_nonsense_never_raise(tmp_path):
    off = experimenter.load("off")
    assert off.experiments == {} and "off" in off.note
    down = experimenter.load(f"http://127.0.0.1:{free_port()}")
    assert down.experiments == {} and "could not be read" in down.note
    for body, words in ((b"<html>maintenance</html>", "not JSON"), (b'{"detail": "x"}', "not a list")):
        path = tmp_path / "answer.json"
        path.write_bytes(body)
        with StandIn(path) as s:
            catalog = experimenter.load(s.url)
        assert catalog.experiments == {} and words in catalog.note


def test_check_url():
    assert experimenter.check_url(" OFF ") == "off"
    assert experimenter.check_url("https://experimenter.example.org/") == "https://experimenter.example.org"
    for bad in ("ftp://x", "experimenter.services.mozilla.com", "http://"):
        with pytest.raises(experimenter.ConfigError):
            experimenter.check_url(bad)


def test_snapshot_round_trip_and_worker_handoff(standin, tmp_path):
    catalog = experimenter.load(standin.url)
    data = experimenter.snapshot_bytes(
        catalog.entries, standin.url + experimenter.API_PATH, dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    )
    again = experimenter.catalog_from_snapshot(data, "gs://state/x")
    assert set(again.experiments) == VALID and again.base_url == standin.url
    assert experimenter.catalog_from_snapshot(None, "x").note.startswith("No Experimenter snapshot")
    assert "unreadable" in experimenter.catalog_from_snapshot(b"[1]", "x").note
    path = tmp_path / "snap.json"
    experimenter.write_for_workers(experimenter.load("off"), path)
    assert "off" in experimenter.for_worker({experimenter.SNAPSHOT_ENV: str(path)}).note
    path2 = tmp_path / "snap2.json"
    experimenter.write_for_workers(catalog, path2)
    assert set(experimenter.for_worker({experimenter.SNAPSHOT_ENV: str(path2)}).experiments) == VALID
    assert experimenter.for_worker({}) is None


# --- the page model ----------------------------------------------------------------------------------


def _results(tmp_path, slug, **changes):
    spec = dataclasses.replace(
        synthetic.small_spec(slug),
        metrics=(synthetic.MetricSpec("identity", ("count",)), synthetic.MetricSpec("uri_count", ("mean",))),
        **changes,
    )
    synthetic.write_experiment(tmp_path / "results", spec)
    return load_experiment(LocalResults(tmp_path / "results"), slug)


def test_header_model_from_experimenter(tmp_path, standin):
    catalog = experimenter.load(standin.url)
    res = _results(tmp_path, "sample-new-tab-layout", branches=("control", "treatment"))
    info = catalog.get(res.file_slug)
    page, _ = build_page(res, plotted=PLOTTED, experiment=info, experiment_url=catalog.link(info.slug))
    ctx = page.context
    assert ctx.found and page.title == "New Tab layout: compact tiles"
    facts = {f.label: f.value for f in ctx.facts}
    assert facts["Application"] == "Firefox desktop, release" and facts["Type"] == "Experiment"
    assert facts["Start"] == "2026-09-18" and facts["Enrollment end"] == "2026-09-25" and facts["End"] == "not yet"
    assert facts["Proposed"] == "enrollment 7 days, duration 28 days"
    assert [(b.slug, b.ratio, b.share, b.reference) for b in ctx.branches] == [
        ("control", "1", "50%", True),
        ("treatment", "1", "50%", False),
    ]
    assert ctx.reference_note == ""  # the analysis also compares against control
    html = templating.render("page.html.j2", page=page, body=templating.Markup(""), index_href="index.html")
    assert "<title>New Tab layout: compact tiles · experiment results</title>" in html
    assert 'id="experiment-context"' in html and "Tests a compact layout" in html and catalog.link(info.slug) in html


def test_reference_disagreement_is_said(tmp_path, standin):
    catalog = experimenter.load(standin.url)
    res = _results(tmp_path, "sample-new-tab-layout", branches=("treatment", "control"), reference_branch="treatment")
    page, _ = build_page(res, plotted=PLOTTED, experiment=catalog.get(res.file_slug))
    assert (
        page.context.reference_note
        == "Experimenter names control as the reference branch; the analysis compares against treatment."
    )


def test_without_an_entry_the_page_says_so(tmp_path):
    res = _results(tmp_path, "not-in-experimenter")
    catalog = experimenter.Catalog(source="http://x/api/v6/experiments/")
    page, _ = build_page(res, plotted=PLOTTED, experiment=None, experiment_note=catalog.missing_note(res.slug))
    assert not page.context.found and page.title == "not-in-experimenter"
    html = templating.render("page.html.j2", page=page, body=templating.Markup(""), index_href="index.html")
    assert "lists no published experiment" in html and "context-missing" in html
    page, _ = build_page(res, plotted=PLOTTED)  # not consulted at all: nothing said
    assert page.context is None


def test_srm_uses_experimenters_ratios(tmp_path, standin):
    # fenix-onboarding-cards is configured 2:1:1; counts enrolled that way are no mismatch
    res = _results(
        tmp_path,
        "fenix-onboarding-cards",
        branches=("control", "treatment-a", "treatment-b"),
        enrolled_shares=(0.5, 0.25, 0.25),
    )
    info = experimenter.load(standin.url).get(res.file_slug)
    (with_ratios,) = [c for c in srm.srm_checks(res, info.ratios) if c.segment == "all"]
    (equal,) = [c for c in srm.srm_checks(res) if c.segment == "all"]
    assert not with_ratios.mismatch and "Experimenter" in with_ratios.shares_from
    assert equal.mismatch and equal.shares_from == "equal shares"


# --- the CLI flag ------------------------------------------------------------------------------------


def test_cli_flag_is_checked_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "partybal",
            "render",
            "x",
            "--results",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--experimenter",
            "ftp://nope",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--experimenter" in proc.stderr
    for cmd in ("preview", "backfill"):
        help_text = subprocess.run(
            [sys.executable, "-m", "partybal", cmd, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60
        ).stdout
        assert "--experimenter URL|off" in help_text


def test_bad_environment_value_is_a_config_error(tmp_path):
    import os

    proc = subprocess.run(
        [sys.executable, "-m", "partybal", "render", "x", "--results", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "EXPERIMENTER_URL": "nonsense"},
    )
    assert proc.returncode == 2 and "EXPERIMENTER_URL" in proc.stderr and "Traceback" not in proc.stderr


def _worker_sees(src, fslug, out, cores, generations):
    """A backfill worker (another process): what Experimenter catalog it was handed."""
    from partybal.pipeline import backfill

    catalog = experimenter.for_worker()
    info = catalog.get(fslug) if catalog else None
    return backfill.RenderOutcome(fslug, True, info.name if info else (catalog.note if catalog else "no catalog"))


def test_backfill_reads_experimenter_once_for_its_workers(tmp_path, standin, monkeypatch):
    import argparse
    import os

    from partybal.pipeline import backfill

    root = tmp_path / "results" / "metadata"
    root.mkdir(parents=True)
    for s in ("sample_new_tab_layout", "not_listed"):
        (root / f"metadata_{s}.json").write_text("{}")
    seen = []
    real = backfill.run_workers
    monkeypatch.setattr(backfill, "run_workers", lambda *a, **k: seen.extend(real(*a, **k)) or seen)
    for value, expected in ((standin.url, "New Tab layout: compact tiles"), ("off", "Experimenter lookup is off")):
        seen.clear()
        args = argparse.Namespace(
            results=str(tmp_path / "results"),
            out=str(tmp_path / "site"),
            only_stale=False,
            parallel=2,
            cores=None,
            experimenter=value,
        )
        assert backfill.cmd_backfill(args, environ={}, renderer=_worker_sees) == 0
        reasons = {o.slug: o.reason for o in seen}
        assert reasons["sample_new_tab_layout"].startswith(expected)
        assert experimenter.SNAPSHOT_ENV not in os.environ  # handed to the workers only

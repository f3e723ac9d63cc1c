"""Local previews: ``partybal preview --results DIR``."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from partybal.local import preview
from partybal.page.report import Banner
from partybal.storage import LocalResults
from tests.helpers import ROOT, copy_sample, write_json

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def test_banner_names_the_data_and_the_expiry():
    b = Banner.preview("/data/my-config", NOW)
    assert "not final results" in b.title
    assert "/data/my-config" in b.text and "2026-11-30" in b.text


def test_discover_skips_temp_and_foreign_objects(results_dir):
    write_json(results_dir / "metadata/metadata_a.json", {})
    write_json(results_dir / "statistics/statistics_b_weekly.json", [])
    write_json(results_dir / "statistics/statistics_c_weekly-abcdefgh.json", [])
    write_json(results_dir / "statistics/statistics_d_hourly.json", [])
    assert preview.discover(LocalResults(results_dir)) == ["a", "b"]


def test_old_local_previews_expire(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    eight_days = NOW.timestamp() - 8 * 86400
    os.utime(old, (eight_days, eight_days))
    os.utime(new, (NOW.timestamp(), NOW.timestamp()))
    assert preview.clean_old_previews(tmp_path, NOW) == [old]
    assert new.exists() and not old.exists()


@pytest.mark.r
def test_preview_renders_every_experiment_and_lists_errors(tmp_path):
    results = copy_sample(tmp_path / "results", "sample_search_defaults")
    (results / "statistics/statistics_broken_overall.json").write_text("[{]")
    proc = subprocess.run(
        [sys.executable, "-m", "partybal", "preview", "--results", str(results), "--out", str(tmp_path / "previews")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 1  # one experiment could not be rendered
    assert "sample_search_defaults: file://" in proc.stdout and "index: file://" in proc.stdout
    assert "1 of 2 experiments could not be rendered" in proc.stderr
    assert "broken: statistics/statistics_broken_overall.json: not valid JSON" in proc.stderr
    (site,) = (tmp_path / "previews").iterdir()
    page = (site / "sample_search_defaults.html").read_text()
    assert "Preview — not final results." in page and str(results) in page
    index = (site / "index.html").read_text()
    assert 'href="sample_search_defaults.html"' in index and "broken" in index and "not valid JSON" in index
    assert "Preview of" in index

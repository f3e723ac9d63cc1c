"""Shared by the page tests: the sample page rendered once per session (read-only for its users),
served to a module's tests, and one Chromium per browser test module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT, SAMPLE, StaticSite, launch_chromium, playwright_api


@pytest.fixture(scope="session")
def sample_new_tab_dir(tmp_path_factory):
    """``partybal render sample-new-tab-layout --out DIR`` as a user types it: the folder."""
    out = tmp_path_factory.mktemp("sample-site")
    cmd = [
        sys.executable,
        "-m",
        "partybal",
        "render",
        "sample-new-tab-layout",
        "--results",
        str(SAMPLE),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def site(sample_new_tab_dir):
    """The sample page's folder served over HTTP (a module may serve its own pages instead)."""
    with StaticSite(sample_new_tab_dir) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through playwright, for one test module."""
    with playwright_api().sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()

"""Shared by the page tests: the sample page rendered once per session (read-only for its users)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT, SAMPLE


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

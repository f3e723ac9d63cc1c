"""Shared fixtures: the project's sample data and an empty results folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SAMPLE

# Nothing in the tests may reach the real Experimenter: unless a test points at the local stand-in,
# renders (in this process and the CLI subprocesses it starts) run with Experimenter off.
os.environ["EXPERIMENTER_URL"] = "off"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def results_dir(tmp_path) -> Path:
    """An empty bucket-shaped results folder."""
    d = tmp_path / "results"
    for sub in ("statistics", "metadata", "errors"):
        (d / sub).mkdir(parents=True)
    return d

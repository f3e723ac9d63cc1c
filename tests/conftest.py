"""Shared fixtures: the project's sample data and an empty results folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SAMPLE


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

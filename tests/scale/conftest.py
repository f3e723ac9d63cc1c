"""Fixtures for the scale tests: the pipeline tests' real fake-gcs-server and fresh buckets."""

from __future__ import annotations

from tests.pipeline.conftest import buckets, fake_gcs, gcs  # noqa: F401 - re-exported fixtures

"""Configuration: the one place environment settings are read and checked.

Every deployed component is configured through its environment (docs/architecture.md,
"Environment contract"). This module reads it: :func:`env` (a required text setting),
:func:`int_setting` / :func:`float_setting` (numbers, with their defaults), and the typed settings
of the functions — one view per component over the same readers, so a bucket name or a threshold
is read and checked the same way everywhere. A missing or malformed setting is a
:class:`~partybal.errors.ConfigError` naming it (exit 2 at a shell; ``render job not started`` in
the job's log).

The render job's settings (``job.JobSettings``) and the page's (``render.check_settings``,
``storage.SizeLimits``) use the same readers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError

DEFAULT_STALE_SECONDS = 900  # COALESCE_STALE_SECONDS
DEFAULT_SWEEP_INTERVAL_SECONDS = 600  # SWEEP_INTERVAL_SECONDS


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def env(name: str, environ: Mapping[str, str] | None = None, default: str | None = None) -> str:
    """A required text setting (``default`` when unset), or :class:`ConfigError` naming it."""
    value = _environ(environ).get(name, default)
    if not value:
        raise ConfigError(f"environment variable {name} is not set")
    return value


def optional(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """An optional text setting: None when unset or empty."""
    return _environ(environ).get(name) or None


def int_setting(environ: Mapping[str, str] | None, name: str, default: int, minimum: int | None = None) -> int:
    """An integer setting (``default`` when unset or blank), or :class:`ConfigError` naming it."""
    raw = _environ(environ).get(name, "") or ""
    if raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def float_setting(environ: Mapping[str, str] | None, name: str, default: float) -> float:
    """A number setting (``default`` when unset or blank), or :class:`ConfigError` naming it."""
    raw = _environ(environ).get(name, "") or ""
    if raw.strip() == "":
        return default
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None


# --- the functions' settings: one view per component ------------------------------------------


@dataclass(frozen=True)
class CoalesceSettings:
    """``on_results_finalized``: results → pending marker → render request."""

    results_bucket: str
    state_bucket: str
    topic: str
    stale_seconds: int = DEFAULT_STALE_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CoalesceSettings:
        return cls(
            results_bucket=env("RESULTS_BUCKET", environ),
            state_bucket=env("STATE_BUCKET", environ),
            topic=env("RENDER_TOPIC", environ),
            stale_seconds=int_setting(environ, "COALESCE_STALE_SECONDS", DEFAULT_STALE_SECONDS),
        )


@dataclass(frozen=True)
class SweepSettings:
    """``sweep_pending``: the coalescing settings, the schedule and the Cloud Run API to ask."""

    results_bucket: str
    state_bucket: str
    topic: str
    min_age_seconds: int = DEFAULT_STALE_SECONDS  # COALESCE_STALE_SECONDS
    interval_seconds: float = DEFAULT_SWEEP_INTERVAL_SECONDS  # time between two sweeps (the schedule)
    run_api_endpoint: str | None = None  # the local Cloud Run stand-in; None on GCP

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SweepSettings:
        c = CoalesceSettings.from_env(environ)
        return cls(
            c.results_bucket,
            c.state_bucket,
            c.topic,
            c.stale_seconds,
            float_setting(environ, "SWEEP_INTERVAL_SECONDS", DEFAULT_SWEEP_INTERVAL_SECONDS),
            optional("RUN_API_ENDPOINT", environ),
        )


@dataclass(frozen=True)
class TocSettings:
    """``rebuild_toc``: the three buckets."""

    results_bucket: str
    site_bucket: str
    state_bucket: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TocSettings:
        return cls(
            results_bucket=env("RESULTS_BUCKET", environ),
            site_bucket=env("SITE_BUCKET", environ),
            state_bucket=env("STATE_BUCKET", environ),
        )

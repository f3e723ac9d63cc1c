"""Synthetic Jetstream-shaped results, for tests and benchmarks.

The shape follows real output (and ``sample/``): every statistic row per branch, pairwise
comparisons against *every* other branch, string ``parameter`` for grids, string ``window_index``,
KDE/ECDF grids dominating the row count. Numbers are random but seeded.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from . import layout

COMPARABLE = ("mean", "mean_lm", "per_client_dau_impact", "binomial", "population_ratio")


@dataclass
class MetricSpec:
    name: str
    statistics: tuple[str, ...]
    bigger_is_better: bool = True
    friendly_name: str | None = None
    description: str | None = None


DEFAULT_METRICS = (
    MetricSpec("active_hours", ("mean", "deciles", "kernel_density_estimate", "empirical_cdf"), True, "Active Hours"),
    MetricSpec("uri_count", ("mean",), True, "URI Count"),
    MetricSpec("search_count", ("mean", "mean_lm", "sum"), True, "Search Count"),
    MetricSpec("days_of_use", ("mean", "per_client_dau_impact"), True, "Days of Use"),
    MetricSpec("ad_clicks", ("mean",), True, "Ad Clicks"),
    MetricSpec("retained", ("binomial",), True, "Retained"),
    MetricSpec("crash_rate", ("binomial",), False, "Crash rate"),
    MetricSpec("dau", ("population_ratio",), True, "Daily active users"),
    MetricSpec("identity", ("count",), True, "Identity"),
)


@dataclass
class ExperimentSpec:
    slug: str = "synthetic-experiment"
    branches: tuple[str, ...] = ("control", "treatment-a", "treatment-b")
    segments: tuple[str, ...] = ("all", "new_users")
    bases: tuple[str, ...] = ("enrollments", "exposures")
    windows: dict[str, int] = field(default_factory=lambda: {"overall": 1, "weekly": 3, "daily": 7})
    metrics: tuple[MetricSpec, ...] = DEFAULT_METRICS
    grid_points: int = 256
    reference_branch: str | None = None
    seed: int = 1
    errors: int = 2


def small_spec(slug: str, seed: int = 1) -> ExperimentSpec:
    """Five results objects (overall, weekly, daily, metadata, errors), two branches, three
    metrics with figures: knits in a few seconds (the e2e tests and the latency benchmark)."""
    return ExperimentSpec(
        slug=slug,
        seed=seed,
        branches=("control", "treatment"),
        segments=("all",),
        bases=("enrollments",),
        windows={"overall": 1, "weekly": 1, "daily": 2},
        metrics=DEFAULT_METRICS[:3],
        grid_points=32,
        errors=1,
    )


def tiny_spec(slug: str, seed: int = 1) -> ExperimentSpec:
    """Five results objects like :func:`small_spec`, but one metric with one statistic: the
    fastest page that still exercises every kind of object (the reliability tests)."""
    return dataclasses.replace(
        small_spec(slug, seed),
        windows={"overall": 1, "weekly": 1, "daily": 1},
        metrics=(MetricSpec("uri_count", ("mean",), True, "URI Count"),),
        grid_points=8,
    )


def _ci(rng: random.Random, centre: float, spread: float) -> dict:
    point = centre + rng.gauss(0, spread / 4)
    half = abs(rng.gauss(spread, spread / 5))
    return {"point": point, "lower": point - half, "upper": point + half}


def statistics_rows(spec: ExperimentSpec, period: str, rng: random.Random) -> list[dict]:
    rows: list[dict] = []

    def add(metric, stat, branch, values, parameter=None, comparison=None, to=None, window=1, seg="all", basis="enrollments"):
        rows.append(
            {
                "metric": metric,
                "statistic": stat,
                "branch": branch,
                "parameter": parameter,
                "comparison": comparison,
                "comparison_to_branch": to,
                "ci_width": 0.95,
                **values,
                "segment": seg,
                "analysis_basis": basis,
                "window_index": str(window),
            }
        )

    for window in range(1, spec.windows[period] + 1):
        for seg in spec.segments:
            for basis in spec.bases:
                common = {"window": window, "seg": seg, "basis": basis}
                for m in spec.metrics:
                    level = {b: rng.uniform(2, 10) for b in spec.branches}
                    for stat in m.statistics:
                        if stat == "count":
                            for b in spec.branches:
                                add(m.name, stat, b, {"point": float(rng.randint(5000, 9000)), "lower": None, "upper": None}, **common)
                        elif stat == "sum":
                            for b in spec.branches:
                                add(m.name, stat, b, {"point": level[b] * 8000, "lower": None, "upper": None}, **common)
                        elif stat in COMPARABLE:
                            scale = 1.0 if stat != "binomial" else 0.1
                            for b in spec.branches:
                                add(m.name, stat, b, _ci(rng, level[b] * scale, 0.3 * scale), **common)
                                for other in spec.branches:
                                    if other == b:
                                        continue
                                    diff = (level[b] - level[other]) * scale
                                    add(m.name, stat, b, _ci(rng, diff, 0.4 * scale), comparison="difference", to=other, **common)
                                    add(m.name, stat, b, _ci(rng, diff / (level[other] * scale), 0.06), comparison="relative_uplift", to=other, **common)
                        elif stat == "deciles":
                            for b in spec.branches:
                                for i in range(1, 10):
                                    q = f"{i / 10:.1f}"
                                    add(m.name, stat, b, _ci(rng, level[b] * i / 5, 0.2), parameter=q, **common)
                                    for other in spec.branches:
                                        if other != b:
                                            add(m.name, stat, b, _ci(rng, 0.1, 0.2), parameter=q, comparison="difference", to=other, **common)
                                            add(m.name, stat, b, _ci(rng, 0.02, 0.05), parameter=q, comparison="relative_uplift", to=other, **common)
                        elif stat in ("kernel_density_estimate", "empirical_cdf"):
                            for b in spec.branches:
                                acc = 0.0
                                for i in range(spec.grid_points):
                                    x = 20.0 * i / spec.grid_points
                                    if stat == "empirical_cdf":
                                        acc = min(1.0, acc + rng.uniform(0, 2.0 / spec.grid_points))
                                        y = acc
                                    else:
                                        y = abs(rng.gauss(0.1, 0.03))
                                    add(m.name, stat, b, {"point": y, "lower": None, "upper": None}, parameter=f"{x:.6f}", **common)
                        else:  # a statistic partybal does not know
                            for b in spec.branches:
                                add(m.name, stat, b, _ci(rng, level[b], 0.5), **common)
    return rows


def metadata(spec: ExperimentSpec) -> dict:
    return {
        "schema_version": 4,
        "analysis_start_time": "2026-09-20T04:10:00+00:00",
        "external_config": (
            {"reference_branch": spec.reference_branch, "url": "https://github.com/mozilla/metric-hub/blob/main/jetstream/x.toml"}
            if spec.reference_branch
            else None
        ),
        "metrics": {
            m.name: {
                "friendly_name": m.friendly_name or m.name,
                "description": m.description or f"Synthetic {m.name}",
                "bigger_is_better": m.bigger_is_better,
                "analysis_bases": list(spec.bases),
            }
            for m in spec.metrics
        },
        "outcomes": {},
    }


def errors(spec: ExperimentSpec) -> list[dict]:
    return [
        {
            "analysis_basis": "enrollments",
            "source": "jetstream",
            "exception": "Traceback ...\nValueError: synthetic",
            "exception_type": "StatisticComputationException",
            "experiment": spec.slug,
            "filename": "statistics.py",
            "func_name": "apply",
            "log_level": "ERROR",
            "message": f"Synthetic error {i}",
            "metric": spec.metrics[0].name,
            "segment": "all",
            "statistic": "deciles",
            "timestamp": "2026-09-20T04:22:10+00:00",
        }
        for i in range(spec.errors)
    ]


def experiment_files(spec: ExperimentSpec) -> dict[str, bytes]:
    """Object name → content for one experiment."""
    rng = random.Random(spec.seed)
    fslug = layout.file_slug(spec.slug)
    files = {}
    for period in spec.windows:
        rows = statistics_rows(spec, period, rng)
        files[layout.results_name(layout.Kind.STATISTICS, fslug, period)] = json.dumps(rows).encode()
    files[layout.results_name(layout.Kind.METADATA, fslug)] = json.dumps(metadata(spec)).encode()
    if spec.errors:
        files[layout.results_name(layout.Kind.ERRORS, fslug)] = json.dumps(errors(spec)).encode()
    return files


def write_experiment(root: str | Path, spec: ExperimentSpec) -> dict[str, int]:
    """Write one experiment into a bucket-shaped folder; returns name → size in bytes."""
    sizes = {}
    for name, data in experiment_files(spec).items():
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        sizes[name] = len(data)
    return sizes

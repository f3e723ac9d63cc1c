"""Synthetic Jetstream-shaped results, for tests and benchmarks.

The shape follows real output (and ``sample/``): every statistic row per branch, pairwise
comparisons against *every* other branch, string ``parameter`` for grids, string ``window_index``,
KDE/ECDF grids dominating the row count. Numbers are random but seeded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from partybal import layout

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
    # False: every window's numbers are independent draws (cheap, noisy). True: levels that drift
    # smoothly over windows with a steady effect per branch and smooth distributions, like real
    # output; for looking at figures (the real-size presets).
    smooth: bool = False
    # The share of clients each branch actually enrolled (``count`` rows), in branch order; None:
    # equal shares. Counts are 8,000 clients per branch on average, with a ±1% jitter.
    enrolled_shares: tuple[float, ...] | None = None


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


# --- real-size shapes (issue 12: readable and within budget at real size) -----------------------

_REAL_MEAN_METRICS = (
    "uri_count",
    "search_count",
    "tagged_search_count",
    "tagged_follow_on_search_count",
    "ad_clicks",
    "searches_with_ads",
    "organic_search_count",
    "days_of_use",
    "qualified_cumulative_days_of_use",
    "active_ticks",
    "total_uri_count",
    "unique_domains_count",
    "tab_open_count",
    "window_open_count",
    "bookmarks_added",
    "pocket_saves",
    "history_visits",
    "downloads_count",
    "pip_usage",
    "pdf_opens",
    "newtab_visits",
    "newtab_searches",
    "newtab_clicks",
    "sponsored_tile_clicks",
    "topsite_clicks",
    "urlbar_engagements",
    "urlbar_abandonments",
    "sidebar_opens",
    "translations_used",
    "extensions_installed",
    "login_autofills",
    "address_autofills",
    "credit_card_autofills",
    "screenshots_taken",
    "reader_mode_opens",
    "print_count",
    "sync_logins",
    "private_windows_opened",
    "content_crashes",
    "gpu_crashes",
    "memory_pressure_events",
)
_REAL_BINOMIAL_METRICS = ("retained", "default_browser", "is_pinned", "crashed")


def real_size_metrics(distribution_metrics: int = 2) -> tuple[MetricSpec, ...]:
    """49 metrics like a large Jetstream configuration: most a mean or a proportion, a few with the
    full distribution (deciles, KDE, ECDF, which dominate the bytes), a count and a sum."""
    dist = tuple(
        MetricSpec(
            name, ("mean", "deciles", "kernel_density_estimate", "empirical_cdf"), True, name.replace("_", " ").title()
        )
        for name in ("active_hours", "active_hours_cumulative", "session_length")[:distribution_metrics]
    )
    means = tuple(
        MetricSpec(
            name,
            ("mean",) if i % 7 else ("mean", "per_client_dau_impact"),
            not name.endswith(("crashes", "events", "abandonments")),
        )
        for i, name in enumerate(_REAL_MEAN_METRICS)
    )
    props = tuple(MetricSpec(name, ("binomial",), name != "crashed") for name in _REAL_BINOMIAL_METRICS)
    extra = (
        MetricSpec("identity", ("count",), True, "Clients"),
        MetricSpec("search_revenue_proxy", ("sum",), True),
    )
    metrics = dist + means + props + extra
    return metrics[:49]


def real_size_spec(slug: str = "real-size-experiment", seed: int = 1) -> ExperimentSpec:
    """The real-size experiment of issue 12: 49 metrics, 4 branches, 4 segments, 2 analysis bases,
    overall + 4 weekly + 28 daily windows; the daily file is ≈ 270 MB."""
    return ExperimentSpec(
        slug=slug,
        seed=seed,
        smooth=True,
        branches=("control", "treatment-a", "treatment-b", "treatment-c"),
        segments=("all", "new_users", "existing_users", "windows_users"),
        bases=("enrollments", "exposures"),
        windows={"overall": 1, "weekly": 4, "daily": 28},
        metrics=real_size_metrics(),
        grid_points=100,
        reference_branch="control",
    )


def many_branches_spec(
    slug: str = "many-branches-experiment", seed: int = 1, *, branches: int = 10, daily: int = 60, metrics: int = 8
) -> ExperimentSpec:
    """Many branches and a long daily series: ``branches`` branches (control first) and ``daily``
    daily windows, one segment and basis, ``metrics`` metrics including a distribution, a count,
    a sum and a statistic partybal has no plot for."""
    chosen = (
        MetricSpec(
            "active_hours", ("mean", "deciles", "kernel_density_estimate", "empirical_cdf"), True, "Active Hours"
        ),
        MetricSpec("retained", ("binomial",), True, "Retained"),
        MetricSpec("identity", ("count",), True, "Clients"),
        MetricSpec("search_count", ("mean", "sum"), True, "Search Count"),
        MetricSpec("crash_rate", ("binomial",), False, "Crash rate"),
        MetricSpec("days_of_use", ("mean", "per_client_dau_impact"), True, "Days of Use"),
        MetricSpec("uri_count", ("mean",), True, "URI Count"),
        MetricSpec("engagement_index", ("geometric_mean",), True, "Engagement index"),
    )[:metrics]
    names = ("control",) + tuple(
        f"treatment-{chr(ord('a') + i)}-{'long-name-' * (i % 3)}variant".replace("--", "-") for i in range(branches - 1)
    )
    return ExperimentSpec(
        slug=slug,
        seed=seed,
        smooth=True,
        branches=names,
        segments=("all",),
        bases=("enrollments",),
        windows={"overall": 1, "weekly": max(1, daily // 7), "daily": daily},
        metrics=chosen,
        grid_points=64,
        reference_branch="control",
        errors=1,
    )


# The experiments the benchmarks measure, by the name their tables use: (slug suffix, factory).
BENCHMARK_SHAPES = {
    "small": ("small", small_spec),
    "large": ("large", lambda slug: ExperimentSpec(slug=slug)),
    "10 branches": ("many-branches", many_branches_spec),
    "real": ("real-size", real_size_spec),
    # the headroom case: twice the real size's daily and weekly files (≈ 550 MB daily)
    "2x real": (
        "double-size",
        lambda slug: dataclasses.replace(real_size_spec(slug), windows={"overall": 1, "weekly": 8, "daily": 56}),
    ),
}


def benchmark_spec(name: str, prefix: str) -> ExperimentSpec:
    """The benchmark experiment ``name`` (a key of BENCHMARK_SHAPES), slug ``<prefix>-<suffix>``
    (``bench-real-size``)."""
    suffix, make = BENCHMARK_SHAPES[name]
    return make(f"{prefix}-{suffix}")


def spec_2021(slug: str = "like-2021-experiment", seed: int = 1) -> ExperimentSpec:
    """The shape of the 2021 experiment in issue 12: 6 branches (the reference is not named
    control and not alphabetically first), 3 segments, one basis, overall + 4 weekly + 29 daily."""
    return ExperimentSpec(
        slug=slug,
        seed=seed,
        smooth=True,
        branches=(
            "msw_control",
            "control-no-show",
            "msw-treatment-a",
            "msw-treatment-b",
            "msw-treatment-c",
            "msw-treatment-d",
        ),
        segments=("all", "new_or_resurrected_users", "windows_users"),
        bases=("enrollments",),
        windows={"overall": 1, "weekly": 4, "daily": 29},
        metrics=DEFAULT_METRICS,
        grid_points=128,
        reference_branch="msw_control",
    )


def _smooth_level(
    spec: ExperimentSpec, metric: str, branch: str, window: int, segment: str, rng: random.Random
) -> float:
    """A metric's level: its own base, a steady effect per branch (none for the first branch), a
    weekly rhythm and a slow trend over windows, and 1% noise."""
    base = 3 + zlib.crc32(f"{metric}/{segment}".encode()) % 600 / 100
    effect = 0.0 if branch == spec.branches[0] else (zlib.crc32(branch.encode()) % 13 - 5) / 100
    rhythm = 1 + 0.08 * math.sin(2 * math.pi * window / 7) + 0.003 * window
    return base * (1 + effect) * rhythm * (1 + rng.gauss(0, 0.01))


def _enrolled(spec: ExperimentSpec, branch: str) -> float:
    """Clients a branch enrolled before jitter: 8,000 per branch, split by ``enrolled_shares``."""
    n = len(spec.branches)
    shares = spec.enrolled_shares or (1 / n,) * n
    return 8000 * n * shares[spec.branches.index(branch)] / sum(shares)


def _ci(rng: random.Random, centre: float, spread: float) -> dict:
    point = centre + rng.gauss(0, spread / 4)
    half = abs(rng.gauss(spread, spread / 5))
    return {"point": point, "lower": point - half, "upper": point + half}


def statistics_rows(spec: ExperimentSpec, period: str, rng: random.Random) -> list[dict]:
    return list(iter_statistics_rows(spec, period, rng))


def iter_statistics_rows(spec: ExperimentSpec, period: str, rng: random.Random):
    """The rows of one period's statistics file, one window / segment / basis at a time (a
    real-size daily file is a few hundred MB of JSON: it is written as it is generated)."""
    rows: list[dict] = []

    def add(
        metric, stat, branch, values, parameter=None, comparison=None, to=None, window=1, seg="all", basis="enrollments"
    ):
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
                    if spec.smooth:
                        level = {b: _smooth_level(spec, m.name, b, window, seg, rng) for b in spec.branches}
                    else:
                        level = {b: rng.uniform(2, 10) for b in spec.branches}
                    for stat in m.statistics:
                        if stat == "count":
                            for b in spec.branches:
                                jitter = (rng.randint(5000, 9000) - 7000) / 25  # ±80 clients
                                add(
                                    m.name,
                                    stat,
                                    b,
                                    {"point": float(round(_enrolled(spec, b) + jitter)), "lower": None, "upper": None},
                                    **common,
                                )
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
                                    add(
                                        m.name,
                                        stat,
                                        b,
                                        _ci(rng, diff, 0.4 * scale),
                                        comparison="difference",
                                        to=other,
                                        **common,
                                    )
                                    add(
                                        m.name,
                                        stat,
                                        b,
                                        _ci(rng, diff / (level[other] * scale), 0.06),
                                        comparison="relative_uplift",
                                        to=other,
                                        **common,
                                    )
                        elif stat == "deciles":
                            for b in spec.branches:
                                for i in range(1, 10):
                                    q = f"{i / 10:.1f}"
                                    add(m.name, stat, b, _ci(rng, level[b] * i / 5, 0.2), parameter=q, **common)
                                    for other in spec.branches:
                                        if other != b:
                                            add(
                                                m.name,
                                                stat,
                                                b,
                                                _ci(rng, 0.1, 0.2),
                                                parameter=q,
                                                comparison="difference",
                                                to=other,
                                                **common,
                                            )
                                            add(
                                                m.name,
                                                stat,
                                                b,
                                                _ci(rng, 0.02, 0.05),
                                                parameter=q,
                                                comparison="relative_uplift",
                                                to=other,
                                                **common,
                                            )
                        elif stat in ("kernel_density_estimate", "empirical_cdf"):
                            for b in spec.branches:
                                acc = 0.0
                                for i in range(spec.grid_points):
                                    x = 20.0 * i / spec.grid_points
                                    if spec.smooth:  # a gamma(2, level / 2) distribution
                                        theta = level[b] / 2
                                        if stat == "empirical_cdf":
                                            y = 1 - math.exp(-x / theta) * (1 + x / theta)
                                        else:
                                            y = x / theta**2 * math.exp(-x / theta) * (1 + rng.gauss(0, 0.01))
                                    elif stat == "empirical_cdf":
                                        acc = min(1.0, acc + rng.uniform(0, 2.0 / spec.grid_points))
                                        y = acc
                                    else:
                                        y = abs(rng.gauss(0.1, 0.03))
                                    add(
                                        m.name,
                                        stat,
                                        b,
                                        {"point": y, "lower": None, "upper": None},
                                        parameter=f"{x:.6f}",
                                        **common,
                                    )
                        else:  # a statistic partybal does not know
                            for b in spec.branches:
                                add(m.name, stat, b, _ci(rng, level[b], 0.5), **common)
                yield from rows
                rows.clear()


def metadata(spec: ExperimentSpec) -> dict:
    return {
        "schema_version": 4,
        "analysis_start_time": "2026-09-20T04:10:00+00:00",
        "external_config": (
            {
                "reference_branch": spec.reference_branch,
                "url": "https://github.com/mozilla/metric-hub/blob/main/jetstream/x.toml",
            }
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


def _write_json_array(fh, items) -> None:
    """``json.dumps(list(items))``, byte for byte, without holding the list."""
    fh.write(b"[")
    for i, item in enumerate(items):
        fh.write((", " if i else "").encode() + json.dumps(item).encode())
    fh.write(b"]")


def _results_objects(spec: ExperimentSpec):
    """(object name, writer(fh)) for each results object, in the order the RNG is consumed."""
    rng = random.Random(spec.seed)
    fslug = layout.file_slug(spec.slug)
    for period in spec.windows:
        yield (
            layout.results_name(layout.Kind.STATISTICS, fslug, period),
            lambda fh, p=period: _write_json_array(fh, iter_statistics_rows(spec, p, rng)),
        )
    yield layout.results_name(layout.Kind.METADATA, fslug), lambda fh: fh.write(json.dumps(metadata(spec)).encode())
    if spec.errors:
        yield layout.results_name(layout.Kind.ERRORS, fslug), lambda fh: fh.write(json.dumps(errors(spec)).encode())


def experiment_files(spec: ExperimentSpec) -> dict[str, bytes]:
    """Object name → content for one experiment (small specs; real-size ones: write_experiment)."""
    files = {}
    for name, write in _results_objects(spec):
        buf = io.BytesIO()
        write(buf)
        files[name] = buf.getvalue()
    return files


def write_experiment(root: str | Path, spec: ExperimentSpec) -> dict[str, int]:
    """Write one experiment into a bucket-shaped folder, streaming (a real-size daily file never
    sits in memory); returns name → size in bytes."""
    sizes = {}
    for name, write in _results_objects(spec):
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            write(fh)
        sizes[name] = path.stat().st_size
    return sizes

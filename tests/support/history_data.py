"""A tiny experiment whose relative uplifts the history tests set by hand (tests/pipeline/test_history*.py,
tests/e2e/test_history_e2e.py): three metrics (one where lower is better), every interval holding 0
until a test moves one."""

from __future__ import annotations

import dataclasses
import json

from partybal import layout
from tests.support import synthetic


def spec(slug: str) -> synthetic.ExperimentSpec:
    return dataclasses.replace(
        synthetic.small_spec(slug),
        metrics=(
            synthetic.MetricSpec("uri_count", ("mean",), True, "URI Count"),
            synthetic.MetricSpec("crash_rate", ("binomial",), False, "Crash rate"),
            synthetic.MetricSpec("search_count", ("mean",), True, "Search Count"),
        ),
    )


def set_uplift(
    data: bytes, metric: str | None, lower: float, point: float, upper: float, branch: str = "treatment"
) -> bytes:
    """The statistics file ``data`` with the relative uplift of ``branch`` (every metric when
    ``metric`` is None) set to ``point [lower, upper]`` in every window."""
    rows = json.loads(data)
    for r in rows:
        if (
            r.get("comparison") == "relative_uplift"
            and (metric is None or r["metric"] == metric)
            and r["branch"] == branch
        ):
            r.update(lower=lower, point=point, upper=upper)
    return json.dumps(rows).encode()


def files(slug: str) -> dict[str, bytes]:
    """Object name → content; every uplift interval holds 0."""
    fslug = layout.file_slug(slug)
    out = synthetic.experiment_files(spec(slug))
    for period in ("overall", "weekly"):
        name = layout.results_name(layout.Kind.STATISTICS, fslug, period)
        out[name] = set_uplift(out[name], None, -0.01, 0.0, 0.01)
    return out

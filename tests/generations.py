"""Jetstream output as each generation wrote it, made from tests.support.synthetic specs.

What changed when (from mozilla/jetstream: jetstream/statistics.py, metadata.py, export_json.py):

- Statistics are exported from BigQuery as newline-delimited JSON and joined into an array, so
  every null field is left out of its row (``parameter`` on means, ``comparison`` on values,
  ``lower``/``upper``/``ci_width`` on counts …); INT64 ``window_index`` and NUMERIC ``parameter``
  come out as strings.
- 2020: rows without ``analysis_basis`` (exposure analysis and the column came in June 2021);
  segments came in September 2020 (before, no ``segment`` key). Comparisons are against the
  reference branch only. The output partybal meets from that time also lacks ``ci_width`` and
  ``comparison_to_branch`` (issue 12): a comparison row is then against the one branch that has
  no comparison rows of its own.
- Metadata began in December 2020: ``{metrics: {name: {friendly_name, description,
  bigger_is_better}}, probesets}``; February 2021 added ``outcomes`` (without
  ``default_metrics``, which came in July 2021) and dropped ``probesets``; June 2021
  ``schema_version`` and per-metric ``analysis_basis`` then, a week later, ``analysis_bases``;
  August 2021 a top-level ``reference_branch``, replaced within two weeks by ``external_config``;
  July 2022 ``analysis_start_time``. From July 2023 the nimbus-schemas models write every key
  (nulls included; datetimes as ``str(datetime)``, with a space); ``version_info`` is the newest.
"""

from __future__ import annotations

import json
import random

from partybal import layout
from tests.support import synthetic

GENERATIONS = ("2020", "2021", "2021-06", "2021-08", "2022", "2023", "current")


def _rows(spec: synthetic.ExperimentSpec, period: str, rng: random.Random, reference_only: str | None) -> list[dict]:
    rows = synthetic.statistics_rows(spec, period, rng)
    if reference_only is not None:
        rows = [r for r in rows if r["comparison"] is None or r["comparison_to_branch"] == reference_only]
    return rows


def _drop(rows: list[dict], keys: tuple[str, ...], nulls: bool) -> list[dict]:
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if k not in keys and not (nulls and v is None)}
        out.append(r)
    return out


def statistics_for(generation: str, spec: synthetic.ExperimentSpec, period: str, rng: random.Random) -> list[dict]:
    reference = spec.branches[0]
    old = generation in ("2020", "2021")
    rows = _rows(spec, period, rng, reference if generation in ("2020", "2021", "2021-06", "2021-08") else None)
    if old:
        drop = ("analysis_basis", "ci_width", "comparison_to_branch")
        if generation == "2020":
            drop += ("segment",)
        rows = _drop(rows, drop, nulls=True)
    elif generation in ("2021-06", "2021-08", "2022"):
        rows = _drop(rows, (), nulls=True)
    for r in rows:
        if r.get("parameter") is not None and generation != "current":
            r["parameter"] = f"{float(r['parameter']):.6g}"  # BigQuery NUMERIC as a string
    return rows


def metadata_for(generation: str, spec: synthetic.ExperimentSpec) -> dict | None:
    base = synthetic.metadata(spec)
    metrics = {
        name: {k: v for k, v in m.items() if k in ("friendly_name", "description", "bigger_is_better")}
        for name, m in base["metrics"].items()
    }
    names = list(metrics)
    outcome = {
        "slug": "search_outcome",
        "friendly_name": "Search",
        "description": "Search metrics",
        "metrics": names[1:3],
        "commit_hash": "0123abcd",
    }
    if generation == "2020":
        return {"metrics": metrics, "probesets": {}}
    if generation == "2021":
        return {"metrics": metrics, "outcomes": {"search_outcome": outcome}}
    if generation == "2021-06":
        for m in metrics.values():
            m["analysis_basis"] = "enrollments"
        return {"metrics": metrics, "outcomes": {"search_outcome": outcome}, "schema_version": 4}
    for m in metrics.values():
        m["analysis_bases"] = list(spec.bases)
    outcome = {**outcome, "default_metrics": names[1:2]}
    md: dict = {"metrics": metrics, "outcomes": {"search_outcome": outcome}, "schema_version": 4}
    if generation == "2021-08":
        md["reference_branch"] = spec.reference_branch or spec.branches[0]
        return md
    md["external_config"] = (
        {
            "reference_branch": spec.reference_branch,
            "end_date": None,
            "start_date": "2022-03-01",
            "enrollment_period": None,
            "skip": False,
            "url": "https://github.com/mozilla/metric-hub/blob/main/jetstream/x.toml",
        }
        if spec.reference_branch
        else None
    )
    if generation == "2022":
        md["analysis_start_time"] = "2022-09-20T04:10:00+00:00"
        if md["external_config"] is None:
            del md["external_config"]
        return md
    md["analysis_start_time"] = "2023-09-20 04:10:00.123456+00:00"
    md["version_date"] = None
    if generation == "current":
        md["version_info"] = {
            "metric_definitions": [{"path": "jetstream/x.toml", "revision": "abc123"}],
            "jetstream_image": None,
        }
    return md


def generation_spec(
    slug: str, generation: str, *, branches: tuple[str, ...] | None = None, seed: int = 1
) -> synthetic.ExperimentSpec:
    """A small experiment in the shape one generation wrote: 3 branches (the reference, first, is
    neither named control nor alphabetically first), weekly series of 2, daily of 3."""
    older = generation in ("2020", "2021", "2021-06", "2021-08")
    return synthetic.ExperimentSpec(
        slug=slug,
        seed=seed,
        branches=branches or ("msw_control", "control-no-show", "msw-treatment"),
        segments=("all",) if generation == "2020" else ("all", "new_users"),
        bases=("enrollments",) if older else ("enrollments", "exposures"),
        windows={"overall": 1, "weekly": 2, "daily": 3},
        metrics=(
            synthetic.MetricSpec("retained", ("binomial",), True, "Retained"),
            synthetic.MetricSpec("search_count", ("mean",), True, "Search Count"),
            synthetic.MetricSpec("active_hours", ("mean", "deciles"), True, "Active Hours"),
            synthetic.MetricSpec("identity", ("count",), True, "Clients"),
        ),
        grid_points=8,
        reference_branch=None if older or generation == "2022" else (branches or ("msw_control",))[0],
        errors=1,
    )


def generation_files(generation: str, spec: synthetic.ExperimentSpec) -> dict[str, bytes]:
    """Object name -> content of one experiment as ``generation`` wrote it."""
    if generation not in GENERATIONS:
        raise ValueError(f"unknown generation {generation!r}")
    rng = random.Random(spec.seed)
    fslug = layout.file_slug(spec.slug)
    files = {}
    for period in spec.windows:
        rows = statistics_for(generation, spec, period, rng)
        files[layout.results_name(layout.Kind.STATISTICS, fslug, period)] = json.dumps(rows).encode()
    md = metadata_for(generation, spec)
    if md is not None:
        files[layout.results_name(layout.Kind.METADATA, fslug)] = json.dumps(
            md, indent=4 if generation != "current" else None
        ).encode()
    errors = synthetic.errors(spec)
    if generation in ("2020", "2021"):
        for e in errors:
            for key in ("analysis_basis", "source", "segment", "statistic", "experiment"):
                e.pop(key, None)
    files[layout.results_name(layout.Kind.ERRORS, fslug)] = json.dumps(errors).encode()
    return files


def write_generation(root, generation: str, spec: synthetic.ExperimentSpec) -> list[str]:
    from pathlib import Path

    names = []
    for name, data in generation_files(generation, spec).items():
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        names.append(name)
    return names


# --- reference-branch situations ---------------------------------------------------------------

SITUATIONS = (
    "config",  # metadata external_config names the reference exactly
    "config-case",  # ... in another case than the data
    "config-absent-branch",  # ... a branch that has no rows: the data decides
    "explicit",  # rows name comparison_to_branch, all against one branch
    "implied",  # rows have no comparison_to_branch: against the branch without comparisons
    "control",  # every branch compared to every other, one is named control
    "unknown",  # every branch compared to every other, none named control, no metadata reference
    "none",  # no comparisons at all
)


def branch_names(n: int, rng: random.Random, with_control: bool) -> list[str]:
    """n distinct names; the reference (first) is neither 'control' nor first by name, unless
    ``with_control``; two names differ only in case when n >= 4."""
    pool = [
        "zz-reference",
        "Treatment-A",
        "treatment-a",
        "msw-b",
        "ünicode-c",
        "d",
        "e-long-" + "x" * 40,
        "f",
        "g",
        "h",
        "i",
    ]
    names = pool[:n]
    if with_control:
        names[0] = "control"
    if n < 4 and "treatment-a" in names:
        names[names.index("treatment-a")] = "treatment-c"
    rng.shuffle(names[1:])
    return names


def reference_case(situation: str, n: int, seed: int = 1) -> tuple[list[dict], dict | None, str | None, list[str]]:
    """(overall + weekly rows, metadata, the true reference or None, branches).

    Every comparison row's point encodes the branch it is against: 1000 * (index + 1) + its own
    branch index, so a test can check any "vs X" label against the rows under it."""
    rng = random.Random(seed * 100 + n)
    branches = branch_names(n, rng, with_control=situation == "control")
    ref = branches[0]
    # the configuration must decide on its own: every branch is compared to every other
    pairwise = situation in ("control", "unknown", "config", "config-case")
    rows = []
    for period, windows in (("overall", ("1",)), ("weekly", ("1", "2"))):
        for w in windows:
            for i, b in enumerate(branches):
                for stat in ("mean", "binomial"):
                    base = {
                        "metric": f"m_{stat}",
                        "statistic": stat,
                        "branch": b,
                        "segment": "all",
                        "window_index": w,
                        "period": period,
                    }
                    rows.append(
                        {
                            **base,
                            "point": float(i),
                            "lower": i - 0.5,
                            "upper": i + 0.5,
                            "ci_width": 0.95,
                            "analysis_basis": "enrollments",
                        }
                    )
                    if situation == "none":
                        continue
                    targets = [t for t in branches if t != b] if pairwise else ([ref] if b != ref else [])
                    for t in targets:
                        code = 1000.0 * (branches.index(t) + 1) + i
                        for comp in ("difference", "relative_uplift"):
                            row = {
                                **base,
                                "comparison": comp,
                                "point": code,
                                "lower": code - 0.5,
                                "upper": code + 0.5,
                                "ci_width": 0.95,
                                "analysis_basis": "enrollments",
                            }
                            if situation != "implied":
                                row["comparison_to_branch"] = t
                            else:
                                del row["ci_width"], row["analysis_basis"]
                            rows.append(row)
    metadata = None
    if situation.startswith("config"):
        named = {
            "config": ref,
            "config-case": ref.upper() if ref.upper() != ref else ref.title(),
            "config-absent-branch": "no-such-branch",
        }[situation]
        metadata = {
            "metrics": {},
            "external_config": {
                "reference_branch": named,
                "url": "https://github.com/mozilla/metric-hub/blob/main/jetstream/x.toml",
            },
        }
    # config-absent-branch: the rows are against ref only, so the data says ref
    truth = None if situation in ("unknown", "none") else ref
    return rows, metadata, truth, branches

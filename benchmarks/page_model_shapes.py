"""The page model (``report.build_page``, no R) on adversarial data shapes: time, Python peak memory
(tracemalloc) and the size of the model, per shape — to show that nothing grows faster than the
input (issue 14: tables quadratic in windows, outcomes matching O(metrics × names × views)).

    .venv/bin/python benchmarks/page_model_shapes.py            # prints a Markdown table

Each shape is generated here (no files checked in); the figures are drawn by R only when a page
is rendered, so they are counted (``figures``) but not drawn.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from partybal import layout
from partybal.page import report  # noqa: E402
from partybal.page.results import load_experiment  # noqa: E402
from partybal.storage import LocalResults  # noqa: E402
from tests.support import synthetic


def row(metric, statistic, branch, window, comparison=None, segment="all"):
    return {
        "metric": metric,
        "statistic": statistic,
        "branch": branch,
        "parameter": None,
        "comparison": comparison,
        "comparison_to_branch": "control" if comparison else None,
        "ci_width": 0.95,
        "point": 1.5,
        "lower": 1.0,
        "upper": 2.0,
        "segment": segment,
        "analysis_basis": "enrollments",
        "window_index": str(window),
    }


def metadata(metrics: list[str], outcome_names: list[str] | None = None) -> dict:
    md = json.loads(
        synthetic.experiment_files(synthetic.tiny_spec("shape"))[layout.results_name(layout.Kind.METADATA, "shape")]
    )
    md["metrics"] = {
        m: {"friendly_name": m, "description": "", "bigger_is_better": True, "analysis_bases": ["enrollments"]}
        for m in metrics
    }
    if outcome_names is not None:
        md["outcomes"] = {
            "big": {
                "slug": "big",
                "friendly_name": "Big",
                "description": "",
                "metrics": outcome_names,
                "default_metrics": [],
            }
        }
    return md


def shapes():
    for w in (100, 400, 1500, 3000):  # one count metric per weekly window (the old quadratic table)
        rows = [row(f"m{i}", "count", b, i) for i in range(1, w + 1) for b in ("control", "treatment")]
        yield f"count metric per window, {w} windows", {"weekly": rows}, None
    for n in (1000, 5000, 20000):  # outcomes naming many metrics, many metrics present, 4 segments (views)
        metrics = [f"metric_{i}" for i in range(n // 10)]
        rows = [
            row(m, "count", b, 1, segment=s)
            for m in metrics
            for b in ("control", "treatment")
            for s in ("all", "a", "b", "c")
        ]
        yield (
            f"outcome naming {n} metrics; {len(metrics)} metrics × 4 segments",
            {"overall": rows},
            metadata(metrics, [f"metric_{i}" for i in range(n)]),
        )
    branches = [f"branch_{i}" for i in range(10)]
    rows = [row("m", "mean", b, w) for b in ["control", *branches] for w in range(1, 91)]
    rows += [row("m", "mean", b, w, comparison="difference") for b in branches for w in range(1, 91)]
    yield "11 branches × 90 daily windows, mean + difference", {"daily": rows}, None
    long = "x" * 5000
    rows = [row(f"{long}{i}", "count", f"{long}{b}", 1) for i in range(200) for b in range(3)]
    yield "200 metrics, 3 branches, 5,000-character names", {"overall": rows}, None


def measure(name, statistics, md) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_rows = 0
        for period, rows in statistics.items():
            path = root / layout.results_name(layout.Kind.STATISTICS, "shape", period)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows))
            n_rows += len(rows)
        if md is not None:
            path = root / layout.results_name(layout.Kind.METADATA, "shape")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(md))
        results = load_experiment(LocalResults(root), "shape")
        times = []
        for _ in range(3):  # the fastest of three: the machine is shared
            started = time.perf_counter()
            page, figures = report.build_page(results)
            times.append(time.perf_counter() - started)
        seconds = min(times)
        tracemalloc.start()  # a second build, traced (tracing slows it down)
        page, figures = report.build_page(results)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "shape": name,
        "rows": n_rows,
        "seconds": seconds,
        "peak_mib": peak / 2**20,
        "entries": entries(page),
        "figures": len(figures),
    }


def entries(obj) -> int:
    """List/tuple entries anywhere in the page model (table cells, rows, windows...)."""
    n, stack = 0, [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            n += len(o)
            stack.extend(o)
        elif hasattr(o, "__dataclass_fields__"):
            stack.extend(getattr(o, f) for f in o.__dataclass_fields__)
    return n


def main() -> int:
    print("| shape | statistics rows | build_page s | Python peak MiB | page-model entries | figures |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, statistics, md in shapes():
        m = measure(name, statistics, md)
        print(
            f"| {m['shape']} | {m['rows']:,} | {m['seconds']:.2f} | {m['peak_mib']:.0f} | {m['entries']:,} | {m['figures']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

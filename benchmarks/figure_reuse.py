"""Benchmark: figures by content hash (issue 18.1) — what a re-render draws and costs.

    .venv/bin/python benchmarks/figure_reuse.py [--shapes small,large] [--cores N] [--no-write]

For each shape (``small``: tests.support.synthetic.small_spec; ``large``: the render_large.py
experiment) it renders with ``partybal render --out DIR`` three times into one output folder:

1. first render (nothing stored);
2. the unchanged input again (every figure reused) — also what a template-only change costs: it
   draws no figure (tests/render/test_figure_reuse.py::test_a_template_change_draws_no_figure);
3. the daily file gained one window (everything else unchanged: the overall and weekly files are
   the same bytes).

Seconds (wall), peak memory of the process tree (PSS), figures drawn / reused (from the CLI's
line, which reads R's drawn.json). Results go to docs/performance.md (section figure-reuse).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.procstats import measure, write_section  # noqa: E402
from tests.support.synthetic import ExperimentSpec, small_spec, write_experiment  # noqa: E402


def shapes() -> dict[str, ExperimentSpec]:
    return {"small": small_spec("reuse-small"), "large": ExperimentSpec(slug="reuse-large")}


def counts(stdout: str) -> tuple[int, int, int]:
    """(figures, drawn, reused) from ``partybal render``'s line ``(N figures, S s; D drawn, R reused)``."""
    head = stdout.rsplit("(", 1)[1]
    figures = int(head.split(" figures", 1)[0])
    drawn = int(head.split("; ", 1)[1].split(" drawn", 1)[0])
    reused = int(head.split("drawn, ", 1)[1].split(" reused", 1)[0])
    return figures, drawn, reused


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="small,large")
    ap.add_argument("--cores", type=int, default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    for name in args.shapes.split(","):
        spec = shapes()[name]
        with tempfile.TemporaryDirectory() as tmp:
            results, out = Path(tmp) / "results", Path(tmp) / "site"
            write_experiment(results, spec)
            cmd = [sys.executable, "-m", "partybal", "render", spec.slug, "--results", str(results), "--out", str(out)]
            cmd += ["--cores", str(args.cores)] if args.cores else []
            steps = [
                ("first render", None),
                ("unchanged re-render (= template change)", None),
                ("daily file + 1 window", "daily"),
            ]
            for label, change in steps:
                if change == "daily":
                    windows = dict(spec.windows)
                    windows["daily"] = windows.get("daily", 0) + 1
                    write_experiment(
                        results, dataclasses.replace(spec, windows=windows)
                    )  # same seed: earlier periods unchanged
                m = measure(cmd, cwd=ROOT)
                if m.returncode != 0:
                    print(m.stderr, file=sys.stderr)
                    return 1
                figures, drawn, reused = counts(m.stdout)
                row = (name, label, m.seconds, m.peak_mib, figures, drawn, reused)
                print("{} | {} | {:.1f} s | {:.0f} MiB | {} figures | {} drawn | {} reused".format(*row), flush=True)
                rows.append(row)
    cores = args.cores or len(os.sched_getaffinity(0))
    table = "\n".join(f"| {n} | {lab} | {s:.1f} | {p:.0f} MiB | {f} | {d} | {r} |" for n, lab, s, p, f, d, r in rows)
    report = f"""## Re-rendering: figures by content hash (issue 18.1)

Measured {dt.date.today().isoformat()} on {platform.machine()}, {len(os.sched_getaffinity(0))} cores (shared, loaded), R workers: {cores}.
Three renders into one `--out`: the second has unchanged input (what a template-only change costs:
no figure drawn), the third a daily file with one more window (overall/weekly files byte-identical).

| shape | render | seconds | peak memory (PSS, tree) | figures | drawn | reused |
|---|---|---|---|---|---|---|
{table}

Reproduce: `.venv/bin/python benchmarks/figure_reuse.py [--shapes small,large] [--cores N]`.
"""
    print(report)
    if not args.no_write:
        write_section(ROOT / "docs" / "performance.md", "figure-reuse", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

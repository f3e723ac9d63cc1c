"""Benchmark: render one large, real-shaped experiment page and report seconds and peak memory.

    make bench                       # or: .venv/bin/python benchmarks/render_large.py --runs 3

The experiment: 3 branches, 2 segments, 2 analysis bases, overall + 3 weekly + 7 daily windows,
every statistic Jetstream emits (mean, mean_lm, per_client_dau_impact, binomial, population_ratio,
deciles, kernel_density_estimate, empirical_cdf, count, sum), daily file >= 15 MB. Goal on a
2-core machine: <= 30 s and <= 1 GiB per page. Results go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.procstats import measure, write_section  # noqa: E402
from tests.support.synthetic import ExperimentSpec, write_experiment  # noqa: E402

GOAL_SECONDS, GOAL_MIB = 30.0, 1024.0


def figure_counts(stdout: str) -> str:
    """``D drawn, R reused`` from ``partybal render``'s line."""
    return stdout.split("s; ", 1)[1].split(")", 1)[0] if "s; " in stdout else "counts not printed"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cores", type=int, default=None, help="R worker processes (default: all cores)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update docs/performance.md")
    args = ap.parse_args()

    spec = ExperimentSpec(slug="large-benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        results, out = Path(tmp) / "results", Path(tmp) / "site"
        sizes = write_experiment(results, spec)
        daily = sizes["statistics/statistics_large_benchmark_daily.json"] / 1e6
        total = sum(sizes.values()) / 1e6
        print(f"input: {total:.1f} MB in {len(sizes)} files, daily file {daily:.1f} MB")
        assert daily >= 15, "the daily file must be at least 15 MB"

        def command(site: Path) -> list[str]:
            cmd = [sys.executable, "-m", "partybal", "render", spec.slug, "--results", str(results), "--out", str(site)]
            return cmd + (["--cores", str(args.cores)] if args.cores else [])

        runs = []
        for i in range(args.runs):  # first renders: a fresh --out each (no stored figures to reuse)
            out = Path(tmp) / f"site-{i}"
            m = measure(command(out), cwd=ROOT)
            if m.returncode != 0:
                print(m.stderr, file=sys.stderr)
                return 1
            figures = m.stdout.split("(")[1].split(" figures")[0]
            print(
                f"run {i + 1}: {m.seconds:.1f} s, peak {m.peak_mib:.0f} MiB, {figures} figures ({figure_counts(m.stdout)})"
            )
            runs.append(m)
        again = measure(command(out), cwd=ROOT)  # unchanged input into the same --out: every figure reused
        if again.returncode != 0:
            print(again.stderr, file=sys.stderr)
            return 1
        print(f"re-render: {again.seconds:.1f} s, peak {again.peak_mib:.0f} MiB ({figure_counts(again.stdout)})")
        page_mb = (out / "large_benchmark.html").stat().st_size / 1e6

    secs = [m.seconds for m in runs]
    peak = max(m.peak_mib for m in runs)
    cores = args.cores or len(os.sched_getaffinity(0))
    verdict = "meets" if max(secs) <= GOAL_SECONDS and peak <= GOAL_MIB else "MISSES"
    report = f"""## Rendering one large experiment page

Measured {dt.date.today().isoformat()} on {platform.machine()}, {len(os.sched_getaffinity(0))} cores, R workers: {cores}.
Input: 3 branches, 2 segments, 2 analysis bases, overall + 3 weekly + 7 daily windows, every
statistic; {total:.1f} MB of JSON, daily file {daily:.1f} MB. Output page {page_mb:.1f} MB of HTML, {figures} figures.

| runs | median s | min s | max s | peak memory (PSS, whole process tree) |
|---|---|---|---|---|
| {len(runs)} | {statistics.median(secs):.1f} | {min(secs):.1f} | {max(secs):.1f} | {peak:.0f} MiB |

Goal: ≤ {GOAL_SECONDS:.0f} s and ≤ 1 GiB per page — this run **{verdict}** it.

Re-render of the unchanged input into the same `--out` (figures stored by content hash, reused):
{again.seconds:.1f} s, peak {again.peak_mib:.0f} MiB, {figure_counts(again.stdout)}.

Reproduce: `make bench` (or `.venv/bin/python benchmarks/render_large.py --runs 3 [--cores N]`).
"""
    print(report)
    if not args.no_write:
        write_section(ROOT / "docs" / "performance.md", "render-large", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

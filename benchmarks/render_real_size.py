"""Benchmark: small, large and real-size experiment pages — seconds, peak memory of the whole
process tree (Python + R + R's forked workers), figures drawn, page and figure bytes.

    .venv/bin/python benchmarks/render_real_size.py                       # all three sizes
    .venv/bin/python benchmarks/render_real_size.py --sizes small,large   # skip the real size
    .venv/bin/python benchmarks/render_real_size.py --sizes real --keep-site build/real-size
    PARTYBAL_REAL_SIZE_PAGE=build/real-size/real/bench_real_size.html \
        .venv/bin/python -m pytest tests/render/test_browser.py -k real_size -s   # the page in Chromium

Sizes (tests/support/synthetic.py):
- small: ``small_spec`` — 2 branches, 1 segment, 1 basis, overall + 1 weekly + 2 daily, 3 metrics;
- large: ``ExperimentSpec()`` — 3 branches, 2 segments, 2 bases, overall + 3 weekly + 7 daily, every statistic;
- 10 branches: ``many_branches_spec`` — 10 branches, overall + 8 weekly + 60 daily, 8 metrics;
- real: ``real_size_spec`` — 49 metrics, 4 branches, 4 segments, 2 bases, overall + 4 weekly +
  28 daily windows, daily file ≈ 270 MB (the experiment of issue 12);
- 2x real: the same with 8 weekly and 56 daily windows, daily file ≈ 550 MB (the headroom case).

``--load-only``: measure only the Python side before R (``load_experiment`` + ``build_page``, the
phase whose memory grows with the input) — minutes instead of a quarter of an hour per size; the
rows go to the section ``render-load-phase``.

Memory is sampled every 50 ms from /proc: PSS summed over the process tree (shared pages of forked
R workers counted once, what the machine actually holds) and RSS summed (each process's resident
pages counted in full: what a naive per-process limit would see). The rows are written to
docs/performance.md (section ``render-real-size``) unless --no-write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.procstats import measure, render_counts, write_section  # noqa: E402
from partybal import layout  # noqa: E402
from tests.support import synthetic  # noqa: E402

SIZES = ("small", "large", "10 branches", "real", "2x real")  # synthetic.BENCHMARK_SHAPES
JOB_MEMORY_MIB = 4096  # the Cloud Run job's default memory (terraform)


def png_size(path: Path) -> tuple[int, int]:
    with path.open("rb") as fh:
        head = fh.read(24)
    return struct.unpack(">II", head[16:24]) if head[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)


def describe(spec: synthetic.ExperimentSpec) -> str:
    w = spec.windows
    windows = " + ".join(f"{n} {p}" if p != "overall" else "overall" for p, n in w.items())

    def n(count: int, one: str, many: str) -> str:
        return f"{count} {one if count == 1 else many}"

    return (
        f"{n(len(spec.metrics), 'metric', 'metrics')}, {n(len(spec.branches), 'branch', 'branches')}, "
        f"{n(len(spec.segments), 'segment', 'segments')} × {n(len(spec.bases), 'basis', 'bases')}, {windows}"
    )


LOAD_PHASE = """
import sys, time
from partybal.page import report, srm
from partybal.page.results import load_experiment
from partybal.storage import LocalResults
t = time.monotonic()
res = load_experiment(LocalResults(sys.argv[1]), sys.argv[2])
rows = sum(len(v) for v in res.statistics.values())
loaded = time.monotonic() - t
page, figures = report.build_page(res, srm_checks=srm.srm_checks(res, None))
print(f"rows={rows} figures={len(figures)} load_s={loaded:.1f} build_s={time.monotonic() - t - loaded:.1f}")
"""


def run_load_only(name: str, keep: Path | None) -> dict:
    """Python's loading phase only (no R): peak memory and CPU of load_experiment + build_page."""
    spec = synthetic.benchmark_spec(name, "bench")
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        results = Path(tmp) / "results"
        sizes = synthetic.write_experiment(results, spec)
        fslug = layout.file_slug(spec.slug)
        daily = sizes.get(layout.results_name(layout.Kind.STATISTICS, fslug, "daily"), 0)
        m = measure([sys.executable, "-c", LOAD_PHASE, str(results), spec.slug], cwd=ROOT)
        if m.returncode != 0:
            raise SystemExit(f"[{name}] loading failed: {m.stderr.strip()[-500:]}")
        fields = dict(kv.split("=") for kv in m.stdout.split())
        row = {
            "size": name,
            "shape": describe(spec),
            "input_mb": sum(sizes.values()) / 1e6,
            "daily_mb": daily / 1e6,
            "rows": int(fields["rows"]),
            "figures": int(fields["figures"]),
            "load_s": float(fields["load_s"]),
            "build_s": float(fields["build_s"]),
            "seconds": m.seconds,
            "cpu_seconds": m.cpu_seconds,
            "pss_mib": m.peak_mib,
            "rss_mib": m.peak_rss_mib,
            "load": os.getloadavg()[0],
        }
        print(
            f"[{name}] load-only: {row['rows']:,} rows, {row['cpu_seconds']:.0f} CPU s, peak PSS {row['pss_mib']:.0f} MiB / RSS {row['rss_mib']:.0f} MiB",
            flush=True,
        )
        return row


def report_load_only(rows: list[dict]) -> str:
    load = max([r["load"] for r in rows] + [os.getloadavg()[0]])
    lines = [
        "### Loading phase only (Python, before R)",
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {len(os.sched_getaffinity(0))} cores, load average up to {load:.1f}.",
        "`load_experiment` + `build_page` in one process, no R (`--load-only`): what grows with the input files.",
        "",
        "| size | shape | input MB (daily) | statistics rows | figures | CPU s | peak PSS MiB | peak RSS MiB | bytes per row above 130 MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_row = max(0.0, r["rss_mib"] - 130) * 1024 * 1024 / r["rows"] if r["rows"] else 0
        lines.append(
            f"| {r['size']} | {r['shape']} | {r['input_mb']:.1f} ({r['daily_mb']:.1f}) | {r['rows']:,} | {r['figures']} | {r['cpu_seconds']:.0f} | "
            f"{r['pss_mib']:.0f} | {r['rss_mib']:.0f} | {per_row:.0f} |"
        )
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/render_real_size.py --load-only --sizes real,2x real`."]
    return "\n".join(lines) + "\n"


def run_one(name: str, cores: int | None, keep: Path | None, keep_site: Path | None = None) -> dict:
    spec = synthetic.benchmark_spec(name, "bench")
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        results, out = Path(tmp) / "results", Path(tmp) / "site"
        started = time.monotonic()
        sizes = synthetic.write_experiment(results, spec)
        generated = time.monotonic() - started
        fslug = layout.file_slug(spec.slug)
        daily = sizes.get(layout.results_name(layout.Kind.STATISTICS, fslug, "daily"), 0)
        print(
            f"[{name}] generated {sum(sizes.values()) / 1e6:.1f} MB in {generated:.0f} s (daily {daily / 1e6:.1f} MB); rendering…",
            flush=True,
        )
        cmd = [sys.executable, "-m", "partybal", "render", spec.slug, "--results", str(results), "--out", str(out)]
        if cores:
            cmd += ["--cores", str(cores)]
        m = measure(cmd, cwd=ROOT)
        if m.returncode != 0:
            raise SystemExit(f"[{name}] render failed: {m.stderr.strip()[-500:]}")
        # figure reuse: a fresh --out draws every figure
        figures, drawn, _ = render_counts(m.stdout) or (-1, -1, 0)
        page = out / layout.page_name(fslug)
        pngs = [p for p in out.rglob("*.png")]
        heights = [png_size(p)[1] for p in pngs]
        row = {
            "size": name,
            "shape": describe(spec),
            "input_mb": sum(sizes.values()) / 1e6,
            "daily_mb": daily / 1e6,
            "seconds": m.seconds,
            "cpu_seconds": m.cpu_seconds,
            "r_cpu_seconds": m.children_cpu_seconds,  # Rscript and its forked figure workers
            "py_cpu_seconds": m.self_cpu_seconds,
            "pss_mib": m.peak_mib,
            "rss_mib": m.peak_rss_mib,
            "processes": m.max_processes,
            "figures": figures,
            "drawn": drawn,
            "page_mb": page.stat().st_size / 1e6,
            "figure_mb": sum(p.stat().st_size for p in pngs) / 1e6,
            "tallest_px": max(heights, default=0),
            "load": os.getloadavg()[0],
        }
        if keep_site:
            dest = keep_site / name.replace(" ", "-")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(out, dest)
            row["page"] = str(dest / page.name)
        print(
            f"[{name}] {row['seconds']:.1f} s ({row['cpu_seconds']:.0f} CPU s: R {row['r_cpu_seconds']:.0f}, Python {row['py_cpu_seconds']:.0f}), "
            f"peak PSS {row['pss_mib']:.0f} MiB / RSS {row['rss_mib']:.0f} MiB "
            f"({row['processes']} processes), {figures} figures ({drawn} drawn), page {row['page_mb']:.2f} MB, "
            f"figures {row['figure_mb']:.1f} MB, tallest {row['tallest_px']} px",
            flush=True,
        )
        return row


def report(rows: list[dict], cores: int) -> str:
    load = max([r["load"] for r in rows] + [os.getloadavg()[0]])
    lines = [
        "## Small, large and real-size pages",
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"R workers: {cores}, load average up to {load:.1f} at the end of a run (the machine is shared: wall seconds are noisy).",
        "One `partybal render` per size from synthetic Jetstream-shaped files (`tests/support/synthetic.py`);",
        "peak memory is the whole process tree (Python, Rscript and its forked figure workers), sampled",
        "every 50 ms: PSS counts a page shared by forked workers once, RSS once per process. CPU s is",
        "user + system time of the whole tree (less sensitive than wall seconds to other load).",
        "",
        "| size | shape | input MB (daily) | seconds | CPU s | of which R | peak PSS MiB | peak RSS MiB | figures drawn | page MB | figures MB | tallest figure px |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['shape']} | {r['input_mb']:.1f} ({r['daily_mb']:.1f}) | {r['seconds']:.1f} | {r['cpu_seconds']:.0f} | {r['r_cpu_seconds']:.0f} | "
            f"{r['pss_mib']:.0f} | {r['rss_mib']:.0f} | {r['drawn']} | {r['page_mb']:.2f} | {r['figure_mb']:.1f} | {r['tallest_px']} |"
        )
    real = [r for r in rows if r["size"] == "real"]
    if real:
        r = real[0]
        head = JOB_MEMORY_MIB / r["pss_mib"] if r["pss_mib"] else float("inf")
        lines += [
            "",
            f"Real size against the job's default {JOB_MEMORY_MIB} MiB: the peak tree PSS is {r['pss_mib']:.0f} MiB "
            f"with {cores} R workers ({head:.1f}× headroom; each further worker adds ≈ 130 MiB: "
            '"How many vCPUs a render gets").',
        ]
    lines += [
        "",
        "Reproduce: `.venv/bin/python benchmarks/render_real_size.py [--sizes small,large,10 branches,real] [--cores N]`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,large,10 branches,real", help="comma-separated: " + ", ".join(SIZES))
    ap.add_argument("--cores", type=int, default=None, help="R worker processes (default: all cores)")
    ap.add_argument("--keep", type=Path, default=None, help="generate into a folder here (default: the system temp)")
    ap.add_argument(
        "--keep-site",
        type=Path,
        default=None,
        help="copy each rendered site to DIR/<size> (for the browser test: PARTYBAL_REAL_SIZE_PAGE=DIR/real/<page>.html)",
    )
    ap.add_argument("--no-write", action="store_true", help="print only; do not update docs/performance.md")
    ap.add_argument("--load-only", action="store_true", help="measure only load_experiment + build_page (no R)")
    args = ap.parse_args()
    names = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [n for n in names if n not in SIZES]
    if unknown:
        print(f"render_real_size: error: unknown size {unknown[0]!r} (choose from {', '.join(SIZES)})", file=sys.stderr)
        return 2
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    if args.load_only:
        text = report_load_only([run_load_only(n, args.keep) for n in names])
        print(text)
        if not args.no_write:
            write_section(ROOT / "docs" / "performance.md", "render-load-phase", text)
        return 0
    rows = [run_one(n, args.cores, args.keep, args.keep_site) for n in names]
    text = report(rows, args.cores or len(os.sched_getaffinity(0)))
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "performance.md", "render-real-size", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

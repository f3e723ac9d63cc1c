"""Benchmark: the least a real-size page can cost with its figures drawn by ggplot2 (issue 18).

    .venv/bin/python benchmarks/drawing_floor.py                        # real size, 3 samples per kind
    .venv/bin/python benchmarks/drawing_floor.py --shape large --samples 2 --reps 1 --no-write

Builds the page model of a synthetic experiment (``tests/support/synthetic.py``; real size by
default) exactly as ``partybal render`` does up to the point where R starts — timing that Python
phase — and keeps the ``plots.json`` R would get. ``benchmarks/drawing_floor.R`` then draws, on one
core, a few figures of every kind on the page twice: as they are, and as their *skeleton* (the same
ggplot with every geom replaced by ``geom_blank``: same data, scales, panels, axes, strips, legend,
caption — no data drawn). The skeleton is what ggplot2 costs per figure whatever the layers are, so
figures × skeleton CPU seconds, spread over the cores, is a floor for the drawing of this page with
these figures. Results go to docs/performance.md (section ``drawing-floor``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.procstats import write_section  # noqa: E402
from partybal import storage  # noqa: E402
from partybal.page import render, results  # noqa: E402
from tests.support import synthetic  # noqa: E402

SHAPES = ("small", "large", "real")  # synthetic.BENCHMARK_SHAPES


class _Planned(Exception):
    """Raised in place of R: the figure plan is written."""


def python_phase(data: Path, slug: str, keep: Path) -> float:
    """Wall seconds of load + page model + figure plan + exports + report.Rmd — everything before
    R — having copied what R would read (``plots.json`` and the figure specs) into folder ``keep``."""

    def stop_at_r(rmd, fragment, plots, fig_dir, cores):
        shutil.copytree(plots.parent, keep)
        raise _Planned

    real_knit, render.knit = render.knit, stop_at_r
    wall = time.monotonic()
    try:
        loaded = results.load_experiment(storage.LocalResults(data), slug)
        with tempfile.TemporaryDirectory() as tmp:
            render.build(loaded, Path(tmp), cores=1)
    except _Planned:
        pass
    finally:
        render.knit = real_knit
    if not (keep / "plots.json").exists():
        raise SystemExit("the page model did not reach R (no figures?)")
    return time.monotonic() - wall


def measure_kinds(plots: Path, samples: int, reps: int) -> list[dict]:
    out = plots.with_name("floor.json")
    cmd = ["Rscript", "--vanilla", str(ROOT / "benchmarks" / "drawing_floor.R"), str(ROOT / "r"), str(plots)]
    subprocess.run([*cmd, str(samples), str(reps), str(out)], check=True)
    return json.loads(out.read_text())["kinds"]


def table(shape: str, kinds: list[dict], py_wall: float, cores: list[int], meta: str) -> str:
    kinds = sorted(kinds, key=lambda k: -k["figures"] * k["full"])
    lines = [
        f"Measured {meta}. `benchmarks/drawing_floor.py --shape {shape}`: every kind of figure on the page, "
        "a few of each drawn on one core as they are (full) and as their skeleton (every geom replaced "
        "by `geom_blank`: the same panels, axes, strips, legend and caption, no data drawn). CPU seconds "
        "per figure, median; page totals are figures × that.",
        "",
        "| figure kind | figures | panels | full CPU s | skeleton CPU s | page: full | page: skeleton |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    full = skel = 0.0
    for k in kinds:
        f, s = k["figures"] * k["full"], k["figures"] * k["skeleton"]
        full, skel = full + f, skel + s
        lines.append(
            f"| {k['kind']} | {k['figures']} | {k['panels']:.0f} | {k['full']:.2f} | {k['skeleton']:.2f} "
            f"| {f:.0f} | {s:.0f} |"
        )
    n = sum(k["figures"] for k in kinds)
    lines.append(f"| **whole page** | **{n}** | | | | **{full:.0f}** | **{skel:.0f}** |")
    lines += [
        "",
        f"Python before R (load, page model, figure plan, exports, report.Rmd; one core): {py_wall:.1f} s.",
        "",
        "| cores drawing | drawing, figures as they are (s) | floor: skeletons only (s) | floor + Python before R (s) |",
        "|---:|---:|---:|---:|",
    ]
    for c in cores:
        lines.append(f"| {c} | {full / c:.1f} | {skel / c:.1f} | {py_wall + skel / c:.1f} |")
    lines += [
        "",
        "The floor leaves out R's start-up, reading `plots.json`, the knit and writing the page "
        '(≈ 10 s together at real size: "Issue 18\'s targets, measured"), and assumes perfect '
        "spreading over the cores.",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/drawing_floor.py --shape {shape}`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="real")
    ap.add_argument("--samples", type=int, default=3, help="figures measured per kind (default 3)")
    ap.add_argument("--reps", type=int, default=2, help="draws per figure and variant; the median counts")
    ap.add_argument("--cores", default="2,4,8", help="core counts for the floor table (default 2,4,8)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update docs/performance.md")
    args = ap.parse_args(argv)
    cores = [int(c) for c in args.cores.split(",") if c.strip()]
    spec = synthetic.benchmark_spec(args.shape, "floor")
    with tempfile.TemporaryDirectory(prefix="partybal-floor-") as tmp:
        data = Path(tmp) / "results"
        synthetic.write_experiment(data, spec)
        py_wall = python_phase(data, spec.slug, Path(tmp) / "work")
        plots = Path(tmp) / "work" / "plots.json"
        print(f"[{args.shape}] Python before R: {py_wall:.1f} s; measuring figures in R…", flush=True)
        kinds = measure_kinds(plots, args.samples, args.reps)
    meta = (
        f"{dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    text = table(args.shape, kinds, py_wall, cores, meta)
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "performance.md", "drawing-floor", "### The drawing floor (issue 18)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

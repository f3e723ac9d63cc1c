"""Benchmark: what a page costs to render first, after a daily update and after a template
change (issue 18) — for the small, large and real-size shapes.

    .venv/bin/python benchmarks/figure_reuse.py                          # small, large, real
    .venv/bin/python benchmarks/figure_reuse.py --shapes small,large [--cores N] [--no-write]

For each shape (tests/support/synthetic.py: ``small_spec``, ``ExperimentSpec()`` = large,
``real_size_spec`` = real) it renders with ``partybal render --out DIR`` three times into one
output folder, as the job does into the site bucket:

1. **first render** (nothing stored);
2. **daily re-render**: the daily file gained one window (Jetstream's daily run: the overall and
   weekly files are the same bytes — same generator seed);
3. **template change**: the same input rendered by a copy of this checkout whose page template and
   stylesheet were edited (``partybal/``, ``templates/``, ``r/`` copied to a temporary folder and run
   from there): no figure's pixels change, so none is drawn.

Columns: wall seconds; CPU seconds of the whole process tree; figures drawn / reused (the CLI's
line, from R's drawn.json); peak memory of the whole tree (PSS, sampled every 50 ms); bytes
written to the site folder — the files the render created or rewrote, i.e. what the job uploads to
the site bucket (reused figures are neither drawn nor uploaded). Results go to docs/performance.md
(section ``figure-reuse``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.procstats import measure, render_counts, write_section  # noqa: E402
from tests.support.synthetic import benchmark_spec, write_experiment  # noqa: E402

SHAPES = ("small", "large", "real")  # synthetic.BENCHMARK_SHAPES
STEPS = ("first render", "daily re-render (+1 daily window)", "template change (page template and CSS edited)")


def counts(stdout: str) -> tuple[int, int, int]:
    """(figures, drawn, reused) of one render; its absence ends the benchmark."""
    found = render_counts(stdout)
    if found is None:
        raise SystemExit(f"no figure counts in the render's output: {stdout.strip()[-300:]}")
    return found


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()
    }


def written_bytes(before: dict, after: dict) -> int:
    """Bytes of the files a render created or rewrote (what the job would upload)."""
    return sum(size for name, (mtime, size) in after.items() if before.get(name, (None, None))[0] != mtime)


def edited_release(dest: Path) -> Path:
    """A copy of this checkout's renderer with its page template and stylesheet edited."""
    for part in ("partybal", "templates", "r"):
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    page = dest / "templates" / "page.html.j2"
    page.write_text(page.read_text() + "{# a template change: benchmarks/figure_reuse.py #}\n")
    css = dest / "templates" / "static" / "partybal.css"
    css.write_text(css.read_text() + "\n/* a template change: benchmarks/figure_reuse.py */\n")
    return dest


def run_shape(name: str, cores: int | None) -> list[dict]:
    spec = benchmark_spec(name, "reuse")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        results, out = Path(tmp) / "results", Path(tmp) / "site"
        write_experiment(results, spec)
        release = edited_release(Path(tmp) / "release")
        for step in STEPS:
            cwd, env = ROOT, os.environ.copy()
            if step.startswith("daily"):
                windows = dict(spec.windows)
                windows["daily"] = windows.get("daily", 0) + 1
                write_experiment(
                    results, dataclasses.replace(spec, windows=windows)
                )  # same seed: other files unchanged
            if step.startswith("template"):
                cwd, env["PYTHONPATH"] = release, str(release)
            cmd = [sys.executable, "-m", "partybal", "render", spec.slug, "--results", str(results), "--out", str(out)]
            cmd += ["--cores", str(cores)] if cores else []
            before = snapshot(out) if out.exists() else {}
            m = measure(cmd, cwd=cwd, env=env)
            if m.returncode != 0:
                raise SystemExit(f"[{name}] {step} failed: {m.stderr.strip()[-500:]}")
            figures, drawn, reused = counts(m.stdout)
            row = {
                "shape": name,
                "step": step,
                "seconds": m.seconds,
                "cpu": m.cpu_seconds,
                "figures": figures,
                "drawn": drawn,
                "reused": reused,
                "pss": m.peak_mib,
                "written_mb": written_bytes(before, snapshot(out)) / 1e6,
                "load": os.getloadavg()[0],
            }
            rows.append(row)
            print(
                f"[{name}] {step}: {row['seconds']:.1f} s, {row['cpu']:.0f} CPU s, {drawn} drawn / {reused} reused "
                f"of {figures}, peak {row['pss']:.0f} MiB, {row['written_mb']:.1f} MB written",
                flush=True,
            )
    return rows


def report(rows: list[dict], cores: int) -> str:
    load = max(r["load"] for r in rows)
    first = {r["shape"]: r for r in rows if r["step"] == STEPS[0]}
    lines = [
        "## Re-rendering: first, daily and template-change renders (issue 18)",
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"R workers: {cores}, load average up to {load:.1f} at the end of a render. `benchmarks/figure_reuse.py`:",
        "three renders of one experiment into one `--out` (the site): first, after the daily file gained",
        "a window (other files byte-identical), and by a copy of the renderer whose page template and CSS",
        "were edited. Peak memory: PSS of the whole process tree. Written: bytes of the files the render",
        "created or rewrote — what the job uploads (a reused figure is neither drawn nor uploaded).",
        "",
        "| shape | render | seconds | × first | CPU s | figures drawn / reused | peak PSS MiB | MB written |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["seconds"] / first[r["shape"]]["seconds"]
        lines.append(
            f"| {r['shape']} | {r['step']} | {r['seconds']:.1f} | {ratio:.2f} | {r['cpu']:.0f} | "
            f"{r['drawn']} / {r['reused']} | {r['pss']:.0f} | {r['written_mb']:.1f} |"
        )
    lines += [
        "",
        "Shapes: small = 3 metrics, 2 branches, 1 segment × 1 basis, overall + 1 weekly + 2 daily;",
        "large = 9 metrics, 3 branches, 2 segments × 2 bases, overall + 3 weekly + 7 daily;",
        "real = 49 metrics, 4 branches, 4 segments × 2 bases, overall + 4 weekly + 28 daily (321.7 MB, daily 273 MB).",
        "",
        "Reproduce: `.venv/bin/python benchmarks/figure_reuse.py [--shapes small,large,real] [--cores N]`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="small,large,real", help="comma-separated: " + ", ".join(SHAPES))
    ap.add_argument("--cores", type=int, default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = [row for name in args.shapes.split(",") for row in run_shape(name.strip(), args.cores)]
    text = report(rows, args.cores or len(os.sched_getaffinity(0)))
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "performance.md", "figure-reuse", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

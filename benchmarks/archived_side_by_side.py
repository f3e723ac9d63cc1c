"""Benchmark: this project against the archived mozilla/partybal, side by side in one run.

Three experiments shaped like real Jetstream output are generated with the synthetic generator
(every statistic of ``DEFAULT_METRICS``, including ``sum``):

- a: 2 branches, 1 segment, 1 basis, overall + 3 weekly windows;
- b: 2 branches, 1 segment, 1 basis, 7 daily windows only;
- c: 3 branches, 2 segments × 2 bases, overall + 3 weekly + 7 daily windows.

Each is rendered by ``partybal render --cores N --experimenter off`` and by the archived
partybal, interleaved (ours, then theirs, per experiment) so both see the same load. Then all
three again in one go, the way each would handle a day's three updated experiments on N cores:
ours one render after another with N R workers each; the archived one its ``invoke -j N`` way (a
thread pool of N, one single-threaded R per experiment, then its index). Wall seconds, CPU
seconds and peak memory of the whole process tree (PSS, sampled every 50 ms, benchmarks/procstats.py)
are written to docs/performance.md between ``<!-- archived-side-by-side:start/end -->``.

    .venv/bin/python benchmarks/archived_side_by_side.py [--archived DIR] [--cores 2] [--repeat 1]

The archived repository (https://github.com/mozilla/partybal, archived 2025-11-19) is not
downloaded by this script: put a checkout of it at build/archived-partybal/checkout (or pass
``--archived DIR``), e.g.

    git clone https://github.com/mozilla/partybal build/archived-partybal/checkout
    git -C build/archived-partybal/checkout checkout b530751aa9dfd2f6bf48d2deb8b7f392f9713270

or, from a mirror of it (no GitHub access), ``git --git-dir=MIRROR archive b530751 | tar -x -C
build/archived-partybal/checkout``. The script copies the checkout to
build/archived-partybal/patched, applies benchmarks/archived_partybal.patch there (a table-returning
``plot_sum`` and skipping a statistic with no ``plot_`` function: without them it stops at the
first ``sum`` chunk), and creates build/archived-partybal/venv with the archived code's Python
dependencies from PyPI (pinned below) if it is missing. Its R needs (rmarkdown, knitr, ggplot2,
dplyr, jsonlite, pandoc) are this project's own (scripts/apt-packages.txt).

The archived code renders every analysis basis into the same figures (it predates
``analysis_basis``) and has no SRM check, summary or filters: it draws fewer, simpler figures for
experiment c than this project does. The figure counts are in the table.
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
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.procstats import Measurement, measure, render_counts, write_section  # noqa: E402
from partybal import layout  # noqa: E402

try:  # tests/support/synthetic.py since issue 15; partybal/synthetic.py before
    from tests.support import synthetic  # noqa: E402
except ImportError:  # pragma: no cover - older tree
    from partybal import synthetic  # type: ignore[no-redef]  # noqa: E402

SECTION = "archived-side-by-side"
ARCHIVED_COMMIT = "b530751aa9dfd2f6bf48d2deb8b7f392f9713270"
BUILD = ROOT / "build" / "archived-partybal"
PATCH = ROOT / "benchmarks" / "archived_partybal.patch"
LAST_RUN = BUILD / "last-run.json"  # the raw numbers of the last run (--table-only re-renders them)
# The archived environment.yml names these unpinned (conda, Python 3.8); these versions run it
# unchanged on Python 3.11.
ARCHIVED_REQUIREMENTS = [
    "pandas==2.2.3",
    "cattrs==24.1.2",
    "attrs==24.2.0",
    "click==8.1.7",
    "appdirs==1.4.4",
    "python-dateutil==2.9.0.post0",
    "jinja2==3.1.4",
    "requests==2.32.3",
]

ONE = {"segments": ("all",), "bases": ("enrollments",)}
EXPERIMENTS = {
    "a": (
        "2 branches, overall + 3 weekly",
        synthetic.ExperimentSpec(
            slug="side-by-side-a", branches=("control", "treatment"), windows={"overall": 1, "weekly": 3}, **ONE
        ),
    ),
    "b": (
        "2 branches, 7 daily only",
        synthetic.ExperimentSpec(slug="side-by-side-b", branches=("control", "treatment"), windows={"daily": 7}, **ONE),
    ),
    "c": (
        "3 branches, 2 segments × 2 bases, overall + 3 weekly + 7 daily",
        synthetic.ExperimentSpec(slug="side-by-side-c"),  # the generator's default shape
    ),
}

# The body of the archived `invoke.py invoke` command without its GCS sync, Experimenter fetch
# and last-run bookkeeping: render the given experiments with a thread pool of -j workers (one
# single-threaded R each), then write its index. Runs in the patched checkout with its venv.
ARCHIVED_DRIVER = """
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
import invoke
cache, output, jobs, slugs = invoke.Cache(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
experiments = cache.experiments
with ThreadPoolExecutor(jobs) as executor:
    list(executor.map(partial(invoke.render, cache=cache, output=output), [experiments[s] for s in slugs]))
(output / "index.html").write_text(invoke.render_index(experiments, cache))
"""


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class LoadWatch:
    """The highest 1-minute load average seen while the benchmark runs (sampled every 5 s)."""

    def __init__(self) -> None:
        self.peak = os.getloadavg()[0]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(5):
            self.peak = max(self.peak, os.getloadavg()[0])

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return max(self.peak, os.getloadavg()[0])


class BenchError(Exception):
    """One line for the person at the shell; exit code 2 (setup) or 1 (a render failed)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def run_quiet(cmd: list[str], what: str, **kw) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise BenchError(f"{what} failed: {last[0]}", 2)


def prepare_archived(checkout: Path, venv: Path) -> tuple[Path, Path]:
    """(patched copy of the checkout, its python): copy, patch, and create the venv if missing."""
    if not (checkout / "invoke.py").is_file() or not (checkout / "plot_functions.R").is_file():
        raise BenchError(
            f"no archived partybal checkout at {checkout} (invoke.py and plot_functions.R missing): "
            f"clone https://github.com/mozilla/partybal there at {ARCHIVED_COMMIT[:7]}, or pass --archived DIR",
            2,
        )
    if shutil.which("R") is None:
        raise BenchError("R is not on PATH: run `make setup` first", 2)
    patched = BUILD / "patched"
    shutil.rmtree(patched, ignore_errors=True)
    shutil.copytree(checkout, patched, ignore=shutil.ignore_patterns(".git"))
    # GIT_CEILING_DIRECTORIES: the copy sits inside this repository's work tree; without it `git
    # apply` would take paths relative to this repository and skip the copy's files
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(patched.parent))
    run_quiet(
        ["git", "apply", str(PATCH)], f"applying benchmarks/{PATCH.name} to a copy of {checkout}", cwd=patched, env=env
    )
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} for the archived partybal ({', '.join(ARCHIVED_REQUIREMENTS)})", flush=True)
        run_quiet([sys.executable, "-m", "venv", str(venv)], f"creating {venv}")
        run_quiet(
            [str(python), "-m", "pip", "install", "-q", *ARCHIVED_REQUIREMENTS],
            f"installing the archived partybal's requirements into {venv}",
        )
    return patched, python


def archived_cache(work: Path, results: Path, names: list[str], tag: str) -> Path:
    """The archived code's cache folder: results/statistics_<slug>_<period>.json (a `gsutil rsync`
    of gs://mozanalysis/statistics) and experiments.json (its Experimenter download)."""
    cache = work / f"archived-cache-{tag}"
    (cache / "results").mkdir(parents=True)
    experiments = {}
    for name in names:
        spec = EXPERIMENTS[name][1]
        fslug = layout.file_slug(spec.slug)
        for period in spec.windows:
            src = results / layout.results_name(layout.Kind.STATISTICS, fslug, period)
            os.symlink(src, cache / "results" / src.name)
        experiments[fslug] = {
            "name": spec.slug,
            "slug": spec.slug,
            "normandy_slug": spec.slug,
            "variants": [{"slug": b, "description": b, "is_control": b == spec.branches[0]} for b in spec.branches],
            "start_date": 1790000000000,
        }
    (cache / "experiments.json").write_text(json.dumps({"experiments": experiments}))
    return cache


def run_archived(
    patched: Path, python: Path, work: Path, results: Path, names: list[str], jobs: int, tag: str
) -> tuple[Measurement, int]:
    cache = archived_cache(work, results, names, tag)
    out = work / f"archived-out-{tag}"
    out.mkdir()
    fslugs = [layout.file_slug(EXPERIMENTS[n][1].slug) for n in names]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    m = measure([str(python), "-c", ARCHIVED_DRIVER, str(cache), str(out), str(jobs), *fslugs], cwd=patched, env=env)
    # the archived code prints "<slug>: error" and R's output, and exits 0, when a page fails
    failed = [s for s in fslugs if f"{s}: ok" not in m.stdout or not (out / f"{s}.html").is_file()]
    if m.returncode != 0 or failed:
        detail = (m.stderr.strip() or m.stdout.strip()).splitlines()
        hint = next((line for line in detail if line.startswith("Error")), detail[-1] if detail else "no output")
        raise BenchError(f"archived partybal failed on {', '.join(failed) or 'its index'}: {hint.strip()}")
    figures = sum(1 for _ in out.rglob("*.png"))
    shutil.rmtree(out)
    return m, figures


def run_ours(work: Path, results: Path, name: str, cores: int, tag: str) -> tuple[Measurement, int]:
    spec = EXPERIMENTS[name][1]
    out = work / f"ours-out-{tag}"
    cmd = [
        sys.executable,
        "-m",
        "partybal",
        "render",
        spec.slug,
        "--results",
        str(results),
        "--out",
        str(out),
        "--cores",
        str(cores),
        "--experimenter",
        "off",
    ]
    m = measure(cmd, cwd=ROOT)
    if m.returncode != 0:
        last = (m.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"partybal render {spec.slug} failed: {last}")
    # "<page>.html  (N figures, …; N drawn, 0 reused)": a fresh --out, so nothing is reused
    found = render_counts(m.stdout)
    figures = found[0] if found else sum(1 for _ in out.rglob("*.png"))
    shutil.rmtree(out)
    return m, figures


def run_all(patched: Path, python: Path, work: Path, results: Path, cores: int, repeat: int) -> list[dict]:
    """One row per experiment (ours, then the archived one, interleaved), then all three in one go."""
    rows = []
    for name, (shape, _) in EXPERIMENTS.items():
        ours, theirs = [], []
        for i in range(repeat):
            ours.append(run_ours(work, results, name, cores, f"{name}{i}"))
            theirs.append(run_archived(patched, python, work, results, [name], 1, f"{name}{i}"))
        row = {"name": name, "shape": shape, "ours": best(ours), "archived": best(theirs)}
        rows.append(row)
        print(
            f"[{name}] this project {row['ours']['seconds']:.1f} s, archived {row['archived']['seconds']:.1f} s",
            flush=True,
        )
    ours_all, theirs_all = [], []
    for i in range(repeat):
        runs = [run_ours(work, results, n, cores, f"all{i}{n}") for n in EXPERIMENTS]
        seconds, cpu = sum(m.seconds for m, _ in runs), sum(m.cpu_seconds for m, _ in runs)
        together = Measurement(seconds, max(m.peak_mib for m, _ in runs), 0, "", "", cpu_seconds=cpu)
        ours_all.append((together, sum(f for _, f in runs)))
        theirs_all.append(run_archived(patched, python, work, results, list(EXPERIMENTS), cores, f"all{i}"))
    together_row = {"name": "a + b + c", "shape": "the three above in one go"}
    rows.append({**together_row, "ours": best(ours_all), "archived": best(theirs_all)})
    return rows


def best(ms: list[tuple[Measurement, int]]) -> dict:
    """The fastest of the repeats (the least disturbed by other load), its peak memory, figures."""
    m, figures = min(ms, key=lambda mf: mf[0].seconds)
    return {"seconds": m.seconds, "cpu": m.cpu_seconds, "pss": m.peak_mib, "figures": figures}


def table(rows: list[dict], cores: int, repeat: int, load: float, note: str = "") -> str:
    lines = [
        "## Side by side with the archived partybal",
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {len(os.sched_getaffinity(0))} cores "
        f"(shared with other work: load average up to {load:.1f}, so seconds are noisy), "
        f"{cores} cores for each renderer, "
        f"{'the fastest of ' + str(repeat) + ' runs' if repeat > 1 else 'one run'} per cell. "
        f"Archived: mozilla/partybal at {ARCHIVED_COMMIT[:7]} with `benchmarks/archived_partybal.patch` "
        "(a table-returning `plot_sum`; a statistic without a `plot_` function skipped).",
        "Synthetic Jetstream-shaped input (`tests/support/synthetic.py`, every statistic including `sum`). "
        "Per experiment, the archived code uses one R process (it parallelises only across experiments); "
        f"the last row renders all three the way each handles a day's updates on {cores} cores: this project "
        f"one render after another with `--cores {cores}`, the archived one with its `invoke -j {cores}` thread pool.",
        "Peak memory is the whole process tree's PSS. The archived code draws every analysis basis into one figure "
        "and has no summary, SRM check or filters, so it draws fewer figures for c.",
        "",
        "| experiment | shape | this project s (CPU s) | archived s (CPU s) | ratio, wall | ratio, CPU "
        "| figures (this / archived) | peak PSS MiB (this / archived) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        o, a = r["ours"], r["archived"]
        lines.append(
            f"| {r['name']} | {r['shape']} | {o['seconds']:.1f} ({o['cpu']:.0f}) "
            f"| {a['seconds']:.1f} ({a['cpu']:.0f}) | {o['seconds'] / a['seconds']:.2f}× "
            f"| {o['cpu'] / a['cpu']:.2f}× "
            f"| {o['figures']} / {a['figures']} | {o['pss']:.0f} / {a['pss']:.0f} |"
        )
    lines += [f"\nThis run: {note}"] if note else []
    lines += [
        "",
        "Target (issue 18): this project ≤ 0.3× the archived partybal on the last row. On a loaded machine the CPU "
        "ratio is the steadier figure: wall seconds then depend on how many processes share the cores (this project "
        "runs two R workers, the archived code one R per experiment).",
        "",
        "Reproduce: `make bench-archived` (= `.venv/bin/python benchmarks/archived_side_by_side.py`; "
        "`--archived DIR` for a checkout elsewhere, `--repeat N` for the fastest of N). How to get the archived "
        "checkout without GitHub access, and what the patch changes: the script's docstring and the patch's header.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--archived",
        type=Path,
        default=BUILD / "checkout",
        help="checkout of mozilla/partybal (default: build/archived-partybal/checkout)",
    )
    ap.add_argument(
        "--venv",
        type=Path,
        default=BUILD / "venv",
        help="the archived code's Python venv, created if missing (default: build/archived-partybal/venv)",
    )
    ap.add_argument("--cores", type=int, default=2, help="cores for each renderer (default 2)")
    ap.add_argument("--repeat", type=int, default=1, help="run each cell N times and keep the fastest (default 1)")
    ap.add_argument("--keep", type=Path, default=None, help="generate into a folder here (default: the system temp)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update docs/performance.md")
    ap.add_argument("--note", default="", help="one line about this run to print under the table")
    ap.add_argument(
        "--table-only",
        action="store_true",
        help=f"re-render the table from the last run ({shown(LAST_RUN)}) without rendering",
    )
    args = ap.parse_args()
    if args.table_only:
        if not LAST_RUN.is_file():
            print(
                f"archived_side_by_side: error: no last run at {shown(LAST_RUN)}: run without --table-only first",
                file=sys.stderr,
            )
            return 2
        last = json.loads(LAST_RUN.read_text())
        note = args.note or last.get("note", "")
        return publish(last["rows"], last["cores"], last["repeat"], last["load"], args.no_write, note)
    if args.cores < 1 or args.repeat < 1:
        print("archived_side_by_side: error: --cores and --repeat must be at least 1", file=sys.stderr)
        return 2
    try:
        patched, python = prepare_archived(args.archived.resolve(), args.venv.resolve())
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        loads = LoadWatch()
        with tempfile.TemporaryDirectory(dir=args.keep, prefix="side-by-side-") as tmp:
            work = Path(tmp).resolve()  # the archived code runs in its own folder
            results = work / "results"
            for _, spec in EXPERIMENTS.values():
                synthetic.write_experiment(results, spec)
            rows = run_all(patched, python, work, results, args.cores, args.repeat)
    except BenchError as exc:
        print(f"archived_side_by_side: error: {exc}", file=sys.stderr)
        return exc.code
    LAST_RUN.parent.mkdir(parents=True, exist_ok=True)
    load = loads.stop()
    LAST_RUN.write_text(
        json.dumps(
            {"cores": args.cores, "repeat": args.repeat, "load": load, "note": args.note, "rows": rows}, indent=1
        )
    )
    return publish(rows, args.cores, args.repeat, load, args.no_write, args.note)


def publish(rows: list[dict], cores: int, repeat: int, load: float, no_write: bool, note: str = "") -> int:
    text = table(rows, cores, repeat, load, note)
    print(text)
    if not no_write:
        write_section(ROOT / "docs" / "performance.md", SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``partybal backfill``: re-render every experiment (or only the stale ones), in parallel.

    partybal backfill [--results gs://bucket[/prefix] | DIR] [--only-stale] [--parallel N] [--out DIR]

Which experiments: every one the results listing shows (``group_results``, junk skipped). With
``--only-stale``, only those whose last status record does not match the listing — the TOC's own
rule (``row_state`` not ``ok``: new, stale, failed, pending).

Where it renders:

* **Cloud Run** (a ``gs://`` source, no ``--out``, ``RUN_JOB`` set): the slug list goes to the state
  bucket (``layout.backfill_list_name``) and ONE job execution is started with ``task_count=N`` and
  ``PARTYBAL_SLUGS_URI`` pointing at it; each task renders its share (``job.task_share``).
* **Local workers** otherwise: N processes, each rendering one experiment at a time with
  ``R cores = machine cores // N``; into ``--out DIR`` with ``render.render_to_dir`` (status records
  kept in ``DIR/.partybal/status/``), or — a ``gs://`` source without ``--out``, e.g. the local
  stack's emulated buckets — with ``job.run`` into ``SITE_BUCKET``/``STATE_BUCKET``.

Progress goes to stderr (``\\r``-updated on a terminal, one line per change otherwise); at the end a
summary lists every failure with its reason. Exit status 1 when any experiment failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .. import cliargs, layout
from ..errors import ConfigError, one_line
from ..settings import env
from ..storage import GcsResults, LocalResults, ResultsSource, open_results
from . import status
from .state import Experiment, group_results, listed, read_state, row_state

LOCAL_STATUS_DIR = ".partybal/status"


# --- which experiments ------------------------------------------------------------------------------


def select(
    experiments: Mapping[str, Experiment],
    statuses: Mapping[str, Mapping[str, Any]],
    pending: set[str] = frozenset(),
    only_stale: bool = False,
) -> list[str]:
    """File slugs to render, sorted. ``only_stale``: those the TOC would not show as ``ok``."""
    chosen = []
    for fslug, exp in experiments.items():
        if only_stale:
            state, _ = row_state(exp, statuses.get(fslug), fslug in pending)
            if state == "ok":
                continue
        chosen.append(fslug)
    return sorted(chosen)


def local_statuses(out_dir: Path) -> dict[str, dict[str, Any]]:
    folder = out_dir / LOCAL_STATUS_DIR
    statuses = {}
    if folder.is_dir():
        for path in folder.glob("*.json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict):
                statuses[path.stem] = record
    return statuses


def write_local_status(out_dir: Path, fslug: str, record: Mapping[str, Any]) -> None:
    folder = out_dir / LOCAL_STATUS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{fslug}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    tmp.replace(folder / f"{fslug}.json")


# --- progress -----------------------------------------------------------------------------------


@dataclass
class RenderOutcome:
    slug: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0


class Progress:
    """``backfill: 12/50 done, 1 failed, 37 remaining`` on stderr."""

    def __init__(self, total: int, stream: TextIO | None = None, tty: bool | None = None):
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._last = ""

    def line(self) -> str:
        remaining = self.total - self.done - self.failed
        finished = self.done + self.failed
        return (
            f"backfill: {finished}/{self.total} finished, {self.done} done, {self.failed} failed, {remaining} remaining"
        )

    def show(self) -> None:
        text = self.line()
        if text == self._last:
            return
        self._last = text
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def add(self, outcome: RenderOutcome) -> None:
        if outcome.ok:
            self.done += 1
        else:
            self.failed += 1
        self.show()

    def close(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()


def summary(outcomes: list[RenderOutcome], seconds: float) -> str:
    failed = [o for o in outcomes if not o.ok]
    lines = [f"backfill: {len(outcomes) - len(failed)} ok, {len(failed)} failed of {len(outcomes)} in {seconds:.1f} s"]
    if failed:
        lines.append("failures:")
        lines += [f"  {o.slug}: {o.reason}" for o in sorted(failed, key=lambda o: o.slug)]
    return "\n".join(lines)


# --- local workers ---------------------------------------------------------------------------------


def split_cores(workers: int, cores: int | None = None) -> int:
    """R cores per worker so that workers × cores ≈ the machine's cores (at least 1)."""
    from ..page.render import default_cores

    return max(1, (cores or default_cores()) // max(1, workers))


def render_local(src: str, fslug: str, out: str, cores: int, generations: Mapping[str, int]) -> RenderOutcome:
    """Worker: one experiment into ``out`` (a folder) with its local status record."""
    from ..page.render import RenderError, render_to_dir
    from ..page.results import InputError

    started = time.monotonic()
    out_dir = Path(out)
    try:
        from . import experimenter

        target, built = render_to_dir(LocalResults(src), fslug, out_dir, cores=cores, catalog=experimenter.for_worker())
        record = status.outcome_record(fslug, generations, "", target.name, dt.datetime.now(dt.UTC))
        outcome = RenderOutcome(fslug, True, seconds=time.monotonic() - started)
    except (InputError, RenderError, OSError, ValueError) as exc:
        reason = one_line(exc, 500)
        record = status.outcome_record(fslug, generations, reason, None, dt.datetime.now(dt.UTC))
        outcome = RenderOutcome(fslug, False, reason, time.monotonic() - started)
    write_local_status(out_dir, fslug, record)
    return outcome


def render_gcs(src: str, fslug: str, out: str, cores: int, generations: Mapping[str, int]) -> RenderOutcome:
    """Worker: one experiment with the render job's own code (site and state buckets from the env)."""
    from . import job

    started = time.monotonic()
    bucket, prefix = layout.parse_gs_url(src)
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    try:
        settings = job.JobSettings.from_env(
            {**os.environ, "PARTYBAL_SLUG": fslug, "PARTYBAL_PREFIX": prefix, "RESULTS_BUCKET": bucket}
        )
        record = job.run(settings, cores=cores)
    except Exception as exc:  # noqa: BLE001 - reported per slug
        return RenderOutcome(fslug, False, "crashed: " + " ".join(str(exc).split())[:400], time.monotonic() - started)
    return RenderOutcome(fslug, record["state"] == "ok", record.get("reason") or "", time.monotonic() - started)


Renderer = Callable[[str, str, str, int, Mapping[str, int]], RenderOutcome]


def run_workers(
    slugs: list[str],
    renderer: Renderer,
    *,
    src: str,
    out: str,
    workers: int,
    cores: int,
    generations: Mapping[str, Mapping[str, int]] | None = None,
    progress: Progress | None = None,
) -> list[RenderOutcome]:
    """Render ``slugs`` on ``workers`` processes; every slug gets an outcome, in slug order."""
    generations = generations or {}
    progress = progress or Progress(len(slugs))
    progress.show()
    outcomes: dict[str, RenderOutcome] = {}
    if not slugs:
        return []
    with cf.ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(renderer, src, s, out, cores, dict(generations.get(s, {}))): s for s in slugs}
        for fut in cf.as_completed(futures):
            slug = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died; the others go on
                outcome = RenderOutcome(
                    slug, False, f"worker failed: {' '.join(str(exc).split())[:400] or type(exc).__name__}"
                )
            outcomes[slug] = outcome
            progress.add(outcome)
    progress.close()
    return [outcomes[s] for s in slugs]


# --- Cloud Run -------------------------------------------------------------------------------------


def write_slug_list(client, state_bucket: str, slugs: list[str], prefix: str, run_id: str) -> str:
    name = layout.backfill_list_name(run_id)
    doc = {"prefix": prefix, "slugs": slugs, "created_at": dt.datetime.now(dt.UTC).isoformat(), "run_id": run_id}
    blob = client.bucket(state_bucket).blob(name)
    blob.cache_control = "no-store"
    blob.upload_from_string(json.dumps(doc), content_type="application/json")
    return layout.gs_url(state_bucket, name)


def backfill_job_request(job: str, slugs_uri: str, tasks: int):
    """One execution of the renderer job: ``tasks`` tasks sharing the slug list."""
    from . import dispatch

    return dispatch.run_job_request(job, env={"PARTYBAL_SLUGS_URI": slugs_uri}, task_count=tasks)


def start_cloud_run(
    slugs: list[str], prefix: str, tasks: int, *, environ: Mapping[str, str], storage_client=None, jobs_client=None
) -> str:
    """Write the list, start one execution; the operation (or execution) name."""
    from ..storage import gcs_client
    from . import dispatch

    job = env("RUN_JOB", environ)
    state_bucket = env("STATE_BUCKET", environ)
    uri = write_slug_list(storage_client or gcs_client(), state_bucket, slugs, prefix, layout.new_render_id())
    jobs_client = jobs_client or dispatch.jobs_client(environ.get("RUN_API_ENDPOINT") or None)
    operation = jobs_client.run_job(request=backfill_job_request(job, uri, max(1, min(tasks, len(slugs)))))
    name = getattr(getattr(operation, "operation", None), "name", "") or ""
    return f"{uri} {name}".strip()


# --- command ---------------------------------------------------------------------------------------


def cmd_backfill(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None, renderer: Renderer | None = None
) -> int:
    environ = os.environ if environ is None else environ
    try:
        plan = _plan(args, environ)
    except _Refused as exc:
        print(exc, file=sys.stderr)
        return 2
    print(
        f"backfill: {len(plan.slugs)} of {len(plan.experiments)} experiments to render from {plan.src}", file=sys.stderr
    )
    if not plan.slugs:
        return 0
    workers = max(1, args.parallel)
    if plan.gcs_mode and environ.get("RUN_JOB") and renderer is None:
        started = start_cloud_run(plan.slugs, plan.prefix, workers, environ=environ, storage_client=plan.source.client)
        tasks = min(workers, len(plan.slugs))
        print(f"backfill: started one execution of {environ['RUN_JOB']} with {tasks} tasks: {started}")
        return 0
    renderer = renderer or (render_gcs if plan.gcs_mode else render_local)
    started_at = time.monotonic()
    outcomes = _render_here(plan, args, renderer, workers)
    print(summary(outcomes, time.monotonic() - started_at), file=sys.stderr)
    return 0 if all(o.ok for o in outcomes) else 1


class _Refused(ConfigError):
    """A usage or configuration mistake: its message is the whole line to print (exit 2)."""


@dataclass
class _Plan:
    src: str  # gs:// URL or the results folder's absolute path
    source: ResultsSource
    prefix: str  # the source's object-name prefix (gs://bucket/prefix), "" locally
    gcs_mode: bool  # render into the site bucket (no --out)
    experiments: dict[str, Experiment]
    slugs: list[str]  # the experiments to render


def _plan(args: argparse.Namespace, environ: Mapping[str, str]) -> _Plan:
    """Where the results are, what is known of their pages, and which experiments to render."""
    src = args.results or (layout.gs_url(environ["RESULTS_BUCKET"]) if environ.get("RESULTS_BUCKET") else "")
    if not src:
        raise _Refused("partybal backfill: give --results (gs://bucket[/prefix] or a folder) or set RESULTS_BUCKET")
    try:
        source = open_results(src)
        if not layout.is_gs_url(src):
            src = str(Path(src).resolve())
        experiments = group_results(listed(source), "")
    except (FileNotFoundError, ValueError) as exc:
        raise _Refused(f"partybal backfill: error: {exc}") from exc
    prefix = source.prefix if isinstance(source, GcsResults) else ""
    gcs_mode = isinstance(source, GcsResults) and not args.out
    statuses, pending = _known_pages(args, environ, source, prefix, gcs_mode)
    # The listing names objects relative to the source's prefix; status records name them in full.
    if prefix:
        for exp in experiments.values():
            exp.generations = {prefix + k: v for k, v in exp.generations.items()}
    slugs = select(experiments, statuses, pending, args.only_stale)
    return _Plan(src, source, prefix, gcs_mode, experiments, slugs)


def _known_pages(args, environ: Mapping[str, str], source: ResultsSource, prefix: str, gcs_mode: bool):
    """Status records of the pages there are, and the experiments already pending a render."""
    if args.out:
        return local_statuses(Path(args.out)), set()
    if not gcs_mode:
        raise _Refused("partybal backfill: a local results folder needs --out DIR")
    try:
        state_bucket = env("STATE_BUCKET", environ)
        if not environ.get("RUN_JOB"):  # local workers publish with the job's code
            env("SITE_BUCKET", environ)
    except ConfigError as exc:
        raise _Refused(f"partybal backfill: {exc} (or give --out DIR)") from exc
    return read_state(source.client, state_bucket, prefix) if args.only_stale else ({}, set())


def _render_here(plan: _Plan, args: argparse.Namespace, renderer: Renderer, workers: int) -> list:
    """Render ``plan.slugs`` in ``workers`` processes on this machine."""
    cores = args.cores or split_cores(workers)
    gens = {s: plan.experiments[s].generations for s in plan.slugs}
    out = str(Path(args.out).resolve()) if args.out else ""
    with tempfile.TemporaryDirectory(prefix="partybal-experimenter-") as tmp:
        if not plan.gcs_mode:  # read Experimenter once; the job reads the state bucket's snapshot
            from . import experimenter

            snapshot = Path(tmp) / "experiments.json"
            experimenter.write_for_workers(
                experimenter.load(experimenter.configured(getattr(args, "experimenter", None))), snapshot
            )
            os.environ[experimenter.SNAPSHOT_ENV] = str(snapshot)
        try:
            return run_workers(
                plan.slugs, renderer, src=plan.src, out=out, workers=workers, cores=cores, generations=gens
            )
        finally:
            if not plan.gcs_mode:
                os.environ.pop(experimenter.SNAPSHOT_ENV, None)


def add_command(sub) -> None:
    b = sub.add_parser("backfill", help="re-render every (or every stale) experiment, in parallel")
    b.add_argument(
        "--results",
        default=None,
        type=cliargs.results_source,
        help="gs://bucket[/prefix] or a local folder (default: gs://$RESULTS_BUCKET)",
    )
    b.add_argument("--only-stale", action="store_true", help="only experiments whose results are newer than their page")
    b.add_argument(
        "--parallel",
        type=cliargs.positive_int,
        default=2,
        help="worker processes locally, Cloud Run tasks on GCP (default 2)",
    )
    b.add_argument(
        "--out", default=None, type=cliargs.output_dir, help="render into this folder instead of the site bucket"
    )
    b.add_argument(
        "--cores", type=cliargs.positive_int, default=None, help="R cores per worker (default: machine cores // N)"
    )
    b.add_argument(
        "--experimenter",
        type=cliargs.experimenter_url,
        default=None,
        metavar="URL|off",
        help=cliargs.EXPERIMENTER_HELP
        + "; read once for every --out render (the job reads the state bucket's snapshot)",
    )
    b.set_defaults(func=cmd_backfill)

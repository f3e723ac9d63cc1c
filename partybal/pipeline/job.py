"""The Cloud Run render job: ``python -m partybal.pipeline.job``.

Environment: ``PARTYBAL_SLUG`` (either form), ``PARTYBAL_PREFIX`` (optional, ``preview/``),
``RESULTS_BUCKET``, ``SITE_BUCKET``, ``STATE_BUCKET``; ``CLOUD_RUN_TASK_ATTEMPT`` is logged;
``RUN_JOB`` (the job's own resource name) with Cloud Run's ``CLOUD_RUN_EXECUTION`` names the execution;
``ASSET_GRACE_SECONDS`` (default 3600): how long figures of a replaced page outlive it;
``JOB_MAX_RETRIES`` (the job's ``max_retries``, set by terraform): for ``killed (attempt n of m)``.

0. write ``running/<slug>`` naming this execution (deleted again at the end; the sweeper leaves
   an experiment alone while Cloud Run says that execution is queued or running);
1. delete the pending marker (before reading anything: an upload landing after this makes a new
   marker and so another render);
2. load and validate the results; build the page in a temp folder;
3. publish to the site bucket: the render's ``<slug>_files/<render-id>/figures.json`` (the figure
   hashes its page shows), the figures R drew (``<slug>_files/figures/<sha256>.png``: figures the
   live page already shows are reused, neither drawn nor uploaded) and the render folder first, then
   the page — unless the live page is of a render that started after ours (then ours is dropped) —
   then remove earlier render folders and figures that no page, open tab or cached copy can still
   ask for (:func:`assets_to_delete`, :func:`delete_unreferenced_figures`) — a reader never sees a
   page without its figures;
4. write ``status/<slug>.json`` in the state bucket (which triggers the TOC rebuild), unless the
   record there is of a later render.

Bad input, a failed knit or any other exception while rendering (a bug, a value Python cannot
convert, MemoryError): status ``failed`` with a one-line reason, the live page untouched, exit
status 1 (Cloud Run retries the task). Infrastructure errors (GCS, network, credentials) are
retried by Cloud Run too; the attempt still leaves a ``failed`` record saying so when the state
bucket can be written.

Killed from outside (OOM, SIGKILL, task timeout): nothing in the process can write a status, so its
``running/<slug>`` record stays. The next attempt of the same execution finds it and records
``failed: killed (attempt n of m)`` before it starts; after the last attempt the sweeper does
(Cloud Run says the execution ended) — instead of re-requesting the render.

List mode (``partybal backfill`` on GCP): when ``PARTYBAL_SLUGS_URI=gs://<state>/backfill/<id>.json``
is set, the execution's tasks share that slug list; task ``CLOUD_RUN_TASK_INDEX`` of
``CLOUD_RUN_TASK_COUNT`` renders the slugs at positions ``i % count == index``, one after the other.
One failure does not stop the others; every slug gets its status record; exit 1 if any failed. On a
retried attempt, slugs already rendered ``ok`` since the list was written are skipped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import mimetypes
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import layout, logs
from ..errors import ConfigError, one_line
from ..page import render
from ..page.results import ExperimentResults, InputError, list_experiment_files, load_experiment
from ..settings import env, int_setting
from ..storage import GcsResults, SizeLimits, gcs_client
from . import experimenter, history, status

log = logging.getLogger(__name__)

PAGE_CACHE_CONTROL = "public, max-age=60"
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"  # a render id is never reused
STATUS_CACHE_CONTROL = "no-store"
DEFAULT_ASSET_GRACE_SECONDS = 3600
PAGE_RENDER_ID = "render_id"  # custom metadata on the page object: the render it shows
PUBLISH_ATTEMPTS = 5  # conditional writes lost to a concurrent render of the same experiment
OK, FAILED = status.OK, status.FAILED


@dataclass(frozen=True)
class JobSettings:
    slug: str
    prefix: str
    results_bucket: str
    site_bucket: str
    state_bucket: str
    attempt: str = ""
    execution: str = ""  # this execution's resource name, when known (RUN_JOB + CLOUD_RUN_EXECUTION)
    asset_grace_seconds: int = DEFAULT_ASSET_GRACE_SECONDS
    max_attempts: int = 0  # 1 + the job's max_retries (JOB_MAX_RETRIES); 0: not known

    @property
    def file_slug(self) -> str:
        return layout.file_slug(self.slug)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobSettings:
        environ = os.environ if environ is None else environ
        settings = cls(
            slug=env("PARTYBAL_SLUG", environ).strip(),
            prefix=environ.get("PARTYBAL_PREFIX", "") or "",
            results_bucket=env("RESULTS_BUCKET", environ),
            site_bucket=env("SITE_BUCKET", environ),
            state_bucket=env("STATE_BUCKET", environ),
            attempt=environ.get("CLOUD_RUN_TASK_ATTEMPT", ""),
            execution=execution_name(environ),
            asset_grace_seconds=int_setting(environ, "ASSET_GRACE_SECONDS", DEFAULT_ASSET_GRACE_SECONDS),
            max_attempts=max_attempts(environ),
        )
        if settings.asset_grace_seconds < 0:
            raise ConfigError(f"ASSET_GRACE_SECONDS={settings.asset_grace_seconds} is negative")
        render.check_settings()  # PARTYBAL_R_TIMEOUT, PARTYBAL_MAX_FIGURES
        SizeLimits.from_env(environ)  # PARTYBAL_MAX_FILE_BYTES, PARTYBAL_MAX_EXPERIMENT_BYTES
        if not layout.is_file_slug(settings.file_slug):
            raise ConfigError(f"PARTYBAL_SLUG={settings.slug[:200]!r} is not a valid experiment slug")
        if settings.prefix not in layout.ALLOWED_PREFIXES:
            raise ConfigError(f"PARTYBAL_PREFIX={settings.prefix[:100]!r} is not one of {layout.ALLOWED_PREFIXES!r}")
        return settings


def execution_name(environ: Mapping[str, str]) -> str:
    """``projects/P/locations/L/jobs/J/executions/E`` from ``RUN_JOB`` (set on the job) and
    ``CLOUD_RUN_EXECUTION`` (set by Cloud Run); "" when either is missing (a run by hand)."""
    job, execution = environ.get("RUN_JOB", ""), environ.get("CLOUD_RUN_EXECUTION", "")
    return f"{job}/executions/{execution}" if job and execution else ""


def max_attempts(environ: Mapping[str, str]) -> int:
    """1 + ``JOB_MAX_RETRIES`` (the Cloud Run job's ``max_retries``); 0 when it is not set."""
    if not (environ.get("JOB_MAX_RETRIES") or "").strip():
        return 0
    return 1 + int_setting(environ, "JOB_MAX_RETRIES", 0, minimum=0)


def mark_running(state_bucket, settings: JobSettings, run_id: str = "") -> int | None:
    """Write ``[prefix]running/<slug>`` naming this execution — *before* the pending marker is
    deleted, so that while a render is queued or running one of the two always exists and the
    sweeper never takes the experiment for one whose request was lost. It also names the attempt
    and its run id: a record that outlives its execution tells of an attempt killed from outside.
    Best effort (the render matters more): the generation written, or None."""
    blob = state_bucket.blob(layout.running_name(settings.file_slug, settings.prefix))
    fields = {
        "execution": settings.execution,
        "attempt": settings.attempt,
        "run_id": run_id,
        "max_attempts": str(settings.max_attempts or ""),
    }
    blob.metadata = fields
    body = {**fields, "slug": settings.slug, "started_at": status.iso(dt.datetime.now(dt.UTC))}
    try:
        blob.upload_from_string(json.dumps(body), content_type="application/json")
        return int(blob.generation)
    except Exception as exc:  # noqa: BLE001
        logs.log(
            log,
            logging.WARNING,
            f"could not write the running record: {exc}",
            slug=settings.file_slug,
            prefix=settings.prefix,
        )
        return None


def record_killed_attempt(state_bucket, settings: JobSettings, list_inputs=None) -> str | None:
    """Before this attempt starts: if the ``running`` record is still that of an earlier attempt of
    this same execution, that attempt was killed from outside (a clean exit deletes it). Record
    ``failed: killed (attempt n of m)`` for it (never over a record that attempt or a later run
    wrote). ``list_inputs()``: the current input generations, recorded with it. The reason written,
    or None. Best effort: never raises."""
    if not settings.execution:
        return None  # a run by hand: there are no earlier attempts to speak of
    try:
        blob = state_bucket.get_blob(layout.running_name(settings.file_slug, settings.prefix))
        if blob is None:
            return None
        meta = blob.metadata if isinstance(blob.metadata, dict) else {}
        if meta.get("execution") != settings.execution or str(meta.get("attempt", "")) == settings.attempt:
            return None  # another execution's (it may be running now: the sweeper asks Cloud Run)
        previous = read_status(state_bucket, settings.file_slug, settings.prefix)
        record = status.killed_record(
            previous, meta, settings.slug, settings.file_slug, settings.prefix, dt.datetime.now(dt.UTC)
        )
        if list_inputs is not None:
            record["input_generations"] = dict(list_inputs())
        written = status.write(state_bucket, record, settings.prefix, not_over_run=record["run_id"])
        logs.log(
            log,
            logging.ERROR,
            f"previous attempt {record['reason']}",
            slug=settings.file_slug,
            prefix=settings.prefix,
            attempt=settings.attempt,
            status_written=written,
        )
        return record["reason"] if written else None
    except Exception as exc:  # noqa: BLE001 - the render of this attempt matters more
        logs.log(
            log,
            logging.WARNING,
            f"could not check for a killed earlier attempt: {exc}",
            slug=settings.file_slug,
            prefix=settings.prefix,
        )
        return None


def clear_running(state_bucket, settings: JobSettings, generation: int | None) -> None:
    """Delete our running record, unless a later execution of the same experiment replaced it."""
    from google.api_core import exceptions as gexc

    if generation is None:
        return
    try:
        state_bucket.blob(layout.running_name(settings.file_slug, settings.prefix)).delete(
            if_generation_match=generation
        )
    except (gexc.NotFound, gexc.PreconditionFailed):
        pass
    except Exception as exc:  # noqa: BLE001 - a leftover record only makes the sweeper ask Cloud Run
        logs.log(
            log,
            logging.WARNING,
            f"could not delete the running record: {exc}",
            slug=settings.file_slug,
            prefix=settings.prefix,
        )


def page_url(bucket: str, name: str) -> str:
    """Where a person opens the page: the console's authenticated URL (or the emulator's)."""
    import urllib.parse

    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host:
        return f"{host.rstrip('/')}/{bucket}/{urllib.parse.quote(name)}"
    return f"https://storage.cloud.google.com/{bucket}/{urllib.parse.quote(name)}"


def delete_marker(state_bucket, fslug: str, prefix: str) -> bool:
    from google.api_core import exceptions as gexc

    try:
        state_bucket.blob(layout.pending_name(fslug, prefix)).delete()
        return True
    except gexc.NotFound:
        return False


def step(point: str) -> None:
    """A named point of publishing: ``after-assets`` (figures uploaded, page not yet), ``after-page``
    (page live, old figures not yet cleaned up). Logged at DEBUG; the reliability tests' job
    (tests/support/faulty_job.py) replaces it to die there as a killed job would."""
    logs.log(log, logging.DEBUG, f"publish step reached: {point}", slug=None)


@dataclass(frozen=True)
class Published:
    """What :func:`publish_site` did. ``page`` is None when a later render's page was already live
    (ours was dropped: it shows older inputs)."""

    page: str | None
    replaced: str | None = None  # render id of the page ours replaced (None: no page, or unknown)
    superseded_by: str | None = None
    assets_deleted: int = 0
    figures_uploaded: int = 0
    figures_deleted: int = 0


def publish_site(
    site_bucket, built: render.BuiltPage, prefix: str, grace_seconds: int = DEFAULT_ASSET_GRACE_SECONDS
) -> Published:
    """Figures, then the page, then the figures nobody can still need.

    The page is written only over a page of an earlier render (render ids sort in start order, so
    a render that started later read newer inputs), with ``ifGenerationMatch`` on the page read, so
    two renders of one experiment finishing together cannot interleave."""
    _upload_assets(site_bucket, built, prefix)
    step("after-assets")
    page_name = layout.page_name(built.file_slug, prefix)
    live, live_rid, written = _write_page(site_bucket, built, page_name)
    if not written:
        return _superseded(site_bucket, built, prefix, live_rid)
    step("after-page")
    return _clean_up_after(site_bucket, built, prefix, page_name, live, live_rid, grace_seconds)


def _upload_assets(site_bucket, built: render.BuiltPage, prefix: str) -> None:
    """The render's figure list (first: a clean-up by another render keeps its hashes from now
    on), its figures by content hash, then its render folder (CSV exports, manifest…)."""
    fslug, rid = built.file_slug, built.render_id
    folder = layout.assets_dir(fslug, rid, prefix) + "/"
    figure_list = site_bucket.blob(layout.figure_list_name(fslug, rid, prefix))
    figure_list.cache_control = ASSET_CACHE_CONTROL
    figure_list.upload_from_string(json.dumps({"figures": built.figure_refs}), content_type="application/json")
    built.figures_uploaded = upload_figures(site_bucket, built, prefix)
    for rel in built.assets:
        if not (prefix + rel).startswith(folder):  # build() only writes under assets_dir; never publish elsewhere
            raise render.RenderError(f"asset {rel!r} is outside {folder!r}")

    def upload(rel: str) -> None:
        blob = site_bucket.blob(prefix + rel)
        blob.cache_control = ASSET_CACHE_CONTROL
        blob.upload_from_filename(
            str(built.workdir / rel), content_type=mimetypes.guess_type(rel)[0] or "application/octet-stream"
        )

    in_parallel(upload, built.assets)  # a real-size page has ~1,000 (a CSV per table and figure)


def _write_page(site_bucket, built: render.BuiltPage, page_name: str) -> tuple[Any, str | None, bool]:
    """The page, over an earlier render's only, conditional on the generation read; (the live page
    read, its render id, whether this render's page was written — False: a later render's is live)."""
    from google.api_core import exceptions as gexc

    for _ in range(PUBLISH_ATTEMPTS):
        live = site_bucket.get_blob(page_name)
        live_rid = (live.metadata or {}).get(PAGE_RENDER_ID) if live is not None else None
        if live_rid is not None and live_rid > built.render_id:
            return live, live_rid, False
        page = site_bucket.blob(page_name)
        page.cache_control = PAGE_CACHE_CONTROL
        page.metadata = {PAGE_RENDER_ID: built.render_id}
        try:
            page.upload_from_filename(
                str(built.workdir / built.page),
                content_type="text/html; charset=utf-8",
                if_generation_match=live.generation if live is not None else 0,
            )
            return live, live_rid, True
        except gexc.PreconditionFailed:
            continue  # another render of this experiment wrote the page meanwhile: decide again
    raise RuntimeError(f"{page_name} changed {PUBLISH_ATTEMPTS} times while publishing; giving up this attempt")


def _superseded(site_bucket, built: render.BuiltPage, prefix: str, live_rid: str) -> Published:
    """A later render's page is live: this render's uploads go (no page ever showed them)."""
    fslug, rid = built.file_slug, built.render_id
    dropped = _delete_blobs(
        site_bucket.blob(prefix + rel) for rel in [*built.assets, layout.figure_list_name(fslug, rid)]
    )
    folders, stored = list_assets(site_bucket, fslug, prefix)
    figures_deleted = delete_unreferenced_figures(
        site_bucket, fslug, prefix, folders, stored, set(folders), {}, newer_than=live_rid
    )
    return Published(
        page=None,
        superseded_by=live_rid,
        assets_deleted=dropped,
        figures_uploaded=built.figures_uploaded,
        figures_deleted=figures_deleted,
    )


def _clean_up_after(
    site_bucket, built: render.BuiltPage, prefix: str, page_name: str, live, live_rid: str | None, grace_seconds: int
) -> Published:
    """The page is live: the render folders and figures nobody can still need go."""
    fslug, rid = built.file_slug, built.render_id
    folders, stored = list_assets(site_bucket, fslug, prefix)
    if live is not None and live_rid is None:  # a page written before pages named their render
        live_rid = max((f for f in folders if f < rid), default=None)
    doomed = assets_to_delete(
        set(folders),
        rid,
        live_rid,
        live.updated if live is not None else None,
        dt.datetime.now(dt.UTC),
        grace_seconds,
    )
    if live_rid in folders:  # its page was live until now: its exports and manifest are a record
        _start_record_retention([b for b in folders[live_rid] if layout.is_render_record(b.name)])
    blobs = [blob for f in sorted(doomed) for blob in folders[f]]
    deleted = _delete_blobs(b for b in blobs if not _kept_record(b))
    kept = (set(folders) - doomed) | {rid}
    figures_deleted = delete_unreferenced_figures(
        site_bucket, fslug, prefix, folders, stored, kept, {rid: set(built.figure_refs)}, newer_than=rid
    )
    return Published(
        page=page_name,
        replaced=live_rid,
        assets_deleted=deleted,
        figures_uploaded=built.figures_uploaded,
        figures_deleted=figures_deleted,
    )


# --- figures by content hash (partybal/page/figures.py) -------------------------------------------
#
# ``<slug>_files/figures/<sha256>.png``, per experiment: a job touches only its own experiment's
# objects, and an experiment's figures are deleted with its render folders' references. Each render
# folder holds ``figures.json``, the hashes its page shows (written before anything else of it).
#
# Reuse: a render reuses a stored figure only if the live page shows it. That page is kept at least
# ``ASSET_GRACE_SECONDS`` after it is replaced (assets_to_delete), so a reused figure outlives the
# render that reuses it (renders take minutes; the grace is an hour). A figure uploaded again
# replaces the object (a new generation): a clean-up that listed the old one deletes it only with
# ``ifGenerationMatch`` on the listed generation, so it never deletes a figure uploaded meanwhile.
#
# Clean-up: after a page goes live, the figures no kept render folder lists are deleted (kept: the
# live page's, the one it replaced, those in their grace period, later renders'); nothing when a
# later render's list cannot be read yet.

# Preview objects are deleted by a bucket lifecycle rule PREVIEW_EXPIRY_DAYS after they were
# created: a preview figure older than this is drawn and uploaded again instead of reused.
PREVIEW_REUSE_SECONDS = (layout.PREVIEW_EXPIRY_DAYS - 1) * 86400


def list_assets(site_bucket, fslug: str, prefix: str) -> tuple[dict[str, list], dict[str, Any]]:
    """One listing of ``<slug>_files/``: the render folders (render id → blobs) and the stored
    figures (hash → blob, with its generation and creation time). Objects named otherwise (put there
    by anybody else) are in neither, so never deleted."""
    root = layout.assets_root(fslug, prefix) + "/"
    figures_root = layout.FIGURES_FOLDER + "/"
    folders: dict[str, list] = {}
    stored: dict[str, Any] = {}
    for blob in site_bucket.client.list_blobs(
        site_bucket, prefix=root, fields="items(name,generation,timeCreated,customTime),nextPageToken"
    ):
        rest = blob.name[len(root) :]
        if rest.startswith(figures_root):
            digest = layout.figure_hash_of(rest[len(figures_root) :])
            if digest:
                stored[digest] = blob
            continue
        folder, sep, _ = rest.partition("/")
        if sep and layout.is_render_id(folder):
            folders.setdefault(folder, []).append(blob)
    return folders, stored


def read_figure_list(site_bucket, fslug: str, render_id: str, prefix: str) -> set[str] | None:
    """The hashes render ``render_id``'s page shows (its ``figures.json``); None when absent or unreadable."""
    from google.api_core import exceptions as gexc

    try:
        doc = json.loads(site_bucket.blob(layout.figure_list_name(fslug, render_id, prefix)).download_as_bytes())
    except (gexc.NotFound, ValueError):
        return None
    figures = doc.get("figures") if isinstance(doc, dict) else None
    if not isinstance(figures, list):
        return None
    return {f for f in figures if isinstance(f, str) and layout.figure_hash_of(f + ".png")}


def reusable_figures(site_bucket, fslug: str, prefix: str, hashes, now: dt.datetime | None = None) -> set[str]:
    """Of ``hashes``, the figures stored in the site bucket that the live page shows (one listing,
    one read of the page's metadata, one of its ``figures.json``)."""
    _, stored = list_assets(site_bucket, fslug, prefix)
    wanted = set(hashes) & set(stored)
    if not wanted:
        return set()
    live = site_bucket.get_blob(layout.page_name(fslug, prefix))
    live_rid = (live.metadata or {}).get(PAGE_RENDER_ID) if live is not None else None
    shown = (
        read_figure_list(site_bucket, fslug, live_rid, prefix) if live_rid and layout.is_render_id(live_rid) else None
    )
    if not shown:
        return set()
    wanted &= shown
    if prefix == layout.PREVIEW_PREFIX:
        now = now or dt.datetime.now(dt.UTC)
        wanted = {
            h
            for h in wanted
            if stored[h].time_created is not None
            and (now - stored[h].time_created).total_seconds() < PREVIEW_REUSE_SECONDS
        }
    return wanted


def upload_figures(site_bucket, built: render.BuiltPage, prefix: str) -> int:
    """Upload the figures R drew (the reused ones are stored already); the number uploaded."""
    folder = layout.figures_dir(built.file_slug, prefix) + "/"
    for rel in built.figure_files:
        name = prefix + rel
        if not name.startswith(folder) or not layout.figure_hash_of(name[len(folder) :]):  # never publish elsewhere
            raise render.RenderError(f"figure {rel!r} is not a figure file in {folder!r}")
        blob = site_bucket.blob(name)
        blob.cache_control = ASSET_CACHE_CONTROL  # content-addressed: never changes
        blob.upload_from_filename(str(built.workdir / rel), content_type="image/png")
    return len(built.figure_files)


def figures_to_delete(stored, referenced: set[str]) -> set[str]:
    """The stored figure hashes no kept page shows."""
    return set(stored) - referenced


def delete_unreferenced_figures(
    site_bucket,
    fslug: str,
    prefix: str,
    folders: dict[str, list],
    stored: dict[str, Any],
    kept: set[str],
    known: dict[str, set[str]],
    newer_than: str | None = None,
) -> int:
    """Delete the stored figures that no render folder in ``kept`` lists (``known``: lists already
    in hand, by render id). A kept folder started after ``newer_than`` whose list cannot be read
    (it is being written): delete nothing this time. A kept older folder without a list is of a
    render before figures were stored by hash: it shows none of them."""
    from google.api_core import exceptions as gexc

    referenced: set[str] = set()
    for f in sorted(kept):
        shown = known.get(f)
        if shown is None:
            shown = read_figure_list(site_bucket, fslug, f, prefix)
        if shown is None:
            if newer_than is None or f > newer_than:
                return 0
            shown = set()
        referenced |= shown
    deleted = 0
    for digest in sorted(figures_to_delete(stored, referenced)):
        blob = stored[digest]
        try:
            site_bucket.blob(blob.name).delete(if_generation_match=blob.generation)
            deleted += 1
        except (gexc.NotFound, gexc.PreconditionFailed):
            pass  # gone already, or uploaded again meanwhile (a render about to show it)
    return deleted


def assets_to_delete(
    folders: set[str],
    render_id: str,
    replaced: str | None,
    replaced_since: dt.datetime | None,
    now: dt.datetime,
    grace_seconds: int,
) -> set[str]:
    """The asset folders to delete right after the page of ``render_id`` went live over the page of
    ``replaced``, which had been live since ``replaced_since``.

    - ours, and any later render's (a concurrent job that started after us): kept;
    - ``replaced``: kept — open tabs (figures load lazily) and copies cached for ``max-age`` still
      ask for it; a later render deletes it;
    - older than ``replaced``: no page has shown them since ``replaced_since``; deleted once that is
      ``grace_seconds`` ago, else left to a later render;
    - between ``replaced`` and ours: renders that never went live (crashed, or older and still
      running — those will not publish over ours): deleted.
    """
    grace_over = replaced_since is None or (now - replaced_since).total_seconds() >= grace_seconds
    return {f for f in folders if f < render_id and f != replaced and (replaced is None or f > replaced or grace_over)}


def asset_folders(site_bucket, fslug: str, prefix: str) -> dict[str, list]:
    """The experiment's render folders in the site bucket, by render id (one listing of its own
    ``<slug>_files/`` prefix). Only folders named like a render id count: an object put there by
    anybody else (no render-id folder) is never listed for deletion."""
    return list_assets(site_bucket, fslug, prefix)[0]


ASSET_THREADS = 8  # parallel uploads/deletes of one render's assets (the client's pool holds 10 connections)


def in_parallel(fn, items) -> list:
    """``[fn(item) for item in items]`` on up to ASSET_THREADS threads (GCS calls wait on the network);
    the first exception is raised once all calls are done."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(ASSET_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def _kept_record(blob) -> bool:
    """An export or manifest of a render whose page was live (stamped when it was replaced): the
    clean-up leaves it to the lifecycle rule. A render that never went live has nothing stamped."""
    return layout.is_render_record(blob.name) and blob.custom_time is not None


def _start_record_retention(blobs) -> None:
    """The page of a render was just replaced: stamp its exports and manifest with that time (once;
    GCS never lets a custom time go back), from which the bucket's lifecycle rule counts
    ``history_retention_days``; the clean-up keeps them (:func:`_kept_record`)."""
    from google.api_core import exceptions as gexc

    now = dt.datetime.now(dt.UTC)

    def stamp(blob) -> None:
        if blob.custom_time is not None:
            return
        blob.custom_time = now
        with contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed):  # gone or changed: next time
            blob.patch(if_generation_match=blob.generation)

    in_parallel(stamp, blobs)


def _delete_blobs(blobs) -> int:
    from google.api_core import exceptions as gexc

    def delete(blob) -> int:
        try:
            blob.delete()
            return 1
        except gexc.NotFound:
            return 0

    return sum(in_parallel(delete, blobs))


def read_status(state_bucket, fslug: str, prefix: str) -> dict[str, Any] | None:
    return status.read(state_bucket, fslug, prefix)


def write_status(state_bucket, record: dict[str, Any], prefix: str) -> bool:
    """:func:`partybal.pipeline.status.write`: the record of the run that started last wins."""
    return status.write(state_bucket, record, prefix)


def is_infrastructure_error(exc: BaseException) -> bool:
    """GCS, network or credentials trouble: worth another attempt (Cloud Run retries the task)."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as gauth

    return isinstance(
        exc,
        (
            gexc.GoogleAPIError,
            gauth.GoogleAuthError,
            requests.exceptions.RequestException,
            ConnectionError,
            TimeoutError,
        ),
    )


def _listed_generations(source: GcsResults, fslug: str) -> tuple[dict[str, int], str | None]:
    """Best effort, after a failed load: which inputs the failure was about."""
    try:
        found, _ = list_experiment_files(source, fslug)
    except Exception:  # noqa: BLE001 - only for the record
        return {}, None
    gens = {source.prefix + info.name: info.generation for _, info in found}
    updated = max((info.updated for _, info in found), default=None)
    return gens, status.iso(updated)


def read_experimenter(state_bucket) -> experimenter.Catalog:
    """Experimenter's experiments from the state bucket's snapshot (the scheduled
    ``snapshot_experimenter`` function keeps it); never fails a render: a missing or unreadable
    snapshot is a catalog whose note the page shows."""
    from google.api_core import exceptions as gexc

    name = layout.experimenter_snapshot_name()
    where = layout.gs_url(state_bucket.name, name)
    try:
        data = state_bucket.blob(name).download_as_bytes()
    except gexc.NotFound:
        data = None
    except Exception as exc:  # noqa: BLE001 - the page goes on without Experimenter's details
        logs.log(
            log,
            logging.WARNING,
            f"Experimenter snapshot unreadable: {type(exc).__name__}: {one_line(exc, 200)}",
            slug=None,
            snapshot=where,
        )
        return experimenter.Catalog(
            note=f"The Experimenter snapshot could not be read ({type(exc).__name__}): "
            "what follows comes from the results alone.",
            source=where,
        )
    return experimenter.catalog_from_snapshot(data, where)


def run(settings: JobSettings, client=None, *, cores: int | None = None) -> dict[str, Any]:
    """One render; the status record written. Raises only for infrastructure errors (after
    writing, best effort, a ``failed`` record that says so)."""
    client = client or gcs_client()
    state = client.bucket(settings.state_bucket)
    run_id = layout.new_render_id()  # sorts in start order; an ok record's render_id is this
    source = GcsResults(settings.results_bucket, settings.prefix, client=client)
    if settings.execution and settings.attempt not in ("", "0"):
        record_killed_attempt(state, settings, lambda: _listed_generations(source, settings.file_slug)[0])
    running = mark_running(state, settings, run_id)
    try:
        return _render(settings, client, state, cores, run_id, source)
    except Exception as exc:
        _crash_record(
            state,
            settings,
            "infrastructure error (Cloud Run retries while the job has retries left): "
            f"{type(exc).__name__}: {one_line(exc, 300)}",
            run_id,
        )
        raise
    finally:
        clear_running(state, settings, running)


def _render(
    settings: JobSettings, client, state, cores: int | None, run_id: str | None = None, source: GcsResults | None = None
) -> dict[str, Any]:
    fslug, prefix = settings.file_slug, settings.prefix
    fields = {"slug": fslug, "prefix": prefix, "attempt": settings.attempt}
    had_marker = delete_marker(state, fslug, prefix)
    logs.log(log, logging.INFO, "render started", pending_marker=had_marker, **fields)
    source = source or GcsResults(settings.results_bucket, prefix, client=client)
    started = time.monotonic()
    # run_id sorts in start order; an ok record's render_id is this
    record = status.new_record(settings.slug, fslug, prefix, run_id or layout.new_render_id(), settings.attempt)
    results: ExperimentResults | None = None
    try:
        results = load_experiment(source, settings.slug)
        record.update(status.results_fields(results, source.prefix))
        superseded = _build_and_publish(settings, client, state, cores, source, results, record, fields)
        if superseded is not None:
            return superseded  # that render writes the status
    except Exception as exc:  # noqa: BLE001 - every exception while rendering ends in a status
        if is_infrastructure_error(exc):
            raise  # run() records it and Cloud Run retries the attempt
        _record_failure(exc, state, source, results, record, fields)
    record["render_seconds"] = round(time.monotonic() - started, 3)
    if not write_status(state, record, prefix):
        logs.log(
            log,
            logging.INFO,
            "status not written: the record of a later render is there",
            render_id=record["render_id"],
            **fields,
        )
    return record


def _build_and_publish(
    settings: JobSettings,
    client,
    state,
    cores: int | None,
    source: GcsResults,
    results: ExperimentResults,
    record: dict[str, Any],
    fields: dict[str, Any],
) -> dict[str, Any] | None:
    """Build the page, publish it, write the history summary; ``record`` made ``ok``. Returns the
    record to hand back when a later render's page is already live (None otherwise)."""
    fslug, prefix = settings.file_slug, settings.prefix
    site = client.bucket(settings.site_bucket)
    # before the page is built (it releases the rows): this render's summary, what changed
    hist = history.prepare(site, results, record["run_id"], prefix, read_status(state, fslug, prefix))
    with tempfile.TemporaryDirectory(prefix=f"partybal-{fslug}-") as tmp:
        built = render.build(
            results,
            Path(tmp),
            render_id=record["run_id"],
            cores=cores,
            index_href="index.html",
            banner=_banner(source, prefix),
            catalog=read_experimenter(state),
            history=hist.sections,
            reuse=lambda hashes: reusable_figures(site, fslug, prefix, hashes),
        )
        published = publish_site(site, built, prefix, settings.asset_grace_seconds)
    _mark_ok(record, built, published, fields)
    if published.page is None:
        return {**record, "superseded_by": published.superseded_by}
    record["history"] = hist.write(site)  # never deleted by the clean-up; a repeat of the same inputs writes none
    logs.log(
        log,
        logging.INFO,
        "page published",
        page=published.page,
        url=page_url(settings.site_bucket, published.page),
        render_id=built.render_id,
        replaced=published.replaced,
        figures=built.figures,
        old_assets_deleted=published.assets_deleted,
        **fields,
    )
    return None


def _mark_ok(record: dict[str, Any], built: render.BuiltPage, published: Published, fields: dict[str, Any]) -> None:
    """``record`` made ``ok`` for the built page (published, or superseded by a later render's)."""
    logs.log(
        log,
        logging.INFO,
        "figures",
        render_id=built.render_id,
        **built.figure_counts(),
        **fields,
        deleted=published.figures_deleted,
        published=published.page is not None,
    )
    now = status.iso(dt.datetime.now(dt.UTC))
    record.update(
        state=OK,
        render_id=built.render_id,
        figures=built.figures,
        page=published.page,
        rendered_at=now,
        page_rendered_at=now,
    )
    record["srm"] = status.srm_field(built.srm)
    if published.page is None:
        logs.log(
            log,
            logging.INFO,
            "page not published: a later render's page is live",
            render_id=built.render_id,
            superseded_by=published.superseded_by,
            **fields,
        )


def _banner(source: GcsResults, prefix: str) -> render.Banner | None:
    """The preview banner of a page rendered from a preview upload."""
    if prefix != layout.PREVIEW_PREFIX:
        return None
    return render.Banner.preview(source.description, dt.datetime.now(dt.UTC))


def _record_failure(
    exc: Exception,
    state,
    source: GcsResults,
    results: ExperimentResults | None,
    record: dict[str, Any],
    fields: dict[str, Any],
) -> None:
    """``record`` made ``failed`` with a one-line reason, keeping the live page's fields (and,
    when the results could not be loaded, what the TOC knew about the experiment)."""
    fslug, prefix = fields["slug"], fields["prefix"]
    reason = status.failure_reason(exc)  # one line
    if not isinstance(exc, (InputError, render.RenderError)):  # a bug or an unforeseen value: keep the traceback
        log.error("render failed: %s", reason, exc_info=True, extra={"fields": {"kind": type(exc).__name__, **fields}})
    if results is None:
        gens, updated = _listed_generations(source, fslug)
        record.update(input_generations=gens, results_updated=updated)
    previous = read_status(state, fslug, prefix) or {}
    record.update(
        state=FAILED,
        reason=reason,
        rendered_at=status.iso(dt.datetime.now(dt.UTC)),
        **status.live_page_fields(previous),
    )
    if results is None:  # keep what the TOC knows about the experiment
        for key in ("name", "analysis_start", "windows"):
            if previous.get(key):
                record[key] = previous[key]
    else:
        logs.log(log, logging.ERROR, f"render failed: {reason}", kind=type(exc).__name__, **fields)


# --- list mode (backfill) ----------------------------------------------------------------------


def task_share(slugs: list[str], index: int, count: int) -> list[str]:
    """The slugs task ``index`` of ``count`` renders: positions ``i % count == index``."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"task index {index} is not within a task count of {count}")
    return [s for i, s in enumerate(slugs) if i % count == index]


def parse_gs_uri(uri: str) -> tuple[str, str]:
    try:
        bucket, name = layout.parse_gs_url(uri)
    except ValueError as exc:
        raise ConfigError(f"PARTYBAL_SLUGS_URI: {exc}") from None
    if not name:
        raise ConfigError(f"PARTYBAL_SLUGS_URI={uri[:200]!r} names no object")
    return bucket, name


def read_slug_list(client, uri: str) -> dict[str, Any]:
    """``{"prefix": "", "slugs": [...], "created_at": ISO}`` written by ``partybal backfill``."""
    bucket, name = parse_gs_uri(uri)
    doc = json.loads(client.bucket(bucket).blob(name).download_as_bytes())
    if not isinstance(doc, dict) or not isinstance(doc.get("slugs"), list):
        raise ConfigError(f"{uri}: not a slug list")
    return doc


def _already_done(state, fslug: str, prefix: str, since: str | None) -> bool:
    previous = read_status(state, fslug, prefix) or {}
    return bool(since) and previous.get("state") == OK and str(previous.get("rendered_at") or "") >= since


def _crash_record(state, settings: JobSettings, reason: str, run_id: str | None = None) -> None:
    """Best effort: a failed status record for a slug whose render crashed (infrastructure)."""
    try:
        previous = read_status(state, settings.file_slug, settings.prefix)
        now = dt.datetime.now(dt.UTC)
        record = status.crash_record(
            previous, settings.slug, settings.file_slug, settings.prefix, reason, now, settings.attempt, run_id
        )
        write_status(state, record, settings.prefix)
    except Exception:  # noqa: BLE001 - the crash itself is what gets logged
        pass


def run_list(environ: Mapping[str, str], client=None, *, cores: int | None = None) -> int:
    """List mode: render this task's share of the slug list; 0 when every one is ``ok``."""
    client = client or gcs_client()
    task = ListTask.from_env(environ, client)
    mine = task_share([str(s) for s in task.doc["slugs"]], task.index, task.count)
    logs.log(
        log,
        logging.INFO,
        "backfill task started",
        slug=None,
        task=task.index,
        tasks=task.count,
        slugs=len(mine),
        list=task.uri,
    )
    state = client.bucket(task.base["STATE_BUCKET"])
    failed: list[str] = []
    skipped = 0
    for slug in mine:
        outcome, fslug = _render_listed(task, slug, state, client, cores)
        skipped += outcome == "skipped"
        if outcome == FAILED:
            failed.append(fslug)
    logs.log(
        log,
        logging.ERROR if failed else logging.INFO,
        "backfill task finished",
        slug=None,
        task=task.index,
        rendered=len(mine) - skipped - len(failed),
        failed=len(failed),
        skipped=skipped,
        failed_slugs=failed[:50],
    )
    return 1 if failed else 0


@dataclass(frozen=True)
class ListTask:
    """One task of a list-mode execution: its share's coordinates, the job settings every slug
    shares, and the slug list document."""

    uri: str
    index: int
    count: int
    attempt: str
    base: dict[str, str]
    doc: dict[str, Any]
    prefix: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str], client) -> ListTask:
        uri = environ.get("PARTYBAL_SLUGS_URI", "")
        index = int_setting(environ, "CLOUD_RUN_TASK_INDEX", 0)
        count = int_setting(environ, "CLOUD_RUN_TASK_COUNT", 1)
        attempt = environ.get("CLOUD_RUN_TASK_ATTEMPT", "")
        if count < 1 or not 0 <= index < count:
            raise ConfigError(f"CLOUD_RUN_TASK_INDEX={index} is not within CLOUD_RUN_TASK_COUNT={count}")
        parse_gs_uri(uri)
        base = {k: env(k, environ) for k in ("RESULTS_BUCKET", "SITE_BUCKET", "STATE_BUCKET")}
        base["CLOUD_RUN_TASK_ATTEMPT"] = attempt
        base.update(
            {k: environ[k] for k in ("RUN_JOB", "CLOUD_RUN_EXECUTION", "ASSET_GRACE_SECONDS") if environ.get(k)}
        )
        doc = read_slug_list(client, uri)
        prefix = doc.get("prefix") or ""
        if prefix not in layout.ALLOWED_PREFIXES:
            raise ConfigError(f"{uri}: prefix {prefix[:100]!r} is not one of {layout.ALLOWED_PREFIXES!r}")
        return cls(uri, index, count, attempt, base, doc, prefix)


def _render_listed(task: ListTask, slug: str, state, client, cores: int | None) -> tuple[str, str]:
    """One slug of the list: (``ok``, ``failed`` or ``skipped`` — a retried task's slug rendered
    since the list was made —, its file slug)."""
    try:
        settings = JobSettings.from_env({**task.base, "PARTYBAL_SLUG": slug, "PARTYBAL_PREFIX": task.prefix})
    except ConfigError as exc:
        logs.log(log, logging.ERROR, f"backfill: skipped: {exc}", slug=None)
        return FAILED, slug
    if task.attempt not in ("", "0") and _already_done(
        state, settings.file_slug, task.prefix, task.doc.get("created_at")
    ):
        return "skipped", settings.file_slug
    try:
        record = run(settings, client, cores=cores)
    except Exception as exc:  # one slug's infrastructure trouble must not stop the others
        reason = "render crashed: " + " ".join(str(exc).split())[:400]
        log.exception("%s", reason, extra={"fields": {"slug": settings.file_slug}})
        _crash_record(state, settings, reason)
        return FAILED, settings.file_slug
    return (OK if record["state"] == OK else FAILED), settings.file_slug


def main(environ: Mapping[str, str] | None = None, client=None) -> int:
    logs.setup(os.environ.get("PARTYBAL_LOG_LEVEL", "INFO"))
    env_map = os.environ if environ is None else environ
    if env_map.get("PARTYBAL_SLUGS_URI"):
        try:
            return run_list(env_map, client)
        except ConfigError as exc:
            logs.log(log, logging.ERROR, f"backfill task not started: {exc}", slug=None)
            return 2
        except Exception as exc:  # the list could not be read: let Cloud Run retry the task
            log.exception(
                "backfill task crashed: %s", " ".join(str(exc).split())[:500], extra={"fields": {"slug": None}}
            )
            return 1
    try:
        settings = JobSettings.from_env(environ)
    except ConfigError as exc:
        logs.log(log, logging.ERROR, f"render job not started: {exc}", slug=None)
        return 2
    try:
        record = run(settings, client)
    except Exception as exc:  # infrastructure trouble: log it as one JSON line, let Cloud Run retry
        log.exception(
            "render job crashed: %s", " ".join(str(exc).split())[:500], extra={"fields": {"slug": settings.file_slug}}
        )
        return 1
    return 0 if record["state"] == OK else 1


if __name__ == "__main__":
    sys.exit(main())

"""Render one experiment: results → page model → R Markdown → knit with R → HTML + figures.

``build`` makes a page in a private work folder; ``publish_local`` moves it into an output folder
so that a reader never sees a page whose figures are missing, and a failed render never touches
the page already there. The Cloud Run job publishes the same build to the site bucket.

Bounds (environment settings, read once, a malformed value is a one-line configuration error):

* ``PARTYBAL_R_TIMEOUT`` (seconds, default 900): R is started in its own process group (session)
  and the whole group — R and the figure workers it forked — is killed when it expires;
* ``PARTYBAL_MAX_FIGURES`` (default 1500): a page that would draw more figures fails before R starts.

``publish_local`` touches only what renders wrote: it never writes through a symlink and deletes
only the figure folders listed in the experiment's manifest (``.<file-slug>.partybal.json`` in
the output folder), which it keeps of the folders it created.

Figures are stored by content hash (:mod:`partybal.page.figures`) in ``<file-slug>_files/figures/``,
shared by the renders into one output folder: ``build(reuse=…)`` is told which hashes are stored,
R draws only the others (``plots.json`` lists them; R reports what it drew in ``drawn.json``), and
``publish_local`` deletes the stored figures the new page no longer shows (in a figures folder a
render created). ``BuiltPage.figure_counts()``: figures drawn / reused / failed / uploaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import gc
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import layout, logs
from ..errors import PartybalError
from ..pipeline import experimenter, status
from ..settings import int_setting
from ..storage import ResultsSource
from . import exports, srm, templating
from . import figures as figure_ids
from .report import R_DIR, Banner, FigureSpec, build_page
from .results import ExperimentResults, load_experiment

DEFAULT_R_TIMEOUT_SECONDS = 900
DEFAULT_MAX_FIGURES = 1500
MANIFEST_SUFFIX = ".partybal.json"
log = logging.getLogger(__name__)


@functools.cache
def _settings(timeout: str | None, figures: str | None) -> tuple[int, int]:
    env = {k: v for k, v in (("PARTYBAL_R_TIMEOUT", timeout), ("PARTYBAL_MAX_FIGURES", figures)) if v is not None}
    return (
        int_setting(env, "PARTYBAL_R_TIMEOUT", DEFAULT_R_TIMEOUT_SECONDS, minimum=1),
        int_setting(env, "PARTYBAL_MAX_FIGURES", DEFAULT_MAX_FIGURES, minimum=1),
    )


def r_timeout_seconds() -> int:
    """``PARTYBAL_R_TIMEOUT`` (parsed once per value; ConfigError when not a whole number >= 1)."""
    return _settings(os.environ.get("PARTYBAL_R_TIMEOUT"), os.environ.get("PARTYBAL_MAX_FIGURES"))[0]


def max_figures() -> int:
    """``PARTYBAL_MAX_FIGURES``: the most figures one page may draw."""
    return _settings(os.environ.get("PARTYBAL_R_TIMEOUT"), os.environ.get("PARTYBAL_MAX_FIGURES"))[1]


def check_settings() -> None:
    """Raise :class:`~partybal.errors.ConfigError` for a malformed render setting (call before any work starts)."""
    r_timeout_seconds()


class RenderError(PartybalError):
    """Knitting failed for a reason other than bad input."""


@dataclass
class BuiltPage:
    """A finished page in ``workdir``: ``page`` and ``assets`` are paths relative to it."""

    workdir: Path
    file_slug: str
    render_id: str
    page: str
    assets: list[str]
    figures: int
    results: ExperimentResults
    seconds: float
    srm: list = dataclasses.field(default_factory=list)  # srm.SrmCheck per (basis, segment)
    # Figures by content hash (figures.py): the files R drew (relative to workdir, under
    # layout.figures_dir), the hashes the page shows, and the counts.
    figure_files: list[str] = dataclasses.field(default_factory=list)
    figure_refs: list[str] = dataclasses.field(default_factory=list)
    figures_drawn: int = 0
    figures_reused: int = 0
    figures_failed: int = 0
    figures_uploaded: int = 0  # set by publishing (publish_local, job.publish_site)

    def figure_counts(self) -> dict[str, int]:
        """``{"figures": …, "drawn": …, "reused": …, "failed": …, "uploaded": …}`` (logs, benchmarks)."""
        return {
            "figures": self.figures,
            "drawn": self.figures_drawn,
            "reused": self.figures_reused,
            "failed": self.figures_failed,
            "uploaded": self.figures_uploaded,
        }


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def default_cores(cpu_max: Path = CPU_MAX) -> int:
    """How many R workers draw: the CPUs this process may run on, capped by the container's CPU
    quota when it has one (a container limited to 4 vCPUs may still see every CPU of its host)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit to read: the affinity count stands
    return cores


@dataclass
class FigurePlan:
    """Which figures of a page R draws: each figure's hash, and the hashes already stored."""

    digests: dict[int, str]  # figure number -> hash
    reusable: set[str]


SPECS_DIR = "specs"  # next to plots.json: one file per figure R draws


def _write_figure_plan(path: Path, fslug: str, figures: list[FigureSpec], hasher, reuse) -> FigurePlan:
    """Hash every figure, ask ``reuse(hashes)`` which are stored, and write plots.json for R:
    the figures to draw, the reused ones and the repeats of a figure on the same page by name.
    A figure to draw is listed by number, alt, hashed file name and height (what R deals figures
    to its workers by); its spec — its canonical bytes (:func:`figures.canonical`) with those — is
    a file of its own in ``specs/``, read by the R worker that draws it: R's main process never
    holds every figure's rows, so the workers it forks do not inherit (and copy) them."""
    digests, datas = [], []
    for f in figures:
        digest, data = hasher(f)
        digests.append(digest)
        datas.append(data)
    unique = sorted(set(digests))
    reusable = set(reuse(unique)) & set(unique) if reuse is not None and unique else set()
    first: dict[str, int] = {}
    draw, reused, copies = [], [], []
    (path.parent / SPECS_DIR).mkdir(exist_ok=True)
    for f, digest, data in zip(figures, digests, datas, strict=True):
        head = {"alt": f.alt, "file": layout.figure_name(fslug, digest), "number": f.number}
        if digest in reusable:
            reused.append(head)
        elif digest in first:
            copies.append({**head, "of": first[digest]})
        else:
            first[digest] = f.number
            spec = f"{SPECS_DIR}/{f.number}.json"
            (path.parent / spec).write_bytes(json.dumps(head, ensure_ascii=False)[:-1].encode() + b"," + data[1:])
            draw.append({**head, "height": f.height, "spec": spec})
    doc = {"figures": draw, "reused": reused, "copies": copies}
    path.write_text(json.dumps(doc, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    return FigurePlan({f.number: d for f, d in zip(figures, digests, strict=True)}, reusable)


def _return_freed_memory() -> None:
    """Collect what was freed and hand glibc's free pages back to the system (R gets them)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # pragma: no cover - not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_group(cmd: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, str]:
    """Run ``cmd`` in its own session (process group); on timeout kill the whole group — the
    command and every process it forked (R's figure workers) — and raise TimeoutExpired. Also kills
    the group when this process is interrupted. (exit status, stderr)."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        cwd=cwd,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
    except BaseException:  # TimeoutExpired, KeyboardInterrupt, SystemExit: leave no R behind
        _kill_group(proc.pid)
        proc.communicate()
        raise
    _kill_group(proc.pid)  # workers that outlived R itself (R exited, a forked child did not)
    return proc.returncode, err or ""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def knit(rmd: Path, fragment: Path, plots: Path, fig_dir: str, cores: int) -> None:
    """Run R: draw the figures into ``fragment.parent/fig_dir`` and knit ``rmd`` to ``fragment``."""
    cmd = ["Rscript", "--vanilla", str(R_DIR / "render.R"), str(rmd), str(fragment), str(plots), fig_dir, str(cores)]
    timeout = r_timeout_seconds()
    try:
        returncode, stderr = run_group(cmd, timeout, cwd=rmd.parent)
    except FileNotFoundError:
        raise RenderError("Rscript not found: install R (make setup does)") from None
    except subprocess.TimeoutExpired:
        raise RenderError(
            f"R did not finish within {timeout} s (PARTYBAL_R_TIMEOUT); R and its figure workers were stopped"
        ) from None
    if returncode != 0 or not fragment.exists():
        tail = " | ".join(line for line in stderr.strip().splitlines()[-6:] if line.strip())
        if returncode < 0:
            name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
            oom = " (out of memory?)" if -returncode == signal.SIGKILL else ""
            raise RenderError(f"R was killed by {name}{oom}: {tail or 'no output'}")
        raise RenderError(f"R exited with status {returncode}: {tail or 'no output'}")


def build(
    results: ExperimentResults,
    workdir: Path,
    *,
    render_id: str | None = None,
    cores: int | None = None,
    banner: Banner | None = None,
    index_href: str = "index.html",
    catalog: experimenter.Catalog | None = None,
    reuse=None,
    history: tuple | None = None,
) -> BuiltPage:
    """``catalog``: Experimenter's experiments (None: not consulted; the header says nothing).
    ``reuse(hashes)``: which of the page's figure hashes are stored where the page is published
    (those are linked, not drawn); None: draw every figure."""
    started = time.monotonic()
    render_id = render_id or layout.new_render_id()
    fslug = results.file_slug
    table_exports: list = []  # (number, title, rows) of each table, as build_page makes them
    page, figures, checks = _page_model(results, render_id, table_exports, banner, catalog, history)
    n_figures = _figure_count(figures)
    fig_dir = layout.assets_dir(fslug, render_id)
    work = workdir / "work"
    work.mkdir(parents=True)
    plots = work / "plots.json"
    plan = _plan_figures(plots, fslug, figures, reuse)
    # the CSV of each figure from the very specs R gets, of each table from its rows (exports.py)
    exported = exports.write_all(workdir, fig_dir, figures, table_exports)
    del figures, table_exports
    rmd = work / "report.Rmd"
    rmd.write_text(templating.render("report.Rmd.j2", page=page))
    # While R draws, this process holds only the page model (for page.html.j2): the rows and
    # the figure data are in files now (docs/performance.md, "Memory bound").
    results.release_rows(status.window_counts(results))
    _return_freed_memory()
    fragment = workdir / "fragment.html"
    knit(rmd, fragment, plots, layout.figures_dir(fslug), cores or default_cores())
    drawn = _drawn_numbers(work / "drawn.json")
    page_rel = _write_page(workdir, page, fragment, index_href, results, render_id, exported)
    fragment.unlink()
    shutil.rmtree(work)
    by_number = plan.digests
    return BuiltPage(
        workdir,
        fslug,
        render_id,
        page_rel,
        _files_under(workdir, fig_dir),
        n_figures,
        results,
        time.monotonic() - started,
        checks,
        figure_files=_drawn_files(workdir, fslug, by_number, drawn["drawn"]),
        figure_refs=sorted(set(by_number.values()) - {by_number[n] for n in drawn["failed"] if n in by_number}),
        figures_drawn=len(drawn["drawn"]),
        figures_reused=n_figures - len(drawn["drawn"]) - len(drawn["failed"]),
        figures_failed=len(drawn["failed"]),
    )


def _page_model(
    results: ExperimentResults,
    render_id: str,
    table_exports: list,
    banner: Banner | None,
    catalog: experimenter.Catalog | None,
    history: tuple | None,
) -> tuple:
    """(page, figures, sample-ratio checks): the page model with Experimenter's facts and the
    render history, the FigureSpecs R draws; each table's export rows go to ``table_exports``."""
    fslug = results.file_slug
    info = catalog.get(fslug) if catalog is not None else None
    checks = srm.srm_checks(results, info.ratios if info else None)
    page, figures = build_page(
        results,
        render_dir=layout.assets_dir(fslug, render_id),
        table_exports=table_exports,
        banner=banner,
        srm_checks=checks,
        experiment=info,
        experiment_note=catalog.missing_note(results.slug) if catalog is not None and info is None else None,
        experiment_url=catalog.link(info.slug) if catalog is not None and info else "",
    )
    if history is not None:  # (report.Changes, [report.HistoryEntry], note) from pipeline/history.py
        page = dataclasses.replace(page, changes=history[0], history=list(history[1]), history_note=history[2])
    return page, figures, checks


def _write_page(
    workdir: Path, page, fragment: Path, index_href: str, results: ExperimentResults, render_id: str, exported: list
) -> str:
    """Write the page (R's ``fragment`` in page.html.j2) and the render's manifest of exports and
    versions; the page's path relative to ``workdir``."""
    html = templating.render(
        "page.html.j2",
        page=page,
        body=templating.Markup(fragment.read_text()),
        index_href=index_href,
    )
    fslug = results.file_slug
    page_rel = layout.page_name(fslug)
    r_versions = workdir / "r-versions.json"  # written by r/render.R
    doc = exports.manifest(results, render_id, page_rel, exported, r_versions=exports.read_r_versions(r_versions))
    exports.write_manifest(workdir / layout.render_manifest_name(fslug, render_id), doc)
    r_versions.unlink(missing_ok=True)
    (workdir / page_rel).write_text(html)
    return page_rel


def _figure_count(figures: list) -> int:
    """How many figures the page draws; more than PARTYBAL_MAX_FIGURES is a RenderError."""
    limit = max_figures()
    n_figures = len(figures)
    if n_figures > limit:
        raise RenderError(f"the page would draw {n_figures} figures, over the limit of {limit} (PARTYBAL_MAX_FIGURES)")
    return n_figures


def _plan_figures(plots: Path, fslug: str, figures: list, reuse) -> FigurePlan:
    """Figures by content hash: R draws only those not stored yet (figures.py, ``reuse``)."""
    try:
        hasher = figure_ids.FigureHasher(R_DIR)
    except figure_ids.FigureCodeError as exc:
        raise RenderError(str(exc)) from None
    return _write_figure_plan(plots, fslug, figures, hasher, reuse)


def _files_under(workdir: Path, folder: str) -> list[str]:
    """Every file under ``workdir/folder``, relative to ``workdir``, sorted ([] without the folder)."""
    if not (workdir / folder).exists():
        return []
    return sorted(p.relative_to(workdir).as_posix() for p in (workdir / folder).rglob("*") if p.is_file())


def _drawn_files(workdir: Path, fslug: str, by_number: dict[int, str], drawn: list[int]) -> list[str]:
    """The figure files (by content hash) R drew and wrote."""
    drawn_digests = sorted({by_number[n] for n in drawn if n in by_number})
    return [layout.figure_name(fslug, d) for d in drawn_digests if (workdir / layout.figure_name(fslug, d)).is_file()]


def _drawn_numbers(path: Path) -> dict[str, list[int]]:
    """What R reported in drawn.json: the figure numbers it drew, and those that failed."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        raise RenderError(f"R wrote no readable {path.name}: the figures it drew are unknown") from None
    return {k: [int(n) for n in doc.get(k) or []] for k in ("drawn", "failed")}


def manifest_path(out_dir: Path, fslug: str) -> Path:
    return out_dir / f".{fslug}{MANIFEST_SUFFIX}"


def read_manifest(out_dir: Path, fslug: str) -> dict:
    """What earlier renders into ``out_dir`` wrote for ``fslug``: ``{"root_created": bool,
    "renders": [render ids], "figures_created": bool}`` (``figures_created``: the figures folder,
    :func:`layout.figures_dir`, is ours); empty when missing, unreadable, or not a plain file (a symlink)."""
    path = manifest_path(out_dir, fslug)
    empty = {"root_created": False, "renders": [], "figures_created": False}
    if path.is_symlink() or not path.is_file():
        return empty
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return empty
    if not isinstance(doc, dict) or not isinstance(doc.get("renders"), list):
        return empty
    renders = [r for r in doc["renders"] if isinstance(r, str) and layout.is_render_id(r)]
    return {
        "root_created": doc.get("root_created") is True,
        "renders": renders,
        "figures_created": doc.get("figures_created") is True,
    }


def _write_manifest(out_dir: Path, fslug: str, doc: dict) -> None:
    path = manifest_path(out_dir, fslug)
    tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True))
    os.replace(tmp, path)  # replaces a planted symlink itself, never writes through it


def check_publishable(out_dir: Path, fslug: str) -> None:
    """RenderError when publishing ``fslug`` into ``out_dir`` would write through a symlink or
    replace something that is not ours (checked before a render starts, and again at publishing)."""
    root = out_dir / layout.assets_root(fslug)
    if root.is_symlink():
        raise RenderError(
            f"{root} is a symbolic link: refusing to write figures through it (remove it, or choose another --out)"
        )
    if root.exists() and not root.is_dir():
        raise RenderError(
            f"{root} exists and is not a folder: refusing to replace it (remove it, or choose another --out)"
        )
    figs = out_dir / layout.figures_dir(fslug)
    if figs.is_symlink() or (figs.exists() and not figs.is_dir()):
        raise RenderError(
            f"{figs} is not a plain folder: refusing to write figures into it (remove it, or choose another --out)"
        )
    page = out_dir / layout.page_name(fslug)
    if page.is_dir() and not page.is_symlink():
        raise RenderError(f"{page} is a folder: refusing to replace it")


def stored_figures(out_dir: Path, fslug: str) -> set[str]:
    """The figure hashes stored in ``out_dir`` for ``fslug`` (plain files named ``<sha256>.png`` in
    :func:`layout.figures_dir`; one directory listing). Renders into the same ``--out`` share them."""
    figs = Path(out_dir) / layout.figures_dir(fslug)
    if figs.is_symlink() or not figs.is_dir():
        return set()
    found = set()
    with os.scandir(figs) as it:
        for entry in it:
            digest = layout.figure_hash_of(entry.name)
            if digest and entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size > 0:
                found.add(digest)
    return found


def _publish_figures(built: BuiltPage, out_dir: Path, manifest: dict) -> None:
    """Move the figures R drew into the experiment's figures folder (atomic renames)."""
    figs = out_dir / layout.figures_dir(built.file_slug)
    if built.figure_files and not figs.exists():
        if not figs.parent.exists():
            figs.parent.mkdir(parents=True)
            manifest["root_created"] = True
        figs.mkdir()
        manifest["figures_created"] = True
        _write_manifest(out_dir, built.file_slug, manifest)  # before the moves: a crash leaves it owned, not orphaned
    for rel in built.figure_files:
        os.replace(built.workdir / rel, out_dir / rel)  # a symlink at the target is replaced, never followed
    built.figures_uploaded = len(built.figure_files)


def _delete_unreferenced_figures(built: BuiltPage, out_dir: Path, manifest: dict) -> int:
    """Figures in our figures folder that the page now live does not show (locally there is no
    grace period: a page is replaced on disk at once). Only in a folder a render created."""
    figs = out_dir / layout.figures_dir(built.file_slug)
    if not manifest.get("figures_created") or figs.is_symlink() or not figs.is_dir():
        return 0
    keep, deleted = set(built.figure_refs), 0
    for p in list(figs.iterdir()):
        digest = layout.figure_hash_of(p.name)
        if digest and digest not in keep and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            deleted += 1
    if not any(figs.iterdir()):
        figs.rmdir()
        manifest["figures_created"] = False
    return deleted


def _move_assets(built: BuiltPage, out_dir: Path, manifest: dict, root: Path) -> None:
    """Move the render's asset folder under ``root`` in ``out_dir``, listing it in the manifest
    first (and ``root`` as ours when this creates it); never over an existing folder."""
    fslug, rid = built.file_slug, built.render_id
    src_assets = built.workdir / layout.assets_dir(fslug, rid)
    if not src_assets.exists():
        return
    if not root.exists():
        root.mkdir(parents=True)
        manifest["root_created"] = True
    dest = out_dir / layout.assets_dir(fslug, rid)
    if dest.exists() or dest.is_symlink():
        raise RenderError(f"{dest} already exists: refusing to replace it")
    manifest["renders"] = [*manifest["renders"], rid]
    _write_manifest(out_dir, fslug, manifest)  # before the move: a crash leaves it listed, not orphaned
    os.replace(src_assets, dest)


def _remove_earlier_renders(root: Path, renders: list[str], rid: str) -> list[str]:
    """Remove the asset folders of the renders before ``rid``; the renders still listed after
    (``rid``, and folders that could not be removed). A folder replaced by a symlink is not ours."""
    kept = [r for r in renders if r == rid]
    for old in renders:
        if old == rid:
            continue
        folder = root / old
        if folder.is_symlink():
            continue  # not ours any more: somebody replaced it with a link
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)  # rmtree unlinks symlinks inside, never follows them
        if folder.exists():
            kept.append(old)
    return kept


def publish_local(built: BuiltPage, out_dir: Path) -> Path:
    """Move a built page into ``out_dir``: figures first, then the page (atomic rename), then
    remove the figures of earlier renders — only folders an earlier render created (its manifest
    says so) and figures by hash the page does not show; never through a symlink, never anything
    else in the folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fslug, rid = built.file_slug, built.render_id
    check_publishable(out_dir, fslug)
    manifest = read_manifest(out_dir, fslug)
    root = out_dir / layout.assets_root(fslug)
    _publish_figures(built, out_dir, manifest)
    _move_assets(built, out_dir, manifest, root)
    target = out_dir / built.page
    os.replace(built.workdir / built.page, target)  # a symlink at target is replaced, its target untouched
    kept = _remove_earlier_renders(root, manifest["renders"], rid)
    _delete_unreferenced_figures(built, out_dir, manifest)
    root_created = manifest["root_created"]
    if root_created and root.is_dir() and not root.is_symlink() and not any(root.iterdir()):
        root.rmdir()
        root_created = False
    if kept or root_created or manifest["figures_created"]:
        _write_manifest(
            out_dir,
            fslug,
            {"root_created": root_created, "renders": kept, "figures_created": manifest["figures_created"]},
        )
    else:
        manifest_path(out_dir, fslug).unlink(missing_ok=True)
    return target


def render_to_dir(
    source: ResultsSource,
    slug: str,
    out_dir: str | Path,
    *,
    cores: int | None = None,
    banner: Banner | None = None,
    catalog: experimenter.Catalog | None = None,
) -> tuple[Path, BuiltPage]:
    """Load, validate, build and publish one experiment into ``out_dir``.

    Raises :class:`~partybal.page.results.InputError` or :class:`RenderError`; in both cases nothing
    in ``out_dir`` changed."""
    out = Path(out_dir).expanduser().absolute()  # R runs elsewhere: never hand it a relative path
    out.mkdir(parents=True, exist_ok=True)
    check_settings()
    check_publishable(out, layout.file_slug(slug))
    results = load_experiment(source, slug)
    with tempfile.TemporaryDirectory(dir=out, prefix=f".partybal-{results.file_slug}-") as tmp:
        built = build(
            results,
            Path(tmp),
            cores=cores,
            banner=banner,
            catalog=catalog,
            reuse=lambda hashes: stored_figures(out, results.file_slug),
        )
        target = publish_local(built, out)
        logs.log(
            log, logging.INFO, "figures", slug=results.file_slug, render_id=built.render_id, **built.figure_counts()
        )
        return target, built

"""Render one experiment: results → page model → R Markdown → knit with R → HTML + figures.

``build`` makes a page in a private work folder; ``publish_local`` moves it into an output folder
so that a reader never sees a page whose figures are missing, and a failed render never touches
the page already there. The Cloud Run job publishes the same build to the site bucket.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import layout, templating
from .report import R_DIR, Banner, FigureSpec, build_page
from .results import ExperimentResults, load_experiment
from .storage import ResultsSource

R_TIMEOUT_SECONDS = int(os.environ.get("PARTYBAL_R_TIMEOUT", "900"))


class RenderError(Exception):
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


def new_render_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def default_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _write_plots(path: Path, figures: list[FigureSpec]) -> None:
    with path.open("w") as fh:
        json.dump({"figures": [dataclasses.asdict(f) for f in figures]}, fh, allow_nan=False)


def knit(rmd: Path, fragment: Path, plots: Path, fig_dir: str, cores: int) -> None:
    """Run R: draw the figures into ``fragment.parent/fig_dir`` and knit ``rmd`` to ``fragment``."""
    cmd = ["Rscript", "--vanilla", str(R_DIR / "render.R"), str(rmd), str(fragment), str(plots), fig_dir, str(cores)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=R_TIMEOUT_SECONDS, cwd=rmd.parent)
    except FileNotFoundError:
        raise RenderError("Rscript not found: install R (make setup does)") from None
    except subprocess.TimeoutExpired:
        raise RenderError(f"R did not finish within {R_TIMEOUT_SECONDS} s") from None
    if proc.returncode != 0 or not fragment.exists():
        tail = " | ".join(line for line in proc.stderr.strip().splitlines()[-6:] if line.strip())
        raise RenderError(f"R exited with status {proc.returncode}: {tail or 'no output'}")


def build(
    results: ExperimentResults,
    workdir: Path,
    *,
    render_id: str | None = None,
    cores: int | None = None,
    banner: Banner | None = None,
    index_href: str = "index.html",
) -> BuiltPage:
    started = time.monotonic()
    render_id = render_id or new_render_id()
    fslug = results.file_slug
    page, figures = build_page(results, banner=banner)
    fig_dir = layout.assets_dir(fslug, render_id)
    work = workdir / "work"
    work.mkdir(parents=True)
    plots = work / "plots.json"
    _write_plots(plots, figures)
    rmd = work / "report.Rmd"
    rmd.write_text(templating.render("report.Rmd.j2", page=page))
    fragment = workdir / "fragment.html"
    knit(rmd, fragment, plots, fig_dir, cores or default_cores())
    html = templating.render(
        "page.html.j2",
        page=page,
        body=templating.Markup(fragment.read_text()),
        index_href=index_href,
    )
    page_rel = layout.page_name(fslug)
    (workdir / page_rel).write_text(html)
    fragment.unlink()
    shutil.rmtree(work)
    assets = sorted(p.relative_to(workdir).as_posix() for p in (workdir / fig_dir).rglob("*") if p.is_file()) if (workdir / fig_dir).exists() else []
    return BuiltPage(workdir, fslug, render_id, page_rel, assets, len(figures), results, time.monotonic() - started)


def publish_local(built: BuiltPage, out_dir: Path) -> Path:
    """Move a built page into ``out_dir``: figures first, then the page (atomic rename), then
    remove the figures of earlier renders."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fslug, rid = built.file_slug, built.render_id
    root = out_dir / layout.assets_root(fslug)
    src_assets = built.workdir / layout.assets_dir(fslug, rid)
    if src_assets.exists():
        root.mkdir(parents=True, exist_ok=True)
        os.replace(src_assets, out_dir / layout.assets_dir(fslug, rid))
    target = out_dir / built.page
    os.replace(built.workdir / built.page, target)
    if root.exists():
        for old in root.iterdir():
            if old.name != rid:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        if not any(root.iterdir()):
            root.rmdir()
    return target


def render_to_dir(
    source: ResultsSource,
    slug: str,
    out_dir: str | Path,
    *,
    cores: int | None = None,
    banner: Banner | None = None,
) -> tuple[Path, BuiltPage]:
    """Load, validate, build and publish one experiment into ``out_dir``.

    Raises :class:`~partybal.results.InputError` or :class:`RenderError`; in both cases nothing
    in ``out_dir`` changed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = load_experiment(source, slug)
    with tempfile.TemporaryDirectory(dir=out, prefix=f".partybal-{results.file_slug}-") as tmp:
        built = build(results, Path(tmp), cores=cores, banner=banner)
        return publish_local(built, out), built

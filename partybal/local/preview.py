"""Previews: see a config's results before they are published.

- ``partybal preview --results DIR``: render every experiment of a local bucket-shaped folder into
  a temporary site with its own index — no buckets, no emulators.
- On GCP (and the local stack) results under ``preview/`` of the results bucket take the same
  event path into ``preview/`` of the site bucket; the job passes :func:`banner` for them.

Every preview page says so in a banner that names its data and the date it expires (previews
are deleted after :data:`EXPIRY_DAYS` days: the site bucket's lifecycle rule on GCP, and
:func:`clean_old_previews` locally).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import webbrowser
from dataclasses import dataclass
from pathlib import Path

from .. import cliargs, layout
from ..page.render import check_settings, render_to_dir
from ..page.report import Banner
from ..pipeline import status, toc
from ..pipeline.state import group_results, listed
from ..storage import LocalResults, ResultsSource, SizeLimits

EXPIRY_DAYS = layout.PREVIEW_EXPIRY_DAYS
DEFAULT_ROOT = Path("build") / "preview"


def discover(source: ResultsSource) -> list[str]:
    """File slugs of every experiment with at least one final results object."""
    return sorted(group_results(listed(source), ""))


@dataclass
class PreviewOutcome:
    file_slug: str
    page: Path | None
    error: str  # "" when rendered
    fields: dict = dataclasses.field(default_factory=dict)  # status.results_fields when loaded


def clean_old_previews(root: Path, now: dt.datetime, keep: Path | None = None) -> list[Path]:
    """Delete local preview sites older than the expiry; returns what was deleted."""
    deleted = []
    if not root.is_dir():
        return deleted
    cutoff = now.timestamp() - EXPIRY_DAYS * 86400
    for site in root.iterdir():
        if site.is_dir() and site != keep and site.stat().st_mtime < cutoff:
            shutil.rmtree(site, ignore_errors=True)
            deleted.append(site)
    return deleted


def write_index(out: Path, source: ResultsSource, outcomes: list[PreviewOutcome], now: dt.datetime) -> Path:
    """The preview's own index, built by the TOC code from a listing and status-like records."""
    experiments = group_results(listed(source), "")
    statuses = {}
    for o in outcomes:
        exp = experiments.get(o.file_slug)
        page = layout.page_name(o.file_slug) if o.page else None
        statuses[o.file_slug] = status.outcome_record(
            o.file_slug, exp.generations if exp else {}, o.error, page, now, o.fields
        )
    page = toc.toc_page({fs: e for fs, e in experiments.items() if fs in statuses}, statuses, set(), "", now=now)
    page = dataclasses.replace(page, title=f"Preview of {source.description}", is_preview=True, other_href="")
    index = out / layout.index_name()
    index.write_text(toc.render_html(page))
    return index


def run_preview(
    results: str | Path,
    *,
    slug: str | None = None,
    out_root: Path = DEFAULT_ROOT,
    now: dt.datetime | None = None,
    cores: int | None = None,
    catalog=None,
) -> tuple[Path, list[PreviewOutcome]]:
    """``catalog``: an ``experimenter.Catalog`` for the page headers (None: not consulted)."""
    now = now or dt.datetime.now(dt.UTC)
    source = LocalResults(results)
    out = out_root / now.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    clean_old_previews(out_root, now, keep=out)
    check_settings()  # a configuration mistake stops the preview before it starts (exit 2)
    SizeLimits.from_env()
    slugs = [layout.file_slug(slug)] if slug else discover(source)
    the_banner = Banner.preview(source.description, now)
    outcomes = []
    for fslug in slugs:
        try:
            page, built = render_to_dir(source, fslug, out, cores=cores, banner=the_banner, catalog=catalog)
            outcomes.append(PreviewOutcome(fslug, page, "", status.results_fields(built.results)))
        except Exception as exc:  # noqa: BLE001 - one experiment's failure never stops the others
            outcomes.append(PreviewOutcome(fslug, None, status.failure_reason(exc)))
    return write_index(out, source, outcomes, now), outcomes


def cmd_preview(args) -> int:
    import sys

    from ..pipeline import experimenter

    out_root = cliargs.writable_dir(args.out, "--out")
    catalog = experimenter.load(experimenter.configured(getattr(args, "experimenter", None)))
    index, outcomes = run_preview(args.results, slug=args.slug, out_root=out_root, cores=args.cores, catalog=catalog)
    for o in outcomes:
        if o.page:
            print(f"{o.file_slug}: {o.page.resolve().as_uri()}")
    print(f"index: {index.resolve().as_uri()}")
    failed = [o for o in outcomes if o.error]
    if failed:
        print(f"\n{len(failed)} of {len(outcomes)} experiments could not be rendered:", file=sys.stderr)
        for o in failed:
            print(f"  {o.file_slug}: {o.error}", file=sys.stderr)
    if not outcomes:
        print(f"no experiment results found in {args.results}", file=sys.stderr)
    if args.open:
        webbrowser.open(index.resolve().as_uri())
    return 1 if failed or not outcomes else 0


def add_command(sub) -> None:
    p = sub.add_parser("preview", help="render every experiment of a local results folder into a temporary site")
    p.add_argument(
        "--results", required=True, type=cliargs.existing_dir, help="local folder shaped like the results bucket"
    )
    p.add_argument("--slug", type=cliargs.slug, help="only this experiment")
    p.add_argument("--open", action="store_true", help="open the preview index in a browser")
    p.add_argument(
        "--out",
        type=cliargs.output_dir,
        default=str(DEFAULT_ROOT),
        help=f"where preview sites are kept (each expires after 7 days; default {DEFAULT_ROOT})",
    )
    p.add_argument(
        "--cores", type=cliargs.positive_int, default=None, help="R worker processes for plots (default: all cores)"
    )
    p.add_argument(
        "--experimenter", type=cliargs.experimenter_url, default=None, metavar="URL|off", help=cliargs.EXPERIMENTER_HELP
    )
    p.set_defaults(func=cmd_preview)

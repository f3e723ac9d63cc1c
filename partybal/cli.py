"""``partybal`` command line: a thin shell over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .render import RenderError, render_to_dir
from .results import InputError
from .storage import open_results


def cmd_render(args: argparse.Namespace) -> int:
    try:
        source = open_results(args.results)
        target, built = render_to_dir(source, args.slug, Path(args.out), cores=args.cores)
    except (InputError, RenderError, FileNotFoundError, ValueError) as exc:
        print(f"partybal: error: {exc}", file=sys.stderr)
        return 1
    print(f"{target}  ({built.figures} figures, {built.seconds:.1f} s)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="partybal", description="Render Jetstream experiment results into report pages.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render one experiment's report page")
    r.add_argument("slug", help="experiment slug (my-exp.v2) or its file form (my_exp_v2)")
    r.add_argument("--results", required=True, help="local bucket-shaped folder or gs://bucket[/prefix]")
    r.add_argument("--out", required=True, help="folder to write <file-slug>.html and its figures into")
    r.add_argument("--cores", type=int, default=None, help="R worker processes for plots (default: all cores)")
    r.set_defaults(func=cmd_render)
    from .localstack import add_commands  # local up, demo, rerender
    from .preview import add_command as add_preview

    add_commands(sub)
    add_preview(sub)
    from .backfill import add_command as add_backfill

    add_backfill(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

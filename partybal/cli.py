"""``partybal`` command line: a thin shell over the library.

Arguments are checked and paths resolved once, here (:mod:`partybal.cliargs`). Whatever goes wrong
below ends as one line on stderr, never a traceback: exit 2 for usage and configuration mistakes,
1 for bad input or a failed render (``PARTYBAL_DEBUG=1`` shows the traceback of an unexpected error).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import cliargs
from .errors import ConfigError, PartybalError, one_line

DEBUG_ENV = "PARTYBAL_DEBUG"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its usage errors in one line."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def cmd_render(args: argparse.Namespace) -> int:
    from .page.render import render_to_dir
    from .pipeline import experimenter
    from .storage import open_results

    out = cliargs.writable_dir(args.out, "--out")
    source = open_results(args.results)
    catalog = experimenter.load(experimenter.configured(getattr(args, "experimenter", None)))
    target, built = render_to_dir(source, args.slug, out, cores=args.cores, catalog=catalog)
    print(
        f"{target}  ({built.figures} figures, {built.seconds:.1f} s; "
        f"{built.figures_drawn} drawn, {built.figures_reused} reused)"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="partybal", description="Render Jetstream experiment results into report pages.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render one experiment's report page")
    r.add_argument("slug", type=cliargs.slug, help="experiment slug (my-exp.v2) or its file form (my_exp_v2)")
    r.add_argument(
        "--results",
        required=True,
        type=cliargs.results_source,
        help="local bucket-shaped folder or gs://bucket[/prefix]",
    )
    r.add_argument(
        "--out", required=True, type=cliargs.output_dir, help="folder to write <file-slug>.html and its figures into"
    )
    r.add_argument(
        "--cores", type=cliargs.positive_int, default=None, help="R worker processes for plots (default: all cores)"
    )
    r.add_argument(
        "--experimenter", type=cliargs.experimenter_url, default=None, metavar="URL|off", help=cliargs.EXPERIMENTER_HELP
    )
    r.set_defaults(func=cmd_render)
    from .local.preview import add_command as add_preview
    from .local.stack import add_commands  # local up, demo, rerender
    from .pipeline.backfill import add_command as add_backfill

    add_commands(sub)
    add_preview(sub)
    add_backfill(sub)
    return p


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; every failure becomes one line on stderr and an exit status."""
    prog = f"partybal {args.command}"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except PartybalError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        code, text = describe_unexpected(exc)
        print(f"{prog}: error: {text}", file=sys.stderr)
        return code


def describe_unexpected(exc: Exception) -> tuple[int, str]:
    """Exit status and one line for an error no partybal module turned into a PartybalError."""
    try:
        from google.auth.exceptions import GoogleAuthError
    except ImportError:  # pragma: no cover - google-auth is a dependency
        GoogleAuthError = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, GoogleAuthError):
        return 2, (
            f"Google credentials: {one_line(exc)[:300]} (run `gcloud auth application-default login`, "
            "or set STORAGE_EMULATOR_HOST for an emulator)"
        )
    if isinstance(exc, OSError) and exc.filename:
        return 1, f"{exc.strerror or one_line(exc)}: {exc.filename}"
    return 1, f"{type(exc).__name__}: {one_line(exc)[:500]} (set {DEBUG_ENV}=1 for the traceback)"


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except ConfigError as exc:  # raised by an argument type that reads configuration
        print(f"partybal: error: {one_line(exc)}", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

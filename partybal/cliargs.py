"""Command-line arguments, checked and resolved once at the CLI boundary.

Every path a command takes goes through one of these ``argparse`` types: ``~`` is expanded and the
path made absolute against the current directory, so nothing below the CLI ever sees a relative
path (R and child processes run in other directories). A bad value is a one-line usage error.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import layout
from .errors import ConfigError


def local_path(value: str) -> Path:
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(value).expanduser().absolute()


def existing_dir(value: str) -> Path:
    """A folder that must exist (results to read, data to upload)."""
    path = local_path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such folder: {path}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    return path.resolve()


def results_source(value: str) -> str:
    """``gs://bucket[/prefix]`` as given, or a local results folder made absolute."""
    if layout.is_gs_url(value):
        try:
            layout.parse_gs_url(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value
    return str(existing_dir(value))


def output_dir(value: str) -> Path:
    """A folder to write into: it may not exist yet, but must not be a file."""
    path = local_path(value)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    return path.resolve()


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is less than 1")
    return n


def slug(value: str) -> str:
    """An experiment slug in either form (``my-exp.v2`` or ``my_exp_v2``)."""
    value = value.strip()
    if not layout.is_file_slug(layout.file_slug(value)):
        raise argparse.ArgumentTypeError(f"not an experiment slug: {value!r}")
    return value


def writable_dir(path: Path, option: str) -> Path:
    """Create ``path`` (an output folder) or say in one line why it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {option} {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {option} {path}: permission denied")
    return path


def experimenter_url(value: str) -> str:
    """``--experimenter``: ``off`` or an http(s) URL of an Experimenter (without the API path)."""
    from .pipeline.experimenter import check_url

    try:
        return check_url(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("EXPERIMENTER_URL / --experimenter: ", "")) from None


EXPERIMENTER_HELP = (
    "Experimenter to read names, dates and branch ratios from: URL or off "
    "(default: $EXPERIMENTER_URL, else https://experimenter.services.mozilla.com)"
)

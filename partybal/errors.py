"""The one exception base of partybal, and what each kind of failure means to a person at a shell.

Every error a person can cause or fix is a :class:`PartybalError`; its ``exit_code`` is what the
command line exits with, and its message is the one line it prints (naming what to change):

* :class:`ConfigError` (exit 2): a usage or configuration mistake — a missing or malformed
  environment variable or argument, an output folder that cannot be written, no credentials.
* :class:`InputError` (exit 1): the results themselves are missing or broken; names the file.
* :class:`RenderError` (exit 1, defined in :mod:`partybal.page.render`): R could not draw the page.
"""

from __future__ import annotations

from typing import Mapping


class PartybalError(Exception):
    """Base of every error partybal reports in one line."""

    exit_code = 1


class ConfigError(PartybalError):
    """A usage or configuration mistake: the message names the setting to change."""

    exit_code = 2


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's message on one line (white space folded), at most ``limit`` characters; its
    type's name when it has no message."""
    text = " ".join(str(exc).split())
    return (text[:limit] if limit is not None else text) or type(exc).__name__


def int_setting(environ: Mapping[str, str], name: str, default: int, minimum: int | None = None) -> int:
    """An integer environment setting, or :class:`ConfigError` naming it."""
    raw = environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


class InputError(PartybalError):
    """Bad input: which file, and what is wrong with it, in one line."""

    def __init__(self, file: str, problem: str):
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem

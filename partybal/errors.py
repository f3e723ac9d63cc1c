"""The one exception base of partybal, and what each kind of failure means to a person at a shell.

Every error a person can cause or fix is a :class:`PartybalError`; its ``exit_code`` is what the
command line exits with, and its message is the one line it prints (naming what to change):

* :class:`ConfigError` (exit 2): a usage or configuration mistake — a missing or malformed
  environment variable or argument, an output folder that cannot be written, no credentials.
* :class:`InputError` (exit 1): the results themselves are missing or broken; names the file.
* :class:`RenderError` (exit 1, defined in :mod:`partybal.page.render`): R could not draw the page.
* :class:`Rejected`: an event, a render request or an object name the pipeline does not act on —
  logged with the reason and acknowledged, never a person's error: :class:`layout.Ignored`
  (not a results object), :class:`events.NotUnderstood` (not a change we act on),
  :class:`dispatch.BadRequest` (a render request that cannot be run).
* The local stack's :class:`StackError` (exit 1: a tool or port it needs) and
  ``jobimage.ImageError`` (a :class:`ConfigError`: ``--job-image`` cannot run here).

Settings are read by :mod:`partybal.settings`, which raises :class:`ConfigError`.
"""

from __future__ import annotations


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


class InputError(PartybalError):
    """Bad input: which file, and what is wrong with it, in one line."""

    def __init__(self, file: str, problem: str):
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem


class Rejected(PartybalError):
    """Not for us: an event, request or object name the pipeline skips; the message says why (one line)."""

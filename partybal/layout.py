"""The one module that knows the bucket layouts.

Results bucket (written by Jetstream, optionally under a prefix such as ``preview/``)::

    statistics/statistics_<file-slug>_<period>.json
    metadata/metadata_<file-slug>.json
    errors/errors_<file-slug>.json

Jetstream first writes ``…-<8 lowercase letters>.ndjson`` and ``…-<8 lowercase letters>.json``
temp objects, then copies them to the final name and deletes the temps: those are junk.

Site bucket (written by partybal)::

    [<prefix>]<file-slug>.html                     the report page
    [<prefix>]<file-slug>_files/<render-id>/…       its assets, one folder per render
    [<prefix>]index.html                           table of contents

State bucket (written by partybal)::

    [<prefix>]pending/<file-slug>                  coalescing marker: a render is requested
    [<prefix>]status/<file-slug>.json              outcome of the last render
    [<prefix>]running/<file-slug>                  a render job is on it (its execution's name)
    backfill/<run-id>.json                         slug list of one ``partybal backfill`` run
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

PERIODS: tuple[str, ...] = (
    "overall",
    "weekly",
    "daily",
    "days28",
    "preenrollment_weekly",
    "preenrollment_days28",
)
# Longest first, so "preenrollment_weekly" is not read as slug "..._preenrollment" + "weekly".
_PERIODS_BY_LENGTH = sorted(PERIODS, key=len, reverse=True)

PERIOD_LABELS: dict[str, str] = {
    "overall": "Overall",
    "weekly": "Weekly",
    "daily": "Daily",
    "days28": "28-day",
    "preenrollment_weekly": "Pre-enrollment weekly",
    "preenrollment_days28": "Pre-enrollment 28-day",
}
# One-letter codes for compact listings such as "O W3 D21".
PERIOD_CODES: dict[str, str] = {
    "overall": "O",
    "weekly": "W",
    "daily": "D",
    "days28": "M",
    "preenrollment_weekly": "PW",
    "preenrollment_days28": "PM",
}

PREVIEW_PREFIX = "preview/"

_FILE_SLUG_RE = re.compile(r"^[A-Za-z0-9_]+\Z")
_TEMP_RE = re.compile(r"-[a-z]{8}\.(nd)?json$")
_NAME_RE = re.compile(
    r"^(?P<prefix>(?:[A-Za-z0-9_.\-]+/)*?)"
    r"(?P<kind>statistics|metadata|errors)/(?P=kind)_(?P<rest>[A-Za-z0-9_]+)\.json\Z"
)
MAX_FILE_SLUG_LENGTH = 200


class Kind(str, Enum):
    STATISTICS = "statistics"
    METADATA = "metadata"
    ERRORS = "errors"


def file_slug(slug: str) -> str:
    """The experiment slug in file form: every char outside [A-Za-z0-9_] becomes '_'.

    Idempotent, so a slug already in file form is returned unchanged."""
    return re.sub(r"[^A-Za-z0-9_]", "_", slug)


def is_file_slug(value: str) -> bool:
    return bool(_FILE_SLUG_RE.match(value)) and len(value) <= MAX_FILE_SLUG_LENGTH


@dataclass(frozen=True)
class ResultBlob:
    """A final Jetstream results object, understood."""

    name: str
    kind: Kind
    file_slug: str
    period: str | None  # only for statistics
    prefix: str = ""  # "" or e.g. "preview/"

    @property
    def is_preview(self) -> bool:
        return self.prefix == PREVIEW_PREFIX


class Ignored(Exception):
    """Raised by :func:`parse_results_name` with the reason a blob is not a result."""


def is_temp_name(name: str) -> bool:
    """Jetstream's temp export objects: ``…-abcdefgh.ndjson`` / ``…-abcdefgh.json``."""
    return bool(_TEMP_RE.search(name))


def parse_results_name(name: str, allowed_prefixes: tuple[str, ...] = ("", PREVIEW_PREFIX)) -> ResultBlob:
    """Classify a results-bucket object name, or raise :class:`Ignored` saying why."""
    if name.endswith(".ndjson") or is_temp_name(name):
        raise Ignored("temporary export object")
    m = _NAME_RE.match(name)
    if not m:
        raise Ignored("not a statistics/metadata/errors results object")
    prefix, kind, rest = m.group("prefix"), Kind(m.group("kind")), m.group("rest")
    if prefix not in allowed_prefixes:
        raise Ignored(f"prefix {prefix!r} is not watched")
    if kind is Kind.STATISTICS:
        for period in _PERIODS_BY_LENGTH:
            suffix = "_" + period
            if rest.endswith(suffix) and len(rest) > len(suffix):
                slug = rest[: -len(suffix)]
                break
        else:
            raise Ignored("unknown period suffix")
    else:
        slug, period = rest, None
    if len(slug) > MAX_FILE_SLUG_LENGTH:
        raise Ignored("slug longer than %d characters" % MAX_FILE_SLUG_LENGTH)
    return ResultBlob(name=name, kind=kind, file_slug=slug, period=period, prefix=prefix)


def results_name(kind: Kind, fslug: str, period: str | None = None, prefix: str = "") -> str:
    if kind is Kind.STATISTICS:
        if period not in PERIODS:
            raise ValueError(f"unknown period {period!r}")
        return f"{prefix}statistics/statistics_{fslug}_{period}.json"
    return f"{prefix}{kind.value}/{kind.value}_{fslug}.json"


def results_names_for(fslug: str, prefix: str = "") -> list[str]:
    """Every final results object name one experiment can have."""
    names = [results_name(Kind.STATISTICS, fslug, p, prefix) for p in PERIODS]
    names.append(results_name(Kind.METADATA, fslug, prefix=prefix))
    names.append(results_name(Kind.ERRORS, fslug, prefix=prefix))
    return names


def results_listing_prefixes(prefix: str = "") -> list[str]:
    """The folders to list to see every results object under ``prefix`` (and nothing else)."""
    return [f"{prefix}{kind.value}/{kind.value}_" for kind in Kind]


# --- site bucket -------------------------------------------------------------------------------


def page_name(fslug: str, prefix: str = "") -> str:
    return f"{prefix}{fslug}.html"


def assets_root(fslug: str, prefix: str = "") -> str:
    """Folder (no trailing slash) holding one sub-folder of assets per render."""
    return f"{prefix}{fslug}_files"


def assets_dir(fslug: str, render_id: str, prefix: str = "") -> str:
    return f"{assets_root(fslug, prefix)}/{render_id}"


def index_name(prefix: str = "") -> str:
    return f"{prefix}index.html"


# --- state bucket ------------------------------------------------------------------------------


def pending_name(fslug: str, prefix: str = "") -> str:
    return f"{prefix}pending/{fslug}"


def status_name(fslug: str, prefix: str = "") -> str:
    return f"{prefix}status/{fslug}.json"


def running_name(fslug: str, prefix: str = "") -> str:
    return f"{prefix}running/{fslug}"


def backfill_list_name(run_id: str) -> str:
    """The slug list one backfill execution's tasks share (``{"prefix": …, "slugs": [...]}``)."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", run_id):
        raise ValueError(f"bad backfill run id {run_id!r}")
    return f"backfill/{run_id}.json"


def state_listing_prefixes(prefix: str = "") -> list[str]:
    """The folders of the state bucket holding markers and status records under ``prefix``."""
    return [f"{prefix}pending/", f"{prefix}status/"]


@dataclass(frozen=True)
class StateBlob:
    name: str
    what: str  # "pending" | "status" | "running"
    file_slug: str
    prefix: str


_STATE_RE = re.compile(
    r"^(?P<prefix>(?:preview/)?)(?:(?P<p>pending|running)/(?P<ps>[A-Za-z0-9_]+)|(?P<s>status)/(?P<ss>[A-Za-z0-9_]+)\.json)\Z"
)


def parse_state_name(name: str) -> StateBlob | None:
    m = _STATE_RE.match(name)
    if not m:
        return None
    if m.group("p"):
        return StateBlob(name, m.group("p"), m.group("ps"), m.group("prefix"))
    return StateBlob(name, "status", m.group("ss"), m.group("prefix"))

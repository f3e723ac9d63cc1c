"""The one module that knows the bucket layouts.

Results bucket (written by Jetstream, optionally under a prefix such as ``preview/``)::

    statistics/statistics_<file-slug>_<period>.json
    metadata/metadata_<file-slug>.json
    errors/errors_<file-slug>.json

Jetstream first writes ``…-<8 lowercase letters>.ndjson`` and ``…-<8 lowercase letters>.json``
temp objects, then copies them to the final name and deletes the temps: those are junk.

Site bucket (written by partybal)::

    [<prefix>]<file-slug>.html                     the report page
    [<prefix>]<file-slug>_files/<render-id>/…       its assets, one folder per render:
        …/manifest.json                            what the render read and ran with
        …/exports/<figure|table>-<n>.csv          the numbers of each table and figure
        …/figures.json                             the figure hashes its page shows
    [<prefix>]<file-slug>_files/figures/<sha256>.png  figures by content, shared by its renders
    [<prefix>]index.html                           table of contents
    [<prefix>]history/<file-slug>/<render-id>.json summary of what one render showed (kept
                                                   ``history_retention_days``; never overwritten)
    [<prefix>]feed.xml                             Atom feed of every experiment's changes
    [<prefix>]feeds/<file-slug>.xml                Atom feed of one experiment's changes

State bucket (written by partybal)::

    [<prefix>]pending/<file-slug>                  coalescing marker: a render is requested
    [<prefix>]status/<file-slug>.json              outcome of the last render
    [<prefix>]running/<file-slug>                  a render job is on it (its execution's name)
    backfill/<run-id>.json                         slug list of one ``partybal backfill`` run
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from enum import Enum

from .errors import Rejected

PERIODS: tuple[str, ...] = (
    "overall",
    "weekly",
    "daily",
    "days28",
    "preenrollment_weekly",
    "preenrollment_days28",
)
# Longest first: parse_results_name reads a name alone as "<slug>" + "preenrollment_weekly"; a name
# that also reads as "<slug>_preenrollment" + "weekly" is ambiguous, and a listing decides
# (:func:`resolve_listing`).
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
ALLOWED_PREFIXES: tuple[str, ...] = ("", PREVIEW_PREFIX)  # the only prefixes partybal reads, renders and lists
PREVIEW_EXPIRY_DAYS = 7  # preview pages are deleted after this (site bucket lifecycle rule; local: partybal preview)

_FILE_SLUG_RE = re.compile(r"^[A-Za-z0-9_]+\Z")
_TEMP_RE = re.compile(r"-[a-z]{8}\.(nd)?json$")
_NAME_RE = re.compile(
    r"^(?P<prefix>(?:[A-Za-z0-9_.\-]+/)*?)"
    r"(?P<kind>statistics|metadata|errors)/(?P=kind)_(?P<rest>[A-Za-z0-9_]+)\.json\Z"
)
MAX_FILE_SLUG_LENGTH = 200
# a render id (:func:`new_render_id`); 6 time digits: ids of older versions (to the second)
RENDER_ID_PATTERN = r"[0-9]{8}T[0-9]{6,12}Z-[0-9a-f]{6}"


class Kind(str, Enum):  # noqa: UP042 - a StrEnum would change str(Kind.X) ("Kind.X" today), which callers may print
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
    # other (file slug, period) readings of an ambiguous statistics name; () when unambiguous
    alternatives: tuple[tuple[str, str], ...] = ()

    @property
    def readings(self) -> tuple[tuple[str, str | None], ...]:
        return ((self.file_slug, self.period), *self.alternatives)

    @property
    def is_preview(self) -> bool:
        return self.prefix == PREVIEW_PREFIX


class Ignored(Rejected):
    """Raised by :func:`parse_results_name` with the reason a blob is not a result."""


def is_temp_name(name: str) -> bool:
    """Jetstream's temp export objects: ``…-abcdefgh.ndjson`` / ``…-abcdefgh.json``."""
    return bool(_TEMP_RE.search(name))


def parse_results_name(name: str, allowed_prefixes: tuple[str, ...] = ALLOWED_PREFIXES) -> ResultBlob:
    """Classify a results-bucket object name, or raise :class:`Ignored` saying why."""
    if name.endswith(".ndjson") or is_temp_name(name):
        raise Ignored("temporary export object")
    m = _NAME_RE.match(name)
    if not m:
        raise Ignored("not a statistics/metadata/errors results object")
    prefix, kind, rest = m.group("prefix"), Kind(m.group("kind")), m.group("rest")
    if prefix not in allowed_prefixes:
        raise Ignored(f"prefix {prefix!r} is not watched")
    alternatives: tuple[tuple[str, str], ...] = ()
    if kind is Kind.STATISTICS:
        splits = [s for s in statistics_splits(rest) if len(s[0]) <= MAX_FILE_SLUG_LENGTH]
        if not splits:
            if statistics_splits(rest):
                raise Ignored(f"slug longer than {MAX_FILE_SLUG_LENGTH} characters")
            raise Ignored("unknown period suffix")
        (slug, period), alternatives = splits[0], tuple(splits[1:])
    else:
        slug, period = rest, None
    if len(slug) > MAX_FILE_SLUG_LENGTH:
        raise Ignored(f"slug longer than {MAX_FILE_SLUG_LENGTH} characters")
    return ResultBlob(name=name, kind=kind, file_slug=slug, period=period, prefix=prefix, alternatives=alternatives)


def statistics_splits(rest: str) -> list[tuple[str, str]]:
    """Every (file slug, period) the ``<slug>_<period>`` part of a statistics name reads as,
    longest period first: ``study_preenrollment_weekly`` → ``("study", "preenrollment_weekly")``,
    ``("study_preenrollment", "weekly")``."""
    return [(rest[: -len(p) - 1], p) for p in _PERIODS_BY_LENGTH if rest.endswith("_" + p) and len(rest) > len(p) + 1]


def resolve_listing(blobs) -> tuple[list[ResultBlob], list[tuple[str, str]]]:
    """Decide ambiguous statistics names by the listing they came from.

    ``blobs``: parsed names of one listing. A name that reads two ways belongs to the reading whose
    experiment has other files in the listing (metadata, errors, or statistics names that read only
    one way). When neither or both do, the name is not attributed to anybody: it is returned as
    ignored, with the reason. Returns (blobs, ignored (name, reason))."""
    blobs = list(blobs)
    evidence = {(b.prefix, b.file_slug) for b in blobs if not b.alternatives}
    out: list[ResultBlob] = []
    ignored: list[tuple[str, str]] = []
    for b in blobs:
        if not b.alternatives:
            out.append(b)
            continue
        backed = [(s, p) for s, p in b.readings if (b.prefix, s) in evidence]
        if len(backed) == 1:
            slug, period = backed[0]
            out.append(ResultBlob(name=b.name, kind=b.kind, file_slug=slug, period=period, prefix=b.prefix))
            continue
        readings = " or ".join(f"experiment {s!r} ({p})" for s, p in b.readings)
        why = "other files of both" if backed else "no other files of either"
        ignored.append((b.name, f"ambiguous statistics name: {readings}, and the listing has {why}"))
    return out, ignored


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


def results_listing_prefix(kind: Kind, fslug: str = "", prefix: str = "") -> str:
    """The name prefix every ``kind`` results object (of experiments whose file slug starts with
    ``fslug``) has: ``statistics/statistics_<fslug>``."""
    return f"{prefix}{kind.value}/{kind.value}_{fslug}"


def results_listing_prefixes(prefix: str = "") -> list[str]:
    """The folders to list to see every results object under ``prefix`` (and nothing else)."""
    return [results_listing_prefix(kind, "", prefix) for kind in Kind]


# --- site bucket -------------------------------------------------------------------------------


def page_name(fslug: str, prefix: str = "") -> str:
    return f"{prefix}{fslug}.html"


def assets_root(fslug: str, prefix: str = "") -> str:
    """Folder (no trailing slash) holding one sub-folder of assets per render."""
    return f"{prefix}{fslug}_files"


def assets_dir(fslug: str, render_id: str, prefix: str = "") -> str:
    return f"{assets_root(fslug, prefix)}/{render_id}"


# A render's exports live in its own asset folder: a page never links a CSV of another render.
# They are its record, so they outlive its figures: when the render's folder is cleaned up, the job
# keeps them and stamps them with a custom time; the site bucket's lifecycle rule deletes them
# history_retention_days later (terraform/buckets.tf). Exports of a live page never expire.
EXPORTS_FOLDER = "exports"
RENDER_MANIFEST = "manifest.json"


def is_render_record(name: str) -> bool:
    """An object a render folder keeps after clean-up: its ``manifest.json`` or an export CSV
    (``<slug>_files/<render-id>/manifest.json``, ``…/<render-id>/exports/<kind>-<n>.csv``)."""
    parts = name.split("/")
    if len(parts) >= 3 and parts[-1] == RENDER_MANIFEST and is_render_id(parts[-2]):
        return True
    return len(parts) >= 4 and parts[-2] == EXPORTS_FOLDER and is_render_id(parts[-3]) and parts[-1].endswith(".csv")


def export_file(kind: str, number: int) -> str:
    """An export's name inside its render folder: ``exports/figure-3.csv``, ``exports/table-12.csv``."""
    if kind not in ("figure", "table") or int(number) < 1:
        raise ValueError(f"bad export {kind!r} {number!r}")
    return f"{EXPORTS_FOLDER}/{kind}-{int(number)}.csv"


def exports_dir(fslug: str, render_id: str, prefix: str = "") -> str:
    return f"{assets_dir(fslug, render_id, prefix)}/{EXPORTS_FOLDER}"


def render_manifest_name(fslug: str, render_id: str, prefix: str = "") -> str:
    """``manifest.json`` of one render: its id, inputs with generations, versions, exports."""
    return f"{assets_dir(fslug, render_id, prefix)}/{RENDER_MANIFEST}"


# Figures are stored by content (partybal/page/figures.py): ``<file-slug>_files/figures/<sha256>.png``,
# one folder per experiment, shared by its renders; a render's ``figures.json`` (in its render
# folder) lists the hashes its page shows — what figure clean-up keeps (job.figures_to_delete).
FIGURES_FOLDER = "figures"
FIGURE_LIST = "figures.json"
_FIGURE_RE = re.compile(r"^(?P<hash>[0-9a-f]{64})\.png\Z")


def figures_dir(fslug: str, prefix: str = "") -> str:
    """Folder (no trailing slash) of one experiment's figures, named by content hash."""
    return f"{assets_root(fslug, prefix)}/{FIGURES_FOLDER}"


def figure_file(digest: str) -> str:
    """A figure's name inside :func:`figures_dir`: ``<sha256 hex>.png``."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"bad figure hash {digest!r}")
    return f"{digest}.png"


def figure_name(fslug: str, digest: str, prefix: str = "") -> str:
    """``[<prefix>]<file-slug>_files/figures/<sha256>.png``; without prefix, also the page's link."""
    return f"{figures_dir(fslug, prefix)}/{figure_file(digest)}"


def figure_hash_of(file_name: str) -> str | None:
    """The hash of a figure file name (``<sha256>.png``, no folder), or None if it is not one."""
    m = _FIGURE_RE.match(file_name)
    return m.group("hash") if m else None


def figure_list_name(fslug: str, render_id: str, prefix: str = "") -> str:
    """``figures.json`` of one render: ``{"figures": [hashes its page shows]}``."""
    return f"{assets_dir(fslug, render_id, prefix)}/{FIGURE_LIST}"


def index_name(prefix: str = "") -> str:
    return f"{prefix}index.html"


HISTORY_FOLDER = "history/"  # the site bucket's lifecycle rule keeps what is under it history_retention_days
_HISTORY_RE = re.compile(
    r"^(?P<prefix>(?:preview/)?)history/(?P<slug>[A-Za-z0-9_]+)/(?P<rid>" + RENDER_ID_PATTERN + r")\.json\Z"
)


def history_dir(fslug: str, prefix: str = "") -> str:
    """Folder (trailing slash) of one experiment's render summaries: list it, never download it all."""
    return f"{prefix}{HISTORY_FOLDER}{fslug}/"


def history_name(fslug: str, render_id: str, prefix: str = "") -> str:
    """The summary of what render ``render_id`` showed (partybal/pipeline/history.py)."""
    return f"{history_dir(fslug, prefix)}{render_id}.json"


def parse_history_name(name: str) -> tuple[str, str, str] | None:
    """(prefix, file slug, render id) of a history object name, or None."""
    m = _HISTORY_RE.match(name)
    return (m.group("prefix"), m.group("slug"), m.group("rid")) if m else None


def feed_name(prefix: str = "") -> str:
    """The Atom feed of every experiment's changes (partybal/pipeline/feed.py)."""
    return f"{prefix}feed.xml"


def experiment_feed_name(fslug: str, prefix: str = "") -> str:
    """The Atom feed of one experiment's changes."""
    return f"{prefix}feeds/{fslug}.xml"


# --- state bucket ------------------------------------------------------------------------------


PENDING, STATUS, RUNNING = "pending", "status", "running"  # the state bucket's folders (StateBlob.what)


def state_folder(what: str, prefix: str = "") -> str:
    """``[prefix]pending/``, ``[prefix]status/`` or ``[prefix]running/``: the folder to list."""
    if what not in (PENDING, STATUS, RUNNING):
        raise ValueError(f"no state folder {what!r}")
    return f"{prefix}{what}/"


def pending_name(fslug: str, prefix: str = "") -> str:
    return f"{state_folder(PENDING, prefix)}{fslug}"


def status_name(fslug: str, prefix: str = "") -> str:
    return f"{state_folder(STATUS, prefix)}{fslug}.json"


def running_name(fslug: str, prefix: str = "") -> str:
    return f"{state_folder(RUNNING, prefix)}{fslug}"


def backfill_list_name(run_id: str) -> str:
    """The slug list one backfill execution's tasks share (``{"prefix": …, "slugs": [...]}``)."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", run_id):
        raise ValueError(f"bad backfill run id {run_id!r}")
    return f"backfill/{run_id}.json"


def experimenter_snapshot_name() -> str:
    """The state bucket's snapshot of Experimenter's experiment list (one object, all prefixes)."""
    return "experimenter/experiments-v6.json"


def experimenter_toc_name() -> str:
    """The TOC's compact copy of the snapshot: only the fields the TOC shows (written first)."""
    return "experimenter/toc-v1.json"


def state_listing_prefixes(prefix: str = "") -> list[str]:
    """The folders of the state bucket holding markers and status records under ``prefix``."""
    return [state_folder(PENDING, prefix), state_folder(STATUS, prefix)]


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


# --- render ids --------------------------------------------------------------------------------

_RENDER_ID_RE = re.compile(RENDER_ID_PATTERN + r"\Z")


def new_render_id(now: dt.datetime | None = None) -> str:
    """``20240501T120000000999Z-a1b2c3``: the id of one render (its asset folder, its status
    record's ``run_id``) or of one backfill run. Drawn when the work starts, to the microsecond:
    ids sort in start order (text order), so a later render's id sorts after an earlier one's —
    the page, the status record and the clean-up of old figures go by that order."""
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def is_render_id(name: str) -> bool:
    """A folder name :func:`new_render_id` made (a render's asset folder)."""
    return bool(_RENDER_ID_RE.match(name))


# --- gs:// URLs --------------------------------------------------------------------------------


def gs_url(bucket: str, name: str = "") -> str:
    """``gs://bucket/name`` (``gs://bucket/`` for the whole bucket)."""
    return f"gs://{bucket}/{name}"


def is_gs_url(value: str) -> bool:
    return value.startswith("gs://")


def parse_gs_url(url: str) -> tuple[str, str]:
    """(bucket, object name or prefix — "" for none) of ``gs://bucket[/name]``; ValueError when
    it is not a ``gs://`` URL or names no bucket."""
    if not is_gs_url(url):
        raise ValueError(f"{url[:200]!r} is not a gs:// URL")
    bucket, _, name = url[len("gs://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url[:200]!r} (expected gs://bucket[/prefix])")
    return bucket, name

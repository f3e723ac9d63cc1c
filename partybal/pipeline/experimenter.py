"""Experiment context from Experimenter: names, dates, branches and ratios.

Source: Experimenter's public API, ``GET {EXPERIMENTER_URL}/api/v6/experiments/`` — every
published experiment as the NimbusExperiment records clients receive. Each entry is validated
with ``mozilla_nimbus_schemas`` (``DesktopAllVersionsNimbusExperiment`` for Firefox desktop,
``SdkNimbusExperiment`` for the SDK apps); an entry that does not validate is skipped and logged.
Entries are matched to results by the file slug Jetstream names its files with
(:func:`partybal.layout.file_slug`).

Nothing here may fail a render: :func:`load` returns a :class:`Catalog` that is empty, with a
note saying why, when Experimenter is off, unreachable or answers nonsense.

A *snapshot* is the validated list as one JSON object (``{"source", "fetched_at", "experiments":
[...]}``); on GCP a scheduled function keeps one in the state bucket and the job reads it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pydantic
from mozilla_nimbus_schemas.experimenter_apis.experiments import DesktopAllVersionsNimbusExperiment, SdkNimbusExperiment

from .. import layout, logs
from ..errors import ConfigError
from ..settings import env

log = logging.getLogger(__name__)

DEFAULT_URL = "https://experimenter.services.mozilla.com"
ENV = "EXPERIMENTER_URL"
OFF = "off"
API_PATH = "/api/v6/experiments/"
TIMEOUT_SECONDS = 30
MAX_BYTES = 200 * 1024 * 1024  # the whole list is a few tens of MB today
DESKTOP_APPS = ("firefox_desktop",)
APP_LABELS = {
    "firefox_desktop": "Firefox desktop",
    "fenix": "Firefox for Android",
    "firefox_ios": "Firefox for iOS",
    "focus_android": "Focus for Android",
    "focus_ios": "Focus for iOS",
    "klar_android": "Klar for Android",
    "klar_ios": "Klar for iOS",
    "monitor_cirrus": "Mozilla Monitor",
}


def app_label(app_name: str) -> str:
    """``Firefox desktop`` for ``firefox_desktop``; an unknown application as Experimenter names it."""
    return APP_LABELS.get(app_name, app_name)


@dataclass(frozen=True)
class Branch:
    slug: str
    ratio: int


@dataclass(frozen=True)
class ExperimentInfo:
    """What partybal shows of one Experimenter entry."""

    slug: str
    name: str
    description: str
    app_name: str
    channel: str
    is_rollout: bool
    start_date: dt.date | None
    enrollment_end_date: dt.date | None
    end_date: dt.date | None
    proposed_enrollment: int | None
    proposed_duration: int | None
    reference_branch: str | None
    branches: tuple[Branch, ...]
    is_enrollment_paused: bool = False

    @property
    def ratios(self) -> dict[str, int]:
        return {b.slug: b.ratio for b in self.branches}

    def status(self, today: dt.date) -> str:
        """``live`` (enrolling), ``observing`` (enrollment over, still running) or ``complete``;
        ``scheduled`` before its start, ``unknown`` without a start date."""
        if self.end_date and self.end_date <= today:
            return "complete"
        if not self.start_date:
            return "unknown"
        if self.start_date > today:
            return "scheduled"
        if self.is_enrollment_paused or (self.enrollment_end_date and self.enrollment_end_date <= today):
            return "observing"
        return "live"


@dataclass
class Catalog:
    """Experimenter entries by file slug, and what the page should say when one is missing."""

    experiments: dict[str, ExperimentInfo] = field(default_factory=dict)
    note: str = ""  # why there are none ("Experimenter lookup is off", "... unreachable ...")
    source: str = ""  # the URL or snapshot read
    skipped: int = 0  # entries that did not validate
    base_url: str = ""  # where links to experiments point
    entries: list[dict] = field(default_factory=list, repr=False)  # the valid entries as read (for snapshots)

    def get(self, slug: str) -> ExperimentInfo | None:
        return self.experiments.get(layout.file_slug(slug))

    def link(self, slug: str) -> str:
        return f"{self.base_url.rstrip('/')}/nimbus/{urllib.parse.quote(slug)}/summary" if self.base_url else ""

    def missing_note(self, slug: str) -> str:
        """What the page says when ``slug`` has no entry."""
        if self.note:
            return self.note
        return (
            f"Experimenter ({self.source}) lists no published experiment with this slug: "
            "what follows comes from the results alone."
        )


# --- validating entries ------------------------------------------------------------------------------


def validate_entry(entry: Any) -> ExperimentInfo:
    """One API entry as :class:`ExperimentInfo`; raises ValueError (pydantic's) when it does not
    validate with the model for its application."""
    if not isinstance(entry, dict):
        raise ValueError(f"not an object ({type(entry).__name__})")
    model = DesktopAllVersionsNimbusExperiment if entry.get("appName") in DESKTOP_APPS else SdkNimbusExperiment
    exp = model.model_validate(entry)
    return ExperimentInfo(
        slug=exp.slug,
        name=exp.userFacingName,
        description=exp.userFacingDescription,
        app_name=exp.appName,
        channel=exp.channel,
        is_rollout=bool(exp.isRollout),
        start_date=exp.startDate,
        enrollment_end_date=exp.enrollmentEndDate,
        end_date=exp.endDate,
        proposed_enrollment=exp.proposedEnrollment,
        proposed_duration=exp.proposedDuration,
        reference_branch=exp.referenceBranch,
        branches=tuple(Branch(b.slug, b.ratio) for b in exp.branches),
        is_enrollment_paused=bool(exp.isEnrollmentPaused),
    )


def parse_entries(entries: Iterable[Any], source: str) -> tuple[list[dict], dict[str, ExperimentInfo], int]:
    """(valid raw entries, infos by file slug, how many were skipped); every skip is logged."""
    valid: list[dict] = []
    infos: dict[str, ExperimentInfo] = {}
    skipped = 0
    for i, entry in enumerate(entries):
        try:
            info = validate_entry(entry)
        except (pydantic.ValidationError, ValueError) as exc:
            skipped += 1
            slug = entry.get("slug") if isinstance(entry, dict) else None
            what = exc.errors(include_url=False)[0] if isinstance(exc, pydantic.ValidationError) else {"msg": str(exc)}
            where = ".".join(str(p) for p in what.get("loc", ()))
            logs.log(
                log,
                logging.WARNING,
                f"Experimenter entry skipped: {(where + ': ') if where else ''}{what.get('msg', 'invalid')}"[:300],
                slug=str(slug)[:200] if slug else None,
                entry=i,
                source=source,
            )
            continue
        valid.append(entry)
        infos[layout.file_slug(info.slug)] = info
    return valid, infos, skipped


# --- reading the API and snapshots ---------------------------------------------------------------------


def check_url(value: str) -> str:
    """``off`` or an http(s) URL (the Experimenter host, without the API path); else ConfigError."""
    value = value.strip()
    if value.lower() == OFF:
        return OFF
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{ENV} / --experimenter: expected an http(s) URL or 'off', got {value[:100]!r}")
    return value.rstrip("/")


def configured(value: str | None = None, environ=None) -> str:
    """The Experimenter to use: ``value`` (the CLI's --experimenter), else $EXPERIMENTER_URL,
    else Experimenter's public host."""
    environ = os.environ if environ is None else environ
    return check_url(value if value is not None else environ.get(ENV) or DEFAULT_URL)


def fetch_raw(base_url: str, timeout: float = TIMEOUT_SECONDS) -> bytes:
    """The API's answer, as bytes; raises OSError (URLError, HTTPError, timeout) or ValueError."""
    url = base_url.rstrip("/") + API_PATH
    req = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "partybal"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only (check_url)
        data = resp.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"answer larger than {MAX_BYTES} bytes")
    return data


def catalog_from_list(data: bytes, source: str, base_url: str) -> Catalog:
    """A catalog from the API's JSON list; a non-list answer is an empty catalog with a note."""
    try:
        entries = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return Catalog(
            note=f"Experimenter's answer ({source}) is not JSON ({str(exc)[:80]}): no experiment details.",
            source=source,
        )
    if not isinstance(entries, list):
        return Catalog(note=f"Experimenter's answer ({source}) is not a list: no experiment details.", source=source)
    valid, infos, skipped = parse_entries(entries, source)
    return Catalog(infos, "", source, skipped, base_url, valid)


def load(value: str) -> Catalog:
    """The catalog for a checked ``--experimenter`` value (:func:`configured`); never raises."""
    if value == OFF:
        return Catalog(
            note="Experimenter lookup is off (--experimenter off): what follows comes from the results alone.",
            source=OFF,
        )
    url = value.rstrip("/") + API_PATH
    try:
        data = fetch_raw(value)
    except (OSError, ValueError) as exc:
        why = " ".join(str(getattr(exc, "reason", None) or exc).split())[:200]
        logs.log(log, logging.WARNING, f"Experimenter unreachable: {why}", slug=None, url=url)
        return Catalog(
            note=f"Experimenter ({url}) could not be read ({why}): what follows comes from the results alone.",
            source=url,
        )
    catalog = catalog_from_list(data, url, value)
    logs.log(
        log,
        logging.INFO,
        "Experimenter list read",
        slug=None,
        url=url,
        experiments=len(catalog.experiments),
        skipped=catalog.skipped,
    )
    return catalog


def snapshot_bytes(valid_entries: list[dict], source: str, fetched_at: dt.datetime) -> bytes:
    """The snapshot object: the validated entries as the API gave them, sorted by slug (so an
    unchanged list gives the same ``experiments``)."""
    doc = {
        "source": source,
        "fetched_at": fetched_at.astimezone(dt.UTC).isoformat(),
        "experiments": sorted(valid_entries, key=lambda e: str(e.get("slug"))),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def catalog_from_snapshot(data: bytes | None, name: str) -> Catalog:
    """A catalog from a snapshot object (None: there is none yet); never raises."""
    if data is None:
        return Catalog(note="No Experimenter snapshot yet: what follows comes from the results alone.", source=name)
    try:
        doc = json.loads(data)
        if isinstance(doc.get("note"), str):  # a local snapshot of "off" or "unreachable" (file_for_workers)
            return Catalog(note=doc["note"], source=str(doc.get("source", name)))
        entries = doc["experiments"]
        base = doc.get("source", "")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        return Catalog(
            note=f"The Experimenter snapshot ({name}) is unreadable: what follows comes from the results alone.",
            source=name,
        )
    if not isinstance(entries, list):
        return Catalog(
            note=f"The Experimenter snapshot ({name}) is unreadable: what follows comes from the results alone.",
            source=name,
        )
    _, infos, skipped = parse_entries(entries, name)
    base_url = base[: -len(API_PATH)] if isinstance(base, str) and base.endswith(API_PATH) else ""
    return Catalog(infos, "", name, skipped, base_url)


def snapshot_experiments(data: bytes | None) -> Any:
    """The ``experiments`` of a snapshot object, to tell whether a new one differs (None: none)."""
    if data is None:
        return None
    try:
        return json.loads(data).get("experiments")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None


# --- handing one reading to worker processes (backfill) ------------------------------------------------

SNAPSHOT_ENV = "PARTYBAL_EXPERIMENTER_SNAPSHOT"


def write_for_workers(catalog: Catalog, path) -> None:
    """Write ``catalog`` as a snapshot file, so worker processes read Experimenter once between them."""
    if catalog.note:
        data = json.dumps({"note": catalog.note, "source": catalog.source}).encode()
    else:
        data = snapshot_bytes(catalog.entries, catalog.source, dt.datetime.now(dt.UTC))
    with open(path, "wb") as fh:
        fh.write(data)


_worker_catalogs: dict[str, Catalog] = {}


def for_worker(environ=None) -> Catalog | None:
    """The catalog a backfill worker was handed (``$PARTYBAL_EXPERIMENTER_SNAPSHOT``), read once per process."""
    path = (os.environ if environ is None else environ).get(SNAPSHOT_ENV)
    if not path:
        return None
    if path not in _worker_catalogs:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            data = b""
        _worker_catalogs[path] = catalog_from_snapshot(data, path)
    return _worker_catalogs[path]


# --- the state bucket's snapshot (the scheduled ``snapshot_experimenter`` function) ---------------------


def refresh_snapshot(state_bucket, base_url: str, now: dt.datetime | None = None) -> str:
    """Read Experimenter and write the snapshot object when its valid entries changed.

    Returns ``"written"``, ``"unchanged"`` or ``"kept"`` (an answer with entries of which none
    validate never replaces a good snapshot: a schema change on their side, not an empty list).
    Raises OSError / ValueError when Experimenter cannot be read (the function logs it; the next
    tick tries again)."""
    from google.api_core import exceptions as gexc

    url = base_url.rstrip("/") + API_PATH
    entries = json.loads(fetch_raw(base_url))
    if not isinstance(entries, list):
        raise ValueError(f"{url} did not answer a JSON list")
    valid, infos, skipped = parse_entries(entries, url)
    name = layout.experimenter_snapshot_name()
    if entries and not valid:
        logs.log(log, logging.ERROR, f"no entry of {url} validates: snapshot kept", slug=None, entries=len(entries))
        return "kept"
    data = snapshot_bytes(valid, url, now or dt.datetime.now(dt.UTC))
    current = state_bucket.get_blob(name)
    generation = int(current.generation) if current is not None else 0
    compact = state_bucket.blob(layout.experimenter_toc_name())
    compact.cache_control = "no-store"
    if current is not None and snapshot_experiments(current.download_as_bytes()) == json.loads(data)["experiments"]:
        if state_bucket.get_blob(compact.name) is None:  # written by a version without the TOC's copy
            compact.upload_from_string(toc_bytes(infos.values()), content_type="application/json")
        logs.log(
            log, logging.INFO, "Experimenter snapshot unchanged", slug=None, experiments=len(valid), skipped=skipped
        )
        return "unchanged"
    # the TOC's compact copy first: the snapshot's own finalize is what rebuilds the TOC
    compact.upload_from_string(toc_bytes(infos.values()), content_type="application/json")
    blob = state_bucket.blob(name)
    blob.cache_control = "no-store"
    try:
        blob.upload_from_string(data, content_type="application/json", if_generation_match=generation)
    except gexc.PreconditionFailed:  # another tick wrote it meanwhile: theirs is as fresh
        return "unchanged"
    logs.log(
        log,
        logging.INFO,
        "Experimenter snapshot written",
        slug=None,
        experiments=len(valid),
        skipped=skipped,
        object=name,
    )
    return "written"


def handle_snapshot_event(event_type: str = "", data=None, event_id: str = "", *, environ=None, client=None) -> str:
    """``snapshot_experimenter``: a scheduler tick → :func:`refresh_snapshot` into $STATE_BUCKET
    from $EXPERIMENTER_URL (``off``: nothing). Experimenter being down is logged, not raised (the
    next tick tries again; renders keep the last snapshot)."""
    from ..storage import gcs_client

    environ = os.environ if environ is None else environ
    state_bucket = env("STATE_BUCKET", environ)
    url = configured(None, environ)
    if url == OFF:
        logs.log(log, logging.INFO, "Experimenter snapshot off (EXPERIMENTER_URL=off)", slug=None, event_id=event_id)
        return "off"
    client = client or gcs_client()
    try:
        return refresh_snapshot(client.bucket(state_bucket), url)
    except (OSError, ValueError) as exc:
        why = " ".join(str(getattr(exc, "reason", None) or exc).split())[:300]
        logs.log(
            log,
            logging.WARNING,
            f"Experimenter unreachable, snapshot kept: {why}",
            slug=None,
            url=url + API_PATH,
            event_id=event_id,
        )
        return "failed"


# --- the TOC's light reading of a snapshot ------------------------------------------------------------


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


TOC_FIELDS = (
    "slug",
    "name",
    "app_name",
    "channel",
    "is_rollout",
    "start_date",
    "enrollment_end_date",
    "end_date",
    "is_enrollment_paused",
)


def toc_bytes(infos: Iterable[ExperimentInfo]) -> bytes:
    """The TOC's compact copy: one short row per experiment (10,000 experiments: ~1.5 MB, read in
    a fraction of the time the full snapshot takes)."""
    rows = []
    for i in sorted(infos, key=lambda i: i.slug):
        row = [getattr(i, f) for f in TOC_FIELDS]
        rows.append([v.isoformat() if isinstance(v, dt.date) else v for v in row])
    return json.dumps({"fields": list(TOC_FIELDS), "experiments": rows}, separators=(",", ":")).encode()


def toc_entries(data: bytes | None) -> dict[str, ExperimentInfo]:
    """The experiments of the TOC's compact copy (:func:`toc_bytes`) by file slug: only what the
    TOC shows, each value checked for its type; {} when there is none or it is unreadable."""
    if data is None:
        return {}
    try:
        doc = json.loads(data)
        fields, rows = doc["fields"], doc["experiments"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return {}
    if fields != list(TOC_FIELDS) or not isinstance(rows, list):
        return {}
    out: dict[str, ExperimentInfo] = {}
    for row in rows:
        if not isinstance(row, list) or len(row) != len(TOC_FIELDS):
            continue
        slug, name, app, channel, rollout, start, enr_end, end, paused = row
        if not isinstance(slug, str) or not slug:
            continue
        out[layout.file_slug(slug)] = ExperimentInfo(
            slug=slug,
            name=name if isinstance(name, str) else "",
            description="",
            app_name=app if isinstance(app, str) else "",
            channel=channel if isinstance(channel, str) else "",
            is_rollout=rollout is True,
            start_date=_date(start),
            enrollment_end_date=_date(enr_end),
            end_date=_date(end),
            proposed_enrollment=None,
            proposed_duration=None,
            reference_branch=None,
            branches=(),
            is_enrollment_paused=paused is True,
        )
    return out

"""Atom feeds of what changed: ``[prefix]feed.xml`` (every experiment) and
``[prefix]feeds/<file-slug>.xml`` (one experiment), in the site bucket.

Entries: a new experiment (its first render), a render that changed something the history summary
records (new windows, significance changes, metrics that appeared or vanished, errors new or
cleared, configuration and versions), a render that failed (the status record says so) and the
render that recovered from it. Built from listings only — the history objects' custom metadata
(:func:`partybal.pipeline.history.digest`) and the status records' (the TOC's fields) — no local
state, no summary downloaded. Rebuilt with the TOC: when :func:`partybal.pipeline.toc.handle_state_event`
rebuilds the index for a status record (a render ended; pending markers change nothing here), it
rebuilds that experiment's feed and the site's; a new Experimenter snapshot rebuilds the site's.

The site's feed lists the history of the :data:`RECENT_EXPERIMENTS` experiments rendered last (one
listing each) plus every failed one, newest :data:`FEED_ENTRIES` entries first. Entry ids are tag URIs
of the site bucket, the experiment and the render id (or the failed record's generation), so an entry
keeps its id across rebuilds; ``updated`` is when that render's summary (or status record) was written.
"""

from __future__ import annotations

import datetime as dt
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from .. import layout, logs
from ..times import parse_iso
from . import history
from . import status as status_mod

log = logging.getLogger(__name__)

ATOM = "http://www.w3.org/2005/Atom"
FEED_CACHE_CONTROL = "public, max-age=60"
FEED_ENTRIES = 100  # in the site's feed
EXPERIMENT_FEED_ENTRIES = 200  # in one experiment's feed
RECENT_EXPERIMENTS = 25  # experiments whose history the site's feed lists (newest page first)
WRITE_ATTEMPTS = 5
TAG_DATE = "2026"  # the tag URIs' date: fixed, so ids never change
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    updated: dt.datetime
    kind: str  # new-experiment, changes, failed, recovered
    page: str  # the page, relative to the site root ("" for none)
    summary_json: str = ""  # the render's history summary, relative to the site root
    lines: list[str] = field(default_factory=list)


def tag_uri(site_bucket: str, prefix: str, fslug: str, what: str) -> str:
    """``tag:partybal,2026:<site bucket>/<prefix><slug>/<what>`` (RFC 4151)."""
    return f"tag:partybal,{TAG_DATE}:{site_bucket}/{prefix}{fslug}/{what}"


def _text(value: Any, limit: int = 400) -> str:
    """Names and reasons from data, one line, without characters XML 1.0 cannot carry."""
    text = " ".join(str(value).split())
    text = "".join(
        ch
        for ch in text
        if ch in "\t\n\r" or (" " <= ch <= "\ud7ff") or ("\ue000" <= ch <= "\ufffd") or ch >= "\U00010000"
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def history_entries(
    site_bucket: str, prefix: str, fslug: str, name: str, listed: list[history.PastRender], has_page: bool = True
) -> list[Entry]:
    """One entry per listed render that is news: the first render, a recovery, or a change."""
    out = []
    page = layout.page_name(fslug) if has_page else ""
    for x in listed:
        dg = x.digest
        if not dg:
            continue
        counts = dg.get("counts") if isinstance(dg.get("counts"), dict) else {}
        first, recovered = bool(dg.get("first")), str(dg.get("recovered") or "")
        if not first and not recovered and not any(counts.values()):
            continue
        lines = [_text(line, 300) for line in dg.get("lines") or [] if isinstance(line, str)]
        if first:
            kind, title = "new-experiment", f"{name}: new experiment, first render"
            windows = dg.get("windows") if isinstance(dg.get("windows"), dict) else {}
            if windows:
                lines.insert(
                    0, "Windows: " + ", ".join(f"{layout.PERIOD_LABELS.get(p, p)} {n}" for p, n in windows.items())
                )
        else:
            kind = "recovered" if recovered else "changes"
            counted = {k: v for k, v in counts.items() if isinstance(v, int)}
            title = f"{name}: {history.describe(counted, recovered=bool(recovered))}"
            if recovered:
                lines.insert(0, f"The render before failed: {_text(recovered, 300)}")
        out.append(
            Entry(
                id=tag_uri(site_bucket, prefix, fslug, x.render_id),
                title=_text(title, 300),
                updated=x.updated or history.render_time(x.render_id) or EPOCH,
                kind=kind,
                page=page,
                summary_json=history.summary_href(fslug, x.render_id),
                lines=lines,
            )
        )
    return out


def failure_entry(
    site_bucket: str, prefix: str, fslug: str, record: dict[str, Any], updated: dt.datetime | None, generation: int
) -> Entry | None:
    """The entry of a ``failed`` status record (None for any other): its id names the record's
    generation, so a later failure is a new entry and a rebuild keeps the id."""
    if not isinstance(record, dict) or record.get("state") != status_mod.FAILED:
        return None
    name = _text(record.get("name") or fslug, 200)
    reason = _text(record.get("reason") or "unknown reason", 500)
    page = layout.page_name(fslug) if record.get("page") == layout.page_name(fslug, prefix) else ""
    lines = [reason, "The page still shows the last successful render." if page else "No page has been published."]
    return Entry(
        id=tag_uri(site_bucket, prefix, fslug, f"failed-{generation}"),
        title=f"{name}: render failed",
        updated=updated or parse_iso(record.get("rendered_at")) or EPOCH,
        kind="failed",
        page=page,
        lines=lines,
    )


def atom(title: str, feed_id: str, self_href: str, page_href: str, entries: list[Entry], base: str = "") -> bytes:
    """An Atom 1.0 document (RFC 4287). ``base``: how the feed reaches the site root ("" from
    ``feed.xml``, ``../`` from ``feeds/<slug>.xml``): every link is relative to the feed."""
    ET.register_namespace("", ATOM)
    q = lambda tag: f"{{{ATOM}}}{tag}"  # noqa: E731
    root = ET.Element(q("feed"))
    ET.SubElement(root, q("title")).text = _text(title, 300)
    ET.SubElement(root, q("id")).text = feed_id
    newest = max((e.updated for e in entries), default=EPOCH)
    ET.SubElement(root, q("updated")).text = _iso(newest)
    ET.SubElement(ET.SubElement(root, q("author")), q("name")).text = "partybal"
    ET.SubElement(root, q("generator")).text = "partybal"
    ET.SubElement(root, q("link"), rel="self", href=self_href, type="application/atom+xml")
    ET.SubElement(root, q("link"), rel="alternate", href=page_href, type="text/html")
    for e in entries:
        el = ET.SubElement(root, q("entry"))
        ET.SubElement(el, q("id")).text = e.id
        ET.SubElement(el, q("title")).text = e.title
        ET.SubElement(el, q("updated")).text = _iso(e.updated)
        ET.SubElement(el, q("category"), term=e.kind)
        if e.page:
            ET.SubElement(el, q("link"), rel="alternate", href=base + e.page, type="text/html")
        if e.summary_json:
            ET.SubElement(
                el,
                q("link"),
                rel="related",
                href=base + e.summary_json,
                type="application/json",
                title="summary of this render",
            )
        ET.SubElement(el, q("content"), type="text").text = "\n".join(e.lines) or e.title
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _iso(t: dt.datetime) -> str:
    t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def newest(entries: list[Entry], n: int) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.updated, e.id), reverse=True)[:n]


# --- the buckets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusListed:
    file_slug: str
    record: dict[str, Any]  # the TOC's fields (status.TOC_FIELDS) from the listing's metadata
    updated: dt.datetime | None
    generation: int


def list_statuses(client, state_bucket: str, prefix: str) -> dict[str, StatusListed]:
    """The status records under ``prefix``: one listing, their custom metadata (nothing downloaded;
    a record without it counts as an experiment without news)."""
    out = {}
    bucket = client.bucket(state_bucket)
    for b in client.list_blobs(
        bucket, prefix=f"{prefix}status/", fields="items(name,generation,updated,metadata),nextPageToken"
    ):
        sb = layout.parse_state_name(b.name)
        if sb is None or sb.prefix != prefix or sb.what != "status":
            continue
        out[sb.file_slug] = StatusListed(
            sb.file_slug, status_mod.from_toc_metadata(b.metadata) or {}, b.updated, int(b.generation)
        )
    return out


def experiment_feed(client, site_bucket: str, prefix: str, fslug: str, st: StatusListed | None) -> bytes:
    site = client.bucket(site_bucket)
    record = st.record if st else {}
    name = _text(record.get("name") or fslug, 200)
    has_page = record.get("page") == layout.page_name(fslug, prefix)
    entries = history_entries(
        site_bucket, prefix, fslug, name, history.list_history(site, fslug, prefix), has_page or not record
    )
    fail = failure_entry(site_bucket, prefix, fslug, record, st.updated, st.generation) if st else None
    if fail:
        entries.append(fail)
    return atom(
        f"{name}: experiment results changes",
        tag_uri(site_bucket, prefix, fslug, "feed"),
        layout.experiment_feed_name(fslug).split("/", 1)[1],
        "../" + layout.page_name(fslug),
        newest(entries, EXPERIMENT_FEED_ENTRIES),
        base="../",
    )


def site_feed(client, site_bucket: str, prefix: str, statuses: dict[str, StatusListed]) -> bytes:
    site = client.bucket(site_bucket)
    recent = sorted(
        statuses.values(), key=lambda s: (str(s.record.get("page_rendered_at") or ""), s.file_slug), reverse=True
    )
    entries: list[Entry] = []
    for st in recent[:RECENT_EXPERIMENTS]:
        if not st.record.get("page_rendered_at"):
            continue
        name = _text(st.record.get("name") or st.file_slug, 200)
        entries.extend(
            history_entries(site_bucket, prefix, st.file_slug, name, history.list_history(site, st.file_slug, prefix))
        )
    for st in statuses.values():
        fail = failure_entry(site_bucket, prefix, st.file_slug, st.record, st.updated, st.generation)
        if fail:
            entries.append(fail)
    title = "Experiment results changes" + (" — previews" if prefix == layout.PREVIEW_PREFIX else "")
    return atom(
        title,
        f"tag:partybal,{TAG_DATE}:{site_bucket}/{prefix}feed",
        layout.feed_name(),
        layout.index_name(),
        newest(entries, FEED_ENTRIES),
    )


def _base_generation(blob) -> int:
    try:
        return int((blob.metadata or {}).get("base_generation", -1))
    except (TypeError, ValueError):
        return -1


def _write(site_bucket, name: str, make) -> bool:
    """Write ``make()`` at ``name``, conditional on the generation read before it was made (kept
    as ``base_generation``), as ``toc.publish_index`` writes the index. Losing to a rebuild that
    read the feed after this one first did means the winner listed at least as late: done. Losing
    otherwise makes it again; after :data:`WRITE_ATTEMPTS` losses it gives up with a log line (each
    loss was another rebuild's write; the next render's rebuild writes again) — never an exception
    that would fail, and retry, the TOC rebuild. True when this call wrote it."""
    from google.api_core import exceptions as gexc

    first_read: int | None = None
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        current = site_bucket.get_blob(name)
        generation = int(current.generation) if current is not None else 0  # read BEFORE listing
        first_read = generation if first_read is None else first_read
        body = make()
        blob = site_bucket.blob(name)
        blob.cache_control = FEED_CACHE_CONTROL
        blob.metadata = {"base_generation": str(generation)}
        try:
            blob.upload_from_string(
                body, content_type="application/atom+xml; charset=utf-8", if_generation_match=generation
            )
            return True
        except gexc.PreconditionFailed:
            winner = site_bucket.get_blob(name)
            if winner is not None and _base_generation(winner) > first_read:
                logs.log(log, logging.INFO, "feed already rebuilt by a later listing", slug=None, feed=name)
                return False
            logs.log(log, logging.INFO, "feed changed while rebuilding", slug=None, feed=name, attempt=attempt)
    logs.log(
        log,
        logging.WARNING,
        f"{name} changed {WRITE_ATTEMPTS} times while writing it; left to the next rebuild",
        slug=None,
        feed=name,
    )
    return False


def publish_feeds(
    client, site_bucket: str, state_bucket: str, prefix: str = "", slugs: tuple[str, ...] = ()
) -> list[str]:
    """Rebuild the site's feed under ``prefix`` and the feeds of ``slugs``; the names written."""
    site = client.bucket(site_bucket)
    written = []
    statuses: dict[str, StatusListed] = {}

    def make_site() -> bytes:
        statuses.clear()
        statuses.update(list_statuses(client, state_bucket, prefix))
        return site_feed(client, site_bucket, prefix, statuses)

    _write(site, layout.feed_name(prefix), make_site)
    written.append(layout.feed_name(prefix))
    for fslug in slugs:
        name = layout.experiment_feed_name(fslug, prefix)
        if not _ever_published(client, site, state_bucket, prefix, fslug):
            logs.log(log, logging.INFO, "no feed for an experiment without a page", slug=fslug, feed=name)
            continue
        _write(
            site,
            name,
            lambda f=fslug: experiment_feed(client, site_bucket, prefix, f, status_of(client, state_bucket, prefix, f)),
        )
        written.append(name)
    logs.log(log, logging.INFO, "feeds rebuilt", slug=None, prefix=prefix, feeds=written)
    return written


def _ever_published(client, site, state_bucket: str, prefix: str, fslug: str) -> bool:
    """Whether the experiment has a page or a history: a render request for a slug without results
    (a typo, a hostile name) fails and has a status record, but gets no public feed object."""
    st = status_of(client, state_bucket, prefix, fslug)
    if st is not None and st.record.get("page") == layout.page_name(fslug, prefix):
        return True
    return bool(history.list_history(site, fslug, prefix))


def status_of(client, state_bucket: str, prefix: str, fslug: str) -> StatusListed | None:
    """One experiment's status record, its metadata only (no download)."""
    b = client.bucket(state_bucket).get_blob(layout.status_name(fslug, prefix))
    if b is None:
        return None
    return StatusListed(fslug, status_mod.from_toc_metadata(b.metadata) or {}, b.updated, int(b.generation))

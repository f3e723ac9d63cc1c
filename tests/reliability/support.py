"""Helpers of the reliability suite: uploads, waiting, counting renders, reading logs and the TOC."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from partybal import layout
from partybal.local import uploader
from tests.helpers import missing_tools, wait_until  # noqa: F401  (used by the reliability tests)
from tests.support import synthetic

STALE_SECONDS = 20  # COALESCE_STALE_SECONDS of the reliability stack: the sweeper's threshold
SWEEP_INTERVAL = 3.0  # seconds between sweep messages (Cloud Scheduler's part)


def tiny_experiment(slug: str, seed: int = 1) -> dict[str, bytes]:
    """Five results objects (3 periods, metadata, errors); one metric, one statistic: fast."""
    return synthetic.experiment_files(synthetic.tiny_spec(slug, seed))


def small_experiment(slug: str, seed: int = 1) -> dict[str, bytes]:
    """Five results objects that knit in a few seconds, with figures (as tests/e2e)."""
    return synthetic.experiment_files(synthetic.small_spec(slug, seed))


def upload(stack, files: dict[str, bytes]) -> dict[str, int]:
    bucket = stack.storage().bucket(stack.results_bucket)
    return {name: uploader.upload_jetstream_style(bucket, name, data).generation for name, data in files.items()}


def current_generations(stack, fslug: str, prefix: str = "") -> dict[str, int]:
    client = stack.storage()
    out = {}
    for folder in layout.results_listing_prefixes(prefix):
        for b in client.list_blobs(client.bucket(stack.results_bucket), prefix=folder):
            try:
                blob = layout.parse_results_name(b.name, allowed_prefixes=(prefix,))
            except layout.Ignored:
                continue
            if blob.file_slug == fslug:
                out[b.name] = int(b.generation)
    return out


def executions_for(stack, fslug: str, executions: list[dict] | None = None) -> list[dict]:
    return [
        e
        for e in (executions if executions is not None else stack.executions())
        if layout.file_slug(e["slug"] or "") == fslug
    ]


def pending(stack, fslug: str) -> bool:
    return stack.storage().bucket(stack.state_bucket).get_blob(layout.pending_name(fslug)) is not None


def busy(stack) -> bool:
    if any(e["state"] in ("queued", "running") for e in stack.executions()):
        return True
    client = stack.storage()
    return any(True for _ in client.list_blobs(client.bucket(stack.state_bucket), prefix="pending/", max_results=1))


def settled(stack, fslug: str, n_executions: int = 1):
    """The status record once ``fslug`` has had ``n`` executions and nothing is pending/running."""
    exs = executions_for(stack, fslug)
    if len(exs) < n_executions or any(e["state"] in ("queued", "running") for e in exs) or pending(stack, fslug):
        return None
    return stack.status_record(fslug)


def fresh_and_ok(stack, fslug: str):
    """The status record when it is ok and built from the current generations (else None)."""
    record = settled(stack, fslug)
    if record and record.get("state") == "ok" and record.get("input_generations") == current_generations(stack, fslug):
        return record
    return None


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def index_html(stack) -> str:
    blob = stack.storage().bucket(stack.site_bucket).get_blob(layout.index_name())
    return blob.download_as_text() if blob is not None else ""


def toc_state(html: str, fslug: str) -> str | None:
    """The state the TOC shows for ``fslug`` (``ok``, ``failed``, ``pending``, ``stale``, ``new``)."""
    m = re.search(r'<tr data-name="[^"]*\b' + re.escape(fslug) + r'" data-state="([a-z]+)"', html)
    return m.group(1) if m else None


def toc_rows(html: str) -> dict[str, str]:
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r'<tr data-name="[^"]* ([A-Za-z0-9_]+)" data-state="([a-z]+)"', html)
    }


def page_figures(stack, fslug: str) -> tuple[str, list[tuple[str, int]]]:
    """(page html, [(figure src, HTTP status)]) of the live page."""
    url = stack.site_url + layout.page_name(fslug)
    code, _, body = fetch(url)
    assert code == 200, f"{url}: HTTP {code}"
    html = body.decode()
    figures = re.findall(r'src="([^"]+\.png)"', html)
    return html, [(src, fetch(stack.site_url + src)[0]) for src in figures]


def render_id_of_page(html: str, fslug: str) -> str | None:
    m = re.search(
        re.escape(fslug) + r"_files/([0-9]{8}T[0-9]{6,12}Z-[0-9a-f]{6})/", html
    )  # not figures/ (by content hash)
    return m.group(1) if m else None


def log_lines(path: Path, start: int = 0) -> list[dict]:
    """JSON log lines of a component log from byte offset ``start`` (non-JSON lines as text)."""
    if not path.exists():
        return []
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read().decode("utf-8", "replace")
    out = []
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {"text": line}
        out.append(entry if isinstance(entry, dict) else {"text": line})
    return out


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def count_messages(path: Path, message: str, slug: str | None = None, start: int = 0) -> int:
    return sum(
        1 for e in log_lines(path, start) if e.get("message") == message and (slug is None or e.get("slug") == slug)
    )


def fn_log(stack, fn: str) -> Path:
    return stack.run_dir / f"fn-{fn}.log"


def tracebacks(stack, offsets: dict[str, int] | None = None) -> dict[str, int]:
    """Per function log: lines that are (or carry) a Python traceback since ``offsets``."""
    out = {}
    for fn in ("on_results_finalized", "dispatch_render", "rebuild_toc", "sweep_pending"):
        path = fn_log(stack, fn)
        n = 0
        for e in log_lines(path, (offsets or {}).get(fn, 0)):
            if "Traceback (most recent call last)" in json.dumps(e):
                n += 1
        out[fn] = n
    return out


def log_offsets(stack) -> dict[str, int]:
    return {
        fn: log_size(fn_log(stack, fn))
        for fn in ("on_results_finalized", "dispatch_render", "rebuild_toc", "sweep_pending")
    }


def claims(stack, fslug: str, start: int = 0) -> int:
    """Render requests ``on_results_finalized`` published for ``fslug`` (marker created or taken over)."""
    path = fn_log(stack, "on_results_finalized")
    return sum(
        1
        for e in log_lines(path, start)
        if e.get("slug") == fslug
        and e.get("message") in ("render requested", "stale pending marker taken over; render requested")
    )


SWEEP_MESSAGES = ("pending marker re-requested", "unrendered results re-requested")


def sweeper_requests(
    stack, fslug: str | None = None, start: int = 0, messages: tuple[str, ...] = SWEEP_MESSAGES
) -> int:
    """Render requests the sweeper logged (both kinds, or only ``messages``)."""
    path = fn_log(stack, "sweep_pending")
    return sum(
        1 for e in log_lines(path, start) if e.get("message") in messages and (fslug is None or e.get("slug") == fslug)
    )


def site_objects(stack) -> dict[str, int]:
    client = stack.storage()
    return {b.name: int(b.generation) for b in client.list_blobs(client.bucket(stack.site_bucket))}


def wait_quiet(stack, timeout: float = 240, quiet_for: float = 2.0) -> None:
    """No execution queued or running and no pending marker, twice ``quiet_for`` apart."""

    def once():
        if busy(stack):
            return False
        time.sleep(quiet_for)
        return not busy(stack)

    wait_until(once, timeout, interval=0.5, what="a quiet stack")


def fetch_json(url: str):
    with urllib.request.urlopen(url, timeout=15) as resp:
        return json.load(resp)

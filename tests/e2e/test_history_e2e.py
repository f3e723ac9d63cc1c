"""Render history and the change feed end to end on the local stack (real R): upload, render,
upload a statistics file in which one metric flips, render — the second page shows exactly that
change, the feeds have the entry, the History section lists both renders and their summaries
download from the site, and so do the first render's exports."""

from __future__ import annotations

import hashlib
import html as htmllib
import json
import re
import urllib.parse

import feedparser
import pytest

from partybal import layout
from tests.support import history_data

from .conftest import settled, upload_files, wait_until
from .test_pipeline import fetch

pytestmark = [pytest.mark.emulators, pytest.mark.r]

SLUG = "e2e-history"
FSLUG = layout.file_slug(SLUG)
OVERALL = layout.results_name(layout.Kind.STATISTICS, FSLUG, "overall")


def changes_of(page: str) -> list[tuple[str, str]]:
    section = re.search(r'<section class="changes" id="changes".*?</section>', page, re.S)
    assert section, "no Changes section"
    return [
        (kind, htmllib.unescape(text))
        for kind, text in re.findall(r'<li class="change ([a-z-]+)">(.*?)</li>', section.group(0), re.S)
    ]


def site(stack, name: str) -> tuple[int, str, bytes]:
    return fetch(urllib.parse.urljoin(stack.site_url, name))


def test_a_flip_shows_on_the_page_in_the_feed_and_in_history(stack):
    content = history_data.files(SLUG)
    upload_files(stack, content)
    first = wait_until(lambda: settled(stack, FSLUG, 1), 120, what="the first render")
    assert first["state"] == "ok", first
    code, _, page = site(stack, layout.page_name(FSLUG))
    assert code == 200 and "Changes: first render" in page.decode()

    flipped = history_data.set_uplift(content[OVERALL], "uri_count", 0.02, 0.05, 0.08)
    upload_files(stack, {OVERALL: flipped})
    second = wait_until(
        lambda: (r := settled(stack, FSLUG, 2)) and r["render_id"] != first["render_id"] and r,
        120,
        what="the second render",
    )
    assert second["state"] == "ok", second

    code, _, body = site(stack, layout.page_name(FSLUG))
    page = body.decode()
    assert code == 200 and "Changes since" in page
    assert changes_of(page) == [
        (
            "better",
            "URI Count (uri_count), treatment vs control (enrollments, segment all, overall): became better:"
            " +5.0% [+2.0%, +8.0%] (was +0.0% [-1.0%, +1.0%])",
        )
    ]
    # History: both renders, each linking its summary, which the site serves
    history = re.search(r'<section class="history" id="history".*?</section>', page, re.S).group(0)
    hrefs = re.findall(r'<a href="([^"]+)"><code>', history)
    assert hrefs == [layout.history_name(FSLUG, second["render_id"]), layout.history_name(FSLUG, first["render_id"])]
    for href, record in zip(hrefs, (second, first), strict=True):
        code, ctype, data = site(stack, href)
        assert code == 200 and ctype.startswith("application/json"), (href, code, ctype)
        summary = json.loads(data)
        assert summary["render_id"] == record["render_id"] and summary["inputs"] == record["input_generations"]

    # the first render's exports still download (its page may still be open): its manifest and
    # every CSV the manifest lists, byte for byte what it recorded
    code, ctype, data = site(stack, layout.render_manifest_name(FSLUG, first["render_id"]))
    assert code == 200 and ctype.startswith("application/json"), (code, ctype)
    manifest = json.loads(data)
    assert manifest["render_id"] == first["render_id"] and manifest["exports"]
    read = {i["name"]: str(i["generation"]) for i in manifest["inputs"]}
    assert read[OVERALL] == str(first["input_generations"][OVERALL]) != str(second["input_generations"][OVERALL])
    folder = layout.assets_dir(FSLUG, first["render_id"])
    assert "figure" in {e["kind"] for e in manifest["exports"]}
    for export in manifest["exports"]:
        code, ctype, data = site(stack, f"{folder}/{export['file']}")
        assert code == 200 and ctype.startswith("text/csv"), (export["file"], code, ctype)
        assert hashlib.sha256(data).hexdigest() == export["sha256"], export["file"]
        assert data.count(b"\n") >= export["rows"] + 1, export["file"]

    # the feeds, rebuilt with the TOC once the status record was written
    def feed_entry():
        code, _, data = site(stack, layout.experiment_feed_name(FSLUG))
        parsed = feedparser.parse(data) if code == 200 else None
        return parsed if parsed and any(second["render_id"] in e.id for e in parsed.entries) else None

    parsed = wait_until(feed_entry, 60, what="the experiment feed's entry for the second render")
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.title for e in parsed.entries] == [
        f"{SLUG}: 1 significance change",
        f"{SLUG}: new experiment, first render",
    ]
    assert "URI Count (uri_count), treatment vs control" in parsed.entries[0].content[0].value
    code, _, data = site(stack, layout.feed_name())
    root = feedparser.parse(data)
    assert code == 200 and not root.bozo and parsed.entries[0].id in [e.id for e in root.entries]

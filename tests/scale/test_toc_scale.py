"""The TOC at scale: one listing per folder, no statistics downloads, every experiment present."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from partybal import layout
from partybal.pipeline import job, toc
from tests.pipeline.conftest import fake_gcs_argv, free_port, stop, wait_for_port
from tests.scale.scale_support import experiment_slug, seed_filesystem

pytestmark = pytest.mark.emulators

ROW_RE = re.compile(r'<tr data-name="[^"]* ([A-Za-z0-9_]+)" data-state="([a-z]+)"')


@pytest.fixture
def downloads(monkeypatch):
    """Names of every object downloaded (all download paths go through Blob._do_download)."""
    from google.cloud.storage import blob as blob_mod

    names: list[str] = []
    real = blob_mod.Blob._do_download

    def counting(self, *args, **kwargs):
        names.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(blob_mod.Blob, "_do_download", counting)
    return names


def test_rebuild_lists_once_and_never_downloads_statistics(gcs, buckets, downloads, monkeypatch):
    results, state = gcs.bucket(buckets.results), gcs.bucket(buckets.state)
    for i in range(5):
        fslug = f"exp{i}"
        gens = {}
        for period in ("overall", "weekly"):
            name = layout.results_name(layout.Kind.STATISTICS, fslug, period)
            b = results.blob(name)
            b.upload_from_string(b"[" + b"0," * 1000 + b"0]")
            gens[name] = b.generation
        record = {
            "slug": fslug,
            "file_slug": fslug,
            "state": "ok",
            "reason": "",
            "input_generations": gens,
            "page": layout.page_name(fslug),
            "windows": {"weekly": 2},
        }
        if i == 4:  # a record without TOC metadata (older job): downloaded
            state.blob(layout.status_name(fslug)).upload_from_string(json.dumps(record))
        else:
            job.write_status(state, record, "")
    state.blob(layout.pending_name("exp0")).upload_from_string(b"{}")

    listings: list[str] = []
    real_list = type(gcs).list_blobs

    def counting_list(self, bucket, *args, **kwargs):
        listings.append(kwargs.get("prefix"))
        return real_list(self, bucket, *args, **kwargs)

    monkeypatch.setattr(type(gcs), "list_blobs", counting_list)
    settings = toc.Settings(buckets.results, buckets.site, buckets.state)
    downloads.clear()
    name, _ = toc.publish_index(gcs, settings, "")

    # only the record without metadata, and the one Experimenter snapshot (names, dates) per rebuild
    assert downloads == [layout.status_name("exp4"), layout.experimenter_toc_name()]
    assert not any(n.startswith("statistics/") for n in downloads)
    assert sorted(listings) == sorted(layout.results_listing_prefixes("") + layout.state_listing_prefixes(""))
    html = gcs.bucket(buckets.site).blob(name).download_as_text()
    assert dict(ROW_RE.findall(html)) == {"exp0": "pending", "exp1": "ok", "exp2": "ok", "exp3": "ok", "exp4": "ok"}
    assert "O W2" in html


@pytest.fixture
def seeded_gcs(tmp_path):
    """A fake-gcs-server of its own whose filesystem root holds 1,000 experiments."""
    root = tmp_path / "data"
    written = seed_filesystem(root, "scale-results", "scale-state", 1000, site_bucket="scale-site", legacy_every=50)
    assert written == 1000 * 5
    port = free_port()
    proc = subprocess.Popen(
        fake_gcs_argv(port, root, {"-log-level": "error"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc, 30, "fake-gcs-server")
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        yield storage.Client(
            project="scale",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://127.0.0.1:{port}"},
        )
    finally:
        stop(proc)


def test_toc_of_1000_experiments_lists_every_one(seeded_gcs, downloads):
    settings = toc.Settings("scale-results", "scale-site", "scale-state")
    name, attempts = toc.publish_index(seeded_gcs, settings, "")
    html = seeded_gcs.bucket("scale-site").blob(name).download_as_text()
    rows = ROW_RE.findall(html)
    expected = {experiment_slug(i): ("stale" if i % 7 == 3 else "ok") for i in range(1000)}
    assert len(rows) == 1000 and dict(rows) == expected
    assert "1000 experiments" in html
    assert sum(1 for n in downloads if n.startswith("status/")) == 20  # legacy_every=50: only those
    assert not any(n.startswith(("statistics/", "metadata/")) for n in downloads)

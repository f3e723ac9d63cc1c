"""Exact exports through the render job against fake-gcs-server (issue 17.2): the job publishes every
CSV and the render's manifest.json with the page, and a reader's links keep working after a
re-render — the exports of a replaced page outlive its figures (kept, then expired by the bucket's
lifecycle rule history_retention_days after the page was replaced)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from partybal import layout
from partybal.page import exports
from partybal.pipeline import job
from tests.pipeline.pipeline_support import job_env, upload_sample

pytestmark = [pytest.mark.emulators, pytest.mark.r]
SLUG = "sample_search_defaults"


def links(html: str) -> tuple[list[str], str]:
    csvs = re.findall(r'<a class="csv" href="([^"]+)"', html)
    (manifest,) = re.findall(r'<a href="([^"]+)" id="render-manifest"', html)
    return csvs, manifest


def test_exports_of_the_replaced_page_still_download_after_a_rerender(gcs, buckets):
    upload_sample(gcs, buckets.results, SLUG)
    site, state = gcs.bucket(buckets.site), gcs.bucket(buckets.state)
    generations = {b.name: b.generation for b in gcs.list_blobs(buckets.results)}

    assert job.main(job_env(buckets, SLUG)) == 0
    first = json.loads(state.blob(layout.status_name(SLUG)).download_as_bytes())["render_id"]
    html = site.blob(layout.page_name(SLUG)).download_as_text()
    csvs, manifest_href = links(html)
    assert len(csvs) > 10 and manifest_href == layout.render_manifest_name(SLUG, first)
    downloaded = {}
    for href in csvs + [manifest_href]:
        blob = site.get_blob(href)  # the page's links are object names below the page
        assert blob is not None, href
        assert blob.content_type == ("text/csv" if href.endswith(".csv") else "application/json")
        downloaded[href] = blob.download_as_bytes()
    header = next(csv.reader(io.StringIO(downloaded[csvs[0]].decode("utf-8"))))
    assert tuple(header) == exports.COLUMNS
    manifest = json.loads(downloaded[manifest_href])
    assert manifest["render_id"] == first and manifest["page"] == layout.page_name(SLUG)
    assert {i["name"]: i["generation"] for i in manifest["inputs"]} == generations  # the inputs this render read
    assert {f"{layout.assets_dir(SLUG, first)}/{e['file']}" for e in manifest["exports"]} == set(csvs)

    assert job.main(job_env(buckets, SLUG)) == 0  # a re-render (default grace: an hour)
    second = json.loads(state.blob(layout.status_name(SLUG)).download_as_bytes())["render_id"]
    assert second != first and links(site.blob(layout.page_name(SLUG)).download_as_text())[
        1
    ] == layout.render_manifest_name(SLUG, second)
    for href, data in downloaded.items():  # a reader of the first page still gets exactly its numbers
        assert site.blob(href).download_as_bytes() == data, href

    # the grace period over (0 s) and another render: the first render's folder is cleaned up, but
    # its exports and manifest are its record: kept, stamped with a custom time from which the
    # bucket's lifecycle rule counts history_retention_days (terraform/buckets.tf)
    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 0
    first_folder = layout.assets_dir(SLUG, first) + "/"
    left = {b.name: b for b in gcs.list_blobs(buckets.site, prefix=first_folder)}
    assert set(left) == set(downloaded), sorted(set(left) ^ set(downloaded))  # only the record is left
    for href, data in downloaded.items():
        assert left[href].download_as_bytes() == data, href
        assert left[href].custom_time is not None, href
    stamped = {n: b.custom_time for n, b in left.items()}
    new_csvs, new_manifest = links(site.blob(layout.page_name(SLUG)).download_as_text())
    assert all(site.get_blob(h) is not None and site.get_blob(h).custom_time is None for h in new_csvs + [new_manifest])

    assert job.main(job_env(buckets, SLUG, ASSET_GRACE_SECONDS="0")) == 0  # a later clean-up: stamped once only
    assert {b.name: b.custom_time for b in gcs.list_blobs(buckets.site, prefix=first_folder)} == stamped


def test_only_a_render_folders_manifest_and_csvs_are_its_record():
    rid = layout.new_render_id()
    assert layout.is_render_record(layout.render_manifest_name(SLUG, rid))
    assert layout.is_render_record(layout.render_manifest_name(SLUG, rid, layout.PREVIEW_PREFIX))
    assert layout.is_render_record(f"{layout.exports_dir(SLUG, rid)}/table-3.csv")
    assert not layout.is_render_record(f"{layout.assets_dir(SLUG, rid)}/{layout.FIGURE_LIST}")
    assert not layout.is_render_record(f"{layout.assets_dir(SLUG, rid)}/fig-1.png")
    assert not layout.is_render_record(f"{layout.assets_root(SLUG)}/not-a-render/manifest.json")
    assert not layout.is_render_record(f"{layout.exports_dir(SLUG, rid)}/table-3.png")

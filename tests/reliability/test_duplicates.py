"""Case 1: every event delivered three times.

The GCS notifications of one experiment's Jetstream-style upload are captured on a tap
subscription and each is published twice more to ``gcs-notifications`` (every event: 3
deliveries); then its render request is published three times. A twin experiment with the same
content is uploaded once. Both must end with the same page and TOC state.

Bound: ``on_results_finalized`` coalesces on the pending marker, so every render is one logged
marker claim (``render requested``), and a claim is only possible when no marker exists;
``dispatch_render`` does not deduplicate, so each delivered render request is one render.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from partybal import layout
from partybal.local import stack as localstack
from tests.reliability import support

pytestmark = pytest.mark.emulators


def normalised(html: str, fslug: str, slug: str) -> str:
    html = html.replace(fslug, "SLUG").replace(slug, "SLUG")
    html = re.sub(r"\d{8}T\d{6,12}Z-[0-9a-f]{6}", "RENDER", html)
    html = re.sub(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?( ?UTC|Z|\+00:00)?", "TIME", html)
    return html


def snapshot(stack, fslug: str, slug: str) -> dict:
    record = stack.status_record(fslug)
    html, figures = support.page_figures(stack, fslug)
    return {
        "state": record["state"],
        "figures": record["figures"],
        "windows": record["windows"],
        "fresh": record["input_generations"] == support.current_generations(stack, fslug),
        "page_is_record": support.render_id_of_page(html, fslug) == record["render_id"],
        "figures_ok": [code for _, code in figures] == [200] * len(figures) and len(figures) == record["figures"],
        "toc": support.toc_state(support.index_html(stack), fslug),
        "page": normalised(html, fslug, slug),
    }


def test_every_event_three_times(rstack, evidence):
    s = rstack
    support.wait_quiet(s)
    offsets = support.log_offsets(s)
    from partybal.local.stack import _subscriber

    sub = _subscriber(s.pubsub_host)
    tap = f"projects/{s.project}/subscriptions/rel-tap-{uuid.uuid4().hex[:8]}"
    sub.create_subscription(
        request={"name": tap, "topic": s.topic_path(localstack.GCS_TOPIC), "ack_deadline_seconds": 60}
    )
    try:
        once, thrice = "rel-dup-once", "rel-dup-thrice"
        support.upload(s, support.small_experiment(once))
        support.upload(s, support.small_experiment(thrice))
        want = {"rel_dup_thrice"}
        captured = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            resp = sub.pull(request={"subscription": tap, "max_messages": 100}, timeout=10)
            if resp.received_messages:
                sub.acknowledge(request={"subscription": tap, "ack_ids": [m.ack_id for m in resp.received_messages]})
            for m in resp.received_messages:
                obj = m.message.attributes.get("objectId", "")
                if m.message.attributes.get("bucketId") == s.results_bucket and any(w in obj for w in want):
                    captured.append(m.message)
            if len(captured) >= 25:  # 5 files × (2 temps + final finalized, 2 temps deleted)
                break
        assert len(captured) >= 25, f"captured only {len(captured)} notifications"
        publisher = s.publisher()
        for msg in captured:  # two more deliveries of every event
            for _ in range(2):
                publisher.publish(s.topic_path(localstack.GCS_TOPIC), msg.data, **dict(msg.attributes)).result(
                    timeout=30
                )
    finally:
        sub.delete_subscription(request={"subscription": tap})

    for fs in ("rel_dup_once", "rel_dup_thrice"):
        support.wait_until(lambda fs=fs: support.fresh_and_ok(s, fs), 120, what=f"{fs} rendered")
    support.wait_quiet(s)
    first = {fs: len(support.executions_for(s, fs)) for fs in ("rel_dup_once", "rel_dup_thrice")}
    claims = {fs: support.claims(s, fs, offsets["on_results_finalized"]) for fs in first}
    sweeps = {fs: support.sweeper_requests(s, fs, offsets["sweep_pending"]) for fs in first}
    for fs in first:
        assert first[fs] == claims[fs] + sweeps[fs], (
            f"{fs}: {first[fs]} renders, {claims[fs]} marker claims, {sweeps[fs]} sweeper requests"
        )
    one = snapshot(s, "rel_dup_once", once)
    three = snapshot(s, "rel_dup_thrice", thrice)
    assert one == three, (
        "three deliveries changed the result: " + str({k: (one[k], three[k]) for k in one if one[k] != three[k]})[:2000]
    )
    assert one["state"] == "ok" and one["fresh"] and one["figures_ok"] and one["page_is_record"] and one["toc"] == "ok"

    # the render request, three times: one render per delivery, same page and TOC
    for _ in range(3):
        s.publish_render(thrice)
    support.wait_until(
        lambda: support.settled(s, "rel_dup_thrice", first["rel_dup_thrice"] + 3), 120, what="three re-renders"
    )
    support.wait_quiet(s)
    renders = len(support.executions_for(s, "rel_dup_thrice")) - first["rel_dup_thrice"]
    extra_sweeps = support.sweeper_requests(s, "rel_dup_thrice", offsets["sweep_pending"]) - sweeps["rel_dup_thrice"]
    assert renders == 3 + extra_sweeps, f"{renders} renders for 3 requests"
    again = snapshot(s, "rel_dup_thrice", thrice)
    assert again == one, "re-rendering changed the result"
    assert s.status_record("rel_dup_thrice")["render_id"] == support.render_id_of_page(
        support.page_figures(s, "rel_dup_thrice")[0], "rel_dup_thrice"
    )
    old = [
        b.name
        for b in s.storage().list_blobs(
            s.storage().bucket(s.site_bucket), prefix=layout.assets_root("rel_dup_thrice") + "/"
        )
        if not layout.is_render_record(b.name)  # a replaced page's exports and manifest outlive its folder
    ]
    folders = {n.split("/")[1] for n in old} - {
        layout.FIGURES_FOLDER
    }  # the live page's, and the replaced page's (for open tabs)
    assert s.status_record("rel_dup_thrice")["render_id"] in folders and len(folders) == 2, (
        f"asset folders left: {sorted(folders)}"
    )

    evidence.row(
        "1 duplicates: GCS notifications",
        f"{len(captured)} notifications of a 5-file Jetstream-style upload, each published 2 more times",
        3,
        "renders == logged marker claims (+ sweeper requests); page (normalised), figures, status and TOC equal to a twin delivered once",
        f"renders: once {first['rel_dup_once']}, thrice {first['rel_dup_thrice']}; claims {claims}; sweeper {sweeps}",
    )
    evidence.row(
        "1 duplicates: render requests",
        "the render request of one experiment",
        3,
        "one render per delivered request (dispatch does not deduplicate); same page, status, TOC; two asset folders left (live, replaced)",
        f"{renders} renders",
    )

"""Case 5: fake-gcs-server and the Pub/Sub emulator restarted mid-burst.

Objects written before a restart are all still there (filesystem backend), and every experiment
ends rendered from its newest inputs — including those whose notifications or render requests
were lost while the Pub/Sub emulator was down (it forgets topics, subscriptions and undelivered
messages): the sweeper re-requests them from their pending markers, or reconciles experiments
whose notifications never arrived.
"""

from __future__ import annotations

import time

import pytest

from partybal import layout
from tests.reliability import support

pytestmark = pytest.mark.emulators


def listing(stack) -> dict[str, int]:
    client = stack.storage()
    return {b.name: int(b.generation) for b in client.list_blobs(client.bucket(stack.results_bucket))}


@pytest.mark.parametrize("n", [pytest.param(12, id="12x5"), pytest.param(40, id="40x5", marks=pytest.mark.slow)])
def test_restart_emulators_mid_burst(rstack, evidence, n):
    s = rstack
    support.wait_quiet(s)
    offsets = support.log_offsets(s)
    tag = f"rel-restart{n}-{int(time.time()) % 100000}"
    slugs = [f"{tag}-{i:03d}" for i in range(n)]
    uploaded: dict[str, int] = {}
    third = n // 3
    for slug in slugs[:third]:
        uploaded.update(support.upload(s, support.tiny_experiment(slug, seed=3)))
    before_pubsub = listing(s)
    s.restart_pubsub(down_seconds=2)
    for slug in slugs[third : 2 * third]:
        uploaded.update(support.upload(s, support.tiny_experiment(slug, seed=3)))
    before_gcs = listing(s)
    s.restart_gcs(down_seconds=2)
    after_gcs = listing(s)
    lost = {k: v for k, v in before_gcs.items() if after_gcs.get(k) != v}
    assert not lost, f"objects lost or changed by the fake-gcs-server restart: {list(lost)[:5]}"
    for slug in slugs[2 * third :]:
        uploaded.update(support.upload(s, support.tiny_experiment(slug, seed=3)))
    s.restart_pubsub(down_seconds=1)  # and once more while renders are in flight

    fslugs = [layout.file_slug(x) for x in slugs]
    support.wait_until(
        lambda: all(support.fresh_and_ok(s, f) for f in fslugs),
        300 + 4 * n,
        interval=1.0,
        what="every experiment rendered after the restarts",
    )
    support.wait_quiet(s)
    final = listing(s)
    missing = {k for k, v in uploaded.items() if final.get(k) != v}
    assert not missing, f"uploaded objects missing at the end: {sorted(missing)[:5]}"
    assert all(final.get(k) == v for k, v in before_pubsub.items())
    rows = support.toc_rows(support.index_html(s))
    assert all(rows.get(f) == "ok" for f in fslugs), {f: rows.get(f) for f in fslugs if rows.get(f) != "ok"}
    s.check_alive()
    swept = support.sweeper_requests(s, None, offsets["sweep_pending"])
    renders = sum(len(support.executions_for(s, f)) for f in fslugs)
    failed_attempts = sum(
        1
        for f in fslugs
        for e in support.executions_for(s, f)
        for a in e["attempts"]
        if a["exit_code"] not in (0, None)
    )
    evidence.row(
        f"5 restart {n}×5",
        f"{n} experiments uploaded in thirds: Pub/Sub emulator restarted (2 s down) after the 1st, fake-gcs-server (2 s down) after the 2nd, Pub/Sub again after the 3rd",
        "3 restarts",
        "no object lost (listing before/after, generations); every experiment ok from its newest inputs; TOC lists all ok; components up",
        f"{len(uploaded)} objects kept; {renders} renders ({failed_attempts} failed attempts retried); {swept} sweeper re-requests",
    )

"""Case 8: TOC integrity.

* 10 rebuilds at once — as 10 concurrent CloudEvents to the running ``rebuild_toc`` function, and
  as 10 threads calling :func:`partybal.pipeline.toc.publish_index` on their own buckets while each adds an
  experiment — never drop an entry (the generation precondition makes a racing writer list again)
  and never take more than two listings (a writer beaten by one that listed after it began stops).
* ``rebuild_toc`` never triggers itself: while nothing changes, no rebuild is logged, although
  every index.html write is a notification it receives.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from partybal import layout
from partybal.pipeline import status, toc
from partybal.pipeline.state import group_results, list_results
from tests.reliability import support

pytestmark = pytest.mark.emulators


def post_event(url: str, bucket: str, name: str, generation: int) -> int:
    """A Cloud Storage finalize CloudEvent (binary mode), as Eventarc delivers it; the HTTP status."""
    body = json.dumps({"bucket": bucket, "name": name, "generation": str(generation)}).encode()
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "ce-id": uuid.uuid4().hex,
            "ce-subject": f"objects/{name}",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def deliver(url: str, bucket: str, name: str, generation: int, statuses: list[int]) -> None:
    """Like Eventarc with RETRY_POLICY_RETRY: redeliver on an error status (here at most 5 times)."""
    for _ in range(6):
        code = post_event(url, bucket, name, generation)
        statuses.append(code)
        if code == 200:
            return
        time.sleep(1)


def test_concurrent_rebuilds_keep_every_entry(rstack, evidence):
    s = rstack
    for slug in ("rel-toc-a", "rel-toc-b"):  # at least these experiments, whatever ran before
        support.upload(s, support.tiny_experiment(slug))
    for fs in ("rel_toc_a", "rel_toc_b"):
        support.wait_until(lambda fs=fs: support.fresh_and_ok(s, fs), 120, what=f"{fs} rendered")
    support.wait_quiet(s)
    client = s.storage()
    # (a) 10 concurrent invocations of the deployed function
    state = client.bucket(s.state_bucket)
    statuses = [b for b in client.list_blobs(state, prefix="status/")][:10]
    assert statuses, "no status records yet"
    url = f"http://127.0.0.1:{s.ports['rebuild_toc']}/"
    before_lines = support.count_messages(support.fn_log(s, "rebuild_toc"), "index rebuilt")
    codes: list[int] = []
    threads = [
        threading.Thread(target=deliver, args=(url, s.state_bucket, b.name, b.generation, codes))
        for b in (statuses * 10)[:10]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(200) == 10, f"not every event was handled after redelivery: {codes}"
    gave_up = len(codes) - 10  # rebuilds that failed (e.g. exhausted toc.MAX_ATTEMPTS) and were redelivered
    assert gave_up == 0, f"{gave_up} of 10 concurrent rebuilds failed and needed a redelivery: {codes}"
    expected = set(group_results(list_results(client, s.results_bucket, ""), ""))
    rows = support.toc_rows(support.index_html(s))
    assert expected <= set(rows), f"dropped: {sorted(expected - set(rows))[:10]}"
    rebuilt = support.count_messages(support.fn_log(s, "rebuild_toc"), "index rebuilt") - before_lines

    # (b) 10 writers on their own buckets, 3 rounds, each adding one experiment just before rebuilding
    tag = uuid.uuid4().hex[:8]
    settings = toc.Settings(f"toc-{tag}-results", f"toc-{tag}-site", f"toc-{tag}-state")
    for b in (settings.results_bucket, settings.site_bucket, settings.state_bucket):
        client.create_bucket(b)
    attempts: list[int] = []
    gave_up_threads: list[str] = []
    added: list[str] = []
    for rnd in range(3):
        barrier = threading.Barrier(10)

        def writer(i: int) -> None:
            fs = f"toc_{rnd}_{i}"
            client.bucket(settings.results_bucket).blob(
                layout.results_name(layout.Kind.METADATA, fs)
            ).upload_from_string(b"{}")
            record = {
                "file_slug": fs,
                "name": fs,
                "state": "ok",
                "input_generations": {},
                "page": layout.page_name(fs),
                "page_rendered_at": status.iso(dt.datetime.now(dt.UTC)),
            }
            blob = client.bucket(settings.state_bucket).blob(layout.status_name(fs))
            blob.metadata = status.toc_metadata(record)
            blob.upload_from_string(json.dumps(record))
            barrier.wait()
            for _ in range(6):  # a give-up raises: the platform redelivers the event
                try:
                    _, n = toc.publish_index(client, settings, "")
                except RuntimeError:
                    gave_up_threads.append(fs)
                    continue
                attempts.append(n)
                return

        ts = [threading.Thread(target=writer, args=(i,)) for i in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        added += [f"toc_{rnd}_{i}" for i in range(10)]
        html = client.bucket(settings.site_bucket).get_blob(layout.index_name()).download_as_text()
        missing = [fs for fs in added if f'href="{fs}.html"' not in html]
        assert not missing, f"round {rnd}: dropped {missing}"
    assert len(attempts) == 30 and not gave_up_threads
    assert max(attempts) <= 2, f"a rebuild listed {max(attempts)} times: {attempts}"

    # (c) no self-trigger: nothing changes → no rebuild (while several index.html notifications
    # and sweeps pass by)
    support.wait_quiet(s)
    # events answered 500 above are redelivered with backoff: wait until the count stops moving
    n0, deadline = -1, time.monotonic() + 90
    while time.monotonic() < deadline:
        time.sleep(5)
        n = support.count_messages(support.fn_log(s, "rebuild_toc"), "index rebuilt")
        if n == n0:
            break
        n0 = n
    for _ in range(2):  # two more index writes (each is a notification rebuild_toc receives)
        toc.publish_index(client, toc.Settings(s.results_bucket, s.site_bucket, s.state_bucket), "")
    quiet = 4 * support.SWEEP_INTERVAL + 3
    time.sleep(quiet)
    n1 = support.count_messages(support.fn_log(s, "rebuild_toc"), "index rebuilt")
    assert n1 == n0, f"rebuild_toc rebuilt {n1 - n0} times while nothing changed"
    evidence.row(
        "8 TOC: concurrent rebuilds",
        "10 concurrent state CloudEvents to rebuild_toc; 10 threads × 3 rounds calling publish_index while adding one experiment each",
        "10 at once (×4)",
        "index lists every experiment (function) / every added experiment after each round (threads)",
        f"function: {rebuilt} writes for 10 events, the rest stopped because a later listing had written; {gave_up} needed a redelivery; threads: max {max(attempts)} listings per rebuild, {sum(a == 1 for a in attempts)} wrote at once, {sum(a == 2 for a in attempts)} listed again after a 412, {sum(a == 0 for a in attempts)} stopped (a later listing had written), {len(gave_up_threads)} gave up",
    )
    evidence.row(
        "8 TOC: no self-trigger",
        f"2 index.html writes and {quiet:.0f} s of sweeps with no state change",
        1,
        "'index rebuilt' lines in fn-rebuild_toc.log unchanged",
        f"{n1 - n0} rebuilds",
    )

"""Case 2: a burst of N experiments × 5 results objects, uploaded Jetstream-style at once.

Bound on renders per experiment: ``1 + late + swept`` where ``late`` counts that experiment's
uploads that finished after its first render started (each may find the marker already deleted,
and so must cause another render: the lost-update rule) and ``swept`` the sweeper's logged
re-requests of it. Every render must also be one logged marker claim or sweeper request. With no
fault injected the sweeper must request nothing, however long the queue: dispatch_render records
each execution on its marker, the job covers its run with ``running/<slug>``, and the sweeper asks
Cloud Run about both before it re-requests anything.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from partybal import layout
from partybal.local import uploader
from tests.reliability import support

pytestmark = pytest.mark.emulators


@pytest.mark.parametrize("n", [pytest.param(10, id="10x5"), pytest.param(100, id="100x5", marks=pytest.mark.slow)])
def test_burst(rstack, evidence, n):
    s = rstack
    support.wait_quiet(s)
    offsets = support.log_offsets(s)
    tag = f"rel-burst{n}-{int(time.time()) % 100000}"
    experiments = {f"{tag}-{i:03d}": support.tiny_experiment(f"{tag}-{i:03d}", seed=i) for i in range(n)}
    jobs = [(slug, name, data) for slug, files in experiments.items() for name, data in files.items()]
    assert len(jobs) == 5 * n
    bucket = s.storage().bucket(s.results_bucket)
    ended: dict[str, list[float]] = {layout.file_slug(slug): [] for slug in experiments}

    def put(job):
        slug, name, data = job
        uploader.upload_jetstream_style(bucket, name, data)
        ended[layout.file_slug(slug)].append(time.time())

    t0 = time.time()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, jobs))
    upload_seconds = time.time() - t0

    fslugs = sorted(ended)
    support.wait_until(
        lambda: all(support.fresh_and_ok(s, f) for f in fslugs),
        120 + 6 * n,
        interval=1.0,
        what=f"{n} experiments rendered from their newest inputs",
    )
    support.wait_quiet(s)
    execs = s.executions()
    queue_max = max(
        (
            e["attempts"][0]["start"] - e["requested"]
            for e in execs
            if e["attempts"] and layout.file_slug(e["slug"] or "") in ended
        ),
        default=0.0,
    )
    renders, bounds, exact_one, total_claims, total_swept = {}, {}, 0, 0, 0
    for f in fslugs:
        exs = support.executions_for(s, f, execs)
        first_start = min(e["attempts"][0]["start"] for e in exs)
        late = sum(1 for t in ended[f] if t > first_start)
        swept = support.sweeper_requests(s, f, offsets["sweep_pending"])
        claimed = support.claims(s, f, offsets["on_results_finalized"])
        renders[f], bounds[f] = len(exs), 1 + late + swept
        assert len(exs) <= 1 + late + swept, (
            f"{f}: {len(exs)} renders > 1 + {late} late uploads + {swept} sweeper requests"
        )
        assert len(exs) == claimed + swept, (
            f"{f}: {len(exs)} renders but {claimed} marker claims + {swept} sweeper requests"
        )
        exact_one += len(exs) == 1
        total_claims += claimed
        total_swept += swept
        record = s.status_record(f)
        assert record["state"] == "ok" and record["input_generations"] == support.current_generations(s, f)
    marker_resweeps = support.sweeper_requests(s, None, offsets["sweep_pending"], ("pending marker re-requested",))
    assert total_swept == 0, (
        f"the sweeper re-requested {total_swept} renders ({marker_resweeps} pending markers) that were queued or running"
    )
    html = support.index_html(s)
    rows = support.toc_rows(html)
    missing = [f for f in fslugs if rows.get(f) != "ok" or f'href="{layout.page_name(f)}"' not in html]
    assert not missing, f"TOC incomplete: {missing[:10]}"
    evidence.row(
        f"2 burst {n}×5",
        f"{n} experiments × 5 objects, Jetstream-style (temps, copy, delete: {25 * n} events), 8 upload threads",
        1,
        "every page ok and built from the current generations; renders ≤ 1 + late uploads and == logged marker claims; 0 sweeper requests (nothing was lost); TOC lists all as ok with a link",
        f"uploads took {upload_seconds:.1f} s; {exact_one}/{n} rendered exactly once; total renders {sum(renders.values())} = {total_claims} marker claims + {total_swept} sweeper re-requests ({marker_resweeps} of queued markers); max per experiment {max(renders.values())}; longest queue {queue_max:.0f} s",
    )

"""Fake renderers for the backfill tests (module level: worker processes import them by name)."""

from __future__ import annotations

from typing import Mapping

from partybal.backfill import Outcome


def fake_renderer(src: str, fslug: str, out: str, cores: int, generations: Mapping[str, int]) -> Outcome:
    """Fails every slug containing "bad" with a reason; records the call in ``out``."""
    from pathlib import Path

    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"{fslug}.called").write_text(f"{cores}\n{sorted(generations)}\n")
    if "bad" in fslug:
        return Outcome(fslug, False, f"{fslug}: broken on purpose")
    return Outcome(fslug, True)


def crashing_renderer(src: str, fslug: str, out: str, cores: int, generations: Mapping[str, int]) -> Outcome:
    if "bad" in fslug:
        raise RuntimeError("worker exploded")
    return Outcome(fslug, True)


# --- filling a (fake) GCS with many experiments ---------------------------------------------------

PERIODS_PER_EXPERIMENT = ("overall", "weekly", "daily")


def experiment_slug(i: int) -> str:
    return f"scale_exp_{i:05d}"


def fill_experiments(client, results_bucket: str, state_bucket: str, n: int, *, start: int = 0, periods=PERIODS_PER_EXPERIMENT, threads: int = 16, with_status: bool = True, status_metadata: bool = True) -> int:
    """``n`` experiments: per experiment a statistics object per period + metadata (tiny bodies:
    the TOC never reads them) and an ``ok`` status record matching those generations (every 7th
    one is stale: its record names an older generation). Uploads on a thread pool. Objects written."""
    import concurrent.futures as cf
    import json

    from partybal import job, layout, status

    results = client.bucket(results_bucket)
    state = client.bucket(state_bucket)

    def one(i: int) -> int:
        fslug = experiment_slug(i)
        names = [layout.results_name(layout.Kind.STATISTICS, fslug, p) for p in periods]
        names.append(layout.results_name(layout.Kind.METADATA, fslug))
        gens = {}
        for name in names:
            blob = results.blob(name)
            blob.upload_from_string(b"[]", content_type="application/json")
            gens[name] = int(blob.generation)
        if not with_status:
            return len(names)
        if i % 7 == 3:
            gens[names[0]] -= 1
        record = {
            "slug": fslug.replace("_", "-"), "file_slug": fslug, "prefix": "", "name": fslug.replace("_", "-"),
            "analysis_start": "2026-09-20T04:10:00+00:00", "windows": {p: 1 for p in periods}, "state": "ok",
            "reason": "", "input_generations": gens, "page": layout.page_name(fslug),
            "page_rendered_at": "2026-09-21T04:10:00+00:00",
        }
        if status_metadata:
            job.write_status(state, record, "")
        else:
            state.blob(layout.status_name(fslug)).upload_from_string(json.dumps(record), content_type="application/json")
        assert status.toc_metadata(record) is not None
        return len(names) + 1

    with cf.ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(one, range(start, start + n)))

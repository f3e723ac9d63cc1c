"""Fake renderers for the backfill tests (module level: worker processes import them by name)."""

from __future__ import annotations

from collections.abc import Mapping

from partybal.pipeline.backfill import RenderOutcome as Outcome


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


def fill_experiments(
    client,
    results_bucket: str,
    state_bucket: str,
    n: int,
    *,
    start: int = 0,
    periods=PERIODS_PER_EXPERIMENT,
    threads: int = 16,
    with_status: bool = True,
    status_metadata: bool = True,
) -> int:
    """``n`` experiments: per experiment a statistics object per period + metadata (tiny bodies:
    the TOC never reads them) and an ``ok`` status record matching those generations (every 7th
    one is stale: its record names an older generation). Uploads on a thread pool. Objects written."""
    import concurrent.futures as cf
    import json

    from partybal import layout
    from partybal.pipeline import job, status

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
            "slug": fslug.replace("_", "-"),
            "file_slug": fslug,
            "prefix": "",
            "name": fslug.replace("_", "-"),
            "analysis_start": "2026-09-20T04:10:00+00:00",
            "windows": {p: 1 for p in periods},
            "state": "ok",
            "reason": "",
            "input_generations": gens,
            "page": layout.page_name(fslug),
            "page_rendered_at": "2026-09-21T04:10:00+00:00",
        }
        if status_metadata:
            job.write_status(state, record, "")
        else:
            state.blob(layout.status_name(fslug)).upload_from_string(
                json.dumps(record), content_type="application/json"
            )
        assert status.toc_metadata(record) is not None
        return len(names) + 1

    with cf.ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(one, range(start, start + n)))


def _fs_object(
    root,
    bucket: str,
    name: str,
    body: bytes,
    generation: int,
    when: str,
    *,
    content_type="application/json",
    cache_control="",
    metadata=None,
) -> None:
    """Write one object the way fake-gcs-server's filesystem backend stores it: the bytes at
    ``<root>/<bucket>/<name>`` and its attributes as JSON in the ``user.metadata`` xattr (format
    read back from objects the server itself wrote; the benchmark checks the result via the API)."""
    import base64
    import hashlib
    import json
    import os
    import struct

    import google_crc32c

    path = os.path.join(root, bucket, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(body)
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    crc = base64.b64encode(struct.pack(">I", google_crc32c.value(body))).decode()
    attrs = {
        "StorageClass": "STANDARD",
        "ContentType": content_type,
        "ContentEncoding": "",
        "ContentDisposition": "",
        "ContentLanguage": "",
        "CacheControl": cache_control,
        "Crc32c": crc,
        "Md5Hash": md5,
        "Etag": md5,
        "ACL": [
            {
                "Entity": "projectOwner-test-project",
                "EntityID": "",
                "Role": "OWNER",
                "Domain": "",
                "Email": "",
                "ProjectTeam": None,
            }
        ],
        "Metadata": metadata,
        "Created": when,
        "Deleted": "0001-01-01T00:00:00Z",
        "Updated": when,
        "CustomTime": "0001-01-01T00:00:00Z",
        "Generation": generation,
        "RetentionMode": "",
        "RetentionRetainUntil": "",
    }
    os.setxattr(path, "user.metadata", json.dumps(attrs).encode())


def seed_filesystem(
    root,
    results_bucket: str,
    state_bucket: str,
    n: int,
    *,
    site_bucket: str | None = None,
    periods=PERIODS_PER_EXPERIMENT,
    legacy_every: int = 0,
    catalog: bool = False,
) -> int:
    """The same experiments as :func:`fill_experiments`, written straight into a fake-gcs-server
    filesystem-backend root (before the server starts). With ``legacy_every=k`` every k-th status
    record has no TOC metadata (as written by older jobs). With ``catalog``, the Experimenter
    snapshot's compact TOC copy names every experiment (name, application, dates). Objects written."""
    import os

    from partybal import layout
    from partybal.pipeline import status

    buckets = [results_bucket, state_bucket] + ([site_bucket] if site_bucket else [])
    for b in buckets:
        os.makedirs(os.path.join(root, b), exist_ok=True)
        with open(os.path.join(root, b + ".bucketMetadata"), "w") as f:
            f.write('{"DefaultEventBasedHold":false,"VersioningEnabled":false}')
    written = 0
    gen = 1_700_000_000_000_000
    for i in range(n):
        fslug = experiment_slug(i)
        names = [layout.results_name(layout.Kind.STATISTICS, fslug, p) for p in periods]
        names.append(layout.results_name(layout.Kind.METADATA, fslug))
        gens = {}
        for name in names:
            gen += 1
            _fs_object(root, results_bucket, name, b"[]", gen, "2026-09-20T05:00:00.000000Z")
            gens[name] = gen
        if i % 7 == 3:
            gens[names[0]] -= 1
        record = {
            "slug": fslug.replace("_", "-"),
            "file_slug": fslug,
            "prefix": "",
            "name": fslug.replace("_", "-"),
            "analysis_start": "2026-09-20T04:10:00+00:00",
            "windows": {p: 1 for p in periods},
            "state": "ok",
            "reason": "",
            "input_generations": gens,
            "page": layout.page_name(fslug),
            "page_rendered_at": "2026-09-21T04:10:00+00:00",
        }
        gen += 1
        import json

        _fs_object(
            root,
            state_bucket,
            layout.status_name(fslug),
            json.dumps(record).encode(),
            gen,
            "2026-09-21T04:10:00.000000Z",
            cache_control="no-store",
            metadata=None if legacy_every and i % legacy_every == 0 else status.toc_metadata(record),
        )
        written += len(names) + 1
    if catalog:
        _fs_object(
            root,
            state_bucket,
            layout.experimenter_toc_name(),
            catalog_bytes(n),
            gen + 1,
            "2026-09-21T04:10:00.000000Z",
            cache_control="no-store",
        )
        written += 1
    return written


def catalog_bytes(n: int) -> bytes:
    """The compact TOC copy of an Experimenter snapshot listing experiments 0…n-1."""
    import datetime as dt

    from partybal.pipeline import experimenter

    apps = ("firefox_desktop", "fenix", "firefox_ios", "focus_android")
    infos = []
    for i in range(n):
        start = dt.date(2024, 1, 1) + dt.timedelta(days=i % 900)
        infos.append(
            experimenter.ExperimentInfo(
                slug=experiment_slug(i).replace("_", "-"),
                name=f"Experiment {i}: a name people read",
                description="",
                app_name=apps[i % len(apps)],
                channel="release",
                is_rollout=i % 5 == 0,
                start_date=start,
                enrollment_end_date=start + dt.timedelta(days=7),
                end_date=start + dt.timedelta(days=35) if i % 3 else None,
                proposed_enrollment=7,
                proposed_duration=35,
                reference_branch="control",
                branches=(),
            )
        )
    return experimenter.toc_bytes(infos)

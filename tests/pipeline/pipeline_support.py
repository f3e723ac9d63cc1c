"""Helpers shared by the pipeline tests."""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "sample"


def upload_sample(gcs, bucket: str, fslug: str, prefix: str = "") -> list[str]:
    names = []
    for path in sorted(SAMPLE.glob(f"*/*_{fslug}*.json")):
        name = f"{prefix}{path.parent.name}/{path.name}"
        gcs.bucket(bucket).blob(name).upload_from_filename(str(path), content_type="application/json")
        names.append(name)
    assert names, f"no sample files for {fslug}"
    return names


def job_env(buckets, slug: str, prefix: str = "", **extra: str) -> dict[str, str]:
    """The environment of a render execution's task as dispatch_render and Cloud Run give it
    (``extra``: more variables, e.g. ``ASSET_GRACE_SECONDS="0"``)."""
    return {
        "PARTYBAL_SLUG": slug,
        "PARTYBAL_PREFIX": prefix,
        "RESULTS_BUCKET": buckets.results,
        "SITE_BUCKET": buckets.site,
        "STATE_BUCKET": buckets.state,
        "CLOUD_RUN_TASK_ATTEMPT": "0",
        **extra,
    }


class RecordingPublisher:
    """Stands in for PublisherClient: records (topic, data, attributes)."""

    def __init__(self):
        import threading

        self.messages: list[tuple[str, bytes, dict]] = []
        self._lock = threading.Lock()

    def publish(self, topic, data, **attrs):
        with self._lock:
            self.messages.append((topic, data, attrs))
            return _Done(str(len(self.messages)))


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self, timeout=None):
        return self.value

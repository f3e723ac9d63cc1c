"""The local stack, brought up once per test session (marker ``emulators``).

Component logs: ``build/e2e/run/`` (kept after the run, for post-mortems).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from partybal.local import stack as localstack
from partybal.local import uploader
from tests.helpers import missing_tools, unavailable, wait_until  # noqa: F401  (wait_until is used by the e2e tests)
from tests.support import synthetic

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = REPO / "build" / "e2e" / "run"


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    missing = missing_tools()
    if missing:
        unavailable(f"local stack needs: {', '.join(missing)}")
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    s = localstack.LocalStack(run_dir=RUN_DIR, gcs_root=tmp_path_factory.mktemp("gcs"), port_base=None)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def sample_site(stack):
    """The sample data uploaded Jetstream-style; the site complete. (since, SiteStatus)"""
    since = localstack.now()
    stack.upload(localstack.SAMPLE_DIR)
    status = stack.wait_for_site(uploader.slugs_in(localstack.SAMPLE_DIR), since, timeout=150)
    assert status.complete, f"{status.describe()} (logs in {RUN_DIR})"
    return since, status


def small_experiment(slug: str, seed: int = 1) -> dict[str, bytes]:
    """Five results objects (3 periods, metadata, errors) that knit in ~3 s."""
    return synthetic.experiment_files(synthetic.small_spec(slug, seed))


def hold_experiment(slug: str, seed: int = 1) -> dict[str, bytes]:
    """An experiment that knits in ~7 s: long enough to upload during its render."""
    spec = synthetic.ExperimentSpec(
        slug=slug,
        seed=seed,
        branches=("control", "treatment"),
        segments=("all",),
        bases=("enrollments",),
        windows={"overall": 1, "weekly": 3},
        grid_points=64,
        errors=1,
    )
    return synthetic.experiment_files(spec)


def upload_files(stack, files: dict[str, bytes]) -> dict[str, int]:
    """Jetstream-style upload; name → generation of the final object."""
    bucket = stack.storage().bucket(stack.results_bucket)
    return {name: uploader.upload_jetstream_style(bucket, name, data).generation for name, data in files.items()}


def executions_for(stack, fslug: str) -> list[dict]:
    from partybal import layout

    return [e for e in stack.executions() if layout.file_slug(e["slug"] or "") == fslug]


def pending(stack, fslug: str) -> bool:
    from partybal import layout

    return stack.storage().bucket(stack.state_bucket).get_blob(layout.pending_name(fslug)) is not None


def settled(stack, fslug: str, n_executions: int | None = None):
    """The status record once no render of ``fslug`` is pending, queued or running (else None)."""
    exs = executions_for(stack, fslug)
    if n_executions is not None and len(exs) < n_executions:
        return None
    if any(e["state"] in ("queued", "running") for e in exs) or pending(stack, fslug):
        return None
    return stack.status_record(fslug)

"""The renderer image, built and run (issue 13): not parsed, run.

``make image-local`` builds ``renderer_image/Dockerfile`` with podman on a debootstrapped
``debian:bookworm-slim`` (cached: unchanged inputs rebuild in seconds). The image's entrypoint then
runs in a fresh copy of the image's filesystem, as the image's user (uid 10001), with the job's
environment contract only, against fake-gcs-server — driven by the local Cloud Run stand-in with
``job_image`` set (what ``partybal local up --job-image`` does) — and must publish what the
stand-in's default path (``python -m partybal.pipeline.job`` on this machine) publishes for the same input.
The image holds only the job, and its user can write only to its temp and home folders.
``partybal local up --job-image`` runs the whole local pipeline with the image.

Needs root, podman and debootstrap (``make setup`` installs them; skipped elsewhere, failed on CI).
Build log: ``build/image/build.log``; job logs under pytest's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from partybal import layout
from partybal.local import cloudrun as runstub
from partybal.local import jobimage, uploader
from partybal.local import stack as localstack
from tests.helpers import SAMPLE, unavailable, wait_until

pytestmark = [pytest.mark.image, pytest.mark.emulators, pytest.mark.r]

ROOT = Path(__file__).resolve().parents[2]
BUILD_LOG = ROOT / "build" / "image" / "build.log"
IMAGE = os.environ.get("IMAGE_LOCAL", "localhost/partybal-renderer:local")
SLUG = "sample_search_defaults"  # the smaller sample experiment: one window, a few figures
JOB_USER = "10001:10001"
WRITABLE = ("/tmp", "/var/tmp", "/home/partybal")  # where the job's user may write, and nowhere else


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0:
        unavailable("building and running the job image needs root (podman storage, chroot)")
    missing = [t for t in ("podman", "debootstrap", "unshare", "chroot") if not shutil.which(t)]
    if missing:
        unavailable(f"job image tests need: {', '.join(missing)} (apt-get install podman debootstrap)")
    BUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with BUILD_LOG.open("w") as log:
        proc = subprocess.run(
            ["make", "--no-print-directory", "image-local", f"IMAGE_LOCAL={IMAGE}"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=3600,
        )
    tail = "\n".join(BUILD_LOG.read_text().splitlines()[-12:])
    assert proc.returncode == 0, (
        f"make image-local failed ({time.monotonic() - started:.0f} s); last lines of {BUILD_LOG}:\n{tail}"
    )
    assert re.search(rf"image-local: built {re.escape(IMAGE)} in \d+ s; size \d+ MB", tail), tail
    return IMAGE


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A fake-gcs-server of our own (no notifications: nothing but the jobs below writes)."""
    root = tmp_path_factory.mktemp("image-gcs")
    port = localstack._ephemeral_port()
    log = open(root / "fake-gcs.log", "wb")
    proc = subprocess.Popen(
        localstack.fake_gcs_server_argv(port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        localstack.wait_port(port, 20, proc, "fake-gcs-server")
        host = f"http://127.0.0.1:{port}"
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        yield (
            host,
            storage.Client(
                project="partybal-test", credentials=AnonymousCredentials(), client_options={"api_endpoint": host}
            ),
        )
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)
        log.close()


def _job_env(host: str, tag: str) -> dict[str, str]:
    """The job's environment contract (docs/architecture.md), as the local stack sets it."""
    return {
        "GOOGLE_CLOUD_PROJECT": "partybal-test",
        "STORAGE_EMULATOR_HOST": host,
        "RESULTS_BUCKET": "results",
        "SITE_BUCKET": f"site-{tag}",
        "STATE_BUCKET": f"state-{tag}",
        "RUN_JOB": "projects/partybal-test/locations/local/jobs/partybal-render",
        "ASSET_GRACE_SECONDS": "0",
    }


def _execute(stub: runstub.RunStub, slug: str, timeout: float = 600) -> dict:
    try:
        ex = stub.run_job(
            "projects/partybal-test/locations/local/jobs/partybal-render",
            {"overrides": {"containerOverrides": [{"env": [{"name": "PARTYBAL_SLUG", "value": slug}]}]}},
        )
        wait_until(lambda: ex.state in ("succeeded", "failed"), timeout, 0.5, f"the execution of {slug}")
        return ex.summary()
    finally:
        stub.shutdown()


def _published(client, env: dict[str, str]) -> tuple[dict, dict, dict]:
    """(site objects, state objects, status record); render ids in names replaced by RID."""
    record = json.loads(client.bucket(env["STATE_BUCKET"]).blob(layout.status_name(SLUG)).download_as_bytes())
    rid = record["render_id"]

    def listing(bucket: str) -> dict:
        out = {}
        for blob in client.list_blobs(bucket):
            out[blob.name.replace(rid, "RID")] = {
                "content_type": blob.content_type,
                "cache_control": blob.cache_control,
                "metadata": {k: _normalized(v, record) for k, v in (blob.metadata or {}).items()},
                "blob": blob,
            }
        return out

    return listing(env["SITE_BUCKET"]), listing(env["STATE_BUCKET"]), record


def _normalized(text: str, record: dict) -> str:
    """``text`` with the render's id and every timestamp replaced (they name a render and when)."""
    text = text.replace(record["render_id"], "RID")
    return re.sub(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?|\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?(?: UTC)?",
        "TIME",
        text,
    )


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_image_publishes_what_the_stand_in_publishes(image, gcs, tmp_path):
    host, client = gcs
    results = client.create_bucket("results")
    for tag in ("local", "image"):
        client.create_bucket(f"site-{tag}")
        client.create_bucket(f"state-{tag}")
    uploaded = [u for u in uploader.upload_tree(results, SAMPLE) if SLUG in u.name]
    assert uploaded, f"no sample results for {SLUG}"

    local_env, image_env = _job_env(host, "local"), _job_env(host, "image")
    local = _execute(runstub.RunStub(base_env=local_env, parallelism=1, max_retries=0, log_dir=tmp_path), SLUG)
    assert local["state"] == "succeeded", f"the stand-in's job failed: {local['attempts']}"
    ran = _execute(
        runstub.RunStub(base_env=image_env, parallelism=1, max_retries=0, log_dir=tmp_path, job_image=image), SLUG
    )
    log = Path(ran["attempts"][-1]["log"]).read_text()
    assert ran["state"] == "succeeded", f"the image's job failed (exit {ran['exit_codes']}):\n{log[-3000:]}"
    lines = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
    assert any(l.get("message") == "page published" for l in lines), log[-2000:]

    site_l, state_l, rec_l = _published(client, local_env)
    site_i, state_i, rec_i = _published(client, image_env)
    # the same objects, with the same content types, caching and metadata
    strip = lambda objs: {n: {k: v for k, v in o.items() if k != "blob"} for n, o in objs.items()}  # noqa: E731
    assert strip(site_i) == strip(site_l)
    assert strip(state_i) == strip(state_l)
    page = layout.page_name(SLUG)
    figures = [n for n in site_i if n.endswith(".png")]
    assert page in site_i and figures, sorted(site_i)
    assert rec_i["state"] == "ok" and rec_i["figures"] == len(figures) == rec_l["figures"], rec_i
    # the status record: equal but for what names the render and when
    volatile = {"run_id", "render_id", "rendered_at", "page_rendered_at", "render_seconds", "history"}
    for rec in (rec_i, rec_l):  # each names its own render's history summary
        assert rec["history"] == layout.history_name(SLUG, rec["render_id"]), rec
    assert {k: v for k, v in rec_i.items() if k not in volatile} == {
        k: v for k, v in rec_l.items() if k not in volatile
    }
    # the page: the same HTML but for render ids and times
    html_i = site_i[page]["blob"].download_as_text()
    html_l = site_l[page]["blob"].download_as_text()
    assert _normalized(html_i, rec_i) == _normalized(html_l, rec_l)
    # the figures: the same bytes (R, ggplot2, cairo and fonts are the same Debian packages, pinned)
    for name in figures:
        data_i, data_l = site_i[name]["blob"].download_as_bytes(), site_l[name]["blob"].download_as_bytes()
        assert _png_size(data_i) == _png_size(data_l), name
        assert data_i == data_l, f"{name} differs between the image and this machine (a font or R package version?)"


def test_the_image_holds_only_the_job_and_its_user_writes_only_temp_and_home(image):
    config = jobimage.image_config(image)
    assert config.user == JOB_USER and config.argv == ["python", "-m", "partybal.pipeline.job"], config
    with jobimage.mounted(image) as root:
        # only what the job runs
        app = sorted(p.name for p in (root / "app").iterdir())
        assert app == ["partybal", "r", "templates"], app
        package = root / "app" / "partybal"
        shipped = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
        assert not {n for n in shipped if n.startswith("local/")}, f"the local stack is in the image: {sorted(shipped)}"
        assert "cli.py" not in shipped and "local/preview.py" not in shipped, sorted(shipped)
        assert {"__init__.py", "pipeline/job.py", "page/render.py"} <= shipped, sorted(shipped)
        assert not list(root.glob("**/tests/conftest.py")), "tests in the image"
        packages = {
            line.split(": ", 1)[1]
            for line in (root / "var/lib/dpkg/status").read_text().splitlines()
            if line.startswith("Package: ")
        }
        build_tools = {
            "gcc",
            "gcc-12",
            "g++",
            "g++-12",
            "cpp",
            "cpp-12",
            "make",
            "build-essential",
            "libc6-dev",
            "r-base-dev",
            "python3-pip",
            "python3.11-venv",
            "python3.11-dev",
        }
        assert not packages & build_tools, f"build tools left in the image: {sorted(packages & build_tools)}"
        for tool in ("gcc", "cc", "g++", "make", "pip", "pip3"):
            for d in ("usr/bin", "usr/local/bin", "opt/partybal/bin"):
                assert not (root / d / tool).exists(), f"/{d}/{tool} is in the image"
        assert not (root / "mnt").exists() or not any((root / "mnt").iterdir()), "the build's CA mount left files"
        # as the job's user: who it is, where it can write
        script = (
            "id -u; id -g; "
            "find / -xdev -writable 2>/dev/null; echo ---; "
            "for d in /app /app/partybal /opt/partybal /etc /usr/lib/R /run/lock /; do touch $d/probe 2>/dev/null && echo wrote $d; done; "
            "touch /tmp/probe /home/partybal/probe && echo home-and-tmp-ok"
        )
        proc = subprocess.run(
            jobimage.command_in(
                root, ["/bin/sh", "-c", script], jobimage.job_environment(config, {}), config.user, config.workdir
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.splitlines()
    assert out[:2] == ["10001", "10001"], out[:2]
    writable = out[2 : out.index("---")]
    outside = [p for p in writable if not any(p == w or p.startswith(w + "/") for w in WRITABLE)]
    assert not outside, f"uid 10001 can write outside {WRITABLE}: {outside}"
    assert "/tmp" in writable and "/home/partybal" in writable, writable
    rest = out[out.index("---") + 1 :]
    assert rest == ["home-and-tmp-ok"], rest


def test_local_up_runs_the_job_from_the_image(image, tmp_path):
    """`partybal local up --job-image` (what `make demo PARTYBAL_JOB_IMAGE=…` runs): the whole
    local pipeline, with every execution run from the image."""
    from tests.helpers import copy_sample, missing_tools

    if missing_tools():
        unavailable(f"local stack needs: {', '.join(missing_tools())}")
    data = copy_sample(tmp_path / "data", SLUG)
    stack_dir = tmp_path / "stack"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "partybal",
            "local",
            "up",
            "--once",
            "--timeout",
            "240",
            "--data",
            str(data),
            "--dir",
            str(stack_dir),
        ],
        cwd=ROOT,
        env={**os.environ, "PARTYBAL_JOB_IMAGE": image},
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert f"the render job runs from the image {image}" in proc.stdout, proc.stdout
    assert f"rendered: {SLUG}" in proc.stdout, proc.stdout
    listening = [
        json.loads(l)
        for l in (stack_dir / "run" / "run-stand-in.log").read_text().splitlines()
        if "stand-in listening" in l
    ]
    assert listening and listening[0]["job_image"] == image, listening
    leftovers = subprocess.run(
        ["podman", "ps", "--all", "--external", "--filter", f"label={jobimage.LABEL}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
    )
    assert not leftovers.stdout.strip(), f"job containers left behind: {leftovers.stdout}"

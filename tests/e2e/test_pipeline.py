"""End to end on the local stack: upload → function → Pub/Sub → function → job → site → TOC."""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from partybal import layout
from partybal.local import stack as localstack

from .conftest import executions_for, hold_experiment, pending, settled, small_experiment, upload_files, wait_until

pytestmark = pytest.mark.emulators


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def test_sample_upload_publishes_pages_and_toc(stack, sample_site):
    _, status = sample_site
    assert sorted(status.ok) == ["sample_new_tab_layout", "sample_search_defaults"], status.describe()
    assert not status.failed
    code, ctype, index = fetch(stack.site_url)
    assert code == 200 and ctype.startswith("text/html")
    for fslug in status.ok:
        assert f'href="{fslug}.html"' in index.decode()
        page_url = urllib.parse.urljoin(stack.site_url, f"{fslug}.html")
        code, ctype, page = fetch(page_url)
        assert code == 200 and ctype.startswith("text/html"), (code, ctype)
        figures = re.findall(r'src="([^"]+\.png)"', page.decode())
        assert figures, f"no figures on {fslug}.html"
        for src in figures:
            assert src.startswith(f"{fslug}_files/"), src
            code, ctype, _ = fetch(urllib.parse.urljoin(page_url, src))
            assert (code, ctype) == (200, "image/png"), src
        record = stack.status_record(fslug)
        assert record["state"] == "ok" and record["page"] == f"{fslug}.html"
        # every render of the burst read the final objects, never a temp
        assert all(not layout.is_temp_name(name) for name in record["input_generations"])


def test_temp_objects_do_not_trigger_renders(stack, sample_site):
    bucket = stack.storage().bucket(stack.results_bucket)
    before = len(stack.executions())
    for name in (
        "statistics/statistics_e2e_temp_overall-abcdefgh.ndjson",
        "statistics/statistics_e2e_temp_overall-qwertyui.json",
        "metadata/metadata_e2e_temp-zxcvbnmq.json",
    ):
        bucket.blob(name).upload_from_string(b"[]")
    time.sleep(3)  # plumbing takes < 1.5 s: a render request would have arrived by now
    assert executions_for(stack, "e2e_temp") == []
    assert not pending(stack, "e2e_temp")
    assert stack.status_record("e2e_temp") is None
    assert len(stack.executions()) == before


def test_burst_of_five_blobs_renders_once(stack, sample_site):
    files = small_experiment("e2e-burst")
    assert len(files) == 5
    generations = upload_files(stack, files)
    record = wait_until(lambda: settled(stack, "e2e_burst", 1), 60, what="the e2e_burst render")
    time.sleep(2)  # quiet period: a late second request would show up now
    assert len(executions_for(stack, "e2e_burst")) == 1
    assert record["state"] == "ok"
    assert record["input_generations"] == generations


def test_upload_during_render_renders_again_with_newer_data(stack, sample_site):
    fslug = "e2e_hold"
    first = upload_files(stack, hold_experiment("e2e-hold"))

    def render_reading():  # running, and the job has deleted the marker (it reads next)
        exs = executions_for(stack, fslug)
        return exs and exs[0]["state"] == "running" and not pending(stack, fslug)

    wait_until(render_reading, 60, interval=0.1, what="the first e2e_hold render to start")
    time.sleep(1.0)  # the job has listed and read its inputs by now; R is knitting
    name = layout.results_name(layout.Kind.STATISTICS, fslug, "overall")
    newer_data = hold_experiment("e2e-hold", seed=2)[name]
    uploaded_at = time.time()
    newer = upload_files(stack, {name: newer_data})[name]
    assert newer > first[name]

    record = wait_until(lambda: settled(stack, fslug, 2), 90, what="the second e2e_hold render")
    exs = executions_for(stack, fslug)
    assert len(exs) == 2, exs
    assert exs[0]["end"] > uploaded_at, "the newer upload landed after the first render ended: test did not race"
    assert exs[1]["start"] > uploaded_at
    assert record["state"] == "ok"
    assert record["input_generations"][name] == newer
    assert record["input_generations"] == {**first, name: newer}


def _rerendered(stack, fslug: str, n_before: int, render_id: str):
    record = settled(stack, fslug, n_before + 1)
    return record if record and record["render_id"] != render_id else None


def test_manual_publish_with_gcloud_rerenders(stack, sample_site):
    fslug = "sample_search_defaults"
    n = len(executions_for(stack, fslug))
    old = stack.status_record(fslug)
    env = {**os.environ, **stack.gcloud_env()}
    env.pop("PUBSUB_EMULATOR_HOST", None)
    proc = subprocess.run(
        ["gcloud", "pubsub", "topics", "publish", localstack.RENDER_TOPIC, "--message=sample-search-defaults"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "messageIds" in proc.stdout
    record = wait_until(lambda: _rerendered(stack, fslug, n, old["render_id"]), 60, what="the manual re-render")
    assert record["state"] == "ok"
    assert executions_for(stack, fslug)[-1]["slug"] == "sample-search-defaults"


def test_partybal_rerender_command(stack, sample_site):
    fslug = "sample_search_defaults"
    wait_until(lambda: settled(stack, fslug), 60, what="earlier renders to finish")
    n = len(executions_for(stack, fslug))
    old = stack.status_record(fslug)
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": stack.pubsub_host, "GOOGLE_CLOUD_PROJECT": stack.project}
    env.pop("RENDER_TOPIC", None)
    proc = subprocess.run(
        [os.sys.executable, "-m", "partybal", "rerender", "sample-search-defaults"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=localstack.REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    record = wait_until(lambda: _rerendered(stack, fslug, n, old["render_id"]), 60, what="the re-render")
    assert record["state"] == "ok"


def test_toc_lists_everything_after_quiet_period(stack, sample_site):
    expected = ["sample_new_tab_layout", "sample_search_defaults", "e2e_burst", "e2e_hold"]

    def quiet():
        if any(e["state"] in ("queued", "running") for e in stack.executions()):
            return False
        state = stack.storage().bucket(stack.state_bucket)
        if list(stack.storage().list_blobs(state, prefix="pending/")):
            return False
        st = stack.site_status([f for f in expected if stack.status_record(f)], since=0)
        return st.complete

    wait_until(quiet, 60, what="a quiet, complete site")
    _, _, index = fetch(stack.site_url)
    html = index.decode()
    for fslug in expected:
        if stack.status_record(fslug) is None:
            continue  # its test was deselected
        assert f'href="{fslug}.html"' in html, fslug
    assert "e2e_temp" not in html

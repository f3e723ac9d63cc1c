"""partybal backfill: slug splitting, stale selection, progress/summary output and exit code."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from partybal import layout
from partybal.pipeline import backfill, job
from partybal.pipeline.state import Experiment
from tests.scale.scale_support import crashing_renderer, fake_renderer


@pytest.mark.parametrize("n,count", [(0, 1), (1, 1), (7, 3), (10, 10), (3, 5), (1000, 16)])
def test_every_slug_exactly_once_across_tasks(n, count):
    slugs = [f"s{i}" for i in range(n)]
    shares = [job.task_share(slugs, i, count) for i in range(count)]
    flat = [s for share in shares for s in share]
    assert sorted(flat) == sorted(slugs) and len(flat) == len(set(flat))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced
    if n >= count:
        assert shares[1 % count][0] == slugs[1 % count]


@pytest.mark.parametrize("index,count", [(3, 3), (-1, 2), (0, 0)])
def test_task_share_rejects_bad_index(index, count):
    with pytest.raises(ValueError):
        job.task_share(["a"], index, count)


def _exp(fslug, **gens):
    return Experiment(fslug, dict(gens))


def test_select_only_stale_uses_the_toc_rule():
    exps = {
        "fresh": _exp("fresh", a=1),
        "changed": _exp("changed", a=2),
        "failed_same": _exp("failed_same", a=1),
        "never": _exp("never", a=1),
        "waiting": _exp("waiting", a=1),
    }
    statuses = {
        "fresh": {"state": "ok", "input_generations": {"a": 1}},
        "changed": {"state": "ok", "input_generations": {"a": 1}},
        "failed_same": {"state": "failed", "reason": "x", "input_generations": {"a": 1}},
        "waiting": {"state": "ok", "input_generations": {"a": 1}},
    }
    assert backfill.select(exps, statuses, {"waiting"}, only_stale=True) == [
        "changed",
        "failed_same",
        "never",
        "waiting",
    ]
    assert backfill.select(exps, statuses, {"waiting"}, only_stale=False) == sorted(exps)


def test_split_cores():
    assert backfill.split_cores(1, 2) == 2
    assert backfill.split_cores(2, 2) == 1
    assert backfill.split_cores(4, 2) == 1
    assert backfill.split_cores(2, 8) == 4


def test_progress_plain_and_tty():
    plain = io.StringIO()
    p = backfill.Progress(3, plain, tty=False)
    p.show()
    p.show()  # no change: no new line
    p.add(backfill.RenderOutcome("a", True))
    p.add(backfill.RenderOutcome("b", False, "boom"))
    p.close()
    assert plain.getvalue().splitlines() == [
        "backfill: 0/3 finished, 0 done, 0 failed, 3 remaining",
        "backfill: 1/3 finished, 1 done, 0 failed, 2 remaining",
        "backfill: 2/3 finished, 1 done, 1 failed, 1 remaining",
    ]
    tty = io.StringIO()
    p = backfill.Progress(1, tty, tty=True)
    p.show()
    p.add(backfill.RenderOutcome("a", True))
    p.close()
    assert tty.getvalue().count("\r") == 2 and tty.getvalue().endswith("0 remaining\n")


def _args(results, out, **kw):
    return argparse.Namespace(
        results=str(results),
        out=str(out),
        only_stale=kw.get("only_stale", False),
        parallel=kw.get("parallel", 2),
        cores=None,
    )


def _results(tmp_path, slugs):
    root = tmp_path / "results"
    for s in slugs:
        p = root / "metadata" / f"metadata_{s}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
    return root


def test_backfill_reports_failures_and_exits_non_zero(tmp_path, capsys):
    root = _results(tmp_path, ["one", "two", "bad_three", "four", "bad_five"])
    out = tmp_path / "site"
    rc = backfill.cmd_backfill(_args(root, out), environ={}, renderer=fake_renderer)
    err = capsys.readouterr().err
    assert rc == 1
    assert "backfill: 5 of 5 experiments to render" in err
    assert "backfill: 5/5 finished, 3 done, 2 failed, 0 remaining" in err
    assert "backfill: 3 ok, 2 failed of 5" in err
    failures = err.split("failures:\n", 1)[1].splitlines()
    assert failures == ["  bad_five: bad_five: broken on purpose", "  bad_three: bad_three: broken on purpose"]
    called = sorted(p.stem for p in out.glob("*.called"))
    assert called == ["bad_five", "bad_three", "four", "one", "two"]  # a failure stopped nothing
    assert (out / "one.called").read_text().startswith(f"{backfill.split_cores(2)}\n")


def test_backfill_all_ok_exits_zero_and_a_crashing_worker_is_a_failure(tmp_path, capsys):
    root = _results(tmp_path, ["one", "two"])
    assert backfill.cmd_backfill(_args(root, tmp_path / "a"), environ={}, renderer=fake_renderer) == 0
    assert "2 ok, 0 failed of 2" in capsys.readouterr().err
    root = _results(tmp_path / "x", ["one", "bad"])
    assert backfill.cmd_backfill(_args(root, tmp_path / "b", parallel=1), environ={}, renderer=crashing_renderer) == 1
    assert "  bad: worker failed: worker exploded" in capsys.readouterr().err


def test_local_backfill_only_stale_after_a_real_render(tmp_path, capsys):
    """Real renders (R) of the smallest sample; the second run has nothing stale, a touched input is."""
    from tests.support import synthetic

    spec = synthetic.ExperimentSpec(
        slug="tiny-one",
        branches=("control", "treatment"),
        segments=("all",),
        bases=("enrollments",),
        windows={"overall": 1},
        metrics=(synthetic.MetricSpec("uri_count", ("mean",)),),
        errors=0,
    )
    root = tmp_path / "results"
    synthetic.write_experiment(root, spec)
    synthetic.write_experiment(root, synthetic.ExperimentSpec(**{**spec.__dict__, "slug": "tiny-two"}))
    (root / "metadata" / "metadata_broken.json").write_text("{")
    out = tmp_path / "site"
    assert backfill.cmd_backfill(_args(root, out, parallel=2), environ={}) == 1
    err = capsys.readouterr().err
    assert "2 ok, 1 failed of 3" in err and "  broken: metadata/metadata_broken.json" in err
    assert (out / "tiny_one.html").is_file() and (out / "tiny_two.html").is_file()
    assert json.loads((out / backfill.LOCAL_STATUS_DIR / "broken.json").read_text())["state"] == "failed"

    (root / "metadata" / "metadata_broken.json").unlink()
    assert backfill.cmd_backfill(_args(root, out, only_stale=True), environ={}) == 0
    assert "0 of 2 experiments to render" in capsys.readouterr().err
    meta = root / "metadata" / "metadata_tiny_two.json"
    meta.write_text(meta.read_text())  # new mtime = new generation
    assert backfill.cmd_backfill(_args(root, out, only_stale=True), environ={}, renderer=fake_renderer) == 0
    assert "1 of 2 experiments to render" in capsys.readouterr().err
    assert [p.stem for p in out.glob("*.called")] == ["tiny_two"]


def test_cloud_run_mode_writes_the_list_and_starts_one_execution(monkeypatch):
    from google.cloud import run_v2

    written = {}

    class Blob:
        def __init__(self, name):
            self.name = name

        def upload_from_string(self, data, content_type=None):
            written[self.name] = json.loads(data)

    class Bucket:
        def blob(self, name):
            return Blob(name)

    class Storage:
        def bucket(self, name):
            assert name == "state-b"
            return Bucket()

    class Jobs:
        requests = []

        def run_job(self, request):
            self.requests.append(request)

    jobs = Jobs()
    started = backfill.start_cloud_run(
        ["a", "b", "c"],
        "",
        8,
        environ={"RUN_JOB": "projects/p/locations/l/jobs/j", "STATE_BUCKET": "state-b"},
        storage_client=Storage(),
        jobs_client=jobs,
    )
    ((name, doc),) = written.items()
    assert name.startswith("backfill/") and doc["slugs"] == ["a", "b", "c"] and doc["prefix"] == ""
    assert started.startswith(f"gs://state-b/{name}")
    (req,) = jobs.requests
    assert isinstance(req, run_v2.RunJobRequest) and req.name == "projects/p/locations/l/jobs/j"
    assert req.overrides.task_count == 3  # never more tasks than slugs
    (env,) = [list(c.env) for c in req.overrides.container_overrides]
    assert [(e.name, e.value) for e in env] == [("PARTYBAL_SLUGS_URI", f"gs://state-b/{name}")]
    assert layout.backfill_list_name("x-1") == "backfill/x-1.json"
    assert layout.parse_state_name(name) is None  # the TOC ignores slug lists

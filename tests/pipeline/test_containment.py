"""Failure containment (issue 14), unit level: no emulators, no R unless marked.

Every failure ends in a status or one line; bounds are settings; a render touches nothing that is
not its own; ambiguous file names are decided by the listing; our own state is read defensively.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from partybal import layout
from partybal.errors import ConfigError, InputError
from partybal.local import preview
from partybal.page import render, report
from partybal.page.results import load_experiment
from partybal.pipeline import dispatch, status, toc
from partybal.pipeline.state import Experiment, Listed, group_results
from partybal.storage import LocalResults, SizeLimits, check_sizes, list_experiment_objects
from tests.helpers import unavailable
from tests.support import synthetic

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"
LATE = "9999-12-31T23:59:59-01:00"  # no UTC value: year 10000
EARLY = "0001-01-01T00:00:00+01:00"  # no UTC value: year 0


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def tiny(root: Path, slug: str, **overrides) -> dict[str, bytes]:
    files = synthetic.experiment_files(synthetic.tiny_spec(slug))
    files.update(overrides)
    write_files(root, files)
    return files


# --- 1. timestamps without a UTC value render -------------------------------------------------


def test_times_without_a_utc_value_are_shown_as_written():
    late, early = dt.datetime.fromisoformat(LATE), dt.datetime.fromisoformat(EARLY)
    with pytest.raises(OverflowError):
        late.astimezone(dt.UTC)  # what every formatter did
    assert status.iso(late) == LATE and status.iso(early) == EARLY
    assert report.fmt_time(late) == "9999-12-31 23:59-01:00" and report.fmt_time(early) == "0001-01-01 00:00+01:00"
    assert toc._fmt_time(early) == "0001-01-01 00:00+01:00"
    assert (
        status.iso(dt.datetime(2024, 5, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2))))
        == "2024-05-01T12:00:00+00:00"
    )


def test_overflowing_timestamps_from_the_corpus_build_a_page(tmp_path):
    fslug = "ovf_times"
    tiny(
        tmp_path,
        fslug,
        **{
            layout.results_name(layout.Kind.METADATA, fslug): (CORPUS / "overflow_time_metadata.json").read_bytes(),
            layout.results_name(layout.Kind.ERRORS, fslug): (CORPUS / "overflow_time_errors.json").read_bytes(),
        },
    )
    results = load_experiment(LocalResults(tmp_path), fslug)
    page, _ = report.build_page(results)  # raised OverflowError before
    fields = status.results_fields(results)
    assert fields["analysis_start"] == LATE
    html = json.dumps(page, default=lambda o: getattr(o, "__dict__", str(o)))
    assert "9999-12-31 23:59-01:00" in html and "0001-01-01 00:00+01:00" in html


# --- 1. preview: one line per failed experiment, the index always -------------------------------


def test_preview_goes_on_after_any_failure_and_writes_its_index(tmp_path, monkeypatch, capsys):
    res = tmp_path / "results"
    tiny(res, "bug")
    tiny(res, "broken", **{layout.results_name(layout.Kind.STATISTICS, "broken", "overall"): b"[{"})
    real_build = render.build

    def build(results, workdir, **kw):
        if results.file_slug == "bug":
            raise OverflowError("date value out of range")
        return real_build(results, workdir, **kw)

    monkeypatch.setattr(render, "build", build)
    index, outcomes = preview.run_preview(res, out_root=tmp_path / "out", now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    got = {o.file_slug: o.error for o in outcomes}
    assert got["bug"] == "render error: OverflowError: date value out of range"
    assert got["broken"].startswith("statistics/statistics_broken_overall.json: not valid JSON")
    html = index.read_text()
    assert index.exists() and "render error: OverflowError" in html and "not valid JSON" in html

    class Args:
        results, slug, out, cores, open = res, None, tmp_path / "out2", None, False

    assert preview.cmd_preview(Args) == 1
    err = capsys.readouterr().err
    failed_lines = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(failed_lines) == 2 and all("\n" not in line for line in failed_lines)


# --- 2. publishing locally touches only what renders wrote --------------------------------------


def fake_build(tmp: Path, fslug: str, rid: str) -> render.BuiltPage:
    work = tmp / f"work-{rid}"
    (work / layout.assets_dir(fslug, rid)).mkdir(parents=True)
    (work / layout.assets_dir(fslug, rid) / "fig-1.png").write_bytes(b"png")
    (work / layout.page_name(fslug)).write_text(f"<p>{rid}</p>")
    return render.BuiltPage(
        work, fslug, rid, layout.page_name(fslug), [f"{layout.assets_dir(fslug, rid)}/fig-1.png"], 1, None, 0.0
    )


RIDS = ["20260101T000000Z-aaaaaa", "20260101T000001Z-bbbbbb", "20260101T000002Z-cccccc"]


def test_publish_local_never_deletes_what_it_did_not_create(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    root = out / layout.assets_root("exp")
    root.mkdir(parents=True)  # a folder the renderer did not make, with somebody's files in it
    (root / "notes.txt").write_text("mine")
    (root / "20250101T000000Z-dddddd").mkdir()  # looks like a render folder, was never ours
    (root / "20250101T000000Z-dddddd" / "x.png").write_bytes(b"x")
    (root / "link").symlink_to(elsewhere, target_is_directory=True)
    render.publish_local(fake_build(tmp_path, "exp", RIDS[0]), out)
    render.publish_local(fake_build(tmp_path, "exp", RIDS[1]), out)
    # a manifest entry pointing at a symlink planted where a render folder was
    shutil.rmtree(root / RIDS[1])
    (root / RIDS[1]).symlink_to(elsewhere, target_is_directory=True)
    render.publish_local(fake_build(tmp_path, "exp", RIDS[2]), out)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["notes.txt", "20250101T000000Z-dddddd", "link", RIDS[1], RIDS[2]]
    )
    assert (root / "20250101T000000Z-dddddd" / "x.png").exists() and (root / "notes.txt").read_text() == "mine"
    assert (elsewhere / "precious.txt").read_text() == "keep me" and (root / RIDS[1]).is_symlink()
    assert (out / "exp.html").read_text() == f"<p>{RIDS[2]}</p>"
    assert render.read_manifest(out, "exp") == {"root_created": False, "renders": [RIDS[2]], "figures_created": False}


def test_publish_local_refuses_to_write_through_a_symlinked_figure_folder(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    (out / layout.assets_root("exp")).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(render.RenderError, match="is a symbolic link"):
        render.publish_local(fake_build(tmp_path, "exp", RIDS[0]), out)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]
    assert not (out / "exp.html").exists()


def test_publish_local_cleans_its_own_renders_and_ignores_a_planted_manifest_link(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "other.json").write_text('{"renders": ["20260101T000009Z-eeeeee"]}')
    render.publish_local(fake_build(tmp_path, "exp", RIDS[0]), out)
    render.publish_local(fake_build(tmp_path, "exp", RIDS[1]), out)
    root = out / layout.assets_root("exp")
    assert [p.name for p in root.iterdir()] == [RIDS[1]]  # the earlier render's folder is gone
    manifest = render.manifest_path(out, "exp")
    manifest.unlink()
    manifest.symlink_to(elsewhere / "other.json")  # planted: never read, replaced (not written through)
    (root / "20260101T000009Z-eeeeee").mkdir()
    render.publish_local(fake_build(tmp_path, "exp", RIDS[2]), out)
    assert (root / "20260101T000009Z-eeeeee").exists() and (root / RIDS[1]).exists()  # unknown: kept
    assert (elsewhere / "other.json").read_text() == '{"renders": ["20260101T000009Z-eeeeee"]}'
    assert not manifest.is_symlink()


# --- 3. the R timeout kills the whole process group; settings are one-line errors ----------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_timeout_kills_the_forked_workers_too(tmp_path):
    pidfile = tmp_path / "pids"
    script = f"sleep 300 & echo $! >> {pidfile}; (sleep 300 & echo $! >> {pidfile}; wait) & wait"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        render.run_group(["sh", "-c", script], timeout=1.5)
    assert time.monotonic() - started < 20
    time.sleep(0.3)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2 and not any(_alive(p) for p in pids), "a forked worker outlived the timeout"


@pytest.mark.r
def test_r_timeout_kills_r_and_its_mclapply_workers(tmp_path, monkeypatch):
    if not shutil.which("Rscript"):
        unavailable("R is not installed")
    pidfile = tmp_path / "workers"
    code = f"invisible(parallel::mclapply(1:2, function(i) {{ cat(Sys.getpid(), '\\n', file='{pidfile}', append=TRUE); Sys.sleep(300) }}, mc.cores=2))"
    with pytest.raises(subprocess.TimeoutExpired):
        render.run_group(["Rscript", "--vanilla", "-e", code], timeout=8)
    time.sleep(0.5)
    pids = [int(p) for p in pidfile.read_text().split()] if pidfile.exists() else []
    assert pids, "R did not start its workers within the timeout (slow machine?)"
    assert not any(_alive(p) for p in pids), "an R worker outlived PARTYBAL_R_TIMEOUT"


@pytest.mark.parametrize(
    "name,value", [("PARTYBAL_R_TIMEOUT", "15m"), ("PARTYBAL_R_TIMEOUT", "0"), ("PARTYBAL_MAX_FIGURES", "lots")]
)
def test_malformed_render_settings_are_one_line_config_errors(monkeypatch, name, value, tmp_path):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        render.check_settings() if name == "PARTYBAL_R_TIMEOUT" else render.max_figures()
    if name == "PARTYBAL_R_TIMEOUT":
        env = {**os.environ, name: value, "PYTHONPATH": str(ROOT)}
        tiny(tmp_path / "res", "cfg")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "partybal",
                "render",
                "cfg",
                "--results",
                str(tmp_path / "res"),
                "--out",
                str(tmp_path / "o"),
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and name in proc.stderr, proc.stderr


def test_too_many_figures_fail_before_r_starts(tmp_path, monkeypatch):
    write_files(tmp_path, synthetic.experiment_files(synthetic.small_spec("many")))
    monkeypatch.setenv("PARTYBAL_MAX_FIGURES", "2")
    monkeypatch.setattr(render, "knit", lambda *a, **k: pytest.fail("R started"))
    with pytest.raises(
        render.RenderError, match=r"the page would draw \d+ figures, over the limit of 2 \(PARTYBAL_MAX_FIGURES\)"
    ):
        render.build(load_experiment(LocalResults(tmp_path), "many"), tmp_path / "w")


# --- 6. input size limits, from the listing, before any download ---------------------------------


def test_input_size_limits_are_checked_from_the_listing_before_reading(tmp_path, monkeypatch):
    files = tiny(tmp_path, "sized")
    source = LocalResults(tmp_path)
    monkeypatch.setattr(LocalResults, "read", lambda self, info: pytest.fail(f"downloaded {info.name}"))
    biggest = max(files, key=lambda n: len(files[n]))
    monkeypatch.setenv("PARTYBAL_MAX_FILE_BYTES", str(len(files[biggest]) - 1))
    with pytest.raises(InputError) as exc:
        load_experiment(source, "sized")
    assert str(exc.value).startswith(biggest + ": file is") and "PARTYBAL_MAX_FILE_BYTES" in str(exc.value)
    monkeypatch.setenv("PARTYBAL_MAX_FILE_BYTES", str(10**9))
    monkeypatch.setenv("PARTYBAL_MAX_EXPERIMENT_BYTES", str(sum(map(len, files.values())) - 1))
    with pytest.raises(InputError, match=r"over the limit of .* per experiment \(PARTYBAL_MAX_EXPERIMENT_BYTES\)"):
        load_experiment(source, "sized")
    monkeypatch.setenv("PARTYBAL_MAX_EXPERIMENT_BYTES", "1GB")
    with pytest.raises(ConfigError, match="PARTYBAL_MAX_EXPERIMENT_BYTES must be a whole number"):
        SizeLimits.from_env()


def test_a_local_file_that_grew_after_the_listing_is_read_no_further_than_the_limit(tmp_path, monkeypatch):
    files = tiny(tmp_path, "grows")
    source = LocalResults(tmp_path)
    name = layout.results_name(layout.Kind.ERRORS, "grows")
    (info,) = [i for i in source.list("errors/errors_grows") if i.name == name]
    monkeypatch.setenv("PARTYBAL_MAX_FILE_BYTES", str(len(files[name]) + 10))
    check_sizes([info])
    (tmp_path / name).write_bytes(files[name] + b" " * 100)
    with pytest.raises(InputError, match="grew over the limit"):
        source.read(info)


# --- 4. file names without ambiguity -----------------------------------------------------------


def names(*items):
    return [Listed(n, i + 1, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) for i, n in enumerate(items)]


AMBIGUOUS = "statistics/statistics_study_preenrollment_weekly.json"


@pytest.mark.parametrize(
    "others,owner",
    [
        (["metadata/metadata_study_preenrollment.json"], ("study_preenrollment", "weekly")),
        (["statistics/statistics_study_preenrollment_overall.json"], ("study_preenrollment", "weekly")),
        (
            ["metadata/metadata_study.json", "statistics/statistics_study_overall.json"],
            ("study", "preenrollment_weekly"),
        ),
        (["metadata/metadata_study.json", "metadata/metadata_study_preenrollment.json"], None),  # both: undecidable
        ([], None),  # neither
    ],
)
def test_the_listing_decides_an_ambiguous_statistics_name(others, owner, caplog):
    blob = layout.parse_results_name(AMBIGUOUS)
    assert set(blob.readings) == {("study", "preenrollment_weekly"), ("study_preenrollment", "weekly")}
    got = group_results(names(AMBIGUOUS, *others), "")
    holders = {fs: e.periods for fs, e in got.items() if AMBIGUOUS in e.generations}
    if owner is None:
        assert holders == {}
        assert any(
            "ambiguous statistics name" in r.getMessage() and AMBIGUOUS in r.getMessage() for r in caplog.records
        )
    else:
        assert list(holders) == [owner[0]] and owner[1] in holders[owner[0]]


def test_an_experiment_ending_in_preenrollment_keeps_its_weekly_file(tmp_path):
    """``study-preenrollment`` alone: its weekly file was read as ``study``'s pre-enrollment weekly
    file (an experiment that does not exist, listed in the TOC and rendered from a stolen file)."""
    write_files(tmp_path, synthetic.experiment_files(synthetic.tiny_spec("study-preenrollment")))
    source = LocalResults(tmp_path)
    mine, _ = list_experiment_objects(source, "study_preenrollment")
    assert {(b.file_slug, b.period) for b, _ in mine if b.name == AMBIGUOUS} == {("study_preenrollment", "weekly")}
    theirs, _ = list_experiment_objects(source, "study")
    assert theirs == []
    assert "weekly" in load_experiment(source, "study-preenrollment").statistics
    assert preview.discover(source) == ["study_preenrollment"]
    # ``study`` appears with files of its own: the shared name can no longer be decided; it is
    # given to neither, and said so
    write_files(
        tmp_path,
        {n: d for n, d in synthetic.experiment_files(synthetic.tiny_spec("study")).items() if "_weekly" not in n},
    )
    mine, skipped = list_experiment_objects(source, "study_preenrollment")
    assert AMBIGUOUS not in {info.name for _, info in mine}
    assert [why for name, why in skipped if name == AMBIGUOUS][0].startswith("ambiguous statistics name")
    assert AMBIGUOUS not in {info.name for _, info in list_experiment_objects(source, "study")[0]}


# --- 5. our own state, written by another version or corrupted ----------------------------------


@pytest.mark.parametrize(
    "record,problem",
    [(c["record"], c["problem"]) for c in json.loads((CORPUS / "status_records.json").read_text())],
)
def test_status_records_of_another_shape_are_named_not_crashed_on(record, problem):
    assert problem in status.record_problem(record)
    exp = Experiment("e", {"a": 12}, {"overall"}, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    row = toc.make_row(
        exp,
        record if isinstance(record, dict) else {"state": "unknown", "reason": status.record_problem(record)},
        False,
        "",
    )
    assert row.state == "unknown" and problem in row.reason


def test_int_readers_accept_only_ascii_digits():
    assert [status.as_int(v) for v in (12, "12", " 7 ", "١٢", "²", "-1", True, None, "1e3", 2**70)] == [
        12,
        12,
        7,
        None,
        None,
        None,
        None,
        None,
        None,
        2**70,
    ]


def test_dispatch_ignores_a_generation_attribute_in_other_digits():
    request = dispatch.RenderRequest("exp", "exp", "", {"generation": "²"})

    class Unused:
        def blob(self, name):
            raise AssertionError("must not touch the marker")

    assert dispatch.mark_dispatched(Unused(), request, "projects/p/locations/l/jobs/j/executions/e") is False


def test_killed_reason_and_record():
    assert status.killed_reason("0", "4") == "killed (attempt 1 of 4)"
    assert status.killed_reason("x", None) == "killed (attempt ? of ?)"
    previous = {
        "state": "ok",
        "page": "e.html",
        "page_rendered_at": "2026-01-01T00:00:00+00:00",
        "name": "e",
        "input_generations": {"a": 1},
    }
    rec = status.killed_record(
        previous,
        {"attempt": "3", "max_attempts": "4", "run_id": "R"},
        "e",
        "e",
        "",
        dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    )
    assert (
        rec["state"] == "failed"
        and rec["reason"] == "killed (attempt 4 of 4)"
        and rec["page"] == "e.html"
        and rec["run_id"] == "R"
    )
    assert status.record_problem(rec) == ""


# --- 6. no super-linear page model on data-sized inputs ----------------------------------------


def _row(metric, statistic, branch, window, point=1.0):
    return {
        "metric": metric,
        "statistic": statistic,
        "branch": branch,
        "parameter": None,
        "comparison": None,
        "comparison_to_branch": None,
        "ci_width": 0.95,
        "point": point,
        "lower": None,
        "upper": None,
        "segment": "all",
        "analysis_basis": "enrollments",
        "window_index": str(window),
    }


def _cells(page) -> int:
    """Table cells and figure window entries in a page model (what grows with the data)."""
    n = 0
    stack = [page]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            n += len(obj)
            stack.extend(obj)
        elif hasattr(obj, "__dataclass_fields__"):
            stack.extend(getattr(obj, f) for f in obj.__dataclass_fields__)
    return n


@pytest.mark.parametrize("windows", [50, 200])
def test_one_count_metric_per_window_gives_a_linear_page(tmp_path, windows):
    """Each weekly window with its own ``count`` metric: every table had a column per window of the
    view, so the page model grew with windows² (1,500 rows → over 2 GB)."""
    fslug = "countwin"
    rows = [_row(f"m{w}", "count", b, w) for w in range(1, windows + 1) for b in ("control", "treatment")]
    write_files(tmp_path, {layout.results_name(layout.Kind.STATISTICS, fslug, "weekly"): json.dumps(rows).encode()})
    page, figures = report.build_page(load_experiment(LocalResults(tmp_path), fslug))
    size = _cells(page)
    assert size < 60 * len(rows), f"{size} page-model entries for {len(rows)} rows"


def test_outcomes_naming_many_metrics_group_correctly(tmp_path):
    fslug = "outc"
    names = [f"metric_{i}" for i in range(3000)]
    md = json.loads(
        synthetic.experiment_files(synthetic.tiny_spec(fslug))[layout.results_name(layout.Kind.METADATA, fslug)]
    )
    md["outcomes"] = {
        "big": {
            "slug": "big",
            "friendly_name": "Big outcome",
            "description": "d",
            "metrics": names,
            "default_metrics": [],
        },
    }
    rows = [_row(n, "count", "control", 1) for n in names[::100]] + [_row("other", "count", "control", 1)]
    write_files(
        tmp_path,
        {
            layout.results_name(layout.Kind.STATISTICS, fslug, "overall"): json.dumps(rows).encode(),
            layout.results_name(layout.Kind.METADATA, fslug): json.dumps(md).encode(),
        },
    )
    results = load_experiment(LocalResults(tmp_path), fslug)
    groups = report._Metrics(results.metadata).groups(sorted({r["metric"] for r in rows}))
    assert [(t, len(ms)) for t, _, ms in groups] == [("Outcome: Big outcome", 30), ("Other metrics", 1)]

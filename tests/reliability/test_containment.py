"""Case 9: failure containment (issue 14) — every failure ends in a visible status, within stated
bounds, touching nothing but its own objects.

Through the local stack: timestamps without a UTC value, a file over the input size limit, a page
over the figure limit, a slug ending in ``-preenrollment``, status records of another version or
corrupted. Through the command line (real R): an output folder with planted symlinks and foreign
files, and the R timeout with its forked figure workers. Killed jobs: ``test_crash.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from partybal import layout
from partybal.pipeline import status
from tests.reliability import support
from tests.support import synthetic

pytestmark = pytest.mark.emulators
ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"
P = "rel_k_"


def tiny(slug: str, **replace: bytes) -> dict[str, bytes]:
    files = support.tiny_experiment(slug)
    files.update(replace)
    return files


def test_contained_failures_through_the_stack(rstack, evidence):
    s = rstack
    support.wait_quiet(s)
    offsets = support.log_offsets(s)
    fs = {case: P + case for case in ("times", "too_big", "too_many_figures", "study_preenrollment", "corrupt_status")}
    md = layout.results_name(layout.Kind.METADATA, fs["times"])
    errs = layout.results_name(layout.Kind.ERRORS, fs["times"])
    file_limit, figure_limit = 1000, 1
    s.configure_run(
        env_for_slug={
            fs["too_big"]: {"PARTYBAL_MAX_FILE_BYTES": str(file_limit)},
            fs["too_many_figures"]: {"PARTYBAL_MAX_FIGURES": str(figure_limit)},
        }
    )
    try:
        support.upload(
            s,
            tiny(
                fs["times"],
                **{
                    md: (CORPUS / "overflow_time_metadata.json").read_bytes(),
                    errs: (CORPUS / "overflow_time_errors.json").read_bytes(),
                },
            ),
        )
        support.upload(s, tiny(fs["too_big"]))
        support.upload(s, support.small_experiment(fs["too_many_figures"]))
        support.upload(
            s, tiny("rel-k-study-preenrollment")
        )  # file slug rel_k_study_preenrollment: its weekly file reads two ways
        support.upload(s, tiny(fs["corrupt_status"]))
        support.wait_until(
            lambda: all(s.status_record(f) for f in fs.values()) and not support.busy(s),
            300,
            what="a status for every case",
        )
        support.wait_quiet(s)
    finally:
        s.configure_run(env_for_slug={})
    sizes = {
        b.name: b.size
        for b in s.storage().list_blobs(
            s.storage().bucket(s.results_bucket), prefix="statistics/statistics_" + fs["too_big"]
        )
    }

    # a status record of another version, or corrupted: the TOC says unknown, nothing crashes
    state = s.storage().bucket(s.state_bucket)
    corrupt = state.blob(layout.status_name(fs["corrupt_status"]))
    record = s.status_record(fs["corrupt_status"])
    record.pop("_updated", None)
    record["input_generations"] = {
        k: "²" for k in record["input_generations"]
    }  # '²'.isdigit() is True; int('²') raises
    corrupt.metadata = status.toc_metadata(record)
    corrupt.upload_from_string(json.dumps(record))  # triggers a TOC rebuild
    html = support.wait_until(
        lambda: (h := support.index_html(s)) and support.toc_state(h, fs["corrupt_status"]) == "unknown" and h,
        60,
        what="the TOC row of the corrupted record",
    )

    rows = support.toc_rows(html)
    records = {case: s.status_record(f) for case, f in fs.items()}
    outcomes = {
        case: (r["state"] if r["state"] == "ok" else f"failed: {r['reason']}")
        for case, r in records.items()
        if case != "corrupt_status"
    }
    assert records["times"]["state"] == "ok" and records["times"]["analysis_start"] == "9999-12-31T23:59:59-01:00"
    assert rows[fs["times"]] == "ok"
    too_big = records["too_big"]["reason"]
    named = re.match(
        r"(statistics/statistics_rel_k_too_big_[a-z0-9_]+\.json): file is (\d+) bytes, over the limit of 1000 bytes per file \(PARTYBAL_MAX_FILE_BYTES\)\Z",
        too_big,
    )
    assert named and sizes[named.group(1)] == int(named.group(2)) > file_limit, too_big
    assert re.fullmatch(
        r"the page would draw \d+ figures, over the limit of 1 \(PARTYBAL_MAX_FIGURES\)",
        records["too_many_figures"]["reason"],
    )
    assert rows[fs["too_big"]] == "failed" and rows[fs["too_many_figures"]] == "failed"
    pre = records["study_preenrollment"]
    assert pre["state"] == "ok" and "weekly" in pre["windows"] and rows[fs["study_preenrollment"]] == "ok"
    assert layout.results_name(layout.Kind.STATISTICS, fs["study_preenrollment"], "weekly") in pre["input_generations"]
    assert "rel_k_study" not in rows, "the weekly file made up an experiment"
    stolen = s.status_record("rel_k_study")  # the finalize event reads the name alone (events.py): a render of nothing
    for case in ("too_big", "too_many_figures"):
        exs = support.executions_for(s, fs[case])
        assert all(len(e["attempts"]) <= 4 for e in exs)
    s.check_alive()
    assert support.tracebacks(s, offsets) == {fn: 0 for fn in offsets}
    evidence.row(
        "9 containment: inputs",
        "timestamps without a UTC value (9999-12-31T23:59:59-01:00 start, 0001-01-01T00:00:00+01:00 errors); a statistics file over PARTYBAL_MAX_FILE_BYTES=1000; "
        "a page over PARTYBAL_MAX_FIGURES=1; a slug ending in -preenrollment (its weekly file reads as two experiments)",
        1,
        "timestamps render (shown as written); each bound breached ends in status failed naming the file/limit, TOC failed, ≤ 4 attempts; "
        "the -preenrollment experiment keeps its weekly file and no other experiment appears in the TOC; 0 tracebacks",
        "; ".join(f"{k}: {v[:140]}" for k, v in outcomes.items())
        + f"; name read alone by the finalize event: {'a failed render of rel_k_study (' + stolen['reason'][:60] + ')' if stolen else 'no render'}",
    )
    evidence.row(
        "9 containment: our own state",
        "a status record whose input generations are '²' (isdigit() but not int()), written over a real one",
        1,
        "TOC rebuilt, row 'unknown' with the reason; functions up, 0 tracebacks",
        f"TOC row: {support.toc_state(html, fs['corrupt_status'])}; rows listed: {len(rows)}",
    )


def _cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "partybal", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_render_touches_nothing_that_is_not_its_own(tmp_path, evidence):
    res, out, elsewhere = tmp_path / "results", tmp_path / "out", tmp_path / "elsewhere"
    synthetic.write_experiment(res, synthetic.tiny_spec("own"))
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    out.mkdir()
    root = out / layout.assets_root("own")
    # 1. the figure folder is a symlink out of --out: refused, the target untouched
    root.symlink_to(elsewhere, target_is_directory=True)
    refused = _cli(["render", "own", "--results", str(res), "--out", str(out)])
    assert (
        refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1 and "symbolic link" in refused.stderr
    )
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"] and not (out / "own.html").exists()
    root.unlink()
    # 2. a folder somebody else made, with their files and a symlink in it: two renders keep them all
    root.mkdir()
    foreign = {"notes.txt": "mine", "20250101T000000Z-dddddd/x.png": "x"}
    for rel, text in foreign.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "link").symlink_to(elsewhere, target_is_directory=True)
    (out / "unrelated.html").write_text("other page")
    for _ in range(2):
        done = _cli(["render", "own", "--results", str(res), "--out", str(out)])
        assert done.returncode == 0, done.stderr
    assert all((root / rel).read_text() == text for rel, text in foreign.items())
    assert (root / "link").is_symlink() and (elsewhere / "precious.txt").read_text() == "keep me"
    assert (out / "unrelated.html").read_text() == "other page"
    renders = [
        p.name
        for p in root.iterdir()
        if re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", p.name) and p.name != "20250101T000000Z-dddddd"
    ]
    assert (
        len(renders) <= 1
    )  # the earlier render's folder (ours, in the manifest) was removed; tiny pages may draw none
    evidence.row(
        "9 containment: local publishing",
        "`partybal render --out DIR` with DIR/<slug>_files a symlink out of DIR; then a folder the renderer did not make, holding foreign files, a render-id-looking folder and a symlink; an unrelated page",
        2,
        "symlink: one-line error, exit 1, nothing written through it; foreign folder: every foreign file, folder and link survives two renders; only the renderer's own earlier figures are removed (manifest)",
        f"refused (exit 1): …/own_files is a {refused.stderr.strip().split(' is a ', 1)[-1][:110]}; survived: {len(foreign) + 2} of {len(foreign) + 2} foreign entries, and the link's target",
    )


def _processes_in(marker: str) -> list[int]:
    """Processes whose working directory path contains ``marker`` (deleted or not)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if marker in os.readlink(d / "cwd"):
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(d.name))
        except OSError:
            continue
    return found


@pytest.mark.r
def test_r_timeout_stops_r_and_its_figure_workers(tmp_path, evidence):
    res, out = tmp_path / "results", tmp_path / "out"
    # hundreds of figures (6 branches × 29 daily windows): R is drawing in its forked workers long
    # before the timeout, on any machine
    spec = synthetic.spec_2021()
    synthetic.write_experiment(res, spec)
    slug = spec.slug
    marker = str(out / f".partybal-{layout.file_slug(slug)}-")
    timeout = 7
    seen: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(len(_processes_in(marker)))
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        proc = _cli(
            ["render", slug, "--results", str(res), "--out", str(out), "--cores", "2"],
            env={"PARTYBAL_R_TIMEOUT": str(timeout)},
        )
    finally:
        stop.set()
        watcher.join()
    took = time.monotonic() - started
    time.sleep(1)
    left = _processes_in(marker)
    assert proc.returncode != 0, f"R drew the whole page within {timeout} s: the test needs a page R takes longer for"
    assert proc.returncode == 1 and f"R did not finish within {timeout} s (PARTYBAL_R_TIMEOUT)" in proc.stderr, (
        proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1
    assert left == [], f"R processes outlived the timeout: {left}"
    bad = _cli(["render", slug, "--results", str(res), "--out", str(out)], env={"PARTYBAL_R_TIMEOUT": "15m"})
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "PARTYBAL_R_TIMEOUT" in bad.stderr, (
        bad.stderr
    )
    evidence.row(
        "9 containment: R timeout",
        f"PARTYBAL_R_TIMEOUT={timeout} on a page R needs longer for (6 branches × 29 daily windows, forked workers); then PARTYBAL_R_TIMEOUT=15m",
        1,
        "one-line error, exit 1; no process of R's group left (working directory under the render's temp folder); malformed value: one line, exit 2",
        f"R processes seen at most {max(seen or [0])}; left after the timeout: {len(left)}; took {took:.1f} s; malformed: {bad.stderr.strip()[:100]}",
    )

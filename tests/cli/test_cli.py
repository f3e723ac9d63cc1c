"""The command line as a person types it: from another folder, with relative paths, ``~`` and
spaces, and every operator mistake answered in one line (exit 2 usage/config, 1 input), never a
traceback. Each command runs as a subprocess of the installed ``partybal`` console script."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from partybal import cli, cliargs
from tests.helpers import SAMPLE, unavailable

PARTYBAL = str(Path(sys.executable).with_name("partybal"))
SMALL = "sample-search-defaults"  # the sample's cheapest page (overall only)


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.pop(cli.DEBUG_ENV, None)
    return subprocess.run([PARTYBAL, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """A user's own folder holding a copy of the sample results, as ``sample/``."""
    shutil.copytree(SAMPLE, tmp_path / "sample")
    (tmp_path / "home").mkdir()
    return tmp_path


def one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr and len(err.splitlines()) == 1, proc.stderr
    for needle in needles:
        assert needle in err, err
    return err


# --- paths ----------------------------------------------------------------------------------------


@pytest.mark.r
def test_render_with_relative_paths_and_spaces(user_dir):
    proc = run(["render", SMALL, "--results", "sample", "--out", "my site"], cwd=user_dir)
    assert proc.returncode == 0, proc.stderr
    page = user_dir / "my site" / "sample_search_defaults.html"
    assert page.is_file() and str(page) in proc.stdout
    assert not list((user_dir / "my site").glob(".partybal-*")), "work folders left behind"


@pytest.mark.r
def test_render_out_with_tilde_from_a_subfolder(user_dir):
    elsewhere = user_dir / "deep" / "er"
    elsewhere.mkdir(parents=True)
    proc = run(
        ["render", SMALL, "--results", "../../sample", "--out", "~/site"],
        cwd=elsewhere,
        env={"HOME": str(user_dir / "home")},
    )
    assert proc.returncode == 0, proc.stderr
    assert (user_dir / "home" / "site" / "sample_search_defaults.html").is_file()


@pytest.mark.r
def test_preview_default_out_is_relative_to_the_current_folder(user_dir):
    proc = run(["preview", "--results", "sample", "--slug", SMALL], cwd=user_dir)
    assert proc.returncode == 0, proc.stderr
    pages = list((user_dir / "build" / "preview").glob("*/sample_search_defaults.html"))
    indexes = list((user_dir / "build" / "preview").glob("*/index.html"))
    assert len(pages) == 1 and len(indexes) == 1
    assert indexes[0].as_uri() in proc.stdout


@pytest.mark.r
def test_backfill_into_a_relative_folder(user_dir):
    proc = run(["backfill", "--results", "sample", "--out", "site", "--parallel", "2"], cwd=user_dir)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (user_dir / "site").glob("*.html")} == {
        "sample_new_tab_layout.html",
        "sample_search_defaults.html",
    }


PATH_TYPES = {cliargs.existing_dir, cliargs.output_dir, cliargs.results_source}
PATH_WORDS = re.compile(r"\b(folder|path|dir|directory)\b")


def _subparsers(p: argparse.ArgumentParser):
    yield p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _subparsers(child)


def test_every_path_option_is_resolved_at_the_boundary():
    """A new option that takes a path must use a path type, or it would reach R or a child
    process relative to the wrong folder."""
    offenders = []
    for p in _subparsers(cli.parser()):
        for action in p._actions:
            if not action.option_strings and action.dest in ("help", "command"):
                continue
            text = f"{action.dest} {action.help or ''}".lower()
            if PATH_WORDS.search(text) and action.nargs != 0 and action.type not in PATH_TYPES:
                offenders.append(f"{p.prog} {'/'.join(action.option_strings) or action.dest}")
    assert not offenders, offenders


def test_paths_are_absolute_after_parsing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "res").mkdir()
    args = cli.parser().parse_args(["backfill", "--results", "res", "--out", "o u t"])
    assert args.results == str(tmp_path / "res") and args.out == tmp_path / "o u t"
    args = cli.parser().parse_args(["preview", "--results", "res"])
    assert args.out == tmp_path / "build" / "preview"
    args = cli.parser().parse_args(["local", "up", "--data", "res", "--dir", "state"])
    assert args.data == tmp_path / "res" and args.dir == tmp_path / "state"


# --- one line, never a traceback ------------------------------------------------------------------

NO_GOOGLE = {  # no credentials, and google-auth must not probe a metadata server off this machine
    "GOOGLE_APPLICATION_CREDENTIALS": "",
    "STORAGE_EMULATOR_HOST": "",
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
}


@pytest.mark.parametrize(
    "args, code, needles",
    [
        (
            ["render", SMALL, "--results", "sample", "--out", "a-file"],
            2,
            ["--out", "a-file", "is a file, not a folder"],
        ),
        (
            ["render", SMALL, "--results", "sample", "--out", "/proc/partybal-out"],
            2,
            ["cannot create --out /proc/partybal-out"],
        ),
        (["render", SMALL, "--results", "sample", "--out", "a-file/below"], 2, ["a-file/below", "Not a directory"]),
        (["render", SMALL, "--results", "nowhere", "--out", "site"], 2, ["--results", "no such folder", "nowhere"]),
        (["render", SMALL, "--results", "a-file", "--out", "site"], 2, ["--results", "is a file, not a folder"]),
        (["render", SMALL, "--results", "gs://", "--out", "site"], 2, ["no bucket"]),
        (["render", "x" * 300, "--results", "sample", "--out", "site"], 2, ["not an experiment slug"]),
        (["render", SMALL, "--results", "sample", "--out", "site", "--cores", "0"], 2, ["--cores", "less than 1"]),
        (["render", "no-such-experiment", "--results", "sample", "--out", "site"], 1, ["no_such_experiment"]),
        (["backfill", "--results", "sample", "--parallel", "x"], 2, ["--parallel", "not a whole number"]),
        (["backfill", "--results", "sample"], 2, ["--out"]),
        (["preview", "--results", "sample", "--out", "a-file"], 2, ["is a file, not a folder"]),
        (["local", "up", "--dir", "."], 2, ["not made by `partybal local up`"]),
        (["local", "up", "--data", "nowhere"], 2, ["no such folder"]),
        (["rerender", "y" * 300], 2, ["not an experiment slug"]),
        (["nonsense"], 2, ["invalid choice"]),
    ],
    ids=lambda v: (
        " ".join(a[:20] for a in v)
        if isinstance(v, list) and all(isinstance(a, str) for a in v) and "render" not in v[1:]
        else None
    ),
)
def test_operator_mistakes_are_one_line(user_dir, args, code, needles):
    (user_dir / "a-file").write_text("not a folder")
    proc = run(args, cwd=user_dir, env=NO_GOOGLE)
    one_line_error(proc, code, *needles)


def test_gs_results_without_credentials(user_dir):
    proc = run(["render", SMALL, "--results", "gs://some-bucket/prefix", "--out", "site"], cwd=user_dir, env=NO_GOOGLE)
    one_line_error(proc, 2, "credentials", "gcloud auth application-default login")


def test_r_timeout_that_is_not_a_number(user_dir):
    proc = run(
        ["render", SMALL, "--results", "sample", "--out", "site"],
        cwd=user_dir,
        env={"PARTYBAL_R_TIMEOUT": "ten minutes"},
    )
    one_line_error(proc, 2, "PARTYBAL_R_TIMEOUT", "ten minutes")


def test_file_time_that_is_not_a_date(user_dir):
    shm = Path("/dev/shm")
    if not shm.is_dir():
        unavailable("no tmpfs at /dev/shm to hold a file time beyond year 9999")
    results = Path(shutil.copytree(SAMPLE, shm / f"partybal-test-{os.getpid()}"))
    try:
        bad = results / "metadata" / "metadata_sample_search_defaults.json"
        os.utime(bad, (1e15, 1e15))
        if os.stat(bad).st_mtime < 1e14:
            unavailable("/dev/shm cannot hold a file time beyond year 9999")
        proc = run(["render", SMALL, "--results", str(results), "--out", "site"], cwd=user_dir)
        one_line_error(proc, 1, str(bad), "is not a date")
    finally:
        shutil.rmtree(results)


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something\nbroke")

    args = argparse.Namespace(command="render", func=boom)
    assert cli.run(args) == 1
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"partybal render: error: RuntimeError: something broke (set {cli.DEBUG_ENV}=1 for the traceback)"
    )
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(RuntimeError):
        cli.run(args)


def test_interrupt_is_one_line(capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    assert cli.run(argparse.Namespace(command="preview", func=interrupted)) == 130
    assert capsys.readouterr().err.strip() == "partybal preview: interrupted"

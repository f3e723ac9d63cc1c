"""Docs are tests: every command in a shell block of README.md and docs/*.md is run here exactly as
written — or listed in SKIPPED with the reason it cannot run on this machine — and the output the
docs promise is checked. Editing a documented command without updating this file fails
``test_every_documented_command_is_accounted_for``; a command that stops working fails its run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, SAMPLE, missing_tools, unavailable, wait_until

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^[ \t]*```(?:sh|bash|shell|console)\n(.*?)^[ \t]*```", re.S | re.M)


@dataclass(frozen=True)
class Command:
    doc: str  # file name relative to the repository
    line: int
    text: str  # as written (continuation lines kept), without trailing comments
    block: str  # the whole shell block it stands in


def _strip_comment(line: str) -> str:
    """``cmd args   # comment`` → ``cmd args`` (a ``#`` inside quotes is kept)."""
    for m in re.finditer(r"\s#", line):
        head = line[: m.start()]
        try:
            shlex.split(head)
        except ValueError:  # inside quotes
            continue
        return head.rstrip()
    return line.rstrip()


def documented_commands() -> list[Command]:
    out = []
    for path in DOCS:
        text = path.read_text()
        for m in SHELL_BLOCK.finditer(text):
            first = text[: m.start()].count("\n") + 2
            block = textwrap.dedent(m.group(1))
            lines = block.splitlines()
            i = 0
            while i < len(lines):
                start = i
                parts = [lines[i]]
                while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    parts.append(lines[i])
                i += 1
                cmd = "\n".join(
                    _strip_comment(p) if not p.rstrip().endswith("\\") else p.rstrip() for p in parts
                ).strip()
                if cmd and not cmd.startswith("#"):
                    out.append(Command(path.relative_to(ROOT).as_posix(), first + start, cmd, block))
    return out


def key(cmd: str) -> str:
    """A command's identity: its words, however the lines are broken."""
    return " ".join(cmd.replace("\\\n", " ").split())


# --- what each documented command is ---------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    scenario: str  # "user": a folder holding .venv and sample/; "demo": while `make demo` serves;
    # "repo": a copy of the repository, in the docs' order (export lines carry over)
    expect: str = ""  # a regex its output must match


@dataclass(frozen=True)
class Skip:
    reason: str


NEEDS_GCP = "needs a GCP project, credentials and the network (not reachable here)"

COMMANDS: dict[str, Run | Skip] = {
    # README.md
    "make demo": Run("demo", r"partybal: site: http://127\.0\.0\.1:\d+/"),
    "make test": Skip("the test suite itself: running it from a test would recurse (CI runs it)"),
    ".venv/bin/partybal render sample-new-tab-layout --results sample --out site": Run(
        "user", r"/site/sample_new_tab_layout\.html  \(\d+ figures, [\d.]+ s; \d+ drawn, \d+ reused\)"
    ),
    ".venv/bin/partybal preview --results sample": Run(
        "user", r"index: file:///\S+/build/preview/\d{8}T\d{6}Z/index\.html"
    ),
    ".venv/bin/partybal backfill --results sample --out site --parallel 2": Run(
        "user", r"backfill: 2 ok, 0 failed of 2 in [\d.]+ s"
    ),
    "source build/local/run/env.sh": Run("demo"),
    ".venv/bin/partybal rerender sample-new-tab-layout": Run("demo", r"render of sample_new_tab_layout requested"),
    "gcloud pubsub topics publish render-requests --message=sample-new-tab-layout": Run("demo", r"messageIds"),
    # docs/architecture.md
    ".venv/bin/partybal rerender sample-search-defaults": Run("demo", r"render of sample_search_defaults requested"),
    "gcloud pubsub topics publish render-requests --message=sample-search-defaults": Run("demo", r"messageIds"),
    "GOOGLE_CLOUD_PROJECT=my-project .venv/bin/partybal rerender my-experiment-slug": Skip(NEEDS_GCP),
    "make image-local": Skip(
        "tests/e2e/test_job_image.py runs it with its own IMAGE_LOCAL tag (a podman build, as root, minutes)"
    ),
    "make demo PARTYBAL_JOB_IMAGE=localhost/partybal-renderer:local": Skip(
        "needs the image built (minutes, root): tests/e2e/test_job_image.py runs `partybal local up` with PARTYBAL_JOB_IMAGE set"
    ),
    "gcloud pubsub topics publish render-requests --project=my-project --message=my-experiment-slug": Skip(NEEDS_GCP),
    # docs/deploy.md: the commands that need no cloud run in a copy of the repository, in order
    "gcloud auth login": Skip("an interactive Google sign-in"),
    "gcloud auth application-default login": Skip("an interactive Google sign-in"),
    "export PROJECT=my-project REGION=us-central1 RESULTS_BUCKET=my-jetstream-results": Run("repo"),
    'gcloud services enable cloudresourcemanager.googleapis.com serviceusage.googleapis.com --project "$PROJECT"': Skip(
        NEEDS_GCP
    ),
    "cp terraform/example.tfvars my.tfvars": Run("repo"),
    "make bundle": Run("repo"),
    "make lint-terraform": Run("repo"),
    'make deploy PROJECT="$PROJECT" REGION="$REGION" RESULTS_BUCKET="$RESULTS_BUCKET" TF_VAR_FILE=my.tfvars': Skip(
        NEEDS_GCP + "; tests/deploy/test_terraform.py checks what it would run (make -n)"
    ),
    "terraform -chdir=terraform output": Skip("reads the state of a real apply"),
    'gcloud storage cp --recursive sample/statistics sample/metadata sample/errors "gs://$RESULTS_BUCKET/"': Skip(
        NEEDS_GCP
    ),
    'gcloud run jobs executions list --job partybal-render --region "$REGION" --project "$PROJECT"': Skip(NEEDS_GCP),
    "terraform -chdir=terraform output -raw site_url": Skip("reads the state of a real apply"),
    'gcloud pubsub topics publish render-requests --message=my-experiment --project "$PROJECT"': Skip(NEEDS_GCP),
    "terraform -chdir=terraform output -raw rerender_command": Skip("reads the state of a real apply"),
    'export GOOGLE_CLOUD_PROJECT="$PROJECT" STATE_BUCKET="$(terraform -chdir=terraform output -raw state_bucket)" '
    'RUN_JOB="$(terraform -chdir=terraform output -raw run_job)"': Skip("reads the state of a real apply"),
    'make backfill BACKFILL_ARGS="--parallel 20"': Skip(NEEDS_GCP + " (starts a Cloud Run execution)"),
    'make backfill BACKFILL_ARGS="--only-stale --parallel 20"': Skip(NEEDS_GCP + " (starts a Cloud Run execution)"),
    'make backfill BACKFILL_ARGS="--results sample --out build/site --parallel 2"': Run(
        "repo", r"backfill: 2 ok, 0 failed of 2 in [\d.]+ s"
    ),
    'make deploy PROJECT="$PROJECT" REGION="$REGION" RESULTS_BUCKET="$RESULTS_BUCKET" TF_VAR_FILE=my.tfvars '
    'IMAGE="$REGION-docker.pkg.dev/$PROJECT/partybal/renderer:0123456789ab"': Skip(NEEDS_GCP),
    'export SITE_BUCKET="$(terraform -chdir=terraform output -raw site_bucket)"': Skip(
        "reads the state of a real apply"
    ),
    'gcloud storage ls --all-versions "gs://$SITE_BUCKET/my_experiment.html"': Skip(NEEDS_GCP),
    'gcloud storage cp "gs://$SITE_BUCKET/my_experiment.html#1700000000000000" "gs://$SITE_BUCKET/my_experiment.html"': Skip(
        NEEDS_GCP
    ),
    """gcloud logging read 'jsonPayload.slug="my_experiment_slug"' --project "$PROJECT" --freshness 1d""": Skip(
        NEEDS_GCP
    ),
    'gcloud pubsub subscriptions pull render-requests-dead-letter --limit 20 --auto-ack --project "$PROJECT"': Skip(
        NEEDS_GCP
    ),
    # docs/reliability.md
    "make evidence": Skip(
        "the reliability part of this suite with its slow variants (an hour on 2 cores); make test runs its fast cases"
    ),
    ".venv/bin/python benchmarks/reliability_report.py": Skip("rewrites docs/reliability.md from a finished test run"),
}


def test_every_documented_command_is_accounted_for():
    documented = {key(c.text): c for c in documented_commands()}
    unknown = [f"{c.doc}:{c.line}: {k}" for k, c in documented.items() if k not in COMMANDS]
    stale = [k for k in COMMANDS if k not in documented]
    assert not unknown, "documented commands no test runs or skips (add them to COMMANDS):\n" + "\n".join(unknown)
    assert not stale, "COMMANDS lists commands the docs no longer show:\n" + "\n".join(stale)


def test_the_parser_sees_continuations_and_comments():
    cmds = {key(c.text) for c in documented_commands()}
    assert "make demo" in cmds and "make test" in cmds  # README's block has trailing comments


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if (
            name.endswith("_EMULATOR_HOST")
            or name.startswith("CLOUDSDK_")
            or name in ("GOOGLE_CLOUD_PROJECT", "RENDER_TOPIC")
        ):
            env.pop(name)
    return env


def _bash(script: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )


def _commands(scenario: str) -> list[Command]:
    return [
        c
        for c in documented_commands()
        if isinstance(COMMANDS.get(key(c.text)), Run) and COMMANDS[key(c.text)].scenario == scenario
    ]


# --- a user's own folder: the repository's .venv and a copy of the sample -------------------------


@pytest.mark.r
@pytest.mark.parametrize("command", [c.text for c in _commands("user")], ids=lambda t: key(t)[:60])
def test_user_command_runs_as_written(tmp_path, command):
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    shutil.copytree(SAMPLE, tmp_path / "sample")
    proc = _bash(command, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(COMMANDS[key(command)].expect, out), out
    assert "Traceback" not in out


# --- the local stack: `make demo`, and the re-render blocks while it serves -----------------------


@pytest.mark.r
@pytest.mark.emulators
def test_demo_and_rerender_blocks_as_written():
    if missing_tools():
        unavailable(f"the local stack needs {', '.join(missing_tools())}")
    demo = subprocess.Popen(
        ["bash", "-c", "make demo"],
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 420
        url = None
        while time.monotonic() < deadline and demo.poll() is None:
            line = demo.stdout.readline()
            lines.append(line)
            m = re.search(COMMANDS["make demo"].expect, line)
            if m:
                url = m.group(0).split("site: ", 1)[1]
                break
        assert url, "make demo printed no site URL:\n" + "".join(lines[-40:])
        index = urllib.request.urlopen(url, timeout=10).read().decode()
        for fslug in ("sample_new_tab_layout", "sample_search_defaults"):
            assert f"{fslug}.html" in index
            page = urllib.request.urlopen(url + f"{fslug}.html", timeout=10)
            assert page.status == 200
        jobs = ROOT / "build" / "local" / "run" / "jobs"
        blocks = {c.block for c in _commands("demo") if key(c.text) != "make demo"}
        assert len(blocks) == 2, blocks  # README's and architecture.md's
        for block in sorted(blocks):
            before = len(list(jobs.glob("job-*.log")))
            proc = _bash(block, ROOT, timeout=120)
            out = proc.stdout + proc.stderr
            assert proc.returncode == 0, out
            for cmd in block.splitlines():
                expect = COMMANDS.get(key(_strip_comment(cmd)))
                if isinstance(expect, Run) and expect.expect:
                    assert re.search(expect.expect, out), (cmd, out)
            wait_until(lambda: len(list(jobs.glob("job-*.log"))) >= before + 2, 240, 0.5, "two re-render jobs")
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        demo.stdout.close()


# --- docs/deploy.md's local steps, in a copy of the repository -----------------------------------


def _copy_of_repo(dest: Path) -> Path:
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for venv in (".venv", ".venv-checkov"):  # made by make setup / make lint-terraform; reused, not rebuilt
        if (ROOT / venv).exists():
            (dest / venv).symlink_to(ROOT / venv)
    return dest


@pytest.mark.r
def test_deploy_steps_that_need_no_cloud(tmp_path):
    repo = _copy_of_repo(tmp_path / "partybal")
    exports: list[str] = []
    ran = 0
    for c in _commands("repo"):
        script = "set -e\n" + "\n".join(exports + [c.text])
        proc = _bash(script, repo)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{c.doc}:{c.line}: {c.text}\n{out[-3000:]}"
        assert re.search(COMMANDS[key(c.text)].expect, out), (c.text, out[-3000:])
        if c.text.startswith("export "):
            exports.append(c.text)
        ran += 1
    assert ran >= 5
    assert (repo / "my.tfvars").is_file()
    assert (repo / "build" / "function-source" / "main.py").is_file()
    assert (repo / "build" / "site" / "sample_new_tab_layout.html").is_file()

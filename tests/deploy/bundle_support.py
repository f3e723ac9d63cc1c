"""The function source as `make bundle` stages it, and a clean venv holding only its requirements.

The install is what GCP's Python buildpack does (``pip install -r requirements.txt``, dependencies
resolved), from wheels cached under build/wheels: the first run fetches them from PyPI (``pip
wheel``, which also uses pip's own cache), later runs install with ``--no-index``. ``--no-compile``
halves the install: only what ``import main`` reaches gets byte-compiled, on first import.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import unavailable

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / "build" / "wheels"


def tail(text: str, n: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def make_bundle(dest: Path) -> Path:
    """`make bundle BUNDLE_DIR=dest`, exactly as `make deploy` runs it before terraform zips it."""
    if not shutil.which("make"):
        unavailable("make is missing")
    proc = subprocess.run(["make", "-s", "bundle", f"BUNDLE_DIR={dest}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"make bundle failed:\n{tail(proc.stderr)}"
    return dest


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        capture_output=True,
        text=True,
    )


def clean_venv(requirements: Path, dest: Path) -> Path:
    """A new venv (no pip, no partybal, nothing of the dev venv) with ``requirements`` installed;
    its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    python = dest / "bin" / "python"
    install = (
        "--python",
        str(python),
        "install",
        "--no-compile",
        "--no-index",
        "--find-links",
        str(WHEELS),
        "--only-binary",
        ":all:",
        "-r",
        str(requirements),
    )
    WHEELS.mkdir(parents=True, exist_ok=True)
    proc = _pip(*install)
    if proc.returncode != 0:  # a wheel not cached yet: fetch them, then install offline
        fetched = _pip("wheel", "--wheel-dir", str(WHEELS), "-r", str(requirements))
        assert fetched.returncode == 0, f"pip wheel -r {requirements} failed:\n{tail(fetched.stderr)}"
        proc = _pip(*install)
    assert proc.returncode == 0, f"installing only {requirements} into a clean venv failed:\n{tail(proc.stderr)}"
    return python


def installed(python: Path) -> dict[str, str]:
    """canonical distribution name -> version, of everything in the venv of ``python``."""
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    proc = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, check=True)
    from packaging.utils import canonicalize_name

    return {canonicalize_name(k): v for k, v in json.loads(proc.stdout).items()}

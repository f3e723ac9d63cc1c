"""renderer_image/Dockerfile: same Debian packages as `make setup`, pinned, small, non-root."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .conftest import ROOT

DOCKERFILE = ROOT / "renderer_image" / "Dockerfile"
APT_LIST = ROOT / "scripts" / "apt-packages.txt"


def _text() -> str:
    return DOCKERFILE.read_text()


def _logical_lines() -> list[str]:
    """Dockerfile instructions with continuations joined and comments dropped."""
    lines, cur = [], ""
    for raw in _text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        cur += raw
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    return lines


def apt_pins() -> dict[str, str | None]:
    """{package: version or None} from every `apt-get install` in the Dockerfile."""
    pins: dict[str, str | None] = {}
    for line in _logical_lines():
        for part in re.split(r"&&|;", line):
            m = re.search(r"apt-get\s+install\s+(.*)", part)
            if not m:
                continue
            for tok in m.group(1).split():
                if tok.startswith("-"):
                    continue
                name, _, version = tok.partition("=")
                pins[name] = version or None
    return pins


def apt_list() -> set[str]:
    return {
        line.strip()
        for line in APT_LIST.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    }


def test_apt_packages_equal_the_setup_list():
    assert set(apt_pins()) == apt_list(), "renderer_image/Dockerfile and scripts/apt-packages.txt drifted"


def test_apt_packages_are_pinned():
    unpinned = [n for n, v in apt_pins().items() if not v]
    assert not unpinned, f"pin these to exact versions: {unpinned}"


def test_pins_match_this_machine_when_installed():
    """Local (make setup) and image must run the same R stack."""
    if not shutil.which("dpkg-query"):
        pytest.skip("not a Debian machine")
    for name, version in apt_pins().items():
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True)
        if proc.returncode != 0 or not proc.stdout:
            continue  # not installed here: nothing to compare
        assert proc.stdout == version, f"{name}: image pins {version}, this machine has {proc.stdout}"


def test_base_image_is_bookworm():
    froms = [line for line in _logical_lines() if line.upper().startswith("FROM ")]
    assert froms and all("bookworm" in f for f in froms), froms


def test_small_and_reproducible():
    text = " ".join(_logical_lines())
    assert "--no-install-recommends" in text
    assert "rm -rf /var/lib/apt/lists" in text
    assert re.search(r"pip install[^&]*--no-cache-dir[^&]*-r\s+\S*requirements\.txt", text)
    reqs = [
        l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")
    ]
    assert reqs and all(re.match(r"^[A-Za-z0-9_.\-\[\]]+==\S+$", r) for r in reqs), "requirements.txt must pin exactly"


def test_copies_only_the_runtime_code():
    copies = [line.split()[1:-1] for line in _logical_lines() if line.upper().startswith("COPY ")]
    sources = {src.rstrip("/") for srcs in copies for src in srcs if not src.startswith("--")}
    assert sources == {"requirements.txt", "partybal", "templates", "r"}, sources
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") if "*" in ignore else -1] == "*", ".dockerignore should exclude by default"


def test_non_root_and_entrypoint():
    lines = _logical_lines()
    users = [l.split()[1] for l in lines if l.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    entry = [l for l in lines if l.upper().startswith("ENTRYPOINT")]
    assert entry and re.sub(r"\s+", "", entry[-1]) == 'ENTRYPOINT["python","-m","partybal.job"]', entry

"""Benchmark: build time and size of the renderer image (`make image-local`), cold and cached.

    .venv/bin/python benchmarks/image_build.py            # cached build only (seconds)
    .venv/bin/python benchmarks/image_build.py --cold     # + from nothing: new base, no layer cache

``--cold`` deletes the cached base (build/image/*.tar and the imported debian:bookworm-slim) and
builds with ``--no-cache``: what a fresh CI machine pays. Needs root. Writes the "image-build"
section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from procstats import write_section  # noqa: E402

IMAGE = os.environ.get("IMAGE_LOCAL", "localhost/partybal-renderer:local")
BASE = "docker.io/library/debian:bookworm-slim"
LOG = ROOT / "build" / "image" / "bench.log"


def build(extra_env: dict[str, str]) -> tuple[float, float | None, str]:
    """(total seconds, seconds until the base was ready, log text)."""
    started = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / "scripts" / "image-local.sh")],
        cwd=ROOT,
        env={**os.environ, "IMAGE_LOCAL": IMAGE, **extra_env},
        capture_output=True,
        text=True,
    )
    total = time.monotonic() - started
    out = proc.stdout + proc.stderr
    LOG.parent.mkdir(parents=True, exist_ok=True)
    LOG.write_text(out)
    if proc.returncode != 0:
        sys.exit(f"image build failed; log: {LOG}\n" + "\n".join(out.splitlines()[-10:]))
    m = re.search(r"base ready in (\d+) s", out)
    return total, float(m.group(1)) if m else None, out


def layers() -> list[tuple[int, str]]:
    out = subprocess.run(
        ["podman", "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", IMAGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        size, _, created = line.partition("\t")
        rows.append((_bytes(size), " ".join(created.split())))
    return rows


def _bytes(text: str) -> int:
    m = re.match(r"([\d.]+)\s*([kMG]?B)", text.strip())
    if not m:
        return 0
    return int(float(m.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--cold", action="store_true", help="also build from nothing (deletes the cached base; no layer cache)"
    )
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("benchmarks/image_build.py needs root (podman storage)")
    rows = []
    if args.cold:
        for tar in (ROOT / "build" / "image").glob("debian-bookworm-slim-*.tar"):
            tar.unlink()
        subprocess.run(["podman", "rmi", "--force", IMAGE, BASE], capture_output=True)
        total, base, _ = build({"PODMAN_BUILD_FLAGS": "--no-cache"})
        rows.append(("from nothing (fresh machine: debootstrap base, every layer built)", total, base))
    total, base, out = build({})
    rows.append(("cached (inputs unchanged: base and layers reused)", total, base))
    started = time.monotonic()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e/test_job_image.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    test_secs = time.monotonic() - started
    if tests.returncode != 0:
        sys.exit("tests/e2e/test_job_image.py failed:\n" + tests.stdout[-2000:])
    size = int(
        subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Size}}", IMAGE], capture_output=True, text=True, check=True
        ).stdout
    )
    big = [row for row in sorted(layers(), reverse=True)[:3] if row[0] >= 1e6]
    cold = next((secs for what, secs, _ in rows if what.startswith("from nothing")), None)
    ci = (
        f"Added CI time: about {(cold + test_secs + 30) / 60:.0f} minutes."
        if cold is not None
        else "(Run with --cold for the CI figure.)"
    )
    table = "\n".join(f"| {what} | {secs:.0f} | {'' if b is None else f'{b:.0f}'} |" for what, secs, b in rows)
    layer_rows = "\n".join(
        f"| {s / 1e6:.0f} | `{c[:110].replace('|', '/')}{'…' if len(c) > 110 else ''}` |" for s, c in big
    )
    report = f"""## Renderer image: build time and size

`.venv/bin/python benchmarks/image_build.py [--cold]` (as root) — {dt.date.today().isoformat()}, {platform.machine()}, {len(os.sched_getaffinity(0))} cores
(shared with other work: times vary with load). `make image-local` = `scripts/image-local.sh`.

| build | seconds | of which base ready |
|---|---:|---:|
{table}

Image `{IMAGE}`: **{size / 1e6:.0f} MB** uncompressed (podman's size; Cloud Run pulls it compressed).
Largest layers (`ADD file:…` is the base; the rest are Dockerfile steps):

| MB | step |
|---:|---|
{layer_rows}

Cached: the debootstrapped base as a tarball in `build/image/` (named by its recipe's hash; a
changed recipe makes a new one) and imported once into podman's default storage
(`/var/lib/containers/storage`), where podman's layer cache lives too: with unchanged inputs a
build takes seconds; a change to the job's code rebuilds only the `COPY` layers after it; a change
to the Debian pins or `renderer_image/requirements.txt` rebuilds from that step. CI: `.ci/run` on a
fresh machine pays the cold build once per run, plus installing podman and debootstrap (about
half a minute), plus the three tests in `tests/e2e/test_job_image.py` once built: {test_secs:.0f} s
here (two renders of the small sample experiment, one of them in the image as uid 10001; the
image's contents; `partybal local up --job-image` with that experiment). {ci}
"""
    print(report)
    if not args.no_write:
        write_section(ROOT / "docs" / "performance.md", "image-build", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Measure a command: wall seconds and peak memory of its whole process tree.

Memory is the peak over time of the summed PSS (proportional set size) of the process and all
its descendants, sampled every 50 ms: forked R workers share pages with their parent, and PSS
counts a shared page once across them instead of once per process as RSS would.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measurement:
    seconds: float
    peak_mib: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mib: float = 0.0  # summed RSS of the tree at its peak: counts shared pages once per process
    max_processes: int = 0
    cpu_seconds: float = 0.0  # user + system CPU of the whole tree (every waited-for descendant)
    # the measured process's own CPU, and its waited-for children's (e.g. Rscript and R's forked
    # figure workers under `partybal render`), from its last /proc sample before it exited
    self_cpu_seconds: float = 0.0
    children_cpu_seconds: float = 0.0


def _cpu_times(pid: int) -> tuple[float, float] | None:
    """(own user+system, waited-for children's user+system) CPU seconds of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / tick, (cutime + cstime) / tick


def _children(pid: int) -> list[int]:
    out = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process exited while we looked
        return out
    for task in tasks:
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


def _pss_kib(pid: int) -> int:
    return _mem_kib(pid)[0]


def _mem_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB; (0, 0) when it is gone."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def measure(cmd: list[str], *, cwd=None, env=None, interval: float = 0.05) -> Measurement:
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env or os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = peak_rss = most = 0
    own = (0.0, 0.0)
    while proc.poll() is None:
        own = _cpu_times(proc.pid) or own
        tree = _tree(proc.pid)
        mems = [_mem_kib(p) for p in tree]
        peak = max(peak, sum(m[0] for m in mems))
        peak_rss = max(peak_rss, sum(m[1] for m in mems))
        most = max(most, sum(1 for m in mems if m[1]))
        time.sleep(interval)
    out, err = proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measurement(
        time.monotonic() - started, peak / 1024, proc.returncode, out, err, peak_rss / 1024, most, cpu, own[0], own[1]
    )


def write_section(doc: Path, name: str, text: str) -> None:
    """Replace (or append) the part of ``doc`` between <!-- name:start --> and <!-- name:end -->."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = doc.read_text() if doc.exists() else "# partybal performance\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in body and end in body:
        before, rest = body.split(start, 1)
        _, after = rest.split(end, 1)
        body = before + block + after
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    doc.write_text(body)


_RENDER_LINE = re.compile(r"\((\d+) figures, [\d.]+ s; (\d+) drawn, (\d+) reused\)")


def render_counts(stdout: str) -> tuple[int, int, int] | None:
    """(figures, drawn, reused) from ``partybal render``'s line ``<page>  (N figures, S s; D drawn,
    R reused)``; None when the output has no such line."""
    found = _RENDER_LINE.search(stdout)
    return tuple(int(g) for g in found.groups()) if found else None

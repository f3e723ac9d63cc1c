"""The re-render benchmark behind docs/performance.md ("Re-rendering: first, daily and
template-change renders") runs, on the small shape: its three renders draw what the table says
they draw — everything, then only figures the new daily window touches, then nothing after an
edit of the page template and CSS in a copy of the renderer — and it reports bytes written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from tests.helpers import ROOT, unavailable


def test_the_rerender_benchmark_measures_first_daily_and_template_change_renders():
    if not shutil.which("Rscript"):
        unavailable("Rscript is not installed")
    proc = subprocess.run(
        [sys.executable, "benchmarks/figure_reuse.py", "--shapes", "small", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(
        r"^\| small \| ([^|]+) \| [\d.]+ \| [\d.]+ \| \d+ \| (\d+) / (\d+) \| \d+ \| ([\d.]+) \|$", proc.stdout, re.M
    )
    assert [r[0].split(" (")[0].strip() for r in rows] == ["first render", "daily re-render", "template change"]
    (first_drawn, first_reused), (daily_drawn, daily_reused), (tmpl_drawn, tmpl_reused) = (
        (int(d), int(r)) for _, d, r, _ in rows
    )
    total = first_drawn
    assert first_reused == 0 and total > 0
    assert 0 < daily_drawn < total and daily_drawn + daily_reused == total
    assert tmpl_drawn == 0 and tmpl_reused == total
    assert all(float(mb) > 0 for *_, mb in rows)

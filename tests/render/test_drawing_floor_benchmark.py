"""The drawing-floor benchmark behind docs/performance.md ("The drawing floor") runs on the small
shape: it measures every kind of figure the page has, each skeleton has the figure's own panels,
and its totals add up."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from benchmarks import drawing_floor
from tests.helpers import ROOT, unavailable


@pytest.fixture(scope="module")
def small_run():
    if not shutil.which("Rscript"):
        unavailable("Rscript is not installed")
    proc = subprocess.run(
        [sys.executable, "benchmarks/drawing_floor.py", "--shape", "small", "--samples", "1", "--reps", "1"]
        + ["--cores", "1,2", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_every_kind_of_figure_is_measured_and_the_page_total_adds_up(small_run):
    row = r"^\| ([a-z_]+ [a-z-]+ (?:series|one window)) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| (\d+) \|$"
    kinds = re.findall(row, small_run, re.M)
    ((n, full_total, skel_total),) = re.findall(
        r"^\| \*\*whole page\*\* \| \*\*(\d+)\*\* \| \| \| \| \*\*(\d+)\*\* \| \*\*(\d+)\*\* \|$", small_run, re.M
    )
    assert {k[0].split(" ")[0] for k in kinds} >= {"mean", "deciles", "kernel_density_estimate", "empirical_cdf"}
    assert sum(int(k[1]) for k in kinds) == int(n) > 0
    for _, figures, _, full, skel, page_full, page_skel in kinds:  # page columns: figures × CPU s each
        assert float(full) > 0 and float(skel) > 0
        assert abs(int(figures) * float(full) - int(page_full)) <= 0.5 + int(figures) * 0.005
        assert abs(int(figures) * float(skel) - int(page_skel)) <= 0.5 + int(figures) * 0.005
    exact_full = sum(int(k[1]) * float(k[3]) for k in kinds)
    exact_skel = sum(int(k[1]) * float(k[4]) for k in kinds)
    assert abs(exact_full - int(full_total)) <= 0.5 + 0.005 * int(n)
    assert abs(exact_skel - int(skel_total)) <= 0.5 + 0.005 * int(n)
    ((py,),) = [re.findall(r"one core\): ([\d.]+) s\.", small_run)]
    floors = re.findall(r"^\| (\d) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", small_run, re.M)
    assert [c for c, *_ in floors] == ["1", "2"]
    for cores, drawing, floor, with_python in floors:  # drawing ÷ cores, and + the Python phase
        assert abs(float(drawing) - exact_full / int(cores)) <= 0.05 + 0.005 * int(n)
        assert abs(float(floor) - exact_skel / int(cores)) <= 0.05 + 0.005 * int(n)
        assert abs(float(with_python) - float(py) - float(floor)) <= 0.11


def test_a_skeleton_keeps_the_figures_panels_and_draws_no_data(tmp_path):
    """R's skeleton of a figure: the figure's panel count, and each of its layers is geom_blank."""
    if not shutil.which("Rscript"):
        unavailable("Rscript is not installed")
    from tests.support import synthetic

    data = tmp_path / "results"
    spec = synthetic.small_spec("floor-skeleton")
    synthetic.write_experiment(data, spec)
    drawing_floor.python_phase(data, spec.slug, tmp_path / "work")
    plots = tmp_path / "work" / "plots.json"
    kinds = drawing_floor.measure_kinds(plots, 1, 1)
    assert kinds and all(k["panels"] == k["skeleton_panels"] > 0 and k["blank"] is True for k in kinds)
    figures = json.loads(plots.read_text())["figures"]
    assert sum(k["figures"] for k in kinds) == len(figures)

"""Figures by content hash (issue 18.1): a render draws only the figures whose hash is not stored in
``--out`` yet; a change to the data, the plot code, the theme or a package version redraws exactly
the figures it affects; a template change draws none. Counts come from R's drawn.json."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from partybal import layout
from partybal.page import figures as figure_ids
from partybal.page import render, report, templating
from partybal.storage import LocalResults
from tests.support.synthetic import ExperimentSpec, MetricSpec, write_experiment

pytestmark = pytest.mark.r

SLUG = "reuse-experiment"
FSLUG = layout.file_slug(SLUG)


def spec() -> ExperimentSpec:
    return ExperimentSpec(
        slug=SLUG,
        branches=("control", "treatment"),
        segments=("all",),
        bases=("enrollments",),
        windows={"overall": 1, "weekly": 2},
        metrics=(
            MetricSpec("active_hours", ("mean", "deciles"), True, "Active Hours"),
            MetricSpec("retained", ("binomial",), True, "Retained"),
        ),
        grid_points=8,
        errors=0,
    )


@pytest.fixture(scope="module")
def first_site(tmp_path_factory):
    """The experiment rendered once (each test starts from a copy: one first render for all)."""
    root = tmp_path_factory.mktemp("reuse")
    write_experiment(root / "results", spec())
    built, imgs = render_once(root / "results", root / "site")
    assert built.figures_drawn == built.figures > 0 and built.figures_reused == 0
    assert stored(root / "site") == set(imgs.values())  # every figure stored under its hash, nothing else
    return root


@pytest.fixture
def site(first_site, tmp_path):
    shutil.copytree(first_site / "results", tmp_path / "results")
    shutil.copytree(first_site / "site", tmp_path / "site")
    return tmp_path / "results", tmp_path / "site"


def page_images(out: Path) -> dict[str, str]:
    """{img alt: src} of the page in ``out``."""
    html = (out / layout.page_name(FSLUG)).read_text()
    return {alt: src for src, alt in re.findall(r'<img class="plot"[^>]* src="([^"]+)" alt="([^"]*)"', html)}


def render_once(results: Path, out: Path) -> tuple[render.BuiltPage, dict[str, str]]:
    """Render into ``out``; (built, {img alt: src}) of the page."""
    _, built = render.render_to_dir(LocalResults(results), SLUG, out, cores=1)
    imgs = page_images(out)
    assert imgs and len(imgs) == built.figures
    return built, imgs


def stored(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in (out / layout.figures_dir(FSLUG)).iterdir()}


def copied_r_dir(tmp_path: Path, monkeypatch, old: str, new: str) -> Path:
    """A copy of r/ with one edit in plots.R, used by the renderer from now on."""
    r_dir = tmp_path / "r-copy"
    shutil.copytree(report.R_DIR, r_dir)
    code = (r_dir / "plots.R").read_text()
    assert code.count(old) == 1, old
    (r_dir / "plots.R").write_text(code.replace(old, new))
    monkeypatch.setattr(render, "R_DIR", r_dir)
    return r_dir


def test_second_render_of_unchanged_input_draws_nothing(site):
    results, out = site
    imgs1 = page_images(out)
    mtimes = {src: (out / src).stat().st_mtime_ns for src in imgs1.values()}

    second, imgs2 = render_once(results, out)
    assert second.figure_counts() == {
        "figures": len(imgs1),
        "drawn": 0,
        "reused": len(imgs1),
        "failed": 0,
        "uploaded": 0,
    }
    assert imgs2 == imgs1 and stored(out) == set(imgs1.values())
    assert {src: (out / src).stat().st_mtime_ns for src in imgs2.values()} == mtimes  # not rewritten


def test_changing_one_statistics_row_redraws_exactly_its_figure_and_deletes_the_old_one(site):
    results, out = site
    before = page_images(out)
    name = results / layout.results_name(layout.Kind.STATISTICS, FSLUG, "weekly")
    rows = json.loads(name.read_text())
    hit = next(
        r
        for r in rows
        if r["metric"] == "active_hours"
        and r["statistic"] == "mean"
        and r["branch"] == "treatment"
        and r["comparison"] is None
        and r["window_index"] == "2"
    )
    hit["point"] += 0.5
    hit["lower"] += 0.5
    hit["upper"] += 0.5
    name.write_text(json.dumps(rows))

    built, after = render_once(results, out)
    changed = {alt for alt in after if after[alt] != before[alt]}
    assert built.figures_drawn == 1 == len(changed), changed
    (alt,) = changed
    assert "Mean of Active Hours" in alt and "weekly" in alt
    assert built.figures_reused == built.figures - 1
    # the figure the page no longer shows is deleted; the others are the same files
    assert stored(out) == set(after.values())
    assert not (out / before[alt]).exists()


def test_changing_one_plot_function_redraws_exactly_its_figures(site, tmp_path, monkeypatch):
    results, out = site
    before = page_images(out)
    copied_r_dir(
        tmp_path, monkeypatch, "geom_point(size = 0.9, na.rm = TRUE)", "geom_point(size = 1.4, na.rm = TRUE)"
    )  # in plot_deciles
    built, after = render_once(results, out)
    deciles = {alt for alt in after if alt.startswith("Deciles of")}
    assert deciles and len(deciles) < built.figures
    assert {alt for alt in after if after[alt] != before[alt]} == deciles
    assert built.figures_drawn == len(deciles) and built.figures_reused == built.figures - len(deciles)


def test_a_comment_in_the_plot_code_redraws_nothing(site, tmp_path, monkeypatch):
    results, out = site
    before = page_images(out)
    copied_r_dir(
        tmp_path,
        monkeypatch,
        "plot_deciles <- function(d, spec) {",
        "plot_deciles <- function(d, spec) {\n  # a note\n",
    )
    built, after = render_once(results, out)
    assert built.figures_drawn == 0 and after == before


def test_changing_the_theme_redraws_every_figure(site, tmp_path, monkeypatch):
    results, out = site
    before = page_images(out)
    copied_r_dir(tmp_path, monkeypatch, "theme_minimal(base_size = 11)", "theme_minimal(base_size = 12)")
    built, after = render_once(results, out)
    assert built.figures_drawn == built.figures and built.figures_reused == 0
    assert not set(after.values()) & set(before.values())
    again, _ = render_once(results, out)  # and once drawn with the new theme, reused
    assert again.figures_drawn == 0 and again.figures_reused == again.figures


def test_another_ggplot2_version_redraws_every_figure(site, monkeypatch):
    results, out = site
    before = page_images(out)
    real = figure_ids.package_versions()
    assert real["ggplot2"] not in ("", "absent", "unknown") and real["R"].startswith("R version")
    monkeypatch.setattr(figure_ids, "package_versions", lambda: {**real, "ggplot2": real["ggplot2"] + ".9000"})
    built, after = render_once(results, out)
    assert built.figures_drawn == built.figures and not set(after.values()) & set(before.values())
    again, _ = render_once(results, out)  # and once drawn with that version, reused
    assert again.figures_drawn == 0 and again.figures_reused == again.figures


def test_a_template_change_draws_no_figure(site, tmp_path, monkeypatch):
    results, out = site
    before = page_images(out)
    templates = tmp_path / "templates"
    shutil.copytree(templating.TEMPLATES_DIR, templates)
    for name in ("report.Rmd.j2", "page.html.j2"):
        text = (templates / name).read_text()
        marker = "<h2>Summary</h2>" if name == "report.Rmd.j2" else "</body>"
        assert marker in text
        (templates / name).write_text(text.replace(marker, f"<p>changed template {name}</p>{marker}", 1))
    monkeypatch.setattr(templating, "TEMPLATES_DIR", templates)
    built, after = render_once(results, out)
    html = (out / layout.page_name(FSLUG)).read_text()
    assert "changed template report.Rmd.j2" in html and "changed template page.html.j2" in html
    assert built.figures_drawn == 0 and built.figures_reused == built.figures and after == before


def test_r_reads_each_figure_from_its_own_spec_file_and_a_bad_one_fails_alone(tmp_path):
    """plots.json lists the figures to draw without their rows (R's main process, which forks the
    workers, never holds them); each spec file holds exactly the hashed bytes; a spec R cannot read
    is that figure's error, the others are drawn."""
    import subprocess

    from partybal.page.results import load_experiment

    write_experiment(tmp_path / "results", spec())
    page, figures = report.build_page(load_experiment(LocalResults(tmp_path / "results"), SLUG))
    assert len(figures) >= 3
    hasher = figure_ids.FigureHasher(render.R_DIR)
    work = tmp_path / "work"
    work.mkdir()
    render._write_figure_plan(work / "plots.json", FSLUG, figures, hasher, None)
    plan = json.loads((work / "plots.json").read_text())
    assert [f["number"] for f in plan["figures"]] == [f.number for f in figures]
    for entry, fig in zip(plan["figures"], figures, strict=True):
        assert set(entry) == {"alt", "file", "number", "height", "spec"} and entry["height"] == fig.height > 0
        written = json.loads((work / entry["spec"]).read_text())
        head = {k: written.pop(k) for k in ("alt", "file", "number")}
        assert head == {k: entry[k] for k in head}
        assert written == json.loads(hasher(fig)[1])
    bad = plan["figures"][0]
    (work / bad["spec"]).write_text('{"statistic": ')
    script = (
        "args <- commandArgs(TRUE); source(file.path(args[1], 'plots.R')); source(file.path(args[1], 'report.R'));"
        "r <- partybal_draw_all(args[2], args[3], args[4], 2L); cat(jsonlite::toJSON(r, auto_unbox = TRUE))"
    )
    out = [str(tmp_path / "out"), layout.figures_dir(FSLUG)]
    proc = subprocess.run(
        ["Rscript", "-e", script, str(render.R_DIR), str(work / "plots.json"), *out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    error = result[str(bad["number"])]
    assert "src" not in error and error["error"] == f"the figure's data ({bad['spec']}) could not be read"
    for entry in plan["figures"][1:]:
        assert result[str(entry["number"])]["src"] == entry["file"]
        assert (tmp_path / "out" / entry["file"]).stat().st_size > 2000
    drawn = json.loads((work / "drawn.json").read_text())
    assert drawn["failed"] == [bad["number"]]
    assert sorted(drawn["drawn"]) == sorted(e["number"] for e in plan["figures"][1:])

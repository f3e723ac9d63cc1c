"""What a figure's hash is made of (partybal/page/figures.py): canonical data, plot code per
statistic, package versions from DESCRIPTION files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from partybal import layout
from partybal.page import figures as figure_ids
from partybal.page.report import R_DIR, FigureSpec


def spec(**kw) -> FigureSpec:
    rows = {
        "branch": ["control", "treatment", "control"],
        "comparison": ["absolute", "absolute", "relative_uplift"],
        "window": [1, 1, 1],
        "parameter": [None, None, None],
        "point": [1.0, 2.0, 0.5],
        "lower": [0.5, 1.5, None],
        "upper": [1.5, 2.5, 0.7],
    }
    base = dict(
        number=1,
        statistic="mean",
        metric_label="M",
        reference="control",
        branches=["control", "treatment"],
        series=False,
        windows=[1],
        alt="alt",
        rows=rows,
    )
    return FigureSpec(**{**base, **kw})


def test_canonical_bytes_ignore_row_order_number_and_alt_but_not_what_is_drawn():
    a = spec()
    shuffled = {k: [v[2], v[0], v[1]] for k, v in a.rows.items()}
    assert figure_ids.canonical(a) == figure_ids.canonical(spec(rows=shuffled, number=7, alt="other words"))
    for change in (
        {"caption": "Intervals: 90% CI."},
        {"metric_label": "N"},
        {"width": 9.0, "height": 3.0, "layout": "intervals"},
        {"branches": ["treatment", "control"]},
    ):
        assert figure_ids.canonical(spec(**change)) != figure_ids.canonical(a), change
    rows = {k: list(v) for k, v in a.rows.items()}
    rows["point"][1] = 2.0000001
    assert figure_ids.canonical(spec(rows=rows)) != figure_ids.canonical(a)


def test_package_versions_follow_dependencies_in_description_files(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    for name, body in {
        "ggplot2": "Package: ggplot2\nVersion: 3.4.1\nDepends: R (>= 3.3)\nImports: scales (>=\n        1.2.0), grid\n",
        "scales": "Package: scales\nVersion: 1.2.1\nImports: farver\n",
        "farver": "Package: farver\nVersion: 2.1.1\n",
        "jsonlite": "Package: jsonlite\nVersion: 1.8.4\n",
    }.items():
        (lib / name).mkdir(parents=True)
        (lib / name / "DESCRIPTION").write_text(body)
    monkeypatch.setattr(figure_ids, "_lib_paths", lambda: (str(lib), "R_VERSION=R version 4.2.2"))
    assert figure_ids.package_versions() == {
        "R": "R version 4.2.2",
        "ggplot2": "3.4.1",
        "scales": "1.2.1",
        "farver": "2.1.1",
        "grid": "absent",
        "ragg": "absent",
        "jsonlite": "1.8.4",
    }
    before = figure_ids.r_fingerprint()
    (lib / "farver" / "DESCRIPTION").write_text("Package: farver\nVersion: 2.1.2\n")  # a dependency of a dependency
    assert figure_ids.r_fingerprint() != before


@pytest.mark.r
def test_plot_code_of_a_statistic_is_what_it_runs(tmp_path):
    code = figure_ids.PlotCode(R_DIR)
    deciles = code.names_for("deciles")
    assert {"partybal_draw", "plot_deciles", "theme_partybal", "branch_scale"} <= set(deciles)
    assert "plot_mean" not in deciles and "plot_empirical_cdf" not in deciles
    assert "plot_mean" in code.names_for("binomial")  # plot_binomial <- plot_mean
    assert code.digest("deciles") != code.digest("mean")
    assert code.digest("no_such_statistic") != code.digest("other_unknown")

    r_dir = tmp_path / "r"
    shutil.copytree(R_DIR, r_dir)
    text = (r_dir / "plots.R").read_text()
    (r_dir / "plots.R").write_text(text + '\nsource(file.path(r_dir, "extra.R"))\n')
    (r_dir / "extra.R").write_text("plot_deciles <- function(d, spec) NULL\n")  # a sourced file redefines one
    changed = figure_ids.PlotCode(r_dir)
    assert changed.digest("deciles") != code.digest("deciles")
    assert changed.digest("mean") != code.digest("mean")  # a new top-level call (source) concerns every figure


def test_figure_names_live_in_layout():
    h = "a" * 64
    assert layout.figure_name("exp", h) == f"exp_files/figures/{h}.png"
    assert layout.figure_name("exp", h, "preview/") == f"preview/exp_files/figures/{h}.png"
    assert layout.figure_hash_of(f"{h}.png") == h and layout.figure_hash_of("fig-1.png") is None
    assert layout.figure_list_name("exp", "20261126T120000Z-abcdef") == "exp_files/20261126T120000Z-abcdef/figures.json"
    with pytest.raises(ValueError):
        layout.figure_file("../x")


def fake_built(tmp: Path, rid: str, shows: list[str], draws: list[str]):
    from partybal.page import render

    work = tmp / f"work-{rid}"
    for h in draws:
        (work / layout.figure_name("exp", h)).parent.mkdir(parents=True, exist_ok=True)
        (work / layout.figure_name("exp", h)).write_bytes(b"png " + h.encode())
    (work / layout.page_name("exp")).parent.mkdir(parents=True, exist_ok=True)
    (work / layout.page_name("exp")).write_text("page")
    return render.BuiltPage(
        work,
        "exp",
        rid,
        layout.page_name("exp"),
        [],
        len(shows),
        None,
        0.0,
        figure_files=[layout.figure_name("exp", h) for h in draws],
        figure_refs=sorted(shows),
    )


def test_publish_local_deletes_only_unshown_figures_in_a_figures_folder_it_created(tmp_path):
    from partybal.page import render

    h = {c: c * 64 for c in "abcd"}
    out = tmp_path / "out"
    render.publish_local(fake_built(tmp_path, "20261126T120000Z-000001", [h["a"], h["b"]], [h["a"], h["b"]]), out)
    assert render.stored_figures(out, "exp") == {h["a"], h["b"]}
    render.publish_local(fake_built(tmp_path, "20261126T120000Z-000002", [h["b"], h["c"]], [h["c"]]), out)
    assert render.stored_figures(out, "exp") == {h["b"], h["c"]}  # a: no page shows it any more

    theirs = tmp_path / "theirs"  # a figures folder nobody's render created: added to, never deleted from
    (theirs / layout.figures_dir("exp")).mkdir(parents=True)
    (theirs / layout.figure_name("exp", h["d"])).write_bytes(b"their png")
    render.publish_local(fake_built(tmp_path, "20261126T120000Z-000003", [h["a"]], [h["a"]]), theirs)
    assert render.stored_figures(theirs, "exp") == {h["a"], h["d"]}

    linked = tmp_path / "linked"  # a symlinked figures folder: refused, nothing written through it
    (linked / layout.assets_root("exp")).mkdir(parents=True)
    (linked / layout.figures_dir("exp")).symlink_to(theirs / layout.figures_dir("exp"))
    with pytest.raises(render.RenderError, match="not a plain folder"):
        render.publish_local(fake_built(tmp_path, "20261126T120000Z-000004", [h["c"]], [h["c"]]), linked)
    assert render.stored_figures(theirs, "exp") == {h["a"], h["d"]}

"""Case 3: a newer upload while a render of the same experiment is running.

The first render is made slow on purpose (an experiment that knits for several seconds), the newer
file is uploaded after the job deleted its marker and read its inputs; the final page must be
built from the newer file. Repeated for a few rounds; at least one round must really race.
"""

from __future__ import annotations

import time

import pytest

from partybal import layout
from tests.reliability import support
from tests.support import synthetic

pytestmark = pytest.mark.emulators


def slow_experiment(slug: str, seed: int) -> dict[str, bytes]:
    spec = synthetic.ExperimentSpec(
        slug=slug,
        seed=seed,
        branches=("control", "treatment"),
        segments=("all",),
        bases=("enrollments",),
        windows={"overall": 1, "weekly": 3},
        grid_points=64,
        errors=1,
    )
    return synthetic.experiment_files(spec)


@pytest.mark.parametrize(
    "rounds", [pytest.param(2, id="2-rounds"), pytest.param(5, id="5-rounds", marks=pytest.mark.slow)]
)
def test_newer_upload_during_render_wins(rstack, evidence, rounds):
    s = rstack
    support.wait_quiet(s)
    slug = f"rel-lost-{rounds}"
    fslug = layout.file_slug(slug)
    name = layout.results_name(layout.Kind.STATISTICS, fslug, "overall")
    raced = 0
    for r in range(rounds):
        n_before = len(support.executions_for(s, fslug))
        if r:  # a fresh render of the experiment to race against
            gens = support.upload(s, {name: slow_experiment(slug, 100 + r)[name]})
        else:
            gens = support.upload(s, slow_experiment(slug, 1))

        def reading():
            exs = support.executions_for(s, fslug)
            return len(exs) > n_before and exs[-1]["state"] == "running" and not support.pending(s, fslug)

        support.wait_until(reading, 90, interval=0.1, what="a render to start")
        time.sleep(1.0)  # it has listed and read its inputs; R is knitting
        uploaded_at = time.time()
        newer = support.upload(s, {name: slow_experiment(slug, 200 + r)[name]})[name]
        assert newer > gens[name]
        record = support.wait_until(lambda: support.fresh_and_ok(s, fslug), 150, what="the render of the newer upload")
        exs = support.executions_for(s, fslug)
        racing = [e for e in exs[n_before:] if e["attempts"][0]["start"] < uploaded_at]
        raced += any((e["end"] or 0) > uploaded_at for e in racing)
        assert record["input_generations"][name] == newer, "the final page was built from the older upload"
        html, figures = support.page_figures(s, fslug)
        assert support.render_id_of_page(html, fslug) == record["render_id"]
        assert all(code == 200 for _, code in figures)
    assert raced >= 1, "no round uploaded during a running render: the test did not exercise the race"
    evidence.row(
        "3 lost update",
        "a newer statistics file uploaded 1 s after a slow (~7 s) render of the same experiment started",
        rounds,
        "final status input_generations == current generations (the newer file), live page == that render, figures present",
        f"{raced}/{rounds} rounds raced a running render; newest data won in {rounds}/{rounds}",
    )

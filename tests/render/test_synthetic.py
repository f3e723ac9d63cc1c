"""The synthetic presets the e2e, reliability and benchmark code share: Jetstream-shaped (they
pass the nimbus-schemas validation) and the five results objects a Jetstream run writes."""

from __future__ import annotations

import dataclasses

import pytest

from partybal import layout
from partybal.page import results
from partybal.storage import LocalResults
from tests.support import synthetic


@pytest.mark.parametrize("preset", [synthetic.small_spec, synthetic.tiny_spec])
def test_presets_are_valid_jetstream_output(tmp_path, preset):
    spec = preset("preset-exp.v2", seed=3)
    names = synthetic.write_experiment(tmp_path, spec)
    assert len(names) == 5
    assert {layout.parse_results_name(n).file_slug for n in names} == {"preset_exp_v2"}
    loaded = results.load_experiment(LocalResults(tmp_path), "preset-exp.v2")
    assert set(loaded.statistics) == {"overall", "weekly", "daily"} and loaded.metadata is not None
    assert {row.branch for rows in loaded.statistics.values() for row in rows} == {"control", "treatment"}
    assert synthetic.experiment_files(preset("preset-exp.v2", seed=3)) == synthetic.experiment_files(
        spec
    )  # reproducible


def test_real_size_presets_have_the_shapes_of_issue_12(tmp_path):
    real = synthetic.real_size_spec()
    assert (len(real.metrics), len(real.branches), len(real.segments), len(real.bases)) == (49, 4, 4, 2)
    assert real.windows == {"overall": 1, "weekly": 4, "daily": 28}
    many = synthetic.many_branches_spec()
    assert len(many.branches) == 10 and many.windows["daily"] == 60 and len(set(many.branches)) == 10
    old = synthetic.spec_2021()
    assert (len(old.branches), len(old.segments), old.windows["daily"], old.reference_branch) == (
        6,
        3,
        29,
        "msw_control",
    )
    # the daily file is ≈ 270 MB: one daily window is 1/28 of it (generating it all takes a minute)
    one = dataclasses.replace(real, windows={"daily": 1})
    size = synthetic.write_experiment(tmp_path, one)["statistics/statistics_real_size_experiment_daily.json"]
    assert 250e6 <= 28 * size <= 300e6


def test_streamed_files_are_the_same_bytes_and_valid(tmp_path):
    spec = dataclasses.replace(
        synthetic.many_branches_spec("stream-exp", branches=4, daily=3, metrics=4), grid_points=8
    )
    sizes = synthetic.write_experiment(tmp_path, spec)
    files = synthetic.experiment_files(spec)
    assert sizes == {name: len(data) for name, data in files.items()}
    assert all((tmp_path / name).read_bytes() == data for name, data in files.items())
    loaded = results.load_experiment(LocalResults(tmp_path), "stream-exp")
    assert {r.window_index for r in loaded.statistics["daily"]} == {"1", "2", "3"}

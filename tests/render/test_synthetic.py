"""The synthetic presets the e2e, reliability and benchmark code share: Jetstream-shaped (they
pass the nimbus-schemas validation) and the five results objects a Jetstream run writes."""

from __future__ import annotations

import pytest

from partybal import layout, results, synthetic
from partybal.storage import LocalResults


@pytest.mark.parametrize("preset", [synthetic.small_spec, synthetic.tiny_spec])
def test_presets_are_valid_jetstream_output(tmp_path, preset):
    spec = preset("preset-exp.v2", seed=3)
    names = synthetic.write_experiment(tmp_path, spec)
    assert len(names) == 5
    assert {layout.parse_results_name(n).file_slug for n in names} == {"preset_exp_v2"}
    loaded = results.load_experiment(LocalResults(tmp_path), "preset-exp.v2")
    assert set(loaded.statistics) == {"overall", "weekly", "daily"} and loaded.metadata is not None
    assert {row.branch for rows in loaded.statistics.values() for row in rows} == {"control", "treatment"}
    assert synthetic.experiment_files(preset("preset-exp.v2", seed=3)) == synthetic.experiment_files(spec)  # reproducible

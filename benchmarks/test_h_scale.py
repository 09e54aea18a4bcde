"""H-Scale: Hydro's efficiency and fidelity claims for width scaling, S ∈ {1, 2, 4, 8}.

Trials train a surrogate of width layer_size / S (muP for Adam); the surrogate's best
configurations are then retrained at full width, the best of them tested. The report's
Hydro table gives, per S, the search's time and energy per trial, the retraining's time,
JCT, and Kendall's τ between the surrogate's and the full model's rankings.
"""

import pytest

from pytest_basht import vary


@pytest.mark.basht(workload="workloads/h-scale.yaml", experiment="H-Scale")
def test_h_scale_warm_up(deployed_sut, basht_workload):
    """Not a scenario: the first setup on fresh workers also imports torch in them; doing
    it once here keeps that one-time cost out of the first S's JCT."""
    deployed_sut.sut.setup(basht_workload)
    assert deployed_sut.sut.data.train > 0


@pytest.mark.basht(workload="workloads/h-scale.yaml", experiment="H-Scale")
@vary("search.scaling", [1, 2, 4, 8])
def test_h_scale(trial_runner):
    run = trial_runner.run()
    w = run.workload
    scaling = run.sut["hydro"]["scaling"]
    assert scaling["factor"] == w.search.scaling
    complete = [t for t in run.trials if t.state == "complete"]
    if w.search.scaling > 1:
        rows = scaling["retrained"]
        assert len(rows) == min(w.search.retrain, len(complete))
        assert all(r["state"] == "complete" for r in rows), rows
        assert scaling["fidelity"]["configs"] == len(rows)
        assert scaling["tested_trial"] in {r["number"] for r in rows}
    assert run.best is not None and run.test_score is not None

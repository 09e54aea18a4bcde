"""H-Fuse: Hydro's efficiency claim for fusion, F ∈ {1, 2, 4, 8} trials per fused model.

The report's Hydro table has one row per F: trials per second, energy per trial and JCT.
A fused model trains exactly as its unfused twin (same initialization, data order and
optimizer steps), so fusion changes what the search costs, not what it finds.
"""

import json

import pytest

from pytest_basht import vary


@pytest.mark.basht(workload="workloads/h-fuse.yaml", experiment="H-Fuse")
def test_h_fuse_warm_up(deployed_sut, basht_workload):
    """Not a scenario: the first setup on fresh workers also imports torch in them; doing
    it once here keeps that one-time cost out of the first F's JCT."""
    deployed_sut.sut.setup(basht_workload)
    assert deployed_sut.sut.data.train > 0


@pytest.mark.basht(workload="workloads/h-fuse.yaml", experiment="H-Fuse")
@vary("search.fusion", [1, 2, 4, 8])
def test_h_fuse(trial_runner):
    run = trial_runner.run()
    w = run.workload
    configs = {json.dumps(t.params, sort_keys=True) for t in run.trials}
    assert len(configs) == w.trial_budget, "every configuration was tried"
    assert all(t.state == "complete" for t in run.trials)
    fusion = run.sut["hydro"]["fusion"]
    if w.search.fusion > 1:
        assert len(run.trials) == w.trial_budget, "asked in groups: no repeats at the tail"
        assert sum(g["size"] for g in fusion["detail"]) == len(run.trials)
        assert all(g["size"] <= w.search.fusion for g in fusion["detail"])
    assert run.best is not None and run.test_score is not None

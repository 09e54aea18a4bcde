"""S-Pru: the baseline grid without a pruner and with Optuna's median, successive-halving
and hyperband pruners."""

import pytest

from pytest_basht import vary


@pytest.mark.basht(workload="workloads/s-pru.yaml")
@vary("search.pruner", ["none", "median", "successive-halving", "hyperband"])
def test_s_pru(trial_runner):
    run = trial_runner.run()
    pruned = [t for t in run.trials if t.state == "pruned"]
    if run.workload.search.pruner == "none":
        assert not pruned
    assert all(len(t.intermediate) <= run.workload.training.epochs for t in pruned)
    assert run.best is not None and run.best.state == "complete"
    assert run.test_score is not None

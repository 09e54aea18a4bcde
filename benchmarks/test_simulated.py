"""S-Sam and S-Pru, simulated on the recorded tables (benchmarks/tables/), and the
simulated baseline: every Table 2 metric in virtual time, in seconds of wall time."""

import pytest

from pytest_basht import vary
from pytest_basht.metrics import TABLE2_KEYS, finite


def assert_simulated(run):
    assert run.sut["simulated"] is True, "answered from the table, not trained"
    assert run.best is not None and run.trials
    missing = [k for k in TABLE2_KEYS if not finite(getattr(run.metrics, k))]
    assert not missing, f"metrics without a value: {missing}"
    assert run.energy.source.startswith("simulated:") and not run.energy.measured


@pytest.mark.basht(workload="workloads/baseline-simulated.yaml", experiment="baseline (simulated)")
def test_baseline_simulated(trial_runner):
    run = trial_runner.run()
    assert_simulated(run)
    grid = {tuple(sorted(t.params.items())) for t in run.trials}
    assert len(grid) == run.workload.search.size, "every grid point was tried"
    assert run.workload.goal.met(run.best.value) and run.test_score is not None


@pytest.mark.basht(workload="workloads/s-sam-simulated.yaml")
@vary("search.sampler", ["grid", "random", "tpe", "cmaes", "qmc"])
def test_s_sam_simulated(trial_runner):
    run = trial_runner.run()
    assert_simulated(run)
    assert len(run.trials) == run.workload.search.trials


@pytest.mark.basht(workload="workloads/s-pru-simulated.yaml")
@vary("search.pruner", ["none", "median", "successive-halving", "hyperband"])
def test_s_pru_simulated(trial_runner):
    run = trial_runner.run()
    assert_simulated(run)
    if run.workload.search.pruner == "none":
        assert run.metrics.pruned == 0
    else:
        assert run.metrics.pruned > 0 and run.metrics.waste["pruned"].energy_kwh > 0


@pytest.mark.basht(workload="workloads/mf-branin-simulated.yaml")
@vary("search.pruner", ["none", "hyperband"])
def test_mf_branin_simulated(trial_runner):
    run = trial_runner.run()
    assert_simulated(run)
    assert run.best.value < 5, "TPE gets near Branin's minimum (0.398) in 200 trials"

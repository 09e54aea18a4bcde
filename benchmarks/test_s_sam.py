"""S-Sam: Optuna's grid, random, TPE, CMA-ES and QMC samplers on one space and budget."""

import pytest

from pytest_basht import vary


@pytest.mark.basht(workload="workloads/s-sam.yaml")
@vary("search.sampler", ["grid", "random", "tpe", "cmaes", "qmc"])
def test_s_sam(trial_runner):
    run = trial_runner.run()
    assert len(run.trials) == run.workload.trial_budget
    assert all(t.state == "complete" for t in run.trials), [t.error for t in run.trials]
    assert run.best is not None and run.test_score is not None

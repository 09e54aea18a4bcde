"""R-Node: the baseline with wn ∈ {1, 2, 4, 8} workers."""

import pytest

from pytest_basht import vary


@pytest.mark.basht(workload="workloads/r-node.yaml")
@vary("workers.count", [1, 2, 4, 8])
def test_r_node(trial_runner):
    run = trial_runner.run()
    assert {t.worker for t in run.trials} <= set(range(run.workload.workers.count))
    grid = {tuple(sorted(t.params.items())) for t in run.trials}
    assert len(grid) == run.workload.search.size, "every grid point was tried"
    assert run.best is not None and run.workload.goal.met(run.best.value)

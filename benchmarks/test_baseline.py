"""The Basht baseline as a benchmark: run it, then hold it to its goal on the test split."""

import pytest


@pytest.mark.basht(experiment="baseline")
def test_baseline(trial_runner):
    run = trial_runner.run()
    grid = {tuple(sorted(t.params.items())) for t in run.trials}
    assert len(grid) == run.workload.search.size, "every grid point was tried"
    assert run.best is not None and run.workload.goal.met(run.best.value)
    assert run.test_score is not None and run.test_score >= 0.85

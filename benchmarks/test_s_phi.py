"""S-Φ: grid search over a smaller space, the baseline's, and a larger one."""

from pathlib import Path

import pytest
import yaml

from pytest_basht import vary

BASELINE = yaml.safe_load((Path(__file__).parents[1] / "workloads" / "baseline.yaml")
                          .read_text())["search"]["space"]
SMALL = {"layer_size": [32, 128], "learning_rate": [0.001, 0.01]}
LARGE = {"layer_size": [32, 64, 128], "layer_count": [1, 2, 3],
         "learning_rate": [0.0003, 0.001, 0.01], "weight_decay": [0, 0.0001]}


@pytest.mark.basht(workload="workloads/s-phi.yaml")
@vary("search.space", [SMALL, BASELINE, LARGE], ids=["small", "baseline", "large"])
def test_s_phi(trial_runner):
    run = trial_runner.run()
    grid = {tuple(sorted(t.params.items())) for t in run.trials}
    assert len(grid) == run.workload.search.size, "every grid point was tried"
    assert run.best is not None and run.test_score is not None

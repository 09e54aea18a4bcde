"""R-ACL: the baseline on each accelerator type; a type this machine lacks is skipped."""

import pytest

from pytest_basht import vary


@pytest.mark.basht(workload="workloads/r-acl.yaml")
@vary("workers.accelerator", ["cpu", "gpu"])
def test_r_acl(trial_runner):
    run = trial_runner.run()
    accelerator = run.sut["limits"]["accelerator"]
    expected = "cuda" if run.workload.workers.accelerator == "gpu" else "cpu"
    assert accelerator["device"] == expected and accelerator["enforced"], accelerator
    assert run.best is not None and run.workload.goal.met(run.best.value)

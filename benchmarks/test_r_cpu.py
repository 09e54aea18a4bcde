"""R-CPU: one worker's vCPUs raised until JCT converges (a sweep)."""

import os

import pytest

from pytest_basht import vary

CORES = len(os.sched_getaffinity(0))


@pytest.fixture(autouse=True)
def _cores_to_give(basht_variant):
    """More vCPUs than the machine has cannot be given to one worker: skip, naming why."""
    asked = basht_variant["workers.cpu"]
    if asked > CORES:
        pytest.skip(f"this machine has {CORES} cores: one worker cannot be given {asked} vCPUs")


@pytest.mark.basht(workload="workloads/r-cpu.yaml")
@pytest.mark.basht_sweep(tolerance=0.05)
@vary("workers.cpu", [1, 2, 3, 4, 6, 8])
def test_r_cpu(trial_runner):
    run = trial_runner.run()
    cpu = run.sut["limits"]["cpu"]
    assert cpu["given_per_worker"] == run.workload.workers.cpu
    assert cpu["observed_affinity"] == cpu["affinity"], "the worker runs on its planned cores"
    assert cpu["enforced"], cpu["how"]
    assert run.best is not None and run.workload.goal.met(run.best.value)

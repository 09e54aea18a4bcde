"""R-MEM: four workers, wmem raised in 128 MB steps until JCT converges (a sweep)."""

import pytest

from pytest_basht import vary


@pytest.mark.basht(workload="workloads/r-mem.yaml")
@pytest.mark.basht_sweep(tolerance=0.05)
@vary("workers.memory_mb", list(range(768, 2049, 128)))
def test_r_mem(trial_runner):
    run = trial_runner.run()
    memory = run.sut["limits"]["memory"]
    assert memory["enforced"], memory["how"]
    failed = [t for t in run.trials if t.state == "failed"]
    # below a worker's footprint the cap kills trials: a result of the sweep, not a bug
    assert all("memory cap exceeded" in (t.error or "") for t in failed), [t.error for t in failed]
    if not failed:
        assert run.best is not None and run.workload.goal.met(run.best.value)

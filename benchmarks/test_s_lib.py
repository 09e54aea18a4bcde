"""S-Lib: one multi-fidelity search under four HPO libraries — Optuna (TPE with its
HyperbandPruner), SMAC3 (Hyperband intensifier), DEHB and Syne Tune (ASHA) — each through
the same ask-and-tell protocol, on the zero-cost mf-branin benchmark, five seeds each, in
virtual time: energy and time to the target, best value, waste. One experiment table and
plot; a configuration a library promotes to a higher fidelity resumes, charged only its
new epochs."""

import pytest

from pytest_basht import vary

LIBRARIES = ["optuna", "smac", "dehb", "syne-tune"]
SEEDS = [1, 2, 3, 4, 5]


@pytest.mark.basht(workload="workloads/s-lib.yaml")
@vary({"search.sampler": LIBRARIES, "seed": SEEDS},  # short ids: the plot's labels
      ids=[f"{lib}-{seed}" for lib in LIBRARIES for seed in SEEDS])
def test_s_lib(trial_runner):
    run = trial_runner.run()
    assert run.sut["simulated"] is True and not run.energy.measured
    optimizer = run.sut["optimizer"]
    assert optimizer["name"] == run.workload.search.sampler and optimizer["version"]
    assert len(run.trials) == run.workload.search.trials
    assert run.best is not None and run.test_score is not None
    if run.workload.search.sampler in ("smac", "dehb"):
        assert run.sut["study"]["resumed"] > 0, "promoted configurations resumed"
        assert all(t.resumed_from < t.fidelity for t in run.trials if t.resumed_from)

"""Fault: a trial raises, hangs past ``trial_timeout_s``, or its training loss becomes NaN.
The trial is ``failed`` with the reason, keeps the epochs it measured before, and the run
completes. (tests/test_plugin.py covers a trial that raises, returns NaN or hangs at once;
here the faults come mid-training, and the NaN is the real mnist-ff's training loss.)"""

from __future__ import annotations

import json
import math
import textwrap

import pytest
from fault_kit import (
    FAULT_CONFTEST,
    FAULTS,
    SCENARIO,
    Marks,
    SubPytest,
    log_measurements,
    marked_workload,
    reports,
)


@pytest.mark.slow
def test_trials_failing_mid_training_keep_their_epochs_and_the_run_completes(pytester, request):
    xs = [1, 2, -8, -9, 3]
    pytester.makeconftest(FAULT_CONFTEST)
    pytester.makefile(".yaml", w=marked_workload(xs, epochs=2, sleep=0.05,
                                                 extra="trial_timeout_s: 2\n"))
    pytester.makepyfile(test_faults=SCENARIO)
    marks = Marks(pytester.path / "marks")
    run = SubPytest(pytester.path, ["--basht-workload", "w.yaml"], marks)
    assert run.wait() == 0, run.output()
    [report] = reports(pytester.path / "reports")
    [sc] = report["scenarios"]
    assert sc["status"] == "complete" and sc["outcome"] == "passed"
    by_x: dict[int, list[dict]] = {}
    for trial in sc["trials"]:
        by_x.setdefault(trial["params"]["x"], []).append(trial)
    reasons = {-8: "trial timeout: ran", -9: "RuntimeError: boom after 2 epochs"}
    partial = 0
    for x, reason in reasons.items():
        for trial in by_x[x]:  # Optuna may hand a failed grid point out again at the tail
            assert trial["state"] == "failed" and reason in trial["error"], trial
            assert trial["intermediate"] == pytest.approx([0.1, 0.2])
            assert [s["epoch"] for s in trial["spans"] if s["phase"] == "trial.train"] == \
                list(range(FAULTS[x]))
            assert trial["energy_j"] > 0
            partial += len(trial["intermediate"])
    assert {x for x, ts in by_x.items() if any(t["state"] == "complete" for t in ts)} == \
        {1, 2, 3}
    assert sc["best_value"] == pytest.approx(1.0) and sc["test_score"] == pytest.approx(1.0)
    assert any("trial timeout" in k for k in sc["sut"]["kills"])
    complete = {t["number"] for t in sc["trials"] if t["state"] == "complete"}
    assert marks.numbers("done") == complete
    assert marks.numbers("started") == {t["number"] for t in sc["trials"]}
    expected_partial = sum(FAULTS[x] * len(by_x[x]) for x in reasons)
    log_measurements(request, len(complete) + expected_partial, len(complete) + partial)


@pytest.mark.slow
def test_a_nan_training_loss_fails_the_trial_and_the_run_completes(pytester, request):
    """The shipped mnist-ff at a learning rate of 1e20: its training loss itself is NaN in
    the first epoch, so the trainable raises TrialDiverged; the other trial is unharmed."""
    pytester.makefile(".yaml", w=textwrap.dedent("""\
        name: diverges
        dataset: {samples: 600}
        training: {epochs: 2}
        search: {space: {layer_size: [16], learning_rate: [0.01, 1.0e+20]}}
        goal: {target: 0.3}
        workers: {count: 2, cpu: 1, memory_mb: 3000}
        energy: {idle_s: 0}
        """))
    pytester.makepyfile(test_faults=SCENARIO)
    marks = Marks(pytester.path / "marks")
    run = SubPytest(pytester.path, ["--basht-workload", "w.yaml"], marks)
    assert run.wait() == 0, run.output()
    [report] = reports(pytester.path / "reports")
    [sc] = report["scenarios"]
    assert sc["status"] == "complete" and sc["outcome"] == "passed"
    bad = [t for t in sc["trials"] if t["params"]["learning_rate"] == 1e20]
    good = [t for t in sc["trials"] if t["params"]["learning_rate"] == 0.01]
    for trial in bad:  # a grid point may run twice at the tail (a duplicate)
        assert trial["state"] == "failed"
        assert trial["error"] == "diverged: training loss became nan in epoch 0"
        assert trial["value"] is None and trial["intermediate"] == []
        assert [s["phase"] for s in trial["spans"]] == ["trial.load", "trial.train"]
        assert trial["energy_j"] > 0
    for trial in good:
        assert trial["state"] == "complete" and len(trial["intermediate"]) == 2
        assert all(math.isfinite(v) for v in trial["intermediate"])
    assert bad and good
    assert sc["best_trial"] in {t["number"] for t in good} and sc["test_score"] > 0.3
    assert sc["metrics"]["waste"]["failed"]["trials"] == len(bad)
    run_dir = next(p for p in (pytester.path / "reports").iterdir() if not p.is_symlink())
    json.loads((run_dir / "report.json").read_text(), parse_constant=lambda c: 1 / 0)

"""Fault: a worker process dies mid-trial — SIGKILLed from outside, or killed by the memory
watchdog past its cap. Its trial is ``failed`` with the reason and keeps the epochs it had
measured; the slot is refilled; the trial the other worker was running meanwhile, and every
other one, is kept; no worker process is left behind."""

from __future__ import annotations

import os
import signal
import time

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
    sut_workers,
    wait_until,
)


def in_flight_elsewhere(marks: Marks, pid: int) -> set[int]:
    """Trials started and not finished by a worker other than ``pid``."""
    return {n for n in marks.numbers("started") - marks.numbers("done")
            if marks.pid("started", n) != pid}


def check_partial(trial: dict, x: int, reason: str) -> None:
    """A trial stopped by a fault: failed, with the reason, and the epochs it measured."""
    assert trial["state"] == "failed" and reason in trial["error"], trial
    epochs = FAULTS[x]
    assert trial["intermediate"] == pytest.approx([0.1 * (e + 1) for e in range(epochs)])
    assert [s["epoch"] for s in trial["spans"] if s["phase"] == "trial.train"] == \
        list(range(epochs))
    assert trial["energy_j"] > 0


def overlapping(trials: list[dict], worker: int, t_ns: int) -> list[dict]:
    """Complete trials of other workers that were running at ``t_ns``."""
    return [t for t in trials if t["state"] == "complete" and t["worker"] != worker
            and t["start_ns"] < t_ns < t["end_ns"]]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_fails_only_its_trial(pytester, request):
    xs = [1, 2, 3, -5, 4, 5, 6]
    pytester.makeconftest(FAULT_CONFTEST)
    pytester.makefile(".yaml", w=marked_workload(xs, epochs=3, sleep=0.2))
    pytester.makepyfile(test_faults=SCENARIO)
    marks = Marks(pytester.path / "marks")
    run = SubPytest(pytester.path, ["--basht-workload", "w.yaml"], marks)
    kills: dict[int, int] = {}  # trial number -> monotonic ns of the kill
    while run.proc.poll() is None:  # Optuna may hand the failed grid point out again
        for number in marks.numbers("victim") - set(kills):
            pid = marks.pid("victim", number)
            wait_until(lambda pid=pid: in_flight_elsewhere(marks, pid), "a trial on the "
                       "other worker", timeout=10, proc=run)
            kills[number] = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    code = run.wait()
    out = run.output()
    assert code == 0, out
    assert kills, "no trial was killed"
    assert sut_workers(run.pid) == [] and marks.children_at_exit() == []

    [report] = reports(pytester.path / "reports")
    [sc] = report["scenarios"]
    assert sc["status"] == "complete" and sc["outcome"] == "passed"
    trials = {t["number"]: t for t in sc["trials"]}
    for number, kill_ns in kills.items():
        check_partial(trials[number], -5, "worker exited with code -9")
        assert overlapping(sc["trials"], trials[number]["worker"], kill_ns), \
            "the other worker's trial at the kill was lost"
    assert marks.numbers("started") == set(trials)  # every trial handed out is there
    complete = {t["number"] for t in sc["trials"] if t["state"] == "complete"}
    done = marks.numbers("done")
    assert done == complete
    assert {t["params"]["x"] for t in sc["trials"] if t["state"] == "complete"} == \
        set(xs) - {-5}
    assert sc["sut"]["respawns"] == len(kills)
    assert sc["metrics"]["waste"]["failed"]["trials"] == len(kills)
    log_measurements(request, len(done) + FAULTS[-5] * len(kills),
                     len(done & complete) + sum(len(trials[n]["intermediate"]) for n in kills))


@pytest.mark.slow
def test_a_worker_past_its_memory_cap_fails_only_its_trial(pytester, request):
    xs = [1, 2, 3, -7, 4, 5, 6]
    pytester.makeconftest(FAULT_CONFTEST)
    pytester.makefile(".yaml", w=marked_workload(xs, epochs=3, sleep=0.2, memory_mb=400))
    pytester.makepyfile(test_faults=SCENARIO)
    marks = Marks(pytester.path / "marks")
    run = SubPytest(pytester.path, ["--basht-workload", "w.yaml"], marks)
    code = run.wait()
    assert code == 0, run.output()
    assert sut_workers(run.pid) == [] and marks.children_at_exit() == []

    [report] = reports(pytester.path / "reports")
    [sc] = report["scenarios"]
    hogs = [t for t in sc["trials"] if t["params"]["x"] == -7]
    assert hogs
    for hog in hogs:
        check_partial(hog, -7, "memory cap exceeded")
    assert marks.numbers("started") == {t["number"] for t in sc["trials"]}  # none lost
    complete = {t["number"] for t in sc["trials"] if t["state"] == "complete"}
    done = marks.numbers("done")
    assert done == complete
    assert {t["params"]["x"] for t in sc["trials"] if t["state"] == "complete"} == \
        set(xs) - {-7}
    assert len(sc["sut"]["kills"]) == len(hogs) == sc["sut"]["respawns"]
    assert sc["sut"]["limits"]["memory"]["enforced"] is True
    log_measurements(request, len(done) + FAULTS[-7] * len(hogs),
                     len(done & complete) + sum(len(h["intermediate"]) for h in hogs))

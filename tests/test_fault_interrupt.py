"""Fault: the pytest session is interrupted mid-run (Ctrl-C, SIGTERM; to the process or its
whole group; twice in a row). Undeploy still runs, no worker process outlives it, and the
report says ``interrupted`` and holds every trial finished before the signal."""

from __future__ import annotations

import signal
import time

import pytest
from fault_kit import (
    FAULT_CONFTEST,
    SCENARIO,
    Marks,
    SubPytest,
    log_measurements,
    marked_workload,
    reports,
    sut_workers,
    wait_until,
)

from pytest_basht.signals import StopSignals


@pytest.mark.slow
@pytest.mark.parametrize("sig,group,times", [
    (signal.SIGINT, True, 1),  # Ctrl-C in a terminal: the whole foreground group
    (signal.SIGTERM, False, 1),  # kill PID, docker stop, a scheduler's time limit
    (signal.SIGTERM, True, 1),  # an init system stopping the whole group
    (signal.SIGINT, True, 2),  # an impatient second Ctrl-C while the run ends
], ids=["sigint-group", "sigterm", "sigterm-group", "sigint-twice"])
def test_an_interrupted_run_keeps_every_finished_trial(pytester, request, sig, group, times):
    pytester.makeconftest(FAULT_CONFTEST)
    pytester.makefile(".yaml", w=marked_workload(list(range(1, 13)), epochs=4, sleep=0.25))
    pytester.makepyfile(test_faults=SCENARIO)
    marks = Marks(pytester.path / "marks")
    run = SubPytest(pytester.path, ["--basht-workload", "w.yaml"], marks)
    wait_until(lambda: len(marks.numbers("done")) >= 3, "three finished trials", proc=run)
    finished = marks.numbers("done")
    assert len(sut_workers(run.pid)) == 2
    time.sleep(0.3)  # their records reach the controller (each trial takes a second)
    for _ in range(times):
        run.signal(sig, group=group)
        time.sleep(0.05)
    code = run.wait()
    out = run.output()
    name = signal.Signals(sig).name

    assert code == pytest.ExitCode.INTERRUPTED, out
    assert sut_workers(run.pid) == []  # no orphans
    assert marks.children_at_exit() == [], "workers outlived the undeploy"
    [report] = reports(pytester.path / "reports")
    assert report["status"] == "interrupted"
    assert any(f"the run was interrupted ({name})" in n for n in report["notes"])
    [sc] = report["scenarios"]
    assert sc["status"] == "interrupted" and sc["outcome"] == "interrupted"
    assert [s["phase"] for s in sc["spans"]][-1] == "undeploy", "undeploy did not run"
    complete = {t["number"] for t in sc["trials"] if t["state"] == "complete"}
    assert finished <= complete, f"finished {sorted(finished)}, kept {sorted(complete)}"
    for trial in sc["trials"]:
        assert trial["spans"] and trial["energy_j"] > 0, trial
        if trial["state"] != "complete":  # stopped in flight: its work is spent, and wasted
            assert trial["state"] == "failed"
            assert f"interrupted while it ran ({name} received)" in trial["error"], trial
    assert sc["metrics"]["waste"]["failed"]["trials"] == len(sc["trials"]) - len(complete)
    assert f"report: {pytester.path / 'reports'}" in out
    if times == 2:
        assert f"{name} received while the run ends; finishing the undeploy" in out
    log_measurements(request, len(finished), len(finished & complete))


def test_handlers_are_restored_and_a_second_signal_is_held_while_finishing():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = StopSignals()
    assert stop.install()
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM received"):
            signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)  # held: the run is ending
        with pytest.raises(KeyboardInterrupt, match="SIGINT received"):
            signal.raise_signal(signal.SIGINT)  # a third one ends it
        assert stop.received == ["SIGTERM", "SIGINT", "SIGINT"]
    finally:
        stop.restore()
    assert {s: signal.getsignal(s) for s in before} == before

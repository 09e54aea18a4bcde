"""Fault: an xdist worker is SIGKILLed from outside while its scenario's trials run. The
merged report keeps every other scenario — the one it had finished, the ones other workers
ran, and the ones its replacement runs — names the one lost, and the dead worker's own
worker processes do not outlive it. (tests/test_xdist.py covers a scenario that kills its
own xdist worker after its run.)"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from fault_kit import (
    FAULT_CONFTEST,
    Marks,
    SubPytest,
    log_measurements,
    marked_workload,
    reports,
    sut_workers,
)

FILE_A = """
import pytest


@pytest.mark.basht(experiment="xdist-faults")
def test_a1_finishes(trial_runner):
    assert trial_runner.run().trials


@pytest.mark.basht(experiment="xdist-faults", overrides={"search.space.x": [1, -5, 2]})
def test_a2_its_worker_is_killed(trial_runner):
    trial_runner.run()


@pytest.mark.basht(experiment="xdist-faults")
def test_a3_after_the_crash(trial_runner):
    assert trial_runner.run().trials
"""

FILE_B = """
import pytest


@pytest.mark.basht(experiment="xdist-faults")
def test_b1_elsewhere(trial_runner):
    assert trial_runner.run().trials
"""


@pytest.mark.slow
def test_an_xdist_worker_killed_mid_trial_loses_only_its_scenario(pytester, request):
    pytester.makeconftest(FAULT_CONFTEST)
    pytester.makefile(".yaml", w=marked_workload([1, 2, 3], workers=1, epochs=2, sleep=0.1))
    pytester.makepyfile(test_a=FILE_A, test_b=FILE_B)
    marks = Marks(pytester.path / "marks")
    run = SubPytest(pytester.path, ["--basht-workload", "w.yaml", "-n", "2", "--dist",
                                    "loadfile"], marks)
    killed: list[int] = []  # xdist worker pids
    seen: set[int] = set()
    while run.proc.poll() is None:
        for number in marks.numbers("victim") - seen:
            seen.add(number)
            xdist_worker = psutil.Process(marks.pid("victim", number)).ppid()
            os.kill(xdist_worker, signal.SIGKILL)
            killed.append(xdist_worker)
        time.sleep(0.02)
    out = run.output()
    assert run.wait() == pytest.ExitCode.TESTS_FAILED, out
    assert len(killed) == 1, out
    time.sleep(0.5)  # the dead worker's children get SIGKILL from the kernel (PDEATHSIG)
    assert sut_workers(killed[0]) == [], "a dead xdist worker's workers outlived it"

    [report] = reports(pytester.path / "reports")
    scenarios = {s["test_id"]: s for s in report["scenarios"]}
    a1, a2, a3, b1 = ("test_a.py::test_a1_finishes", "test_a.py::test_a2_its_worker_is_killed",
                      "test_a.py::test_a3_after_the_crash", "test_b.py::test_b1_elsewhere")
    # pytest-xdist (--dist loadfile) runs the crashed test again on the new worker
    assert set(scenarios) == {a1, a2, a3, b1}, out
    for sc in scenarios.values():
        assert sc["outcome"] == "passed" and sc["trials"] and sc["best_value"] is not None
        assert {t["state"] for t in sc["trials"]} == {"complete"}
    placed = {tid: sc["placement"]["worker"] for tid, sc in scenarios.items()}
    assert placed[a1] != placed[b1] and placed[a2] == placed[a3] not in (placed[a1],
                                                                         placed[b1])
    assert report["lost"] == []  # its second run's record replaced the loss
    [note] = [n for n in report["notes"] if "crashed while running" in n]
    assert f"xdist worker {placed[a1]} crashed while running {a2}" in note
    assert f"ran it again on {placed[a2]}, and that run's record is kept" in note
    assert f"worker '{placed[a1]}' crashed while running '{a2}'" in out
    finished = {a1, a3, b1, a2}  # a2: its second, whole run
    log_measurements(request, len(finished), len(finished & set(scenarios)))

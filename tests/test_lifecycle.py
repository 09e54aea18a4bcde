"""phase() as a context manager and as a decorator, the recorder, and CPU limits."""

from __future__ import annotations

import threading

import pytest

from pytest_basht import phase
from pytest_basht.lifecycle import PHASES, Recorder, recording
from pytest_basht.sut.limits import plan_cpus, thread_env


def test_phases_are_basht_s_nine():
    assert PHASES == ("deploy", "setup", "trial.load", "trial.train", "trial.validate",
                      "result_collection", "test", "metric_collection", "undeploy")


def test_phase_records_into_the_active_recorder():
    rec = Recorder(worker=3)
    rec.trial = 7

    @phase("trial.train", epoch=1)
    def train() -> str:
        return "trained"

    with recording(rec):
        with phase("trial.load"):
            pass
        assert train() == "trained"
    assert [(s.phase, s.worker, s.trial, s.epoch) for s in rec.spans] == [
        ("trial.load", 3, 7, None), ("trial.train", 3, 7, 1)]
    assert all(s.end_ns >= s.start_ns and s.start_utc for s in rec.spans)


def test_phase_outside_a_recorder_records_nothing():
    with phase("setup") as span:
        assert span is None


def test_unknown_phase_is_an_error():
    with pytest.raises(ValueError, match=r"trial\.valdate"):
        phase("trial.valdate")


def test_recorder_is_thread_safe_and_streams():
    seen = []
    rec = Recorder(sink=seen.append)

    def work() -> None:
        for _ in range(50):
            with rec.span("trial.train"):
                pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rec.spans) == 200 and len(seen) == 200
    assert len(rec.take()) == 200 and rec.spans == []


@pytest.mark.parametrize("workers,per,cores,sets,over", [
    (4, 2, [0, 1], [(0,), (1,), (0,), (1,)], 2.0),       # the baseline on this machine
    (1, 2, [0, 1], [(0, 1)], 1.0),
    (2, 2, [0, 1, 2, 3], [(0, 1), (2, 3)], 1.0),
    (2, 4, [0, 1, 2, 3], [(0, 1), (2, 3)], 1.0),          # asked 4, given 2 each
    (8, 1, [0, 1], [(0,), (1,)] * 4, 4.0),
])
def test_cpu_plan(workers, per, cores, sets, over):
    plan = plan_cpus(workers, per, cores)
    assert list(plan.sets) == sets and plan.oversubscription == over
    assert plan.threads == len(sets[0])
    info = plan.to_dict()
    assert info["asked_per_worker"] == per and info["given_per_worker"] == len(sets[0])


def test_thread_env_covers_the_blas_libraries():
    env = thread_env(2)
    assert env["OMP_NUM_THREADS"] == "2" and env["MKL_NUM_THREADS"] == "2"


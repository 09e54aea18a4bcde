"""The conditions recorder: a scenario window's load, steal and others' CPU from samples
(known answers), and a real recorder that sees CPU burnt outside the run's process tree."""

from __future__ import annotations

import subprocess
import time

import pytest

from pytest_basht.conditions import ConditionsRecorder, Sample, summarize

S = 1_000_000_000


def sample(t: float, busy: float, run: float, total: float, steal: float | None = 0.0,
           load: float | None = 1.0, mhz: float | None = 2000.0) -> Sample:
    return Sample(int(t * S), busy, run, total, steal, load, mhz)


def test_a_window_is_measured_from_the_sample_before_it():
    samples = [
        sample(0, 0.0, 0.0, 0.0),
        sample(10, 5.0, 1.0, 20.0, steal=1.0, load=1.5, mhz=2400.0),  # before the window
        sample(11, 6.5, 1.5, 22.0, steal=1.2, load=2.0, mhz=2000.0),
        sample(12, 7.0, 2.0, 24.0, steal=1.2, load=3.0, mhz=1800.0),
        sample(20, 99.0, 9.0, 40.0),  # after it
    ]
    c = summarize(samples, int(10.5 * S), 12 * S, 2, workers=4, processes=2)
    assert c is not None
    assert (c["seconds"], c["samples"], c["cpus"]) == (2.0, 2, 2)
    # 2 s × 2 CPUs = 4 CPU s; the machine was busy 2.0 s, the run 1.0 s of it
    assert c["others_cpu_pct"] == pytest.approx(25.0)
    assert c["run_cpu_pct"] == pytest.approx(25.0)
    assert c["others_cpu_pct_max"] == pytest.approx(50.0)  # the first second: 1.5 − 0.5 of 2
    assert c["steal_pct"] == pytest.approx(0.2 / 4.0 * 100)
    assert (c["load_1m"], c["load_1m_max"]) == (2.5, 3.0)
    assert (c["cpu_mhz"], c["cpu_mhz_min"], c["cpu_mhz_max"]) == (1900.0, 1800.0, 2000.0)
    assert (c["workers"], c["processes"]) == (4, 2)


def test_without_two_samples_or_readings_there_is_nothing_or_null():
    one = [sample(1, 1.0, 0.5, 2.0)]
    assert summarize(one, 0, 2 * S, 2, workers=1, processes=1) is None
    bare = [sample(0, 0.0, 0.0, 0.0, steal=None, load=None, mhz=None),
            sample(1, 1.0, 0.0, 2.0, steal=None, load=None, mhz=None)]
    c = summarize(bare, 0, S, 2, workers=1, processes=1)
    assert c is not None
    assert c["steal_pct"] is None and c["load_1m"] is None and c["cpu_mhz"] is None


def test_the_recorder_counts_cpu_outside_the_run_as_others():
    # The "run" is an idle child process; this test process burns CPU outside its tree.
    idle = subprocess.Popen(["sleep", "30"])
    try:
        recorder = ConditionsRecorder(root_pid=idle.pid, hz=10)
        recorder.start()
        first = recorder.sample()
        start = time.process_time()
        while time.process_time() - start < 0.6:
            pass
        c = recorder.summary(first.t_ns)
        recorder.stop()
    finally:
        idle.kill()
        idle.wait()
    assert c is not None and c["samples"] >= 1
    busy_share = 0.6 / (c["seconds"] * c["cpus"]) * 100  # this loop's CPU, at the least
    assert c["others_cpu_pct"] >= 0.8 * busy_share
    assert c["run_cpu_pct"] < 5.0
    assert c["load_1m"] is not None

"""The conditions a scenario ran under: load average, CPU steal, the CPU that processes
outside this run used, CPU frequency, and the scenario's own concurrency.

On a shared CI runner a scenario's time and energy move with its neighbours' load, so a
report that keeps the load lets the gate (and a reader) tell a noisy comparison from a
change. ``ConditionsRecorder`` samples once a second in a background thread (and at each
scenario's start and end); ``summarize`` turns the samples inside a scenario's window
into its record's ``conditions``. One sample reads /proc/stat twice, /proc/loadavg, the
CPU frequency and the CPU times of the run's processes: tens of microseconds to a
millisecond (``benchmarks/perf/conditions_cost.py`` measures it).
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from pytest_basht.energy.process import ProcessTree
from pytest_basht.energy.sampler import Sampler

#: /proc/stat fields that are time of the machine's CPUs (guest time is inside user/nice).
TOTAL_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
MAX_SAMPLES = 86_400  # a day at 1 Hz; older samples are dropped


@dataclass(frozen=True)
class Sample:
    """Cumulative CPU counters and instant readings at ``t_ns`` (monotonic)."""

    t_ns: int
    machine_busy_s: float  # busy CPU seconds of the whole machine, all CPUs
    run_cpu_s: float  # CPU seconds of this run's process tree
    total_s: float  # every CPU second the machine's CPUs accounted (busy, idle, steal, ...)
    steal_s: float | None  # None: the kernel reports no steal time
    load_1m: float | None
    cpu_mhz: float | None  # None: the frequency is not readable here


def _cpu_mhz() -> float | None:
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, RuntimeError):
        return None
    return float(freq.current) if freq is not None and freq.current > 0 else None


def _load_1m() -> float | None:
    try:
        return float(psutil.getloadavg()[0])
    except (OSError, AttributeError):
        return None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(samples: Sequence[Sample], start_ns: int, end_ns: int, cpus: int, *,
              workers: int, processes: int) -> dict[str, Any] | None:
    """The conditions over ``[start_ns, end_ns]``: the samples in it, measured from the
    last sample before it (None: fewer than two samples cover it).

    ``others_cpu_pct`` is the CPU that processes outside the run used, as a share of the
    machine's capacity (all ``cpus``); ``steal_pct`` the share of CPU time the hypervisor
    gave to other guests; ``load_1m`` the 1-minute load average (runnable tasks, the run's
    own included); ``workers`` the scenario's trial worker slots and ``processes`` the
    pytest processes running scenarios on this machine (pytest-xdist's -n).
    """
    before = [s for s in samples if s.t_ns < start_ns]
    inside = [s for s in samples if start_ns <= s.t_ns <= end_ns]
    points = ([before[-1]] if before else []) + inside
    if len(points) < 2:
        return None
    first, last = points[0], points[-1]
    seconds = (last.t_ns - first.t_ns) / 1e9
    capacity = max(seconds * cpus, 1e-9)
    busy = last.machine_busy_s - first.machine_busy_s
    run = last.run_cpu_s - first.run_cpu_s
    peaks = []
    for a, b in itertools.pairwise(points):
        span = max((b.t_ns - a.t_ns) / 1e9 * cpus, 1e-9)
        peaks.append(max(0.0, (b.machine_busy_s - a.machine_busy_s)
                         - (b.run_cpu_s - a.run_cpu_s)) / span * 100)
    total = last.total_s - first.total_s
    steal = (None if first.steal_s is None or last.steal_s is None or total <= 0
             else max(0.0, last.steal_s - first.steal_s) / total * 100)
    loads = [s.load_1m for s in points[1:] if s.load_1m is not None]
    mhz = [s.cpu_mhz for s in points[1:] if s.cpu_mhz is not None]
    return {
        "seconds": seconds,
        "samples": len(points) - 1,
        "cpus": cpus,
        "load_1m": _mean(loads),
        "load_1m_max": max(loads) if loads else None,
        "steal_pct": steal,
        "others_cpu_pct": max(0.0, busy - run) / capacity * 100,
        "others_cpu_pct_max": max(peaks),
        "run_cpu_pct": max(0.0, run) / capacity * 100,
        "cpu_mhz": _mean(mhz),
        "cpu_mhz_min": min(mhz) if mhz else None,
        "cpu_mhz_max": max(mhz) if mhz else None,
        "workers": workers,
        "processes": processes,
    }


class ConditionsRecorder:
    """Samples the machine's conditions in a daemon thread, once every ``1/hz`` seconds.

    ``root_pid`` is the root of this run's process tree: the pytest process, or under
    pytest-xdist the controller, so that the other xdist workers count as the run's own.
    """

    def __init__(self, root_pid: int | None = None, hz: float = 1.0) -> None:
        self.root_pid = root_pid or os.getpid()
        self.hz = hz
        self.cpus = psutil.cpu_count() or 1
        self.samples: collections.deque[Sample] = collections.deque(maxlen=MAX_SAMPLES)
        self._tree: ProcessTree | None = None
        self._sampler = Sampler(self.sample, hz)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start sampling in the background (again after ``stop``; twice is once)."""
        self._sampler.start()

    def stop(self) -> None:
        self._sampler.stop()

    def sample(self) -> Sample:
        """Take a sample now (the background thread calls this too)."""
        with self._lock:
            if self._tree is None:
                try:
                    self._tree = ProcessTree(self.root_pid)
                except psutil.Error:  # the controller is gone: this process is the run
                    self._tree = ProcessTree()
            usage = self._tree.usage()
            ct = psutil.cpu_times()
            steal = getattr(ct, "steal", None)
            sample = Sample(usage.t_ns, usage.machine_cpu_s, usage.cpu_s,
                            float(sum(getattr(ct, f, 0.0) for f in TOTAL_FIELDS)),
                            None if steal is None else float(steal), _load_1m(), _cpu_mhz())
            self.samples.append(sample)
            return sample

    def summary(self, start_ns: int, end_ns: int | None = None, *, workers: int = 1,
                processes: int = 1) -> dict[str, Any] | None:
        """The conditions of a scenario that ran from ``start_ns`` until ``end_ns`` (now)."""
        if end_ns is None:
            end_ns = self.sample().t_ns
        with self._lock:
            samples = list(self.samples)
        return summarize(samples, start_ns, end_ns, self.cpus, workers=workers,
                         processes=processes)

"""Attribution: each span's share of the energy the machine drew.

When processes share a machine (worker processes, parallel scenarios), a span gets the
dynamic energy of its window (energy above idle) in proportion to its CPU seconds, plus
its slot's share of idle power for its duration — the approach of Kepler and Scaphandre.
For the linear estimate this reduces exactly to cpu_s·(P_max − P_min) per vCPU plus the
slot's idle share.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def interpolate(ts: Sequence[float], values: Sequence[float], t: float) -> float:
    """Linear interpolation of a cumulative series, clamped to its ends."""
    if not ts:
        return 0.0
    i = bisect.bisect_left(ts, t)
    if i <= 0:
        return float(values[0])
    if i >= len(ts):
        return float(values[-1])
    t0, t1 = ts[i - 1], ts[i]
    if t1 == t0:
        return float(values[i])
    frac = (t - t0) / (t1 - t0)
    return float(values[i - 1] + frac * (values[i] - values[i - 1]))


def delta(ts: Sequence[float], values: Sequence[float], t0: float, t1: float) -> float:
    return max(0.0, interpolate(ts, values, t1) - interpolate(ts, values, t0))


def cpu_key(timeline: dict[str, list[float]], scope: str) -> str:
    """The CPU series that shares out a window's dynamic energy.

    ``process``: the meter covers only the run's processes, so their CPU time divides it.
    ``machine``: the meter covers the whole machine, so a span gets its CPU time over the
    CPU time of every process — other tenants and parallel scenarios keep their share.
    """
    machine = timeline.get("machine_cpu_s")
    if scope == "machine" and machine and machine[-1] > machine[0]:
        return "machine_cpu_s"
    return "cpu_s"


def span_energy(timeline: dict[str, list[float]], start_ns: int, end_ns: int, cpu_s: float,
                idle_power_w: float, slots: int, *, scope: str = "process",
                series: str = "joules") -> float:
    """Energy (J) of one span of one worker slot out of ``slots``."""
    dt = max(0, end_ns - start_ns) / 1e9
    if dt == 0:
        return 0.0
    ts = timeline["t_ns"]
    energy = delta(ts, timeline[series], start_ns, end_ns)
    key = cpu_key(timeline, scope)
    cpu = delta(ts, timeline[key], start_ns, end_ns)
    dynamic = max(0.0, energy - idle_power_w * dt)
    share = min(1.0, cpu_s / cpu) if cpu > 0 else 0.0
    return dynamic * share + idle_power_w / max(1, slots) * dt

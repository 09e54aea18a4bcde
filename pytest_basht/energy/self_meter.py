"""A process that meters itself, where the controller's live meter cannot see it.

A ``basht worker`` on another host and a Ray Tune trial on an existing cluster each run
their own meter: the same selection as the controller's (``auto``: RAPL or NVML where
present, else the labelled estimate), holding one worker slot's allocation, with the idle
draw measured once before any trial. Each span gets this meter's share of it, and the
timeline goes home in chunks (``points``), each with the offset of this host's wall clock
from its monotonic clock so the controller can map it onto its own clock (``sut.fleet``).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from typing import Any

from pytest_basht.energy.attribution import span_energy
from pytest_basht.energy.base import Allocation, MeterContext
from pytest_basht.energy.factory import Selection, select_meter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.sampler import Timeline
from pytest_basht.workload import Workload


def wall_offset_ns() -> int:
    """This host's wall clock minus its monotonic clock: maps spans between hosts."""
    return time.time_ns() - time.monotonic_ns()


def points_of(timeline: Timeline, since_ns: int, meta: dict[str, Any]) -> dict[str, Any]:
    """The points of a meter's timeline from ``since_ns`` on, as a remote process sends
    them (its own clock; ``meta`` says which meter and clock)."""
    snap = timeline.snapshot(since_ns, None)
    lo = bisect.bisect_left(snap["t_ns"], since_ns)
    out: dict[str, Any] = {"meta": meta, "t_ns": snap["t_ns"][lo:],
                           "joules": snap["joules"][lo:], "cpu_s": snap["cpu_s"][lo:]}
    if "joules_low" in snap:
        out["low"] = snap["joules_low"][lo:]
        out["high"] = snap["joules_high"][lo:]
    return out


class SelfMeter:
    """This process's meter: a running monitor holding one worker slot."""

    def __init__(self, selection: Selection, workload: Workload, *, vcpus: int) -> None:
        self.selection = selection
        self.monitor = EnergyMonitor(selection.meter, hz=workload.energy.sample_hz,
                                     selection=selection.reason)
        self.monitor.start()
        w = workload.workers
        self.monitor.hold(Allocation(vcpus=vcpus, memory_gb=w.memory_mb / 1024, slots=1))
        self.monitor.measure_idle(workload.energy.idle_s)
        self._sent_ns = -1
        self._lock = threading.Lock()  # a beat thread sends points beside the trials

    @classmethod
    def start(cls, meters: dict[str, Any], workload: Workload, *, vcpus: int,
              context: MeterContext | None = None,
              warn: Callable[[str], None] | None = None) -> SelfMeter:
        """Select the meter as the controller would (``warn`` hears why one was skipped),
        start it, hold the slot and measure the idle draw."""
        selection = select_meter(meters, workload, context)
        for warning in selection.warnings:
            if warn is not None:
                warn(warning)
        return cls(selection, workload, vcpus=vcpus)

    def stop(self) -> None:
        self.monitor.stop()

    def metered(self, span: dict[str, Any], *, mark: bool = True,
                settle: bool = False) -> dict[str, Any]:
        """A span (a dict with ``start_ns``, ``end_ns``, ``cpu_s``) with this meter's share
        as ``energy_j``. A retrospective meter's readings are taken as they stand unless
        ``settle`` (once per trial, at its end)."""
        m = self.monitor
        if mark:
            m.mark()
        if settle:
            m.settle(span["end_ns"])  # a Prometheus meter waits for its scrape
        timeline = m.timeline.snapshot(span["start_ns"], span["end_ns"])
        return {**span, "energy_j": span_energy(timeline, span["start_ns"], span["end_ns"],
                                                span["cpu_s"], m.idle_power_w or 0.0, 1,
                                                scope=m.scope)}

    def metered_trial(self, record: dict[str, Any]) -> dict[str, Any]:
        """A trial record (``TrialRecord.to_dict()``) with its and its spans' shares,
        the meter settled up to its end."""
        out = self.metered(record, settle=True)
        out["spans"] = [self.metered(s, mark=False) for s in record["spans"]]
        return out

    def points(self) -> dict[str, Any] | None:
        """The timeline's points since the last call (None: no new ones)."""
        m = self.monitor
        with self._lock:
            m.mark()
            meta = {"offset_ns": wall_offset_ns(), "source": m.source, "measured": m.measured,
                    "idle_power_w": m.idle_power_w or 0.0, "max_power_w": m.meter.max_power_w()}
            points = points_of(m.timeline, self._sent_ns + 1, meta)
            if not points["t_ns"]:
                return None
            self._sent_ns = int(points["t_ns"][-1])
            return points

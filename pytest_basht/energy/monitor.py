"""The energy monitor: one meter, the process tree it covers, a sampler and windows.

This is the object behind the ``energy_meter`` fixture. ``window(name)`` reads the meter
at both edges (as ZeusMonitor does) and windows nest freely. Before the first deployment
the monitor measures the idle draw for a few seconds (real meters; estimates model it).
A retrospective meter (Prometheus) is settled before a window's energy is used: the
monitor waits for the server to have scraped past the window and revises the timeline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pytest_basht.energy.attribution import delta
from pytest_basht.energy.base import Allocation, Meter
from pytest_basht.energy.process import ProcessTree
from pytest_basht.energy.sampler import Mark, Sampler, Timeline
from pytest_basht.records import mono_ns


@dataclass
class Window:
    """Time and energy of one named window."""

    name: str
    start: Mark
    end: Mark | None
    source: str
    measured: bool
    monitor: EnergyMonitor | None = field(default=None, repr=False)

    @property
    def duration_s(self) -> float:
        return 0.0 if self.end is None else (self.end.t_ns - self.start.t_ns) / 1e9

    @property
    def energy_j(self) -> float:
        if self.end is None:
            return 0.0
        if self.monitor is not None and self.monitor.meter.retrospective:
            return self.monitor.energy_between(self.start.t_ns, self.end.t_ns)
        return max(0.0, self.end.joules - self.start.joules)

    @property
    def cpu_s(self) -> float:
        return 0.0 if self.end is None else max(0.0, self.end.cpu_s - self.start.cpu_s)

    @property
    def power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def band_j(self) -> tuple[float, float] | None:
        """(low, high) joules of an estimate's window; None for a measurement."""
        if self.end is None or self.start.band is None or self.end.band is None:
            return None
        return (self.end.band[0] - self.start.band[0], self.end.band[1] - self.start.band[1])


@dataclass
class IdleMeasurement:
    power_w: float
    seconds: float
    start_ns: int
    end_ns: int
    note: str = ""


class EnergyMonitor:
    def __init__(self, meter: Meter, *, hz: float = 10.0, tree: ProcessTree | None = None,
                 max_points: int = 100_000, selection: str = "") -> None:
        self.meter = meter
        self.tree = tree or ProcessTree()
        self.timeline = Timeline(max_points)
        self.requested_hz = hz
        self.hz = max(hz, meter.min_sample_hz())
        self.sampler = Sampler(self.mark, self.hz, interval=meter.poll_interval)
        self.selection = selection
        self.idle_power_w: float | None = meter.modelled_idle_power_w()
        self.idle_measured = False
        self.idle: IdleMeasurement | None = None
        self.warnings: list[str] = []
        #: monotonic → wall clock (ns): maps timeline points to UTC (carbon series, plots)
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self._settled_ns = 0
        self._lock = threading.Lock()
        self._started = False

    @property
    def source(self) -> str:
        return self.meter.source

    @property
    def measured(self) -> bool:
        return self.meter.measured

    @property
    def scope(self) -> str:
        """What the meter's energy covers: the run's processes, or the whole machine."""
        return self.meter.scope

    def start(self) -> None:
        if self._started:
            return
        self.meter.start(self.tree.usage())
        self._started = True
        self.mark()
        self.sampler.start()

    def stop(self) -> None:
        if not self._started:
            return
        self.sampler.stop()
        self.mark()
        self.meter.close()
        self._started = False

    def mark(self) -> Mark:
        """Read the meter and the process tree now, and add the point to the timeline."""
        with self._lock:
            usage = self.tree.usage()
            reading = self.meter.read(usage)
            machine = (reading.machine_cpu_s if reading.machine_cpu_s is not None
                       else usage.machine_cpu_s)
            mark = Mark(usage.t_ns, reading.total, usage.cpu_s, dict(reading.joules),
                        machine, reading.band)
            self.timeline.append(mark)
            return mark

    def clock(self) -> tuple[int, float]:
        """A recorder clock: spans of the run's processes, with a timeline point at each edge."""
        mark = self.mark()
        return mark.t_ns, mark.cpu_s

    def hold(self, allocation: Allocation | None) -> None:
        self.mark()
        self.meter.hold(allocation)
        modelled = self.meter.modelled_idle_power_w()
        if modelled is not None:
            self.idle_power_w = modelled

    def measure_idle(self, seconds: float) -> IdleMeasurement | None:
        """Measure the idle draw now (before deploy), once; modelled meters skip it."""
        if self.idle is not None or self.meter.modelled_idle_power_w() is not None:
            return self.idle
        if not self._started:
            self.start()
        if seconds <= 0:
            self.warnings.append("idle draw not measured (energy.idle_s = 0): WR counts no "
                                 "idle energy")
            self.idle_power_w = 0.0
            return None
        first = self.mark()
        time.sleep(seconds)
        last = self.mark()
        self.settle(last.t_ns)
        energy = self.energy_between(first.t_ns, last.t_ns)
        dt = (last.t_ns - first.t_ns) / 1e9
        busy = last.machine_cpu_s - first.machine_cpu_s
        note = ""
        if dt > 0 and busy / dt > 0.2:
            note = (f"the machine was busy while idle was measured ({busy / dt:.2f} cores of "
                    "other work): idle draw includes it")
            self.warnings.append(note)
        self.idle = IdleMeasurement(energy / dt if dt > 0 else 0.0, dt, first.t_ns, last.t_ns,
                                    note)
        self.idle_power_w = self.idle.power_w
        self.idle_measured = True
        return self.idle

    def settle(self, until_ns: int | None = None) -> None:
        """Retrospective meters: wait for readings up to ``until_ns`` and revise the timeline."""
        if not self.meter.retrospective:
            return
        until = until_ns if until_ns is not None else mono_ns()
        if not self.meter.settle(until):
            self.warnings.append(f"{self.source}: no data past a window's end in time; "
                                 "its last part is extrapolated")
        ts = self.timeline.times_since(self._settled_ns)
        if not ts:
            return
        readings = self.meter.revise(ts)
        pairs = zip(ts, readings, strict=True)
        self.timeline.revise({t: (dict(r.joules), r.machine_cpu_s) for t, r in pairs
                              if t <= until})
        self._settled_ns = max(self._settled_ns, min(until, ts[-1]))

    @contextmanager
    def window(self, name: str) -> Iterator[Window]:
        if not self._started:
            self.start()
        self.meter.sync()
        win = Window(name, self.mark(), None, self.source, self.measured, self)
        try:
            yield win
        finally:
            self.meter.sync()
            win.end = self.mark()
            self.settle(win.end.t_ns)

    def energy_between(self, start_ns: int, end_ns: int) -> float:
        snap = self.timeline.snapshot(start_ns, end_ns)
        return delta(snap["t_ns"], snap["joules"], start_ns, end_ns)

    def describe(self) -> dict[str, Any]:
        out = {**self.meter.describe(), "sample_hz": self.hz, "selection": self.selection,
               "sampler_errors": self.sampler.errors, "scope": self.scope}
        if self.hz != self.requested_hz:
            out["sample_hz_requested"] = self.requested_hz
        if self.sampler.last_error:
            out["sampler_last_error"] = self.sampler.last_error
        if self.idle is not None:
            out["idle"] = {"power_w": self.idle.power_w, "seconds": self.idle.seconds,
                           "note": self.idle.note}
        if self.warnings:
            out["warnings"] = list(dict.fromkeys(self.warnings))
        return out

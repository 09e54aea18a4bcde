"""The energy monitor: one meter, the process tree it covers, a sampler and windows.

This is the object behind the ``energy_meter`` fixture. ``window(name)`` reads the meter
at both edges (as ZeusMonitor does) and windows nest freely.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pytest_basht.energy.attribution import delta
from pytest_basht.energy.base import Allocation, Meter
from pytest_basht.energy.process import ProcessTree
from pytest_basht.energy.sampler import Mark, Sampler, Timeline


@dataclass
class Window:
    """Time and energy of one named window."""

    name: str
    start: Mark
    end: Mark | None
    source: str
    measured: bool

    @property
    def duration_s(self) -> float:
        return 0.0 if self.end is None else (self.end.t_ns - self.start.t_ns) / 1e9

    @property
    def energy_j(self) -> float:
        return 0.0 if self.end is None else max(0.0, self.end.joules - self.start.joules)

    @property
    def cpu_s(self) -> float:
        return 0.0 if self.end is None else max(0.0, self.end.cpu_s - self.start.cpu_s)

    @property
    def power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0


class EnergyMonitor:
    def __init__(self, meter: Meter, *, hz: float = 10.0, tree: ProcessTree | None = None,
                 max_points: int = 100_000, selection: str = "") -> None:
        self.meter = meter
        self.tree = tree or ProcessTree()
        self.timeline = Timeline(max_points)
        self.sampler = Sampler(self.mark, hz)
        self.hz = hz
        self.selection = selection
        self.idle_power_w: float | None = meter.modelled_idle_power_w()
        self.idle_measured = False
        self._lock = threading.Lock()
        self._started = False

    @property
    def source(self) -> str:
        return self.meter.source

    @property
    def measured(self) -> bool:
        return self.meter.measured

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
            mark = Mark(usage.t_ns, reading.total, usage.cpu_s, dict(reading.joules))
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

    @contextmanager
    def window(self, name: str) -> Iterator[Window]:
        if not self._started:
            self.start()
        win = Window(name, self.mark(), None, self.source, self.measured)
        try:
            yield win
        finally:
            win.end = self.mark()

    def energy_between(self, start_ns: int, end_ns: int) -> float:
        snap = self.timeline.snapshot(start_ns, end_ns)
        return delta(snap["t_ns"], snap["joules"], start_ns, end_ns)

    def describe(self) -> dict[str, Any]:
        return {**self.meter.describe(), "sample_hz": self.hz, "selection": self.selection,
                "sampler_errors": self.sampler.errors}

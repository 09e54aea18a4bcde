"""The energy monitor: one meter, the process tree it covers, a sampler and windows.

This is the object behind the ``energy_meter`` fixture. ``window(name)`` reads the meter
at both edges (as ZeusMonitor does) and windows nest freely. Before the first deployment
the monitor measures the idle draw for a few seconds (real meters; estimates model it).
A retrospective meter (Prometheus) is settled before a window's energy is used: the
monitor waits for the server to have scraped past the window and revises the timeline.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pytest_basht.energy.attribution import delta
from pytest_basht.energy.base import Allocation, Meter, Reading, Usage
from pytest_basht.energy.failover import Coverage, Failover, Standby, compose
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
                 max_points: int = 100_000, selection: str = "",
                 fallback: Meter | None = None, fail_after_s: float = 10.0) -> None:
        self.meter = meter
        #: read alongside ``meter``; measures from its last good reading once it has failed
        self.standby = Standby(fallback) if fallback is not None else None
        self.fail_after_s = fail_after_s
        self.failover: Failover | None = None
        self._good: Reading | None = None  # the meter's last good reading
        self._failing_since: int | None = None
        self._frozen: dict[str, float] = {}
        self._base: dict[str, float] = {}
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
        usage = self.tree.usage()
        if self.standby is not None:
            self.standby.start(usage)
            self.standby.read(usage)
        try:
            self.meter.start(usage)
        except Exception as exc:  # gone between its probe and now: the fallback measures
            with self._lock:
                self._fail(usage.t_ns, f"{type(exc).__name__}: {exc}")
        self._started = True
        self.mark()
        self.sampler.start()

    def stop(self) -> None:
        if not self._started:
            return
        self.sampler.stop()
        self.mark()
        for meter in (self.meter, self.standby.meter if self.standby else None):
            try:
                if meter is not None:
                    meter.close()
            except Exception as exc:  # a failed meter may not close cleanly; nothing is lost
                self.warnings.append(f"{meter.source}: not closed cleanly ({exc})")
        self._started = False

    def mark(self) -> Mark:
        """Read the meter and the process tree now, and add the point to the timeline."""
        with self._lock:
            usage = self.tree.usage()
            reading = self._read(usage)
            machine = (reading.machine_cpu_s if reading.machine_cpu_s is not None
                       else usage.machine_cpu_s)
            mark = Mark(usage.t_ns, reading.total, usage.cpu_s, dict(reading.joules),
                        machine, reading.band)
            self.timeline.append(mark)
            return mark

    def _read(self, usage: Usage) -> Reading:
        """The meter's reading; while it fails, its last good values (a blip: a cumulative
        counter catches up when it reads again); past ``fail_after_s``, the failover's."""
        spare = self.standby.read(usage) if self.standby is not None else None
        if self.failover is not None:
            return self._composed(usage.t_ns, spare)
        try:
            reading: Reading | None = self.meter.read(usage)
            problem = self.meter.failure()
        except Exception as exc:
            reading, problem = None, f"{type(exc).__name__}: {exc}"
        if problem is None and reading is not None:
            self._good, self._failing_since = reading, None
            return reading
        if self._failing_since is None:
            self._failing_since = usage.t_ns
        if (usage.t_ns - self._failing_since) / 1e9 < self.fail_after_s:
            held = self._good.joules if self._good is not None else {}
            return reading or Reading(usage.t_ns, dict(held), self.meter.source)
        self._fail(usage.t_ns, problem or "no reading")
        return self._composed(usage.t_ns, spare)

    def _fail(self, now_ns: int, reason: str) -> None:
        """Switch to the fallback from the meter's last good reading; rewrite the points
        after it (held or provisional values) with the fallback's energy."""
        start = self._good.t_ns if self._good is not None else now_ns
        valid = self.meter.valid_until_ns() if self._good is not None else None
        if valid is not None:
            start = min(start, max(valid, self._settled_ns))
        self._frozen = dict(self._good.joules) if self._good is not None else {}
        if self.meter.retrospective and self._good is not None:
            # settle what is left before the switch from the data already fetched
            with contextlib.suppress(Exception):
                ts = [t for t in self.timeline.times_since(self._settled_ns) if t <= start]
                *settled, at_start = self.meter.revise([*ts, start])
                self.timeline.revise({t: (dict(r.joules), r.machine_cpu_s)
                                      for t, r in zip(ts, settled, strict=True)})
                self._frozen = dict(at_start.joules)
        fallback = self.standby.meter.source if self.standby is not None else None
        self._base = self.standby.at(start) if self.standby is not None else {}
        self.failover = Failover(self.meter.source, fallback, reason, start, now_ns)
        after = {t: (self._compose(self.standby.at(t) if self.standby else {}), None)
                 for t in self.timeline.times_since(start) if t > start}
        self.timeline.revise(after)
        self._settled_ns = max(self._settled_ns, now_ns)
        if self.standby is not None:
            modelled = self.standby.meter.modelled_idle_power_w()
            if modelled is not None:
                self.idle_power_w, self.idle_measured = modelled, False
        self.warnings.append(f"{self.meter.source} failed mid-run ({reason}); "
                             + (f"{fallback} measures from its last good reading on (an "
                                "estimate, not a measurement)" if fallback
                                else "no energy is counted from its last good reading on")
                             + "; the report marks the affected window")

    def _compose(self, now: dict[str, float]) -> dict[str, float]:
        prefix = self.standby.meter.name if self.standby is not None else "fallback"
        return compose(self._frozen, self._base, now, prefix)

    def _composed(self, t_ns: int, spare: Reading | None) -> Reading:
        source = spare.source if spare is not None else self.meter.source
        return Reading(t_ns, self._compose(dict(spare.joules) if spare else {}), source)

    def coverage(self, start_ns: int, end_ns: int) -> Coverage:
        """What measured ``[start_ns, end_ns]``: the meter, the fallback after a failover,
        or both (then not a measurement)."""
        fo = self.failover
        if fo is None or end_ns <= fo.start_ns:
            return Coverage(self.source, self.measured, self.scope, [])
        marked = [fo.to_dict()]
        if self.standby is None:
            return Coverage(self.source, False, self.scope, marked)
        fallback = self.standby.meter
        if start_ns >= fo.start_ns:
            return Coverage(fallback.source, fallback.measured, fallback.scope, marked)
        return Coverage(f"{self.source}+{fallback.source}", False, self.scope, marked)

    def clock(self) -> tuple[int, float]:
        """A recorder clock: spans of the run's processes, with a timeline point at each edge."""
        mark = self.mark()
        return mark.t_ns, mark.cpu_s

    def hold(self, allocation: Allocation | None) -> None:
        self.mark()
        self.meter.hold(allocation)
        if self.standby is not None:
            self.standby.meter.hold(allocation)
        idle_of = self.standby.meter if self.failover and self.standby else self.meter
        modelled = idle_of.modelled_idle_power_w()
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
        if not self.meter.retrospective or self.failover is not None:
            return
        until = until_ns if until_ns is not None else mono_ns()
        if not self.meter.settle(until):
            self.mark()  # a meter that stopped answering fails over now
            if self.failover is not None:
                return
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
            with contextlib.suppress(Exception):  # a failed GPU meter's sync: marked below
                self.meter.sync()
            win.end = self.mark()
            self.settle(win.end.t_ns)
            cover = self.coverage(win.start.t_ns, win.end.t_ns)
            win.source, win.measured = cover.source, cover.measured

    def idle_share(self, start_ns: int, end_ns: int) -> float:
        """The share of the idle draw this process's meter charged over a stretch: under
        xdist, the scenarios running at once share it (``energy.leases``)."""
        measuring = self.standby.meter if self.failover and self.standby else self.meter
        return measuring.idle_fraction(start_ns, end_ns)

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
        if self.failover is not None:
            out["failover"] = self.failover.to_dict()
        return out

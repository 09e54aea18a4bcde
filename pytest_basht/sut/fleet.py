"""Energy of processes the live meter cannot see: remote workers and Ray cluster trials.

The live meter covers the controller's process tree (its local workers, a Ray it
started). A process elsewhere — a ``basht worker`` on another host, a Tune trial on an
existing Ray cluster — meters itself with its own meter and sends its cumulative timeline
(``points``). The :class:`FleetMeter` adds those timelines to the live one, so every
scenario figure (energy, CO2, cost, TTA/ETA) and every lifecycle phase covers the whole
fleet. Remote trials keep the energies their own meters attributed; local trials are
attributed from the live timeline as usual, each local slot taking its share of the
controller's idle power. The scenario's window, attribution, band and carbon record are
the live trace's own (``energy.trace``).

Clocks: every process sends the offset of its wall clock from its monotonic clock, and
its times are mapped onto the controller's monotonic clock through the wall clocks. On one
host the mapping is exact; between hosts it is as good as their clock synchronisation
(NTP: milliseconds).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_basht.energy import trace as trace_mod
from pytest_basht.energy.attribution import delta, interpolate
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.lifecycle import Phase
from pytest_basht.records import EnergyTrace, Span, TrialRecord
from pytest_basht.workload import Workload

BAND_HOW = ("energy of the same CPU time under the least and the most power-hungry CPU "
            "coefficients of CCF's per-microarchitecture table (remote processes: their own "
            "band), as a factor of the central estimate")


def to_local(t_ns: int, remote_offset_ns: int, local_offset_ns: int) -> int:
    """A remote monotonic time on the local monotonic clock (through the wall clocks)."""
    return int(t_ns) + int(remote_offset_ns) - int(local_offset_ns)


def shift_span(span: dict[str, Any], by_ns: int) -> Span:
    out = Span.from_dict(span)
    out.start_ns += by_ns
    out.end_ns += by_ns
    return out


def shift_trial(record: dict[str, Any], by_ns: int, worker: int) -> TrialRecord:
    """A trial record from another host, on the local clock and in its slot."""
    trial = TrialRecord.from_dict(record)
    trial.start_ns += by_ns
    trial.end_ns += by_ns
    trial.worker = worker
    for span in trial.spans:
        span.start_ns += by_ns
        span.end_ns += by_ns
        span.worker = worker
    return trial


@dataclass
class Series:
    """One remote process's cumulative energy, on the local clock."""

    key: str
    source: str
    measured: bool
    idle_power_w: float
    max_power_w: float
    t_ns: list[int] = field(default_factory=list)
    joules: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)

    def extend(self, points: dict[str, Any], local_offset_ns: int) -> None:
        shift = int(points["meta"]["offset_ns"]) - local_offset_ns
        low = points.get("low") or points["joules"]
        high = points.get("high") or points["joules"]
        for i, t in enumerate(points["t_ns"]):
            t = int(t) + shift
            if self.t_ns and t <= self.t_ns[-1]:
                continue
            self.t_ns.append(t)
            self.joules.append(float(points["joules"][i]))
            self.cpu_s.append(float(points["cpu_s"][i]))
            self.low.append(float(low[i]))
            self.high.append(float(high[i]))

    def between(self, start_ns: int, end_ns: int) -> float:
        return delta(self.t_ns, self.joules, start_ns, end_ns)

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "source": self.source, "measured": self.measured,
                "idle_power_w": self.idle_power_w, "points": len(self.t_ns),
                "energy_j": (self.joules[-1] - self.joules[0]) if self.joules else 0.0}


class FleetMeter:
    """The live monitor plus the timelines remote processes sent (an ``OwnMeter``).

    ``local_slots`` worker slots run under the live meter and ``remote_slots`` elsewhere;
    ``refresh`` pulls newly sent points before any figure is read.
    """

    def __init__(self, monitor: EnergyMonitor, workload: Workload, *, local_slots: int,
                 remote_slots: int, refresh: Callable[[], None] | None = None) -> None:
        self.monitor = monitor
        self.workload = workload
        self.local_slots = local_slots
        self.remote_slots = remote_slots
        self.refresh = refresh
        self.series: dict[str, Series] = {}
        self.remote_trials: set[int] = set()
        # what the runner does for the live meter: the idle draw, before the first deploy
        monitor.measure_idle(workload.energy.idle_s)

    @property
    def offset_ns(self) -> int:
        return self.monitor.wall_offset_ns

    def add(self, key: str, points: dict[str, Any]) -> None:
        meta = points["meta"]
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series(
                key, str(meta["source"]), bool(meta["measured"]),
                float(meta.get("idle_power_w") or 0.0), float(meta.get("max_power_w") or 0.0))
        series.extend(points, self.offset_ns)

    def _pull(self) -> None:
        if self.refresh is not None:
            self.refresh()

    # ------------------------------------------------------------------ OwnMeter

    def clock(self) -> tuple[int, float]:
        return self.monitor.clock()

    def remote_between(self, start_ns: int, end_ns: int) -> float:
        return sum(s.between(start_ns, end_ns) for s in self.series.values())

    def energy_between(self, start_ns: int, end_ns: int) -> float:
        self._pull()
        return self.monitor.energy_between(start_ns, end_ns) + self.remote_between(start_ns,
                                                                                   end_ns)

    def idle_power_w(self) -> float:
        """The controller's idle draw plus the remote slots' (their meters' mean)."""
        remote = [s.idle_power_w for s in self.series.values()]
        mean = sum(remote) / len(remote) if remote else 0.0
        return (self.monitor.idle_power_w or 0.0) + self.remote_slots * mean

    def trace(self, spans: list[Span], trials: list[TrialRecord], slots: int) -> EnergyTrace:
        self._pull()
        m = self.monitor
        local_timeline = trace_mod.snapshot(m, spans, trials)
        timeline = merge(local_timeline, list(self.series.values()), self._fill(spans))
        filled = timeline.get("joules.remote_idle", [0.0])
        for span in spans:
            span.energy_j = self.energy_between(span.start_ns, span.end_ns)
        local = [t for t in trials if t.number not in self.remote_trials]
        trace_mod.attribute(local_timeline, local, m.idle_power_w or 0.0,
                            max(1, self.local_slots), m.scope)
        first, last = trace_mod.window(spans, timeline)
        sources = list(dict.fromkeys([m.source, *(s.source for s in self.series.values())]))
        fill_j = filled[-1] - filled[0]
        measured = (m.measured and all(s.measured for s in self.series.values())
                    and fill_j == 0)
        meter = {**m.describe(), "fleet": {
            "local_slots": self.local_slots, "remote_slots": self.remote_slots,
            "remote": [s.describe() for s in self.series.values()],
            "idle_fill_j": fill_j,
            "how": "the live meter covers the controller's processes; each remote process "
                   "metered itself and sent its timeline, mapped onto this clock; in the "
                   "trials window a remote slot no metered process occupied is charged "
                   "the remote slots' mean idle power (modelled)"}}
        return EnergyTrace(
            source="+".join(sources), measured=measured, idle_power_w=self.idle_power_w(),
            max_power_w=m.meter.max_power_w() + sum(
                s.max_power_w for s in self._max_per_slot()),
            slots=slots, idle_measured=m.idle_measured, meter=meter, timeline=timeline,
            scope=m.scope, band=trace_mod.band(timeline, BAND_HOW),
            carbon=trace_mod.carbon(self.workload, first, last, m.wall_offset_ns))

    def _fill(self, spans: Sequence[Span]) -> IdleFill | None:
        setup = next((s for s in spans if s.phase == Phase.SETUP.value), None)
        collect = next((s for s in spans if s.phase == Phase.RESULT_COLLECTION.value), None)
        remote = [s.idle_power_w for s in self.series.values()]
        if setup is None or collect is None or not remote or self.remote_slots == 0:
            return None
        return IdleFill(setup.end_ns, collect.start_ns, self.remote_slots,
                        sum(remote) / len(remote))

    def _max_per_slot(self) -> list[Series]:
        """One series per remote slot for P_max (the most power-hungry of them)."""
        ranked = sorted(self.series.values(), key=lambda s: s.max_power_w, reverse=True)
        return ranked[: self.remote_slots]


@dataclass(frozen=True)
class IdleFill:
    """Remote slots no metered process occupies, inside ``[start_ns, end_ns]`` (the trials
    window), are charged ``power_w`` each: a Tune trial worker not started yet, a lost
    ``basht worker``'s slot. Modelled, as WR models every idle slot."""

    start_ns: int
    end_ns: int
    slots: int
    power_w: float


def idle_fill(times: Sequence[int], remote: Sequence[Series], fill: IdleFill) -> list[float]:
    """Cumulative joules of the fill at each time."""
    spans = [(s.t_ns[0], s.t_ns[-1]) for s in remote if s.t_ns]
    out, total = [0.0], 0.0
    for a, b in itertools.pairwise(times):
        lo, hi = max(a, fill.start_ns), min(b, fill.end_ns)
        if hi > lo:
            mid = (lo + hi) // 2
            active = sum(1 for first, last in spans if first <= mid <= last)
            total += max(0, fill.slots - active) * fill.power_w * (hi - lo) / 1e9
        out.append(total)
    return out[: len(times)]


def merge(local: dict[str, list[float]], remote: Sequence[Series],
          fill: IdleFill | None = None) -> dict[str, list[float]]:
    """The live timeline with the remote series added on the union of their times (within
    the live timeline's span): cumulative joules, CPU seconds and the estimate's band;
    and the modelled idle of unoccupied remote slots (``joules.remote_idle``)."""
    ts = local.get("t_ns", [])
    if not ts or (not remote and fill is None):
        return local
    lo, hi = ts[0], ts[-1]
    edges = [t for t in ((fill.start_ns, fill.end_ns) if fill else ()) if lo < t < hi]
    times = sorted({*ts, *edges, *(t for s in remote for t in s.t_ns if lo < t < hi)})
    out: dict[str, list[float]] = {"t_ns": list(times)}
    for key, series in local.items():
        if key != "t_ns":
            out[key] = [interpolate(ts, series, t) for t in times]
    remote_j = [sum(interpolate(s.t_ns, s.joules, t) - (s.joules[0] if s.joules else 0.0)
                    for s in remote if s.t_ns) for t in times]
    filled = idle_fill(times, remote, fill) if fill is not None else [0.0] * len(times)
    out["joules"] = [a + b + f for a, b, f in zip(out["joules"], remote_j, filled,
                                                   strict=True)]
    out["joules.remote"] = remote_j
    if fill is not None:
        out["joules.remote_idle"] = filled
    out["cpu_s"] = [a + sum(interpolate(s.t_ns, s.cpu_s, t) - s.cpu_s[0] for s in remote
                            if s.t_ns) for a, t in zip(out["cpu_s"], times, strict=True)]
    if "joules_low" in out:
        for key, attr in (("joules_low", "low"), ("joules_high", "high")):
            out[key] = [a + f + sum(interpolate(s.t_ns, getattr(s, attr), t)
                                    - getattr(s, attr)[0] for s in remote if s.t_ns)
                        for a, f, t in zip(out[key], filled, times, strict=True)]
    return out

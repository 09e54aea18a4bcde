"""A scenario's energy trace, written once: which part of the timeline is the scenario's,
the estimate's band over it, each trial's and span's attributed share, and the carbon
record of its window.

``trace`` is the live monitor's trace (the runner's, for SUTs whose processes the monitor
covers). ``FleetMeter`` (``sut.fleet``) adds the timelines of processes on other hosts to
the live one and builds its trace from the same pieces: ``snapshot``, ``attribute``,
``window``, ``carbon`` and ``band``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_basht.energy import carbon as carbon_mod
from pytest_basht.energy.attribution import span_energy
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.sharing import share_slot_idle
from pytest_basht.lifecycle import Phase
from pytest_basht.records import EnergyTrace, Span, TrialRecord
from pytest_basht.workload import Workload

#: A deploy this close before setup was made for the scenario: its timeline starts there.
ADJACENT_NS = 5_000_000_000

BAND_HOW = ("energy of the same CPU time under the least and the most power-hungry CPU "
            "coefficients of CCF's per-microarchitecture table, over this scenario, as a "
            "factor of the central estimate")


def scenario_start(spans: Sequence[Span], trials: Sequence[TrialRecord]) -> int:
    """Where a scenario's timeline starts: its setup (or its first trial), or its deploy
    when the deployment was made for it (a reused one was deployed long before)."""
    starts = [s.start_ns for s in spans if s.phase != Phase.DEPLOY.value]
    starts += [t.start_ns for t in trials]
    start = min(starts) if starts else (spans[0].end_ns if spans else 0)
    deploy = next((s for s in spans if s.phase == Phase.DEPLOY.value), None)
    if deploy is not None and 0 <= start - deploy.end_ns < ADJACENT_NS:
        start = deploy.start_ns
    return start


def snapshot(monitor: EnergyMonitor, spans: Sequence[Span], trials: Sequence[TrialRecord]
             ) -> dict[str, list[float]]:
    """The monitor's timeline from the scenario's start until now, settled."""
    monitor.mark()
    monitor.settle()
    return monitor.timeline.snapshot(scenario_start(spans, trials), None)


def band(timeline: dict[str, list[float]], how: str = BAND_HOW) -> dict[str, Any]:
    """An estimate's band over the scenario, as factors of its central energy."""
    ts, central = timeline.get("t_ns", []), timeline.get("joules", [])
    low, high = timeline.get("joules_low"), timeline.get("joules_high")
    if not ts or not central or low is None or high is None:
        return {}
    mid = central[-1] - central[0]
    if mid <= 0:
        return {}
    return {"low": (low[-1] - low[0]) / mid, "high": (high[-1] - high[0]) / mid, "how": how}


def attribute(timeline: dict[str, list[float]], trials: Sequence[TrialRecord],
              idle_power_w: float, slots: int, scope: str) -> None:
    """Give every trial and its spans (concurrent, in worker processes) their attributed
    share of the timeline; trials that ran at once on one slot share its idle power."""
    for trial in trials:
        trial.energy_j = span_energy(timeline, trial.start_ns, trial.end_ns, trial.cpu_s,
                                     idle_power_w, slots, scope=scope)
        for span in trial.spans:
            span.energy_j = span_energy(timeline, span.start_ns, span.end_ns, span.cpu_s,
                                        idle_power_w, slots, scope=scope)
    share_slot_idle(trials, idle_power_w, slots)


def window(spans: Sequence[Span], timeline: dict[str, list[float]]) -> tuple[int, int]:
    """The scenario's first and last instant: its first span's start, the timeline's end."""
    ts = timeline.get("t_ns", [])
    first = min((s.start_ns for s in spans), default=ts[0] if ts else 0)
    last = ts[-1] if ts else first
    return first, last


def carbon(workload: Workload, first_ns: int, last_ns: int, wall_offset_ns: int
           ) -> dict[str, Any]:
    """The carbon record of a window of the monotonic clock (mapped to UTC)."""
    return carbon_mod.record(workload, (first_ns + wall_offset_ns) / 1e9,
                             (last_ns + wall_offset_ns) / 1e9, wall_offset_ns)


def trace(monitor: EnergyMonitor, workload: Workload, spans: list[Span],
          trials: list[TrialRecord]) -> EnergyTrace:
    """Settle the meter, snapshot the scenario's timeline and give every span its energy:
    lifecycle spans (run by the controller, one at a time) the counter delta of their
    window; trial spans (concurrent, in worker processes) their attributed share."""
    timeline = snapshot(monitor, spans, trials)
    first, last = window(spans, timeline)
    cover = monitor.coverage(first, last)  # a meter that failed mid-run marks its window
    for span in spans:
        span.energy_j = monitor.energy_between(span.start_ns, span.end_ns)
    slots = workload.workers.count
    share = monitor.idle_share(first, last)  # of the idle draw, by the scenarios running then
    idle = (monitor.idle_power_w or 0.0) * share
    attribute(timeline, trials, idle, slots, cover.scope)
    return EnergyTrace(source=cover.source, measured=cover.measured, idle_power_w=idle,
                       max_power_w=monitor.meter.max_power_w(), slots=slots,
                       idle_measured=monitor.idle_measured,
                       meter={**monitor.describe(), "idle_share": share},
                       timeline=timeline, scope=cover.scope, band=band(timeline),
                       carbon=carbon(workload, first, last, monitor.wall_offset_ns),
                       failover=cover.failover)

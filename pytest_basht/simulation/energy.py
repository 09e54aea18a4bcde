"""The virtual clock and energy timeline of a simulated deployment.

A simulated SUT hands this to the runner instead of the live meter: every span is timed on
the virtual clock, and the timeline holds cumulative joules and CPU seconds in virtual
time. Lifecycle phases add their recorded time and energy; in the trials window each
worker slot draws its share of idle power while it holds no trial (waiting on the sampler,
or idle at the end), and its trial's recorded energy, at that epoch's mean power, while it
runs one. Metrics then read it exactly as they read a live timeline.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from pytest_basht.energy.attribution import delta
from pytest_basht.lifecycle import Phase
from pytest_basht.records import EnergyTrace, Span, TrialRecord


class VirtualMeter:
    def __init__(self, *, source: str, measured: bool, idle_measured: bool,
                 idle_w_per_slot: float, max_w_per_slot: float, slots: int,
                 describe: dict[str, Any] | None = None) -> None:
        self.source = f"simulated:{source}"
        self.recorded_measured = measured
        self.idle_measured = idle_measured
        self.idle_w_per_slot = idle_w_per_slot
        self.max_w_per_slot = max_w_per_slot
        self.slots = slots
        self.info = describe or {}
        self.t_ns: list[int] = [0]
        self.joules: list[float] = [0.0]
        self.cpu_s: list[float] = [0.0]

    @property
    def now_ns(self) -> int:
        return self.t_ns[-1]

    def clock(self) -> tuple[int, float]:
        """A recorder clock in virtual time."""
        return self.t_ns[-1], self.cpu_s[-1]

    def _point(self, t: int, joules: float, cpu: float) -> None:
        if t == self.t_ns[-1]:
            self.joules[-1], self.cpu_s[-1] = joules, cpu
        else:
            self.t_ns.append(t)
            self.joules.append(joules)
            self.cpu_s.append(cpu)

    def advance(self, dt_ns: int, energy_j: float = 0.0, cpu_s: float = 0.0) -> None:
        """Let ``dt_ns`` pass, drawing ``energy_j`` (a lifecycle phase as recorded)."""
        self._point(self.t_ns[-1] + max(0, dt_ns), self.joules[-1] + energy_j,
                    self.cpu_s[-1] + cpu_s)

    def trials_window(self, end_ns: int, trials: Sequence[TrialRecord]) -> None:
        """Advance to ``end_ns`` over a window in which ``trials`` ran on the slots."""
        idle = self.idle_w_per_slot
        # (time, Δ power W, Δ CPU rate, energy jump J, CPU jump s)
        changes: list[tuple[int, float, float, float, float]] = []
        add = changes.append
        for t in trials:
            add((t.start_ns, -idle, 0.0, 0.0, 0.0))
            add((t.end_ns, idle, 0.0, 0.0, 0.0))
            for s in t.spans:
                d = s.end_ns - s.start_ns
                e = s.energy_j or 0.0
                if d > 0:
                    p, c = e * 1e9 / d, s.cpu_s * 1e9 / d
                    add((s.start_ns, p, c, 0.0, 0.0))
                    add((s.end_ns, -p, -c, 0.0, 0.0))
                elif e or s.cpu_s:
                    add((s.start_ns, 0.0, 0.0, e, s.cpu_s))
        changes.sort(key=lambda x: x[0])
        t_prev = self.t_ns[-1]
        joules, cpu = self.joules[-1], self.cpu_s[-1]
        power, rate = idle * self.slots, 0.0
        for t, dp, dc, jump, cjump in changes:
            if t > t_prev:
                joules += power * (t - t_prev) / 1e9
                cpu += rate * (t - t_prev) / 1e9
                self._point(t, joules, cpu)
                t_prev = t
            power += dp
            rate += dc
            if jump or cjump:  # an instant's energy: a second point at the same time
                if self.t_ns[-1] != t:
                    self._point(t, joules, cpu)
                joules += jump
                cpu += cjump
                self.t_ns.append(t)
                self.joules.append(joules)
                self.cpu_s.append(cpu)
        end_ns = max(end_ns, t_prev)
        joules += power * (end_ns - t_prev) / 1e9
        cpu += rate * (end_ns - t_prev) / 1e9
        self._point(end_ns, joules, cpu)

    def energy_between(self, start_ns: int, end_ns: int) -> float:
        return delta(self.t_ns, self.joules, start_ns, end_ns)

    def snapshot(self, t0: int) -> dict[str, list[float]]:
        lo = max(0, bisect.bisect_right(self.t_ns, t0) - 1)
        return {"t_ns": self.t_ns[lo:], "joules": self.joules[lo:], "cpu_s": self.cpu_s[lo:]}

    def describe(self) -> dict[str, Any]:
        return {"name": "simulated", "source": self.source, "measured": False,
                "recorded_source": self.source.removeprefix("simulated:"),
                "recorded_measured": self.recorded_measured,
                "idle_w_per_slot": self.idle_w_per_slot, "max_w_per_slot": self.max_w_per_slot,
                "note": "virtual time; energies replayed from the recording (or modelled), "
                        "not measured by this run", **self.info}

    def trace(self, spans: Sequence[Span], trials: Sequence[TrialRecord],
              slots: int) -> EnergyTrace:
        """The scenario's energy trace: from its first span after deploy until now."""
        starts = [s.start_ns for s in spans if s.phase != Phase.DEPLOY.value]
        starts += [t.start_ns for t in trials]
        start = min(starts) if starts else self.now_ns
        return EnergyTrace(source=self.source, measured=False,
                           idle_power_w=self.idle_w_per_slot * slots,
                           max_power_w=self.max_w_per_slot * slots, slots=slots,
                           idle_measured=self.idle_measured, meter=self.describe(),
                           timeline=self.snapshot(start))

"""Study budgets: what a study may spend (the workload's ``budget:``), what it has spent,
and whether one more trial fits.

One mechanism for every SUT and every measure. A SUT keeps a ``Ledger`` of its study on
its own clock — wall time for real training, virtual time in a simulation: when the study
(the trials phase) started, what each finished trial spent, when each running trial
started — and asks ``Ledger.admits(now)`` before it hands out a trial. The answer is
``refusal()``, a pure function of the limits and the spends:

* a trial's forecast is the mean spend of the study's finished trials (none finished yet:
  nothing is known, and the trial is handed out);
* a **concurrent** measure (``time_s``) is how far the study has got: trials run side by
  side, so one more fits when the spend so far plus its forecast stays within the limit;
* an **additive** measure (energy, CO2, cost: a ``Measure`` with ``concurrent=False``)
  adds every trial's spend: one more fits when the spend so far, plus what the running
  trials are forecast to spend still, plus its forecast, stays within the limit.

A refusal closes the study for good (later asks are refused even if the forecast shrinks):
running trials finish, and the report says which limit stopped the study and how close to
it the study ended. A new measure is a ``MEASURES`` entry, a field of
``workload.BudgetSpec`` and the spends its SUTs pass in ``Ledger.finish``/``admits``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_basht.workload import Workload


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    unit: str
    #: trials run side by side and the study's spend is how far it has got (time); else
    #: every trial's spend adds up (energy, carbon, cost)
    concurrent: bool


MEASURES: dict[str, Measure] = {
    "time_s": Measure("time_s", "time", "s", concurrent=True),
}


def limits_of(workload: Workload) -> dict[str, float]:
    """The workload's limits, by measure (empty: the study has no budget)."""
    return {key: float(value) for key in MEASURES
            if (value := getattr(workload.budget, key, None)) is not None}


def forecast(finished: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One more trial's spend: the mean of the finished trials' (empty when none)."""
    if not finished:
        return {}
    keys = {k for spend in finished for k in spend}
    return {k: sum(s.get(k, 0.0) for s in finished) / len(finished) for k in keys}


def refusal(limits: Mapping[str, float], spent: Mapping[str, float],
            finished: Sequence[Mapping[str, float]],
            running: Sequence[Mapping[str, float]]) -> str | None:
    """The measure whose limit one more trial would pass, or None when it fits them all.

    ``spent``: the study's spend so far; ``finished``: each finished trial's spend;
    ``running``: what each running trial has spent so far."""
    expected = forecast(finished)
    for key, limit in limits.items():
        total = spent.get(key, 0.0) + expected.get(key, 0.0)
        if not MEASURES[key].concurrent:
            total += sum(max(0.0, expected.get(key, 0.0) - r.get(key, 0.0)) for r in running)
        if total > limit:
            return key
    return None


@dataclass
class Ledger:
    """One study's spend on its SUT's clock (seconds), and whether it is closed."""

    limits: dict[str, float]
    started_s: float = 0.0
    finished: list[dict[str, float]] = field(default_factory=list)
    running: dict[int, float] = field(default_factory=dict)
    stopped_by: str | None = None
    stopped_at_s: float | None = None
    forecast_at_stop: dict[str, float] = field(default_factory=dict)
    refused: int = 0

    @classmethod
    def of(cls, workload: Workload, started_s: float) -> Ledger:
        return cls(limits_of(workload), started_s)

    def start(self, number: int, now_s: float) -> None:
        self.running[number] = now_s

    def finish(self, number: int, now_s: float, **spend: float) -> None:
        """A trial ended: its time (from ``start``), and its spend in other measures."""
        began = self.running.pop(number, now_s)
        self.finished.append({"time_s": max(0.0, now_s - began), **spend})

    def admits(self, now_s: float, **spent: float) -> bool:
        """Whether one more trial may be handed out now (``spent``: the study's spend so
        far in measures other than time). A refusal closes the study."""
        if not self.limits:
            return True
        if self.stopped_by is not None:
            self.refused += 1
            return False
        so_far = {"time_s": now_s - self.started_s, **spent}
        running = [{"time_s": now_s - began} for began in self.running.values()]
        key = refusal(self.limits, so_far, self.finished, running)
        if key is None:
            return True
        self.stopped_by = key
        self.stopped_at_s = now_s - self.started_s
        self.forecast_at_stop = forecast(self.finished)
        self.refused += 1
        return False

    def summary(self, ended_s: float, **spent: float) -> dict[str, Any] | None:
        """What the report says: the limits, the spend when the study ended, which limit
        stopped it (None: something else did) and when; None without a budget."""
        if not self.limits:
            return None
        final = {"time_s": max(0.0, ended_s - self.started_s), **spent}
        return {
            "limits": dict(self.limits),
            "spent": {k: final.get(k) for k in self.limits},
            "used_pct": {k: 100.0 * final.get(k, 0.0) / v for k, v in self.limits.items()},
            "stopped_by": self.stopped_by,
            "stopped_at": ({"time_s": self.stopped_at_s}
                           if self.stopped_at_s is not None else None),
            "forecast": dict(self.forecast_at_stop),
            "refused": self.refused,
        }

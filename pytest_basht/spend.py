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
  adds every trial's spend: one more fits when what the finished trials spent, plus a
  forecast for each running trial (its spend is known only when it ends: each SUT learns
  it then, as its study is told it, ``objectives.TrialCost``), plus one more forecast,
  stays within the limit. A study's energy, CO2 and cost are its trials', every state
  counted; the idle slots and the lifecycle phases are not the study's.

A refusal closes the study for good (later asks are refused even if the forecast shrinks):
running trials finish — or, with ``budget.running: stop``, the SUT stops them — and the
report says which limit stopped the study and how close to it the study ended. A new
measure is a ``MEASURES`` entry, a field of ``workload.BudgetSpec`` and the spends its
SUTs pass in ``Ledger.finish``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_basht.metrics import J_PER_KWH
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
    "energy_kwh": Measure("energy_kwh", "energy", "kWh", concurrent=False),
    "co2_g": Measure("co2_g", "CO2", "gCO2eq", concurrent=False),
    "cost_usd": Measure("cost_usd", "cost", "USD", concurrent=False),
}


def limits_of(workload: Workload) -> dict[str, float]:
    """The workload's limits, by measure (empty: the study has no budget)."""
    return {key: float(value) for key in MEASURES
            if (value := getattr(workload.budget, key, None)) is not None}


#: how a trial stopped by the budget (``budget.running: stop``) says so (its ``error``)
STOP_PREFIX = "stopped by budget."


def stop_note(key: str) -> str:
    """The ``error`` of a trial stopped because limit ``key`` closed the study."""
    return f"{STOP_PREFIX}{key}"


def of_costs(costs: Mapping[str, float]) -> dict[str, float]:
    """A trial's spend in the additive measures, from its costs as its study was told them
    (``objectives.TrialCost``: energy_j, co2_g, cost_usd); empty when none were."""
    if not costs:
        return {}
    return {"energy_kwh": costs["energy_j"] / J_PER_KWH, "co2_g": costs["co2_g"],
            "cost_usd": costs["cost_usd"]}


def additive(workload: Workload) -> bool:
    """Whether the budget limits a measure the trials' spends add up in (energy, CO2,
    cost): the SUT must then pass each finished trial's spend to its ledger."""
    return any(not MEASURES[key].concurrent for key in limits_of(workload))


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
    #: the finished trials' spend in the additive measures when the study closed
    spent_at_stop: dict[str, float] = field(default_factory=dict)
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

    def spent(self, now_s: float) -> dict[str, float]:
        """The study's spend at ``now_s``: how far it has got in time, and what its
        finished trials spent in every additive measure (a running trial's spend is not
        known until it ends: its forecast stands in for it, see ``refusal``)."""
        out = {"time_s": max(0.0, now_s - self.started_s)}
        for key, measure in MEASURES.items():
            if not measure.concurrent:
                out[key] = sum(f.get(key, 0.0) for f in self.finished)
        return out

    def admits(self, now_s: float) -> bool:
        """Whether one more trial may be handed out now. A refusal closes the study."""
        if not self.limits:
            return True
        if self.stopped_by is not None:
            self.refused += 1
            return False
        so_far = self.spent(now_s)
        running = [{"time_s": now_s - began} for began in self.running.values()]
        key = refusal(self.limits, so_far, self.finished, running)
        if key is None:
            return True
        self.stopped_by = key
        self.stopped_at_s = now_s - self.started_s
        self.spent_at_stop = {k: so_far[k] for k in self.limits if k != "time_s"}
        self.forecast_at_stop = forecast(self.finished)
        self.refused += 1
        return False

    def summary(self, ended_s: float) -> dict[str, Any] | None:
        """What the report says: the limits, the spend when the study ended, which limit
        stopped it (None: something else did), when, and what one more trial was then
        forecast to spend; None without a budget."""
        if not self.limits:
            return None
        final = self.spent(ended_s)
        return {
            "limits": dict(self.limits),
            "spent": {k: final.get(k) for k in self.limits},
            "used_pct": {k: 100.0 * final.get(k, 0.0) / v for k, v in self.limits.items()},
            "stopped_by": self.stopped_by,
            "stopped_at": ({"time_s": self.stopped_at_s, **self.spent_at_stop}
                           if self.stopped_at_s is not None else None),
            "forecast": dict(self.forecast_at_stop),
            "refused": self.refused,
        }

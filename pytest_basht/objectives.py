"""Energy as an objective: what one trial costs — its time, energy, CO2 and cost — as its
study is told it, the constraints on those costs, and a scenario's Pareto front of trials
as the report gives it.

**What a study is told.** A trial's energy is final only after the run, when the
controller shares the meter's timeline out among the trials (``energy.trace``). A study
needs it the moment the trial ends, in whatever process tells the optimizer — a worker
process, a ``basht worker`` on another host, a Ray trial. So every SUT that trains tells
the same model, computed where the trial ran from its own duration and CPU time: the
estimate meter's linear model (CCF) of one worker slot, wcpu vCPUs at their idle power
for the trial's duration, plus the busy increment for its CPU seconds, plus the slot's
memory — × PUE, labelled ``estimate:ccf-linear/worker-slot``. A simulated SUT tells the
trial's recorded energy (the table's, measured or estimated when it was recorded). The
report shows the front of what the meter attributed after the run, and how far the told
figures were from it.

CO2 is energy × the workload's carbon intensity (a series' value when the trial ended);
cost is the slot's hours × the price per worker-hour + energy × the price per kWh, the
definitions of ``metrics`` applied to one trial.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest_basht.metrics as metrics
import pytest_basht.spend as spend
from pytest_basht.dominance import pareto_front
from pytest_basht.energy import carbon
from pytest_basht.records import TrialRecord
from pytest_basht.workload import GoalSpec, Workload

#: what a study is told of a trial's energy: the model, where the trial trained ...
TOLD_MODEL = "estimate:ccf-linear/worker-slot"
#: ... and in a simulation, the recording's (or the zero-cost benchmark's model)
TOLD_RECORDED = "recorded: the trial's energy as its table (or benchmark) gives it"
#: the user attribute of an Optuna trial holding its constraint values (≤ 0: feasible)
CONSTRAINTS_ATTR = "basht_constraints"
#: the user attribute of an Optuna trial holding its spend in the additive budget measures
SPEND_ATTR = "basht_spend"


@dataclass(frozen=True)
class TrialCost:
    """One trial's costs: seconds, joules (× PUE), gCO2eq and USD."""

    time_s: float
    energy_j: float
    co2_g: float
    cost_usd: float

    def of(self, name: str) -> float:
        return float(getattr(self, name))

    def spend(self) -> dict[str, float]:
        """As the study budget's additive measures count it (``spend.MEASURES``)."""
        return spend.of_costs(self.to_dict())

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def needed(workload: Workload) -> bool:
    """Whether a trial's costs must be worked out when it ends: objectives, constraints or
    a budget on an additive measure use them."""
    goal = workload.goal
    return goal.multi or bool(goal.constraints) or spend.additive(workload)


@functools.lru_cache(maxsize=8)
def _series(path: Path, source: str) -> tuple[tuple[float, float], ...]:
    return tuple(carbon.read_series(path, source))


def carbon_intensity(workload: Workload, wall_s: float | None = None) -> float:
    """gCO2eq/kWh in force at unix time ``wall_s`` (now when None): the series' value then,
    the region's, or the fixed value."""
    path = carbon.series_path(workload)
    if path is not None:
        series = _series(path, workload.source)
        return carbon.intensity_at(series, time.time() if wall_s is None else wall_s)
    e = workload.energy
    if e.carbon_region is not None:
        found = carbon.region(e.carbon_region)
        if found is not None:
            return float(found.g_per_kwh)
    return e.carbon_intensity


def slot_energy_j(workload: Workload, duration_s: float, cpu_s: float) -> float:
    """The told model: one worker slot (wcpu vCPUs and wmem) for ``duration_s``, busy for
    ``cpu_s`` CPU seconds, under the workload's estimate coefficients, × PUE."""
    w, est = workload.workers, workload.energy.estimate
    busy = min(max(0.0, cpu_s), w.cpu * max(0.0, duration_s))
    watts_idle = w.cpu * est.cpu_min_w + w.memory_mb / 1024 * est.memory_w_per_gb
    joules = watts_idle * max(0.0, duration_s) + busy * (est.cpu_max_w - est.cpu_min_w)
    return joules * workload.energy.pue


def trial_cost(workload: Workload, duration_s: float, cpu_s: float, *,
               energy_j: float | None = None, cint: float | None = None) -> TrialCost:
    """A trial's costs from its duration and CPU time; ``energy_j`` (before PUE) when its
    energy is known (a simulation's recording), else the told model; ``cint`` the carbon
    intensity (the workload's, now, when None)."""
    joules = (energy_j * workload.energy.pue if energy_j is not None
              else slot_energy_j(workload, duration_s, cpu_s))
    kwh = joules / metrics.J_PER_KWH
    g_per_kwh = carbon_intensity(workload) if cint is None else cint
    prices = workload.prices
    usd = duration_s / 3600 * prices.usd_per_worker_hour + kwh * prices.usd_per_kwh
    return TrialCost(max(0.0, duration_s), joules, kwh * g_per_kwh, usd)


def values(goal: GoalSpec, value: float, costs: Mapping[str, float]) -> list[float]:
    """What a multi-objective study is told: the metric, then each cost objective."""
    return [value, *(float(costs[name]) for name in goal.objectives)]


def study_direction(goal: GoalSpec) -> dict[str, Any]:
    """``optuna.create_study``'s direction argument: one, or one per objective."""
    if goal.multi:
        return {"directions": list(goal.directions)}
    return {"direction": goal.direction}


def constraint_values(goal: GoalSpec, cost: TrialCost) -> list[float]:
    """Optuna's convention: one value per constraint, ≤ 0 when it is kept."""
    return [cost.of(name) - float(limit) for name, limit in goal.constraints.items()]


def constraints(trial: Any) -> Sequence[float]:
    """Optuna's ``constraints_func``: the values the trial's worker stored (picklable: a
    module-level function, as Tune saves its searcher)."""
    return trial.user_attrs[CONSTRAINTS_ATTR]


def feasible(goal: GoalSpec, cost: Mapping[str, float]) -> bool:
    return all(cost[name] <= float(limit) for name, limit in goal.constraints.items())


def pick(goal: GoalSpec, rows: Sequence[tuple[int, float, Mapping[str, float]]], *,
         cheapest: bool = True) -> int | None:
    """The trial a user would pick from ``(number, metric value, costs)`` rows, among the
    feasible ones (all, when none is): with ``cheapest``, of those that meet the goal's
    target the cheapest in the first cost objective (``energy_j`` when the goal names
    none; ties: the better value); otherwise — no target, none meeting it, or not
    ``cheapest`` — the best value. What a multi-objective study tests as its best trial."""
    rows = [r for r in rows if math.isfinite(r[1]) and feasible(goal, r[2])] or [
        r for r in rows if math.isfinite(r[1])]
    if not rows:
        return None
    sign = 1.0 if goal.direction == "maximize" else -1.0
    cost = next(iter(goal.objectives), "energy_j")
    cost_sign = -1.0 if goal.objectives.get(cost, "minimize") == "minimize" else 1.0
    meeting = [r for r in rows if goal.met(r[1])] if cheapest else []
    if meeting:
        return max(meeting, key=lambda r: (cost_sign * r[2][cost], sign * r[1]))[0]
    return max(rows, key=lambda r: sign * r[1])[0]


def best_of(goal: GoalSpec, trials: Sequence[TrialRecord]) -> int | None:
    """The best complete trial of a study whose trials were told their costs: the pick
    of a multi-objective study; the best feasible value of a constrained one."""
    return pick(goal, [(t.number, t.value, t.told or {}) for t in trials
                       if t.state == "complete" and t.value is not None],
                cheapest=goal.multi)


def reached(trial: TrialRecord) -> int:
    """The epochs a trial's configuration had been trained to when it ended (a
    continuation's start and what it trained)."""
    return (trial.resumed_from or 0) + len(trial.intermediate)


def recorded_cost(workload: Workload, trial: TrialRecord, cint: float) -> TrialCost:
    """A trial's costs as the report counts them: its attributed energy (× PUE), its time."""
    return trial_cost(workload, trial.duration_s, trial.cpu_s, energy_j=trial.energy_j or 0.0,
                      cint=cint)


def front_record(workload: Workload, trials: Sequence[TrialRecord], cint: float,
                 told_source: str | None = None) -> dict[str, Any] | None:
    """The scenario's Pareto front as report.json keeps it, over the goal's objectives (a
    single-objective study's over its metric and ``energy_j``, so that an energy-blind
    search's front sets beside an energy-aware one's): the feasible complete trials at the
    highest fidelity reached, the front, its hypervolume and reference point, the trial a
    user would pick for the goal's target, and how far the energies the study was told
    were from those attributed after the run. None without a complete trial."""
    goal = workload.goal
    names = goal.front_names
    directions = goal.directions if goal.multi else (goal.direction, "minimize")
    complete = [t for t in trials if t.state == "complete" and t.value is not None
                and math.isfinite(t.value)]
    if not complete:
        return None
    top = max(reached(t) for t in complete)
    complete = [t for t in complete if reached(t) == top]
    costs = {t.number: recorded_cost(workload, t, cint).to_dict() for t in complete}
    kept = [t for t in complete if feasible(goal, costs[t.number])]
    points = [[t.value, *(costs[t.number][n] for n in names[1:])] for t in kept]
    reference, given = [], {}
    for i, (name, direction) in enumerate(zip(names, directions, strict=True)):
        if name in goal.reference:
            reference.append(float(goal.reference[name]))
            given[name] = "workload"
        else:
            column = [p[i] for p in points] or [0.0]
            reference.append(min(column) if direction == "maximize" else max(column))
            given[name] = "trials"
    front = sorted(pareto_front(points, directions))
    chosen = pick(goal, [(t.number, t.value, costs[t.number]) for t in complete])
    told = [(t.told["energy_j"], costs[t.number]["energy_j"]) for t in complete
            if t.told and costs[t.number]["energy_j"] > 0]
    return {
        "objectives": list(names), "directions": list(directions),
        "trials": len(kept), "infeasible": len(complete) - len(kept),
        "front": [{"trial": kept[i].number, "values": dict(zip(names, points[i],
                                                                 strict=True))}
                  for i in front],
        "hypervolume": metrics.hypervolume(points, directions, reference),
        "reference": dict(zip(names, reference, strict=True)),
        "reference_from": given,
        "pick": None if chosen is None else {
            "target": goal.target, "trial": chosen,
            "values": {"value": next(t.value for t in complete if t.number == chosen),
                       **costs[chosen]}},
        "told": None if not told else {
            "source": told_source,
            "mean_abs_pct": 100.0 * sum(abs(a - b) / b for a, b in told) / len(told),
            "trials": len(told)},
    }

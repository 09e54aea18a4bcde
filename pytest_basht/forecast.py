"""A forecast before the run: a workload's JCT, energy, CO2 and cost, each with a band,
before anything trains — and, after the run, how far it was from the outcome.

Two ways, and the forecast says which it took:

* **table** — a recorded trial table that answers the workload (``simulation.answers
  .check_fits``: its space, epochs and training setup) replays it on the simulated SUT,
  in virtual time, once per sampler seed ``seed + 1 … seed + n`` (never the run's own: a
  replay of a workload forecast from the table would otherwise just repeat itself), each
  answered by the recordings of the run's own seed where the table has them
  (``recorded_seed``: the conditions the table recorded; other seeds get a reproducible
  mix). The forecast is their mean; the band a 90 % prediction interval for one more run
  (Student's t over the replays, ``scipy.stats``). It covers the search's own variation,
  not a machine slower or busier than when the table was recorded.
* **pilot** — no table answers: a few trials of a few epochs are run for real, on the
  workload's own SUT and meter, and extrapolated. Each trial is an overhead (loading)
  plus its epochs; a full trial is the overhead plus ``training.epochs`` epochs, the
  trials run in waves of wn, and the lifecycle phases take what the pilot's took. Energy
  is the trials' (each with its slot's idle share) plus the idle slots of the last wave
  plus the lifecycle's. The band spans the pilot's slowest and fastest epochs (and, for
  an estimate, the meter's band). Every trial is assumed to run all its epochs: with a
  pruner, ``stop_at_target`` or a budget, the forecast is an upper bound, and it says so.

CO2 is energy × the carbon intensity, cost is wn × JCT × the price per worker-hour +
energy × the price per kWh — Table 2's definitions.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest_basht.workload as wl
from pytest_basht.errors import WorkloadError
from pytest_basht.lifecycle import Phase
from pytest_basht.metrics import J_PER_KWH
from pytest_basht.registry import Registry
from pytest_basht.result import RunResult

if TYPE_CHECKING:
    from pytest_basht.energy.monitor import EnergyMonitor

KEYS = ("jct_s", "energy_j", "co2_g", "cost_usd")
UNITS = {"jct_s": "s", "energy_j": "J", "co2_g": "gCO2eq", "cost_usd": "USD"}
#: the prediction interval's coverage
COVERAGE = 0.90
SEEDS = 5
PILOT_EPOCHS = 2


@dataclass(frozen=True)
class Band:
    """A forecast figure: its central value and its band."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Forecast:
    """What a workload is forecast to take, how (``table`` or ``pilot``), from what."""

    method: str
    source: str
    figures: dict[str, Band]
    runs: int
    energy_source: str
    workload: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "source": self.source, "runs": self.runs,
                "energy_source": self.energy_source,
                "figures": {k: b.to_dict() for k, b in self.figures.items()},
                "notes": list(self.notes), "workload": self.workload}


def outcome_of(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A run's figures in the forecast's keys, from its Table 2 metrics."""
    return {"jct_s": metrics["jct_ms"] / 1e3, "energy_j": metrics["energy_j"],
            "co2_g": metrics["co2_g"], "cost_usd": metrics["oc_usd"]}


def interval(samples: Sequence[float]) -> Band:
    """The mean of ``samples`` and a ``COVERAGE`` prediction interval for one more
    (Student's t, ``s·√(1 + 1/n)``; a single sample has no band), never below 0."""
    from scipy import stats

    mean = statistics.fmean(samples)
    if len(samples) < 2:
        return Band(mean, mean, mean)
    # float(): scipy's numpy scalars would reach report.json (json cannot write them)
    half = float(stats.t.ppf((1 + COVERAGE) / 2, len(samples) - 1) * statistics.stdev(samples)
                 * math.sqrt(1 + 1 / len(samples)))
    return Band(mean, max(0.0, mean - half), mean + half)


def read(path: Path) -> list[dict[str, Any]]:
    """The forecasts in a file ``basht forecast --json`` wrote (a usage error naming the
    file when it cannot be read)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        made = data["forecasts"]
        if not isinstance(made, list) or not all(isinstance(f, dict) and "workload" in f
                                                 for f in made):
            raise TypeError("forecasts: a list of forecasts with their workloads")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkloadError(str(path), "forecasts", "a file basht forecast --json wrote",
                            f"{type(exc).__name__}: {exc}") from None
    return made


def matching(made: Sequence[dict[str, Any]], workload: wl.Workload, source: str
             ) -> dict[str, Any]:
    """The forecast made for exactly this workload (as resolved: overrides, budget and
    seed included), or a forecast without figures that says none was."""
    mine = workload.to_dict()
    for forecast in made:
        if forecast["workload"] == mine:
            return dict(forecast)
    return {"method": None, "notes": [f"{source} holds no forecast of this workload as "
                                      "resolved (make one with basht forecast --json)"]}


# ----------------------------------------------------------------------------- table


def find_table(workload: wl.Workload, candidates: Sequence[Path]) -> tuple[Path | None,
                                                                           list[str]]:
    """The first candidate table that answers the workload, and why each before it did not
    (then what differs in the one that does: workers of another size, say)."""
    from pytest_basht.simulation.answers import check_fits
    from pytest_basht.sut.simulated import load_table

    notes = []
    for path in candidates:
        try:
            differs = check_fits(load_table(path, workload), workload, surrogate=False)
        except WorkloadError as exc:
            notes.append(f"table {path} does not answer it: {exc.key}: expected {exc.expected}")
            continue
        return path, [*notes, *differs]
    return None, notes


def candidates(workload: wl.Workload, tables: Sequence[Path]) -> list[Path]:
    """Where to look for a table: the workload's own (a simulated workload), then
    ``tables`` (files, or folders of ``*.csv``)."""
    out: list[Path] = []
    own = workload.sut.options.get("table") if workload.sut.name == "simulated" else None
    if isinstance(own, str):
        path = Path(own)
        if not path.is_absolute() and workload.source:
            path = Path(workload.source).parent / path
        out.append(path)
    for entry in tables:
        out += sorted(entry.glob("*.csv")) if entry.is_dir() else [entry]
    return out


def twin(workload: wl.Workload, table: Path, seed: int) -> wl.Workload:
    """The workload on the simulated SUT, answered from ``table`` by the recordings of its
    own seed, its sampler seeded with ``seed``."""
    return wl.resolve(workload, {"sut": {"name": "simulated", "options": {
        "table": str(table.resolve()), "lifecycle": "recorded",
        "recorded_seed": workload.seed}}, "seed": seed})


def run(workload: wl.Workload, registry: Registry, monitor: EnergyMonitor) -> RunResult:
    """Deploy, run and undeploy one scenario on its own deployments of ``monitor``."""
    from pytest_basht.runner import Deployments, TrialRunner

    deployments = Deployments(monitor, registry)
    try:
        return TrialRunner(workload, deployments).run()
    finally:
        deployments.close()


def from_table(workload: wl.Workload, registry: Registry, table: Path,
               seeds: int = SEEDS) -> Forecast:
    """Replay the workload from ``table`` with ``seeds`` other seeds."""
    from pytest_basht.energy.estimate import EstimateMeter
    from pytest_basht.energy.monitor import EnergyMonitor

    monitor = EnergyMonitor(EstimateMeter.from_workload(workload))
    monitor.start()
    runs = []
    try:
        for k in range(1, seeds + 1):
            result = run(twin(workload, table, workload.seed + k), registry, monitor)
            runs.append(outcome_of((result.metrics or result.recompute()).to_dict()))
    finally:
        monitor.stop()
    source = result.energy.source
    notes = [f"{seeds} replays of the table's recordings for seed {workload.seed}, the "
             f"sampler seeded {workload.seed + 1}–{workload.seed + seeds}; band: a "
             f"{COVERAGE:.0%} prediction interval for one run"]
    return Forecast("table", str(table), {k: interval([r[k] for r in runs]) for k in KEYS},
                    seeds, source, workload.to_dict(), notes)


# ----------------------------------------------------------------------------- pilot


def pilot_workload(workload: wl.Workload, trials: int | None, epochs: int) -> wl.Workload:
    """The pilot: ``trials`` trials (default: one wave, wn) of ``epochs`` epochs, every one
    to the end (no budget, no stop at the target)."""
    count = min(trials or workload.workers.count, workload.trial_budget)
    return wl.resolve(workload, {"search.trials": count,
                                 "training.epochs": min(epochs, workload.training.epochs),
                                 "training.stop_at_target": False, "budget": {}})


@dataclass(frozen=True)
class TrialFit:
    """A trial of the pilot as overhead + epochs: seconds and joules of each."""

    overhead_s: float
    epoch_s: float
    overhead_j: float
    epoch_j: float


def fit(result: RunResult) -> list[TrialFit]:
    """Each complete trial of the pilot split into its epochs and the rest."""
    out = []
    for t in result.trials:
        epochs = {s.epoch for s in t.spans if s.epoch is not None}
        if t.state != "complete" or not epochs:
            continue
        per = [s for s in t.spans if s.epoch is not None]
        span_s = sum(s.duration_s for s in per)
        span_j = sum(s.energy_j or 0.0 for s in per)
        out.append(TrialFit(max(0.0, t.duration_s - span_s), span_s / len(epochs),
                            max(0.0, (t.energy_j or 0.0) - span_j), span_j / len(epochs)))
    return out


def extrapolate(workload: wl.Workload, result: RunResult, scale: float = 1.0,
                slow: bool | None = None) -> dict[str, float]:
    """The full workload's figures from the pilot's: its trials at their mean epoch (the
    slowest with ``slow``, the fastest with ``slow=False``), energy × ``scale``."""
    fits = fit(result)
    if not fits:
        raise WorkloadError(workload.source, "<pilot>", "a pilot trial that completes, to "
                            "extrapolate from", [t.error for t in result.trials])
    pick = (max if slow else min) if slow is not None else None
    chosen = pick(fits, key=lambda f: f.epoch_s) if pick else None
    epoch_s = chosen.epoch_s if chosen else statistics.fmean(f.epoch_s for f in fits)
    epoch_j = chosen.epoch_j if chosen else statistics.fmean(f.epoch_j for f in fits)
    overhead_s = statistics.fmean(f.overhead_s for f in fits)
    overhead_j = statistics.fmean(f.overhead_j for f in fits)
    n, wn, epochs = workload.trial_budget, workload.workers.count, workload.training.epochs
    trial_s = overhead_s + epochs * epoch_s
    trial_j = overhead_j + epochs * epoch_j
    waves = math.ceil(n / wn)
    spans = {s.phase: s for s in result.spans}
    setup, collect = spans.get(Phase.SETUP.value), spans.get(Phase.RESULT_COLLECTION.value)
    pilot_waves = math.ceil(len(result.trials) / wn)
    longest = max(t.duration_s for t in result.trials)
    # the time between trials (asking the sampler, handing over) per wave, as the pilot had
    gap_s = max(0.0, ((collect.start_ns - setup.end_ns) / 1e9 - longest * pilot_waves)
                / pilot_waves) if setup and collect else 0.0
    trials_s = waves * (trial_s + gap_s)
    lifecycle = [s for s in result.spans if s.trial is None]
    life_s = sum(s.duration_s for s in lifecycle)
    life_j = sum(s.energy_j or 0.0 for s in lifecycle)
    idle_slot_w = result.energy.idle_power_w / max(1, result.energy.slots)
    idle_j = idle_slot_w * max(0.0, wn * trials_s - n * trial_s)
    pue = workload.energy.pue
    energy_j = (life_j + n * trial_j + idle_j) * pue * scale
    jct_s = life_s + trials_s
    metrics = result.metrics or result.recompute()
    kwh = energy_j / J_PER_KWH
    prices = workload.prices
    return {"jct_s": jct_s, "energy_j": energy_j, "co2_g": kwh * metrics.cint_g_per_kwh,
            "cost_usd": wn * jct_s / 3600 * prices.usd_per_worker_hour
            + kwh * prices.usd_per_kwh}


def from_pilot(workload: wl.Workload, registry: Registry, monitor: EnergyMonitor, *,
               trials: int | None = None, epochs: int = PILOT_EPOCHS) -> Forecast:
    """Run the pilot for real on ``monitor`` and extrapolate."""
    pilot = pilot_workload(workload, trials, epochs)
    result = run(pilot, registry, monitor)
    band = result.energy.band or {}
    central = extrapolate(workload, result)
    low = extrapolate(workload, result, band.get("low", 1.0), slow=False)
    high = extrapolate(workload, result, band.get("high", 1.0), slow=True)
    figures = {k: Band(central[k], min(low[k], central[k]), max(high[k], central[k]))
               for k in KEYS}
    notes = [f"pilot: {len(result.trials)} trials of {pilot.training.epochs} epochs, run for "
             f"real ({sum(t.duration_s for t in result.trials):.1f} trial-seconds); band: "
             "its fastest and slowest epochs" + (", and the estimate's band" if band else "")]
    s = workload.search
    if s.pruner != "none" or workload.training.stop_at_target or workload.budget.limits():
        notes.append("every trial is forecast to run all its epochs: with a pruner, "
                     "stop_at_target or a budget the run will take less (an upper bound)")
    return Forecast("pilot", f"{len(result.trials)} trials × {pilot.training.epochs} epochs",
                    figures, len(result.trials), result.energy.source, workload.to_dict(),
                    notes)


def make(workload: wl.Workload, registry: Registry, *, tables: Sequence[Path] = (),
         seeds: int = SEEDS, method: str = "auto", monitor: EnergyMonitor | None = None,
         pilot_trials: int | None = None, pilot_epochs: int = PILOT_EPOCHS) -> Forecast | None:
    """The forecast by ``method``: ``table`` (None when no table answers), ``pilot``
    (needs ``monitor``), or ``auto`` (a table, else a pilot)."""
    notes: list[str] = []
    if method in ("table", "auto"):
        table, notes = find_table(workload, candidates(workload, tables))
        if table is not None:
            found = from_table(workload, registry, table, seeds)
            return dataclasses.replace(found, notes=[*notes, *found.notes])
        if method == "table":
            return None
    assert monitor is not None, "a pilot runs on a live meter"
    found = from_pilot(workload, registry, monitor, trials=pilot_trials, epochs=pilot_epochs)
    return dataclasses.replace(found, notes=[*notes, *found.notes])


def forecaster(mode: str | Path, tables: Path | None, registry: Registry
               ) -> Callable[[wl.Workload], dict[str, Any] | None] | None:
    """What forecasts each scenario before it runs (``--basht-forecast``): None for
    ``off``; for ``table`` the replays of a recorded table that answers the workload (a
    record saying why not when none does); else the matching entry of a .json that
    ``basht forecast --json`` wrote."""
    if mode == "off":
        return None
    if mode != "table":
        made = read(Path(mode))
        return lambda workload: matching(made, workload, str(mode))
    paths = [tables] if tables else []

    def from_table(workload: wl.Workload) -> dict[str, Any]:
        try:
            found = make(workload, registry, tables=paths, method="table")
        except WorkloadError as exc:
            return {"method": None, "notes": [f"the table forecast failed: {exc}"]}
        if found is None:
            return {"method": None, "notes": ["no recorded table answers this workload (" +
                                              ", ".join(map(str, paths)) + ")"]}
        return found.to_dict()

    return from_table

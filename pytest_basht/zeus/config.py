"""A zeus-bso workload, read and checked: the job, its optimizer and its cost.

``search.sampler: zeus-bso`` optimizes the batch size of a recurring job: the search
space is one dimension, ``batch_size``; ``search.sampler_options`` name the job and tune
the optimizer (``OPTIONS``); ``search.pruner: zeus-bso`` measures each attempt's cost as
it trains and stops it early. One scenario is one recurrence of the job: its trials are
attempts, one at a time, until one reaches ``goal.target`` (``training.stop_at_target``
ends it there) or the trial budget runs out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_basht.errors import WorkloadError
from pytest_basht.workload import Workload
from pytest_basht.zeus.bso import POLICIES, Spec

NAME = "zeus-bso"
DEFAULT_STORE = str(Path(".basht") / "history.sqlite")
OPTIONS = {
    "job": "the recurring job's id: its state in the store is keyed by it (default: the "
           "workload's name)",
    "policy": "zeus (the BSO); grid or random: the baselines of experiment Z-BSO",
    "default_batch_size": "where the pruning stage starts (default: training.batch_size)",
    "beta": "stop an attempt whose cost passes β × the best cost (default 2; null: never)",
    "window": "Thompson sampling uses only the last W recurrences' costs (default: all)",
    "prior_mean": "prior mean of an arm's reward, −cost (default 0)",
    "prior_precision": "prior precision of that mean (default 0: no prior)",
    "pruning_rounds": "rounds of the pruning stage (default 2, as Zeus)",
    "store": "where the state lives: an SQLAlchemy URL or an SQLite path (default: the "
             f"run history's default file, {DEFAULT_STORE} in the current directory)",
}


@dataclass(frozen=True)
class JobConfig:
    """Everything the sampler and the pruner need, from the workload alone."""

    job: str
    spec: Spec
    store: str
    eta: float
    max_power_w: float
    max_power_source: str
    pue: float
    target: float
    direction: str
    max_epochs: int

    def cost(self, energy_j: float, time_s: float) -> float:
        """Zeus's cost with the run's PUE on both terms, as the metrics apply it."""
        return (self.eta * energy_j + (1.0 - self.eta) * self.max_power_w * time_s) * self.pue

    def met(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return value >= self.target if self.direction == "maximize" else value <= self.target

    def identity(self) -> dict[str, Any]:
        """What must stay the same across a job's recurrences for its costs to compare."""
        return {"policy": self.spec.policy, "batch_sizes": list(self.spec.batch_sizes),
                "default_batch_size": self.spec.default, "eta": self.eta,
                "max_power_w": self.max_power_w, "pue": self.pue, "target": self.target,
                "direction": self.direction, "max_epochs": self.max_epochs}

    def knobs(self) -> dict[str, Any]:
        """What may change between recurrences (the latest applies)."""
        s = self.spec
        return {"beta": s.beta, "window": s.window, "prior_mean": s.prior_mean,
                "prior_precision": s.prior_precision, "pruning_rounds": s.rounds,
                "attempts": s.attempts}


def slot_max_power_w(workload: Workload) -> float:
    """The estimate meter's peak draw of one worker slot: wcpu busy vCPUs and wmem."""
    w, est = workload.workers, workload.energy.estimate
    return w.cpu * est.cpu_max_w + w.memory_mb / 1024 * est.memory_w_per_gb


def slot_idle_power_w(workload: Workload) -> float:
    w, est = workload.workers, workload.energy.estimate
    return w.cpu * est.cpu_min_w + w.memory_mb / 1024 * est.memory_w_per_gb


def _fail(workload: Workload, key: str, expected: str, got: Any = None) -> WorkloadError:
    return WorkloadError(workload.source, key, expected, got)


def _number(workload: Workload, opts: dict[str, Any], name: str, default: float | None, *,
            minimum: float | None = None, above: float | None = None,
            null: bool = False) -> float | None:
    key = f"search.sampler_options.{name}"
    if name not in opts:
        return default
    value = opts[name]
    if value is None and null:
        return None
    what = ("a number" + (f" ≥ {minimum:g}" if minimum is not None else "")
            + (f" > {above:g}" if above is not None else "") + (" or null" if null else ""))
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise _fail(workload, key, what, value)
    if (minimum is not None and value < minimum) or (above is not None and value <= above):
        raise _fail(workload, key, what, value)
    return float(value)


def parse(workload: Workload) -> JobConfig:
    """The zeus-bso job of a workload; a WorkloadError names the key that does not fit."""
    s = workload.search
    opts = dict(s.sampler_options)
    for name in opts:
        if name not in OPTIONS:
            raise _fail(workload, f"search.sampler_options.{name}",
                        "an option of zeus-bso: " + ", ".join(OPTIONS))
    names = [d.name for d in s.space]
    if names != ["batch_size"]:
        raise _fail(workload, "search.space", "one dimension, batch_size (zeus-bso chooses "
                    "the batch size of a job whose other hyperparameters are fixed: put them "
                    "in model.params)", ", ".join(names))
    values = s.space[0].grid_values()
    if values is None or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                 for v in values):
        raise _fail(workload, "search.space.batch_size",
                    "positive integers (a list, or an int range)", s.space[0].to_dict())
    sizes = tuple(sorted(values))
    job = opts.get("job", workload.name)
    if not isinstance(job, str) or not job.strip() or len(job) > 200:
        raise _fail(workload, "search.sampler_options.job", "a non-empty string (≤ 200 "
                    "characters)", job)
    policy = opts.get("policy", "zeus")
    if policy not in POLICIES:
        raise _fail(workload, "search.sampler_options.policy",
                    "one of " + ", ".join(POLICIES), policy)
    default = opts.get("default_batch_size", workload.training.batch_size)
    if default not in sizes or isinstance(default, bool):
        key = ("search.sampler_options.default_batch_size" if "default_batch_size" in opts
               else "training.batch_size")
        raise _fail(workload, key, "one of the searched batch sizes " + str(list(sizes))
                    + " (where the pruning stage starts; or set "
                    "search.sampler_options.default_batch_size)", default)
    beta = _number(workload, opts, "beta", 2.0, minimum=1.0, null=True)
    window_raw = opts.get("window")
    if window_raw is not None and (isinstance(window_raw, bool) or not isinstance(window_raw, int)
                                   or window_raw < 1):
        raise _fail(workload, "search.sampler_options.window",
                    "a number of recurrences ≥ 1, or null", window_raw)
    rounds = opts.get("pruning_rounds", 2)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise _fail(workload, "search.sampler_options.pruning_rounds", "an integer ≥ 1",
                    rounds)
    store = opts.get("store", DEFAULT_STORE)
    if not isinstance(store, str) or not store.strip():
        raise _fail(workload, "search.sampler_options.store",
                    "an SQLAlchemy URL or an SQLite file path", store)
    spec = Spec(policy, sizes, int(default), beta, window_raw,
                _number(workload, opts, "prior_mean", 0.0) or 0.0,
                _number(workload, opts, "prior_precision", 0.0, minimum=0.0) or 0.0, rounds,
                s.trials or len(sizes))
    _check_run(workload)
    e = workload.energy
    if e.max_power_w is not None:
        pmax, source = e.max_power_w, "energy.max_power_w"
    else:
        pmax, source = slot_max_power_w(workload), "the estimate meter's peak of one slot"
    assert workload.goal.target is not None  # _check_run
    return JobConfig(job.strip(), spec, store.strip(), e.zeus_eta, pmax, source, e.pue,
                     workload.goal.target, workload.goal.direction, workload.training.epochs)


def _check_run(workload: Workload) -> None:
    s = workload.search
    if s.pruner != NAME:
        raise _fail(workload, "search.pruner", f"'{NAME}' with sampler {NAME} (it measures "
                    "each attempt's cost and stops it at β × the best; "
                    "search.sampler_options.beta: null turns early stopping off)", s.pruner)
    if s.pruner_options:
        raise _fail(workload, "search.pruner_options", "none: the zeus-bso pruner takes its "
                    "settings from search.sampler_options", s.pruner_options)
    if workload.goal.target is None:
        raise _fail(workload, "goal.target", "the target a recurrence trains to (Zeus's cost "
                    "is the cost to reach it)")
    if not workload.training.stop_at_target:
        raise _fail(workload, "training.stop_at_target", "true with sampler zeus-bso (a "
                    "recurrence ends when it reaches its target)", False)
    if workload.workers.count != 1:
        raise _fail(workload, "workers.count", "1 with sampler zeus-bso (a job's attempts "
                    "run one after another, each learning from the last)",
                    workload.workers.count)
    if s.grouped:
        raise _fail(workload, "search.fusion", "1 and search.scaling 1 with sampler zeus-bso")


def check(workload: Workload) -> None:
    """Refuse a workload that pairs zeus-bso with what it cannot work with."""
    if workload.search.sampler == NAME:
        parse(workload)
    elif workload.search.pruner == NAME:
        raise _fail(workload, "search.pruner", f"another pruner: the {NAME} pruner stops the "
                    f"attempts of sampler {NAME} only", NAME)

"""``zeus-bso`` in an Optuna study: a sampler that asks the BSO, a pruner that meters.

The study of one scenario is one recurrence of the job; each of its trials is an attempt.
The sampler's ``sample_independent`` (the trial suggests ``batch_size``) decides the
attempt's batch size from the job's log in the store and logs the decision; the pruner
follows the attempt's time and energy epoch by epoch and stops it once its cost passes
the decision's threshold (β × the best cost); the sampler's ``after_trial`` turns what
the pruner saw into the attempt's cost to the target, logs it, and stops the study once
an attempt reached the target (the recurrence is done).

Where an attempt's time and energy come from: a SUT that knows them tells the pruner
(``trial_usage``; the simulated SUT gives the recording's virtual time and energy, so the
BSO sees exactly what the report shows). Otherwise the pruner measures the training
process itself, as Zeus's client does: wall time since the batch size was decided, and
energy from the estimate meter's model of one worker slot (its vCPUs' and memory's idle
draw plus the process's CPU time at the busy-minus-idle rate) — a model, not a
measurement, whatever meter the report uses.

Sampler and pruner are separate objects built by the SUT in the process that runs the
study; they meet in ``_LIVE``, keyed by study name and trial number.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import URL

from pytest_basht.report.history import store_url
from pytest_basht.search import trial_seed
from pytest_basht.workload import Workload
from pytest_basht.zeus import bso
from pytest_basht.zeus.config import JobConfig, parse, slot_idle_power_w
from pytest_basht.zeus.store import BsoStore, Outcome, Started

_STORES: dict[URL, BsoStore] = {}


def draws(seed: int, job: str, seq: int, arms: int) -> tuple[list[float], float]:
    """The random numbers of a job's ``seq``-th decision, from the workload seed: one
    standard normal per batch size (Thompson sampling), one uniform (the random policy)."""
    rng = np.random.default_rng(trial_seed(seed, f"zeus-bso:{job}", seq))
    return [float(z) for z in rng.standard_normal(arms)], float(rng.random())
STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
          TrialState.FAIL: "failed"}


def store_for(where: str) -> BsoStore:
    """One store per URL in this process (the tables are created once)."""
    url = store_url(where, Path.cwd())
    if url not in _STORES:
        _STORES[url] = BsoStore(url)
    return _STORES[url]


@dataclass
class Attempt:
    """An attempt this process is training: its decision and its usage epoch by epoch."""

    config: JobConfig
    store: BsoStore
    started: Started
    t0_ns: int
    cpu0_s: float
    idle_w: float
    busy_w: float
    usage: dict[int, tuple[float, float]] = field(default_factory=dict)  # epoch: (s, J)
    fed: bool = False
    early_stopped: bool = False

    def measure(self) -> tuple[float, float]:
        """(seconds, joules) since the decision, in this process (the estimate's model)."""
        elapsed = max(0, time.monotonic_ns() - self.t0_ns) / 1e9
        cpu = max(0.0, time.process_time() - self.cpu0_s)
        return elapsed, self.idle_w * elapsed + self.busy_w * cpu

    def outcome(self, trial: FrozenTrial, state: TrialState) -> Outcome:
        """The attempt's cost to the first epoch that reached the target, else to its
        last measured epoch."""
        values = trial.intermediate_values
        reached = sorted(step for step, v in values.items() if self.config.met(v))
        step = next((s for s in reached if s in self.usage), None)
        converged = step is not None
        if step is None and self.usage:
            step = max(self.usage)
        if step is not None:
            elapsed, energy = self.usage[step]
        else:  # ended before its first report
            elapsed, energy = (0.0, 0.0) if self.fed else self.measure()
        value = values.get(step) if step is not None else None
        return Outcome(STATES.get(state, "failed"), converged, self.early_stopped,
                       self.config.cost(energy, elapsed), energy, elapsed,
                       (step + 1) if step is not None else 0, value)


_LIVE: dict[tuple[str, int], Attempt] = {}


def _holds(distribution: Any, value: int) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return (distribution.low <= value <= distribution.high
                and (value - distribution.low) % distribution.step == 0)
    return False


class ZeusSampler(optuna.samplers.BaseSampler):
    """Chooses each attempt's batch size with the job's policy (Zeus's BSO by default)."""

    def __init__(self, config: JobConfig, seed: int, workload: Workload) -> None:
        self.config = config
        self.seed = seed
        self.idle_w = slot_idle_power_w(workload)
        est = workload.energy.estimate
        self.busy_w = est.cpu_max_w - est.cpu_min_w
        self.recurrence: int | None = None  # set by this study's first attempt

    def __str__(self) -> str:
        return f"zeus-bso (job {self.config.job}, policy {self.config.spec.policy})"

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _decide(self, observations: list[bso.Observation], recurrence: int,
                seq: int) -> bso.Decision:
        normals, uniform = draws(self.seed, self.config.job, seq,
                                 len(self.config.spec.batch_sizes))
        return bso.decide(self.config.spec, observations, recurrence, normals, uniform)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        if param_name != "batch_size":
            raise ValueError(f"zeus-bso chooses batch_size only, not {param_name!r}")
        store = store_for(self.config.store)
        started = store.begin(self.config, self._decide, recurrence=self.recurrence,
                              origin=f"study {study.study_name} trial {trial.number} "
                                     f"(pid {os.getpid()})")
        self.recurrence = started.recurrence
        _LIVE[(study.study_name, trial.number)] = Attempt(
            self.config, store, started, time.monotonic_ns(), time.process_time(),
            self.idle_w, self.busy_w)
        chosen = started.decision.batch_size
        if not _holds(param_distribution, chosen):
            raise ValueError(f"zeus-bso chose batch size {chosen}, outside {param_distribution}")
        return chosen

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        attempt = _LIVE.pop((study.study_name, trial.number), None)
        if attempt is None:  # not an attempt of ours (a trial past the budget)
            return
        outcome = attempt.outcome(trial, state)
        attempt.store.finish(self.config, attempt.started, outcome)
        if outcome.converged:
            # the recurrence has its model: no more attempts (outside an optimize loop,
            # driven by ask and tell, stop() refuses and the caller decides)
            with contextlib.suppress(RuntimeError):
                study.stop()


class ZeusPruner(optuna.pruners.BasePruner):
    """Meters each attempt epoch by epoch and stops it past its cost threshold."""

    def trial_usage(self, study_name: str, number: int, epoch: int, elapsed_s: float,
                    energy_j: float) -> None:
        """A SUT's own time and energy of a trial so far (here: the simulated SUT's)."""
        attempt = _LIVE.get((study_name, number))
        if attempt is not None:
            attempt.usage[epoch] = (elapsed_s, energy_j)
            attempt.fed = True

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        attempt = _LIVE.get((study.study_name, trial.number))
        step = trial.last_step
        if attempt is None or step is None:
            return False
        if step not in attempt.usage:
            attempt.usage[step] = attempt.measure()
        if attempt.config.met(trial.intermediate_values[step]):
            return False  # it reached the target: the trainable ends it now, complete
        threshold = attempt.started.decision.threshold
        elapsed, energy = attempt.usage[step]
        if threshold is not None and attempt.config.cost(energy, elapsed) > threshold:
            attempt.early_stopped = True
            return True
        return False


def zeus_sampler(workload: Workload, seed: int) -> ZeusSampler:
    return ZeusSampler(parse(workload), seed, workload)


def zeus_pruner(workload: Workload) -> ZeusPruner:
    parse(workload)
    return ZeusPruner()

"""Optuna's own samplers and pruners, driven by ask/tell on virtual workers.

The replay mirrors the ``optuna`` SUT trial for trial: one study shared by wn workers,
each worker with its own Study object built from the registered sampler and pruner
factories with the workload's seed (as each worker process builds its own), the same
study name, the same trial budget rule (a trial numbered past the cap fails and stops its
worker), the same suggest(), values reported after every epoch and the pruner asked
after each. Only time is virtual: ``schedule.run`` decides who asks when, and each
trial's epochs cost what its curve says. The workload's ``budget:`` closes the study on
the virtual clock (``spend.Ledger``: a worker refused leaves, as the ``optuna`` SUT's
does; with ``budget.running: stop`` the trials running then stop after the epoch they are
in — a real SUT stops them at once), and ``trial_timeout_s`` kills a trial at that
virtual time (``Curve.cut``). Several objectives and constraints are told as the
``optuna`` SUT's workers tell them, with each trial's recorded energy
(``objectives.trial_cost``).
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

import pytest_basht.objectives as objectives
from pytest_basht.records import Span, TrialRecord
from pytest_basht.registry import Registry
from pytest_basht.search import suggest, trial_cap
from pytest_basht.simulation import optuna_loop, schedule
from pytest_basht.simulation.curve import Curve
from pytest_basht.spend import Ledger, stop_note
from pytest_basht.sut.base import Progress
from pytest_basht.workload import Workload

TRAIN, VALIDATE = "trial.train", "trial.validate"
PROGRESS_EVERY = 64


@dataclass
class ReplayResult:
    trials: list[TrialRecord] = field(default_factory=list)
    completion: list[int] = field(default_factory=list)
    retired_ns: list[int] = field(default_factory=list)
    charged_ns: int = 0
    framework_ns: int = 0
    wall_ns: int = 0
    discarded: int = 0
    origins: dict[str, int] = field(default_factory=dict)

    @property
    def overhead_ns(self) -> int:
        """The replay's own time: all of it but the sampler's and pruner's calls."""
        return max(0, self.wall_ns - self.framework_ns)


@dataclass(frozen=True)
class Replayed:
    """A replayed trial's outcome: state, value, error, its spans and what they drew."""

    state: str
    value: float | None
    error: str | None
    spans: list[Span]
    energy_j: float
    cpu_s: float


def replayed(curve: Curve, done: int, start_ns: int, worker: int, number: int,
             first_epoch: int, intermediate: list[float], *, cut: bool,
             note: str | None) -> Replayed:
    """The first ``done`` epochs of ``curve`` as a trial from ``start_ns`` on: each epoch a
    train and a validate span (numbered from ``first_epoch``) splitting its recorded time,
    energy and CPU seconds; its state and value — ``cut`` (pruned, or stopped by a budget:
    ``note`` says why) at the last reported value, the curve's failure, or its last value
    (a non-finite one fails). Both replays — Optuna's and ask-and-tell's — build their
    trials here, so a trial's energy is split one way."""
    error = None
    if cut:
        state, value, error = "pruned", intermediate[-1] if intermediate else None, note
    elif curve.state == "failed":
        state, value, error = "failed", None, curve.error
    else:
        value = curve.values[done - 1]
        state = "complete" if value is not None and math.isfinite(value) else "failed"
        if state == "failed":
            error = f"objective returned {value}"
    spans: list[Span] = []
    energy = cpu = 0.0
    a = start_ns
    for i in range(done):
        b = a + curve.times_ns[i]
        v = curve.validate_ns[i]
        e, c = curve.energies_j[i], curve.cpu_s[i]
        d = b - a
        share = (d - v) / d if d > 0 else 1.0
        epoch = first_epoch + i
        spans.append(Span(TRAIN, a, b - v, "", "", c * share, worker, number, epoch,
                          e * share))
        spans.append(Span(VALIDATE, b - v, b, "", "", c - c * share, worker, number, epoch,
                          e - e * share))
        energy += e
        cpu += c
        a = b
    return Replayed(state, value, error, spans, energy, cpu)


class _Trial:
    """One trial on one virtual worker: its curve is its answer, epoch by epoch."""

    __slots__ = ("curve", "done", "durations", "intermediate", "number", "params", "pruned",
                 "replay", "start_ns", "stopped", "trial", "worker")

    def __init__(self, replay: Replay, worker: int, trial: optuna.Trial,
                 params: dict[str, Any], curve: Curve, start_ns: int) -> None:
        self.replay = replay
        self.worker = worker
        self.trial = trial
        self.number = trial.number
        self.params = params
        self.curve = curve = curve.cut(replay.timeout_ns)
        self.durations = curve.times_ns
        self.start_ns = start_ns
        self.intermediate: list[float] = []
        self.done = 0
        self.pruned = False
        self.stopped = False

    def report(self, epoch: int, now_ns: int) -> bool:
        self.done = epoch + 1
        value = self.curve.values[epoch]
        if value is not None:
            self.intermediate.append(value)
            if math.isfinite(value) and self.replay.reports:
                clock = time.perf_counter_ns
                t0 = clock()
                self.trial.report(value, epoch)
                feed = self.replay.usage[self.worker]
                if feed is not None:  # the pruner judges by time and energy (zeus-bso)
                    c = self.curve
                    feed(self.replay.study.study_name, self.number, epoch,
                         sum(c.times_ns[:epoch + 1]) / 1e9, sum(c.energies_j[:epoch + 1]))
                prune = self.replay.prunes and self.trial.should_prune()
                self.replay.result.framework_ns += clock() - t0
                if prune:
                    self.pruned = True
                    return False
        curve = self.curve
        if self.replay.halted is not None and self.done < curve.epochs:
            self.stopped = True  # the budget closed the study: stopped after this epoch
            return False
        if self.done == curve.epochs and curve.state == "truncated":
            self._extend()
        return True

    def _extend(self) -> None:
        """The recording stops here but the trial runs on: the rest comes from elsewhere."""
        rest = self.replay.longer(self.params, self.curve)
        k, c = self.done, self.curve
        self.curve = Curve(c.values + rest.values[k:], c.times_ns + rest.times_ns[k:],
                           c.energies_j + rest.energies_j[k:], c.cpu_s + rest.cpu_s[k:],
                           c.validate_ns + rest.validate_ns[k:], rest.state, rest.error,
                           f"{c.origin}+{rest.origin}", c.test_value
                           ).cut(self.replay.timeout_ns)
        self.durations = self.curve.times_ns

    def finish(self, now_ns: int) -> int:
        replay = self.replay
        w, num = self.worker, self.number
        out = replayed(self.curve, self.done, self.start_ns, w, num, 0, self.intermediate,
                       cut=self.pruned or self.stopped,
                       note=stop_note(replay.halted) if self.stopped and replay.halted
                       else None)
        state, value, error, spans = out.state, out.value, out.error, out.spans
        energy, cpu = out.energy_j, out.cpu_s
        cost = None
        if replay.costs:
            cost = objectives.trial_cost(replay.workload, (now_ns - self.start_ns) / 1e9, cpu,
                                         energy_j=energy, cint=replay.cint)
        clock = time.perf_counter_ns
        t0 = clock()
        study = replay.studies[self.worker]
        goal = replay.workload.goal
        if cost is not None and goal.constraints:
            self.trial.set_user_attr(objectives.CONSTRAINTS_ATTR,
                                     objectives.constraint_values(goal, cost))
        if state == "complete":
            assert value is not None
            study.tell(self.trial, objectives.values(goal, value, cost.to_dict())
                       if cost is not None and goal.multi else value)
        else:
            study.tell(self.trial, state=TrialState.PRUNED if state == "pruned"
                       else TrialState.FAIL)
        spent = clock() - t0
        replay.result.framework_ns += spent
        record = TrialRecord(num, self.params, state, value, w, self.start_ns, now_ns,
                             self.intermediate, spans, cpu, energy, error,
                             told=cost.to_dict() if cost is not None else None)
        replay.ledger.finish(num, now_ns / 1e9, **(cost.spend() if cost is not None else {}))
        replay.record(record, self.curve.origin)
        return replay.charge(spent, ask=False)


class Replay:
    """One scenario's trials, replayed: call ``run(start_ns)`` once."""

    def __init__(self, workload: Workload, registry: Registry,
                 answer: Callable[[dict[str, Any]], Curve], *,
                 longer: Callable[[dict[str, Any], Curve], Curve] | None = None,
                 study_name: str = "", sampler_time_s: float | None = None,
                 progress: Callable[[Progress], None] | None = None) -> None:
        self.workload = workload
        self.answer = answer
        self._longer = longer
        self.fixed_ns = None if sampler_time_s is None else round(sampler_time_s * 1e9)
        timeout = workload.trial_timeout_s
        self.timeout_ns = round(timeout * 1e9) if timeout is not None else None
        self.ledger = Ledger.of(workload, 0.0)
        #: what stopped the running trials (``budget.running: stop``), once it has
        self.halted: str | None = None
        self.costs = objectives.needed(workload)
        self.cint = objectives.carbon_intensity(workload)
        quiet = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.progress = progress
        self.cap = trial_cap(workload)
        self.space = workload.search.space
        self.result = ReplayResult()
        self._progress = Progress(expected=workload.trial_budget)
        w = workload
        storage = optuna.storages.InMemoryStorage()
        name = study_name or w.name
        self.study = optuna.create_study(study_name=name, storage=storage,
                                         **objectives.study_direction(w.goal))
        sampler = registry.get("samplers", w.search.sampler)
        pruner = registry.get("pruners", w.search.pruner)
        self.studies = [optuna.load_study(study_name=name, storage=storage,
                                          sampler=sampler(w, w.seed),
                                          pruner=pruner(w))
                        for _ in range(w.workers.count)]
        optuna.logging.set_verbosity(quiet)
        # NopPruner never prunes and changes nothing when asked: not asking it is exact
        self.prunes = any(type(s.pruner) is not optuna.pruners.NopPruner for s in self.studies)
        self.reports = not w.goal.multi  # a multi-objective trial reports nothing to Optuna
        # a pruner that takes a trial's time and energy so far is told the recorded ones
        self.usage = [getattr(s.pruner, "trial_usage", None) for s in self.studies]

    def charge(self, measured_ns: int, *, ask: bool = True) -> int:
        """Virtual ns a worker spends on the sampler: as measured, or a fixed time per ask
        (the tell then costs nothing: the fixed time stands for the whole hand-over)."""
        fixed = self.fixed_ns
        ns = measured_ns if fixed is None else fixed if ask else 0
        self.result.charged_ns += ns
        return ns

    def longer(self, params: dict[str, Any], curve: Curve) -> Curve:
        if self._longer is None:
            raise RuntimeError(f"no answer past epoch {curve.epochs} for "
                               f"{json.dumps(params, sort_keys=True)}")
        return self._longer(params, curve)

    def record(self, record: TrialRecord, origin: str) -> None:
        result = self.result
        result.trials.append(record)
        result.completion.append(record.number)
        result.origins[origin] = result.origins.get(origin, 0) + 1
        p = self._progress
        p.count(record, self.workload.goal)
        if self.progress is not None and p.done % PROGRESS_EVERY == 0:
            self.progress(p)

    def ask(self, worker: int, now_ns: int) -> tuple[int, _Trial | None]:
        study = self.studies[worker]
        if optuna_loop.stopped(study):  # the worker's loop has ended (GridSampler: exhausted)
            return 0, None
        if not self.ledger.admits(now_ns / 1e9):  # the workload's budget closed the study
            if self.workload.budget.running == "stop":
                self.halted = self.ledger.stopped_by
            return 0, None
        clock = time.perf_counter_ns
        t0 = clock()
        trial = study.ask()
        if self.cap is not None and trial.number >= self.cap:
            # the optuna SUT's worker: past the budget, fail the trial and stop
            study.tell(trial, state=TrialState.FAIL)
            study.stop()
            spent = clock() - t0
            self.result.framework_ns += spent
            self.result.discarded += 1
            return self.charge(spent), None
        params = suggest(trial, self.space)
        spent = clock() - t0
        self.result.framework_ns += spent
        latency = self.charge(spent)
        self.ledger.start(trial.number, now_ns / 1e9)
        curve = self.answer(params)
        return latency, _Trial(self, worker, trial, params, curve, now_ns + latency)

    def run(self, start_ns: int = 0) -> ReplayResult:
        # The replay allocates records fast and frees little: collecting the growing heap
        # mid-run would cost more than the replay itself (3x at 10,000 trials).
        collecting = gc.isenabled()
        gc.disable()
        t0 = time.perf_counter_ns()
        self.ledger.started_s = start_ns / 1e9
        try:
            with optuna_loop.optimize_loop(self.studies):
                self.result.retired_ns = schedule.run(len(self.studies), self.ask, start_ns)
        finally:
            self.result.wall_ns = time.perf_counter_ns() - t0
            if collecting:
                gc.enable()
        if self.progress is not None:
            self.progress(self._progress)
        return self.result

    def best_number(self) -> int | None:
        goal = self.workload.goal
        if goal.multi or goal.constraints:
            return objectives.best_of(goal, self.result.trials)
        try:
            return self.study.best_trial.number
        except ValueError:
            return None

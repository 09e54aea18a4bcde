"""Any ask-and-tell optimizer, replayed on virtual workers: the simulated twin of the
``asktell`` SUT.

The same ``optimizers.study.Study`` as the real SUT decides what each free worker does
next (trial budget, the workload's ``budget:`` on the virtual clock, continuation), and
``schedule.run`` decides who asks when, in mfhpo-simulator's exact order. Each trial's
epochs cost what the configuration's curve says (the table's recording, or a zero-cost
benchmark): a continuation trains, and is charged, only the epochs from the one it
resumes to the fidelity asked — a configuration asked at 1 epoch and then at 3 costs its
first epoch and then its second and third. Its spans carry those epochs' numbers, so its
energy is theirs. The optimizer's ``ask`` and ``tell`` are charged to the worker as
measured (or a fixed time, ``sut.options.sampler_time``), its ``report`` is not (as the
pruner's in ``replay``). ``trial_timeout_s`` kills a trial at that virtual time. Each
trial's costs (its recorded energy, ``objectives.trial_cost``) are told with its value
when the workload needs them, and ``budget.running: stop`` stops the trials running when
the budget closes the study after the epoch they are in.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any

import pytest_basht.objectives as objectives
from pytest_basht.optimizers.base import Outcome
from pytest_basht.optimizers.study import Evaluation, Study, best_number
from pytest_basht.records import TrialRecord
from pytest_basht.simulation import schedule
from pytest_basht.simulation.curve import Curve
from pytest_basht.simulation.replay import PROGRESS_EVERY, ReplayResult, replayed
from pytest_basht.spend import stop_note
from pytest_basht.sut.base import Progress
from pytest_basht.workload import Workload


def portion(curve: Curve, first: int, fidelity: int) -> Curve:
    """Epochs ``first`` … ``fidelity`` − 1 of a configuration's curve: what the trial
    that trains them reports and costs (failing, if the recording failed by then)."""
    if curve.state == "failed" and fidelity >= curve.epochs:
        end, state, error = curve.epochs, "failed", curve.error
    else:
        end, state, error = fidelity, "complete", None
    return Curve(curve.values[first:end], curve.times_ns[first:end],
                 curve.energies_j[first:end], curve.cpu_s[first:end],
                 curve.validate_ns[first:end], state, error, curve.origin, curve.test_value)


class _Evaluation:
    """One trial on one virtual worker: a portion of its configuration's curve."""

    __slots__ = ("curve", "done", "durations", "ev", "intermediate", "pruned", "replay",
                 "start_ns", "stopped", "worker")

    def __init__(self, replay: AskTellReplay, worker: int, ev: Evaluation, curve: Curve,
                 start_ns: int) -> None:
        self.replay = replay
        self.worker = worker
        self.ev = ev
        self.curve = portion(curve, ev.start_epoch, ev.fidelity).cut(replay.timeout_ns)
        self.durations = self.curve.times_ns
        self.start_ns = start_ns
        self.intermediate: list[float] = []
        self.done = 0
        self.pruned = False
        self.stopped = False

    def report(self, k: int, now_ns: int) -> bool:
        self.done = k + 1
        value = self.curve.values[k]
        if self.replay.halted is not None and self.done < self.curve.epochs:
            if value is not None:
                self.intermediate.append(value)
            self.stopped = True  # the budget closed the study: stopped after this epoch
            return False
        if value is None:
            return True
        self.intermediate.append(value)
        if not math.isfinite(value):
            return True
        clock = time.perf_counter_ns
        t0 = clock()
        go = self.replay.study.report(self.ev.number, self.ev.start_epoch + k, value)
        self.replay.result.framework_ns += clock() - t0
        self.pruned = not go
        return go

    def finish(self, now_ns: int) -> int:
        ev, replay = self.ev, self.replay
        w, num = self.worker, ev.number
        out = replayed(self.curve, self.done, self.start_ns, w, num, ev.start_epoch,
                       self.intermediate, cut=self.pruned or self.stopped,
                       note=stop_note(replay.halted) if self.stopped and replay.halted
                       else None)
        state, value, error, spans = out.state, out.value, out.error, out.spans
        energy, cpu = out.energy_j, out.cpu_s
        duration_s = (now_ns - self.start_ns) / 1e9
        costs = (objectives.trial_cost(replay.workload, duration_s, cpu, energy_j=energy,
                                       cint=replay.cint).to_dict() if replay.costs else {})
        record = TrialRecord(num, ev.params, state, value, w, self.start_ns, now_ns,
                             self.intermediate, spans, cpu, energy, error,
                             fidelity=ev.fidelity,
                             resumed_from=ev.start_epoch if ev.resume is not None else None,
                             told=costs or None)
        clock = time.perf_counter_ns
        t0 = clock()
        replay.study.finished(ev, Outcome(state, value, ev.start_epoch + len(self.intermediate),
                                          duration_s, costs), now_ns / 1e9)
        spent = clock() - t0
        replay.result.framework_ns += spent
        replay.record(record, self.curve.origin)
        return replay.charge(spent, ask=False)


class AskTellReplay:
    """One scenario's ask-and-tell study, replayed: call ``run(start_ns)`` once."""

    def __init__(self, workload: Workload, study: Study,
                 answer: Callable[[dict[str, Any]], Curve], *,
                 longer: Callable[[dict[str, Any], Curve], Curve] | None = None,
                 sampler_time_s: float | None = None,
                 progress: Callable[[Progress], None] | None = None) -> None:
        self.workload = workload
        self.study = study
        self.answer = answer
        self._longer = longer
        self.fixed_ns = None if sampler_time_s is None else round(sampler_time_s * 1e9)
        timeout = workload.trial_timeout_s
        self.timeout_ns = round(timeout * 1e9) if timeout is not None else None
        self.progress = progress
        self.result = ReplayResult()
        self._progress = Progress(expected=workload.trial_budget)
        #: what stopped the running trials (``budget.running: stop``), once it has
        self.halted: str | None = None
        self.costs = objectives.needed(workload)
        self.cint = objectives.carbon_intensity(workload)

    def charge(self, measured_ns: int, *, ask: bool = True) -> int:
        """Virtual ns a worker spends on the optimizer: as measured, or a fixed time per
        ask (the tell then costs nothing)."""
        fixed = self.fixed_ns
        ns = measured_ns if fixed is None else fixed if ask else 0
        self.result.charged_ns += ns
        return ns

    def record(self, record: TrialRecord, origin: str) -> None:
        result = self.result
        result.trials.append(record)
        result.completion.append(record.number)
        result.origins[origin] = result.origins.get(origin, 0) + 1
        p = self._progress
        p.count(record, self.workload.goal)
        if self.progress is not None and p.done % PROGRESS_EVERY == 0:
            self.progress(p)

    def _curve(self, ev: Evaluation) -> Curve:
        curve = self.answer(ev.params)
        if curve.state == "truncated" and curve.epochs < ev.fidelity:
            if self._longer is None:
                raise RuntimeError(f"no answer past epoch {curve.epochs} for {ev.params}")
            curve = self._longer(ev.params, curve)
        return curve

    def ask(self, worker: int, now_ns: int) -> tuple[int, _Evaluation | None]:
        clock = time.perf_counter_ns
        t0 = clock()
        ev = self.study.next(now_ns / 1e9)
        spent = clock() - t0
        self.result.framework_ns += spent
        if ev is None:
            stopped_by = self.study.ledger.stopped_by
            if stopped_by is not None and self.workload.budget.running == "stop":
                self.halted = stopped_by
            return 0, None
        latency = self.charge(spent)
        return latency, _Evaluation(self, worker, ev, self._curve(ev), now_ns + latency)

    def run(self, start_ns: int = 0) -> ReplayResult:
        collecting = gc.isenabled()
        gc.disable()  # as in replay: collecting the growing heap costs more than the run
        t0 = time.perf_counter_ns()
        self.study.ledger.started_s = start_ns / 1e9
        try:
            self.result.retired_ns = schedule.run(self.workload.workers.count, self.ask,
                                                  start_ns)
        finally:
            self.result.wall_ns = time.perf_counter_ns() - t0
            if collecting:
                gc.enable()
        if self.progress is not None:
            self.progress(self._progress)
        return self.result

    def best_number(self) -> int | None:
        return best_number(self.result.trials, self.workload.goal)

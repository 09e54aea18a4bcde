"""One ask-and-tell study, whichever SUT runs it: what to hand out next, and continuation.

``Study.next(now)`` is what a SUT calls when a worker is free. It refuses once the study
is closed — by the trial budget (``search.trials``), by the workload's ``budget:``
(``spend.Ledger``), or by the optimizer having nothing more to ask — and otherwise asks
the optimizer and returns an ``Evaluation``: the trial number, the configuration, the
epochs to reach and where to start.

Continuation: a configuration asked again at a higher fidelity resumes from the state
its last evaluation saved (``Saved``: the epochs it reached and, for real training, the
checkpoint file), so that only the new epochs are trained and charged. A state is taken
by one continuation (two evaluations never resume the same one); one asked again at a
fidelity it has already reached is trained from the start. A trainable that cannot
resume (``Trainable.resumable`` false) is always trained from the start.
``Study.finished`` tells the optimizer and keeps the state a completed evaluation saved.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_basht.objectives import best_of, reached
from pytest_basht.optimizers.base import Optimizer, Outcome
from pytest_basht.records import TrialRecord
from pytest_basht.spend import Ledger, of_costs
from pytest_basht.workload import GoalSpec


def config_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


@dataclass(frozen=True)
class Saved:
    """A configuration's state after ``epochs`` epochs, saved by evaluation ``number``
    (``checkpoint``: the trainable's file; None in a simulation, where the recorded curve
    is the state)."""

    number: int
    epochs: int
    checkpoint: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """One trial of an ask-and-tell study: train ``params`` for epochs ``start_epoch`` …
    ``fidelity`` − 1, from ``resume`` (None: from scratch)."""

    number: int
    params: dict[str, Any]
    fidelity: int
    resume: Saved | None = None

    @property
    def start_epoch(self) -> int:
        return self.resume.epochs if self.resume is not None else 0


class Study:
    def __init__(self, optimizer: Optimizer, ledger: Ledger, cap: int | None, *,
                 resumable: bool = True) -> None:
        self.optimizer = optimizer
        self.ledger = ledger
        self.cap = cap
        self.resumable = resumable
        self.asked = 0
        self.exhausted = False
        self.saved: dict[str, Saved] = {}
        self.resumed = 0
        self.epochs_resumed = 0

    def next(self, now_s: float) -> Evaluation | None:
        """The next trial to hand out at ``now_s``, or None: the study is closed."""
        if self.exhausted or (self.cap is not None and self.asked >= self.cap):
            return None
        if not self.ledger.admits(now_s):
            return None
        suggestion = self.optimizer.ask()
        if suggestion is None:
            self.exhausted = True
            return None
        self.asked += 1
        resume = self._take(suggestion.config, suggestion.fidelity)
        if resume is not None:
            self.resumed += 1
            self.epochs_resumed += resume.epochs
        self.ledger.start(suggestion.id, now_s)
        return Evaluation(suggestion.id, suggestion.config, suggestion.fidelity, resume)

    def _take(self, params: dict[str, Any], fidelity: int) -> Saved | None:
        if not self.resumable:
            return None
        key = config_key(params)
        saved = self.saved.get(key)
        if saved is None or saved.epochs >= fidelity:
            return None
        del self.saved[key]
        return saved

    def report(self, number: int, epoch: int, value: float) -> bool:
        """An epoch's value: whether the trial goes on (the optimizer's judgement)."""
        if not self.optimizer.judges_epochs:
            return True
        return self.optimizer.report(number, epoch, value)

    def finished(self, ev: Evaluation, outcome: Outcome, now_s: float,
                 checkpoint: str | None = None) -> None:
        """Evaluation ``ev`` ended: tell the optimizer, close its ledger entry (with its
        costs, when it was told them), and keep the state it saved (a complete evaluation
        that reached its fidelity)."""
        self.ledger.finish(ev.number, now_s, **of_costs(outcome.costs))
        self.optimizer.tell(ev.number, outcome)
        if outcome.state == "complete" and outcome.epochs >= ev.fidelity and self.resumable:
            key = config_key(ev.params)
            current = self.saved.get(key)
            if current is None or current.epochs <= outcome.epochs:
                self.saved[key] = Saved(ev.number, outcome.epochs, checkpoint)

    @property
    def stopped_by(self) -> str:
        """What closed the study: a budget limit, the trial budget, or the optimizer."""
        if self.ledger.stopped_by is not None:
            return f"budget.{self.ledger.stopped_by}"
        if self.exhausted:
            return "optimizer"
        return "search.trials"

    def describe(self) -> dict[str, Any]:
        return {"asked": self.asked, "resumed": self.resumed,
                "epochs_resumed": self.epochs_resumed, "stopped_by": self.stopped_by}


def best_number(trials: Sequence[TrialRecord], goal: GoalSpec) -> int | None:
    """The best complete trial at the highest fidelity any complete trial reached: a value
    at fewer epochs is not comparable (a low fidelity can look better than it is). With
    several objectives or constraints, the pick among them (``objectives.best_of``)."""
    complete = [t for t in trials if t.state == "complete" and t.value is not None]
    if not complete:
        return None
    top = max(reached(t) for t in complete)
    if goal.multi or goal.constraints:
        return best_of(goal, [t for t in complete if reached(t) == top])
    best: TrialRecord | None = None
    for t in complete:
        if reached(t) == top and (best is None or goal.better(t.value, best.value)):  # type: ignore[arg-type]
            best = t
    return best.number if best is not None else None

"""The workload's ``budget:`` for the Optuna SUTs, whose workers take trials from the
shared study themselves (locally, on other hosts, fused or not).

Before each trial a worker builds the study's ledger (``spend.Ledger``) from the study
every worker shares: the run's start (wall clock, from the controller's ``Run``), each
finished trial's time from its ask to its end and its spend in energy, CO2 and cost (which
its worker stored on it, ``objectives.SPEND_ATTR``), the running trials. When one more trial
would pass a limit, the worker discards the trial it was given (as past the trial
budget) and leaves; it also closes the study for every worker (a study user attribute,
``CLOSED``), so a later, shorter forecast cannot reopen it. Trials asked only to be
discarded carry ``DISCARDED`` (``budget``, or ``trials`` past the trial budget) and count
for nothing. The controller reads from the same
attribute what stopped the study (``ledger``), and with ``budget.running: stop`` it stops
the trials its local workers are running then (``Halt``); trials on other hosts finish.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pytest_basht.objectives import SPEND_ATTR
from pytest_basht.spend import Ledger, limits_of, stop_note
from pytest_basht.sut.base import Progress
from pytest_basht.workload import Workload

#: how often the controller reads the study to see whether a worker closed it
WATCH_S = 1.0

CLOSED = "basht_budget_closed"
DISCARDED = "basht_discarded"


def _ledger(study: Any, limits: Mapping[str, float], started_s: float,
            skip: int | None) -> Ledger:
    from optuna.trial import TrialState

    ledger = Ledger(dict(limits), started_s)
    for t in study.get_trials(deepcopy=False):
        if t.number == skip or t.user_attrs.get(DISCARDED) or t.datetime_start is None:
            continue
        began = t.datetime_start.timestamp()
        if t.state == TrialState.RUNNING:
            ledger.running[t.number] = began
        elif t.state.is_finished() and t.datetime_complete is not None:
            ledger.finished.append({"time_s": t.datetime_complete.timestamp() - began,
                                    **t.user_attrs.get(SPEND_ATTR, {})})
    return ledger


def refused(study: Any, trial: Any, limits: Mapping[str, float], started_s: float) -> bool:
    """Whether the budget refuses ``trial`` (just asked): then it is marked discarded, and
    the study closed for every worker."""
    if not limits:
        return False
    if CLOSED not in study.user_attrs:
        ledger = _ledger(study, limits, started_s, trial.number)
        if ledger.admits(time.time()):
            return False
        study.set_user_attr(CLOSED, {"by": ledger.stopped_by, "at_s": ledger.stopped_at_s,
                                     "forecast": ledger.forecast_at_stop,
                                     "spent": ledger.spent_at_stop})
    trial.set_user_attr(DISCARDED, "budget")
    return True


def ledger(study: Any, limits: Mapping[str, float], started_s: float) -> Ledger:
    """The study's ledger as the controller reports it: its finished trials, and what
    closed it (from the worker that was refused first)."""
    out = _ledger(study, limits, started_s, None)
    closed = study.user_attrs.get(CLOSED)
    if closed:
        out.stopped_by = closed["by"]
        out.stopped_at_s = closed["at_s"]
        out.forecast_at_stop = dict(closed["forecast"])
        out.spent_at_stop = dict(closed["spent"])
        out.refused = len([t for t in study.get_trials(deepcopy=False)
                           if t.user_attrs.get(DISCARDED) == "budget"])
    return out


def stopped_by(study: Any) -> str | None:
    """The limit that closed the study (``budget.time_s``), None when none did."""
    closed = study.user_attrs.get(CLOSED)
    return f"budget.{closed['by']}" if closed else None


class Halt:
    """``budget.running: stop`` on a controller whose workers take trials themselves: once
    a worker has closed the study, the trials in flight on the local workers stop
    (``WorkerPool.halt``)."""

    def __init__(self, study: Any, workload: Workload) -> None:
        self.study = study
        self.on = bool(limits_of(workload)) and workload.budget.running == "stop"
        self.next_s = 0.0

    def check(self, pool: Any, progress: Progress) -> None:
        """Read the study at most once per ``WATCH_S``; stop the running trials once."""
        if not self.on or time.monotonic() < self.next_s:
            return
        self.next_s = time.monotonic() + WATCH_S
        closed = self.study.user_attrs.get(CLOSED)
        if closed:
            self.on = False
            pool.halt(stop_note(closed["by"]), progress)

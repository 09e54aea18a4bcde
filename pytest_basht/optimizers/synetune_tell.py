"""Syne Tune (``pip install 'pytest-basht[syne-tune]'``) through the ask-and-tell protocol.

Syne Tune's asynchronous successive halving (ASHA, stopping type) with a searcher of its
own (``search.sampler_options.searcher``: ``kde`` — BOHB's model, the default —,
``random_search`` or ``regularized_evolution``): every trial is asked at full fidelity
and judged after each epoch (``on_trial_result``), stopped where its rung says so. ``search.pruner:
hyperband`` runs as many brackets as the ladder from ``min_epochs`` to
``training.epochs`` has rungs, ``successive-halving`` one, ``none`` no stopping at all.
The calls follow Syne Tune's own ``Tuner``: a trial the scheduler stopped is removed
(``on_trial_remove``), a finished one completed, a failed one reported as an error. Where
Syne Tune draws from NumPy's global generator, it draws from a seeded stream of the
optimizer's own (``seeded``), so a run is reproducible.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from pytest_basht.errors import WorkloadError
from pytest_basht.optimizers.base import (
    LADDER_OPTIONS,
    Optimizer,
    Outcome,
    Suggestion,
    ladder,
)
from pytest_basht.optimizers.space import Coded, coded, decode
from pytest_basht.registry import Registry
from pytest_basht.workload import Workload

SEARCHERS = ("kde", "random_search", "regularized_evolution")
METRIC = "loss"
EPOCH = "epoch"


def config_space(codings: list[Coded]) -> dict[str, Any]:
    from syne_tune.config_space import choice, lograndint, loguniform, randint, uniform

    space: dict[str, Any] = {}
    for c in codings:
        if c.kind == "categorical":
            space[c.name] = choice(c.labels)
        elif c.kind == "int":
            space[c.name] = (lograndint if c.log else randint)(int(c.low), int(c.high))
        else:
            space[c.name] = (loguniform if c.log else uniform)(c.low, c.high)
    return space


def rungs(low: int, high: int, eta: int) -> int:
    """Rungs of the ladder ``low``, ``low·eta``, … up to ``high``."""
    return math.floor(math.log(high / low) / math.log(eta) + 1e-9) + 1


class SyneTuneOptimizer(Optimizer):
    library = "syne-tune"
    module = "syne_tune"
    extra = "syne-tune"
    schemes: ClassVar[dict[str, str]] = {
        "hyperband": "Syne Tune's ASHA (stopping) over every bracket of the ladder",
        "successive-halving": "Syne Tune's ASHA (stopping), one bracket",
        "none": "Syne Tune's searcher alone, every trial at full fidelity"}
    options: ClassVar[dict[str, str]] = {
        **LADDER_OPTIONS,
        "searcher": "Syne Tune's searcher: " + ", ".join(SEARCHERS) + " (default kde)"}

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        super().check(workload, registry)
        if workload.search.pruner != "none":
            ladder(workload)
        searcher = workload.search.sampler_options.get("searcher", "kde")
        if searcher not in SEARCHERS:
            raise WorkloadError(workload.source, "search.sampler_options.searcher",
                                "one of " + ", ".join(SEARCHERS), searcher)

    def __init__(self, workload: Workload, seed: int, work_dir: Path,
                 registry: Registry) -> None:
        import numpy as np
        from syne_tune.optimizer.schedulers.asha import AsynchronousSuccessiveHalving

        super().__init__(workload, seed, work_dir, registry)
        self.codings = coded(workload.search.space)
        scheme = workload.search.pruner
        if scheme == "none":
            self.eta, self.min_epochs, brackets = 3, self.max_epochs, 1
        else:
            self.eta, self.min_epochs = ladder(workload)
            brackets = (rungs(self.min_epochs, self.max_epochs, self.eta)
                        if scheme == "hyperband" else 1)
        self.searcher = self.option("searcher", "kde")
        self.draws = np.random.RandomState(seed).get_state()
        self.scheduler = AsynchronousSuccessiveHalving(
            config_space(self.codings), metric=METRIC, do_minimize=True,
            searcher=self.searcher, time_attr=EPOCH, max_t=self.max_epochs,
            grace_period=self.min_epochs, reduction_factor=self.eta, brackets=brackets,
            random_seed=seed)
        self.brackets = brackets
        self.judges_epochs = self.min_epochs < self.max_epochs
        self.trials: dict[int, Any] = {}
        self.stopped: set[int] = set()
        self.asked = 0

    @contextlib.contextmanager
    def seeded(self) -> Iterator[None]:
        """Syne Tune draws from NumPy's global generator in places (the bracket a trial
        joins; the kde searcher's random configurations), which would make a run
        irreproducible: during each call it draws from a stream of this optimizer's own,
        seeded, and the global generator is left as it was."""
        import numpy as np

        before = np.random.get_state()
        np.random.set_state(self.draws)
        try:
            with warnings.catch_warnings():
                # pandas warns, on every draw through it, of a change to come in its
                # defaults; the draws pass their seeded state and stay reproducible
                warnings.simplefilter("ignore", FutureWarning)
                yield
        finally:
            self.draws = np.random.get_state()
            np.random.set_state(before)

    def ask(self) -> Suggestion | None:
        from syne_tune.backend.trial_status import Trial

        with self.seeded():
            suggestion = self.scheduler.suggest()
            if suggestion is None:
                return None
            n = self.asked
            trial = Trial(trial_id=n, config=suggestion.config,
                          creation_time=datetime.now(timezone.utc))
            self.scheduler.on_trial_add(trial)
        self.asked += 1
        self.trials[n] = trial
        return Suggestion(n, decode(self.codings, suggestion.config), self.max_epochs)

    def report(self, id: int, epoch: int, value: float) -> bool:
        from syne_tune.optimizer.scheduler import SchedulerDecision

        with self.seeded():
            decision = self.scheduler.on_trial_result(
                self.trials[id], {METRIC: self.loss(value), EPOCH: epoch + 1})
        if decision == SchedulerDecision.STOP:
            self.stopped.add(id)
            # a stop at the last epoch is the end of the trial, not an early stop
            return epoch + 1 >= self.max_epochs
        return True

    def tell(self, id: int, outcome: Outcome) -> None:
        trial = self.trials.pop(id)
        with self.seeded():
            if outcome.state == "failed":
                self.scheduler.on_trial_error(trial)
                self.scheduler.on_trial_remove(trial)
            elif id in self.stopped:
                self.scheduler.on_trial_remove(trial)
            else:
                self.scheduler.on_trial_complete(
                    trial, {METRIC: self.loss(outcome.value), EPOCH: outcome.epochs})
        self.stopped.discard(id)

    def settings(self) -> dict[str, Any]:
        return {"scheduler": "AsynchronousSuccessiveHalving", "searcher": self.searcher,
                "brackets": self.brackets, "eta": self.eta, "min_epochs": self.min_epochs,
                "max_epochs": self.max_epochs}

"""Optuna through the ask-and-tell protocol, so that its results compare with the other
libraries' on equal terms (the ``optuna`` SUT runs Optuna's own worker loop instead).

One in-memory study: ``ask`` is ``study.ask()`` with the workload's space suggested as
the ``optuna`` SUT suggests it, every trial asked at full fidelity (``training.epochs``);
the registered pruner (``search.pruner``, any of them) judges each epoch's report, and
``tell`` completes, prunes or fails the trial. ``search.sampler_options.sampler`` names
the registered Optuna sampler (default ``tpe``); the other options are that sampler's.
Several objectives make the study multi-objective (told the value and the goal's costs),
and constraints reach the sampler as in the ``optuna`` SUT.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import pytest_basht.objectives as objectives
from pytest_basht.errors import WorkloadError
from pytest_basht.optimizers.base import Optimizer, Outcome, Suggestion
from pytest_basht.registry import Registry
from pytest_basht.workload import Workload

DEFAULT_SAMPLER = "tpe"


def inner_workload(workload: Workload) -> Workload:
    """The workload as the Optuna sampler's factory sees it: the sampler it names, and
    the options that are that sampler's own."""
    opts = dict(workload.search.sampler_options)
    name = opts.pop("sampler", DEFAULT_SAMPLER)
    return dataclasses.replace(workload, search=dataclasses.replace(
        workload.search, sampler=name, sampler_options=opts))


class OptunaOptimizer(Optimizer):
    library = "optuna"
    module = "optuna"
    extra = ""  # a dependency of pytest-basht itself
    multi_objective = True
    constraints = True
    schemes: ClassVar[dict[str, str]] = {
        "none": "Optuna's NopPruner", "median": "Optuna's MedianPruner",
        "successive-halving": "Optuna's SuccessiveHalvingPruner",
        "hyperband": "Optuna's HyperbandPruner"}

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        inner = inner_workload(workload)
        name = inner.search.sampler
        if name in registry.optimizers or name == "grid":
            raise WorkloadError(workload.source, "search.sampler_options.sampler",
                                "a registered Optuna sampler other than grid (a grid has "
                                "nothing to ask: run it with sut.name optuna)", name)
        factory = registry.get("samplers", name, source=workload.source,
                               key="search.sampler_options.sampler")
        from pytest_basht.search import check_objectives

        check_objectives(inner, factory)
        # any registered pruner, a user's too (the registry has checked the name); the
        # other options are the sampler's: building both checks them
        try:
            registry.get("samplers", name)(inner, inner.seed)
            registry.get("pruners", inner.search.pruner)(inner)
        except (TypeError, ValueError) as exc:
            raise WorkloadError(workload.source, "search.sampler_options",
                                f"options {name} accepts ({exc})",
                                inner.search.sampler_options) from None

    def __init__(self, workload: Workload, seed: int, work_dir: Path,
                 registry: Registry) -> None:
        import optuna

        super().__init__(workload, seed, work_dir, registry)
        self.inner = inner_workload(workload)
        sampler = registry.get("samplers", self.inner.search.sampler)(self.inner, seed)
        pruner = registry.get("pruners", self.inner.search.pruner)(self.inner)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # a name of its own: HyperbandPruner assigns brackets by a hash of it (Optuna's
        # default name is random, and the brackets would be)
        self.study = optuna.create_study(study_name=f"{workload.name}-{seed}",
                                         **objectives.study_direction(workload.goal),
                                         sampler=sampler,
                                         pruner=pruner,
                                         storage=optuna.storages.InMemoryStorage())
        # NopPruner never prunes: asking it after every epoch would change nothing
        self.judges_epochs = type(pruner) is not optuna.pruners.NopPruner
        self.trials: dict[int, Any] = {}

    def ask(self) -> Suggestion:
        from pytest_basht.search import suggest

        trial = self.study.ask()
        self.trials[trial.number] = trial
        params = suggest(trial, self.workload.search.space)
        return Suggestion(trial.number, params, self.max_epochs)

    def report(self, id: int, epoch: int, value: float) -> bool:
        trial = self.trials[id]
        trial.report(value, epoch)
        return not trial.should_prune()

    def tell(self, id: int, outcome: Outcome) -> None:
        from optuna.trial import TrialState

        trial = self.trials.pop(id)
        goal = self.workload.goal
        if goal.constraints and outcome.costs:
            trial.set_user_attr(objectives.CONSTRAINTS_ATTR, objectives.constraint_values(
                goal, objectives.TrialCost(**outcome.costs)))
        if outcome.state == "complete" and outcome.value is not None:
            self.study.tell(trial, objectives.values(goal, outcome.value, outcome.costs)
                            if goal.multi else outcome.value)
        else:
            self.study.tell(trial, state=TrialState.PRUNED if outcome.state == "pruned"
                            else TrialState.FAIL)

    def settings(self) -> dict[str, Any]:
        return {"sampler": self.inner.search.sampler,
                "sampler_class": type(self.study.sampler).__name__,
                "pruner_class": type(self.study.pruner).__name__}

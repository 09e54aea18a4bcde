"""SMAC3 (``pip install 'pytest-basht[smac]'``) through the ask-and-tell protocol.

``search.pruner: hyperband`` is SMAC3's ``MultiFidelityFacade`` with its Hyperband
intensifier, ``successive-halving`` the same facade with successive halving, budgets from
``min_epochs`` to ``training.epochs`` epochs in steps of ``eta``; a configuration promoted
to a higher budget is asked again and resumed by the SUT. ``none`` is SMAC3's
``HyperparameterOptimizationFacade`` (random-forest BO), every trial at full fidelity.
SMAC3 minimizes: a maximized goal is told negated, a failed trial as crashed. Several
objectives (``goal.objectives``) are SMAC3's multi-objective scenario, aggregated by ParEGO
(a random weighting of the objectives per iteration), and told the value's loss and the
trial's costs. Its files go to the scenario's work directory; the runhistory is not
written after every tell.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from pytest_basht.optimizers.base import (
    LADDER_OPTIONS,
    Optimizer,
    Outcome,
    Suggestion,
    epochs_of,
    ladder,
)
from pytest_basht.optimizers.space import coded, configspace, decode
from pytest_basht.registry import Registry
from pytest_basht.workload import Workload


def _target(config: Any, seed: int = 0, budget: float | None = None) -> float:
    """SMAC3 wants a target function; ask and tell never call it."""
    raise AssertionError("SMAC3 is driven by ask and tell here")


class SmacOptimizer(Optimizer):
    library = "smac"
    module = "smac"
    extra = "smac"
    schemes: ClassVar[dict[str, str]] = {
        "hyperband": "SMAC3's MultiFidelityFacade with the Hyperband intensifier",
        "successive-halving": "SMAC3's MultiFidelityFacade with successive halving",
        "none": "SMAC3's HyperparameterOptimizationFacade, every trial at full fidelity"}
    options: ClassVar[dict[str, str]] = dict(LADDER_OPTIONS)
    multi_objective = True

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        super().check(workload, registry)
        if workload.search.pruner != "none":
            ladder(workload)

    def __init__(self, workload: Workload, seed: int, work_dir: Path,
                 registry: Registry) -> None:
        from smac import HyperparameterOptimizationFacade, MultiFidelityFacade, Scenario
        from smac.intensifier.hyperband import Hyperband
        from smac.intensifier.successive_halving import SuccessiveHalving
        from smac.multi_objective.parego import ParEGO

        super().__init__(workload, seed, work_dir, registry)
        self.codings = coded(workload.search.space)
        scheme = workload.search.pruner
        budgets: dict[str, Any] = {}
        self.eta = self.min_epochs = None
        if scheme != "none":
            self.eta, self.min_epochs = ladder(workload)
            budgets = {"min_budget": self.min_epochs, "max_budget": self.max_epochs}
        goal = workload.goal
        many = {"objectives": ["loss", *goal.objectives]} if goal.multi else {}
        scenario = Scenario(configspace(self.codings, seed), name=f"{workload.name}-{seed}",
                            output_directory=work_dir / "smac", deterministic=True,
                            n_trials=workload.trial_budget, seed=seed, **budgets, **many)
        quiet = 40  # logging.ERROR: SMAC3 logs every incumbent at INFO
        extra: dict[str, Any] = (
            {"multi_objective_algorithm": ParEGO(scenario, seed=seed)} if goal.multi else {})
        if scheme == "none":
            self.smac: Any = HyperparameterOptimizationFacade(
                scenario, _target, overwrite=True, logging_level=quiet, **extra)
        else:
            kind = Hyperband if scheme == "hyperband" else SuccessiveHalving
            self.smac = MultiFidelityFacade(
                scenario, _target, overwrite=True, logging_level=quiet,
                intensifier=kind(scenario, eta=self.eta, incumbent_selection="highest_budget"),
                **extra)
        self.infos: dict[int, Any] = {}
        self.asked = 0

    def ask(self) -> Suggestion:
        info = self.smac.ask()
        n = self.asked
        self.asked += 1
        self.infos[n] = info
        fidelity = (self.max_epochs if info.budget is None
                    else epochs_of(info.budget, self.max_epochs))
        return Suggestion(n, decode(self.codings, dict(info.config)), fidelity)

    def tell(self, id: int, outcome: Outcome) -> None:
        from smac.runhistory.dataclasses import TrialValue
        from smac.runhistory.enumerations import StatusType

        info = self.infos.pop(id)
        costs = self.losses(outcome)
        ok = outcome.state != "failed" and all(math.isfinite(c) for c in costs)
        told = (costs if ok else [math.inf] * len(costs))
        self.smac.tell(info, TrialValue(cost=told if self.workload.goal.multi else told[0],
                                        time=outcome.time_s,
                                        status=StatusType.SUCCESS if ok
                                        else StatusType.CRASHED), save=False)

    def settings(self) -> dict[str, Any]:
        return {"facade": type(self.smac).__name__,
                "intensifier": type(self.smac.intensifier).__name__,
                "eta": self.eta, "min_epochs": self.min_epochs, "max_epochs": self.max_epochs}

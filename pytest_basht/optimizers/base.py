"""The ask-and-tell protocol: any HPO library behind one small interface.

An ``Optimizer`` is built once per scenario, from the workload, its seed and a directory
for the library's files. Whenever a worker is free the SUT asks it for work —
``ask() -> Suggestion(id, config, fidelity)``, the fidelity being the epochs to train the
configuration up to — and tells it every result as it comes back, in the order trials
finish: ``tell(id, Outcome)``. An optimizer that judges a trial epoch by epoch (Optuna's
pruners, Syne Tune's stopping schedulers) sets ``judges_epochs`` and answers
``report(id, epoch, value)`` after each epoch: False stops the trial there (``pruned``).

When a library asks for a configuration again at a higher fidelity (Hyperband's
promotions in SMAC3 and DEHB), the SUT resumes it from its saved state and charges the new
epochs only (``optimizers.study``); the optimizer need not know.

The same adapter object runs over real workers (``sut.asktell``) and over the simulator
(``simulation.asktell``). Adapters register with ``pytest_basht_register_optimizers``; a
workload selects one with ``search.sampler`` (its options in ``search.sampler_options``)
and its multi-fidelity scheme with ``search.pruner`` (``none``, ``successive-halving``,
``hyperband``: what each library makes of them is its ``schemes``).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pytest_basht.errors import WorkloadError
from pytest_basht.registry import Registry
from pytest_basht.workload import Workload


@dataclass(frozen=True)
class Suggestion:
    """A configuration to train up to ``fidelity`` epochs; ``id`` is its trial number."""

    id: int
    config: dict[str, Any]
    fidelity: int


@dataclass(frozen=True)
class Outcome:
    """How an evaluation ended: ``complete``, ``pruned`` (stopped by ``report``) or
    ``failed``; its last value (None when it failed); the epochs it reached; its time; its
    costs when the workload needs them (``objectives.TrialCost``: time_s, energy_j, co2_g,
    cost_usd; a multi-objective optimizer is told the goal's among them)."""

    state: str
    value: float | None
    epochs: int
    time_s: float
    costs: dict[str, float] = field(default_factory=dict)


class Optimizer(ABC):
    """One library's optimizer, driven by ask and tell."""

    #: the distribution whose version the report names (``importlib.metadata``)
    library: ClassVar[str]
    #: the module that must import, and the extra of pytest-basht that installs it
    module: ClassVar[str]
    extra: ClassVar[str]
    #: search.pruner values it takes, and what it makes of each (its own scheme)
    schemes: ClassVar[dict[str, str]]
    #: its search.sampler_options, documented
    options: ClassVar[dict[str, str]] = {}
    #: whether ``report`` can stop a trial (the SUT then waits for it after each epoch)
    judges_epochs: bool = False
    #: whether it takes several objectives (``goal.objectives``: the trial's costs are
    #: told with its value) and constraints on the costs (``goal.constraints``)
    multi_objective: ClassVar[bool] = False
    constraints: ClassVar[bool] = False

    def __init__(self, workload: Workload, seed: int, work_dir: Path,
                 registry: Registry) -> None:
        self.workload = workload
        self.seed = seed
        self.work_dir = work_dir
        self.registry = registry
        self.minimize = workload.goal.direction == "minimize"
        self.max_epochs = workload.training.epochs

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        """Refuse, as a usage error naming the key, a workload this optimizer cannot run:
        its library missing (naming the extra to install), a scheme or option it lacks."""
        if importlib.util.find_spec(cls.module) is None:
            raise WorkloadError(workload.source, "search.sampler",
                                f"an installed optimizer: {workload.search.sampler} needs "
                                f"{cls.library} (pip install 'pytest-basht[{cls.extra}]')",
                                workload.search.sampler)
        goal = workload.goal
        if goal.multi and not cls.multi_objective:
            raise WorkloadError(workload.source, "goal.objectives",
                                f"none with {workload.search.sampler}, which optimizes one "
                                "objective (several: optuna, smac)", dict(goal.objectives))
        if goal.constraints and not cls.constraints:
            raise WorkloadError(workload.source, "goal.constraints",
                                f"none with {workload.search.sampler} (constraints: optuna "
                                "with a sampler that takes them)", dict(goal.constraints))
        pruner = workload.search.pruner
        if pruner not in cls.schemes:
            raise WorkloadError(workload.source, "search.pruner",
                                f"a multi-fidelity scheme of {workload.search.sampler}: "
                                + ", ".join(cls.schemes), pruner)
        for key in workload.search.sampler_options:
            if key not in cls.options:
                close = difflib.get_close_matches(key, list(cls.options), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise WorkloadError(workload.source, f"search.sampler_options.{key}",
                                    f"an option of {workload.search.sampler}{hint}: "
                                    + (", ".join(cls.options) or "none"))

    def option(self, key: str, default: Any) -> Any:
        return self.workload.search.sampler_options.get(key, default)

    def loss(self, value: float | None) -> float:
        """What a minimizing library is told: the value, negated when the goal maximizes;
        infinite for a failed trial."""
        if value is None or not math.isfinite(value):
            return math.inf
        return value if self.minimize else -value

    def losses(self, outcome: Outcome) -> list[float]:
        """A minimizing library's objectives: the loss, then each cost of the goal, negated
        where it is maximized (infinite for a failed trial)."""
        out = [self.loss(outcome.value)]
        for name, direction in self.workload.goal.objectives.items():
            cost = outcome.costs.get(name)
            out.append(math.inf if cost is None or outcome.state == "failed"
                       else cost if direction == "minimize" else -cost)
        return out

    @abstractmethod
    def ask(self) -> Suggestion | None:
        """The next evaluation; None: the optimizer has nothing more to try."""

    @abstractmethod
    def tell(self, id: int, outcome: Outcome) -> None:
        """The result of evaluation ``id``."""

    def report(self, id: int, epoch: int, value: float) -> bool:
        """Evaluation ``id`` reported ``value`` after ``epoch``: whether it goes on."""
        return True

    def settings(self) -> dict[str, Any]:
        """What the report shows of how the library was set up."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The optimizer as the report names it: library and version, scheme, settings."""
        try:
            version = importlib.metadata.version(self.library)
        except importlib.metadata.PackageNotFoundError:
            version = None
        return {"name": self.workload.search.sampler, "library": self.library,
                "version": version, "scheme": self.workload.search.pruner,
                "scheme_means": self.schemes.get(self.workload.search.pruner),
                "settings": self.settings()}


def epochs_of(fidelity: float, max_epochs: int) -> int:
    """A library's fidelity (a budget, possibly fractional) as whole epochs, 1 … max."""
    return min(max_epochs, max(1, round(fidelity)))


def ladder(workload: Workload) -> tuple[int, int]:
    """The options every multi-fidelity adapter shares: ``eta`` (the reduction factor, an
    integer ≥ 2, default 3) and ``min_epochs`` (the lowest fidelity, default 1, below
    ``training.epochs``), checked."""
    opts = workload.search.sampler_options
    eta = opts.get("eta", 3)
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise WorkloadError(workload.source, "search.sampler_options.eta",
                            "an integer ≥ 2 (the reduction factor)", eta)
    epochs = workload.training.epochs
    low = opts.get("min_epochs", 1)
    if isinstance(low, bool) or not isinstance(low, int) or not 1 <= low < epochs:
        raise WorkloadError(workload.source, "search.sampler_options.min_epochs",
                            f"an integer from 1 to {epochs - 1} (below training.epochs: a "
                            "multi-fidelity scheme needs two fidelities at least)", low)
    return eta, low


LADDER_OPTIONS = {
    "eta": "the reduction factor between fidelities (integer ≥ 2, default 3)",
    "min_epochs": "the lowest fidelity in epochs (default 1, below training.epochs)",
}

"""Budgets: how much of each workload a run does (``--basht-budget``, ini ``basht_budget``).

``full`` runs the workload files as written. ``smoke`` shrinks what is cheap to shrink and
keeps what the experiments compare: at most 3 epochs, an explicit trial budget
(``search.trials``) of at most 12, and sweeps of at most 3 steps. A grid without an explicit
budget keeps its size, so a grid scenario still tries every point; a value a scenario
varies is never shrunk. Figures from a smoke run are not comparable with a full run's; the
report names the budget.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pytest_basht.workload import Workload


@dataclass(frozen=True)
class Budget:
    name: str
    max_epochs: int | None = None
    max_trials: int | None = None
    max_sweep_steps: int | None = None

    def overrides(self, workload: Workload, varied: Iterable[str] = ()) -> dict[str, Any]:
        """Dotted-path overrides that shrink ``workload`` to this budget."""
        fixed = list(varied)
        out: dict[str, Any] = {}
        epochs = workload.training.epochs
        if (self.max_epochs is not None and epochs > self.max_epochs
                and not _touches("training.epochs", fixed)):
            out["training.epochs"] = self.max_epochs
        trials = workload.search.trials
        if (self.max_trials is not None and trials is not None and trials > self.max_trials
                and not _touches("search.trials", fixed)):
            out["search.trials"] = self.max_trials
        return out

    def describe(self) -> str:
        if self.name == "full":
            return "budget full: workloads as written"
        return (f"budget {self.name}: epochs ≤ {self.max_epochs}, explicit trial budgets ≤ "
                f"{self.max_trials}, sweeps ≤ {self.max_sweep_steps} steps; figures are not "
                "comparable with a full run's")


def _touches(path: str, varied: list[str]) -> bool:
    """Whether a varied path sets ``path`` (itself, a section holding it, or a key inside)."""
    return any(path == v or path.startswith(v + ".") or v.startswith(path + ".")
               for v in varied)


BUDGETS: dict[str, Budget] = {
    "full": Budget("full"),
    "smoke": Budget("smoke", max_epochs=3, max_trials=12, max_sweep_steps=3),
}
NAMES = tuple(BUDGETS)


def get(name: str) -> Budget:
    return BUDGETS[name]

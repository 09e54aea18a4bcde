"""A trainable that trains nothing, and the same objective for plain Optuna.

``scaling.py`` runs it through the ``optuna`` SUT and through a plain Optuna script side
by side: whatever the ``optuna`` SUT spends beyond plain Optuna is then the harness's own
cost per trial (messages, spans, records, attribution, the progress line). One epoch: an
empty train phase, a validate phase that computes the value, one report to the pruner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_basht.trainables.base import DataInfo, Trainable, TrialContext
from pytest_basht.workload import Workload


def value_of(x: float) -> float:
    return (x - 0.3) ** 2


class NoOp(Trainable):
    name = "noop"

    @classmethod
    def prepare(cls, workload: Workload, data_dir: Path) -> DataInfo:
        return DataInfo(str(data_dir), 0, 0, 0, 0)

    def setup(self, workload: Workload, data: DataInfo, device: str) -> None:
        self.workload = workload

    def run_trial(self, ctx: TrialContext) -> float:
        with ctx.phase("trial.train", epoch=0):
            pass
        with ctx.phase("trial.validate", epoch=0):
            value = value_of(float(ctx.params["x"]))
        ctx.report(0, value)
        return value

    def test(self, artifact: Path) -> float:
        return 0.0


def plain_objective(trial: Any) -> float:
    """The same trial for plain Optuna: suggest, compute, report once, ask the pruner."""
    import optuna

    value = value_of(trial.suggest_float("x", 0.0, 1.0))
    trial.report(value, 0)
    if trial.should_prune():
        raise optuna.TrialPruned()
    return value

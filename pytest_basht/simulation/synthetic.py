"""``mf-branin``: a multi-fidelity benchmark with a runtime model, for tests and for users
without a recorded table (the kind of function mfhpo-simulator's paper validates on).

The objective is Branin's function with fidelity z ∈ (0, 1] (Kandasamy et al., 2017,
"Multi-fidelity Bayesian optimisation with continuous approximations"): with
b(z) = 5.1/(4π²) − 0.01(1 − z), c(z) = 5/π − 0.1(1 − z), t(z) = 1/(8π) + 0.005(1 − z),

    f(x, z) = (x1 − b(z)·x0² + c(z)·x0 − 6)² + 10·(1 − t(z))·cos(x0) + 10,

x0 ∈ [−5, 10], x1 ∈ [0, 15]; at z = 1 it is Branin (minimum ≈ 0.397887). Epoch k of E
evaluates z = (k + 1)/E. The runtime model is that paper's cost, 0.05 + 0.95·z^1.5 of a
full trial, scaled by ``model.params.runtime_s`` and by 0.5 + (x0 + 5)/15 so that
configurations differ in cost (larger x0: a "bigger model"). Energy is modelled as the
worker's vCPUs fully busy under the workload's estimate coefficients.

Run by the ``optuna`` SUT it really sleeps each epoch's modelled time; run by the
``simulated`` SUT it costs nothing (``zero_cost``), with the same values and times.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest_basht.reading as reading
from pytest_basht.errors import WorkloadError
from pytest_basht.simulation.curve import Curve
from pytest_basht.trainables.base import DataInfo, Trainable, TrialContext
from pytest_basht.workload import Workload

DOMAIN = {"x0": (-5.0, 10.0), "x1": (0.0, 15.0)}
RUNTIME_S = 60.0
OPTIMUM = 0.397887
ARTIFACT_BYTES = 4096  # the two coordinates a trial saves


def branin(x0: float, x1: float, z: float = 1.0) -> float:
    """Branin's function at fidelity ``z`` (1: the true function)."""
    b = 5.1 / (4 * math.pi**2) - 0.01 * (1 - z)
    c = 5 / math.pi - 0.1 * (1 - z)
    t = 1 / (8 * math.pi) + 0.005 * (1 - z)
    return (x1 - b * x0**2 + c * x0 - 6) ** 2 + 10 * (1 - t) * math.cos(x0) + 10


def cumulative_runtime_s(x0: float, z: float, runtime_s: float) -> float:
    """Seconds to train up to fidelity ``z`` (the cost model)."""
    size = 0.5 + (x0 - DOMAIN["x0"][0]) / (DOMAIN["x0"][1] - DOMAIN["x0"][0])
    return runtime_s * size * (0.05 + 0.95 * z**1.5)


def epoch_times_ns(x0: float, epochs: int, runtime_s: float) -> list[int]:
    done = [round(cumulative_runtime_s(x0, (k + 1) / epochs, runtime_s) * 1e9)
            for k in range(epochs)]
    return [done[0]] + [done[k] - done[k - 1] for k in range(1, epochs)]


def _runtime_s(workload: Workload) -> float:
    return float(workload.model.params.get("runtime_s", RUNTIME_S))


class MFBranin(Trainable):
    name = "mf-branin"
    resumable = True  # its state is how far it got: a continuation sleeps the new epochs

    @classmethod
    def check(cls, workload: Workload) -> None:
        src = workload.source
        names = {d.name for d in workload.search.space}
        if names != set(DOMAIN):
            raise WorkloadError(src, "search.space", "the hyperparameters of mf-branin: x0 "
                                "in [-5, 10] and x1 in [0, 15]", ", ".join(sorted(names)))
        for dim in workload.search.space:
            lo, hi = DOMAIN[dim.name]
            values = list(dim.choices) if dim.choices is not None else [dim.low, dim.high]
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                    raise WorkloadError(src, f"search.space.{dim.name}",
                                        f"numbers within [{lo:g}, {hi:g}]", v)
        for key, value in workload.model.params.items():
            if key != "runtime_s":
                raise WorkloadError(src, f"model.params.{key}", "runtime_s (the only "
                                    "parameter of mf-branin)")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise WorkloadError(src, "model.params.runtime_s", "seconds > 0", value)
        if workload.goal.direction != "minimize":
            raise WorkloadError(src, "goal.direction", "'minimize' (Branin is minimized)",
                                workload.goal.direction)

    @classmethod
    def zero_cost(cls, workload: Workload, params: dict[str, Any]) -> Curve:
        """The trial's curve without running it: values, modelled times and energies."""
        x0, x1 = float(params["x0"]), float(params["x1"])
        epochs = workload.training.epochs
        times = epoch_times_ns(x0, epochs, _runtime_s(workload))
        w, est = workload.workers, workload.energy.estimate
        busy_w = w.cpu * est.cpu_max_w + w.memory_mb / 1024 * est.memory_w_per_gb
        return Curve(tuple(branin(x0, x1, (k + 1) / epochs) for k in range(epochs)),
                     tuple(times), tuple(busy_w * t / 1e9 for t in times),
                     tuple(w.cpu * t / 1e9 for t in times), (0,) * epochs, "complete", None,
                     "benchmark", branin(x0, x1))

    @classmethod
    def prepare(cls, workload: Workload, data_dir: Path) -> DataInfo:
        return DataInfo(str(data_dir), 0, 0, 0, 0)

    def setup(self, workload: Workload, data: DataInfo, device: str) -> None:
        self.workload = workload

    def run_trial(self, ctx: TrialContext) -> float:
        x0, x1 = float(ctx.params["x0"]), float(ctx.params["x1"])
        epochs = self.workload.training.epochs
        times = epoch_times_ns(x0, epochs, _runtime_s(self.workload))
        value = math.nan
        for k in ctx.epoch_range():
            with ctx.phase("trial.train", epoch=k):
                time.sleep(times[k] / 1e9)
            with ctx.phase("trial.validate", epoch=k):
                value = branin(x0, x1, (k + 1) / epochs)
            ctx.report(k, value)
        Path(ctx.artifact).write_text(json.dumps({"x0": x0, "x1": x1}))
        if ctx.checkpoint is not None:
            Path(ctx.checkpoint).write_text(json.dumps({"epochs": ctx.epoch_range().stop}))
        return value

    def test(self, artifact: Path) -> float:
        params = json.loads(reading.read_text(artifact, ARTIFACT_BYTES))
        return branin(params["x0"], params["x1"])

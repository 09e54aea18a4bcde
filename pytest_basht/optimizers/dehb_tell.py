"""DEHB (``pip install 'pytest-basht[dehb]'``) through the ask-and-tell protocol.

DEHB is differential evolution inside Hyperband's brackets (``search.pruner:
hyperband``), fidelities from ``min_epochs`` to ``training.epochs`` in steps of ``eta``;
in its first brackets it promotes configurations to higher fidelities, which the SUT
resumes. DEHB minimizes: a maximized goal is told negated, a failed trial as infinitely
bad. It runs in this process (``n_workers=1``: no Dask cluster — the SUT's workers
evaluate), and its log sink, which it adds on every construction, is removed again.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pytest_basht.errors import WorkloadError
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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """DEHB 0.1.1 calls ConfigSpace's old names, which warn on every ask and tell."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


#: DEHB's mutation strategies (``dehb.optimizers.de``) with its two crossovers
STRATEGIES = tuple(f"{m}_{c}" for m in ("rand1", "rand2", "rand2dir", "best1", "best2",
                                         "currenttobest1", "randtobest1") for c in ("bin", "exp"))


class DehbOptimizer(Optimizer):
    library = "dehb"
    module = "dehb"
    extra = "dehb"
    schemes: ClassVar[dict[str, str]] = {
        "hyperband": "DEHB: differential evolution in Hyperband brackets"}
    options: ClassVar[dict[str, str]] = {
        **LADDER_OPTIONS,
        "mutation_factor": "DE's mutation factor (default 0.5)",
        "crossover_prob": "DE's crossover probability (default 0.5)",
        "strategy": "DE's mutation and crossover strategy (default rand1_bin)"}

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        super().check(workload, registry)
        ladder(workload)
        opts = workload.search.sampler_options
        for key, ok, expected in (
                ("mutation_factor", lambda v: 0 < v <= 2, "a number in (0, 2]"),
                ("crossover_prob", lambda v: 0 <= v <= 1, "a number in [0, 1]")):
            value = opts.get(key, 0.5)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise WorkloadError(workload.source, f"search.sampler_options.{key}", expected,
                                    value)
        strategy = opts.get("strategy", "rand1_bin")
        if strategy not in STRATEGIES:
            raise WorkloadError(workload.source, "search.sampler_options.strategy",
                                "one of " + ", ".join(STRATEGIES), strategy)

    def __init__(self, workload: Workload, seed: int, work_dir: Path,
                 registry: Registry) -> None:
        from dehb import DEHB
        from loguru import logger

        super().__init__(workload, seed, work_dir, registry)
        self.codings = coded(workload.search.space)
        self.eta, self.min_epochs = ladder(workload)
        logger.disable("dehb")  # it logs every ask and tell at INFO to stdout
        # loguru numbers its sinks in order: DEHB's own is the one after this probe's
        probe = logger.add(lambda _: None)
        logger.remove(probe)
        with quiet():
            self.dehb = DEHB(cs=configspace(self.codings, seed), dimensions=len(self.codings),
                             min_fidelity=self.min_epochs, max_fidelity=self.max_epochs,
                             eta=self.eta, n_workers=1, seed=seed, save_freq=None,
                             output_path=str(work_dir / "dehb"),
                             mutation_factor=self.option("mutation_factor", 0.5),
                             crossover_prob=self.option("crossover_prob", 0.5),
                             strategy=self.option("strategy", "rand1_bin"))
        logger.remove(probe + 1)
        self.jobs: dict[int, dict[str, Any]] = {}
        self.asked = 0

    def ask(self) -> Suggestion:
        with quiet():
            job = self.dehb.ask()
        n = self.asked
        self.asked += 1
        self.jobs[n] = job
        return Suggestion(n, decode(self.codings, dict(job["config"])),
                          epochs_of(job["fidelity"], self.max_epochs))

    def tell(self, id: int, outcome: Outcome) -> None:
        with quiet():
            self.dehb.tell(self.jobs.pop(id), {"fitness": self.loss(outcome.value),
                                               "cost": outcome.time_s})

    def settings(self) -> dict[str, Any]:
        return {"eta": self.eta, "min_epochs": self.min_epochs,
                "max_epochs": self.max_epochs,
                "fidelities": [float(f) for f in self.dehb.fidelities],
                "mutation_factor": self.dehb.mutation_factor,
                "crossover_prob": self.dehb.crossover_prob, "strategy": self.dehb.strategy}

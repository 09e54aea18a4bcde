"""The ``optuna`` SUT: wn local worker processes sharing one study.

Deploy starts the workers (``sut.pool``: each pinned to its cores, its thread count set
before torch is imported) and has them import the trainable; setup creates the study in a
``JournalStorage(JournalFileBackend)`` in the work directory, prepares the data once and
has every worker load it; run lets every worker optimize the shared study with the same
sampler seed, the pool's watchdog failing a trial past wmem or ``trial_timeout_s``.

The same SUT over a database, with workers on other hosts, is ``sut.distributed``; the
pieces both build a scenario from are here (``setup_request``, ``run_request``,
``model_to_test``, ``scenario_metrics``). Plugins extend both through their hooks: the
model the test phase evaluates (``pytest_basht_sut_test_model``; Hydro's retrained
surrogate) and the scenario's metrics (``pytest_basht_sut_metrics``; Hydro's figures).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import optuna

import pytest_basht.objectives as objectives
from pytest_basht.energy.base import Allocation
from pytest_basht.records import TrialRecord
from pytest_basht.registry import Registry, ref_of
from pytest_basht.search import trial_cap
from pytest_basht.spend import limits_of
from pytest_basht.sut import group, protocol, study_budget
from pytest_basht.sut.base import SUT, Progress, SutContext, TestModel, refuse_optimizer
from pytest_basht.sut.limits import CpuPlan, check_local_workers, memory_cap_bytes, plan_cpus
from pytest_basht.sut.optuna_options import StoreOptions
from pytest_basht.sut.pool import WorkerPool
from pytest_basht.trainables.base import DataInfo
from pytest_basht.workload import WorkersSpec, Workload


def allocation_of(plan: CpuPlan, w: WorkersSpec, slots: int) -> Allocation:
    """What ``slots`` local worker slots hold: their cores, and memory up to the host's."""
    import psutil

    memory_gb = min(slots * w.memory_mb / 1024, psutil.virtual_memory().total / 2**30)
    return Allocation(vcpus=plan.vcpus, memory_gb=memory_gb, slots=slots)


def setup_request(trainable: Any, workload: Workload, data: DataInfo) -> protocol.Setup:
    device = "cuda" if workload.workers.accelerator == "gpu" else "cpu"
    return protocol.Setup(workload, ref_of(trainable), data, device)


def run_request(registry: Registry, workload: Workload, study: str, artifacts: Path,
                started_s: float, **where: Any) -> protocol.Run:
    """A run of ``study`` with the workload's sampler and pruner, its budget counted from
    ``started_s`` (wall clock); ``where`` says where the study lives (``journal``, or
    ``storage`` and ``heartbeat``)."""
    return protocol.Run(study=study,
                        sampler=ref_of(registry.get("samplers", workload.search.sampler)),
                        pruner=ref_of(registry.get("pruners", workload.search.pruner)),
                        seed=workload.seed, cap=trial_cap(workload), artifacts=str(artifacts),
                        limits=limits_of(workload), started_s=started_s, **where)


def study_record(study: optuna.Study | None, workload: Workload | None,
                 window: tuple[float, float] | None) -> dict[str, Any] | None:
    """What stopped the study (a budget limit, the trial budget, or the sampler: a grid
    done), and its spend against its budget; ``window``: the run's start and end, wall
    clock."""
    if study is None or workload is None or window is None:
        return None
    by = study_budget.stopped_by(study)
    if by is None:
        cap = trial_cap(workload)
        finished = [t for t in study.get_trials(deepcopy=False)
                    if not t.user_attrs.get(study_budget.DISCARDED)]
        by = "search.trials" if cap is not None and len(finished) >= cap else "sampler"
    ledger = study_budget.ledger(study, limits_of(workload), window[0])
    return {"stopped_by": by, "budget": ledger.summary(window[1])}


def best_number(study: optuna.Study, workload: Workload,
                trials: list[TrialRecord]) -> int | None:
    """The study's best trial; with several objectives or constraints, the pick among
    the trials' records (``objectives.best_of``: what the study was told)."""
    if workload.goal.multi or workload.goal.constraints:
        return objectives.best_of(workload.goal, trials)
    try:
        return study.best_trial.number
    except ValueError:
        return None


def model_to_test(registry: Registry, pool: WorkerPool, workload: Workload | None,
                  trials: list[TrialRecord], artifacts: Path) -> TestModel | None:
    """The model a plugin supplies for the test phase (``pytest_basht_sut_test_model``),
    or None: the best trial's is tested."""
    if registry.hook is None or workload is None:
        return None
    return registry.hook.pytest_basht_sut_test_model(workload=workload, trials=trials,
                                                     pool=pool, artifacts=artifacts)


def scenario_metrics(registry: Registry, pool: WorkerPool, deployed_for: Workload,
                     workload: Workload | None, data: DataInfo | None,
                     trials: list[TrialRecord], tested: TestModel | None,
                     study: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the SUT knows of a scenario that the records don't: limits, data, kills, what
    stopped the study, and what plugins add (``pytest_basht_sut_metrics``)."""
    info = {
        **({"study": study} if study is not None else {}),
        **({"told": objectives.TOLD_MODEL}
           if workload is not None and objectives.needed(workload) else {}),
        "limits": pool.limits(deployed_for.workers),
        "data": data.to_dict() if data else None,
        "kills": list(pool.kills),
        "respawns": pool.respawns,
        "over_budget_discarded": pool.discarded,
        "trial_timeout_s": workload.trial_timeout_s if workload else None,
    }
    if registry.hook is not None and workload is not None:
        for more in registry.hook.pytest_basht_sut_metrics(workload=workload, trials=trials,
                                                           pool=pool, tested=tested):
            info.update(more)
    return info


class OptunaSUT(SUT):
    name = "optuna"

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        StoreOptions.parse(workload)
        refuse_optimizer(workload, registry, "optuna")
        check_local_workers(workload.workers.count, workload.source)

    def __init__(self, workload: Workload, ctx: SutContext) -> None:
        super().__init__(workload, ctx)
        w = workload.workers
        self.pool = WorkerPool(ctx.work_dir, plan_cpus(w.count, w.cpu),
                               memory_cap_bytes(w.memory_mb))
        self.workload: Workload | None = None
        self.study: optuna.Study | None = None
        self.data: DataInfo | None = None
        self.setups = 0
        self.tested: TestModel | None = None  # a plugin's model for the test phase
        self.journal = ctx.work_dir / "journal.log"
        self.artifacts = ctx.work_dir / "models"
        self.window: tuple[float, float] | None = None

    # ------------------------------------------------------------------ deployment

    def allocation(self) -> Allocation:
        w = self.deployed_for.workers
        return allocation_of(self.pool.plan, w, w.count)

    def deploy(self) -> None:
        self.ctx.work_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(exist_ok=True)
        trainable = self.ctx.registry.get("trainables", self.deployed_for.model.name)
        self.pool.deploy(self.deployed_for.workers.count, ref_of(trainable))

    def undeploy(self) -> None:
        self.pool.stop()
        shutil.rmtree(self.ctx.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------ setup and run

    def setup(self, workload: Workload) -> None:
        trainable = self.ctx.registry.get("trainables", workload.model.name)
        group.check(trainable, workload)
        self.workload = workload
        self.pool.begin(workload)
        self.tested = None
        self.setups += 1
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(self.journal)))
        self.study = optuna.create_study(study_name=f"{workload.name}-{self.setups}",
                                         storage=storage,
                                         **objectives.study_direction(workload.goal))
        self.data = trainable.prepare(workload, self.ctx.work_dir)
        self.pool.setup(self.study, setup_request(trainable, workload, self.data))
        self.pool.await_ready()

    def run(self) -> list[TrialRecord]:
        assert self.workload is not None and self.study is not None
        started = time.time()
        self.window = (started, started)
        self.pool.start_run(run_request(self.ctx.registry, self.workload,
                                        self.study.study_name, self.artifacts, started,
                                        journal=str(self.journal)))
        progress = Progress(expected=self.workload.trial_budget)
        halt = study_budget.Halt(self.study, self.workload)
        try:
            with self.pool.interruptible(progress):
                while self.pool.busy():
                    self.pool.step(progress)
                    halt.check(self.pool, progress)
                    if self.ctx.progress is not None:
                        self.ctx.progress(progress)
        finally:
            self.window = (started, time.time())
        return self.trials_so_far()

    # ------------------------------------------------------------------ results

    def trials_so_far(self) -> list[TrialRecord]:
        return self.pool.trials()

    def collect_results(self) -> int | None:
        assert self.study is not None and self.workload is not None
        return best_number(self.study, self.workload, self.trials_so_far())

    def test(self, best: TrialRecord) -> float | None:
        artifact: Path | None = self.artifacts / f"trial-{best.number}.pt"
        self.tested = model_to_test(self.ctx.registry, self.pool, self.workload,
                                    self.trials_so_far(), self.artifacts)
        if self.tested is not None:
            artifact = self.tested.artifact
        if artifact is None or not artifact.exists():
            return None
        return self.pool.test(artifact)

    def collect_metrics(self) -> dict[str, Any]:
        return scenario_metrics(self.ctx.registry, self.pool, self.deployed_for,
                                self.workload, self.data, self.trials_so_far(), self.tested,
                                study_record(self.study, self.workload, self.window))

"""The ``optuna`` SUT across machines: the study in a database, workers on any host.

``sut: {name: optuna, options: {storage: "postgresql+psycopg://basht@db/basht"}}`` (any
SQLAlchemy URL) keeps the study in Optuna's ``RDBStorage`` with its heartbeat on. Of the
wn worker slots, ``local_workers`` (default: all) are worker processes this controller
starts, as the journal variant does (``sut.pool``); the others are filled by ``basht
worker --storage URL --study NAME``, run on any host (``pytest_basht.sut.remote``), and
the controller's side of them is ``sut.remote_slots``.

* deploy creates the schema (Optuna's and the deployment's tables, ``sut.store``) and the
  deployment's row, starts the local workers and waits until every remote slot is taken;
* setup creates the scenario's study, announces it, and waits until every worker has set
  up (each host prepares its own copy of the data);
* run lets every worker optimize the shared study. Remote workers record their spans,
  trials and energy (their own meters) in the store; the controller collects them, fails
  the trials of silent workers through Optuna's heartbeat (``retries`` re-queues them) and
  frees their slots for replacements, and ends the run when the study is done;
* test loads the best model through the deployment's artifact store;
* undeploy closes the deployment, waits for the workers to leave, and deletes its studies
  and rows.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import optuna

import pytest_basht.objectives as objectives
from pytest_basht.energy.base import Allocation
from pytest_basht.energy.self_meter import wall_offset_ns
from pytest_basht.records import TrialRecord
from pytest_basht.registry import Registry, ref_of
from pytest_basht.search import trial_cap
from pytest_basht.sut import group, study_budget
from pytest_basht.sut.base import SUT, Progress, SutContext, TestModel, refuse_optimizer
from pytest_basht.sut.fleet import FleetMeter
from pytest_basht.sut.limits import check_local_workers, memory_cap_bytes, plan_cpus
from pytest_basht.sut.optuna import (
    allocation_of,
    best_number,
    model_to_test,
    run_request,
    scenario_metrics,
    setup_request,
    study_record,
)
from pytest_basht.sut.optuna_options import StoreOptions
from pytest_basht.sut.pool import WorkerPool
from pytest_basht.sut.remote_slots import RemoteSlots
from pytest_basht.trainables.base import DataInfo
from pytest_basht.workload import Workload


class DistributedOptunaSUT(SUT):
    name = "optuna"

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        check_local_workers(StoreOptions.parse(workload).local_workers, workload.source,
                            "sut.options.local_workers")
        refuse_optimizer(workload, registry, "optuna")

    def __init__(self, workload: Workload, ctx: SutContext) -> None:
        super().__init__(workload, ctx)
        self.opts = StoreOptions.parse(workload)
        w = workload.workers
        self.local = self.opts.local_workers
        self.pool = WorkerPool(ctx.work_dir, plan_cpus(max(1, self.local), w.cpu),
                               memory_cap_bytes(w.memory_mb))
        offset = ctx.monitor.wall_offset_ns if ctx.monitor is not None else wall_offset_ns()
        self.remote = RemoteSlots(self.opts, w.count - self.local, offset)
        self.meter: FleetMeter | None = None
        self.workload: Workload | None = None
        self.study: optuna.Study | None = None
        self.data: DataInfo | None = None
        self.setups = 0
        self.tested: TestModel | None = None  # a plugin's model for the test phase
        self.artifacts = ctx.work_dir / "models"
        self.window: tuple[float, float] | None = None

    # ------------------------------------------------------------------ slots and meter

    def allocation(self) -> Allocation:
        """What this host holds: the local workers' cores and memory (remote slots are
        metered on their hosts)."""
        if self.local == 0:
            return Allocation(vcpus=0, memory_gb=0.0, slots=0)
        return allocation_of(self.pool.plan, self.deployed_for.workers, self.local)

    def own_meter(self) -> FleetMeter | None:
        if self.remote.count == 0 or self.ctx.monitor is None:
            return None  # every slot is under the live meter: the runner's usual path
        if self.meter is None:
            self.meter = FleetMeter(self.ctx.monitor, self.deployed_for,
                                    local_slots=self.local, remote_slots=self.remote.count,
                                    refresh=self._pull_energy)
        return self.meter

    def _pull_energy(self) -> None:
        self.remote.pull_energy(self.meter)

    # ------------------------------------------------------------------ deploy

    def deploy(self) -> None:
        """The schema, the deployment's row, the local workers; then every remote slot."""
        self.remote.open(self.deployed_for, self.local)
        self.ctx.work_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(exist_ok=True)
        trainable = self.ctx.registry.get("trainables", self.deployed_for.model.name)
        self.pool.deploy(self.local, ref_of(trainable))
        self.remote.await_joined()

    # ------------------------------------------------------------------ setup

    def setup(self, workload: Workload) -> None:
        """The local workers set up while the remote ones are told to; then all are waited
        for."""
        trainable = self.ctx.registry.get("trainables", workload.model.name)
        group.check(trainable, workload)
        self.workload = workload
        self.pool.begin(workload)
        self.remote.begin()
        self.tested = None
        self.setups += 1
        self.study = optuna.create_study(study_name=self.remote.new_study(self.setups),
                                         storage=self.remote.storage(),
                                         **objectives.study_direction(workload.goal))
        self.data = trainable.prepare(workload, self.ctx.work_dir)
        self.pool.setup(self.study, setup_request(trainable, workload, self.data))
        self.remote.announce(self.setups, self.study.study_name, workload)
        self.pool.await_ready()
        self.remote.await_ready()

    # ------------------------------------------------------------------ run

    def run(self) -> list[TrialRecord]:
        assert self.workload is not None and self.study is not None
        started = time.time()
        self.window = (started, started)
        self.remote.start_run(started)
        try:
            self.pool.start_run(run_request(
                self.ctx.registry, self.workload, self.study.study_name, self.artifacts,
                started, storage=self.remote.url, heartbeat=self.opts.heartbeat))
            progress = Progress(expected=self.workload.trial_budget)
            halt = study_budget.Halt(self.study, self.workload)
            with self.pool.interruptible(progress):
                while self.pool.busy() or not self.remote.done:
                    self.pool.step(progress)
                    halt.check(self.pool, progress)
                    self._poll(progress)
                    if self.ctx.progress is not None:
                        self.ctx.progress(progress)
            return self.trials_so_far()
        finally:
            self.window = (started, time.time())
            self.remote.end_run()

    def _poll(self, progress: Progress) -> None:
        """Once per ``POLL_S`` of the run: what the remote workers have done, and whether
        the study is done."""
        if not self.remote.due():
            return
        assert self.study is not None
        trials = self.remote.poll(self.study)
        self._collect(trials, progress)
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            self.pool.restart_idle()  # a lost worker's trial, re-queued: idle workers take it
        if not self.pool.busy() and self._study_done(trials):
            self.remote.close_run()
            self._collect(self.study.get_trials(deepcopy=False), None)
            return
        self.remote.check_alone(self.pool.busy())

    def _collect(self, trials: list[optuna.trial.FrozenTrial],
                 progress: Progress | None) -> None:
        assert self.workload is not None
        self.remote.collect(trials, self.workload, progress)
        if self.meter is not None:
            self.meter.remote_trials.update(self.remote.records)

    def _study_done(self, trials: list[optuna.trial.FrozenTrial]) -> bool:
        """No trial running or waiting, and the sampler's work (the grid, or the trial
        budget) all done."""
        assert self.workload is not None
        active = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
        if any(t.state in active for t in trials):
            return False
        if study_budget.stopped_by(self.study) is not None:
            return True  # the workload's budget closed it
        cap = trial_cap(self.workload)
        if cap is not None:
            return len([t for t in trials if t.number < cap]) >= cap
        factory = self.ctx.registry.get("samplers", self.workload.search.sampler)
        sampler = factory(self.workload, self.workload.seed)
        if isinstance(sampler, optuna.samplers.GridSampler):
            return sampler.is_exhausted(self.study)
        return True

    # ------------------------------------------------------------------ results

    def trials_so_far(self) -> list[TrialRecord]:
        records = {**self.pool.records, **self.remote.records}
        return [records[n] for n in sorted(records)]

    def collect_results(self) -> int | None:
        assert self.study is not None and self.workload is not None
        return best_number(self.study, self.workload, self.trials_so_far())

    def test(self, best: TrialRecord) -> float | None:
        """The best model, trained here or (from the artifact store) elsewhere, tested on
        a local worker (one started for the test when every slot is remote)."""
        assert self.study is not None
        local = self.artifacts / f"trial-{best.number}.pt"
        artifact = (local if local.exists()
                    else self.remote.download(self.study, best.number, self.artifacts))
        self.tested = model_to_test(self.ctx.registry, self.pool, self.workload,
                                    self.trials_so_far(), self.artifacts)
        if self.tested is not None:
            artifact = self.tested.artifact
        if artifact is None or not artifact.exists():
            return None
        return self.pool.test(artifact)

    def collect_metrics(self) -> dict[str, Any]:
        info = scenario_metrics(self.ctx.registry, self.pool, self.deployed_for,
                                self.workload, self.data, self.trials_so_far(), self.tested,
                                study_record(self.study, self.workload, self.window))
        distributed, rows = self.remote.describe(
            self.study.study_name if self.study is not None else "", self.local)
        self.remote.amend_limits(info["limits"], rows, self.deployed_for.workers, self.local)
        info["distributed"] = distributed
        return info

    # ------------------------------------------------------------------ undeploy

    def undeploy(self) -> None:
        """Close the deployment, stop the local workers, let the remote ones leave (their
        last energy comes with them), then delete the studies and the deployment's rows."""
        self.remote.close()
        try:
            self.pool.stop()
            shutil.rmtree(self.ctx.work_dir, ignore_errors=True)
        finally:
            self.remote.remove(self.meter)

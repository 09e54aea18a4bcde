"""The ``asktell`` SUT: any HPO library, asked and told by the controller, its trials
trained by the local worker pool.

``sut: {name: asktell}`` with ``search.sampler`` naming an ask-and-tell optimizer
(``optimizers``: SMAC3, DEHB, Syne Tune, Optuna, or one a plugin registers) runs the
optimizer in this process, over the same worker processes, lifecycle, spans and energy
accounting as the ``optuna`` SUT: deploy starts wn workers (``sut.pool``: pinned, capped,
watched); setup builds the optimizer and has every worker load the data; run hands a trial
(``protocol.Evaluate``) to every idle worker — asked of the optimizer through
``optimizers.study.Study`` —, answers each report the optimizer wants to judge
(``protocol.Proceed``), and tells it every result as it comes back, until the study
closes (trial budget, the workload's ``budget:``, or the optimizer done) and the trials
running then finish (or, with ``budget.running: stop``, are stopped).

Continuation: every trial of a resumable trainable saves its state to its own
checkpoint file; a configuration asked again at a higher fidelity resumes from the last
one (``TrialContext.resume``, ``start_epoch``) and trains only the new epochs. Its record
says so (``fidelity``, ``resumed_from``); its spans cover the epochs it trained, so its
energy is theirs. The best trial is the best at the highest fidelity reached; its model is
tested.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from pytest_basht.energy.base import Allocation
from pytest_basht.errors import WorkloadError
from pytest_basht.optimizers.base import Optimizer, Outcome
from pytest_basht.optimizers.study import Evaluation, Study, best_number
from pytest_basht.records import TrialRecord, mono_ns
from pytest_basht.registry import Registry, ref_of
from pytest_basht.search import trial_cap
from pytest_basht.spend import Ledger, stop_note
from pytest_basht.sut import protocol
from pytest_basht.sut.base import SUT, Progress, SutContext, own_options
from pytest_basht.sut.limits import plan_cpus
from pytest_basht.sut.optuna import allocation_of, scenario_metrics, setup_request
from pytest_basht.sut.pool import WorkerPool, WorkerProcess
from pytest_basht.trainables.base import DataInfo
from pytest_basht.workload import Workload


def check_optimizer(workload: Workload, registry: Registry, sut: str) -> type[Optimizer]:
    """The optimizer ``search.sampler`` names, checked; a usage error when it names an
    Optuna sampler (those run on the ``optuna`` SUT)."""
    cls = registry.optimizer(workload)
    if cls is None:
        raise WorkloadError(workload.source, "search.sampler",
                            f"an ask-and-tell optimizer for sut {sut}: "
                            + ", ".join(sorted(registry.optimizers))
                            + " (an Optuna sampler runs on sut optuna, or here as "
                            "sampler optuna with sampler_options.sampler)",
                            workload.search.sampler)
    if workload.search.grouped:
        raise WorkloadError(workload.source, "search.fusion",
                            "1 and search.scaling 1: fused and scaled groups run on sut "
                            "optuna", workload.search.fusion)
    return cls


def now_s() -> float:
    return mono_ns() / 1e9


class AskTellSUT(SUT):
    name = "asktell"

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        own_options(workload, cls.name, (), strict=True)
        check_optimizer(workload, registry, cls.name)

    def __init__(self, workload: Workload, ctx: SutContext) -> None:
        super().__init__(workload, ctx)
        w = workload.workers
        self.pool = WorkerPool(ctx.work_dir, plan_cpus(w.count, w.cpu), w.memory_mb * 2**20)
        self.workload: Workload | None = None
        self.data: DataInfo | None = None
        self.optimizer: Optimizer | None = None
        self.study: Study | None = None
        self.resumable = False
        self.pending: dict[int, Evaluation] = {}
        self.window = (0.0, 0.0)
        self.setups = 0
        self.artifacts = ctx.work_dir / "models"
        self.checkpoints = ctx.work_dir / "checkpoints"

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
        self.workload = workload
        self.setups += 1
        self.pool.begin(workload)
        self.data = trainable.prepare(workload, self.ctx.work_dir)
        self.pool.setup(None, setup_request(trainable, workload, self.data))
        lib_dir = self.ctx.work_dir / f"optimizer-{self.setups}"
        lib_dir.mkdir(exist_ok=True)
        self.checkpoint(0).parent.mkdir(parents=True, exist_ok=True)
        cls = check_optimizer(workload, self.ctx.registry, self.name)
        self.optimizer = cls(workload, workload.seed, lib_dir, self.ctx.registry)
        self.resumable = bool(getattr(trainable, "resumable", False))
        self.study = None
        self.pending = {}
        self.pool.await_ready()

    def run(self) -> list[TrialRecord]:
        assert self.workload is not None and self.optimizer is not None
        w = self.workload
        started = now_s()
        self.window = (started, started)
        self.study = study = Study(self.optimizer, Ledger.of(w, started), trial_cap(w),
                                   resumable=self.resumable)
        self.pool.on_report = self._judge
        progress = Progress(expected=w.trial_budget)
        closed = False
        try:
            with self.pool.interruptible(progress):
                while True:
                    for worker in self.pool.idle() if not closed else ():
                        ev = study.next(now_s())
                        if ev is None:
                            closed = True
                            self._halt(progress)
                            break
                        self._hand_out(worker, ev)
                    if not self.pool.busy():
                        break
                    self.pool.step(progress)
                    self._collect()
                    if self.ctx.progress is not None:
                        self.ctx.progress(progress)
        finally:
            self.pool.on_report = None
            self.window = (started, now_s())
        return self.trials_so_far()

    def _halt(self, progress: Progress) -> None:
        """``budget.running: stop``: the budget closed the study, the running trials stop."""
        assert self.workload is not None and self.study is not None
        by = self.study.ledger.stopped_by
        if by is not None and self.workload.budget.running == "stop":
            self.pool.halt(stop_note(by), progress)

    def checkpoint(self, number: int) -> Path:
        """Where trial ``number`` of this scenario saves its state (each scenario's own
        folder: trial numbers start again at 0)."""
        return self.checkpoints / str(self.setups) / f"trial-{number}.ckpt"

    def _hand_out(self, worker: WorkerProcess, ev: Evaluation) -> None:
        assert self.optimizer is not None
        self.pending[ev.number] = ev
        checkpoint = self.checkpoint(ev.number) if self.resumable else None
        self.pool.evaluate(worker, protocol.Evaluate(
            number=ev.number, params=ev.params, epochs=ev.fidelity,
            artifacts=str(self.artifacts), start_epoch=ev.start_epoch,
            resume=ev.resume.checkpoint if ev.resume is not None else None,
            checkpoint=str(checkpoint) if checkpoint is not None else None,
            judged=self.optimizer.judges_epochs))

    def _judge(self, worker: WorkerProcess, msg: protocol.Reported) -> None:
        """A report of a judged trial: the worker waits for the optimizer's word (none for
        a value that is not finite: the worker does not ask for one then)."""
        assert self.optimizer is not None and self.study is not None
        if (msg.number in self.pending and self.optimizer.judges_epochs
                and math.isfinite(msg.value)):
            go = self.study.report(msg.number, msg.epoch, msg.value)
            worker.conn.send(protocol.Proceed(msg.number, go))

    def _collect(self) -> None:
        """Tell the optimizer every trial that came back (or died) since the last turn."""
        assert self.study is not None
        for number, ev in list(self.pending.items()):
            record = self.pool.records.get(number)
            if record is None:
                continue
            del self.pending[number]
            checkpoint = self.checkpoint(number)
            self.study.finished(ev, outcome_of(record, ev), now_s(),
                                str(checkpoint) if checkpoint.exists() else None)

    # ------------------------------------------------------------------ results

    def trials_so_far(self) -> list[TrialRecord]:
        return self.pool.trials()

    def collect_results(self) -> int | None:
        assert self.workload is not None
        return best_number(self.trials_so_far(), self.workload.goal)

    def test(self, best: TrialRecord) -> float | None:
        artifact = self.artifacts / f"trial-{best.number}.pt"
        if not artifact.exists():
            return None
        return self.pool.test(artifact)

    def collect_metrics(self) -> dict[str, Any]:
        study = None
        if self.study is not None:
            study = {**self.study.describe(), "continuation": self.resumable,
                     "budget": self.study.ledger.summary(self.window[1])}
        info = scenario_metrics(self.ctx.registry, self.pool, self.deployed_for,
                                self.workload, self.data, self.trials_so_far(), None, study)
        if self.optimizer is not None:
            info["optimizer"] = self.optimizer.describe()
        return info


def outcome_of(record: TrialRecord, ev: Evaluation) -> Outcome:
    """What the optimizer is told of a trial: its state, value, the epochs it reached, its
    costs (when its worker worked them out)."""
    return Outcome(record.state, record.value, ev.start_epoch + len(record.intermediate),
                   record.duration_s, dict(record.told or {}))

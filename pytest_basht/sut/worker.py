"""A worker process of the local Optuna SUT.

Started by the controller with one end of a socket pair. It pins itself to its cores and
sets its thread count before importing torch, then serves the controller's requests
(``sut.protocol``): ``Preload`` (import the trainable, at deploy), ``Setup`` (load the
prepared data), ``Run`` (take trials from the shared study until the sampler, the trial
budget or the workload's ``budget:`` stops it; in groups when fused or scaled, see
``group``), ``Evaluate`` (one trial an ask-and-tell controller hands out, ``sut.asktell``),
``Test`` (evaluate a saved model), ``Retrain`` (train configurations at full width),
``Stop``.

Every span and every epoch's value is streamed to the controller as it happens, so a
trial killed mid-way (memory cap, timeout, crash) keeps the measurements made before.

When the workload needs them (several objectives, constraints, an energy, CO2 or cost
budget) a trial's costs are worked out here, where it ran, as it ends: the told model of
``objectives`` from its duration and this process's CPU time. They go into its record
(``told``), to the study as its values and constraints, and onto the Optuna trial for
the budget of every worker (``objectives.SPEND_ATTR``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest_basht.objectives as objectives
from pytest_basht.spend import of_costs
from pytest_basht.sut import protocol
from pytest_basht.trainables.base import TrialContext


def _die_with_parent() -> None:
    """Linux: receive SIGKILL when the controller dies, so no worker outlives it."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="basht-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--cores", default="")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parent", type=int, default=0)
    args = parser.parse_args(argv)

    _die_with_parent()
    if args.parent and os.getppid() != args.parent:
        return 1  # the controller died before we set the death signal
    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    # the controller decides when we stop: Ctrl-C and a SIGTERM to the whole process group
    # reach it too, and it records the trials in flight before it stops us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    from multiprocessing.connection import Connection

    sock = socket.socket(fileno=args.fd)
    conn = Connection(sock.detach())
    worker = Worker(args.worker, args.threads)
    conn.send(protocol.Hello(args.worker, os.getpid(),
                             sorted(os.sched_getaffinity(0))
                             if hasattr(os, "sched_getaffinity") else []))
    return worker.serve(conn)


def resolve(target: Any) -> Any:
    """What a message names: an import reference (from the controller), or the object
    itself (a worker that resolved the name in its own registry)."""
    if isinstance(target, str):
        from pytest_basht.registry import load_ref

        return load_ref(target)
    return target


def limit_torch_threads(threads: int) -> None:
    """Hold torch to the worker's cores (OMP_NUM_THREADS alone covers only OpenMP)."""
    if "torch" not in sys.modules:
        return
    import torch

    torch.set_num_threads(threads)
    # RuntimeError: inter-op threads already started; they stay idle in a CPU trial
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


class Worker:
    """The worker's side of the protocol: one request at a time, each answered by an event;
    a run streams its events to the outbox it is given."""

    def __init__(self, wid: int, threads: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.wid = wid
        self.threads = threads
        self.trainable: Any = None
        self.workload: Any = None
        self._storages: dict[str, Any] = {}

    def serve(self, conn: Any) -> int:
        """Answer the controller's requests on ``conn`` until it says stop or goes away."""
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return 0
            if isinstance(request, protocol.Stop):
                return 0
            conn.send(self.answer(request, conn))

    def answer(self, request: Any, outbox: protocol.Outbox) -> protocol.Event:
        """The event that answers ``request`` (an ``Error`` when it failed, or when it is
        no request of the protocol)."""
        try:
            match request:
                case protocol.Preload():
                    return self.preload(request)
                case protocol.Setup():
                    return self.setup(request)
                case protocol.Run():
                    return self.run(request, outbox)
                case protocol.Evaluate():
                    return self.evaluate(request, outbox)
                case protocol.Test():
                    return self.test(request)
                case protocol.Retrain():
                    return self.retrain(request)
            raise ValueError(f"unknown request {type(request).__name__!r}")
        except Exception as exc:
            return protocol.Error(getattr(request, "kind", type(request).__name__),
                                  f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def preload(self, request: protocol.Preload) -> protocol.Preloaded:
        """Deploy: import the trainable's module (and its framework) before any setup."""
        resolve(request.trainable)
        limit_torch_threads(self.threads)
        return protocol.Preloaded()

    def setup(self, request: protocol.Setup) -> protocol.Ready:
        self.workload = request.workload
        cls = resolve(request.trainable)
        limit_torch_threads(self.threads)
        self.trainable = cls()
        self.trainable.setup(self.workload, request.data, request.device)
        limit_torch_threads(self.threads)
        return protocol.Ready()

    def test(self, request: protocol.Test) -> protocol.TestDone:
        score = self.trainable.test(Path(request.artifact))
        return protocol.TestDone(float(score))

    def retrain(self, request: protocol.Retrain) -> protocol.Retrained:
        from pytest_basht.sut.group import retrain

        return protocol.Retrained(retrain(self.trainable, self.workload, request.configs,
                                          Path(request.artifacts), self.wid))

    def run(self, request: protocol.Run, outbox: protocol.Outbox,
            closed: Callable[[], bool] | None = None) -> protocol.RunDone:
        """Optimize the shared study, streaming every trial's events to ``outbox``.

        ``closed`` (a remote worker's): whether the controller has closed the run, so that
        no further trial starts."""
        import optuna

        from pytest_basht.search import suggest

        workload = self.workload
        sampler = resolve(request.sampler)(workload, request.seed)
        pruner = resolve(request.pruner)(workload)
        study = optuna.load_study(study_name=request.study, storage=self.storage(request),
                                  sampler=sampler, pruner=pruner)
        cap = request.cap
        discarded = 0
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study):
            # a replacement worker joining late: every grid point has run
            return protocol.RunDone(0)
        from pytest_basht.sut import study_budget

        def over_budget(trial: optuna.Trial) -> bool:
            return study_budget.refused(study, trial, request.limits, request.started_s)

        if workload.search.grouped:
            from pytest_basht.sut.group import GroupRunner

            runner = GroupRunner(trainable=self.trainable, workload=workload, study=study,
                                 cap=cap, artifacts=Path(request.artifacts), worker=self.wid,
                                 send=outbox.send, refused=over_budget)
            return protocol.RunDone(runner.run())

        class OverBudget(Exception):
            pass

        class Failed(Exception):
            pass

        goal = workload.goal

        def objective(trial: optuna.Trial) -> float:
            nonlocal discarded
            past_cap = cap is not None and trial.number >= cap
            if past_cap or (closed is not None and closed()) or over_budget(trial):
                if past_cap:
                    trial.set_user_attr(study_budget.DISCARDED, "trials")
                discarded += 1
                study.stop()
                raise OverBudget
            params = suggest(trial, workload.search.space)
            state, value, error, record = self.run_trial(trial, params,
                                                         Path(request.artifacts), outbox)
            told = record["told"]
            if told is not None:  # before the trial ends: every worker's ledger reads it
                if goal.constraints:
                    trial.set_user_attr(objectives.CONSTRAINTS_ATTR,
                                        objectives.constraint_values(
                                            goal, objectives.TrialCost(**told)))
                trial.set_user_attr(objectives.SPEND_ATTR, of_costs(told))
            outbox.send(protocol.TrialFinished(record))
            if state == "pruned":
                raise optuna.TrialPruned()
            if state == "failed":
                raise Failed(error)
            return objectives.values(goal, value, told) if told and goal.multi else value

        study.optimize(objective, n_trials=None, catch=(OverBudget, Failed),
                       gc_after_trial=False)
        return protocol.RunDone(discarded)

    def storage(self, request: protocol.Run) -> Any:
        """The study's storage: the journal file, or the database of a distributed
        deployment (with Optuna's heartbeat), opened once per worker."""
        import optuna

        key = request.storage or request.journal
        assert key is not None, "a run names its journal or its storage"
        if key not in self._storages:
            if request.storage is not None:
                from pytest_basht.sut.store import rdb_storage

                self._storages[key] = rdb_storage(request.storage, **request.heartbeat)
            else:
                self._storages[key] = optuna.storages.JournalStorage(
                    optuna.storages.journal.JournalFileBackend(key))
        return self._storages[key]

    def run_trial(self, trial: Any, params: dict[str, Any], artifacts: Path,
                  outbox: protocol.Outbox) -> tuple[str, float, str | None, dict[str, Any]]:
        """One trial of the shared study: its values go to the study's pruner (none judges
        a multi-objective trial)."""

        def judge(epoch: int, value: float) -> bool:
            trial.report(value, epoch)
            return not trial.should_prune()

        return self.trial(trial.number, params, artifacts / f"trial-{trial.number}.pt",
                          outbox, None if self.workload.goal.multi else judge)

    def evaluate(self, request: protocol.Evaluate, conn: Any) -> protocol.Evaluated:
        """One trial of an ask-and-tell study: its epochs from ``start_epoch``, judged by
        the controller after each report when it asks to (``Proceed``)."""

        def judge(epoch: int, value: float) -> bool:
            while True:
                answer = conn.recv()
                if isinstance(answer, protocol.Proceed) and answer.number == request.number:
                    return answer.go

        def path(name: str | None) -> Path | None:
            return Path(name) if name is not None else None

        *_, record = self.trial(request.number, request.params,
                                Path(request.artifacts) / f"trial-{request.number}.pt", conn,
                                judge if request.judged else None, epochs=request.epochs,
                                start_epoch=request.start_epoch, resume=path(request.resume),
                                checkpoint=path(request.checkpoint))
        return protocol.Evaluated(record)

    def trial(self, number: int, params: dict[str, Any], artifact: Path,
              outbox: protocol.Outbox, judge: Callable[[int, float], bool] | None, *,
              epochs: int | None = None, start_epoch: int = 0, resume: Path | None = None,
              checkpoint: Path | None = None
              ) -> tuple[str, float, str | None, dict[str, Any]]:
        """Run the trainable on one configuration, streaming its start, spans and values to
        ``outbox``; ``judge(epoch, value)`` may stop it after a report (pruned)."""
        import optuna

        from pytest_basht.lifecycle import Recorder, process_clock, recording
        from pytest_basht.records import TrialRecord
        from pytest_basht.trainables.base import TrialPruned, config_seed, trial_outcome

        workload = self.workload
        start_ns, cpu0 = process_clock()
        outbox.send(protocol.TrialStarted(number, params, start_ns))
        recorder = Recorder(worker=self.wid,
                            sink=lambda s: outbox.send(protocol.SpanRecorded(s.to_dict())))
        recorder.trial = number
        ctx = _Context(number, params, workload, config_seed(workload.seed, params), artifact,
                       recorder, outbox, judge)
        ctx.epochs, ctx.start_epoch = epochs, start_epoch
        ctx.resume, ctx.checkpoint = resume, checkpoint

        def objective() -> float:
            with recording(recorder):
                return float(self.trainable.run_trial(ctx))

        outcome = trial_outcome(objective, ctx.intermediate, (TrialPruned, optuna.TrialPruned))
        state, value, error = outcome
        end_ns, cpu1 = process_clock()
        told = None
        if objectives.needed(workload):
            told = objectives.trial_cost(workload, (end_ns - start_ns) / 1e9,
                                         max(0.0, cpu1 - cpu0)).to_dict()
        record = TrialRecord(
            number=number, params=params, state=state,
            value=value if math.isfinite(value) else None, worker=self.wid,
            start_ns=start_ns, end_ns=end_ns, intermediate=list(ctx.intermediate),
            spans=recorder.take(), cpu_s=max(0.0, cpu1 - cpu0), error=error,
            traceback=outcome.traceback, fidelity=epochs,
            resumed_from=start_epoch if resume is not None else None, told=told)
        return state, value, error, record.to_dict()


class _Context(TrialContext):
    """The worker's TrialContext: phases stream to the controller, values reach the judge
    (the study's pruner, or the ask-and-tell controller)."""

    def __init__(self, number: int, params: dict[str, Any], workload: Any, seed: int,
                 artifact: Path, recorder: Any, outbox: protocol.Outbox,
                 judge: Callable[[int, float], bool] | None) -> None:
        self.number = number
        self.params = params
        self.workload = workload
        self.seed = seed
        self.artifact = artifact
        self.recorder = recorder
        self.intermediate: list[float] = []
        self._outbox = outbox
        self._judge = judge

    def phase(self, name: str, *, epoch: int | None = None) -> Any:
        return self.recorder.span(name, epoch=epoch)

    def report(self, epoch: int, value: float) -> None:
        from pytest_basht.trainables.base import TrialPruned

        value = float(value)
        self.intermediate.append(value)
        self._outbox.send(protocol.Reported(self.number, epoch, value, time.monotonic_ns()))
        if not math.isfinite(value) or self._judge is None:
            return
        if not self._judge(epoch, value):
            raise TrialPruned(f"pruned after epoch {epoch}")


if __name__ == "__main__":
    sys.exit(main())

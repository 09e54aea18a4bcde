"""A worker process of the local Optuna SUT.

Started by the controller with one end of a socket pair. It pins itself to its cores and
sets its thread count before importing torch, then serves the controller's requests:
``preload`` (import the trainable, at deploy), ``setup`` (load the prepared data), ``run``
(take trials from the shared study until the sampler or the budget stops it; in groups
when fused or scaled, see ``group``), ``test`` (evaluate a saved model), ``retrain``
(train configurations at full width), ``stop``.

Every span and every epoch's value is streamed to the controller as it happens, so a
trial killed mid-way (memory cap, timeout, crash) keeps the measurements made before.
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
from pathlib import Path
from typing import Any

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
    worker = Worker(args.worker, conn, args.threads)
    conn.send({"ev": "hello", "worker": args.worker, "pid": os.getpid(),
               "cores": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else []})
    return worker.serve()


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
    def __init__(self, wid: int, conn: Any, threads: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.wid = wid
        self.conn = conn
        self.threads = threads
        self.trainable: Any = None
        self.workload: Any = None
        self._storages: dict[str, Any] = {}

    def send(self, message: dict[str, Any]) -> None:
        self.conn.send(message)

    def serve(self) -> int:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return 0
            op = msg.get("op")
            try:
                if op == "stop":
                    return 0
                if op == "preload":
                    self.preload(msg)
                elif op == "setup":
                    self.setup(msg)
                elif op == "run":
                    self.run(msg)
                elif op == "test":
                    self.test(msg)
                elif op == "retrain":
                    self.retrain(msg)
                else:
                    raise ValueError(f"unknown request {op!r}")
            except Exception as exc:
                self.send({"ev": "error", "op": op, "message": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()})

    def preload(self, msg: dict[str, Any]) -> None:
        """Deploy: import the trainable's module (and its framework) before any setup."""
        resolve(msg["trainable"])
        limit_torch_threads(self.threads)
        self.send({"ev": "preloaded"})

    def setup(self, msg: dict[str, Any]) -> None:
        self.workload = msg["workload"]
        cls = resolve(msg["trainable"])
        limit_torch_threads(self.threads)
        self.trainable = cls()
        self.trainable.setup(self.workload, msg["data"], msg["device"])
        limit_torch_threads(self.threads)
        self.send({"ev": "ready", "op": "setup"})

    def test(self, msg: dict[str, Any]) -> None:
        score = self.trainable.test(Path(msg["artifact"]))
        self.send({"ev": "test_done", "score": float(score)})

    def retrain(self, msg: dict[str, Any]) -> None:
        from pytest_basht.sut.group import retrain

        results = retrain(self.trainable, self.workload, msg["configs"], Path(msg["artifacts"]),
                          self.wid)
        self.send({"ev": "retrained", "results": results})

    def run(self, msg: dict[str, Any]) -> None:
        import optuna

        from pytest_basht.search import suggest

        workload = self.workload
        sampler = resolve(msg["sampler"])(workload, msg["seed"])
        pruner = resolve(msg["pruner"])(workload)
        storage = self.storage(msg)
        study = optuna.load_study(study_name=msg["study"], storage=storage, sampler=sampler,
                                  pruner=pruner)
        cap = msg["cap"]
        discarded = 0
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study):
            # a replacement worker joining late: every grid point has run
            self.send({"ev": "run_done", "discarded": 0})
            return
        if workload.search.grouped:
            from pytest_basht.sut.group import GroupRunner

            runner = GroupRunner(trainable=self.trainable, workload=workload, study=study,
                                 cap=cap, artifacts=Path(msg["artifacts"]), worker=self.wid,
                                 send=self.send)
            self.send({"ev": "run_done", "discarded": runner.run()})
            return

        class OverBudget(Exception):
            pass

        class Failed(Exception):
            pass

        closed = msg.get("closed")  # a remote worker's: has the controller closed the run?

        def objective(trial: optuna.Trial) -> float:
            nonlocal discarded
            if (cap is not None and trial.number >= cap) or (closed is not None and closed()):
                discarded += 1
                study.stop()
                raise OverBudget
            params = suggest(trial, workload.search.space)
            state, value, error, record = self.run_trial(trial, params, Path(msg["artifacts"]))
            self.send({"ev": "trial", "record": record})
            if state == "pruned":
                raise optuna.TrialPruned()
            if state == "failed":
                raise Failed(error)
            return value

        study.optimize(objective, n_trials=None, catch=(OverBudget, Failed),
                       gc_after_trial=False)
        self.send({"ev": "run_done", "discarded": discarded})

    def storage(self, msg: dict[str, Any]) -> Any:
        """The study's storage: the journal file, or the database of a distributed
        deployment (with Optuna's heartbeat), opened once per worker."""
        import optuna

        key = msg.get("storage") or msg["journal"]
        if key not in self._storages:
            if "storage" in msg:
                from pytest_basht.sut.store import rdb_storage

                self._storages[key] = rdb_storage(msg["storage"], **msg["heartbeat"])
            else:
                self._storages[key] = optuna.storages.JournalStorage(
                    optuna.storages.journal.JournalFileBackend(msg["journal"]))
        return self._storages[key]

    def run_trial(self, trial: Any, params: dict[str, Any],
                  artifacts: Path) -> tuple[str, float, str | None, dict[str, Any]]:
        import optuna

        from pytest_basht.lifecycle import Recorder, process_clock, recording
        from pytest_basht.records import TrialRecord
        from pytest_basht.trainables.base import TrialPruned, config_seed, trial_outcome

        workload = self.workload
        start_ns, cpu0 = process_clock()
        self.send({"ev": "trial_started", "number": trial.number, "params": params,
                   "start_ns": start_ns})
        recorder = Recorder(worker=self.wid,
                            sink=lambda s: self.send({"ev": "span", "span": s.to_dict()}))
        recorder.trial = trial.number
        ctx = _Context(trial, params, workload, config_seed(workload.seed, params),
                       artifacts / f"trial-{trial.number}.pt", recorder, self.send)

        def objective() -> float:
            with recording(recorder):
                return float(self.trainable.run_trial(ctx))

        state, value, error = trial_outcome(objective, ctx.intermediate,
                                            (TrialPruned, optuna.TrialPruned))
        end_ns, cpu1 = process_clock()
        record = TrialRecord(
            number=trial.number, params=params, state=state,
            value=value if math.isfinite(value) else None, worker=self.wid,
            start_ns=start_ns, end_ns=end_ns, intermediate=list(ctx.intermediate),
            spans=recorder.take(), cpu_s=max(0.0, cpu1 - cpu0), error=error)
        return state, value, error, record.to_dict()


class _Context(TrialContext):
    """The worker's TrialContext: phases stream to the controller, values reach the pruner."""

    def __init__(self, trial: Any, params: dict[str, Any], workload: Any, seed: int,
                 artifact: Path, recorder: Any, send: Any) -> None:
        self.trial = trial
        self.number = trial.number
        self.params = params
        self.workload = workload
        self.seed = seed
        self.artifact = artifact
        self.recorder = recorder
        self.intermediate: list[float] = []
        self._send = send

    def phase(self, name: str, *, epoch: int | None = None) -> Any:
        return self.recorder.span(name, epoch=epoch)

    def report(self, epoch: int, value: float) -> None:
        from pytest_basht.trainables.base import TrialPruned

        value = float(value)
        self.intermediate.append(value)
        self._send({"ev": "report", "number": self.number, "epoch": epoch, "value": value,
                    "t_ns": time.monotonic_ns()})
        if not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise TrialPruned(f"pruned after epoch {epoch}")


if __name__ == "__main__":
    sys.exit(main())

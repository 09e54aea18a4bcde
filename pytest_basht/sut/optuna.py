"""The ``optuna`` SUT: wn local worker processes sharing one study.

Deploy starts the workers (each pinned to its cores, its thread count set before torch is
imported) and has them import the trainable; setup creates the study in a
``JournalStorage(JournalFileBackend)`` in the work directory, prepares the data once and
has every worker load it; run lets every worker optimize the shared study with the same
sampler seed. A watchdog kills a worker whose process tree passes wmem, or whose trial
passes ``trial_timeout_s``: the trial is recorded ``failed`` with the reason, marked
failed in the study, and the slot refilled.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import optuna

from pytest_basht.energy.base import Allocation
from pytest_basht.records import Span, TrialRecord, mono_ns
from pytest_basht.registry import Registry, ref_of
from pytest_basht.search import trial_cap
from pytest_basht.sut import hydro
from pytest_basht.sut.base import SUT, Progress, SutContext, SutError
from pytest_basht.sut.limits import (
    WATCHDOG_INTERVAL_S,
    CpuPlan,
    accelerator_record,
    affinity_of,
    can_pin,
    cpu_record,
    memory_record,
    plan_cpus,
    thread_env,
    tree_rss_bytes,
)
from pytest_basht.trainables.base import DataInfo
from pytest_basht.workload import Workload

START_TIMEOUT_S = 300.0
LOG_TAIL = 1500


@dataclass
class _InFlight:
    number: int
    params: dict[str, Any]
    start_ns: int
    spans: list[Span] = field(default_factory=list)
    intermediate: list[float] = field(default_factory=list)


@dataclass
class _Worker:
    wid: int
    proc: subprocess.Popen[bytes]
    conn: Connection
    log: Path
    running: bool = False
    inflight: dict[int, _InFlight] = field(default_factory=dict)  # several when fused
    peak_rss: int = 0
    respawns: int = 0


def _log_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-LOG_TAIL:].strip()


class OptunaSUT(SUT):
    name = "optuna"

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        from pytest_basht.sut.distributed import StoreOptions

        StoreOptions.parse(workload)

    def __init__(self, workload: Workload, ctx: SutContext) -> None:
        super().__init__(workload, ctx)
        w = workload.workers
        self.plan: CpuPlan = plan_cpus(max(1, self.local_count()), w.cpu)
        self.memory_cap = w.memory_mb * 2**20
        self.workers: list[_Worker] = []
        self.workload: Workload | None = None
        self.study_name = ""
        self.study: optuna.Study | None = None
        self.data: DataInfo | None = None
        self.records: dict[int, TrialRecord] = {}
        self.kills: list[str] = []
        self.discarded = 0
        self.setups = 0
        self.groups: list[dict[str, Any]] = []
        self.scaling: dict[str, Any] | None = None
        self.journal = ctx.work_dir / "journal.log"
        self.artifacts = ctx.work_dir / "models"

    # ------------------------------------------------------------------ deployment

    def local_count(self) -> int:
        """Worker processes this controller starts (the rest join from other hosts)."""
        return self.deployed_for.workers.count

    def allocation(self) -> Allocation:
        w = self.deployed_for.workers
        import psutil

        memory_gb = min(w.count * w.memory_mb / 1024, psutil.virtual_memory().total / 2**30)
        return Allocation(vcpus=self.plan.vcpus, memory_gb=memory_gb, slots=w.count)

    def deploy(self) -> None:
        self.ctx.work_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(exist_ok=True)
        pending = [self._spawn(i) for i in range(self.local_count())]
        for worker in pending:
            self._expect(worker, "hello")
        # the workers import the trainable (and torch) now: a deployment's first scenario
        # is then not charged, in its setup, what every later one on it is spared
        trainable = self.ctx.registry.get("trainables", self.deployed_for.model.name)
        for worker in pending:
            worker.conn.send({"op": "preload", "trainable": ref_of(trainable)})
        for worker in pending:
            self._expect(worker, "preloaded")
        self.workers = pending

    def _spawn(self, wid: int) -> _Worker:
        cores = self.plan.sets[wid]
        parent, child = socket.socketpair()
        env = {**os.environ, **thread_env(self.plan.threads), "PYTHONUNBUFFERED": "1"}
        log = self.ctx.work_dir / f"worker-{wid}.log"
        cmd = [sys.executable, "-m", "pytest_basht.sut.worker", "--fd", str(child.fileno()),
               "--worker", str(wid), "--threads", str(self.plan.threads),
               "--parent", str(os.getpid())]
        if can_pin():
            cmd += ["--cores", ",".join(map(str, cores))]
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        child.close()
        return _Worker(wid, proc, Connection(parent.detach()), log)

    def _expect(self, worker: _Worker, event: str, timeout: float = START_TIMEOUT_S) -> dict:
        """Wait for one event from one worker (during deploy, setup and test)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.conn.poll(0.2):
                try:
                    msg = worker.conn.recv()
                except (EOFError, OSError):
                    break
                if msg.get("ev") == event:
                    return msg
                if msg.get("ev") == "error":
                    raise SutError(f"worker {worker.wid} failed in {msg.get('op')}: "
                                   f"{msg['message']}\n{msg.get('traceback', '')}")
            elif worker.proc.poll() is not None:
                break
        code = worker.proc.poll()
        raise SutError(f"worker {worker.wid} did not answer {event!r} (exit code {code}); "
                       f"its log ends:\n{_log_tail(worker.log)}")

    def undeploy(self) -> None:
        for worker in self.workers:
            if worker.running:  # stopped mid-run: it reads no request until its run ends
                worker.proc.kill()
            with contextlib.suppress(OSError):
                worker.conn.send({"op": "stop"})
        deadline = time.monotonic() + 10
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
            worker.conn.close()
        self.workers = []
        shutil.rmtree(self.ctx.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------ setup and run

    def setup(self, workload: Workload) -> None:
        registry = self.ctx.registry
        trainable = registry.get("trainables", workload.model.name)
        hydro.check(trainable, workload)
        self.workload = workload
        self.records = {}
        self.kills = []
        self.discarded = 0
        self.groups = []
        self.scaling = None
        self.setups += 1
        self.study_name = self._study_name(workload)
        self.study = optuna.create_study(study_name=self.study_name, storage=self._storage(),
                                         direction=workload.goal.direction)
        self.data = trainable.prepare(workload, self.ctx.work_dir)
        self._setup_msg = {
            "op": "setup", "workload": workload, "trainable": ref_of(trainable),
            "data": self.data, "device": "cuda" if workload.workers.accelerator == "gpu"
            else "cpu",
        }
        for worker in self.workers:
            worker.conn.send(self._setup_msg)
        self._setup_others(workload)
        for worker in self.workers:
            self._expect(worker, "ready")
        self._others_ready()

    def _study_name(self, workload: Workload) -> str:
        return f"{workload.name}-{self.setups}"

    def _setup_others(self, workload: Workload) -> None:
        """Setup of workers the sockets do not reach, begun while the local ones set up."""

    def _others_ready(self) -> None:
        """Wait until those workers are set up too."""

    def _storage(self) -> optuna.storages.BaseStorage:
        return optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(self.journal)))

    def _run_msg(self) -> dict[str, Any]:
        assert self.workload is not None
        registry = self.ctx.registry
        w = self.workload
        return {"op": "run", "study": self.study_name, "journal": str(self.journal),
                "sampler": ref_of(registry.get("samplers", w.search.sampler)),
                "pruner": ref_of(registry.get("pruners", w.search.pruner)),
                "seed": w.seed, "cap": trial_cap(w), "artifacts": str(self.artifacts)}

    def run(self) -> list[TrialRecord]:
        assert self.workload is not None
        run_msg = self._run_msg()
        for worker in self.workers:
            worker.conn.send(run_msg)
            worker.running = True
        progress = Progress(expected=self.workload.trial_budget)
        try:
            self._serve(progress)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (pytest_basht.signals)
            for worker in self.workers:
                self._drain(worker, progress)
            self._abandon(f"interrupted while it ran ({exc or 'KeyboardInterrupt'})")
            raise
        return self.trials_so_far()

    def _serve(self, progress: Progress) -> None:
        """Receive what the workers stream until every one has finished its run."""
        next_check = 0.0
        while self._busy():
            conns = [w.conn for w in self.workers if w.running]
            if not conns:  # only workers the sockets do not reach are running
                time.sleep(WATCHDOG_INTERVAL_S)
            for conn in wait(conns, timeout=WATCHDOG_INTERVAL_S) if conns else ():
                worker = next(w for w in self.workers if w.conn is conn)
                self._receive(worker, progress)
            now = time.monotonic()
            if now >= next_check:
                next_check = now + WATCHDOG_INTERVAL_S
                self._watchdog(progress)
                for worker in self.workers:
                    if worker.running and worker.proc.poll() is not None:
                        self._drain(worker, progress)
                        self._on_death(worker, f"worker exited with code {worker.proc.poll()}")
            progress.running = sum(len(w.inflight) for w in self.workers)
            self._poll(progress)
            if self.ctx.progress is not None:
                self.ctx.progress(progress)

    def _abandon(self, reason: str) -> None:
        """The run stops now: trials in flight are recorded as failed (their work is spent
        and wasted); undeploy stops their workers."""
        now = mono_ns()
        for worker in self.workers:
            for lost in worker.inflight.values():
                self.records[lost.number] = TrialRecord(
                    number=lost.number, params=lost.params, state="failed", value=None,
                    worker=worker.wid, start_ns=lost.start_ns, end_ns=now,
                    intermediate=lost.intermediate, spans=lost.spans,
                    cpu_s=sum(sp.cpu_s for sp in lost.spans), error=reason)
            worker.inflight = {}

    def _busy(self) -> bool:
        """Whether the run goes on (a local worker is still optimizing)."""
        return any(w.running for w in self.workers)

    def _poll(self, progress: Progress) -> None:
        """Once per loop of the run: what workers the sockets do not reach have done."""

    def _receive(self, worker: _Worker, progress: Progress) -> None:
        while worker.running:
            try:
                if not worker.conn.poll():
                    return
                msg = worker.conn.recv()
            except (EOFError, OSError):
                try:
                    code = worker.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    worker.proc.kill()
                    code = worker.proc.wait()
                self._on_death(worker, f"worker exited with code {code}")
                return
            self._handle(worker, msg, progress)

    def _drain(self, worker: _Worker, progress: Progress) -> None:
        """Take what a worker sent before it was killed or the run stopped (a trial it
        finished just then is a measurement, not a loss)."""
        with contextlib.suppress(EOFError, OSError, SutError):
            while worker.running and worker.conn.poll():
                self._handle(worker, worker.conn.recv(), progress)

    def _handle(self, worker: _Worker, msg: dict[str, Any], progress: Progress) -> None:
        ev = msg.get("ev")
        if ev == "trial_started":
            worker.inflight[msg["number"]] = _InFlight(msg["number"], msg["params"],
                                                       msg["start_ns"])
        elif ev == "span":
            span = Span.from_dict(msg["span"])
            if span.trial in worker.inflight:
                worker.inflight[span.trial].spans.append(span)
        elif ev == "report":
            if msg["number"] in worker.inflight:
                worker.inflight[msg["number"]].intermediate.append(msg["value"])
        elif ev == "group":
            self.groups.append(msg["group"])
        elif ev == "trial":
            record = TrialRecord.from_dict(msg["record"])
            self._finish(worker, record, progress)
        elif ev == "run_done":
            worker.running = False
            self.discarded += msg.get("discarded", 0)
        elif ev == "error":
            worker.running = False
            raise SutError(f"worker {worker.wid} failed in {msg.get('op')}: "
                           f"{msg['message']}\n{msg.get('traceback', '')}")

    def _finish(self, worker: _Worker, record: TrialRecord, progress: Progress) -> None:
        assert self.workload is not None
        worker.inflight.pop(record.number, None)
        self.records[record.number] = record
        progress.count(record, self.workload.goal)

    def _watchdog(self, progress: Progress) -> None:
        timeout = self.workload.trial_timeout_s if self.workload else None
        for worker in self.workers:
            if not worker.running or worker.proc.poll() is not None:
                continue
            rss = tree_rss_bytes(worker.proc.pid)
            worker.peak_rss = max(worker.peak_rss, rss)
            reason = None
            if rss > self.memory_cap:
                reason = (f"memory cap exceeded: {rss / 2**20:.0f} MB > "
                          f"{self.memory_cap / 2**20:.0f} MB (killed by the watchdog)")
            elif timeout is not None and worker.inflight:
                ran = (mono_ns() - min(t.start_ns for t in worker.inflight.values())) / 1e9
                if ran > timeout:
                    reason = f"trial timeout: ran {ran:.1f} s > {timeout:g} s (killed)"
            if reason is not None:
                self.kills.append(f"worker {worker.wid}: {reason}")
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait()
                self._drain(worker, progress)
                self._on_death(worker, reason)

    def _on_death(self, worker: _Worker, reason: str) -> None:
        """Record the trials in flight as failed, mark them in the study, refill the slot."""
        assert self.workload is not None and self.study is not None
        worker.running = False
        worker.conn.close()
        lost_any = bool(worker.inflight)
        detail = reason if "watchdog" in reason or "timeout" in reason else (
            f"{reason}; log: {_log_tail(worker.log)[-300:]}")
        for lost in worker.inflight.values():
            self.records[lost.number] = TrialRecord(
                number=lost.number, params=lost.params, state="failed",
                value=None, worker=worker.wid, start_ns=lost.start_ns, end_ns=mono_ns(),
                intermediate=lost.intermediate, spans=lost.spans,
                cpu_s=sum(s.cpu_s for s in lost.spans), error=detail)
            with contextlib.suppress(ValueError, RuntimeError):  # it told before dying
                self.study.tell(lost.number, state=optuna.trial.TrialState.FAIL)
        worker.inflight = {}
        others_running = any(w.running for w in self.workers if w is not worker)
        replacement = self._spawn(worker.wid)
        replacement.respawns = worker.respawns + 1
        self.workers[self.workers.index(worker)] = replacement
        self._expect(replacement, "hello")
        replacement.conn.send(self._setup_msg)
        self._expect(replacement, "ready")
        if others_running or lost_any:
            replacement.conn.send(self._run_msg())
            replacement.running = True

    # ------------------------------------------------------------------ results

    def trials_so_far(self) -> list[TrialRecord]:
        return [self.records[n] for n in sorted(self.records)]

    def collect_results(self) -> int | None:
        assert self.study is not None
        try:
            return self.study.best_trial.number
        except ValueError:
            return None

    def test(self, best: TrialRecord) -> float | None:
        artifact: Path | None = self._artifact(best)
        if self.workload is not None and self.workload.search.scaling > 1:
            artifact = self._retrain_full_width()
        if artifact is None or not artifact.exists():
            return None
        worker = self._tester()
        worker.conn.send({"op": "test", "artifact": str(artifact)})
        return float(self._expect(worker, "test_done")["score"])

    def _artifact(self, best: TrialRecord) -> Path | None:
        """The best trial's saved model, where this host can read it."""
        return self.artifacts / f"trial-{best.number}.pt"

    def _tester(self) -> _Worker:
        """The worker process that runs the test phase."""
        return self.workers[0]

    def _retrain_full_width(self) -> Path | None:
        """Retrain the surrogate's best configurations at full width; the best one's model."""
        assert self.workload is not None
        t0 = mono_ns()
        chosen = hydro.to_retrain(self.trials_so_far(), self.workload)
        configs = [{"number": t.number, "params": t.params} for t in chosen]
        shares = list(zip(self.workers, hydro.deal(configs, len(self.workers)), strict=False))
        for worker, share in shares:
            worker.conn.send({"op": "retrain", "configs": share,
                              "artifacts": str(self.artifacts)})
        results = [r for worker, _ in shares
                   for r in self._expect(worker, "retrained", timeout=math.inf)["results"]]
        tested = hydro.best_full(results, self.workload)
        self.scaling = hydro.scaling_figures(self.workload, chosen, results, tested,
                                             (mono_ns() - t0) / 1e9)
        return Path(tested["artifact"]) if tested else None

    def collect_metrics(self) -> dict[str, Any]:
        w = self.deployed_for.workers
        peaks = [round(x.peak_rss / 2**20, 1) for x in self.workers]
        return {
            "limits": {
                "cpu": cpu_record(self.plan, [affinity_of(x.proc.pid) for x in self.workers]),
                "memory": memory_record(w.memory_mb, w.count, peaks, self.kills, any(
                    tree_rss_bytes(x.proc.pid) > 0 for x in self.workers)),
                "accelerator": accelerator_record(w.accelerator, self._setup_msg["device"],
                                                  w.count),
            },
            "data": self.data.to_dict() if self.data else None,
            "kills": list(self.kills),
            "respawns": sum(x.respawns for x in self.workers),
            "over_budget_discarded": self.discarded,
            "trial_timeout_s": self.workload.trial_timeout_s if self.workload else None,
            **({"hydro": hydro.figures(self.workload, self.trials_so_far(), self.groups,
                                       self.scaling)}
               if self.workload is not None and hydro.requested(self.workload) else {}),
        }


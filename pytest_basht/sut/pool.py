"""The local worker pool: the worker processes a SUT starts on this host.

Both Optuna SUTs (the journal one and the distributed one) and the ask-and-tell SUT
(``sut.asktell``, which hands out one trial at a time: ``evaluate``) compose it. The pool
spawns each worker (pinned to its cores, its thread count set before torch is imported)
and speaks the worker protocol (``sut.protocol``) with it: it waits for one event at a time
during deploy, setup and test, and during a run it receives what the workers stream.

A run is driven by its SUT, one ``step`` at a time: the pool receives the trials' events,
and a watchdog kills a worker whose process tree passes wmem, or whose trial passes
``trial_timeout_s``. A trial in flight on a worker that died (killed, crashed) is recorded
``failed`` with the reason, marked failed in the study, and the slot refilled by a new
worker. ``halt`` stops the trials in flight on purpose (a study budget's ``running:
stop``): they are recorded ``pruned``, with the reason. ``stop`` undeploys: every worker
leaves (one in the middle of a run is killed).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import optuna

import pytest_basht.objectives as objectives
import pytest_basht.reading as reading
from pytest_basht.records import Span, TrialRecord, mono_ns
from pytest_basht.sut import protocol
from pytest_basht.sut.base import Progress, SutError
from pytest_basht.sut.limits import (
    WATCHDOG_INTERVAL_S,
    CpuPlan,
    accelerator_record,
    affinity_of,
    can_pin,
    cpu_record,
    memory_record,
    thread_env,
    tree_rss_bytes,
)
from pytest_basht.urls import redact
from pytest_basht.workload import WorkersSpec, Workload

START_TIMEOUT_S = 300.0
LOG_TAIL = 1500


@dataclass
class InFlight:
    """A trial a worker has begun: what it streamed so far."""

    number: int
    params: dict[str, Any]
    start_ns: int
    spans: list[Span] = field(default_factory=list)
    intermediate: list[float] = field(default_factory=list)


@dataclass
class WorkerProcess:
    """One worker process of the pool, and its socket."""

    wid: int
    proc: subprocess.Popen[bytes]
    conn: Connection
    log: Path
    running: bool = False
    inflight: dict[int, InFlight] = field(default_factory=dict)  # several when fused
    peak_rss: int = 0
    respawns: int = 0


def log_tail(path: Path) -> str:
    try:
        text = reading.read_tail(path, LOG_TAIL * 4).decode(errors="replace")
    except OSError:
        return ""
    return str(redact(text[-LOG_TAIL:].strip()))  # a worker's traceback may quote a URL


class WorkerPool:
    """Worker processes in slots ``0 .. count - 1``, and what their run has recorded."""

    def __init__(self, work_dir: Path, plan: CpuPlan, memory_cap: int) -> None:
        self.work_dir = work_dir
        self.plan = plan
        self.memory_cap = memory_cap
        self.workers: list[WorkerProcess] = []
        # the scenario
        self.workload: Workload | None = None
        self.study: optuna.Study | None = None
        self.setup_request: protocol.Setup | None = None
        self.run_request: protocol.Run | None = None
        self.records: dict[int, TrialRecord] = {}
        self.kills: list[str] = []
        self.discarded = 0
        self.groups: list[dict[str, Any]] = []
        self._next_check = 0.0
        #: an ask-and-tell controller's judge of each report (``sut.asktell``)
        self.on_report: Callable[[WorkerProcess, protocol.Reported], None] | None = None

    # ------------------------------------------------------------------ processes

    def deploy(self, count: int, trainable: str) -> None:
        """Start ``count`` workers and have them import the trainable now: a deployment's
        first scenario is then not charged, in its setup, what every later one is spared."""
        pending = [self.spawn(i) for i in range(count)]
        for worker in pending:
            self.expect(worker, protocol.Hello)
        for worker in pending:
            worker.conn.send(protocol.Preload(trainable))
        for worker in pending:
            self.expect(worker, protocol.Preloaded)
        self.workers = pending

    def spawn(self, wid: int) -> WorkerProcess:
        cores = self.plan.sets[wid]
        parent, child = socket.socketpair()
        env = {**os.environ, **thread_env(self.plan.threads), "PYTHONUNBUFFERED": "1"}
        log = self.work_dir / f"worker-{wid}.log"
        cmd = [sys.executable, "-m", "pytest_basht.sut.worker", "--fd", str(child.fileno()),
               "--worker", str(wid), "--threads", str(self.plan.threads),
               "--parent", str(os.getpid())]
        if can_pin():
            cmd += ["--cores", ",".join(map(str, cores))]
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        child.close()
        return WorkerProcess(wid, proc, Connection(parent.detach()), log)

    def expect(self, worker: WorkerProcess, event: type[Any],
               timeout: float = START_TIMEOUT_S) -> Any:
        """Wait for one event from one worker (during deploy, setup and test)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.conn.poll(0.2):
                try:
                    msg = worker.conn.recv()
                except (EOFError, OSError):
                    break
                if isinstance(msg, event):
                    return msg
                if isinstance(msg, protocol.Error):
                    raise SutError(f"worker {worker.wid} failed in {msg.request}: "
                                   f"{msg.message}\n{msg.traceback}")
            elif worker.proc.poll() is not None:
                break
        code = worker.proc.poll()
        raise SutError(f"worker {worker.wid} did not answer {event.kind!r} (exit code "
                       f"{code}); its log ends:\n{log_tail(worker.log)}")

    def stop(self) -> None:
        """Undeploy: every worker leaves; one stopped mid-run reads no request until its
        run ends, so it is killed."""
        for worker in self.workers:
            if worker.running:
                worker.proc.kill()
            with contextlib.suppress(OSError):
                worker.conn.send(protocol.Stop())
        deadline = time.monotonic() + 10
        for worker in self.workers:
            leave(worker, max(0.1, deadline - time.monotonic()))
        self.workers = []

    # ------------------------------------------------------------------ setup

    def begin(self, workload: Workload) -> None:
        """A new scenario: its records start empty."""
        self.workload = workload
        self.run_request = None
        self.records = {}
        self.kills = []
        self.discarded = 0
        self.groups = []

    def setup(self, study: optuna.Study | None, request: protocol.Setup) -> None:
        """Every worker sets up for the scenario's study (``await_ready`` waits for them);
        an ask-and-tell controller's study lives in the controller (None)."""
        self.study = study
        self.setup_request = request
        for worker in self.workers:
            worker.conn.send(request)

    def await_ready(self) -> None:
        for worker in self.workers:
            self.expect(worker, protocol.Ready)

    # ------------------------------------------------------------------ run

    def start_run(self, request: protocol.Run) -> None:
        self.run_request = request
        self._next_check = 0.0
        for worker in self.workers:
            worker.conn.send(request)
            worker.running = True

    def evaluate(self, worker: WorkerProcess, request: protocol.Evaluate) -> None:
        """Hand one trial to an idle worker (an ask-and-tell run)."""
        worker.conn.send(request)
        worker.running = True

    def idle(self) -> list[WorkerProcess]:
        """Workers with nothing to do (an ask-and-tell run hands them trials)."""
        return [w for w in self.workers if not w.running]

    def restart_idle(self) -> None:
        """Workers whose run ended take part again (the study has new work: a lost remote
        worker's trial, re-queued)."""
        assert self.run_request is not None
        for worker in self.workers:
            if not worker.running:
                worker.conn.send(self.run_request)
                worker.running = True

    def busy(self) -> bool:
        """Whether a worker is still optimizing."""
        return any(w.running for w in self.workers)

    def step(self, progress: Progress) -> None:
        """One turn of the run: receive what the workers sent (waiting for it at most one
        watchdog interval), and run the watchdog when it is due."""
        conns = [w.conn for w in self.workers if w.running]
        if not conns:  # only workers the sockets do not reach are running
            time.sleep(WATCHDOG_INTERVAL_S)
        for conn in wait(conns, timeout=WATCHDOG_INTERVAL_S) if conns else ():
            worker = next(w for w in self.workers if w.conn is conn)
            self._receive(worker, progress)
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + WATCHDOG_INTERVAL_S
            self._watchdog(progress)
            for worker in self.workers:
                if worker.running and worker.proc.poll() is not None:
                    self._drain(worker, progress)
                    self._on_death(worker, f"worker exited with code {worker.proc.poll()}")
        progress.running = sum(len(w.inflight) for w in self.workers)

    @contextlib.contextmanager
    def interruptible(self, progress: Progress) -> Iterator[None]:
        """A run's loop: on Ctrl-C (or SIGTERM, ``pytest_basht.signals``) take what the
        workers sent, record the trials in flight as failed, and let the interrupt go on."""
        try:
            yield
        except KeyboardInterrupt as exc:
            for worker in self.workers:
                self._drain(worker, progress)
            self._abandon(f"interrupted while it ran ({exc or 'KeyboardInterrupt'})")
            raise

    def trials(self) -> list[TrialRecord]:
        return [self.records[n] for n in sorted(self.records)]

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

    def _receive(self, worker: WorkerProcess, progress: Progress) -> None:
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

    def _drain(self, worker: WorkerProcess, progress: Progress) -> None:
        """Take what a worker sent before it was killed or the run stopped (a trial it
        finished just then is a measurement, not a loss)."""
        with contextlib.suppress(EOFError, OSError, SutError):
            while worker.running and worker.conn.poll():
                self._handle(worker, worker.conn.recv(), progress)

    def _handle(self, worker: WorkerProcess, msg: protocol.Event, progress: Progress) -> None:
        match msg:
            case protocol.TrialStarted():
                worker.inflight[msg.number] = InFlight(msg.number, msg.params, msg.start_ns)
            case protocol.SpanRecorded():
                span = Span.from_dict(msg.span)
                if span.trial in worker.inflight:
                    worker.inflight[span.trial].spans.append(span)
            case protocol.Reported():
                if msg.number in worker.inflight:
                    worker.inflight[msg.number].intermediate.append(msg.value)
                if self.on_report is not None:
                    self.on_report(worker, msg)
            case protocol.GroupTrained():
                self.groups.append(msg.group)
            case protocol.TrialFinished():
                self._finish(worker, TrialRecord.from_dict(msg.record), progress)
            case protocol.Evaluated():
                worker.running = False
                self._finish(worker, TrialRecord.from_dict(msg.record), progress)
            case protocol.RunDone():
                worker.running = False
                self.discarded += msg.discarded
            case protocol.Error():
                worker.running = False
                raise SutError(f"worker {worker.wid} failed in {msg.request}: "
                               f"{msg.message}\n{msg.traceback}")

    def _finish(self, worker: WorkerProcess, record: TrialRecord, progress: Progress) -> None:
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

    def halt(self, reason: str, progress: Progress) -> None:
        """Stop every trial in flight now (killing its worker): each is recorded
        ``pruned`` with ``reason``, its value so far and (when the workload needs them)
        its costs from what it streamed; the slots are refilled."""
        for worker in list(self.workers):
            if worker.running and worker.inflight:
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait()
                self._drain(worker, progress)
                self._on_death(worker, reason, stopped=True)

    def _on_death(self, worker: WorkerProcess, reason: str, *, stopped: bool = False) -> None:
        """Record the trials in flight as failed (``stopped``: pruned on purpose), mark
        them in the study (an ask-and-tell controller reads them from the records), refill
        the slot."""
        assert self.setup_request is not None
        worker.running = False
        worker.conn.close()
        lost_any = bool(worker.inflight)
        detail = reason if stopped or "watchdog" in reason or "timeout" in reason else (
            f"{reason}; log: {log_tail(worker.log)[-300:]}")
        for lost in worker.inflight.values():
            end, cpu = mono_ns(), sum(s.cpu_s for s in lost.spans)
            told = None
            if stopped and self.workload is not None and objectives.needed(self.workload):
                told = objectives.trial_cost(self.workload, (end - lost.start_ns) / 1e9,
                                             cpu).to_dict()
            self.records[lost.number] = TrialRecord(
                number=lost.number, params=lost.params,
                state="pruned" if stopped else "failed",
                value=lost.intermediate[-1] if stopped and lost.intermediate else None,
                worker=worker.wid, start_ns=lost.start_ns, end_ns=end,
                intermediate=lost.intermediate, spans=lost.spans, cpu_s=cpu, error=detail,
                told=told)
            if self.study is not None:
                state = (optuna.trial.TrialState.PRUNED if stopped
                         else optuna.trial.TrialState.FAIL)
                with contextlib.suppress(ValueError, RuntimeError):  # it told before dying
                    self.study.tell(lost.number, state=state)
        worker.inflight = {}
        others_running = any(w.running for w in self.workers if w is not worker)
        replacement = self.spawn(worker.wid)
        replacement.respawns = worker.respawns + 1
        self.workers[self.workers.index(worker)] = replacement
        self.expect(replacement, protocol.Hello)
        replacement.conn.send(self.setup_request)
        self.expect(replacement, protocol.Ready)
        if (others_running or lost_any) and self.run_request is not None:
            replacement.conn.send(self.run_request)
            replacement.running = True

    # ------------------------------------------------------------------ test

    def test(self, artifact: Path) -> float:
        """Evaluate a saved model on the first worker; without one (every slot remote), on
        a worker process started for the test and stopped after it."""
        temporary = None
        if self.workers:
            tester = self.workers[0]
        else:
            assert self.setup_request is not None
            tester = temporary = self.spawn(0)
            self.expect(tester, protocol.Hello)
            tester.conn.send(self.setup_request)
            self.expect(tester, protocol.Ready)
        try:
            tester.conn.send(protocol.Test(str(artifact)))
            return float(self.expect(tester, protocol.TestDone).score)
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    temporary.conn.send(protocol.Stop())
                leave(temporary, 10)

    def retrain(self, shares: list[list[dict[str, Any]]], artifacts: Path
                ) -> list[dict[str, Any]]:
        """Train each worker's share of ``{number, params}`` configurations at full width,
        outside the study (``protocol.Retrain``); one result per configuration."""
        pairs = list(zip(self.workers, shares, strict=False))
        for worker, share in pairs:
            worker.conn.send(protocol.Retrain(share, str(artifacts)))
        return [r for worker, _ in pairs
                for r in self.expect(worker, protocol.Retrained, timeout=math.inf).results]

    # ------------------------------------------------------------------ metrics

    @property
    def respawns(self) -> int:
        return sum(x.respawns for x in self.workers)

    def limits(self, w: WorkersSpec) -> dict[str, Any]:
        """The cores, memory caps and accelerator the workers were given, and kept to."""
        peaks = [round(x.peak_rss / 2**20, 1) for x in self.workers]
        device = self.setup_request.device if self.setup_request is not None else "cpu"
        return {
            "cpu": cpu_record(self.plan, [affinity_of(x.proc.pid) for x in self.workers]),
            "memory": memory_record(w.memory_mb, w.count, peaks, self.kills, any(
                tree_rss_bytes(x.proc.pid) > 0 for x in self.workers)),
            "accelerator": accelerator_record(w.accelerator, device, w.count),
        }


def leave(worker: WorkerProcess, timeout: float) -> None:
    """Wait for a worker asked to stop to exit (killed past ``timeout``), and close it."""
    try:
        worker.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait()
    worker.conn.close()

"""The controller's side of a distributed deployment's remote slots: the shared store, the
controller's beat, the ``basht worker`` processes that joined, and their trials.

``DistributedOptunaSUT`` (``sut.distributed``) composes it with the local worker pool. It
opens the deployment in the store (its row, Optuna's schema, the artifact store) and
beats for as long as it lives; it waits until every remote slot holds a worker, announces
each scenario and waits until they have set up; during a run it reads the workers' rows
(new joiners, errors, workers gone silent: their slots are freed for replacements) and
turns their finished trials into records on the controller's clock; at undeploy it lets
them leave, takes their last energy, and deletes the deployment's studies and rows.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

import pytest_basht.db as db
from pytest_basht.records import TrialRecord
from pytest_basht.search import trial_cap
from pytest_basht.spend import limits_of
from pytest_basht.sut import store as store_mod
from pytest_basht.sut.base import Progress, SutError
from pytest_basht.sut.fleet import FleetMeter, shift_span, shift_trial
from pytest_basht.sut.optuna_options import StoreOptions
from pytest_basht.urls import redact
from pytest_basht.workload import WorkersSpec, Workload

POLL_S = 0.5
LEAVE_S = 10.0


@dataclass
class JoinedWorker:
    """A joined ``basht worker`` as the controller knows it."""

    id: str
    slot: int
    host: str
    pid: int
    shift_ns: int  # its monotonic clock onto ours
    joined_utc: float
    state: str = "joined"
    lost: str | None = None
    trials: int = 0


class RemoteSlots:
    """The ``count`` worker slots that ``basht worker`` processes fill, on any host."""

    def __init__(self, opts: StoreOptions, count: int, offset_ns: int) -> None:
        assert opts.storage is not None
        self.opts = opts
        self.url = opts.storage
        self.deployment = opts.study
        self.count = count
        self.offset_ns = offset_ns
        self.store: store_mod.FleetStore | None = None
        self.artifact_store: Any = None
        self.joined: dict[str, JoinedWorker] = {}
        self.records: dict[int, TrialRecord] = {}
        self.notes: list[str] = []
        self.seq = 0
        self.studies: list[str] = []
        self.done = True
        self.energy_cursor = 0
        self._next_poll = 0.0
        self._alone_since: float | None = None
        self._rows: list[store_mod.WorkerRow] = []
        self._rdb: optuna.storages.BaseStorage | None = None
        self._beating = threading.Event()
        self._beat_thread: threading.Thread | None = None

    def storage(self) -> optuna.storages.BaseStorage:
        """Optuna's storage in the database, with the heartbeat on (opened once)."""
        if self._rdb is None:
            h = self.opts.heartbeat
            self._rdb = store_mod.rdb_storage(self.url, h["heartbeat_s"], h["grace_s"],
                                              h["retries"])
        return self._rdb

    # ------------------------------------------------------------------ deploy

    def open(self, workload: Workload, local: int) -> None:
        """The schema, the deployment's row (and a dead controller's leftovers cleared), the
        artifact store, and the controller's beat."""
        self.store = store_mod.FleetStore(self.url, self.deployment)
        try:
            self.store.create_schema()
            storage = self.storage()  # creates (or checks) Optuna's schema
        except Exception as exc:
            raise SutError(f"storage {db.shown(self.url)}: {type(exc).__name__}: "
                           f"{redact(str(exc))}") from None
        settings = {"heartbeat": self.opts.heartbeat, "artifacts": self.opts.artifacts,
                    "workload": workload.given, "source": workload.source, "poll_s": POLL_S}
        try:
            self.notes += self.store.open(slots=workload.workers.count, local=local,
                                          settings=settings)
        except store_mod.StoreError as exc:
            raise SutError(str(exc)) from None
        self._delete_studies(storage, leftovers=True)
        self.artifact_store = store_mod.artifact_store(self.store, self.opts.artifacts)
        self._beating.clear()
        self._beat_thread = threading.Thread(target=self._beat, args=(self.store,),
                                             name="basht-controller-beat", daemon=True)
        self._beat_thread.start()

    def _beat(self, store: store_mod.FleetStore) -> None:
        """The controller's beat, for as long as the deployment lives: its workers leave a
        controller that died, and a new one may take its name."""
        while not self._beating.wait(store_mod.CONTROLLER_BEAT_S):
            with contextlib.suppress(Exception):  # a hiccup: the next beat tries again
                store.controller_beat()

    def await_joined(self) -> None:
        self._await(lambda r: r.state != "joined", "join and load the trainable")

    def _await(self, ok: Callable[[JoinedWorker], bool], what: str) -> None:
        """Wait until every remote slot holds a worker for which ``ok`` holds."""
        deadline = time.monotonic() + self.opts.join_timeout_s
        while True:
            self.refresh()
            live = [r for r in self.joined.values() if r.lost is None]
            errors = [r for r in live if r.state == "error" and self._row_seq(r) == self.seq]
            if errors:
                raise SutError(self._worker_error(errors[0]))
            if len([r for r in live if ok(r)]) >= self.count:
                return
            if time.monotonic() > deadline:
                raise SutError(
                    f"{len(live)} of {self.count} remote workers did "
                    f"{what} within {self.opts.join_timeout_s:g} s (sut.options."
                    f"join_timeout_s); start them on any host with: basht worker --storage "
                    f"{db.shown(self.url)} --study {self.deployment}")
            time.sleep(POLL_S / 2)

    def _worker_error(self, remote: JoinedWorker) -> str:
        row = next((w for w in self._rows if w.id == remote.id), None)
        return (f"remote worker in slot {remote.slot} ({remote.host} pid {remote.pid}) "
                f"failed: {row.error if row else 'unknown error'}")

    def refresh(self) -> None:
        """Read the workers' rows: new joiners, states, and workers gone silent."""
        assert self.store is not None
        self._rows = self.store.workers()
        now = time.time()
        for row in self._rows:
            remote = self.joined.get(row.id)
            if remote is None:
                if row.slot is None:
                    continue
                remote = self.joined[row.id] = JoinedWorker(
                    row.id, row.slot, row.host, row.pid, row.offset_ns - self.offset_ns,
                    row.beat)
            remote.state = row.state
            if remote.lost is None and row.state == "lost":
                remote.lost = row.error or "lost"
            elif (remote.lost is None and row.state not in ("left", "lost")
                  and now - row.beat > self.opts.grace_s):
                remote.lost = (f"no beat for {now - row.beat:.0f} s (grace {self.opts.grace_s}"
                               f" s): its slot {remote.slot} is free for a replacement")
                self.store.mark_lost(row.id, remote.lost)
                self.notes.append(f"remote worker in slot {remote.slot} ({remote.host} pid "
                                  f"{remote.pid}) lost: {remote.lost}")

    def _row_seq(self, remote: JoinedWorker) -> int:
        row = next((w for w in self._rows if w.id == remote.id), None)
        return row.seq if row is not None else -1

    # ------------------------------------------------------------------ setup

    def new_study(self, setups: int) -> str:
        """The name of the deployment's next scenario study (a dead controller's leftover
        of that name deleted)."""
        name = f"{self.deployment}.{setups}"
        self.studies.append(name)
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=self.storage())
        return name

    def begin(self) -> None:
        """A new scenario: its records start empty."""
        self.records = {}

    def announce(self, seq: int, study: str, workload: Workload) -> None:
        """The scenario the remote workers are to set up for, by name (each looks the
        names up in its own registry)."""
        assert self.store is not None
        self.seq = seq
        self.store.announce(seq, {
            "seq": seq, "study": study, "workload": workload.given,
            "source": workload.source, "model": workload.model.name,
            "sampler": workload.search.sampler, "pruner": workload.search.pruner,
            "seed": workload.seed, "cap": trial_cap(workload), "limits": limits_of(workload),
            "device": "cuda" if workload.workers.accelerator == "gpu" else "cpu"})

    def await_ready(self) -> None:
        self._await(lambda r: r.state in ("ready", "running", "idle")
                    and self._row_seq(r) == self.seq, "set up")

    # ------------------------------------------------------------------ run

    def start_run(self, started_s: float) -> None:
        """The run starts (``started_s``, wall clock: the remote workers count the
        workload's budget from it)."""
        assert self.store is not None
        self.done = self.count == 0
        self._alone_since = None
        self.store.start_run(started_s)

    def end_run(self) -> None:
        assert self.store is not None
        self.store.set_phase("done")

    def due(self) -> bool:
        """Whether the run has remote work to look at now (once every ``POLL_S``)."""
        now = time.monotonic()
        if self.done or now < self._next_poll:
            return False
        self._next_poll = now + POLL_S
        return True

    def poll(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """Fail the trials of silent workers (Optuna's heartbeat), read the workers' rows
        (a worker's error ends the run), and return the study's trials."""
        with _quiet():
            optuna.storages.fail_stale_trials(study)
        self.refresh()
        failed = [r for r in self.joined.values() if r.lost is None and r.state == "error"
                  and self._row_seq(r) == self.seq]
        if failed:
            raise SutError(self._worker_error(failed[0]))
        return study.get_trials(deepcopy=False)

    def check_alone(self, local_busy: bool) -> None:
        """A run whose every worker is gone waits join_timeout_s for a replacement."""
        now = time.monotonic()
        live = [r for r in self.joined.values() if r.lost is None]
        if live or local_busy:
            self._alone_since = None
            return
        if self._alone_since is None:
            self._alone_since = now
        elif now - self._alone_since > self.opts.join_timeout_s:
            raise SutError(f"every worker of deployment {self.deployment!r} is gone and none "
                           f"joined within {self.opts.join_timeout_s:g} s: "
                           + "; ".join(r.lost or "" for r in self.joined.values()))

    def close_run(self) -> None:
        """The study is done: close the run, and wait (a few seconds at most) for the
        remote workers to finish what they began."""
        self.end_run()
        deadline = time.monotonic() + max(LEAVE_S, 2 * self.opts.heartbeat_s)
        while time.monotonic() < deadline:
            self.refresh()
            busy = [r for r in self.joined.values()
                    if r.lost is None and r.state == "running"]
            if not busy:
                break
            time.sleep(POLL_S / 2)
        self.done = True

    def collect(self, trials: list[optuna.trial.FrozenTrial], workload: Workload,
                progress: Progress | None) -> None:
        """Turn the remote workers' finished trials into records (once each)."""
        for t in trials:
            start = t.user_attrs.get("basht:start")
            if not isinstance(start, dict) or start.get("number") != t.number:
                continue  # a local worker's trial, or one never begun (a copied retry)
            if t.number in self.records or not t.state.is_finished():
                continue
            remote = self.joined.get(str(start.get("worker")))
            if remote is None:
                continue
            record = t.user_attrs.get("basht:record")
            if isinstance(record, dict):
                trial = shift_trial(record, remote.shift_ns, remote.slot)
            else:
                trial = self._lost_trial(t, start, remote)
            remote.trials += 1
            self.records[t.number] = trial
            if progress is not None:
                progress.count(trial, workload.goal)

    def _lost_trial(self, t: optuna.trial.FrozenTrial, start: dict[str, Any],
                    remote: JoinedWorker) -> TrialRecord:
        """A trial whose worker died: what it recorded before, failed."""
        spans = [shift_span(s, remote.shift_ns) for s in t.user_attrs.get("basht:spans", [])]
        for s in spans:
            s.worker = remote.slot
        start_ns = int(start["start_ns"]) + remote.shift_ns
        ended = max([s.end_ns for s in spans], default=start_ns)
        if t.datetime_complete is not None:
            # failed by the heartbeat: the worker stopped at most grace_s before that
            failed_at = int(t.datetime_complete.timestamp() * 1e9) - self.offset_ns
            ended = max(ended, failed_at - self.opts.grace_s * 10**9)
        why = remote.lost or "its worker stopped beating"
        energy = [s.energy_j for s in spans if s.energy_j is not None]
        return TrialRecord(
            number=t.number, params=dict(t.params), state="failed", value=None,
            worker=remote.slot, start_ns=start_ns, end_ns=max(start_ns, ended),
            intermediate=[t.intermediate_values[k] for k in sorted(t.intermediate_values)],
            spans=spans, cpu_s=sum(s.cpu_s for s in spans),
            energy_j=sum(energy) if energy else None,
            error=f"worker lost (slot {remote.slot}, {remote.host} pid {remote.pid}): {why}; "
                  "Optuna's heartbeat failed the trial")

    def pull_energy(self, meter: FleetMeter | None) -> None:
        """The timeline points the remote workers sent since the last pull, into ``meter``."""
        if self.store is None or meter is None:
            return
        for chunk_id, worker, points in self.store.energy_since(self.energy_cursor):
            meter.add(worker, points)
            self.energy_cursor = chunk_id

    # ------------------------------------------------------------------ test

    def download(self, study: optuna.Study, number: int, artifacts: Path) -> Path | None:
        """A remote trial's model, from the deployment's artifact store."""
        frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == number),
                      None)
        artifact_id = frozen.user_attrs.get("basht:artifact") if frozen else None
        if not artifact_id:
            return None
        path = artifacts / f"remote-trial-{number}.pt"
        path.unlink(missing_ok=True)
        optuna.artifacts.download_artifact(artifact_store=self.artifact_store,
                                           file_path=str(path), artifact_id=artifact_id)
        return path

    # ------------------------------------------------------------------ metrics

    def describe(self, study: str, local: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The report's ``distributed`` section, and the workers' rows by id."""
        rows = {r.id: r for r in self.store.workers()} if self.store is not None else {}
        remote = []
        for r in self.joined.values():
            row = rows.get(r.id)
            remote.append({"slot": r.slot, "host": r.host, "pid": r.pid, "trials": r.trials,
                           "state": row.state if row else r.state, "lost": r.lost,
                           "clock_shift_ms": r.shift_ns / 1e6,
                           "meter": (row.info.get("meter") if row else None)})
        return {
            "storage": db.shown(self.url), "study": study,
            "deployment": self.deployment, "local_workers": local,
            "remote_slots": self.count, "remote_workers": remote,
            "heartbeat_s": self.opts.heartbeat_s, "grace_s": self.opts.grace_s,
            "retries": self.opts.retries, "artifacts": self.opts.artifacts,
            "notes": list(self.notes),
            "memory_enforced_remote": False,
            "how": "remote workers record spans, trials and their own meters' energy in the "
                   "database; their clocks are mapped onto the controller's through the "
                   "wall clocks; their memory caps are the host's (or pod's) to enforce"}, rows

    def amend_limits(self, limits: dict[str, Any], rows: dict[str, Any], w: WorkersSpec,
                     local: int) -> None:
        """The remote slots' limits: threads and cores each worker took; memory is the
        host's (or pod's) to cap."""
        remote = [{"slot": r.slot, "threads": rows[r.id].info.get("threads"),
                   "cores": rows[r.id].info.get("cores")}
                  for r in self.joined.values() if r.id in rows]
        cpu_how = ("remote workers: torch/OpenMP threads = min(wcpu, the cores the process "
                   "may use), or --threads; pinned only with --cores")
        memory_how = ("remote workers: not enforced by basht (the host's or pod's memory "
                      "limit applies; the watchdog guards local workers)")
        if local == 0:
            limits["cpu"] = {"asked_per_worker": w.cpu, "enforced": False, "how": cpu_how,
                             "remote": remote}
            limits["memory"] = {"asked_mb": w.memory_mb, "enforced": False,
                                "how": memory_how}
        else:
            limits["cpu"]["remote"] = remote
            limits["cpu"]["how"] += f"; {cpu_how}"
            limits["memory"]["how"] += f"; {memory_how}"
            limits["memory"]["enforced"] = False

    # ------------------------------------------------------------------ undeploy

    def close(self) -> None:
        """Stop beating and close the deployment: the workers stop taking trials."""
        self._beating.set()
        if self._beat_thread is not None:
            self._beat_thread.join(timeout=10)
            self._beat_thread = None
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.set_state("closed")

    def remove(self, meter: FleetMeter | None) -> None:
        """Let the workers leave (their last energy comes with them, into ``meter``), then
        delete the studies and the deployment's rows."""
        store = self.store
        if store is None:
            return
        try:
            self._await_leave()
            self.pull_energy(meter)
            self._delete_studies(self.storage(), leftovers=False)
            store.remove()
        finally:
            self.store = None
            store.close()
            if self._rdb is not None:
                with contextlib.suppress(Exception):
                    self._rdb.engine.dispose()  # type: ignore[attr-defined]
                self._rdb = None

    def _await_leave(self) -> None:
        deadline = time.monotonic() + max(LEAVE_S, 2 * self.opts.heartbeat_s)
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                self.refresh()
            if all(r.lost is not None or r.state == "left" for r in self.joined.values()):
                return
            time.sleep(POLL_S / 2)

    def _delete_studies(self, storage: optuna.storages.BaseStorage, *, leftovers: bool) -> None:
        """This deployment's scenario studies (``NAME.1``, ...), or a dead one's leftovers."""
        prefix = f"{self.deployment}."
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            name = summary.study_name
            if name.startswith(prefix) and name[len(prefix):].isdigit() and (
                    leftovers or name in self.studies):
                with contextlib.suppress(KeyError):
                    optuna.delete_study(study_name=name, storage=storage)


@contextlib.contextmanager
def _quiet() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield

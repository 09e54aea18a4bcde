"""The ``optuna`` SUT across machines: the study in a database, workers on any host.

``sut: {name: optuna, options: {storage: "postgresql+psycopg://basht@db/basht"}}`` (any
SQLAlchemy URL) keeps the study in Optuna's ``RDBStorage`` with its heartbeat on. Of the
wn worker slots, ``local_workers`` (default: all) are worker processes this controller
starts, as the journal variant does; the others are filled by ``basht worker --storage
URL --study NAME``, run on any host (``pytest_basht.sut.remote``).

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

import contextlib
import math
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from pytest_basht.energy.base import Allocation
from pytest_basht.errors import WorkloadError
from pytest_basht.records import TrialRecord
from pytest_basht.search import trial_cap
from pytest_basht.sut import store as store_mod
from pytest_basht.sut.base import Progress, SutContext, SutError, own_options
from pytest_basht.sut.fleet import FleetMeter, shift_span, shift_trial
from pytest_basht.sut.optuna import OptunaSUT, _Worker
from pytest_basht.workload import Workload

OPTIONS = {
    "storage": "SQLAlchemy URL of the study's database (no password: BASHT_STORAGE_PASSWORD, "
               "PGPASSWORD or ~/.pgpass)",
    "study": "the deployment's name, which `basht worker --study` joins (default: the "
             "workload's name)",
    "local_workers": "worker slots this controller fills with its own processes (default: "
                     "all); the others wait for `basht worker`",
    "heartbeat_s": "seconds between Optuna heartbeats of a running trial (default 5)",
    "grace_s": "seconds without a heartbeat after which a trial is failed and its worker "
               "lost (default 3 × heartbeat_s)",
    "retries": "times a lost worker's trial is re-queued with its parameters (Optuna's "
               "RetryFailedTrialCallback; default 0)",
    "join_timeout_s": "seconds deploy waits for remote workers to join, and a run without "
                      "workers for a replacement (default 600)",
    "artifacts": "where trained models go: database (default), or a directory every host "
                 "mounts",
}
POLL_S = 0.5
LEAVE_S = 10.0
MAX_HEARTBEAT_S = 3600


@dataclass(frozen=True)
class StoreOptions:
    storage: str | None = None
    study: str = ""
    local_workers: int = 0
    heartbeat_s: int = 5
    grace_s: int = 15
    retries: int = 0
    join_timeout_s: float = 600.0
    artifacts: str = "database"

    @property
    def heartbeat(self) -> dict[str, int]:
        return {"heartbeat_s": self.heartbeat_s, "grace_s": self.grace_s,
                "retries": self.retries}

    @classmethod
    def parse(cls, workload: Workload) -> StoreOptions:
        """The ``optuna`` SUT's options, validated (a WorkloadError names the key)."""
        src = workload.source
        opts = own_options(workload, "optuna", OPTIONS,
                           strict="storage" in workload.sut.options)
        wn = workload.workers.count
        if "storage" not in opts:
            extra = sorted(set(opts))
            if extra:
                raise WorkloadError(src, f"sut.options.{extra[0]}",
                                    "sut.options.storage with it (it applies to a study in "
                                    "a database)")
            return cls(local_workers=wn)
        storage = _storage_url(opts["storage"], src)
        study = opts.get("study", workload.name)
        if not isinstance(study, str) or not study.strip() or len(study) > 200:
            raise WorkloadError(src, "sut.options.study", "a name of 1 to 200 characters",
                                study)
        local = _integer(opts, "local_workers", wn, 0, wn, src)
        heartbeat = _integer(opts, "heartbeat_s", 5, 1, MAX_HEARTBEAT_S, src)
        grace = _integer(opts, "grace_s", 3 * heartbeat, heartbeat + 1, 10 * MAX_HEARTBEAT_S,
                         src)
        retries = _integer(opts, "retries", 0, 0, 100, src)
        join = opts.get("join_timeout_s", 600.0)
        if (isinstance(join, bool) or not isinstance(join, (int, float))
                or not math.isfinite(join) or join <= 0):
            raise WorkloadError(src, "sut.options.join_timeout_s", "seconds > 0", join)
        artifacts = opts.get("artifacts", "database")
        if not isinstance(artifacts, str) or not artifacts.strip():
            raise WorkloadError(src, "sut.options.artifacts",
                                "database, or a directory every host mounts", artifacts)
        if local < wn and workload.search.grouped:
            key = "search.fusion" if workload.search.fusion > 1 else "search.scaling"
            raise WorkloadError(src, key, "1 with remote workers (fused and scaled trials "
                                "run on local workers: set sut.options.local_workers to "
                                f"workers.count, {wn})", getattr(workload.search, key[7:]))
        return cls(storage, study.strip(), local, heartbeat, grace, retries, float(join),
                   artifacts.strip())


def _storage_url(value: Any, src: str) -> str:
    key = "sut.options.storage"
    expected = ("an SQLAlchemy URL, e.g. postgresql+psycopg://user@host:5432/basht or "
                "sqlite:///basht.db")
    if not isinstance(value, str) or not value.strip():
        raise WorkloadError(src, key, expected, value)
    try:
        url = store_mod.parse_url(value.strip())
    except Exception as exc:  # ArgumentError, NoSuchModuleError, ImportError of a driver
        raise WorkloadError(src, key, f"{expected} whose driver is installed "
                            f"({type(exc).__name__}: {exc})", store_mod.shown(value)) from None
    if url.password is not None:
        raise WorkloadError(src, key, "a URL without a password (a workload is copied into "
                            "every report): set BASHT_STORAGE_PASSWORD, PGPASSWORD or "
                            "~/.pgpass", store_mod.shown(value))
    return value.strip()


def _integer(opts: dict[str, Any], key: str, default: int, low: int, high: int,
             src: str) -> int:
    value = opts.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WorkloadError(src, f"sut.options.{key}", f"an integer from {low} to {high}",
                            value)
    return value


@dataclass
class _Remote:
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


class DistributedOptunaSUT(OptunaSUT):
    name = "optuna"

    def __init__(self, workload: Workload, ctx: SutContext) -> None:
        self.opts = StoreOptions.parse(workload)
        super().__init__(workload, ctx)
        assert self.opts.storage is not None
        self.url = self.opts.storage
        self.deployment = self.opts.study
        self.store: store_mod.FleetStore | None = None
        self.artifact_store: Any = None
        self.remotes: dict[str, _Remote] = {}
        self.meter: FleetMeter | None = None
        self.offset_ns = (ctx.monitor.wall_offset_ns if ctx.monitor is not None
                          else store_mod.wall_offset_ns())
        self.remote_done = True
        self.seq = 0
        self.notes: list[str] = []
        self.energy_cursor = 0
        self.temp_tester: _Worker | None = None
        self.studies: list[str] = []
        self._next_poll = 0.0
        self._alone_since: float | None = None
        self._scenario: dict[str, Any] = {}
        self._rows: list[store_mod.WorkerRow] = []
        self._rdb: optuna.storages.BaseStorage | None = None
        self._beating = threading.Event()
        self._beat_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ slots and meter

    def local_count(self) -> int:
        return self.opts.local_workers

    @property
    def remote_count(self) -> int:
        return self.deployed_for.workers.count - self.opts.local_workers

    def allocation(self) -> Allocation:
        """What this host holds: the local workers' cores and memory (remote slots are
        metered on their hosts)."""
        local = self.local_count()
        if local == 0:
            return Allocation(vcpus=0, memory_gb=0.0, slots=0)
        base = super().allocation()
        w = self.deployed_for.workers
        return Allocation(vcpus=base.vcpus, memory_gb=min(base.memory_gb,
                                                          local * w.memory_mb / 1024),
                          slots=local)

    def own_meter(self) -> FleetMeter | None:
        if self.remote_count == 0 or self.ctx.monitor is None:
            return None  # every slot is under the live meter: the runner's usual path
        if self.meter is None:
            self.meter = FleetMeter(self.ctx.monitor, self.deployed_for,
                                    local_slots=self.local_count(),
                                    remote_slots=self.remote_count, refresh=self._pull_energy)
        return self.meter

    def _pull_energy(self) -> None:
        if self.store is None or self.meter is None:
            return
        for chunk_id, worker, points in self.store.energy_since(self.energy_cursor):
            self.meter.add(worker, points)
            self.energy_cursor = chunk_id

    # ------------------------------------------------------------------ deploy

    def deploy(self) -> None:
        """The schema, the deployment's row, the local workers; then every remote slot."""
        self.store = store_mod.FleetStore(self.url, self.deployment)
        try:
            self.store.create_schema()
            storage = self._storage()  # creates (or checks) Optuna's schema
        except Exception as exc:
            raise SutError(f"storage {store_mod.shown(self.url)}: {type(exc).__name__}: "
                           f"{exc}") from None
        w = self.deployed_for
        settings = {"heartbeat": self.opts.heartbeat, "artifacts": self.opts.artifacts,
                    "workload": w.given, "source": w.source, "poll_s": POLL_S}
        try:
            self.notes += self.store.open(slots=w.workers.count, local=self.local_count(),
                                          settings=settings)
        except store_mod.StoreError as exc:
            raise SutError(str(exc)) from None
        self._delete_studies(storage, leftovers=True)
        self.artifact_store = store_mod.artifact_store(self.store, self.opts.artifacts)
        self._beating.clear()
        self._beat_thread = threading.Thread(target=self._beat, args=(self.store,),
                                             name="basht-controller-beat", daemon=True)
        self._beat_thread.start()
        super().deploy()
        self._await_remote(lambda r: r.state != "joined", "join and load the trainable")

    def _beat(self, store: store_mod.FleetStore) -> None:
        """The controller's beat, for as long as the deployment lives: its workers leave a
        controller that died, and a new one may take its name."""
        while not self._beating.wait(store_mod.CONTROLLER_BEAT_S):
            with contextlib.suppress(Exception):  # a hiccup: the next beat tries again
                store.controller_beat()

    def _await_remote(self, ok: Any, what: str) -> None:
        """Wait until every remote slot holds a worker for which ``ok`` holds."""
        deadline = time.monotonic() + self.opts.join_timeout_s
        while True:
            self._refresh_workers()
            live = [r for r in self.remotes.values() if r.lost is None]
            errors = [r for r in live if r.state == "error" and self._row_seq(r) == self.seq]
            if errors:
                raise SutError(self._worker_error(errors[0]))
            if len([r for r in live if ok(r)]) >= self.remote_count:
                return
            if time.monotonic() > deadline:
                raise SutError(
                    f"{len(live)} of {self.remote_count} remote workers did "
                    f"{what} within {self.opts.join_timeout_s:g} s (sut.options."
                    f"join_timeout_s); start them on any host with: basht worker --storage "
                    f"{store_mod.shown(self.url)} --study {self.deployment}")
            time.sleep(POLL_S / 2)

    def _worker_error(self, remote: _Remote) -> str:
        row = next((w for w in self._rows if w.id == remote.id), None)
        return (f"remote worker in slot {remote.slot} ({remote.host} pid {remote.pid}) "
                f"failed: {row.error if row else 'unknown error'}")

    def _refresh_workers(self) -> None:
        """Read the workers' rows: new joiners, states, and workers gone silent."""
        assert self.store is not None
        self._rows = self.store.workers()
        now = time.time()
        for row in self._rows:
            remote = self.remotes.get(row.id)
            if remote is None:
                if row.slot is None:
                    continue
                remote = self.remotes[row.id] = _Remote(
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

    # ------------------------------------------------------------------ setup

    def _study_name(self, workload: Workload) -> str:
        name = f"{self.deployment}.{self.setups}"
        self.studies.append(name)
        with contextlib.suppress(KeyError):  # a leftover of a controller that died
            optuna.delete_study(study_name=name, storage=self._storage())
        return name

    def _storage(self) -> optuna.storages.BaseStorage:
        if self._rdb is None:
            h = self.opts.heartbeat
            self._rdb = store_mod.rdb_storage(self.url, h["heartbeat_s"], h["grace_s"],
                                              h["retries"])
        return self._rdb

    def _setup_others(self, workload: Workload) -> None:
        assert self.store is not None
        self.seq = self.setups
        self._scenario = {
            "seq": self.seq, "study": self.study_name, "workload": workload.given,
            "source": workload.source, "model": workload.model.name,
            "sampler": workload.search.sampler, "pruner": workload.search.pruner,
            "seed": workload.seed, "cap": trial_cap(workload),
            "device": "cuda" if workload.workers.accelerator == "gpu" else "cpu"}
        self.store.announce(self.seq, self._scenario)

    def _others_ready(self) -> None:
        self._await_remote(lambda r: r.state in ("ready", "running", "idle")
                           and self._row_seq(r) == self.seq, "set up")

    def _row_seq(self, remote: _Remote) -> int:
        row = next((w for w in self._rows if w.id == remote.id), None)
        return row.seq if row is not None else -1

    # ------------------------------------------------------------------ run

    def _run_msg(self) -> dict[str, Any]:
        msg = super()._run_msg()
        del msg["journal"]
        msg.update(storage=self.url, heartbeat=self.opts.heartbeat)
        return msg

    def run(self) -> list[TrialRecord]:
        assert self.store is not None
        self.remote_done = self.remote_count == 0
        self._alone_since = None
        self.store.set_phase("run")
        try:
            return super().run()
        finally:
            self.store.set_phase("done")

    def _busy(self) -> bool:
        return super()._busy() or not self.remote_done

    def _poll(self, progress: Progress) -> None:
        now = time.monotonic()
        if self.remote_done or now < self._next_poll:
            return
        self._next_poll = now + POLL_S
        assert self.study is not None and self.store is not None
        with _quiet():
            optuna.storages.fail_stale_trials(self.study)
        self._refresh_workers()
        failed = [r for r in self.remotes.values() if r.lost is None and r.state == "error"
                  and self._row_seq(r) == self.seq]
        if failed:
            raise SutError(self._worker_error(failed[0]))
        trials = self.study.get_trials(deepcopy=False)
        self._collect(trials, progress)
        waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
        if waiting:  # a lost worker's trial, re-queued: idle local workers take it
            for worker in self.workers:
                if not worker.running:
                    worker.conn.send(self._run_msg())
                    worker.running = True
        if not super()._busy() and self._study_done(trials):
            self.store.set_phase("done")
            self._settle_remote()
            self.remote_done = True
            return
        self._check_alone(now)

    def _check_alone(self, now: float) -> None:
        """A run whose every worker is gone waits join_timeout_s for a replacement."""
        live = [r for r in self.remotes.values() if r.lost is None]
        if live or super()._busy():
            self._alone_since = None
            return
        if self._alone_since is None:
            self._alone_since = now
        elif now - self._alone_since > self.opts.join_timeout_s:
            raise SutError(f"every worker of deployment {self.deployment!r} is gone and none "
                           f"joined within {self.opts.join_timeout_s:g} s: "
                           + "; ".join(r.lost or "" for r in self.remotes.values()))

    def _study_done(self, trials: list[optuna.trial.FrozenTrial]) -> bool:
        """No trial running or waiting, and the sampler's work (the grid, or the trial
        budget) all done."""
        assert self.workload is not None
        active = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
        if any(t.state in active for t in trials):
            return False
        cap = trial_cap(self.workload)
        if cap is not None:
            return len([t for t in trials if t.number < cap]) >= cap
        factory = self.ctx.registry.get("samplers", self.workload.search.sampler)
        sampler = factory(self.workload, self.workload.seed)
        if isinstance(sampler, optuna.samplers.GridSampler):
            return sampler.is_exhausted(self.study)
        return True

    def _settle_remote(self) -> None:
        """After the run closed: wait (a few seconds at most) for the remote workers to
        finish what they began, then collect it."""
        assert self.study is not None
        deadline = time.monotonic() + max(LEAVE_S, 2 * self.opts.heartbeat_s)
        while time.monotonic() < deadline:
            self._refresh_workers()
            busy = [r for r in self.remotes.values()
                    if r.lost is None and r.state == "running"]
            if not busy:
                break
            time.sleep(POLL_S / 2)
        self._collect(self.study.get_trials(deepcopy=False), None)

    def _collect(self, trials: list[optuna.trial.FrozenTrial],
                 progress: Progress | None) -> None:
        """Turn the remote workers' finished trials into records (once each)."""
        assert self.workload is not None
        for t in trials:
            start = t.user_attrs.get("basht:start")
            if not isinstance(start, dict) or start.get("number") != t.number:
                continue  # a local worker's trial, or one never begun (a copied retry)
            if t.number in self.records or not t.state.is_finished():
                continue
            remote = self.remotes.get(str(start.get("worker")))
            if remote is None:
                continue
            record = t.user_attrs.get("basht:record")
            if isinstance(record, dict):
                trial = shift_trial(record, remote.shift_ns, remote.slot)
            else:
                trial = self._lost_trial(t, start, remote)
            remote.trials += 1
            self.records[t.number] = trial
            if self.meter is not None:
                self.meter.remote_trials.add(t.number)
            if progress is not None:
                progress.count(trial, self.workload.goal)

    def _lost_trial(self, t: optuna.trial.FrozenTrial, start: dict[str, Any],
                    remote: _Remote) -> TrialRecord:
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

    # ------------------------------------------------------------------ test

    def _artifact(self, best: TrialRecord) -> Path | None:
        local = super()._artifact(best)
        if local is not None and local.exists():
            return local
        assert self.study is not None
        frozen = next((t for t in self.study.get_trials(deepcopy=False)
                       if t.number == best.number), None)
        artifact_id = frozen.user_attrs.get("basht:artifact") if frozen else None
        if not artifact_id:
            return None
        path = self.artifacts / f"remote-trial-{best.number}.pt"
        path.unlink(missing_ok=True)
        optuna.artifacts.download_artifact(artifact_store=self.artifact_store,
                                           file_path=str(path), artifact_id=artifact_id)
        return path

    def _tester(self) -> _Worker:
        """A local worker; without one, a worker process started for the test."""
        if self.workers:
            return self.workers[0]
        worker = self._spawn(0)
        self._expect(worker, "hello")
        worker.conn.send(self._setup_msg)
        self._expect(worker, "ready")
        self.temp_tester = worker
        return worker

    def test(self, best: TrialRecord) -> float | None:
        try:
            return super().test(best)
        finally:
            tester, self.temp_tester = self.temp_tester, None
            if tester is not None:
                with contextlib.suppress(OSError):
                    tester.conn.send({"op": "stop"})
                try:
                    tester.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    tester.proc.kill()
                    tester.proc.wait()
                tester.conn.close()

    # ------------------------------------------------------------------ metrics

    def collect_metrics(self) -> dict[str, Any]:
        info = super().collect_metrics()
        rows = {r.id: r for r in self.store.workers()} if self.store is not None else {}
        remote = []
        for r in self.remotes.values():
            row = rows.get(r.id)
            remote.append({"slot": r.slot, "host": r.host, "pid": r.pid, "trials": r.trials,
                           "state": row.state if row else r.state, "lost": r.lost,
                           "clock_shift_ms": r.shift_ns / 1e6,
                           "meter": (row.info.get("meter") if row else None)})
        self._remote_limits(info["limits"], rows)
        info["distributed"] = {
            "storage": store_mod.shown(self.url), "study": self.study_name,
            "deployment": self.deployment, "local_workers": self.local_count(),
            "remote_slots": self.remote_count, "remote_workers": remote,
            "heartbeat_s": self.opts.heartbeat_s, "grace_s": self.opts.grace_s,
            "retries": self.opts.retries, "artifacts": self.opts.artifacts,
            "notes": list(self.notes),
            "memory_enforced_remote": False,
            "how": "remote workers record spans, trials and their own meters' energy in the "
                   "database; their clocks are mapped onto the controller's through the "
                   "wall clocks; their memory caps are the host's (or pod's) to enforce"}
        return info

    def _remote_limits(self, limits: dict[str, Any], rows: dict[str, Any]) -> None:
        """The remote slots' limits: threads and cores each worker took; memory is the
        host's (or pod's) to cap."""
        w = self.deployed_for.workers
        remote = [{"slot": r.slot, "threads": rows[r.id].info.get("threads"),
                   "cores": rows[r.id].info.get("cores")}
                  for r in self.remotes.values() if r.id in rows]
        cpu_how = ("remote workers: torch/OpenMP threads = min(wcpu, the cores the process "
                   "may use), or --threads; pinned only with --cores")
        memory_how = ("remote workers: not enforced by basht (the host's or pod's memory "
                      "limit applies; the watchdog guards local workers)")
        if self.local_count() == 0:
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

    def undeploy(self) -> None:
        """Close the deployment, stop the local workers, let the remote ones leave (their
        last energy comes with them), then delete the studies and the deployment's rows."""
        store = self.store
        self._beating.set()
        if self._beat_thread is not None:
            self._beat_thread.join(timeout=10)
            self._beat_thread = None
        if store is not None:
            with contextlib.suppress(Exception):
                store.set_state("closed")
        try:
            super().undeploy()
        finally:
            if store is not None:
                try:
                    self._await_leave()
                    self._pull_energy()
                    self._delete_studies(self._storage(), leftovers=False)
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
                self._refresh_workers()
            if all(r.lost is not None or r.state == "left" for r in self.remotes.values()):
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


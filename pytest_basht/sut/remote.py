"""``basht worker``: a worker of a distributed ``optuna`` deployment, on any host.

``basht worker --storage URL --study NAME`` waits for the deployment NAME to open in the
database at URL, takes a free worker slot, and then serves the deployment until it
closes: it loads the trainable (deploy), prepares its own copy of the data and sets up for
each scenario the controller announces (setup), and optimizes the scenario's study with
the workload's sampler and pruner (run). It runs Optuna's heartbeat for every trial, so a
worker that dies leaves its trial to be failed (and, with ``retries``, re-queued).

Everything it measures goes into the shared store as it happens: each trial's spans
(epoch by epoch, so a trial that dies keeps them), its record, its model (the deployment's
artifact store), and the cumulative timeline of its own energy meter — the same meter
selection as the controller's (``auto``: RAPL or NVML where present, else the labelled
estimate for the slot's vCPUs and memory). Trainables, samplers and pruners are looked up
by name in this host's own registry (built-ins, ``pytest_basht`` entry points, and the
``--plugin`` modules or files it is given), which ``basht worker`` builds (``wiring``) and
hands in: nothing is imported from the database. Each trial's events reach the store
through the worker protocol's outbox (``StoreSink``); the meter is ``energy.self_meter``.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest_basht.db as db
import pytest_basht.workdir as workdir
import pytest_basht.workload as wl
import pytest_basht.workload_files as workload_files
from pytest_basht.energy.base import MeterContext
from pytest_basht.energy.factory import check_energy
from pytest_basht.energy.self_meter import SelfMeter
from pytest_basht.errors import BashtUsageError
from pytest_basht.registry import Registry
from pytest_basht.sut import protocol
from pytest_basht.sut import store as store_mod
from pytest_basht.sut.limits import thread_env
from pytest_basht.sut.worker import Worker
from pytest_basht.urls import redact
from pytest_basht.workdir import WorkDir

EXIT_OK = 0
EXIT_NO_DEPLOYMENT = 3
EXIT_NO_SLOT = 4
EXIT_LOST = 5
EXIT_ORPHANED = 6


def log(message: str) -> None:
    print(f"basht worker: {redact(message)}", file=sys.stderr, flush=True)


class StoreSink:
    """The outbox of a remote worker's run: what a local worker sends over its socket,
    written into the shared store instead: spans (flushed with each epoch's report),
    records with their energy, the models."""

    def __init__(self, remote: RemoteWorker, storage: Any, study: str) -> None:
        self.remote = remote
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study)
        self.trial_ids: dict[int, int] = {}
        self.spans: dict[int, list[dict[str, Any]]] = {}

    def send(self, event: protocol.Event) -> None:
        match event:
            case protocol.TrialStarted():
                self._start(event)
            case protocol.SpanRecorded():
                if event.span.get("trial") in self.spans:
                    self.spans[event.span["trial"]].append(event.span)
            case protocol.Reported():
                self._flush(event.number)
            case protocol.TrialFinished():
                self._finish(event.record)

    def _start(self, event: protocol.TrialStarted) -> None:
        number = event.number
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        self.trial_ids[number] = trial_id
        self.spans[number] = []
        self.storage.set_trial_user_attr(trial_id, "basht:spans", [])
        self.storage.set_trial_user_attr(trial_id, "basht:start", {
            "number": number, "worker": self.remote.id, "start_ns": event.start_ns})
        self.remote.set_state("running")

    def _flush(self, number: int) -> None:
        if number not in self.trial_ids:
            return
        spans = [self.remote.meter.metered(s) for s in self.spans[number]]
        self.storage.set_trial_user_attr(self.trial_ids[number], "basht:spans", spans)

    def _finish(self, record: dict[str, Any]) -> None:
        number = record["number"]
        trial_id = self.trial_ids.get(number)
        if trial_id is None:
            return
        record = self.remote.meter.metered_trial(record)
        artifact = self.remote.artifacts / f"trial-{number}.pt"
        if record["state"] == "complete" and artifact.exists():
            self.remote.upload(self.storage, trial_id, artifact)
        self.storage.set_trial_user_attr(trial_id, "basht:record", record)
        self.spans.pop(number, None)
        self.remote.set_state("idle")


def meter_context() -> MeterContext:
    """Prometheus credentials from the environment (BASHT_PROMETHEUS_USER / _PASSWORD, or
    BASHT_PROMETHEUS_TOKEN), as the pytest side takes them."""
    env = os.environ
    auth = ((env["BASHT_PROMETHEUS_USER"], env.get("BASHT_PROMETHEUS_PASSWORD", ""))
            if env.get("BASHT_PROMETHEUS_USER") else None)
    return MeterContext(prometheus_auth=auth,
                        prometheus_token=env.get("BASHT_PROMETHEUS_TOKEN") or None)


class RemoteWorker:
    """One ``basht worker``: its slot in the deployment, its meter, its worker."""

    def __init__(self, url: str, study: str, registry: Registry, *, wait_s: float = 600.0,
                 threads: int | None = None, cores: Sequence[int] = (),
                 meter: str | None = None, meter_selector: str | None = None) -> None:
        self.url = url
        self.study = study
        self.registry = registry
        self.wait_s = wait_s
        self.threads_asked = threads
        self.cores = list(cores)
        self.energy_overrides = {k: v for k, v in (
            ("energy.meter", meter), ("energy.prometheus.selector", meter_selector)) if v}
        self.id = uuid.uuid4().hex
        self.store = store_mod.FleetStore(url, study)
        self.state = "joined"
        self.stopping = False
        self.closed = False
        self.orphaned = False
        self.lost = False
        self.phase = "idle"
        self.dep_seq = 0
        self.meter: Any = None  # a SelfMeter once joined
        self.slot: int | None = None
        workdir.sweep()  # what killed workers left in $TMPDIR
        self.work = WorkDir.create()
        self.home = self.work.path
        self.artifacts = self.home / "models"
        self.artifacts.mkdir()
        self._beat_stop = threading.Event()

    def upload(self, storage: Any, trial_id: int, path: Path) -> None:
        import optuna

        frozen = storage.get_trial(trial_id)
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=self.artifact_store, file_path=str(path), study_or_trial=frozen,
            storage=storage)
        storage.set_trial_user_attr(trial_id, "basht:artifact", artifact_id)

    # ------------------------------------------------------------------ state

    def set_state(self, state: str, **values: Any) -> None:
        self.state = state
        self._beat(state=state, **values)

    def _beat(self, **values: Any) -> None:
        row = self.store.beat(self.id, **values)
        if row is None or row.state == "lost":
            self.lost = True

    def _send_energy(self) -> None:
        points = self.meter.points()
        if points is not None:
            self.store.add_energy(self.id, points)

    def _beat_loop(self, interval: float) -> None:
        while not self._beat_stop.wait(interval):
            try:
                self._send_energy()
                if not self.lost:
                    self._beat()
            except Exception as exc:  # a database hiccup: the next beat tries again
                log(f"beat failed: {type(exc).__name__}: {exc}")

    def _read_deployment(self) -> Any:
        dep = self.store.deployment_row()
        if dep is None or dep.state != "open":
            self.closed = True
        elif dep.silent_s() > store_mod.CONTROLLER_STALE_S:
            self.closed = self.orphaned = True
        else:
            self.phase, self.dep_seq = dep.phase, dep.seq
        return dep

    def is_closed(self) -> bool:
        """Whether to start no more trials: the deployment or the scenario closed."""
        return self.closed or self.stopping or self.lost or self.phase == "done"

    # ------------------------------------------------------------------ lifecycle

    def wait_for_deployment(self) -> Any:
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                dep = self.store.deployment_row()
            except Exception as exc:  # the schema is not there yet, or the server not up
                dep, why = None, f"{type(exc).__name__}: {exc}"
            else:
                why = "not open yet"
            if (dep is not None and dep.state == "open"
                    and dep.silent_s() < store_mod.CONTROLLER_STALE_S):
                return dep
            if time.monotonic() > deadline or self.stopping:
                log(f"deployment {self.study!r} did not open within {self.wait_s:g} s ({why})")
                return None
            time.sleep(0.5)

    def main(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        dep = self.wait_for_deployment()
        if dep is None:
            return EXIT_NO_DEPLOYMENT
        settings = dep.settings
        workload = wl.from_mapping(settings["workload"], settings["source"])
        registry = self.registry
        registry.check(workload)
        w = workload.workers
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        if self.cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(self.cores))
            available = len(self.cores)
        threads = self.threads_asked or max(1, min(w.cpu, available))
        os.environ.update(thread_env(threads))  # before the trainable imports torch
        # this host's meter: the workload's energy section, with --meter / --meter-selector
        # (a pod's own Kepler series, say)
        metered = workload
        if self.energy_overrides:
            metered = wl.from_mapping(workload_files.apply_overrides(
                settings["workload"], self.energy_overrides, "basht worker"), "basht worker")
            check_energy(metered, registry.meters)
        self.meter = SelfMeter.start(registry.meters, metered, vcpus=threads,
                                     context=meter_context(), warn=log)
        monitor = self.meter.monitor
        self.artifact_store = store_mod.artifact_store(self.store, settings["artifacts"])
        self.heartbeat = settings["heartbeat"]
        self.poll_s = float(settings.get("poll_s", 0.5))
        info = {"meter": {"source": monitor.source, "measured": monitor.measured,
                          "selection": self.meter.selection.reason},
                "threads": threads, "cores": sorted(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity") else [], "python": sys.version.split()[0]}
        self.slot = self.store.join(self.id, info)
        if self.slot is None:
            log(f"deployment {self.study!r} has no free worker slot (wn = {dep.slots}, "
                f"{dep.local} of them local to the controller)")
            self.meter.stop()
            return EXIT_NO_SLOT
        log(f"joined deployment {self.study!r} in slot {self.slot} "
            f"(meter {monitor.source}, {threads} thread(s))")
        beat = threading.Thread(target=self._beat_loop, name="basht-beat", daemon=True,
                                args=(max(0.5, self.heartbeat["heartbeat_s"] / 2),))
        beat.start()
        try:
            trainable = registry.get("trainables", workload.model.name)
            self.worker = Worker(self.slot, threads)
            try:
                self.worker.preload(protocol.Preload(trainable))
            except Exception as exc:
                self.set_state("error", error=f"{type(exc).__name__}: {exc}")
                raise
            self.set_state("idle")
            self.serve()
        finally:
            self._beat_stop.set()
            beat.join(timeout=10)
            self.meter.stop()
            if not self.lost:
                self._send_energy()
                self.set_state("left")
            self.store.close()
        if self.lost:
            log("the controller declared this worker lost (it was silent too long); leaving")
            return EXIT_LOST
        if self.orphaned:
            log("the controller stopped beating (it died?); leaving")
            return EXIT_ORPHANED
        log(f"deployment {self.study!r} closed; left")
        return EXIT_OK

    def serve(self) -> None:
        done_seq = 0
        while True:
            self._read_deployment()
            if self.closed or self.stopping or self.lost:
                return
            scenario = self.store.deployment_row()
            if (scenario is not None and scenario.scenario is not None
                    and self.dep_seq > done_seq and self.phase in ("setup", "run")):
                self.scenario(scenario.scenario)
                done_seq = self.dep_seq
            time.sleep(self.poll_s)

    def scenario(self, sc: dict[str, Any]) -> None:
        """Set up for one scenario, wait for its run, run it until the controller closes it."""
        seq = int(sc["seq"])
        self.set_state("setup", seq=seq)
        try:
            workload = wl.from_mapping(sc["workload"], sc["source"])
            trainable = self.registry.get("trainables", sc["model"])
            data_dir = self.home / f"data-{seq}"
            data_dir.mkdir(exist_ok=True)
            data = trainable.prepare(workload, data_dir)
            self.worker.setup(protocol.Setup(workload, trainable, data, sc["device"]))
        except Exception as exc:
            self.set_state("error", error=redact(f"setup: {type(exc).__name__}: {exc}\n"
                                                 f"{traceback.format_exc()[-1500:]}"))
            log(f"setup of scenario {seq} failed: {exc}")
            return
        self.set_state("ready", seq=seq)
        while True:
            dep = self._read_deployment()
            if self.is_closed() or self.dep_seq != seq or self.phase == "run":
                break
            time.sleep(self.poll_s / 2)
        if self.phase != "run" or self.dep_seq != seq or self.closed or self.lost:
            self.set_state("idle")
            return
        # the controller's start of the run, from which the workload's budget counts
        started = (dep.scenario or {}).get("started_s") if dep is not None else None
        self.run({**sc, "started_s": started if started is not None else time.time()})

    def run(self, sc: dict[str, Any]) -> None:
        """Optimize the scenario's study (again whenever a lost worker's trial is re-queued)
        until the controller closes the run."""
        import optuna

        request = protocol.Run(study=sc["study"],
                               sampler=self.registry.get("samplers", sc["sampler"]),
                               pruner=self.registry.get("pruners", sc["pruner"]),
                               seed=sc["seed"], cap=sc["cap"], artifacts=str(self.artifacts),
                               storage=self.url, heartbeat=self.heartbeat,
                               limits=sc.get("limits") or {}, started_s=sc["started_s"])
        storage = self.worker.storage(request)
        sink = StoreSink(self, storage, sc["study"])
        discarded = 0
        self.set_state("running")
        try:
            first = True
            while not self._closed_now():
                waiting = bool(storage.get_all_trials(
                    sink.study_id, deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
                if first or waiting:
                    done = self.worker.run(request, sink, closed=self._closed_now)
                    discarded += done.discarded
                    first = False
                    self.set_state("idle", discarded=discarded)
                else:
                    time.sleep(self.poll_s)
        except Exception as exc:
            self.set_state("error", error=f"run: {type(exc).__name__}: {exc}")
            log(f"run failed: {exc}")
            return
        self.set_state("idle", discarded=discarded)

    def _closed_now(self) -> bool:
        self._read_deployment()
        return self.is_closed()

    def _on_term(self, signum: int, frame: Any) -> None:
        """SIGTERM (a pod being stopped): finish the trial in flight, start no other."""
        self.stopping = True


def main(url: str, study: str, registry: Registry, wait_s: float, threads: int | None,
         cores: Sequence[int], meter: str | None = None,
         meter_selector: str | None = None) -> int:
    if not math.isfinite(wait_s) or wait_s < 0:
        raise BashtUsageError(f"--wait: expected seconds ≥ 0, got {wait_s}")
    try:
        db.checked(url)
    except ValueError as exc:
        raise BashtUsageError(f"--storage: expected an SQLAlchemy URL whose driver is "
                              f"installed, e.g. postgresql://user@host/basht ({exc}), got "
                              f"{db.shown(url)!r}") from None
    worker = RemoteWorker(url, study, registry, wait_s=wait_s, threads=threads, cores=cores,
                          meter=meter, meter_selector=meter_selector)
    try:
        return worker.main()
    finally:
        worker.work.release()

"""The ``ray`` SUT: a scenario's trials as Ray Tune trials, on a local Ray or a cluster.

``sut: {name: ray}`` starts a local Ray at deploy with the workload's resources (wn × wcpu
logical CPUs, one GPU per worker for ``accelerator: gpu``) and shuts it down at undeploy —
Ray's own start and stop, timed as Basht's deploy and undeploy. ``options: {address:
"ray://head:10001"}`` (or ``auto``) connects to an existing cluster instead.

Setup prepares the data and builds the search: Ray's ``OptunaSearch`` with the workload's
Optuna sampler (the same registered factory the ``optuna`` SUT uses), and the pruner as
Tune's scheduler — ``median`` as ``MedianStoppingRule``, ``successive-halving`` as ASHA,
``hyperband`` as asynchronous HyperBand, ``none`` as FIFO. Run is one ``Tuner.fit()``: at
most wn trials at once, each with wcpu CPUs; every trial reports its spans, values and
CPU time through ``tune.report`` (``sut.ray_trial``), and a Tune callback turns them into
records, placing each trial in a worker slot (the lowest free one) for WR. Test runs the
best model's evaluation as a Ray task, from its Tune checkpoint.

Energy: a local Ray's processes (GCS, raylet, the trial workers) are children of this
process, so the live meter covers them and attributes each trial's share by CPU time, as
for local Optuna workers. On a cluster each trial meters its own process and sends its
timeline with its reports; those add to the live meter's (``sut.fleet``).

Several objectives are OptunaSearch's multi-objective mode (the value and each cost
objective as metrics, which every trial's last report carries); constraints are not
offered (OptunaSearch keeps its Optuna trials to itself, so their constraint values cannot
reach the sampler). The workload's ``budget:`` closes the searcher (``budgeted``); with
``running: stop`` a Tune stopper then stops every running trial.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

import pytest_basht.objectives as objectives
from pytest_basht.energy.base import Allocation
from pytest_basht.energy.self_meter import wall_offset_ns
from pytest_basht.errors import WorkloadError
from pytest_basht.records import Span, TrialRecord, bounded_traceback, mono_ns
from pytest_basht.registry import Registry, ref_of
from pytest_basht.search import suggest
from pytest_basht.spend import Ledger, of_costs, stop_note
from pytest_basht.sut.base import (
    SUT,
    Progress,
    SutContext,
    SutError,
    own_options,
    refuse_optimizer,
)
from pytest_basht.sut.fleet import FleetMeter, shift_span, to_local
from pytest_basht.sut.limits import accelerator_record, check_local_workers, plan_cpus
from pytest_basht.trainables.base import DataInfo
from pytest_basht.workload import Workload

EXTRA = "pip install 'pytest-basht[ray]' (Ray Tune)"
OPTIONS = {
    "address": "an existing Ray cluster (ray://host:10001, host:6379 or auto); none: start a "
               "local Ray with the workload's resources",
    "storage_path": "where Tune keeps results and checkpoints (default: the deployment's "
                    "directory; a cluster needs a path every node shares, or a cloud URI)",
    "object_store_mb": "a local Ray's object store in MB (default 256)",
}
#: Optuna pruner options, as Tune scheduler arguments (pruner -> {option: argument})
SCHEDULERS: dict[str, dict[str, str]] = {
    "none": {},
    "median": {"n_startup_trials": "min_samples_required", "n_warmup_steps": "grace_period"},
    "successive-halving": {"min_resource": "grace_period", "reduction_factor":
                           "reduction_factor"},
    "hyperband": {"min_resource": "grace_period", "max_resource": "max_t",
                  "reduction_factor": "reduction_factor"},
}


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    storage_path: str | None = None
    object_store_mb: int = 256

    @classmethod
    def parse(cls, workload: Workload) -> RayOptions:
        src = workload.source
        opts = own_options(workload, "ray", OPTIONS)
        address = opts.get("address")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise WorkloadError(src, "sut.options.address",
                                "ray://host:10001, host:6379, auto, or null", address)
        path = opts.get("storage_path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise WorkloadError(src, "sut.options.storage_path", "a directory or URI", path)
        store = opts.get("object_store_mb", 256)
        if isinstance(store, bool) or not isinstance(store, int) or store < 80:
            raise WorkloadError(src, "sut.options.object_store_mb",
                                "an integer ≥ 80 (Ray's minimum)", store)
        return cls(address.strip() if address else None, path.strip() if path else None,
                   store)


def scheduler_args(workload: Workload) -> dict[str, Any]:
    """The pruner's options as the Tune scheduler's arguments (a WorkloadError names an
    option that has no counterpart)."""
    s = workload.search
    table = SCHEDULERS.get(s.pruner)
    if table is None:
        raise WorkloadError(workload.source, "search.pruner",
                            "a pruner the ray SUT maps to a Tune scheduler: "
                            + ", ".join(SCHEDULERS), s.pruner)
    out: dict[str, Any] = {}
    for name, value in s.pruner_options.items():
        if name not in table:
            raise WorkloadError(workload.source, f"search.pruner_options.{name}",
                                f"an option the ray SUT maps for {s.pruner}: "
                                + (", ".join(table) or "none"), value)
        if value == "auto":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise WorkloadError(workload.source, f"search.pruner_options.{name}",
                                "a number ≥ 0 (or auto)", value)
        out[table[name]] = value
    if s.pruner == "median" and "grace_period" in out:
        out["grace_period"] = out["grace_period"] + 1  # Optuna's warm-up steps are 0-based
    return out


def build_scheduler(workload: Workload) -> Any:
    from ray.tune import schedulers

    mode = "max" if workload.goal.direction == "maximize" else "min"
    args = scheduler_args(workload)
    epochs = workload.training.epochs
    common = {"metric": "value", "mode": mode, "time_attr": "training_iteration"}
    pruner = workload.search.pruner
    if pruner == "none":
        return schedulers.FIFOScheduler()
    if pruner == "median":
        return schedulers.MedianStoppingRule(**common, **{"grace_period": 1,
                                                          "min_samples_required": 5, **args})
    grace = int(args.get("grace_period", 1))
    if pruner == "successive-halving":
        return schedulers.ASHAScheduler(**common, max_t=epochs, grace_period=grace,
                                        reduction_factor=args.get("reduction_factor", 4))
    max_t = int(args.get("max_t", epochs))
    factor = float(args.get("reduction_factor", 3))
    brackets = max(1, math.floor(math.log(max(1, max_t / max(1, grace)), factor)) + 1)
    return schedulers.AsyncHyperBandScheduler(**common, max_t=max_t, grace_period=grace,
                                              reduction_factor=factor, brackets=brackets)


@dataclass(frozen=True)
class Space:
    """The workload's space, define-by-run for OptunaSearch (picklable: Tune saves its
    searcher's state)."""

    dims: tuple[Any, ...]

    def __call__(self, trial: Any) -> None:
        suggest(trial, self.dims)


@dataclass
class _Running:
    number: int
    slot: int
    params: dict[str, Any]
    start_ns: int  # the driver's clock until the trial reports its own
    spans: list[Span] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    end_ns: int = 0
    final: dict[str, Any] | None = None
    energy_j: float | None = None
    node: str = ""
    told: dict[str, float] | None = None


class RaySUT(SUT):
    name = "ray"

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        src = workload.source
        if importlib.util.find_spec("ray") is None:
            raise WorkloadError(src, "sut.name", f"an installed SUT: 'ray' needs the optional "
                                f"extra ray — {EXTRA}", "ray")
        if RayOptions.parse(workload).address is None:  # a local cluster: this machine's
            check_local_workers(workload.workers.count, src)
        refuse_optimizer(workload, registry, "ray")
        scheduler_args(workload)
        if workload.goal.constraints:
            raise WorkloadError(src, "goal.constraints", "none with the ray SUT (Tune's "
                                "OptunaSearch keeps its Optuna trials to itself: constraint "
                                "values cannot reach the sampler)", dict(workload.goal.constraints))
        if workload.search.grouped:
            key = "search.fusion" if workload.search.fusion > 1 else "search.scaling"
            raise WorkloadError(src, key, "1 with the ray SUT (fused and scaled trials run on "
                                "the optuna SUT)", getattr(workload.search, key[7:]))

    def __init__(self, workload: Workload, ctx: SutContext) -> None:
        super().__init__(workload, ctx)
        self.opts = RayOptions.parse(workload)
        w = workload.workers
        self.plan = plan_cpus(w.count, w.cpu)
        self.workload: Workload | None = None
        self.records: dict[int, TrialRecord] = {}
        self.running: dict[str, _Running] = {}
        self.data: DataInfo | None = None
        self.setups = 0
        self.results: Any = None
        self.checkpoints: dict[int, Any] = {}
        self.cluster: dict[str, Any] = {}
        self.meter: FleetMeter | None = None
        self.artifacts = ctx.work_dir / "models"
        self.tune_s = 0.0
        self.notes: list[str] = []
        self.ledger = Ledger({})
        self.window = (0.0, 0.0)

    # ------------------------------------------------------------------ deployment

    def allocation(self) -> Allocation:
        if self.opts.address is not None:  # the cluster's nodes meter themselves
            return Allocation(vcpus=0, memory_gb=0.0, slots=0)
        w = self.deployed_for.workers
        memory_gb = min(w.count * w.memory_mb / 1024, psutil.virtual_memory().total / 2**30)
        return Allocation(vcpus=self.plan.vcpus, memory_gb=memory_gb, slots=w.count)

    def own_meter(self) -> FleetMeter | None:
        if self.opts.address is None or self.ctx.monitor is None:
            return None  # a local Ray is in this process tree: the live meter covers it
        if self.meter is None:
            self.meter = FleetMeter(self.ctx.monitor, self.deployed_for, local_slots=0,
                                    remote_slots=self.deployed_for.workers.count)
        return self.meter

    def deploy(self) -> None:
        """Start a local Ray with the workload's resources, or connect to the cluster."""
        try:
            import ray
            import ray.tune  # the extra's tune part, checked at deploy
        except ImportError as exc:
            raise SutError(f"the ray SUT needs Ray Tune: {EXTRA} ({exc})") from None
        # Tune's console reporter: the console is pytest's (its loggers stay: part of the
        # system under test)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        self.ctx.work_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(exist_ok=True)
        w = self.deployed_for.workers
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                                  "configure_logging": True}
        if self.opts.address is None:  # "local": a new Ray, never one found on the machine
            kwargs.update(address="local", num_cpus=w.count * w.cpu,
                          num_gpus=w.count if w.accelerator == "gpu" else 0,
                          include_dashboard=False,
                          object_store_memory=self.opts.object_store_mb * 2**20)
        else:
            kwargs["address"] = self.opts.address
        if ray.is_initialized():
            raise SutError("Ray is already initialized in this process; the ray SUT starts "
                           "and stops its own (deploy and undeploy)")
        try:
            context = ray.init(**kwargs)
        except Exception as exc:
            where = self.opts.address or "a local Ray"
            raise SutError(f"ray.init failed ({where}): {type(exc).__name__}: {exc}") from None
        resources = ray.cluster_resources()
        self.cluster = {"address": self.opts.address or "local",
                        "started": self.opts.address is None,
                        "ray": ray.__version__, "cpus": resources.get("CPU", 0.0),
                        "gpus": resources.get("GPU", 0.0),
                        "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
                        "gcs": getattr(context, "address_info", {}).get("gcs_address")}
        if resources.get("CPU", 0.0) < w.cpu:
            raise SutError(f"the Ray cluster has {resources.get('CPU', 0.0):g} CPUs; a trial "
                           f"asks workers.cpu = {w.cpu}")

    def undeploy(self) -> None:
        """Ray's shutdown (a local Ray stops; a cluster is disconnected from)."""
        with contextlib.suppress(ImportError):
            import ray

            if ray.is_initialized():
                ray.shutdown()

    # ------------------------------------------------------------------ setup and run

    def setup(self, workload: Workload) -> None:
        trainable = self.ctx.registry.get("trainables", workload.model.name)
        self.workload = workload
        self.records = {}
        self.running = {}
        self.checkpoints = {}
        self.results = None
        self.setups += 1
        data_dir = self.ctx.work_dir / f"data-{self.setups}"
        data_dir.mkdir(exist_ok=True)
        self.data = trainable.prepare(workload, data_dir)
        self._payload = {
            "key": f"{os.getpid()}-{id(self)}-{self.setups}", "workload": workload,
            "trainable": ref_of(trainable), "data": self.data,
            "threads": self.plan.threads if self.opts.address is None else workload.workers.cpu,
            "device": "cuda" if workload.workers.accelerator == "gpu" else "cpu",
            "meter_self": self.opts.address is not None,
            # a trial on a cluster meters itself with the meters registered here
            "meters": ({name: ref_of(cls) for name, cls in self.ctx.registry.meters.items()}
                       if self.opts.address is not None else {})}
        sampler = self.ctx.registry.get("samplers", workload.search.sampler)(workload,
                                                                            workload.seed)
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        goal = workload.goal
        modes = ["max" if d == "maximize" else "min" for d in goal.directions]
        self.search = OptunaSearch(space=Space(workload.search.space),
                                   metric=list(goal.names) if goal.multi else "value",
                                   sampler=sampler,
                                   mode=modes if goal.multi else modes[0])
        self.scheduler = build_scheduler(workload)

    def run(self) -> list[TrialRecord]:
        from ray import tune

        from pytest_basht.sut import ray_trial

        assert self.workload is not None
        w = self.workload
        progress = Progress(expected=w.trial_budget)
        resources = {"cpu": w.workers.cpu, "gpu": 1 if w.workers.accelerator == "gpu" else 0}
        storage = self.opts.storage_path or str(self.ctx.work_dir / "tune")
        self.ledger = Ledger.of(w, time.monotonic())
        search = budgeted(self.search, self.ledger) if self.ledger.limits else self.search
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(ray_trial.run_trial,
                                                     setup=self._payload), resources),
            tune_config=tune.TuneConfig(search_alg=search, scheduler=self.scheduler,
                                        num_samples=w.trial_budget,
                                        max_concurrent_trials=w.workers.count,
                                        reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"{w.name}-{self.setups}", storage_path=storage, verbose=0,
                callbacks=[_collector(self, progress)],
                stop=(_stopper(self.ledger) if self.ledger.limits and w.budget.running == "stop"
                      else None),
                failure_config=tune.FailureConfig(max_failures=0),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None)))
        t0 = time.monotonic()
        try:
            self.results = tuner.fit()
        finally:
            self.window = (t0, time.monotonic())
        self.tune_s = time.monotonic() - t0
        for running in list(self.running.values()):  # never heard of again: failed
            self._close(running, "failed", "the trial ended without a final report")
        return self.trials_so_far()

    # the callback's side ------------------------------------------------------

    def _start(self, trial: Any, number: int) -> None:
        taken = {r.slot for r in self.running.values()}
        slot = min(s for s in range(len(taken) + 1) if s not in taken)
        assert self.workload is not None
        params = {d.name: trial.config.get(d.name) for d in self.workload.search.space}
        self.running[trial.trial_id] = _Running(number, slot, params, mono_ns())
        self.ledger.start(number, time.monotonic())

    def _result(self, trial: Any, result: dict[str, Any], progress: Progress) -> None:
        running = self.running.get(trial.trial_id)
        if running is None or not isinstance(result.get("basht"), str):
            return
        payload = json.loads(result["basht"])
        shift = to_local(0, payload["offset_ns"], self.offset_ns)
        running.start_ns = int(payload["start_ns"]) + shift
        running.end_ns = int(payload["t_ns"]) + shift
        running.cpu_s = float(payload["cpu_s"])
        running.node = str(payload.get("node", ""))
        running.values.extend(float(v) for v in payload["values"])
        for data in payload["spans"]:
            span = shift_span(data, shift)
            span.worker, span.trial = running.slot, running.number
            running.spans.append(span)
        if payload.get("energy") and self.meter is not None:
            self.meter.add(running.node, payload["energy"])
        if payload.get("final"):
            running.final = payload
            running.energy_j = payload.get("energy_j")
            running.told = payload.get("told")
            value = result.get("value")
            if payload.get("state") == "complete" and isinstance(value, (int, float)) and \
                    math.isfinite(value) and (progress.best is None
                                              or self.workload.goal.better(value, progress.best)):
                progress.best = float(value)

    def _complete(self, trial: Any, error: str | None = None,
                  traceback: str | None = None) -> None:
        running = self.running.get(trial.trial_id)
        if running is None:
            return
        final = running.final or {}
        if error is not None:  # the trial's own traceback, else the one Tune caught
            state, why = "failed", final.get("error") or error
            traceback = final.get("traceback") or traceback
        elif not final:  # stopped after a report: by Tune's scheduler, or the budget
            state = "pruned"
            stopped = self.ledger.stopped_by
            assert self.workload is not None
            why = (stop_note(stopped) if stopped is not None
                   and self.workload.budget.running == "stop" else None)
        else:
            state, why, traceback = str(final.get("state")), final.get("error"), \
                final.get("traceback")
        self._close(running, state, why, traceback)
        if trial.checkpoint is not None and state == "complete":
            self.checkpoints[running.number] = trial.checkpoint

    def _close(self, running: _Running, state: str, error: str | None,
               traceback: str | None = None) -> None:
        self.running = {k: v for k, v in self.running.items() if v is not running}
        self.ledger.finish(running.number, time.monotonic(), **of_costs(running.told or {}))
        value = running.values[-1] if running.values else None
        if value is not None and not math.isfinite(value):
            value = None
        end = running.end_ns or mono_ns()
        record = TrialRecord(
            number=running.number, params=running.params, state=state,
            value=value if state != "failed" else None, worker=running.slot,
            start_ns=running.start_ns, end_ns=max(end, running.start_ns),
            intermediate=list(running.values), spans=running.spans, cpu_s=running.cpu_s,
            energy_j=running.energy_j, error=error, told=running.told,
            traceback=traceback)
        self.records[running.number] = record
        if self.meter is not None:
            self.meter.remote_trials.add(running.number)

    @property
    def offset_ns(self) -> int:
        monitor = self.ctx.monitor
        return monitor.wall_offset_ns if monitor is not None else wall_offset_ns()

    # ------------------------------------------------------------------ results

    def trials_so_far(self) -> list[TrialRecord]:
        return [self.records[n] for n in sorted(self.records)]

    def collect_results(self) -> int | None:
        assert self.workload is not None
        goal = self.workload.goal
        if goal.multi:
            return objectives.best_of(goal, self.trials_so_far())
        best: TrialRecord | None = None
        for t in self.trials_so_far():
            if t.state == "complete" and t.value is not None and (
                    best is None or goal.better(t.value, best.value)):  # type: ignore[arg-type]
                best = t
        return best.number if best is not None else None

    def test(self, best: TrialRecord) -> float | None:
        """The best model's test, as a Ray task with a worker's resources."""
        import ray

        from pytest_basht.sut import ray_trial

        checkpoint = self.checkpoints.get(best.number)
        if checkpoint is None:
            return None
        w = self.deployed_for.workers
        task = ray.remote(num_cpus=w.cpu, num_gpus=1 if w.accelerator == "gpu" else 0)(
            ray_trial.test_model)
        return float(ray.get(task.remote(self._payload, checkpoint)))

    def collect_metrics(self) -> dict[str, Any]:
        w = self.deployed_for.workers
        local = self.opts.address is None
        return {
            "limits": {
                "cpu": {"asked_per_worker": w.cpu, "threads_per_worker": self._payload.get(
                    "threads") if hasattr(self, "_payload") else None,
                    "enforced": False,
                    "how": (f"Ray schedules {w.cpu} logical CPU(s) per trial, at most "
                            f"{w.count} trials at once, and the trial holds torch/OpenMP to "
                            f"that many threads; no core affinity")},
                "memory": {"asked_mb": w.memory_mb, "enforced": False,
                           "how": "not enforced per trial (Ray's memory monitor kills "
                                  "workers only when the node runs out of memory)"},
                "accelerator": accelerator_record(w.accelerator, self._payload["device"]
                                                  if hasattr(self, "_payload") else "cpu",
                                                  w.count),
            },
            "data": self.data.to_dict() if self.data else None,
            **({"told": objectives.TOLD_MODEL if local else
                "the trial's energy as its own meter measured it on its node"}
               if self.workload is not None and objectives.needed(self.workload) else {}),
            "study": {"stopped_by": (f"budget.{self.ledger.stopped_by}"
                                     if self.ledger.stopped_by else "search.trials"),
                      "budget": self.ledger.summary(self.window[1])},
            "ray": {**self.cluster, "tune_fit_s": self.tune_s,
                    "scheduler": type(self.scheduler).__name__
                    if hasattr(self, "scheduler") else None,
                    "searcher": "OptunaSearch", "sampler": self.workload.search.sampler
                    if self.workload else None,
                    "energy": ("the live meter covers the local Ray's processes (children "
                               "of this one); trials' shares by CPU time" if local else
                               "each trial metered its own process on its node and sent the "
                               "timeline with its reports"),
                    "notes": list(self.notes)},
        }


def budgeted(search: Any, ledger: Ledger) -> Any:
    """Tune's searcher, closed by the workload's budget: ``suggest`` answers FINISHED once
    one more trial would pass it, so Tune starts none and lets the running ones finish."""
    from ray.tune.search import Searcher

    class Budgeted(Searcher):
        def __init__(self, inner: Any, ledger: Ledger) -> None:
            super().__init__(metric=inner.metric, mode=inner.mode)
            self.inner = inner
            self.ledger = ledger

        def set_search_properties(self, metric: Any, mode: Any, config: Any,
                                  **spec: Any) -> bool:
            return bool(self.inner.set_search_properties(metric, mode, config, **spec))

        def suggest(self, trial_id: str) -> Any:
            if not self.ledger.admits(time.monotonic()):
                return Searcher.FINISHED
            return self.inner.suggest(trial_id)

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            self.inner.on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            self.inner.on_trial_complete(trial_id, result, error)

        def save(self, checkpoint_path: str) -> None:
            self.inner.save(checkpoint_path)

        def restore(self, checkpoint_path: str) -> None:
            self.inner.restore(checkpoint_path)

    return Budgeted(search, ledger)


def _stopper(ledger: Ledger) -> Any:
    """``budget.running: stop``: once the budget has closed the study, Tune stops every
    running trial."""
    from ray import tune

    class BudgetStopper(tune.Stopper):
        # as the collector: Tune pickles its run config, the ledger stays here
        def __init__(self, ledger: Ledger) -> None:
            self.ledger = ledger

        def __getstate__(self) -> dict[str, Any]:
            return {}

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return getattr(self, "ledger", None) is not None and \
                self.ledger.stopped_by is not None

    return BudgetStopper(ledger)


def _collector(sut: RaySUT, progress: Progress) -> Any:
    """Tune's callback in the driver: trials begin, report and end here."""
    from ray import tune

    class Collector(tune.Callback):
        # no closure over the SUT: Tune pickles its run config (callbacks included) to
        # disk, and the records stay here
        def __init__(self, sut: RaySUT, progress: Progress) -> None:
            self.sut = sut
            self.progress = progress

        def __getstate__(self) -> dict[str, Any]:
            return {}

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any,
                           **info: Any) -> None:
            self.sut._start(trial, trials.index(trial))
            self._tick()

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                            result: dict[str, Any], **info: Any) -> None:
            self.sut._result(trial, result, self.progress)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                              **info: Any) -> None:
            self.sut._complete(trial)
            self._done()

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                           **info: Any) -> None:
            error = trial.get_error() if hasattr(trial, "get_error") else None
            text = f"{type(error).__name__}: {error}" if error else "the trial errored"
            self.sut._complete(trial, error=text.splitlines()[0][:500],
                               traceback=bounded_traceback(error) if error else None)
            self._done()

        def _done(self) -> None:
            records = self.sut.records.values()
            self.progress.done = len(records)
            self.progress.failed = sum(1 for t in records if t.state == "failed")
            self.progress.pruned = sum(1 for t in records if t.state == "pruned")
            self._tick()

        def _tick(self) -> None:
            self.progress.running = len(self.sut.running)
            if self.sut.ctx.progress is not None:
                self.sut.ctx.progress(self.progress)

    return Collector(sut, progress)

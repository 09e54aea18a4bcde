"""One trial of the ``ray`` SUT, as it runs in a Ray worker process (a Tune function
trainable), and the test of a saved model as a Ray task.

The trial trains with the workload's trainable exactly as an Optuna worker does, and
reports through ``tune.report`` after every epoch: the validation value (which Tune's
scheduler prunes on) and, as one JSON string (Tune's loggers keep it, TensorBoard skips
it), the spans recorded since the last report, the process's CPU time, and — on a
cluster, where the trial meters itself — its meter's new timeline points. The
last epoch's report waits until the trial has finished, so that it carries the final
value and the model (a Tune checkpoint) — and, when the workload needs them, the trial's
costs (``objectives.trial_cost``: the told model, or the energy its own meter measured on
a cluster), each cost objective of the goal as a metric of its own for the searcher. A
Ray worker process sets the trainable up once per scenario (loading the data, preparing
its own copy when the driver's is not on this node); that one-time work is a ``setup``
span of the trial that paid for it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest_basht.objectives as objectives
from pytest_basht.energy.self_meter import SelfMeter, wall_offset_ns
from pytest_basht.trainables.base import TrialContext, trial_outcome

#: per Ray worker process: the set-up trainable of each scenario, and this process's meter
_TRAINABLES: dict[str, Any] = {}
_METER: dict[str, Any] = {}
_LOCK = threading.Lock()


class _Reporter:
    """What the next ``tune.report`` carries: spans and values since the last one."""

    def __init__(self, setup: dict[str, Any], start_ns: int, cpu0: float,
                 meter: SelfMeter | None) -> None:
        self.setup = setup
        self.start_ns = start_ns
        self.cpu0 = cpu0
        self.offset_ns = wall_offset_ns()
        self.spans: list[dict[str, Any]] = []
        self.values: list[float] = []
        self.meter = meter

    def add_span(self, span: Any) -> None:
        self.spans.append(span.to_dict())

    def payload(self, **extra: Any) -> dict[str, Any]:
        from pytest_basht.lifecycle import process_clock

        now, cpu = process_clock()
        spans, self.spans = self.spans, []
        values, self.values = self.values, []
        out = {"start_ns": self.start_ns, "offset_ns": self.offset_ns, "t_ns": now,
               "cpu_s": max(0.0, cpu - self.cpu0), "spans": spans, "values": values,
               "node": f"{socket.gethostname()}:{os.getpid()}", **extra}
        if self.meter is not None:
            final = bool(extra.get("final"))
            if final:
                out["energy_j"] = self.meter.metered(
                    {"start_ns": self.start_ns, "end_ns": now, "cpu_s": out["cpu_s"]},
                    settle=True)["energy_j"]
            out["spans"] = [self.meter.metered(s) for s in spans]
            out["energy"] = self.meter.points()
        return out


def _meter(setup: dict[str, Any]) -> SelfMeter:
    """This process's meter, for trials on a cluster the driver's meter cannot see: the
    driver's registered meters, sent as import references."""
    from pytest_basht.registry import load_ref

    with _LOCK:
        if "meter" not in _METER:
            meters = {name: load_ref(ref) for name, ref in setup["meters"].items()}
            workload = setup["workload"]
            _METER["meter"] = SelfMeter.start(meters, workload, vcpus=workload.workers.cpu)
        return _METER["meter"]


def _trainable(setup: dict[str, Any], recorder: Any) -> Any:
    """The scenario's trainable in this process, set up on first use (a ``setup`` span)."""
    from pytest_basht.registry import load_ref
    from pytest_basht.sut.worker import limit_torch_threads

    key = setup["key"]
    with _LOCK:
        if key in _TRAINABLES:
            return _TRAINABLES[key]
        with recorder.span("setup"):
            cls = load_ref(setup["trainable"])
            data = setup["data"]
            if not Path(data.path).exists():  # the driver's copy is on another node
                data = cls.prepare(setup["workload"], Path(tempfile.mkdtemp(prefix="basht-data-")))
            limit_torch_threads(setup["threads"])
            trainable = cls()
            trainable.setup(setup["workload"], data, setup["device"])
            limit_torch_threads(setup["threads"])
        _TRAINABLES.clear()  # one scenario at a time: free the last one's data
        _TRAINABLES[key] = trainable
        return trainable


class _TuneContext(TrialContext):
    """The trial's context: phases go to the reporter; values go to Tune, the last one
    held back until the trial ends."""

    def __init__(self, params: dict[str, Any], setup: dict[str, Any], artifact: Path,
                 recorder: Any, reporter: _Reporter) -> None:
        from pytest_basht.trainables.base import config_seed

        workload = setup["workload"]
        self.number = -1  # Tune numbers its trials in the driver
        self.params = params
        self.workload = workload
        self.seed = config_seed(workload.seed, params)
        self.artifact = artifact
        self.recorder = recorder
        self.reporter = reporter
        self.intermediate: list[float] = []
        self.epochs = workload.training.epochs

    def phase(self, name: str, *, epoch: int | None = None) -> Any:
        return self.recorder.span(name, epoch=epoch)

    def report(self, epoch: int, value: float) -> None:
        from ray import tune

        value = float(value)
        self.intermediate.append(value)
        self.reporter.values.append(value)
        if epoch + 1 < self.epochs:
            tune.report({"value": value, "epoch": epoch,
                         "basht": json.dumps(self.reporter.payload(final=False))})


def run_trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """A Tune function trainable: train one configuration, report epoch by epoch."""
    from ray import tune

    from pytest_basht.lifecycle import Recorder, process_clock, recording

    # this process's meter runs from before its first trial for as long as it lives
    meter = _meter(setup) if setup["meter_self"] else None
    start_ns, cpu0 = process_clock()
    workload = setup["workload"]
    params = {dim.name: config[dim.name] for dim in workload.search.space}
    reporter = _Reporter(setup, start_ns, cpu0, meter)
    recorder = Recorder(sink=reporter.add_span)
    home = Path(tempfile.mkdtemp(prefix="basht-trial-"))
    ctx = _TuneContext(params, setup, home / "model.pt", recorder, reporter)

    def objective() -> float:
        with recording(recorder):
            return float(_trainable(setup, recorder).run_trial(ctx))

    outcome = trial_outcome(objective, ctx.intermediate)
    state, value, error = outcome
    checkpoint = None
    if state == "complete" and ctx.artifact.exists():
        checkpoint = tune.Checkpoint.from_directory(str(home))
    payload = reporter.payload(final=True, state=state, error=error,
                               traceback=outcome.traceback)
    result: dict[str, Any] = {"value": value, "epoch": len(ctx.intermediate) - 1}
    if objectives.needed(workload):
        told = objectives.trial_cost(workload, (payload["t_ns"] - start_ns) / 1e9,
                                     payload["cpu_s"], energy_j=payload.get("energy_j"))
        payload["told"] = told.to_dict()
        result.update({name: told.of(name) for name in workload.goal.objectives})
    try:
        tune.report({**result, "basht": json.dumps(payload)}, checkpoint=checkpoint)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if state == "failed":
        raise RuntimeError(error)  # Tune and its searcher see the trial as failed


def test_model(setup: dict[str, Any], checkpoint: Any) -> float:
    """The test phase, as a Ray task: evaluate the best trial's model."""
    from pytest_basht.lifecycle import Recorder

    trainable = _trainable(setup, Recorder())
    with checkpoint.as_directory() as folder:
        return float(trainable.test(Path(folder) / "model.pt"))

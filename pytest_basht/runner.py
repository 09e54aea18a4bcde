"""The Basht lifecycle, driven in plain Python: deployments and scenario runs.

``Deployments`` deploys once per SUT key and holds one deployment at a time: a scenario
with another key undeploys the current one first, and ``close()`` undeploys whatever is
left — the plugin calls it at session end, also after a failure or Ctrl-C. ``TrialRunner``
runs setup → trials → result collection → test → metric collection on a deployment and
returns a :class:`RunResult`; every phase is a span with energy from the meter — or, for a
SUT that simulates (``SUT.own_meter()``), from that SUT's virtual clock and energy. Asked
to, it has the scenario forecast before its setup (``forecast``: a callable the caller
gives, ``pytest_basht.forecast``), and the result keeps the forecast.
"""

from __future__ import annotations

import json
import operator
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_basht.energy import trace as trace_mod
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.lifecycle import Phase, Recorder
from pytest_basht.records import EnergyTrace, Span, TrialRecord
from pytest_basht.registry import Registry
from pytest_basht.result import NoSuccessfulTrial, RunResult, failure_text
from pytest_basht.sut.base import SUT, OwnMeter, ProgressCallback, SutContext
from pytest_basht.workload import Workload


@dataclass
class Deployment:
    id: str
    key: str
    sut: SUT
    deploy_span: Span
    undeploy_span: Span | None = None
    users: list[RunResult] = field(default_factory=list)


def deploy_key(sut_cls: type[SUT], workload: Workload) -> str:
    return json.dumps(sut_cls.deploy_key(workload), sort_keys=True, default=str)


class Deployments:
    def __init__(self, monitor: EnergyMonitor, registry: Registry, *,
                 progress: ProgressCallback | None = None, work_root: Path | None = None) -> None:
        self.monitor = monitor
        self.registry = registry
        self.progress = progress
        self.work_root = work_root
        self.current: Deployment | None = None
        self.count = 0

    def get(self, workload: Workload) -> Deployment:
        sut_cls = self.registry.sut_class(workload)
        key = deploy_key(sut_cls, workload)
        if self.current is not None and self.current.key == key:
            return self.current
        self.close()
        self.count += 1
        work_dir = Path(tempfile.mkdtemp(prefix=f"basht-dep{self.count}-", dir=self.work_root))
        sut = sut_cls(workload, SutContext(work_dir=work_dir, registry=self.registry,
                                           progress=self.progress, monitor=self.monitor))
        meter = self.meter_of(sut)
        recorder = Recorder(clock=meter.clock)
        if meter is self.monitor:
            self.monitor.measure_idle(workload.energy.idle_s)  # before the first deploy only
        self.monitor.hold(sut.allocation())
        try:
            with recorder.span(Phase.DEPLOY) as span:
                sut.deploy()
        except BaseException:
            self._undeploy(sut)
            raise
        span.energy_j = meter.energy_between(span.start_ns, span.end_ns)
        self.current = Deployment(f"dep{self.count}", key, sut, span)
        return self.current

    def meter_of(self, sut: SUT) -> EnergyMonitor | OwnMeter:
        """What times and meters this SUT's phases: its own meter, else the live one."""
        return sut.own_meter() or self.monitor

    def _undeploy(self, sut: SUT) -> Span:
        meter = self.meter_of(sut)
        recorder = Recorder(clock=meter.clock)
        try:
            with recorder.span(Phase.UNDEPLOY) as span:
                sut.undeploy()
        finally:
            self.monitor.hold(None)
        self.monitor.settle(span.end_ns)
        span.energy_j = meter.energy_between(span.start_ns, span.end_ns)
        return span

    def close(self) -> None:
        """Undeploy the current deployment and complete its scenarios' records."""
        dep = self.current
        if dep is None:
            return
        span = self._undeploy(dep.sut)  # if it is interrupted, a later close() tries again
        self.current = None
        dep.undeploy_span = span
        own = dep.sut.own_meter()
        for result in dep.users:
            result.spans.append(span)
            if self.monitor.meter.retrospective:  # settled only now: attribute again
                result.energy = (trace_mod.trace(self.monitor, result.workload, result.spans,
                                                 result.trials) if own is None else
                                 own.trace(result.spans, result.trials,
                                           result.workload.workers.count))
            result.recompute()


class TrialRunner:
    """Runs one scenario on a deployment (the object behind the ``trial_runner`` fixture)."""

    def __init__(self, workload: Workload, deployments: Deployments,
                 on_result: Callable[[RunResult], None] | None = None, *,
                 forecast: Callable[[Workload], dict[str, Any] | None] | None = None) -> None:
        self.workload = workload
        self.deployments = deployments
        self.on_result = on_result
        self.forecast = forecast
        self.result: RunResult | None = None

    @property
    def monitor(self) -> EnergyMonitor:
        return self.deployments.monitor

    def run(self) -> RunResult:
        """The scenario's lifecycle; a scenario without a complete trial is recorded, then
        fails (``NoSuccessfulTrial``, with the first trial's error and traceback)."""
        # pytest: that failure's message says what went wrong; any other shows this frame
        __tracebackhide__ = operator.methodcaller("errisinstance", NoSuccessfulTrial)
        if self.result is not None:
            raise RuntimeError("trial_runner.run() runs a scenario once per test")
        forecast = self.forecast(self.workload) if self.forecast is not None else None
        dep = self.deployments.get(self.workload)
        sut = dep.sut
        own = sut.own_meter()
        meter = own or self.monitor
        recorder = Recorder(clock=meter.clock)
        spans: list[Span] = [dep.deploy_span]
        trials: list[TrialRecord] = []
        best: TrialRecord | None = None
        score: float | None = None
        info: dict[str, Any] = {}
        status, error = "complete", None

        @contextmanager
        def phase(name: Phase) -> Any:
            with recorder.span(name) as span:
                yield span
            span.energy_j = meter.energy_between(span.start_ns, span.end_ns)
            spans.append(span)

        try:
            with phase(Phase.SETUP):
                sut.setup(self.workload)
            trials = sut.run()
            with phase(Phase.RESULT_COLLECTION):
                number = sut.collect_results()
                best = next((t for t in trials if t.number == number), None)
            with phase(Phase.TEST):
                score = sut.test(best) if best is not None else None
            with phase(Phase.METRIC_COLLECTION):
                info = sut.collect_metrics()
                if own is None:
                    trace = self._trace(spans, trials)
            if own is None:
                trace.timeline = self._snapshot(spans, trials)
            else:
                trace = own.trace(spans, trials, self.workload.workers.count)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
            error = f"{type(exc).__name__}: {exc}"
            trials = trials or sut.trials_so_far()
            trace = self._salvage(spans, trials, own)
            self._finish(dep, RunResult(self.workload, spans, trials, best, score, trace,
                                        info, self._dep_info(dep), status, error), forecast)
            raise
        if not any(t.state == "complete" for t in trials):
            error = failure_text(self.workload, trials, "no trial completed")
            self._finish(dep, RunResult(self.workload, spans, trials, best, score, trace,
                                        info, self._dep_info(dep), "error", error), forecast)
            raise NoSuccessfulTrial(error)
        return self._finish(dep, RunResult(self.workload, spans, trials, best, score, trace,
                                           info, self._dep_info(dep), status, error), forecast)

    def _finish(self, dep: Deployment, result: RunResult,
                forecast: dict[str, Any] | None) -> RunResult:
        result.forecast = forecast
        trainable = self.deployments.registry.trainables.get(self.workload.model.name)
        result.uses = getattr(trainable, "uses", None)
        result.recompute()
        dep.users.append(result)
        self.result = result
        if self.on_result is not None:
            self.on_result(result)
        return result

    @staticmethod
    def _dep_info(dep: Deployment) -> dict[str, Any]:
        return {"id": dep.id, "reused": len(dep.users) > 0, "sut": dep.sut.name}

    def _snapshot(self, spans: list[Span], trials: list[TrialRecord]) -> dict[str, list[float]]:
        return trace_mod.snapshot(self.monitor, spans, trials)

    def _trace(self, spans: list[Span], trials: list[TrialRecord]) -> EnergyTrace:
        return trace_mod.trace(self.monitor, self.workload, spans, trials)

    def _salvage(self, spans: list[Span], trials: list[TrialRecord], own: OwnMeter | None
                 ) -> EnergyTrace:
        """The trace of a scenario that failed. The step that failed may be the trace
        itself: then the record is kept without its energy trace, and says why — the
        finished trials are the measurement, not the trace."""
        try:
            return (self._trace(spans, trials) if own is None
                    else own.trace(spans, trials, self.workload.workers.count))
        except Exception as exc:
            return EnergyTrace(source=self.monitor.source, measured=False, idle_power_w=0.0,
                               max_power_w=0.0, slots=self.workload.workers.count,
                               meter={"error": f"the energy trace could not be built "
                                               f"({type(exc).__name__}: {exc}); the trials "
                                               "are kept without trial energies"})

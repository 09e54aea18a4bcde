"""A session's engines: one meter and its deployments per distinct energy setting, and
the live export of what they measure.

Scenarios whose workloads measure energy the same way share one ``EnergyMonitor`` (a meter
sampling in the background, started on first use) and one ``Deployments`` (the SUT
deployment, reused while scenarios ask for an equal one). The session asks for the engine
of each scenario's workload, describes the meters in the report, and closes them all at
its end: undeploy first, then stop the meters. Live metrics (``--basht-prometheus-port``,
``--basht-pushgateway``) watch every meter and hear every scenario's progress.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_basht.energy.base import MeterContext
from pytest_basht.energy.export import LiveExporter, bind_problem, exposure
from pytest_basht.energy.factory import select_meter
from pytest_basht.energy.leases import Leases
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.errors import OptionError
from pytest_basht.registry import Registry
from pytest_basht.result import RunResult
from pytest_basht.runner import Deployments
from pytest_basht.signals import StopSignals
from pytest_basht.sut.base import Progress, ProgressCallback
from pytest_basht.workload import Workload


class BashtMeterWarning(UserWarning):
    """A meter that was asked for (or found) could not be used; another one measures."""


@dataclass
class Engine:
    """A meter with its deployments (one per distinct energy setting of the session)."""

    monitor: EnergyMonitor
    deployments: Deployments
    reason: str


def energy_key(workload: Workload) -> str:
    """The energy settings that decide which engine a workload runs on."""
    e = workload.energy
    return repr((e.meter, e.sample_hz, e.estimate, e.rapl, e.prometheus, e.idle_s,
                 e.fail_after_s))


@dataclass
class Engines:
    """The session's engines, built on first use (thread-safe: a SUT may ask from a thread).

    ``registry`` and ``meter_context`` are called when the first engine is built. Meter
    warnings are appended to ``notes`` (the session's, so the report keeps them in order).
    ``sharing``: the scenarios running on this machine, among which the meters share its
    idle draw (xdist; None: this process alone). ``work_root``: where deployments keep
    their files (called when the first engine is built). ``line`` makes the live progress
    line of a new meter; ``live``, once started, exports every meter's energy and every
    scenario's progress as live metrics.
    """

    registry: Callable[[], Registry]
    meter_context: Callable[[], MeterContext]
    signals: StopSignals
    notes: list[str]
    sharing: Leases | None = None
    work_root: Callable[[], Path] | None = None
    line: Callable[[EnergyMonitor], ProgressCallback] | None = None
    live: LiveExporter | None = None
    exposed: str | None = None  # why the live metrics reach past this machine, if they do
    _engines: dict[str, Engine] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, workload: Workload) -> Engine:
        """The engine of the workload's energy settings (its meter started on first use)."""
        key = energy_key(workload)
        with self._lock:
            if key not in self._engines:
                self._engines[key] = self._build(workload)
            return self._engines[key]

    def _build(self, workload: Workload) -> Engine:
        e = workload.energy
        self.signals.install()  # a basht session runs: SIGTERM ends it as Ctrl-C does
        registry = self.registry()
        selection = select_meter(registry.meters, workload, self.meter_context())
        if self.sharing is not None:  # scenarios side by side share the machine's idle draw
            for meter in (selection.meter, selection.fallback):
                if meter is not None:
                    meter.share_idle(self.sharing)
        monitor = EnergyMonitor(selection.meter, hz=e.sample_hz, selection=selection.reason,
                                fallback=selection.fallback, fail_after_s=e.fail_after_s)
        for text in selection.warnings:
            warnings.warn(BashtMeterWarning(text), stacklevel=3)  # at the caller of get()
            monitor.warnings.append(text)
            self.notes.append(text)
        monitor.start()
        deployments = Deployments(monitor, registry, progress=self._progress(monitor),
                                  work_root=self.work_root() if self.work_root else None)
        return Engine(monitor, deployments, selection.reason)

    def _progress(self, monitor: EnergyMonitor) -> ProgressCallback | None:
        """The live line and the live metrics, fed by the same progress callbacks."""
        line = self.line(monitor) if self.line else None
        live = self.live
        if live is None:
            return line
        live.watch(monitor)

        def both(progress: Progress) -> None:
            live.progress(progress)
            if line is not None:
                line(progress)

        return both

    def meters(self) -> list[dict[str, Any]]:
        """Each meter as the report describes it, with why it was chosen."""
        return [{**e.monitor.describe(), "selection": e.reason} for e in self._engines.values()]

    def settle(self, results: Sequence[RunResult]) -> None:
        """Undeploy what these results ran on, so that their JCT (with undeploy) is final."""
        for engine in list(self._engines.values()):
            dep = engine.deployments.current
            if dep is not None and any(u is r for u in dep.users for r in results):
                engine.deployments.close()

    def close(self) -> None:
        """Undeploy everything and stop the meters; safe to call twice, runs every step."""
        errors: list[BaseException] = []
        for engine in list(self._engines.values()):
            try:
                engine.deployments.close()
            except BaseException as exc:  # keep undeploying the others
                errors.append(exc)
            engine.monitor.stop()
        if errors:
            raise errors[0]

    # -------------------------------------------------------------- live metrics

    def start_live(self, run_id: str, instance: str, listen: tuple[str, int] | None,
                   push: bool, port_offset: int = 0) -> str | None:
        """Live metrics: served at ``listen`` (its port + ``port_offset``; port 0: any free
        one) and/or pushed at the end (``push``). Returns where they are served."""
        if listen is None and not push:
            return None
        live = self.live = LiveExporter(run_id, instance=instance)
        if listen is None:
            return None
        host, port = listen[0], listen[1] + port_offset if listen[1] else 0
        try:
            host, port = live.serve(host, port)
        except OSError as exc:
            raise OptionError("--basht-prometheus-port", f"a port free to listen on "
                              f"({host}:{port}: {exc.strerror})", f"{listen[0]}:{listen[1]}"
                              ) from None
        where = f"http://{host}:{port}/metrics"
        self.notes.append(f"live metrics served at {where}")
        exposed = exposure(host, port)
        if exposed is not None:
            self.notes.append(exposed)
            self.exposed = exposed
        return where

    def check_ports(self, listen: tuple[str, int] | None, workers: int) -> None:
        """Before xdist starts ``workers`` workers: the ports they will serve live metrics
        on (PORT+1 ... PORT+N) are free, or the run stops now with the one taken named —
        not a worker crashing at its start while the others run on."""
        if listen is None or listen[1] == 0:
            return
        host, port = listen
        for number in range(port + 1, port + 1 + workers):
            why = bind_problem(host, number)
            if why is not None:
                raise OptionError("--basht-prometheus-port", f"ports {port + 1}-"
                                  f"{port + workers} free for the {workers} xdist workers' "
                                  f"live metrics ({host}:{number}: {why})", f"{host}:{port}")

    def begin_lease(self, test_id: str) -> None:
        """A scenario starts: under xdist the other processes now share the idle draw with
        it (its lease lies in the run's work directory, which this process then holds)."""
        if self.sharing is not None:
            if self.work_root is not None:
                self.work_root()
            self._lease(self.sharing.begin_scenario, test_id)

    def end_lease(self, test_id: str) -> None:
        if self.sharing is not None:
            self._lease(self.sharing.end_scenario, test_id)

    @staticmethod
    def _lease(write: Callable[[str], None], test_id: str) -> None:
        """A lease that cannot be written costs the other processes' idle shares their
        accuracy, never a record: a warning (xdist carries it to the run's summary)."""
        try:
            write(test_id)
        except OSError as exc:
            warnings.warn(BashtMeterWarning(
                f"the register of running scenarios could not be written ({exc}): the idle "
                "draw the other xdist workers charged may be off"), stacklevel=3)

    def begin_scenario(self, test_id: str) -> None:
        if self.live is not None:
            self.live.begin(test_id)

    def scenario_done(self, test_id: str, result: RunResult) -> None:
        if self.live is not None:
            self.live.scenario_done(test_id, result.energy.source, result.spans, result.trials)

    def finish_live(self, pushgateway: str | None) -> None:
        """Push to the Pushgateway (a failure is a note, not an error) and stop serving."""
        live, self.live = self.live, None
        if live is None:
            return
        if pushgateway is not None:
            problem = live.push(pushgateway)
            if problem is not None:
                warnings.warn(BashtMeterWarning(problem), stacklevel=2)
                self.notes.append(problem)
        live.close()

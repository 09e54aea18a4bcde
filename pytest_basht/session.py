"""One pytest-basht session: workloads, meters, deployments, scenario records, the report.

Plain Python: the plugin creates one per pytest session and calls into it; tests and the
CLI can drive it without pytest.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_basht import machine
from pytest_basht import workload as wl
from pytest_basht.energy.export import LiveExporter
from pytest_basht.energy.factory import check_energy, select_meter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.errors import OptionError, WorkloadError
from pytest_basht.options import BashtOptions
from pytest_basht.registry import Registry
from pytest_basht.report import json as report_json
from pytest_basht.report import markdown
from pytest_basht.runner import Deployments, RunResult
from pytest_basht.scenarios import ScenarioSpec
from pytest_basht.sut.base import Progress, ProgressCallback

DEFAULTS_SOURCE = "<defaults: the Basht baseline>"


class BashtMeterWarning(UserWarning):
    """A meter that was asked for (or found) could not be used; another one measures."""


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


@dataclass
class Scenario:
    test_id: str
    experiment: str | None
    variables: dict[str, Any]
    result: RunResult | None = None
    record: dict[str, Any] | None = None  # as received from an xdist worker
    outcome: str = "passed"


@dataclass
class Engine:
    """A meter with its deployments (one per distinct energy setting of the session)."""

    monitor: EnergyMonitor
    deployments: Deployments
    reason: str


@dataclass
class BashtSession:
    options: BashtOptions
    rootdir: Path
    hook: Any = None
    config: Any = None
    progress_factory: Callable[[EnergyMonitor], ProgressCallback] | None = None
    run_id: str = field(default_factory=new_run_id)
    status: str = "complete"
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    live: LiveExporter | None = None
    _registry: Registry | None = None
    _engines: dict[str, Engine] = field(default_factory=dict)
    _documents: dict[Path, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -------------------------------------------------------------- workloads

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = (Registry.from_hooks(self.hook) if self.hook is not None
                              else Registry.default())
        return self._registry

    def validate_base(self) -> None:
        """Read and validate the --basht-workload file now (a usage error before any test)."""
        if self.options.workload is not None:
            self._document(self.options.workload)
            wl.from_mapping(self._base_document(None)[0], str(self.options.workload))

    def _document(self, path: Path) -> dict[str, Any]:
        if path not in self._documents:
            self._documents[path] = wl.read_document(path)
        return self._documents[path]

    def _base_document(self, spec_workload: str | None) -> tuple[dict[str, Any], str]:
        if spec_workload is not None:
            path = Path(spec_workload)
            path = path if path.is_absolute() else self.rootdir / path
            return self._document(path), str(path)
        if self.options.workload is not None:
            return self._document(self.options.workload), str(self.options.workload)
        return {}, DEFAULTS_SOURCE

    def resolve(self, spec: ScenarioSpec, variant: dict[str, Any]) -> wl.Workload:
        """The scenario's workload: file, then options, then marker overrides, then vary."""
        doc, source = self._base_document(spec.workload)
        doc = wl.apply_overrides(doc, self.options.workload_overrides(), source)
        doc = wl.apply_overrides(doc, spec.overrides, source)
        doc = wl.apply_overrides(doc, variant, source)
        try:
            workload = wl.from_mapping(doc, source)
            self.registry.check(workload)
            check_energy(workload, self.registry.meters)
        except WorkloadError as exc:
            if not variant and not spec.overrides:
                raise
            described = ", ".join(f"{k}={v!r}" for k, v in {**spec.overrides, **variant}.items())
            raise WorkloadError(f"{source} (with {described})", exc.key, exc.expected,
                                exc.got) from None
        return workload

    # -------------------------------------------------------------- meters and deployments

    def engine(self, workload: wl.Workload) -> Engine:
        e = workload.energy
        key = repr((e.meter, e.sample_hz, e.estimate, e.rapl, e.prometheus, e.idle_s))
        with self._lock:
            if key not in self._engines:
                selection = select_meter(self.registry.meters, workload,
                                         self.options.meter_context())
                monitor = EnergyMonitor(selection.meter, hz=e.sample_hz,
                                        selection=selection.reason)
                for text in selection.warnings:
                    warnings.warn(BashtMeterWarning(text), stacklevel=2)
                    monitor.warnings.append(text)
                    self.notes.append(text)
                monitor.start()
                progress = self._progress(monitor)
                self._engines[key] = Engine(monitor, Deployments(monitor, self.registry,
                                                                 progress=progress),
                                            selection.reason)
            return self._engines[key]

    def _progress(self, monitor: EnergyMonitor) -> ProgressCallback | None:
        """The live line and the live metrics, fed by the same progress callbacks."""
        line = self.progress_factory(monitor) if self.progress_factory else None
        live = self.live
        if live is None:
            return line
        live.watch(monitor)

        def both(progress: Progress) -> None:
            live.progress(progress)
            if line is not None:
                line(progress)

        return both

    def default_monitor(self) -> EnergyMonitor:
        """The monitor of the session's base workload (the ``energy_meter`` fixture)."""
        return self.engine(self.resolve(ScenarioSpec(), {})).monitor

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

    # -------------------------------------------------------------- scenarios

    def add_result(self, test_id: str, result: RunResult, spec: ScenarioSpec,
                   variables: dict[str, Any]) -> None:
        experiment = spec.experiment or result.workload.experiment
        self.scenarios[test_id] = Scenario(test_id, experiment, variables, result=result)
        if self.live is not None:
            self.live.scenario_done(test_id, result.energy.source, result.spans, result.trials)

    # -------------------------------------------------------------- live metrics

    def start_live(self, instance: str = "main", port_offset: int = 0) -> str | None:
        """Serve live metrics (--basht-prometheus-port) and/or prepare the push at the end
        (--basht-pushgateway); returns where they are served."""
        listen, gateway = self.options.prometheus_port, self.options.pushgateway
        if listen is None and gateway is None:
            return None
        self.live = LiveExporter(self.run_id, instance=instance)
        if listen is None:
            return None
        host, port = listen[0], listen[1] + port_offset if listen[1] else 0
        try:
            host, port = self.live.serve(host, port)
        except OSError as exc:
            raise OptionError("--basht-prometheus-port", f"a port free to listen on "
                              f"({host}:{port}: {exc.strerror})", f"{listen[0]}:{listen[1]}"
                              ) from None
        where = f"http://{host}:{port}/metrics"
        self.notes.append(f"live metrics served at {where}")
        return where

    def begin_scenario(self, test_id: str) -> None:
        if self.live is not None:
            self.live.begin(test_id)

    def finish_live(self) -> None:
        """Push to the Pushgateway (a failure is a note, not an error) and stop serving."""
        live, self.live = self.live, None
        if live is None:
            return
        if self.options.pushgateway is not None:
            problem = live.push(self.options.pushgateway)
            if problem is not None:
                warnings.warn(BashtMeterWarning(problem), stacklevel=2)
                self.notes.append(problem)
        live.close()

    def add_record(self, record: dict[str, Any]) -> None:
        self.scenarios[record["test_id"]] = Scenario(
            record["test_id"], record.get("experiment"), record.get("variables", {}),
            record=record, outcome=record.get("outcome", "passed"))

    def interrupted(self) -> None:
        """The session was interrupted: the report says so, for it and its scenario in flight."""
        self.status = "interrupted"
        for sc in self.scenarios.values():
            if sc.result is not None and sc.result.status == "interrupted":
                sc.outcome = "interrupted"

    def set_outcome(self, test_id: str, outcome: str) -> None:
        if test_id in self.scenarios:
            self.scenarios[test_id].outcome = outcome

    def records(self) -> list[dict[str, Any]]:
        out = []
        for sc in self.scenarios.values():
            if sc.record is not None:
                out.append({**sc.record, "outcome": sc.outcome})
            elif sc.result is not None:
                record = report_json.scenario_record(sc.test_id, sc.result, outcome=sc.outcome,
                                                     experiment=sc.experiment,
                                                     variables=sc.variables)
                if self.hook is not None:
                    self.hook.pytest_basht_update_scenario(config=self.config, scenario=record)
                out.append(record)
        return out

    # -------------------------------------------------------------- report

    def build_report(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        meters = [{**e.monitor.describe(), "selection": e.reason}
                  for e in self._engines.values()]
        source = meters[0]["source"] if meters else (
            records[0]["energy"]["source"] if records else "")
        if not meters and records:
            meters = [records[0]["energy"]["meter"]]
        workload_file = None
        if self.options.workload is not None:
            try:
                text = self.options.workload.read_text(encoding="utf-8")
                workload_file = {"path": str(self.options.workload),
                                 "sha256": hashlib.sha256(text.encode()).hexdigest(),
                                 "text": text}
            except OSError as exc:
                workload_file = {"path": str(self.options.workload), "error": str(exc)}
        report = report_json.build(
            run_id=self.run_id, status=self.status, scenarios=records,
            machine=machine.fingerprint(source), packages=machine.package_versions(),
            git=machine.git_info(self.rootdir), options=self.options.to_dict(),
            workload_file=workload_file, meters=meters, notes=self.notes)
        if self.hook is not None:
            self.hook.pytest_basht_update_report(config=self.config, report=report)
        return report

    def write_report(self, report: dict[str, Any]) -> Path:
        """Write report.json and report.md atomically; point ``latest`` at the run."""
        run_dir = self.options.report_dir / self.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            from pytest_basht.report import plots

            plots.write(report, run_dir)
        except Exception as exc:  # a plot must never cost the report
            report.setdefault("notes", []).append(f"plots not written: {type(exc).__name__}: "
                                                  f"{exc}")
        report_json.write_atomic(run_dir / "report.json", report_json.dumps(report))
        report_json.write_atomic(run_dir / "report.md", markdown.render(report))
        latest = self.options.report_dir / "latest"
        tmp = self.options.report_dir / f".latest-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.run_id, target_is_directory=True)
        os.replace(tmp, latest)
        return run_dir


def progress_line(progress: Progress, energy_j: float, source: str) -> str:
    best = "—" if progress.best is None else f"{progress.best:.4g}"
    return (f"[basht] trials {progress.done}/{progress.expected} · running {progress.running}"
            f" · failed {progress.failed} · best {best} · energy {energy_j:.1f} J ({source})")

"""One pytest-basht session: workloads, meters, deployments, scenario records, the report.

Plain Python: the plugin creates one per pytest session and calls into it; tests and the
CLI can drive it without pytest.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_basht import budget as budget_mod
from pytest_basht import machine, search
from pytest_basht import sweep as sweep_mod
from pytest_basht import workload as wl
from pytest_basht.energy.factory import select_meter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.errors import WorkloadError
from pytest_basht.options import BashtOptions
from pytest_basht.registry import Registry
from pytest_basht.report import comparison, markdown
from pytest_basht.report import json as report_json
from pytest_basht.runner import Deployments, RunResult
from pytest_basht.scenarios import ScenarioSpec
from pytest_basht.sut.base import Progress, ProgressCallback

DEFAULTS_SOURCE = "<defaults: the Basht baseline>"


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
    sweep: dict[str, Any] | None = None  # the sweep it is a step of, and its position


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
    _registry: Registry | None = None
    _engines: dict[str, Engine] = field(default_factory=dict)
    _documents: dict[Path, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    sweeps: dict[str, sweep_mod.SweepSpec] = field(default_factory=dict)
    sweep_steps: dict[str, tuple[str, int]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    _swept: set[str] = field(default_factory=set)

    @property
    def budget(self) -> budget_mod.Budget:
        return budget_mod.get(self.options.budget)

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
            shrink = self.budget.overrides(workload, variant)
            if shrink:
                workload = wl.from_mapping(wl.apply_overrides(doc, shrink, source), source)
            self.registry.check(workload)
            search.check(workload, self.registry)
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
        key = repr((e.meter, e.sample_hz, e.estimate))
        with self._lock:
            if key not in self._engines:
                selection = select_meter(self.registry.meters, workload)
                monitor = EnergyMonitor(selection.meter, hz=e.sample_hz,
                                        selection=selection.reason)
                monitor.start()
                progress = self.progress_factory(monitor) if self.progress_factory else None
                self._engines[key] = Engine(monitor, Deployments(monitor, self.registry,
                                                                 progress=progress),
                                            selection.reason)
            return self._engines[key]

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
        self.scenarios[test_id] = Scenario(test_id, experiment, variables, result=result,
                                           sweep=self.sweep_info(test_id))

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
                if sc.sweep is not None:
                    record["sweep"] = sc.sweep
                if self.hook is not None:
                    self.hook.pytest_basht_update_scenario(config=self.config, scenario=record)
                out.append(record)
        return out

    # -------------------------------------------------------------- sweeps and skips

    def add_sweep(self, spec: sweep_mod.SweepSpec, positions: dict[str, int]) -> None:
        self.sweeps[spec.id] = spec
        for nodeid, pos in positions.items():
            self.sweep_steps[nodeid] = (spec.id, pos)

    def sweep_info(self, test_id: str) -> dict[str, Any] | None:
        """What a scenario's record says about the sweep it is a step of."""
        entry = self.sweep_steps.get(test_id)
        if entry is None:
            return None
        spec = self.sweeps[entry[0]]
        return {**spec.to_dict(), "position": entry[1], "value": spec.values[entry[1]]}

    def sweep_verdict(self, test_id: str) -> str | None:
        """Why this sweep step is skipped (converged, or past the budget), or None."""
        entry = self.sweep_steps.get(test_id)
        if entry is None:
            return None
        spec = self.sweeps[entry[0]]
        done = [sc for sc in self.scenarios.values()
                if sc.sweep is not None and sc.sweep["id"] == spec.id and sc.result is not None]
        self._settle([sc.result for sc in done if sc.result is not None])
        steps = []
        for sc in done:
            assert sc.result is not None
            metrics = sc.result.metrics or sc.result.recompute()
            steps.append(sweep_mod.step_of({"sweep": sc.sweep, "metrics": metrics.to_dict(),
                                            "outcome": sc.outcome,
                                            "status": sc.result.status}))
        return sweep_mod.verdict(spec, steps, entry[1])

    def _settle(self, results: list[RunResult]) -> None:
        """Undeploy what earlier steps ran on, so that their JCT (with undeploy) is final."""
        for engine in list(self._engines.values()):
            dep = engine.deployments.current
            if dep is not None and any(u is r for u in dep.users for r in results):
                engine.deployments.close()

    def sweep_done(self, test_id: str) -> None:
        """A sweep step has been through its whole test protocol on this process."""
        if test_id in self.sweep_steps:
            self._swept.add(test_id)

    def sweep_unseen(self, test_id: str) -> list[str]:
        """Earlier steps of this step's sweep that have not run on this process.

        Non-empty when a scheduler split a sweep (pytest-xdist with --dist load).
        """
        entry = self.sweep_steps.get(test_id)
        if entry is None:
            return []
        return [nodeid for nodeid, (sid, pos) in self.sweep_steps.items()
                if sid == entry[0] and pos < entry[1] and nodeid not in self._swept]

    def skip_entry(self, test_id: str, spec: ScenarioSpec, variables: dict[str, Any],
                   reason: str) -> dict[str, Any]:
        """What the report keeps of a skipped scenario (plain data: it travels over xdist)."""
        experiment = spec.experiment
        if experiment is None:
            try:
                experiment = self.resolve(spec, variables).experiment
            except WorkloadError:
                experiment = None
        entry: dict[str, Any] = {"test_id": test_id, "experiment": experiment,
                                 "variables": variables, "reason": reason}
        sweep = self.sweep_info(test_id)
        if sweep is not None:
            entry["sweep"] = sweep
        return report_json.clean(entry)

    def add_skip(self, entry: dict[str, Any]) -> None:
        """A scenario that was skipped (converged sweep, missing hardware, ...)."""
        self.skipped.append(entry)

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
        notes = list(self.notes)
        if self.options.budget != "full":
            notes.append(self.budget.describe())
        report = report_json.build(
            run_id=self.run_id, status=self.status, scenarios=records,
            machine=machine.fingerprint(source), packages=machine.package_versions(),
            git=machine.git_info(self.rootdir), options=self.options.to_dict(),
            workload_file=workload_file, meters=meters, notes=notes)
        report["skipped"] = report_json.clean(self.skipped)
        report["experiments"] = comparison.experiments(report["scenarios"], report["skipped"])
        if self.hook is not None:
            self.hook.pytest_basht_update_report(config=self.config, report=report)
        return report

    def write_report(self, report: dict[str, Any]) -> Path:
        """Write report.json and report.md atomically; point ``latest`` at the run."""
        run_dir = self.options.report_dir / self.run_id
        report_json.write_atomic(run_dir / "report.json", report_json.dumps(report))
        comparison.write_plots(report.get("experiments", []), run_dir)
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

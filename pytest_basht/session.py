"""One pytest-basht session: workloads, meters, deployments, scenario records, the report.

Plain Python: the plugin creates one per pytest session and calls into it; tests and the
CLI can drive it without pytest.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import secrets
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest_basht.wiring as wiring
from pytest_basht import budget as budget_mod
from pytest_basht import machine
from pytest_basht import sweep as sweep_mod
from pytest_basht import workload as wl
from pytest_basht.energy.export import LiveExporter
from pytest_basht.energy.factory import check_energy, select_meter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.errors import BashtUsageError, OptionError, WorkloadError
from pytest_basht.options import BashtOptions
from pytest_basht.registry import Registry
from pytest_basht.report import compare as compare_mod
from pytest_basht.report import comparison, markdown
from pytest_basht.report import json as report_json
from pytest_basht.result import RunResult
from pytest_basht.runner import Deployments
from pytest_basht.scenarios import ScenarioSpec
from pytest_basht.signals import StopSignals
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
    repeat: int = 1
    scenario_id: str | None = None
    sweep: dict[str, Any] | None = None  # the sweep it is a step of, and its position


@dataclass
class Engine:
    """A meter with its deployments (one per distinct energy setting of the session)."""

    monitor: EnergyMonitor
    deployments: Deployments
    reason: str


EXIT_TESTS_FAILED = 1  # pytest.ExitCode.TESTS_FAILED: the gate failed
EXIT_INTERNAL_ERROR = 3  # pytest.ExitCode.INTERNAL_ERROR: a record could not be kept
ALARMING = ("basht gate: FAIL", "basht gate: ERROR", "REGRESSION")


@dataclass
class Finish:
    """What the end of a run produced, for the terminal and the exit status."""

    report: dict[str, Any] | None = None
    run_dir: Path | None = None
    error: str | None = None  # the report could not be written
    lines: list[tuple[str, bool]] = field(default_factory=list)  # (line, alarming?)
    failed: int = 0  # the exit status the run deserves beyond its tests' (0: none)


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
    worker: str | None = None  # the xdist worker id in a worker process
    workers: int = 1  # pytest processes running scenarios on this machine (xdist -n)
    order: list[str] = field(default_factory=list)  # collection order, for merged records
    in_flight: dict[str, str] = field(default_factory=dict)  # scenario test id -> worker
    lost: list[dict[str, Any]] = field(default_factory=list)
    baseline: Any = None  # history.Resolved: the report --basht-compare names
    _history: Any = None
    sweeps: dict[str, sweep_mod.SweepSpec] = field(default_factory=dict)
    sweep_steps: dict[str, tuple[str, int]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    _swept: set[str] = field(default_factory=set)
    signals: StopSignals = field(default_factory=StopSignals)

    @property
    def budget(self) -> budget_mod.Budget:
        return budget_mod.get(self.options.budget)

    # -------------------------------------------------------------- workloads

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = (Registry.from_hooks(self.hook) if self.hook is not None
                              else wiring.registry())
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
            sut = self.registry.sut_class(workload)
            shrink = {} if sut.zero_cost else self.budget.overrides(workload, variant)
            if shrink:
                workload = wl.from_mapping(wl.apply_overrides(doc, shrink, source), source)
            self.registry.check(workload)
            check_energy(workload, self.registry.meters)
            from pytest_basht import search  # optuna loads with the first scenario

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
        key = repr((e.meter, e.sample_hz, e.estimate, e.rapl, e.prometheus, e.idle_s,
                    e.fail_after_s))
        with self._lock:
            if key not in self._engines:
                self.signals.install()  # a basht session runs: SIGTERM ends it as Ctrl-C does
                selection = select_meter(self.registry.meters, workload,
                                         self.options.meter_context())
                if self.workers > 1:  # they share the machine's idle draw, not N copies of it
                    for meter in (selection.meter, selection.fallback):
                        if meter is not None:
                            meter.share_idle(1 / self.workers)
                monitor = EnergyMonitor(selection.meter, hz=e.sample_hz,
                                        selection=selection.reason,
                                        fallback=selection.fallback,
                                        fail_after_s=e.fail_after_s)
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
                   variables: dict[str, Any], *, repeat: int = 1) -> None:
        experiment = spec.experiment or result.workload.experiment
        self.scenarios[test_id] = Scenario(test_id, experiment, variables, result=result,
                                           repeat=repeat,
                                           scenario_id=scenario_id(test_id, repeat,
                                                                   self.options.repeat or 1),
                                           sweep=self.sweep_info(test_id))
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
        for entry in [e for e in self.lost if e["test_id"] == record["test_id"]]:
            # pytest-xdist ran the crashed scenario again (--dist loadfile/loadscope does)
            self.lost.remove(entry)
            where = (record.get("placement") or {}).get("worker", "another worker")
            self.notes.append(f"xdist worker {entry['worker']} crashed while running "
                              f"{entry['test_id']} ({entry['reason']}); pytest-xdist ran it "
                              f"again on {where}, and that run's record is kept")

    def interrupted(self) -> None:
        """The session was interrupted: the report says so, for it and its scenario in flight."""
        self.status = "interrupted"
        how = ", ".join(dict.fromkeys(self.signals.received)) or "KeyboardInterrupt"
        self.notes.append(f"the run was interrupted ({how}); the report holds every trial "
                          "finished before it, and the trials it stopped as failed")
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
                out.append(self._record(sc))
        if self.order:  # merged from xdist workers: back in collection order
            rank = {test_id: i for i, test_id in enumerate(self.order)}
            out.sort(key=lambda r: rank.get(r["test_id"], len(rank)))
        return out

    def record(self, test_id: str) -> dict[str, Any] | None:
        """One scenario's record now (provisional while its deployment is still up)."""
        sc = self.scenarios.get(test_id)
        if sc is None or sc.result is None:
            return None
        return self._record(sc)

    def _record(self, sc: Scenario) -> dict[str, Any]:
        assert sc.result is not None
        record = report_json.scenario_record(sc.test_id, sc.result, outcome=sc.outcome,
                                             experiment=sc.experiment, variables=sc.variables)
        if sc.sweep is not None:
            record["sweep"] = sc.sweep
        record["scenario_id"] = sc.scenario_id or sc.test_id
        record["repeat"] = sc.repeat
        record["placement"] = {"worker": self.worker or "main", "pid": os.getpid(),
                               "host": platform.node()}
        if self.hook is not None:
            try:
                self.hook.pytest_basht_update_scenario(config=self.config, scenario=record)
            except Exception as exc:  # a third party's hook must not cost the record
                self.notes.append(f"pytest_basht_update_scenario failed for {sc.test_id} "
                                  f"({type(exc).__name__}: {exc}); its record is as measured")
        return record

    # -------------------------------------------------------------- xdist (controller side)

    def scenario_started(self, test_id: str, worker: str) -> None:
        self.in_flight[test_id] = worker

    def scenario_ended(self, test_id: str, record: dict[str, Any] | None) -> None:
        """A worker's test ended, with the scenario's record (provisional until the final
        one comes with the worker's end) or without one (it failed before running)."""
        if record is not None:
            self.add_record(record)
        self.in_flight.pop(test_id, None)

    def worker_crashed(self, test_id: str, worker: str, reason: str) -> None:
        """An xdist worker died running ``test_id``: that test's record is lost, no other."""
        known = self.in_flight.pop(test_id, None) is not None
        for entry in self.lost:
            if entry["test_id"] == test_id:
                entry["reason"] = reason
                return
        self.lost.append({"test_id": test_id, "worker": worker, "reason": reason,
                          "scenario": known})

    def worker_down(self, worker: str, error: Any) -> None:
        """A worker went down; scenarios it had started and not sent back are lost."""
        for test_id, where in list(self.in_flight.items()):
            if where == worker:
                self.worker_crashed(test_id, worker, f"worker {worker} went down: {error}")

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
        peak = concurrency(records)
        notes = list(self.notes)
        for lost in self.lost:
            notes.append(f"xdist worker {lost['worker']} crashed while running "
                         f"{lost['test_id']}: its record is lost ({lost['reason']}); the "
                         "scenarios it had finished are kept, provisional where their "
                         "deployment's undeploy was not recorded")
        if self.options.budget != "full":
            notes.append(self.budget.describe())
        report = report_json.build(
            run_id=self.run_id, status=self.status, scenarios=records,
            machine=machine.fingerprint(source), packages=machine.package_versions(),
            git=machine.git_info(self.rootdir), options=self.options.to_dict(),
            workload_file=workload_file, meters=meters, notes=notes)
        report["concurrency"] = {
            "max_parallel": peak,
            "processes": len({(r.get("placement") or {}).get("pid") for r in records}),
            "energy_scope": energy_scope(records),
        }
        report["lost"] = list(self.lost)
        report["skipped"] = report_json.clean(self.skipped)
        report["experiments"] = comparison.experiments(report["scenarios"], report["skipped"])
        if self.hook is not None:
            self.hook.pytest_basht_update_report(config=self.config, report=report)
        return report

    def raw_report(self, records: list[dict[str, Any]], problem: Exception) -> dict[str, Any]:
        """The report when the full one cannot be built: every scenario's raw record, so
        that the measurements are kept (``basht report`` can render it later)."""
        return report_json.build(
            run_id=self.run_id, status="error" if self.status == "complete" else self.status,
            scenarios=records, machine={}, packages={}, git=None,
            options=self.options.to_dict(), workload_file=None, meters=[],
            notes=[*self.notes, f"the full report could not be built ({type(problem).__name__}"
                                f": {problem}); this one holds every scenario's raw record"])

    def check_report_dir(self) -> None:
        """Before scenarios run: --basht-report-dir must be a directory we can write in."""
        why = report_json.unwritable(self.options.report_dir)
        if why is not None:
            raise OptionError("--basht-report-dir", f"a directory it can write reports in "
                              f"({why})", str(self.options.report_dir))

    def write_report(self, report: dict[str, Any], root: Path | None = None) -> Path:
        """Write report.json and report.md atomically into ``root`` (the report directory);
        point ``latest`` at the run, or say in the report's notes why it could not."""
        root = root if root is not None else self.options.report_dir
        run_dir = root / self.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        latest = root / "latest"
        tmp = root / f".latest-{os.getpid()}"
        try:
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.run_id, target_is_directory=True)
            os.replace(tmp, latest)
        except OSError as exc:  # a directory in its place, say: the report matters, not it
            tmp.unlink(missing_ok=True)
            report.setdefault("notes", []).append(f"{latest} not pointed at this run: {exc}")
        try:
            from pytest_basht.report import plots
            from pytest_basht.zeus import report as zeus_report

            plots.write(report, run_dir)
            zeus_report.write_plot(report, run_dir)
        except Exception as exc:  # a plot must never cost the report
            report.setdefault("notes", []).append(f"plots not written: {type(exc).__name__}: "
                                                  f"{exc}")
        report_json.write_atomic(run_dir / "report.json", report_json.dumps(report))
        try:
            comparison.write_plots(report.get("experiments", []), run_dir)
            text = markdown.render(report)
        except Exception as exc:  # report.json is written: the summary must not cost it
            text = (f"# pytest-basht run {self.run_id}\n\nreport.md could not be rendered "
                    f"({type(exc).__name__}: {exc}); report.json holds every record.\n")
        report_json.write_atomic(run_dir / "report.md", text)
        return run_dir

    def rescue(self, report: dict[str, Any], problem: OSError) -> tuple[Path | None, str]:
        """The report directory failed at the end of the run: write the report to the
        temporary directory instead, so that no measurement is lost; (where, what happened)."""
        what = f"could not write the report to {self.options.report_dir}: {problem}"
        root = Path(tempfile.gettempdir()) / "basht-reports"
        report.setdefault("notes", []).append(f"{what}; written to {root} instead")
        try:
            return self.write_report(report, root), f"{what}; written to {root} instead"
        except OSError as exc:
            return None, f"{what}; nor to {root}: {exc}"


    # -------------------------------------------------------------- history and gate

    def history_store(self, *, set_aside_corrupt: bool = False) -> Any:
        """The run history (opened on first use), or None with ``--basht-history off``.
        ``set_aside_corrupt``: a damaged SQLite file is moved aside for a fresh one (when a
        run is saved; a baseline is never looked up in an empty store)."""
        from pytest_basht.report import history  # SQLAlchemy loads only when it is used

        if history.is_off(self.options.history):
            return None
        if self._history is None:
            self._history = history.History(history.store_url(self.options.history,
                                                              self.rootdir),
                                            set_aside_corrupt=set_aside_corrupt)
        return self._history

    def prepare_gate(self) -> None:
        """Check the gate's options and load the baseline now: a usage error before any test."""
        from pytest_basht.report import history

        o = self.options
        if o.fail_on and o.compare is None:
            raise OptionError("--basht-fail-on", "--basht-compare REF with it (the baseline "
                              "to hold this run to)",
                              ",".join(t.text for t in o.fail_on))
        if o.save is not None and history.is_off(o.history):
            raise OptionError("--basht-save", "a history store to save in (it is off)", o.save)
        if o.compare is None:
            return
        here = machine.fingerprint("")
        keys = () if o.compare_any_machine else compare_mod.HARDWARE_KEYS
        store = None if history.looks_like_path(o.compare) else self.history_store()
        self.baseline = history.resolve(o.compare, store, machine=here, keys=keys)
        label = f"baseline {self.baseline.label}"
        compare_mod.check_report(self.baseline.report, label)
        if not o.compare_any_machine:
            compare_mod.refuse_other_machine(self.baseline.report["machine"], here, label,
                                             compare_mod.HARDWARE_KEYS)

    def gate(self, report: dict[str, Any]) -> dict[str, Any] | None:
        """Compare this run's report with the baseline; the result goes into the report."""
        if self.baseline is None:
            return None
        label = f"baseline {self.baseline.label}"
        try:
            result = compare_mod.compare(
                self.baseline.report, report, self.options.fail_on or (),
                baseline_label=label, any_machine=bool(self.options.compare_any_machine))
        except BashtUsageError as exc:
            out = {"verdict": "error", "error": str(exc), "baseline": {"label": label},
                   "thresholds": [t.text for t in self.options.fail_on or ()], "rows": []}
        else:
            out = result.to_dict()
        report["comparison"] = report_json.clean(out)
        return report["comparison"]

    def save_history(self, report: dict[str, Any], run_dir: Path
                     ) -> tuple[bool, str, bool] | None:
        """Save the run in the history; (saved?, a line for the terminal, alarming?)."""
        try:
            store = self.history_store(set_aside_corrupt=True)
            if store is None:
                return None
            entry = store.save(report, name=self.options.save, path=run_dir / "report.json")
        except BashtUsageError as exc:
            return False, f"history: not saved: {exc}", True
        named = f" as '{entry.name}'" if entry.name else ""
        line = f"history: saved run {entry.run_id}{named} in {store.shown}"
        if store.set_aside is None:
            return True, line, False
        return True, (f"{line} — a fresh store: the old one was damaged and is kept as "
                      f"{store.set_aside}"), True

    def finish(self, records: list[dict[str, Any]]) -> Finish:
        """The controller's end of a run: the report, the gate, the files, the history."""
        out = Finish()
        try:
            try:
                report = self.build_report(records)
            except Exception as exc:  # a bug in a part of the report (a hook, a table)
                report = self.raw_report(records, exc)
                out.failed = EXIT_INTERNAL_ERROR
                out.lines.append((report["notes"][-1], True))
            comparison = self.gate(report)
            if comparison is not None:
                out.lines += [(line, line.startswith(ALARMING))
                              for line in compare_mod.gate_lines(comparison)]
                if comparison["verdict"] in ("fail", "error"):
                    out.failed = EXIT_TESTS_FAILED
            try:
                out.run_dir = self.write_report(report)
            except OSError as exc:
                out.run_dir, line = self.rescue(report, exc)
                out.failed = out.failed or EXIT_INTERNAL_ERROR  # it is not where asked
                if out.run_dir is None:
                    out.error = line
                    return out
                out.lines.append((line, True))
            out.report = report
            saved = self.save_history(report, out.run_dir)
        finally:
            self.close_history()
        if saved is not None:
            out.lines.append((saved[1], saved[2]))
            if not saved[0] and self.options.save is not None:
                out.failed = out.failed or EXIT_INTERNAL_ERROR  # the name asked for is unsaved
        return out

    def close_history(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None


_REPEAT = re.compile(r"(\[|-)repeat=\d+\]$")


def repeat_id(repeat: int) -> str:
    """The id pytest shows for the ``repeat``-th run of a scenario (1-based)."""
    return f"repeat={repeat}"


def scenario_id(test_id: str, repeat: int, count: int) -> str:
    """The scenario a test samples: its id without the repeat parametrization."""
    if count <= 1:
        return test_id
    return _REPEAT.sub(lambda m: "]" if m.group(1) == "-" else "", test_id)


def _window(record: dict[str, Any]) -> tuple[int, int] | None:
    """When a scenario ran: its own deploy (not a reused one) to metric collection."""
    reused = (record.get("deployment") or {}).get("reused")
    spans = [s for s in record.get("spans", []) if s["phase"] != "undeploy"
             and not (reused and s["phase"] == "deploy")]
    edges = [(s["start_ns"], s["end_ns"]) for s in [*spans, *record.get("trials", [])]]
    if not edges:
        return None
    return min(a for a, _ in edges), max(b for _, b in edges)


def concurrency(records: list[dict[str, Any]]) -> int:
    """Note in each record how many scenarios shared the machine with it; the run's peak.

    All processes of one host share CLOCK_MONOTONIC, so windows from different xdist
    workers compare directly.
    """
    windows = [_window(r) for r in records]
    peak_run = 1 if records else 0
    for i, record in enumerate(records):
        w = windows[i]
        host = (record.get("placement") or {}).get("host")
        others = [j for j, o in enumerate(windows) if j != i and w and o and o[0] < w[1]
                  and w[0] < o[1] and (records[j].get("placement") or {}).get("host") == host]
        peak = 1
        for t in [w[0], *(max(w[0], windows[j][0]) for j in others)] if w else []:
            peak = max(peak, 1 + sum(1 for j in others if windows[j][0] <= t < windows[j][1]))
        record["concurrency"] = {"max_parallel": peak,
                                 "overlapped": [records[j]["test_id"] for j in others]}
        peak_run = max(peak_run, peak)
    return peak_run


def energy_scope(records: list[dict[str, Any]]) -> str:
    """What one scenario's energy covers when scenarios share the machine."""
    if all(not r["energy"].get("measured") for r in records):
        return ("per process: each pytest process (xdist worker) models its own process "
                "tree's energy from that tree's CPU time, plus an even share of the modelled "
                "idle draw (1 / the number of xdist workers); trials get CPU-time shares")
    return ("a measured meter: each pytest process reads the counters it has; where they "
            "cover the whole machine, a scenario's figure includes what scenarios running "
            "beside it drew, unless the meter attributes by CPU-time share")


def progress_line(progress: Progress, energy_j: float, source: str) -> str:
    best = "—" if progress.best is None else f"{progress.best:.4g}"
    return (f"[basht] trials {progress.done}/{progress.expected} · running {progress.running}"
            f" · failed {progress.failed} · best {best} · energy {energy_j:.1f} J ({source})")

"""One pytest-basht session: the coordinator of a run.

The plugin creates one per pytest process and calls into it; tests and the CLI can drive
it without pytest. The session keeps the scenarios' records and the run's notes, and asks
each room for the rest: workloads from the resolver (``scenarios``), meters and
deployments from the engines (``engines``), sweeps from their tracker (``sweep``), the
xdist workers' bookkeeping from theirs (``xdist_tracker``). At the end of the run, on the
controller, ``finish`` reads as assemble → gate → write → save (``report.assemble``,
``report.gate``, ``report.files``, ``report.history``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest_basht.budget as budget_mod
import pytest_basht.machine as machine
import pytest_basht.wiring as wiring
from pytest_basht.conditions import ConditionsRecorder
from pytest_basht.energy.leases import Leases
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.trace import scenario_start
from pytest_basht.engines import Engines
from pytest_basht.options import BashtOptions
from pytest_basht.registry import Registry
from pytest_basht.report import assemble, files
from pytest_basht.report import json as report_json
from pytest_basht.report.gate import Gate, alarms, exit_status
from pytest_basht.result import RunResult
from pytest_basht.scenarios import ScenarioSpec, WorkloadResolver, scenario_id
from pytest_basht.signals import StopSignals
from pytest_basht.sut.base import ProgressCallback
from pytest_basht.sweep import SweepTracker
from pytest_basht.workdir import RunWork
from pytest_basht.xdist_tracker import XdistTracker

if TYPE_CHECKING:
    from pytest_basht.report.history import SessionHistory

EXIT_INTERNAL_ERROR = 3  # pytest.ExitCode.INTERNAL_ERROR: a record could not be kept


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
    conditions: dict[str, Any] | None = None  # the load it ran under (conditions.summarize)


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
    say: Callable[[str], None] | None = None  # what the end of the run is doing, as it does
    worker: str | None = None  # the xdist worker id in a worker process
    run_dir: Path | None = None  # xdist: the run's work directory, named by the controller
    workers: int = 1  # pytest processes running scenarios on this machine (xdist -n)
    run_id: str = field(default_factory=new_run_id)
    status: str = "complete"
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)  # errors that fail the run at its end
    workload_file: dict[str, Any] | None = None  # --basht-workload as read at the start
    signals: StopSignals = field(default_factory=StopSignals)
    sweeps: SweepTracker = field(default_factory=SweepTracker)
    xdist: XdistTracker = field(default_factory=XdistTracker)  # on the controller
    budget: budget_mod.Budget = field(init=False)
    resolver: WorkloadResolver = field(init=False)
    engines: Engines = field(init=False)
    gate: Gate = field(init=False)
    work: RunWork = field(init=False)  # where this process's deployments keep their files
    leases: Leases | None = field(init=False)  # xdist: the scenarios running on the machine
    _plugins: Any = None
    conditions: ConditionsRecorder = field(init=False)
    _registry: Registry | None = None
    _history: SessionHistory | None = None

    def __post_init__(self) -> None:
        o = self.options
        self.budget = budget_mod.get(o.budget)
        self.resolver = WorkloadResolver(self.rootdir, lambda: self.registry, base=o.workload,
                                         overrides=o.workload_overrides(), budget=self.budget)
        self.work = RunWork(self.run_dir)
        self.leases = (Leases(self.run_dir / "leases") if self.run_dir is not None
                       and self.worker is not None else None)
        self.engines = Engines(lambda: self.registry, o.meter_context, self.signals,
                               self.notes, sharing=self.leases, work_root=self.work.path,
                               line=self.progress_factory)
        self.gate = Gate(o.compare, tuple(o.fail_on or ()), bool(o.compare_any_machine))
        # under xdist the run's process tree is the controller's (the worker's parent)
        self.conditions = ConditionsRecorder(os.getppid() if self.worker else os.getpid())

    @property
    def plugins(self) -> Any:
        """The plugins' hook caller: pytest's, or without pytest the wiring's own."""
        if self._plugins is None:
            self._plugins = self.hook if self.hook is not None else \
                wiring.plugin_manager().hook
        return self._plugins

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry.from_hooks(self.plugins)
        return self._registry

    @property
    def history(self) -> SessionHistory:
        """The run history (SQLAlchemy loads only when it is used)."""
        if self._history is None:
            from pytest_basht.report.history import SessionHistory

            self._history = SessionHistory(self.options.history, self.rootdir,
                                           self.options.save)
        return self._history

    def prepare(self) -> None:
        """Read and check now what the end of the run needs — the gate's options and its
        baseline, the history store, the workload file the report keeps: a usage error
        before any test, and nothing at the end depends on a file still being there."""
        self.gate.check()
        self.history.check()
        self.gate.load(self.history)
        self.workload_file = assemble.workload_file(self.options.workload)

    # -------------------------------------------------------------- scenarios

    def begin_scenario(self, test_id: str) -> None:
        """A scenario starts: its conditions are sampled from now (and once a second)."""
        self.conditions.start()
        self.conditions.sample()
        self.engines.begin_scenario(test_id)

    def add_result(self, test_id: str, result: RunResult, spec: ScenarioSpec,
                   variables: dict[str, Any], *, repeat: int = 1) -> None:
        experiment = spec.experiment or result.workload.experiment
        conditions = self.conditions.summary(scenario_start(result.spans, result.trials),
                                             workers=result.workload.workers.count,
                                             processes=self.workers)
        self.scenarios[test_id] = Scenario(test_id, experiment, variables, result=result,
                                           repeat=repeat,
                                           scenario_id=scenario_id(test_id, repeat,
                                                                   self.options.repeat or 1),
                                           sweep=self.sweeps.info(test_id),
                                           conditions=conditions)
        self.engines.scenario_done(test_id, result)

    def add_record(self, record: dict[str, Any]) -> None:
        """A scenario's record from an xdist worker (provisional until the worker ends)."""
        self.scenarios[record["test_id"]] = Scenario(
            record["test_id"], record.get("experiment"), record.get("variables", {}),
            record=record, outcome=record.get("outcome", "passed"))
        self.notes += self.xdist.recovered(record)

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
        return self.xdist.in_order(out)

    def record(self, test_id: str) -> dict[str, Any] | None:
        """One scenario's record now (provisional while its deployment is still up)."""
        sc = self.scenarios.get(test_id)
        if sc is None or sc.result is None:
            return None
        return self._record(sc)

    def _record(self, sc: Scenario) -> dict[str, Any]:
        assert sc.result is not None
        record = report_json.scenario_record(
            sc.test_id, sc.result, outcome=sc.outcome, experiment=sc.experiment,
            variables=sc.variables, sweep=sc.sweep, scenario_id=sc.scenario_id or sc.test_id,
            repeat=sc.repeat, worker=self.worker or "main", conditions=sc.conditions)
        try:
            self.plugins.pytest_basht_update_scenario(config=self.config, scenario=record)
        except Exception as exc:  # a third party's hook must not cost the record
            self.notes.append(f"pytest_basht_update_scenario failed for {sc.test_id} "
                              f"({type(exc).__name__}: {exc}); its record is as measured")
        return record

    # -------------------------------------------------------------- sweeps and skips

    def sweep_verdict(self, test_id: str) -> str | None:
        """Why this sweep step is skipped (converged, or past the budget), or None."""
        return self.sweeps.verdict(test_id, self._finished_steps)

    def _finished_steps(self, sweep_id: str) -> list[dict[str, Any]]:
        """The sweep's steps that ran here, final: what they ran on is undeployed first."""
        done = [(sc, sc.result) for sc in self.scenarios.values()
                if sc.result is not None and (sc.sweep or {}).get("id") == sweep_id]
        self.engines.settle([result for _, result in done])
        return [{"sweep": sc.sweep, "metrics": (result.metrics or result.recompute()).to_dict(),
                 "outcome": sc.outcome, "status": result.status} for sc, result in done]

    def skip_entry(self, test_id: str, spec: ScenarioSpec, variables: dict[str, Any],
                   reason: str) -> dict[str, Any]:
        """What the report keeps of a skipped scenario (plain data: it travels over xdist)."""
        return report_json.skip_record(test_id, self.resolver.experiment_of(spec, variables),
                                       variables, reason, self.sweeps.info(test_id))

    # -------------------------------------------------------------- the end of the run

    def build_report(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The report of these records with the facts gathered here, amended by hooks."""
        meters = self.engines.meters()
        facts = assemble.RunFacts(
            run_id=self.run_id, status=self.status, options=self.options.to_dict(),
            machine=machine.fingerprint(assemble.meter_source(meters, records)),
            packages=machine.package_versions(), git=machine.git_info(self.rootdir),
            workload_file=self.workload_file, meters=meters,
            budget=None if self.options.budget == "full" else self.budget.describe())
        report = assemble.build(records, self.notes, facts, lost=self.xdist.lost,
                                skipped=self.skipped)
        self.plugins.pytest_basht_update_report(config=self.config, report=report)
        return report

    def finish(self, records: list[dict[str, Any]]) -> Finish:
        """The controller's end of a run: assemble → gate → write → save."""
        out = Finish()
        try:
            self._tell(f"assembling the report of {len(records)} scenario(s) …")
            report = self._assemble(records, out)
            self._judge(report, out)
            out.run_dir = self._write(report, out)
            if out.run_dir is None:
                return out
            out.report = report
            self._tell("saving the run in the history …")
            saved = self.history.save(report, out.run_dir / "report.json")
        finally:
            self.history.close()
        if saved is not None:
            out.lines.append((saved.line, saved.alarming))
            if saved.failed:
                out.failed = out.failed or EXIT_INTERNAL_ERROR  # the name asked for is unsaved
        return out

    def _tell(self, text: str) -> None:
        if self.say is not None:
            self.say(text)

    def _assemble(self, records: list[dict[str, Any]], out: Finish) -> dict[str, Any]:
        try:
            return self.build_report(records)
        except Exception as exc:  # a bug in a part of the report (a hook, a table)
            report = assemble.raw(records, self.notes, exc, run_id=self.run_id,
                                  status=self.status, options=self.options.to_dict())
            out.failed = EXIT_INTERNAL_ERROR
            out.lines.append((report["notes"][-1], True))
            return report

    def _judge(self, report: dict[str, Any], out: Finish) -> None:
        comparison = self.gate.judge(report)
        if comparison is not None:
            out.lines += alarms(comparison)
            out.failed = exit_status(comparison) or out.failed

    def _write(self, report: dict[str, Any], out: Finish) -> Path | None:
        """Write the report where asked, else rescue it (None: nowhere could hold it)."""
        try:
            return files.write_report(report, self.options.report_dir, self.plugins,
                                      say=self.say)
        except OSError as exc:
            run_dir, line = files.rescue(report, self.options.report_dir, exc, self.plugins)
            out.failed = out.failed or EXIT_INTERNAL_ERROR  # it is not where asked
            if run_dir is None:
                out.error = line
            else:
                out.lines.append((line, True))
            return run_dir

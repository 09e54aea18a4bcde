"""pytest hooks only: options, ini, markers, fixtures, progress, summary, xdist transport.

Everything here delegates to plain Python (``session``, ``runner``, ``report``). The plugin
does nothing to a run that uses none of its fixtures: no meter starts, no report is written.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_basht import forecast, hookspecs, sweep, wiring, workdir
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.errors import BashtExposureWarning, BashtUsageError
from pytest_basht.options import BashtOptions, add_options
from pytest_basht.report import files, terminal
from pytest_basht.report import json as report_json
from pytest_basht.report.gate import exit_status
from pytest_basht.runner import Deployment, TrialRunner
from pytest_basht.scenarios import VARIANT, ScenarioSpec, merge_stacked, repeat_id, variant_of
from pytest_basht.session import BashtSession
from pytest_basht.sut.limits import accelerator_missing
from pytest_basht.terminal_progress import ProgressReporter
from pytest_basht.workload import Workload

SESSION = pytest.StashKey[BashtSession]()
WRITTEN = pytest.StashKey[str]()
REPORT = pytest.StashKey[dict[str, Any]]()
FINISH = pytest.StashKey[list[tuple[str, bool]]]()  # (terminal line, red?) after the table
PROGRESS = pytest.StashKey[ProgressReporter]()
GATE_FAILED = "basht gate failed"  # counted in pytest's last line: "1 passed, 1 basht gate ..."
XDIST_KEY = "basht_records"
RUN_DIR_KEY = "basht_run_dir"  # the run's work directory, from the controller to its workers
FATAL_KEY = "basht_fatal"  # a worker's errors that must fail the run (JSON list)
FATAL = pytest.StashKey[list[str]]()
RECORD_ATTR = "basht_record"  # on a worker's teardown report: the scenario's record (JSON)
STARTED_ATTR = "basht_scenario"  # on a worker's setup report: the worker id


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "basht(*, workload=None, experiment=None, overrides=None): the workload "
        "file, experiment name and dotted-path overrides of a pytest-basht scenario")
    config.addinivalue_line(
        "markers", f"{sweep.MARKER}(*, tolerance=0.05, metric='jct_ms'): run a vary() over one "
        "variable in order and skip the rest once two successive steps differ by less than "
        "the tolerance")
    wiring.register_builtins(config.pluginmanager)
    options = BashtOptions.from_config(config)
    workerinput = getattr(config, "workerinput", {})
    worker = workerinput.get("workerid")
    progress = ProgressReporter(config, options.progress_every)
    config.stash[PROGRESS] = progress
    if worker is not None:
        run_dir = Path(workerinput[RUN_DIR_KEY]) if RUN_DIR_KEY in workerinput else None
    else:  # the controller names one work directory for all its workers (none without xdist)
        run_dir = (Path(tempfile.gettempdir()) / f"{workdir.PREFIX}{secrets.token_hex(6)}"
                   if _xdist_workers(config) else None)
    session = BashtSession(options, config.rootpath, hook=config.hook, config=config,
                           progress_factory=progress.line_for, say=progress.say,
                           worker=worker, workers=int(workerinput.get("workercount", 1)),
                           run_dir=run_dir)
    session.resolver.validate_base()
    if worker is None:  # the controller (or a plain run): gate, merge and skips live here
        if run_dir is not None:  # held until the run ends: no sweep takes it from its workers
            session.work.path()
        session.prepare()
        session.engines.check_ports(options.prometheus_port, _xdist_workers(config))
        config.pluginmanager.register(_Controller(session), "basht-controller")
        config.pluginmanager.register(_SkipRecorder(session), "basht-skips")
    config.stash[SESSION] = session
    try:
        session.engines.start_live(session.run_id, worker or "main", options.prometheus_port,
                                   options.pushgateway is not None,
                                   1 + int(worker[2:]) if worker else 0)  # gw0: PORT+1
    except BashtUsageError as exc:
        if worker is None:
            raise
        # taken since the controller checked it: this worker's scenarios run and are kept,
        # and the controller fails the run with this message (a usage error here would be
        # a crashed worker, its tests run by the others, and exit status 0)
        session.fatal.append(f"xdist worker {worker}: {exc}")
    if session.engines.exposed is not None and worker is None:  # said once, by the controller
        config.issue_config_time_warning(BashtExposureWarning(session.engines.exposed), 2)


def _xdist_workers(config: pytest.Config) -> int:
    """How many workers pytest-xdist will start (0 without xdist): its ``--tx`` specs, which
    ``-n N`` (and ``-n auto``, resolved by then) become, ``3*popen`` counting 3."""
    if getattr(config.option, "dist", "no") == "no":
        return 0
    count = 0
    for spec in getattr(config.option, "tx", None) or []:
        times, star, _ = str(spec).partition("*")
        count += int(times) if star and times.isdigit() else 1
    return count


def _session(config: pytest.Config) -> BashtSession:
    return config.stash[SESSION]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    merge_stacked(metafunc)


@pytest.hookimpl(trylast=True, specname="pytest_generate_tests")
def pytest_generate_repeats(metafunc: pytest.Metafunc) -> None:
    """--basht-repeat N: each scenario N times, the repeat last in its id (``-repeat=2``)."""
    count = _session(metafunc.config).options.repeat or 1
    if count > 1 and "basht_repeat" in metafunc.fixturenames:
        metafunc.parametrize("basht_repeat", range(1, count + 1), indirect=True,
                             ids=[repeat_id(i) for i in range(1, count + 1)])


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]
                                  ) -> Iterator[None]:
    """Sweeps: mark each for one xdist worker (before xdist reads the marks, for --dist
    loadgroup), then, once the selection is final, run each one's steps in order."""
    for item in items:
        if item.get_closest_marker(sweep.MARKER) is not None:
            item.add_marker(pytest.mark.xdist_group(name=f"basht-sweep:{_sweep_id(item)}"))
    yield
    state = _session(config)
    steps: dict[str, list[tuple[str, int, dict[str, Any]]]] = {}
    marks: dict[str, pytest.Mark] = {}
    for item in items:
        mark = item.get_closest_marker(sweep.MARKER)
        callspec = getattr(item, "callspec", None)
        if mark is None:
            continue
        if callspec is None or VARIANT not in callspec.params:
            raise BashtUsageError(f"{item.nodeid}: @pytest.mark.{sweep.MARKER} needs the "
                                  "values to sweep: vary(path, values) on the same test")
        sid = _sweep_id(item)
        steps.setdefault(sid, []).append((item.nodeid, callspec.indices[VARIANT],
                                          variant_of(item)))
        marks[sid] = mark
    budget = state.budget
    for sid, group in steps.items():
        tolerance, metric = sweep.parse_marker(sid, marks[sid].kwargs, marks[sid].args)
        spec, positions = sweep.build(sid, group, tolerance=tolerance, metric=metric,
                                      max_steps=budget.max_sweep_steps, budget=budget.name)
        state.sweeps.add(spec, positions)
    if steps:
        items[:] = sweep.in_order(items, state.sweeps.steps)


def _sweep_id(item: pytest.Item) -> str:
    return f"{item.parent.nodeid}::{getattr(item, 'originalname', item.name)}"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Resolve every selected scenario's workload now: one usage error, not N test errors."""
    state = _session(session.config)
    scenarios = False
    for item in session.items:
        if VARIANT in getattr(item, "fixturenames", ()):
            state.resolver.resolve(ScenarioSpec.from_item(item), variant_of(item))
            scenarios = True
    if scenarios and state.worker is None:  # an xdist worker's usage error is a crash there;
        # the controller rescues the report if the directory fails
        files.check_report_dir(state.options.report_dir)


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def energy_meter(request: pytest.FixtureRequest) -> EnergyMonitor:
    """The session's energy monitor; ``with energy_meter.window("name") as w`` in any test."""
    state = _session(request.config)
    return state.engines.get(state.resolver.resolve(ScenarioSpec(), {})).monitor


@pytest.fixture
def basht_variant(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The workload variables this scenario sets (from ``vary``)."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def basht_workload(request: pytest.FixtureRequest, basht_variant: dict[str, Any]) -> Workload:
    """This scenario's resolved, validated workload."""
    return _session(request.config).resolver.resolve(ScenarioSpec.from_item(request.node),
                                                     basht_variant)


@pytest.fixture(scope="session")
def _basht_undeploy(request: pytest.FixtureRequest) -> Iterator[None]:
    """Undeploys whatever is deployed when the session ends, also after a failure or Ctrl-C."""
    yield
    _session(request.config).engines.close()


@pytest.fixture
def deployed_sut(request: pytest.FixtureRequest, basht_workload: Workload,
                 _basht_undeploy: None) -> Deployment:
    """The deployment for this workload's SUT key (deployed once, reused by equal keys)."""
    session = _session(request.config)
    session.begin_scenario(request.node.nodeid)  # its conditions are sampled from here
    return session.engines.get(basht_workload).deployments.get(basht_workload)


@pytest.fixture
def basht_repeat(request: pytest.FixtureRequest) -> int:
    """Which run of this scenario this is (1-based; ``--basht-repeat N`` runs N)."""
    return int(getattr(request, "param", 1))


@pytest.fixture
def trial_runner(request: pytest.FixtureRequest, basht_workload: Workload,
                 basht_variant: dict[str, Any], deployed_sut: Deployment,
                 basht_repeat: int) -> TrialRunner:
    """``trial_runner.run()``: setup → trials → result collection → test → metric collection."""
    session = _session(request.config)
    spec = ScenarioSpec.from_item(request.node)
    nodeid = request.node.nodeid
    engine = session.engines.get(basht_workload)
    return TrialRunner(basht_workload, engine.deployments,
                       on_result=lambda r: session.add_result(nodeid, r, spec, basht_variant,
                                                              repeat=basht_repeat),
                       forecast=forecast.forecaster(session.options.forecast,
                                                    session.options.forecast_tables,
                                                    session.registry))


# ------------------------------------------------------------------------- skips


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a scenario the machine cannot run, or a sweep step past convergence."""
    if VARIANT not in getattr(item, "fixturenames", ()):
        return
    state = _session(item.config)
    workload = state.resolver.resolve(ScenarioSpec.from_item(item), variant_of(item))
    missing = accelerator_missing(workload.workers.accelerator)
    if missing is not None:
        pytest.skip(missing)
    unseen = state.sweeps.unseen(item.nodeid)
    if unseen:
        pytest.fail(f"pytest-basht: sweep step {item.nodeid} would run without the steps "
                    f"before it ({', '.join(unseen)}) on this process; under pytest-xdist run "
                    "sweeps with --dist loadscope or --dist loadfile, which keep a module's "
                    "tests on one worker in order (--dist loadgroup also would, by the "
                    "xdist_group mark each sweep has, but with pytest ≥ 9.2 pytest-xdist 3.8 "
                    "no longer groups: pytest-xdist issue #1386)", pytrace=False)
    reason = state.sweep_verdict(item.nodeid)
    if reason is not None:
        pytest.skip(reason)
    if "trial_runner" in getattr(item, "fixturenames", ()):
        state.engines.begin_lease(item.nodeid)  # from before its deploy: ended after its teardown


# ------------------------------------------------------------------------- outcomes


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[Any]:
    session = item.config.stash.get(SESSION, None)
    record = None
    if session is not None and call.when == "teardown" and item.nodeid in session.scenarios:
        # The record as the test ends: JUnit properties, and a worker sends it home now so
        # that a later crash of the worker loses nothing but the scenario then in flight.
        worker = session.worker is not None
        if worker or getattr(item.config.option, "xmlpath", None):
            record = session.record(item.nodeid)
        if record is not None:
            item.user_properties.extend(report_json.junit_properties(record))
    report = yield
    known = session is not None and item.nodeid in session.scenarios
    if known and (report.when == "call" or report.outcome != "passed"):
        outcome = report.outcome if report.when == "call" else (
            "skipped" if report.skipped else "error")
        session.set_outcome(item.nodeid, outcome)
    if session is not None and session.worker is not None:
        if report.when == "setup" and "trial_runner" in getattr(item, "fixturenames", ()):
            setattr(report, STARTED_ATTR, session.worker)
        if record is not None:
            setattr(report, RECORD_ATTR, json.dumps({**record, "outcome": session.scenarios[
                item.nodeid].outcome}))  # a teardown error has just changed it
    if session is not None and VARIANT in getattr(item, "fixturenames", ()):
        if report.skipped and not known:  # travels to the xdist controller with the report
            report.basht_skip = session.skip_entry(  # type: ignore[attr-defined]
                item.nodeid, ScenarioSpec.from_item(item), variant_of(item),
                _skip_reason(report))
        if report.when == "teardown":
            session.sweeps.done(item.nodeid)
    if session is not None and report.when == "teardown":
        session.engines.end_lease(item.nodeid)
    return report


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class _SkipRecorder:
    """Records skipped scenarios where the report is written: the xdist controller, or here."""

    def __init__(self, state: BashtSession) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = getattr(report, "basht_skip", None)
        if entry is not None:
            self.state.skipped.append(entry)


# ------------------------------------------------------------------------- finish


@pytest.hookimpl(tryfirst=True, specname="pytest_sessionfinish")
def pytest_sessionfinish_begins(session: pytest.Session) -> None:
    """From here (undeploy in the fixtures' teardown, then the report) one more stop signal
    is held back rather than let it cost the report."""
    state = session.config.stash.get(SESSION, None)
    if state is not None:
        state.signals.finish()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _session(session.config)
    try:
        _finish(session, state, exitstatus)
    finally:
        state.signals.restore()


def _finish(session: pytest.Session, state: BashtSession, exitstatus: int) -> None:
    config = session.config
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        state.interrupted()
    try:
        state.engines.close()
    except Exception as exc:  # the records are kept; their undeploy is missing, and said so
        state.notes.append(f"undeploy failed ({type(exc).__name__}: {exc}): the records of "
                           "the scenarios on that deployment stay provisional")
    state.conditions.stop()
    state.work.release()
    if state.worker is None and state.run_dir is not None:  # its workers are done with it
        shutil.rmtree(state.run_dir, ignore_errors=True)
    state.engines.finish_live(state.options.pushgateway)
    records = state.records()
    if hasattr(config, "workerinput"):  # an xdist worker: send records to the controller
        config.workeroutput[XDIST_KEY] = json.dumps(records)  # type: ignore[attr-defined]
        config.workeroutput[FATAL_KEY] = json.dumps(state.fatal)  # type: ignore[attr-defined]
        return
    if state.fatal:
        config.stash[FATAL] = list(state.fatal)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    if not records and not state.xdist.lost:
        state.history.close()
        return
    done = state.finish(records)
    config.stash[WRITTEN] = done.error or str(done.run_dir)
    config.stash[FINISH] = done.lines
    if done.report is not None:
        config.stash[REPORT] = done.report
    if done.error is not None:
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    elif done.failed and session.exitstatus == 0:
        session.exitstatus = done.failed


class _Controller:
    """The xdist controller's side: records as scenarios finish, crashes, collection order.

    Its xdist hooks are optional, so a run with ``-p no:xdist`` loads the plugin too.
    """

    def __init__(self, state: BashtSession) -> None:
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Each worker joins the run's one work directory: its deployments' files, and the
        leases by which the scenarios running at once share the machine's idle draw."""
        if self.state.run_dir is not None:
            node.workerinput[RUN_DIR_KEY] = str(self.state.run_dir)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """A worker finished (its final records) or died (its scenario in flight is lost)."""
        output = getattr(node, "workeroutput", {})
        raw = output.get(XDIST_KEY)
        if raw:
            for record in json.loads(raw):
                self.state.add_record(record)
        self.state.fatal += json.loads(output.get(FATAL_KEY) or "[]")
        if error is not None:
            self.state.xdist.down(node.gateway.id, error)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        worker = getattr(report, STARTED_ATTR, None)
        if worker is not None and report.when == "setup":
            self.state.xdist.started(report.nodeid, worker)
        if report.when == "teardown":  # with the record (provisional until the worker ends)
            raw = getattr(report, RECORD_ATTR, None)  # or without: it failed before running
            if raw:
                self.state.add_record(json.loads(raw))
            self.state.xdist.ended(report.nodeid)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if not self.state.xdist.order:
            self.state.xdist.order = list(ids)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport,
                               sched: Any) -> None:
        node = getattr(report, "node", None)
        worker = getattr(getattr(node, "gateway", None), "id", "?")
        self.state.xdist.crashed(crashitem, worker, str(report.longrepr))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    written = config.stash.get(WRITTEN, None)
    fatal = config.stash.get(FATAL, [])
    if written is None and not fatal:
        return
    terminalreporter.write_sep("=", "basht")
    for text in fatal:
        terminalreporter.write_line(f"basht: error: {text}", red=True, bold=True)
    if written is None:
        return
    report = config.stash.get(REPORT, None)
    for line in terminal.summary(written, report, config.stash.get(FINISH, [])):
        terminalreporter.write_line(line.text, **line.markup())
    comparison = (report or {}).get("comparison")
    if comparison and exit_status(comparison):  # so that pytest's last line says so too
        terminalreporter.stats.setdefault(GATE_FAILED, []).append(comparison["verdict"])


# ------------------------------------------------------------------------- progress


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A scenario's test is over: its progress line ends."""
    try:
        return (yield)
    finally:
        progress = item.config.stash.get(PROGRESS, None)
        if progress is not None:
            progress.end_scenario()


def pytest_unconfigure(config: pytest.Config) -> None:
    progress = config.stash.get(PROGRESS, None)
    if progress is not None:
        progress.close()

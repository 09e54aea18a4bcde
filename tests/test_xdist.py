"""Parallel scenarios (pytest -n): one merged report equal to a serial run's, concurrency,
JUnit properties, and a crashed xdist worker that loses only its scenario in flight."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest
from conftest import only_report
from fake_trainable import CONFTEST, workload

from pytest_basht.energy.attribution import delta
from pytest_basht.metrics import TABLE2_KEYS
from pytest_basht.report.assemble import concurrency
from pytest_basht.scenarios import scenario_id
from pytest_basht.xdist_tracker import XdistTracker

SCENARIOS = """
import pytest
from pytest_basht import vary


@pytest.mark.basht(experiment="xdist")
@vary("search.sampler", ["grid", "random"])
@vary("seed", [1, 2])
def test_sampler(trial_runner):
    assert trial_runner.run().trials


def test_plain():
    pass
"""

TRIAL_FIELDS = ("number", "params", "state", "value", "intermediate", "worker", "error")


def content(scenario: dict) -> dict:
    """What a scenario is and what it found: everything but timings, energy and placement."""
    m = scenario["metrics"]
    return {
        **{k: scenario[k] for k in ("test_id", "scenario_id", "repeat", "experiment",
                                    "variables", "outcome", "status", "error", "workload",
                                    "workload_source", "table1", "best_trial", "best_value",
                                    "test_score")},
        "trials": [{k: t[k] for k in TRIAL_FIELDS} for t in scenario["trials"]],
        "phases": sorted({s["phase"] for s in scenario["spans"]}),
        "counts": {k: m[k] for k in ("trials", "complete", "pruned", "failed", "duplicate")},
        "waste": {c: w["trials"] for c, w in m["waste"].items()},
        "energy": {k: scenario["energy"][k] for k in ("source", "measured", "slots")},
        "metrics": sorted(k for k in TABLE2_KEYS if m[k] is not None),
    }




@pytest.fixture
def fake(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    # One worker per study: the trial sequence is then fixed by the seed, serial or not.
    pytester.makefile(".yaml", w=workload([1, 2, 3], workers=1, epochs=1))
    return pytester


@pytest.mark.slow
def test_parallel_report_equals_the_serial_one_apart_from_timings(fake):
    fake.makepyfile(test_scenarios=SCENARIOS)
    serial_run = fake.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history",
                                           "off")
    serial_run.assert_outcomes(passed=5)
    serial = only_report(fake.path)
    shutil.rmtree(fake.path / "reports")

    parallel_run = fake.runpytest_subprocess("--basht-workload", "w.yaml", "-n", "2",
                                             "--basht-history", "off", "--junitxml=junit.xml",
                                             "--basht-progress-every", "0.05")
    parallel_run.assert_outcomes(passed=5)
    # no worker's progress line in the controller's output; the controller's report steps
    assert "[basht] trials" not in parallel_run.stdout.str()
    assert "[basht] writing report.json …" in parallel_run.stdout.str()
    parallel = only_report(fake.path)

    assert len(serial["scenarios"]) == 4
    assert [content(s) for s in parallel["scenarios"]] == \
        [content(s) for s in serial["scenarios"]]
    assert serial["concurrency"]["max_parallel"] == 1 and serial["concurrency"]["processes"] == 1
    assert {s["placement"]["worker"] for s in serial["scenarios"]} == {"main"}
    assert all(s["concurrency"] == {"max_parallel": 1, "overlapped": []}
               for s in serial["scenarios"])

    # Two worker processes, each metering its own process tree, ran scenarios side by side.
    assert {s["placement"]["worker"] for s in parallel["scenarios"]} == {"gw0", "gw1"}
    assert parallel["concurrency"]["processes"] == 2
    assert parallel["concurrency"]["max_parallel"] == 2
    by_id = {s["test_id"]: s for s in parallel["scenarios"]}
    for sc in parallel["scenarios"]:
        for other in sc["concurrency"]["overlapped"]:
            assert sc["test_id"] in by_id[other]["concurrency"]["overlapped"]
            assert by_id[other]["placement"]["pid"] != sc["placement"]["pid"]
        assert not sc["metrics"]["provisional"]  # the final records replaced the early ones
    assert "concurrency: up to 2 scenarios shared the machine" in parallel_run.stdout.str()
    assert parallel["lost"] == []
    # Each worker recorded the load over its scenarios, the other worker's as the run's own.
    assert {s["conditions"]["processes"] for s in serial["scenarios"]} == {1}
    assert {s["conditions"]["processes"] for s in parallel["scenarios"]} == {2}
    assert all(s["conditions"]["samples"] >= 1 for s in parallel["scenarios"])

    # JUnit XML, written by the controller, carries each scenario's metrics as properties.
    cases = {c.get("name"): c for c in ET.parse(fake.path / "junit.xml").iter("testcase")}
    assert set(cases) == {s["test_id"].split("::")[-1] for s in serial["scenarios"]} | {
        "test_plain"}
    for sc in parallel["scenarios"]:
        props = {p.get("name"): p.get("value")
                 for p in cases[sc["test_id"].split("::")[-1]].iter("property")}
        assert {f"basht.{k}" for k in TABLE2_KEYS} <= set(props)
        assert props["basht.energy_source"] == "estimate:ccf-linear"
        assert float(props["basht.energy_kwh"]) > 0
        assert props["basht.scenario"] == sc["test_id"]
    assert not list(cases["test_plain"].iter("property"))


CRASHING = """
import os
import signal

import pytest


@pytest.mark.basht(experiment="crash")
def test_a_finishes(trial_runner):
    assert trial_runner.run().trials


@pytest.mark.basht(experiment="crash")
def test_b_kills_its_worker(trial_runner):
    trial_runner.run()
    os.kill(os.getpid(), signal.SIGKILL)
"""

OTHER = """
import pytest


@pytest.mark.basht(experiment="crash")
def test_c_elsewhere(trial_runner):
    assert trial_runner.run().trials
"""


@pytest.mark.slow
def test_a_crashed_worker_loses_only_its_scenario_in_flight(fake):
    fake.makepyfile(test_crash=CRASHING, test_other=OTHER)
    # loadfile: test_a then test_b on one worker, test_c on the other
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml", "-n", "2",
                                       "--dist", "loadfile", "--basht-history", "off")
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "crashed while running 'test_crash.py::test_b_kills_its_worker'" in out
    report = only_report(fake.path)
    scenarios = {s["test_id"]: s for s in report["scenarios"]}
    assert set(scenarios) == {"test_crash.py::test_a_finishes", "test_other.py::test_c_elsewhere"}
    a = scenarios["test_crash.py::test_a_finishes"]
    assert a["outcome"] == "passed" and a["trials"] and a["best_value"] is not None
    # test_b reused test_a's deployment and died with it, so its undeploy was never recorded
    assert a["metrics"]["provisional"] is True
    assert not scenarios["test_other.py::test_c_elsewhere"]["metrics"]["provisional"]
    assert a["placement"]["worker"] != scenarios["test_other.py::test_c_elsewhere"][
        "placement"]["worker"]
    [lost] = report["lost"]
    assert lost["test_id"] == "test_crash.py::test_b_kills_its_worker"
    assert lost["scenario"] is True and lost["worker"] == a["placement"]["worker"]
    assert "crashed while running" in lost["reason"]
    assert any("test_b_kills_its_worker: its record is lost" in n for n in report["notes"])
    assert "LOST: test_crash.py::test_b_kills_its_worker" in out
    md = (fake.path / "reports" / "latest" / "report.md").read_text()
    assert "**lost**: `test_crash.py::test_b_kills_its_worker`" in md


# ----------------------------------------------------------------------------- unit


def _record(test_id: str, start_s: float, end_s: float, *, host: str = "h", reused=False,
            deploy_at: float | None = None) -> dict:
    ns = 1_000_000_000
    spans = [{"phase": "setup", "start_ns": int(start_s * ns), "end_ns": int(start_s * ns) + 1},
             {"phase": "metric_collection", "start_ns": int(end_s * ns) - 1,
              "end_ns": int(end_s * ns)},
             {"phase": "undeploy", "start_ns": int(99 * ns), "end_ns": int(100 * ns)}]
    if deploy_at is not None:
        spans.insert(0, {"phase": "deploy", "start_ns": int(deploy_at * ns),
                         "end_ns": int(start_s * ns)})
    return {"test_id": test_id, "spans": spans, "trials": [],
            "deployment": {"reused": reused}, "placement": {"host": host, "pid": 1}}


def test_concurrency_counts_the_scenarios_running_at_once():
    records = [_record("a", 0, 10), _record("b", 5, 15), _record("c", 6, 7),
               _record("d", 20, 30, reused=True, deploy_at=0),  # a reused deploy is not its own
               _record("e", 0, 30, host="other")]  # another host's clock is not comparable
    assert concurrency(records) == 3
    got = {r["test_id"]: r["concurrency"] for r in records}
    assert got["a"] == {"max_parallel": 3, "overlapped": ["b", "c"]}
    assert got["b"] == {"max_parallel": 3, "overlapped": ["a", "c"]}
    assert got["c"]["max_parallel"] == 3
    assert got["d"] == {"max_parallel": 1, "overlapped": []}
    assert got["e"] == {"max_parallel": 1, "overlapped": []}
    own = _record("f", 20, 30, deploy_at=12)  # its own deploy counts
    concurrency([_record("b", 5, 15), own])
    assert own["concurrency"]["overlapped"] == ["b"]


def test_repeat_suffix_is_stripped_for_the_scenario_id():
    assert scenario_id("m.py::t[repeat=2]", 2, 3) == "m.py::t"
    assert scenario_id("m.py::t[seed=1-repeat=12]", 12, 12) == "m.py::t[seed=1]"
    assert scenario_id("m.py::t[repeat=2]", 1, 1) == "m.py::t[repeat=2]"  # a user's own id


def test_lost_bookkeeping_on_the_controller():
    state = XdistTracker()
    state.started("t::a", "gw0")
    state.started("t::b", "gw0")
    state.started("t::c", "gw1")
    state.ended("t::a")  # e.g. its setup failed: nothing to lose later
    state.down("gw0", "Not properly terminated")
    state.crashed("t::b", "gw0", "worker 'gw0' crashed while running 't::b'")
    state.crashed("t::x", "gw1", "worker 'gw1' crashed while running 't::x'")
    assert state.lost == [
        {"test_id": "t::b", "worker": "gw0", "scenario": True,
         "reason": "worker 'gw0' crashed while running 't::b'"},
        {"test_id": "t::x", "worker": "gw1", "scenario": False,
         "reason": "worker 'gw1' crashed while running 't::x'"}]
    assert state.in_flight == {"t::c": "gw1"}


def test_the_plugin_loads_without_xdist(pytester):
    pytester.makepyfile(test_scenarios=SCENARIOS)
    result = pytester.runpytest_inprocess("-p", "no:xdist", "--co", "-q")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "5 tests collected" in result.stdout.str()


UNEQUAL = """
import pytest


@pytest.mark.basht(experiment="idle", overrides={"search.space": {"x": [1, 2], "sleep": [0.3]},
                                                 "training.epochs": 2})
def test_short(trial_runner):
    assert trial_runner.run().trials


@pytest.mark.basht(experiment="idle", overrides={"search.space": {"x": [1, 2], "sleep": [1.0]},
                                                 "training.epochs": 4})
def test_long(trial_runner):
    assert trial_runner.run().trials
"""


def phase(sc: dict, name: str) -> dict:
    return next(s for s in sc["spans"] if s["phase"] == name)


def main_window(sc: dict) -> tuple[int, int]:
    """A scenario's main window: its setup's start to its metric collection's end."""
    return phase(sc, "setup")["start_ns"], phase(sc, "metric_collection")["end_ns"]


def charged_share(sc: dict) -> float:
    """The share of the idle draw the meter charged over the main window, read from the
    memory part of its timeline: with the deployment's memory held, that part is all idle
    draw (memory_gb × W/GB), multiplied by the same share as the CPU's idle part."""
    lo, hi = main_window(sc)
    tl, m = sc["energy"]["timeline"], sc["energy"]["meter"]
    joules = delta(tl["t_ns"], tl["joules.memory"], lo, hi)
    return joules / (m["memory_gb"] * m["memory_w_per_gb"] * (hi - lo) / 1e9)


def expected_share(sc: dict, other: dict, other_end: str) -> float:
    """1 − (the time ``other``'s lease overlaps ``sc``'s main window) / (2 × its length):
    half the idle draw while both run, all of it while ``sc`` runs alone. ``other``'s lease
    is taken as its deploy's start to the end of its span ``other_end``."""
    lo, hi = main_window(sc)
    b0 = phase(other, "deploy")["start_ns"]
    b1 = max(phase(other, "metric_collection")["end_ns"], phase(other, other_end)["end_ns"])
    return 1 - max(0, min(hi, b1) - max(lo, b0)) / (2 * (hi - lo))


@pytest.mark.slow
def test_idle_draw_is_shared_by_the_scenarios_running_not_by_the_workers(fake):
    """Issue 20: a short and a long scenario, serially and with three xdist workers (one of
    them idle). Serially each bears all of the idle draw; side by side each bears half of it
    while both run and all of it while alone — whatever the number of workers (split 1/N it
    was a third for both, always)."""
    fake.makefile(".yaml", w=workload([1], workers=1, epochs=1, extra="energy: {idle_s: 0}\n"))
    fake.makepyfile(test_idle=UNEQUAL)
    run = fake.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history", "off")
    run.assert_outcomes(passed=2)
    serial = {s["test_id"].split("::")[-1]: s for s in only_report(fake.path)["scenarios"]}
    shutil.rmtree(fake.path / "reports")
    run = fake.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history", "off",
                                    "-n", "3")
    run.assert_outcomes(passed=2)
    parallel = {s["test_id"].split("::")[-1]: s for s in only_report(fake.path)["scenarios"]}

    for sc in serial.values():
        assert sc["energy"]["meter"]["idle_share"] == 1.0
        # 1 % : the timeline's sampling at the window's edges (interpolated linearly)
        assert charged_share(sc) == pytest.approx(1.0, abs=0.01)

    short, long = parallel["test_short"], parallel["test_long"]
    assert short["placement"]["worker"] != long["placement"]["worker"], run.outlines
    assert short["test_id"] in long["concurrency"]["overlapped"], long["concurrency"]
    assert all(sc["energy"]["meter"]["idle_share"] < 1 for sc in (short, long)), [
        sc["energy"]["meter"]["idle_share"] for sc in (short, long)]
    for sc, other in ((short, long), (long, short)):
        # The other's lease is taken before its fixtures deploy and given back once its
        # teardown (which may undeploy) is over: between the two bounds below, widened by
        # 0.02 for the fixtures' bookkeeping outside those spans (milliseconds on a window
        # of seconds) and the timeline's sampling at the edges.
        least = expected_share(sc, other, "undeploy")
        most = expected_share(sc, other, "metric_collection")
        assert least - 0.02 <= charged_share(sc) <= most + 0.02, (
            sc["test_id"], charged_share(sc), least, most)
    # and they did run side by side for a good part of the short one's window (or the
    # bounds above would show nothing about sharing)
    assert charged_share(short) < 0.9, (charged_share(short), charged_share(long))

"""Live metrics: served on --basht-prometheus-port while the run goes, pushed to a real
Pushgateway with --basht-pushgateway at its end."""

from __future__ import annotations

import socket
import time

import pytest
import requests
from fake_trainable import CONFTEST, workload
from prometheus_client.parser import text_string_to_metric_families
from promstack import free_port, stack_fixture  # noqa: F401

from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.export import LiveExporter, exposure
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.records import Span, TrialRecord
from pytest_basht.sut.base import Progress


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_exporter_serves_meter_energy_power_progress_and_finished_scenarios():
    monitor = EnergyMonitor(EstimateMeter(), hz=50)
    monitor.start()
    live = LiveExporter("run-1")
    host, port = live.serve("127.0.0.1", 0)
    try:
        live.watch(monitor)
        live.begin("t.py::test_a[x=1]")
        live.progress(Progress(done=3, running=2, expected=8, failed=1, best=0.9))
        t = time.process_time()
        while time.process_time() - t < 0.3:
            pass
        time.sleep(0.2)
        got = samples(requests.get(f"http://{host}:{port}/metrics", timeout=5).text)
        src = "estimate:ccf-linear"
        assert got[("basht_meter_energy_joules_total", (("domain", "cpu"), ("source", src)))] > 0
        assert got[("basht_power_watts", (("source", src),))] > 0
        assert got[("basht_trials_done", (("scenario", "test_a[x=1]"),))] == 3
        assert got[("basht_trials_running", (("scenario", "test_a[x=1]"),))] == 2
        assert got[("basht_best_value", (("scenario", "test_a[x=1]"),))] == 0.9
        spans = [Span("setup", 0, 10, energy_j=2.5), Span("undeploy", 10, 20, energy_j=1.0)]
        trials = [TrialRecord(0, {}, "complete", 1.0, 0, 0, 5, spans=[
                      Span("trial.train", 0, 5, energy_j=4.0)]),
                  TrialRecord(1, {}, "pruned", None, 1, 0, 5),
                  TrialRecord(2, {}, "complete", 1.0, 1, 0, 5)]
        live.scenario_done("t.py::test_a[x=1]", src, spans, trials)
        got = samples(requests.get(f"http://{host}:{port}/metrics", timeout=5).text)
        key = "basht_phase_energy_joules_total"
        assert got[(key, (("phase", "setup"), ("scenario", "test_a[x=1]"), ("source", src)))] \
            == 2.5
        assert got[(key, (("phase", "trial.train"), ("scenario", "test_a[x=1]"),
                          ("source", src)))] == 4.0
        assert got[("basht_trials_total", (("scenario", "test_a[x=1]"), ("state",
                                                                          "complete")))] == 2
        assert got[("basht_trials_total", (("scenario", "test_a[x=1]"), ("state",
                                                                          "pruned")))] == 1
    finally:
        live.close()
        monitor.stop()


def test_push_to_a_real_pushgateway(stack):
    monitor = EnergyMonitor(EstimateMeter(), hz=50)
    monitor.start()
    time.sleep(0.2)
    live = LiveExporter("run-push", instance="gw3")
    live.watch(monitor)
    live.scenario_done("t.py::test_b", "estimate:ccf-linear", [Span("setup", 0, 1, energy_j=7.0)],
                       [TrialRecord(0, {}, "failed", None, 0, 0, 1)])
    monitor.stop()
    assert live.push(stack.pushgateway) is None
    got = samples(requests.get(f"{stack.pushgateway}/metrics", timeout=5).text)
    labels = (("instance", "gw3"), ("job", "pytest-basht"), ("run_id", "run-push"))
    key = ("basht_trials_total", tuple(sorted((*labels, ("scenario", "test_b"),
                                                ("state", "failed")))))
    assert got[key] == 1
    assert any(name == "basht_meter_energy_joules_total" and dict(lab)["run_id"] == "run-push"
               and value > 0 for (name, lab), value in got.items())
    problem = live.push(f"http://user:hunter2@127.0.0.1:{free_port()}")
    assert problem is not None and "could not push" in problem and "hunter2" not in problem


SCRAPING = """
import requests

def test_scrape_while_running(trial_runner):
    run = trial_runner.run()
    assert run.trials
    text = requests.get("http://127.0.0.1:{port}/metrics", timeout=5).text
    open("scraped.txt", "w").write(text)
"""


@pytest.mark.slow
def test_a_run_serves_live_metrics_and_pushes_at_the_end(pytester, stack):
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1, 2], epochs=1))
    port = free_port()
    pytester.makepyfile(SCRAPING.replace("{port}", str(port)))
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                           "--basht-prometheus-port", str(port),
                                           "--basht-pushgateway", stack.pushgateway)
    result.assert_outcomes(passed=1)
    scraped = samples((pytester.path / "scraped.txt").read_text())
    names = {name for name, _ in scraped}
    assert {"basht_meter_energy_joules_total", "basht_power_watts", "basht_trials_done",
            "basht_trials_total", "basht_phase_energy_joules_total"} <= names
    done = [v for (n, lab), v in scraped.items() if n == "basht_trials_total"]
    assert sum(done) >= 2
    pushed = samples(requests.get(f"{stack.pushgateway}/metrics", timeout=5).text)
    assert any(n == "basht_phase_energy_joules_total" and dict(lab).get("phase") == "trial.train"
               for n, lab in pushed)
    report = (pytester.path / "reports" / "latest" / "report.md").read_text()
    assert f"live metrics served at http://127.0.0.1:{port}/metrics" in report


def test_a_busy_port_is_a_usage_error(pytester):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pytester.makepyfile("def test_x():\n    pass\n")
        result = pytester.runpytest_subprocess("--basht-prometheus-port", str(port))
    assert result.ret == 4
    assert "--basht-prometheus-port: expected a port free to listen on" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def _taken_pair() -> tuple[socket.socket, int]:
    """A port PORT whose PORT+1 is held here (the first xdist worker's, gw0)."""
    while True:
        port = free_port()
        held = socket.socket()
        try:
            held.bind(("127.0.0.1", port + 1))
        except OSError:
            held.close()
            continue
        held.listen()
        return held, port


def test_an_xdist_workers_busy_port_stops_the_run_before_it_starts(pytester):
    """Issue 20: gw0's port (PORT+1) taken used to crash that worker with a traceback while
    the others ran its tests, and exit 0."""
    held, port = _taken_pair()
    with held:
        pytester.makepyfile("def test_x():\n    pass\n")
        result = pytester.runpytest_subprocess("-n", "2", "--basht-prometheus-port", str(port))
    err = result.stderr.str()
    assert result.ret == 4, result.stdout.str() + err
    assert (f"--basht-prometheus-port: expected ports {port + 1}-{port + 2} free for the 2 "
            f"xdist workers' live metrics (127.0.0.1:{port + 1}: ") in err
    assert "Traceback" not in err + result.stdout.str()
    assert "passed" not in result.stdout.str()


RACE = """
import socket
import pytest

HELD = []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # the port taken after the controller checked it, before the worker serves
    if getattr(config, "workerinput", {}).get("workerid") == "gw0":
        sock = socket.socket()
        sock.bind(("127.0.0.1", {port} + 1))
        sock.listen()
        HELD.append(sock)
"""


def test_a_port_taken_after_the_check_fails_the_run_and_keeps_every_test(pytester):
    port = free_port()
    pytester.makeconftest(RACE.replace("{port}", str(port)))
    pytester.makepyfile("def test_a():\n    pass\n\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest_subprocess("-n", "2", "--basht-prometheus-port", str(port))
    out = result.stdout.str()
    assert result.ret == 4, out + result.stderr.str()
    result.assert_outcomes(passed=2)
    assert (f"basht: error: xdist worker gw0: --basht-prometheus-port: expected a port free "
            f"to listen on (127.0.0.1:{port + 1}: ") in out
    assert "Traceback" not in out + result.stderr.str()


def test_serving_past_this_machine_warns_that_there_is_no_authentication(pytester):
    pytester.makeini("[pytest]\nbasht_prometheus_port = 0.0.0.0:0\n")  # a repo's ini file
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == 0
    out = result.stdout.str()
    assert "BashtExposureWarning: live metrics are served on every interface" in out
    assert "no authentication and no TLS" in out
    assert exposure("127.0.0.1", 9) is None and exposure("::1", 9) is None
    assert exposure("localhost", 9) is None and "10.0.0.5" in str(exposure("10.0.0.5", 9))

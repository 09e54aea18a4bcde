"""Fault: the Prometheus server the meter queries goes away mid-run (a real Prometheus, from
.ci/install-prometheus, stopped). The run goes on with the labelled estimate from the last
scraped sample, waits no longer on the server, and the report marks the window.

The server is stopped, so this module has its own Prometheus stack (module-scoped)."""

from __future__ import annotations

import pytest
from fault_kit import (
    FAULT_CONFTEST,
    SCENARIO,
    Marks,
    SubPytest,
    log_measurements,
    marked_workload,
    reports,
    wait_until,
)
from promstack import Pusher, stack_fixture, wait_scraped  # noqa: F401

from pytest_basht.energy.attribution import interpolate


@pytest.mark.slow
def test_a_run_whose_prometheus_goes_away_goes_on_and_marks_the_window(stack, pytester,
                                                                       request):
    """The machine draws 30 W (a counter pushed to the Pushgateway, scraped every 250 ms);
    Prometheus is stopped after four trials (on a loaded machine its scrapes and our
    fetches lag: after two its last sample may still predate the scenario)."""
    pusher = Pusher(stack.pushgateway, "fault", "basht_fault_joules_total")
    pusher.ramp(30.0)
    query = 'basht_fault_joules_total{job="fault"}'
    try:
        wait_scraped(stack, query, lambda v: v > 1)
        pytester.makeconftest(FAULT_CONFTEST)
        pytester.makefile(".yaml", w=marked_workload(list(range(1, 11)), epochs=3, sleep=0.2,
                                                     extra=(
            "energy: {meter: prometheus, idle_s: 0, fail_after_s: 2, prometheus: "
            f"{{preset: custom, query: '{query}', settle_s: 20}}}}\n")))
        pytester.makepyfile(test_faults=SCENARIO)
        marks = Marks(pytester.path / "marks")
        run = SubPytest(pytester.path, ["--basht-workload", "w.yaml",
                                        "--basht-prometheus-url", stack.prometheus], marks)
        wait_until(lambda: len(marks.numbers("done")) >= 4, "four trials", proc=run)
        server = stack.procs[-1]  # prometheus (the pushgateway and node exporter stay up)
        server.terminate()
        server.wait(timeout=30)
        code = run.wait()
    finally:
        pusher.stop()
    out = run.output()
    assert code == 0, out

    [report] = reports(pytester.path / "reports")
    [sc] = report["scenarios"]
    assert sc["status"] == "complete" and sc["outcome"] == "passed"
    energy = sc["energy"]
    [fo] = energy["failover"]
    assert fo["meter"] == f"prometheus:{query.split('{')[0]}"
    assert fo["fallback"] == "estimate:ccf-linear"
    assert f"Prometheus at {stack.prometheus} unreachable for" in fo["reason"]
    assert energy["measured"] is False and energy["source"].endswith("+estimate:ccf-linear")
    # up to the last scraped sample: the pushed 30 W
    tl = energy["timeline"]
    first = sc["spans"][0]["start_ns"]
    before = interpolate(tl["t_ns"], tl["joules"], fo["start_ns"]) - interpolate(
        tl["t_ns"], tl["joules"], first)
    assert before == pytest.approx(30.0 * (fo["start_ns"] - first) / 1e9, rel=0.05)
    assert tl["joules.estimate:cpu"][-1] > 0
    trials = sc["trials"]
    assert {t["state"] for t in trials} == {"complete"}
    assert marks.numbers("done") == {t["number"] for t in trials}
    assert all(t["energy_j"] > 0 for t in trials)
    # the server being gone cost no settle_s (20 s) per window: only windows before the
    # failover waited for data, and none of them ran out of time
    meter = report["meters"][0]
    assert meter["failover"]["start_ns"] == fo["start_ns"]
    assert meter["windows_extrapolated"] <= 1
    assert "energy warning: prometheus" in out and "failed mid-run" in out
    log_measurements(request, len(marks.numbers("done")),
                     sum(1 for t in trials if t["energy_j"] > 0))

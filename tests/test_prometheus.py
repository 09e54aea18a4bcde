"""The prometheus meter against a real Prometheus that scrapes a real Pushgateway and
node exporter: pushed counters with known increments, presets, resets, zones, the CPU-time
query path, an unreachable server, and a whole run metered through Prometheus."""

from __future__ import annotations

import json
import time

import pytest
from fake_trainable import CONFTEST, workload
from promstack import SCRAPE_S, Pusher, free_port, stack_fixture, wait_scraped  # noqa: F401

from pytest_basht import wiring
from pytest_basht import workload as wl
from pytest_basht.energy.base import MeterContext
from pytest_basht.energy.factory import select_meter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.process import machine_cpu_s
from pytest_basht.energy.prometheus import PrometheusMeter, queries
from pytest_basht.workload import PrometheusSpec

SCENARIO = """
def test_scenario(trial_runner):
    assert trial_runner.run().trials
"""


def spec(url: str, **kw) -> PrometheusSpec:
    return PrometheusSpec(url=url, settle_s=10, **kw)


def monitor_for(meter: PrometheusMeter) -> EnergyMonitor:
    meter.refresh_s = 0.2
    monitor = EnergyMonitor(meter, hz=10)
    monitor.start()
    return monitor


def test_preset_queries():
    energy, cpu, scale, metric = queries(spec("http://x", preset="node_exporter",
                                              selector='instance="n1:9100"'))
    assert energy == ('{__name__=~"node_rapl_(package|dram)_joules_total", '
                      'instance="n1:9100"}')
    assert cpu == 'node_cpu_seconds_total{mode!~"idle|iowait|steal", instance="n1:9100"}'
    energy, cpu, scale, metric = queries(spec("http://x", preset="kepler", zone="dram"))
    assert energy == '{__name__="kepler_node_cpu_joules_total", zone="dram"}'
    assert metric == 'kepler_node_cpu_joules_total{zone="dram"}'
    assert queries(spec("http://x", preset="scaphandre"))[2] == 1e-6
    energy, cpu, scale, _ = queries(spec("http://x", preset="dcgm"))
    assert scale == 1e-3 and cpu is None
    energy, *_ = queries(spec("http://x", preset="custom", query="my_joules{a='b'}",
                              selector='c="d"'))
    assert energy == "my_joules{a='b', c=\"d\"}"


def test_window_energy_of_a_pushed_counter_within_one_percent(stack):
    """A counter that grows at 50 W for 4 s, pushed 40 times a second, between two scraped
    plateaus: the window saw exactly the pushed increase."""
    pusher = Pusher(stack.pushgateway, "ramp", "basht_ramp_joules_total")
    query = 'basht_ramp_joules_total{job="ramp"}'
    pusher.push(1000.0)
    wait_scraped(stack, query, lambda v: v == 1000)
    meter = PrometheusMeter(spec(stack.prometheus, preset="custom", query=query))
    monitor = monitor_for(meter)
    with monitor.window("w") as w:
        time.sleep(2 * SCRAPE_S)
        pusher.ramp(50.0, start=1000.0)
        time.sleep(4.0)
        pusher.stop()
        final = pusher.log[-1][1]
        wait_scraped(stack, query, lambda v: v == final)
        time.sleep(2 * SCRAPE_S)
    monitor.stop()
    known = final - 1000.0
    assert known == pytest.approx(200.0, rel=0.1)
    assert w.energy_j == pytest.approx(known, rel=0.01)
    assert w.measured and w.source == "prometheus:basht_ramp_joules_total"
    assert meter.extrapolated == 0
    # in between, the power the meter saw follows the pushed 50 W
    snap = monitor.timeline.snapshot(w.start.t_ns, w.end.t_ns)
    ts, js = snap["t_ns"], snap["joules"]
    rise = [(ts[i], js[i]) for i in range(len(ts)) if js[i] - js[0] > 20 and js[-1] - js[i] > 20]
    (t0, j0), (t1, j1) = rise[0], rise[-1]
    assert (j1 - j0) / ((t1 - t0) / 1e9) == pytest.approx(50.0, rel=0.1)


def test_counter_reset_and_units_of_a_preset(stack):
    """Scaphandre's counter in µJ: +3 J, a reset, +2 J: the window saw 5 J."""
    pusher = Pusher(stack.pushgateway, "scaph", "scaph_host_energy_microjoules")
    query = 'scaph_host_energy_microjoules{job="scaph"}'

    def step(value: float) -> None:
        pusher.push(value)
        wait_scraped(stack, query, lambda v: v == value)
        time.sleep(2 * SCRAPE_S)

    step(10e6)
    meter = PrometheusMeter(spec(stack.prometheus, preset="scaphandre", selector='job="scaph"'))
    monitor = monitor_for(meter)
    with monitor.window("w") as w:
        time.sleep(2 * SCRAPE_S)
        step(13e6)
        step(0.0)  # the exporter restarted
        step(2e6)
    monitor.stop()
    assert w.energy_j == pytest.approx(5.0, rel=0.01)
    assert meter.covers == frozenset({"cpu", "dram"})


def test_kepler_reads_one_zone_and_refuses_a_sum_across_zones(stack):
    pusher = Pusher(stack.pushgateway, "kepler", "kepler_node_cpu_joules_total", ("zone",))
    pusher.push(100.0, zone="package")
    pusher.push(40.0, zone="dram")
    wait_scraped(stack, 'kepler_node_cpu_joules_total{job="kepler",zone="dram"}',
                 lambda v: v == 40)
    w = wl.from_mapping({"energy": {"meter": "prometheus", "prometheus": {
        "url": stack.prometheus, "preset": "kepler", "selector": 'job="kepler"'}}})
    meter = PrometheusMeter.configure(w, MeterContext())
    monitor = monitor_for(meter)
    with monitor.window("w") as win:
        time.sleep(2 * SCRAPE_S)  # the start edge sits on a scraped plateau
        pusher.push(107.0, zone="package")
        pusher.push(90.0, zone="dram")
        wait_scraped(stack, 'kepler_node_cpu_joules_total{job="kepler",zone="dram"}',
                     lambda v: v == 90)
        time.sleep(2 * SCRAPE_S)
    monitor.stop()
    assert win.energy_j == pytest.approx(7.0, rel=0.01)  # package only, never + dram
    both = wl.from_mapping({"energy": {"meter": "prometheus", "prometheus": {
        "url": stack.prometheus, "preset": "custom", "selector": 'job="kepler"',
        "query": "kepler_node_cpu_joules_total"}}})
    found = PrometheusMeter.probe(both, MeterContext())
    assert not found.ok and "several zones" in found.reason and "never summed" in found.reason


def test_dcgm_per_gpu_in_millijoules(stack):
    pusher = Pusher(stack.pushgateway, "dcgm", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", ("gpu",))
    query = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{job="dcgm",gpu="1"}'
    for gpu in ("0", "1"):
        pusher.push(5_000_000.0, gpu=gpu)
    wait_scraped(stack, query, lambda v: v == 5e6)
    meter = PrometheusMeter(spec(stack.prometheus, preset="dcgm", selector='job="dcgm"'))
    monitor = monitor_for(meter)
    with monitor.window("w") as w:
        time.sleep(2 * SCRAPE_S)
        pusher.push(5_250_000.0, gpu="0")
        pusher.push(5_100_000.0, gpu="1")
        wait_scraped(stack, query, lambda v: v == 5.1e6)
        time.sleep(2 * SCRAPE_S)
    monitor.stop()
    assert w.energy_j == pytest.approx(350.0, rel=0.01)
    assert set(w.end.domains) == {"gpu0", "gpu1"} and meter.covers == frozenset({"gpu"})


def test_cpu_time_of_the_measured_machine_comes_from_node_exporter(stack):
    pusher = Pusher(stack.pushgateway, "cpu", "basht_cpu_joules_total")
    pusher.ramp(10.0)
    try:
        wait_scraped(stack, 'basht_cpu_joules_total{job="cpu"}', lambda v: v > 1)
        meter = PrometheusMeter(spec(stack.prometheus, preset="custom",
                                     query='basht_cpu_joules_total{job="cpu"}',
                                     cpu_query='node_cpu_seconds_total{mode!~"idle|iowait|steal"'
                                               ', job="node"}'))
        monitor = monitor_for(meter)
        local0 = machine_cpu_s()
        with monitor.window("busy") as w:
            t = time.process_time()
            while time.process_time() - t < 2.0:
                pass
        local = machine_cpu_s() - local0
    finally:
        pusher.stop()
    monitor.stop()
    snap = monitor.timeline.snapshot(w.start.t_ns, w.end.t_ns)
    seen = snap["machine_cpu_s"][-1] - snap["machine_cpu_s"][0]
    assert meter.describe()["cpu_series"] > 0
    assert seen == pytest.approx(local, rel=0.15)  # node exporter and /proc/stat agree
    assert seen >= 1.7  # the 2 s busy loop is in it


def test_unreachable_server_warns_and_falls_back():
    url = f"http://127.0.0.1:{free_port()}"
    w = wl.from_mapping({"energy": {"prometheus": {"url": url}}})
    selection = select_meter(wiring.meters(), w,
                             MeterContext(prometheus_auth=("u", "hunter2")))
    assert selection.meter.source == "estimate:ccf-linear"
    (warning,) = selection.warnings
    assert f"Prometheus at {url} unreachable" in warning and "hunter2" not in warning


def test_unreachable_server_is_recorded_in_the_report_without_credentials(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1, 2], epochs=1))
    pytester.makepyfile(SCENARIO)
    port = free_port()
    result = pytester.runpytest_subprocess(
        "--basht-workload", "w.yaml", "--basht-prometheus-url",
        f"http://basht:hunter2@127.0.0.1:{port}", "-W", "default")
    result.assert_outcomes(passed=1)
    run = next(p for p in (pytester.path / "reports").iterdir() if p.name != "latest")
    text = (run / "report.json").read_text() + (run / "report.md").read_text()
    out = result.stdout.str() + result.stderr.str()
    assert "hunter2" not in text + out
    report = json.loads((run / "report.json").read_text())
    assert report["options"]["prometheus_url"] == f"http://***@127.0.0.1:{port}"
    meter = report["meters"][0]
    assert meter["source"] == "estimate:ccf-linear"
    assert any(f"127.0.0.1:{port} unreachable" in x for x in meter["warnings"])
    assert any("unreachable" in n for n in report["notes"])
    assert "energy warning: meter prometheus is unavailable" in result.stdout.str()
    assert "BashtMeterWarning" in result.stdout.str()


@pytest.mark.slow
def test_a_run_metered_through_prometheus(stack, pytester):
    """The machine 'draws' 30 W (a pushed counter); the run's energy is 30 W × its time."""
    pusher = Pusher(stack.pushgateway, "run", "basht_run_joules_total")
    pusher.ramp(30.0)
    try:
        wait_scraped(stack, 'basht_run_joules_total{job="run"}', lambda v: v > 1)
        pytester.makeconftest(CONFTEST)
        # a window of seconds: each end of it is read from scrapes of a counter pushed at
        # 40 Hz, some 25 ms (0.75 J) apart, which a sub-second window feels as several %
        pytester.makefile(".yaml", w=workload([1, 2, 3], epochs=2, extra=(
            "search: {space: {x: [1, 2, 3], sleep: [0.5]}}\n"
            "energy: {meter: prometheus, idle_s: 1.0, prometheus: {preset: custom, "
            "query: 'basht_run_joules_total{job=\"run\"}', settle_s: 10}}\n")))
        pytester.makepyfile(SCENARIO)
        result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                               "--basht-prometheus-url", stack.prometheus)
    finally:
        pusher.stop()
    result.assert_outcomes(passed=1)
    run = next(p for p in (pytester.path / "reports").iterdir() if p.name != "latest")
    sc = json.loads((run / "report.json").read_text())["scenarios"][0]
    energy, m = sc["energy"], sc["metrics"]
    assert energy["source"] == "prometheus:basht_run_joules_total" and energy["measured"]
    assert energy["idle_measured"] and energy["idle_power_w"] == pytest.approx(30, rel=0.05)
    assert m["energy_j"] == pytest.approx(30 * m["jct_ms"] / 1e3, rel=0.03)
    assert all(t["energy_j"] > 0 for t in sc["trials"])
    assert (run / sc["plots"][0]).stat().st_size > 10_000

"""Attribution when processes share a machine: two real busy processes with a 3:1 CPU
split get the machine's dynamic energy 3:1, metered by the machine-level estimate and by
a RAPL counter that follows the machine's CPU load."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from rapl_tree import FakeRapl

from pytest_basht.energy.attribution import span_energy
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.process import machine_cpu_s
from pytest_basht.energy.rapl import RaplMeter
from pytest_basht.workload import EstimateSpec

# Burns CPU at `rate` cores on average until it has used rate × seconds CPU-seconds and
# `seconds` have passed; prints the CPU time it used.
BUSY = """
import sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
t0, c0 = time.monotonic(), time.process_time()
while True:
    elapsed, used = time.monotonic() - t0, time.process_time() - c0
    if elapsed >= seconds and used >= rate * seconds:
        break
    if used < rate * elapsed:
        x = 0
        for _ in range(20000):
            x += 1
    else:
        time.sleep(0.002)
print(time.process_time() - c0)
"""


def run_pair(monitor: EnergyMonitor) -> tuple[int, int, float, float]:
    """Two processes at 0.6 and 0.2 cores for 3 s; (start, end, cpu of each)."""
    start = monitor.mark().t_ns
    procs = [subprocess.Popen([sys.executable, "-c", BUSY, str(rate), "3.0"],
                              stdout=subprocess.PIPE, text=True) for rate in (0.6, 0.2)]
    cpu = [float(p.communicate()[0]) for p in procs]
    end = monitor.mark().t_ns
    return start, end, cpu[0], cpu[1]


def rapl_following_the_cpu(tmp_path):
    """A package counter drawing 10 W plus 15 W per busy core of the whole machine."""
    tree = FakeRapl(tmp_path, dram=False)
    state = {"cpu": machine_cpu_s(), "t": time.monotonic(), "w": 10.0}

    def watts() -> dict[str, float]:
        now, cpu = time.monotonic(), machine_cpu_s()
        if now - state["t"] >= 0.05:
            state["w"] = 10.0 + 15.0 * max(0.0, cpu - state["cpu"]) / (now - state["t"])
            state["cpu"], state["t"] = cpu, now
        return {"package-0": state["w"]}

    tree.play(watts, hz=100)
    return tree, RaplMeter(tmp_path)


@pytest.mark.parametrize("kind", ["estimate-machine", "rapl"])
def test_three_to_one_cpu_split_gets_three_to_one_energy(kind, tmp_path):
    tree = None
    if kind == "rapl":
        tree, meter = rapl_following_the_cpu(tmp_path)
    else:
        meter = EstimateMeter(EstimateSpec(scope="machine"))
    monitor = EnergyMonitor(meter, hz=20)
    try:
        monitor.start()
        # The fake package idles at 10 W; measuring it here would fold in whatever the
        # machine's other tenants were doing at that moment.
        idle = 10.0 if kind == "rapl" else monitor.idle_power_w or 0.0
        start, end, cpu_a, cpu_b = run_pair(monitor)
    finally:
        monitor.stop()
        if tree is not None:
            tree.stop()
    assert cpu_a / cpu_b == pytest.approx(3.0, rel=0.05)  # the split the processes made
    assert monitor.scope == "machine"
    timeline = monitor.timeline.snapshot()
    dt = (end - start) / 1e9
    share = idle / 2 * dt  # each of two slots' share of the idle draw
    energy = [span_energy(timeline, start, end, cpu, idle, 2, scope="machine")
              for cpu in (cpu_a, cpu_b)]
    dynamic = [e - share for e in energy]
    assert dynamic[1] > 0
    assert dynamic[0] / dynamic[1] == pytest.approx(3.0, rel=0.10)
    # together they get at most the machine's energy in the window; other tenants' CPU
    # time keeps its part of the dynamic energy (2%: each process reads its own CPU time
    # a moment apart from the meter's marks, so the shares can sum a hair over one)
    assert sum(energy) <= monitor.energy_between(start, end) * 1.02

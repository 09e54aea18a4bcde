"""The estimate meter, the timeline, attribution and the monitor's windows."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pytest_basht import wiring
from pytest_basht import workload as wl
from pytest_basht.energy.attribution import delta, interpolate, span_energy
from pytest_basht.energy.base import Allocation, Usage
from pytest_basht.energy.estimate import EstimateMeter, visible_cpus
from pytest_basht.energy.factory import select_meter
from pytest_basht.energy.leases import Leases
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.process import ProcessTree
from pytest_basht.energy.sampler import Mark, Timeline

S = 1_000_000_000


def test_estimate_known_answer():
    meter = EstimateMeter()
    meter.hold(Allocation(vcpus=2, memory_gb=4.0, slots=2))
    meter.start(Usage(0, 0.0, 0))
    r = meter.read(Usage(2 * S, 1.0, 0))
    assert r.joules["cpu"] == pytest.approx(2 * 0.74 * 2 + 1.0 * (3.5 - 0.74))
    assert r.joules["memory"] == pytest.approx(4 * 0.392 * 2)
    assert r.source == "estimate:ccf-linear" and not meter.measured
    assert meter.modelled_idle_power_w() == pytest.approx(2 * 0.74 + 4 * 0.392)
    assert meter.max_power_w() == pytest.approx(2 * 3.5 + 4 * 0.392)


def test_estimate_is_linear_so_edges_suffice():
    """One read over 4 s equals four reads of 1 s: a window needs only its edges."""
    coarse, fine = EstimateMeter(), EstimateMeter()
    for m in (coarse, fine):
        m.hold(Allocation(vcpus=1, memory_gb=1.0))
        m.start(Usage(0, 0.0, 0))
    cpu = [0.0, 0.2, 0.9, 1.0, 1.6]
    for i in range(1, 5):
        fine.read(Usage(i * S, cpu[i], 0))
    assert coarse.read(Usage(4 * S, 1.6, 0)).total == pytest.approx(fine.read(
        Usage(4 * S, 1.6, 0)).total)


def test_estimate_caps_busy_time_at_the_visible_cores():
    meter = EstimateMeter()
    meter.hold(Allocation(vcpus=1, memory_gb=0.0))
    meter.start(Usage(0, 0.0, 0))
    r = meter.read(Usage(S, 1000.0, 0))
    assert r.joules["cpu"] == pytest.approx(0.74 + visible_cpus() * (3.5 - 0.74))


def test_estimate_coefficients_from_the_workload():
    w = wl.from_mapping({"energy": {"estimate": {"cpu_min_w": 1, "cpu_max_w": 2,
                                                 "memory_w_per_gb": 0}}})
    meter = EstimateMeter.from_workload(w)
    meter.hold(Allocation(vcpus=3, memory_gb=8))
    assert meter.modelled_idle_power_w() == 3 and meter.describe()["cpu_max_w"] == 2


def test_interpolation_and_delta():
    ts, vs = [0, 10, 20], [0.0, 100.0, 100.0]
    assert interpolate(ts, vs, 5) == 50 and interpolate(ts, vs, -3) == 0
    assert interpolate(ts, vs, 99) == 100 and delta(ts, vs, 5, 15) == 50


def test_span_energy_splits_dynamic_energy_by_cpu_share():
    # 2 s at 30 W total, 10 W of it idle; the run's processes used 4 CPU-s in that time.
    timeline = {"t_ns": [0, 2 * S], "joules": [0.0, 60.0], "cpu_s": [0.0, 4.0]}
    e = span_energy(timeline, 0, 2 * S, cpu_s=3.0, idle_power_w=10.0, slots=2)
    assert e == pytest.approx(40 * 3 / 4 + 10 / 2 * 2)
    shares = [span_energy(timeline, 0, 2 * S, c, 10.0, 2) for c in (3.0, 1.0)]
    assert sum(shares) == pytest.approx(60.0)


def test_attribution_matches_the_linear_model_exactly():
    meter = EstimateMeter()
    meter.hold(Allocation(vcpus=2, memory_gb=2.0, slots=4))
    meter.start(Usage(0, 0.0, 0))
    tl = Timeline()
    for i, cpu in enumerate([0.0, 0.5, 1.9, 2.2]):
        r = meter.read(Usage(i * S, cpu, 0))
        tl.append(Mark(i * S, r.total, cpu))
    snap = tl.snapshot()
    e = span_energy(snap, S // 2, 2 * S + S // 2, cpu_s=0.8,
                    idle_power_w=meter.modelled_idle_power_w(), slots=4)
    assert e == pytest.approx(0.8 * (3.5 - 0.74) + meter.modelled_idle_power_w() / 4 * 2)


def test_timeline_is_bounded_and_keeps_its_ends():
    tl = Timeline(max_points=16)
    for i in range(1000):
        tl.append(Mark(i, float(i), float(i)))
    assert len(tl) <= 16 and tl.t_ns[0] == 0 and tl.t_ns[-1] == 999
    snap = tl.snapshot(500, 600)
    assert snap["t_ns"][0] <= 500 <= 600 <= snap["t_ns"][-1]


def test_process_tree_counts_children_and_stays_monotone():
    tree = ProcessTree()
    before = tree.usage().cpu_s
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt=time.process_time()\n"
                              "while time.process_time()-t<0.4: pass"])
    seen = []
    while child.poll() is None:
        seen.append(tree.usage().cpu_s)
        time.sleep(0.05)
    after = tree.usage().cpu_s
    assert after - before >= 0.35
    assert seen == sorted(seen) and after >= max(seen, default=0)


def test_monitor_windows_nest_and_carry_the_source():
    monitor = EnergyMonitor(EstimateMeter(), hz=50)
    monitor.start()
    try:
        with monitor.window("outer") as outer, monitor.window("inner") as inner:
            t = time.process_time()
            while time.process_time() - t < 0.2:
                pass
    finally:
        monitor.stop()
    assert inner.energy_j > 0 and outer.energy_j >= inner.energy_j
    assert inner.cpu_s >= 0.15 and inner.source == "estimate:ccf-linear"
    assert not inner.measured and inner.power_w > 0 and len(monitor.timeline) >= 4


def test_auto_falls_back_to_the_labelled_estimate():
    selection = select_meter(wiring.meters(), wl.from_mapping({}))
    assert selection.meter.source == "estimate:ccf-linear"
    assert "estimate" in selection.reason


def test_estimate_idle_draw_is_shared_by_the_scenarios_running_at_each_moment(tmp_path):
    """The idle draw is shared by the scenarios running at once on the machine (issue 20),
    not split 1/N among xdist's workers: another process's scenario ran from 1 s to 3 s of
    these 4, so this one bears all of the idle draw for 2 s and half of it for 2 s."""
    other = Leases(tmp_path, pid=os.getppid())  # another (living) process of the run
    other.end(other.begin(1 * S), 1 * S, 3 * S)
    alone, shared = EstimateMeter(), EstimateMeter()
    shared.share_idle(Leases(tmp_path))
    for m in (alone, shared):
        m.hold(Allocation(vcpus=2, memory_gb=4.0, slots=2))
        m.start(Usage(0, 0.0, 0))
    a, s = alone.read(Usage(4 * S, 1.0, 0)), shared.read(Usage(4 * S, 1.0, 0))
    assert s.joules["cpu"] == pytest.approx(0.75 * 2 * 0.74 * 4 + 1.0 * (3.5 - 0.74))
    assert s.joules["memory"] == pytest.approx(0.75 * a.joules["memory"])
    assert a.joules["cpu"] == pytest.approx(2 * 0.74 * 4 + 1.0 * (3.5 - 0.74))
    assert shared.idle_fraction(0, 4 * S) == pytest.approx(0.75)
    assert shared.idle_fraction(1 * S, 3 * S) == pytest.approx(0.5)
    assert shared.modelled_idle_power_w() == alone.modelled_idle_power_w()  # before sharing

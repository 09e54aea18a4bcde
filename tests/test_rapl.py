"""The RAPL meter on fake powercap trees with known answers: package + dram, one wrap,
several wraps, permission denied, and the meter choice (auto takes rapl when present)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from fake_trainable import CONFTEST, workload
from rapl_tree import FakeRapl

from pytest_basht import wiring
from pytest_basht import workload as wl
from pytest_basht.energy.base import Usage
from pytest_basht.energy.factory import select_meter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.rapl import RaplMeter, discover
from pytest_basht.errors import WorkloadError

S = 1_000_000_000
SCENARIO = """
def test_scenario(trial_runner):
    assert trial_runner.run().trials
"""


def at(t_s: float) -> Usage:
    return Usage(int(t_s * S), 0.0, 0)


def on(root: Path, meter: str = "auto") -> wl.Workload:
    return wl.from_mapping({"energy": {"meter": meter, "rapl": {"root": str(root)}}})


def test_discovers_package_and_dram_and_skips_overlapping_zones(tmp_path):
    FakeRapl(tmp_path, packages=2)
    zones = discover(tmp_path)
    assert [z.domain for z in zones] == ["package-0", "dram-0", "package-1", "dram-1"]
    assert zones[0].max_power_w == 150.0  # the highest constraint
    assert zones[1].max_power_w == 500.0  # dram publishes none: the generous default


def test_amd_zones_are_read(tmp_path):
    FakeRapl(tmp_path, vendor="amd", dram=False)
    assert [z.domain for z in discover(tmp_path)] == ["package-0"]


def test_package_and_dram_known_answer(tmp_path):
    tree = FakeRapl(tmp_path)
    tree.set("package-0", 5_000_000)
    tree.set("dram-0", 1_000_000)
    meter = RaplMeter(tmp_path)
    meter.start(at(0))
    tree.add("package-0", 12.5)
    tree.add("dram-0", 3.0)
    r = meter.read(at(1))
    assert r.joules == {"package-0": pytest.approx(12.5), "dram-0": pytest.approx(3.0)}
    assert r.total == pytest.approx(15.5) and r.source == "rapl" and meter.measured


def test_one_wrap(tmp_path):
    tree = FakeRapl(tmp_path, range_j=100.0)
    tree.set("package-0", 95_000_000)
    meter = RaplMeter(tmp_path)
    meter.start(at(0))
    tree.add("package-0", 8.0)  # 95 J + 8 J wraps to 3 J
    assert tree.uj["package-0"] == 3_000_000
    r = meter.read(at(0.1))
    assert r.joules["package-0"] == pytest.approx(8.0)
    assert meter.zones[0].wraps == 1 and meter.zones[0].inferred_wraps == 0


def test_several_wraps_between_reads_are_inferred_from_the_last_power(tmp_path):
    tree = FakeRapl(tmp_path, range_j=100.0, max_power_w=50.0)
    meter = RaplMeter(tmp_path)
    meter.start(at(0))
    tree.add("package-0", 40.0)  # 40 W for one second
    meter.read(at(1))
    tree.add("package-0", 40.0 * 6)  # a 6 s gap at 40 W: 240 J, two turns and 40 J
    assert tree.uj["package-0"] == 80_000_000  # the counter alone says +40 J
    r = meter.read(at(7))
    assert r.joules["package-0"] == pytest.approx(280.0)
    zone = meter.zones[0]
    assert zone.wraps == 2 and zone.inferred_wraps == 2


def test_the_meter_asks_for_the_rate_it_needs_and_for_a_read_near_the_top(tmp_path):
    tree = FakeRapl(tmp_path, range_j=100.0, max_power_w=50.0, dram=False)
    meter = RaplMeter(tmp_path)
    assert meter.min_sample_hz() == pytest.approx(2 * 50 / 100)  # two reads per turn
    monitor = EnergyMonitor(meter, hz=0.1)
    assert monitor.hz == pytest.approx(1.0)
    tree.set("package-0", 10_000_000)
    meter.start(at(0))
    assert meter.poll_interval(0.5) == 0.5  # 90 J of headroom: no hurry
    tree.set("package-0", 99_000_000)
    meter.read(at(1))  # 89 J in 1 s: 89 W, 1 J from the top
    assert meter.poll_interval(0.5) == pytest.approx(1 / 89 / 2, rel=0.01)


def test_auto_takes_rapl_on_a_rapl_tree(tmp_path):
    FakeRapl(tmp_path)
    selection = select_meter(wiring.meters(), on(tmp_path))
    assert selection.meter.source == "rapl" and selection.meter.measured
    assert "rapl (auto: 2 RAPL counters" in selection.reason and not selection.warnings


def test_auto_without_rapl_falls_back_to_the_estimate(tmp_path):
    selection = select_meter(wiring.meters(), on(tmp_path))
    assert selection.meter.source == "estimate:ccf-linear"
    assert f"no RAPL zones (intel-rapl:*, amd-rapl:*) under {tmp_path}" in selection.reason


def test_rapl_by_name_on_a_machine_without_it_is_a_usage_error(tmp_path):
    with pytest.raises(WorkloadError, match=r"a meter this machine provides \(rapl: no RAPL"):
        select_meter(wiring.meters(), on(tmp_path, "rapl"))


# Everything is imported before the switch to nobody: the interpreter's own files may sit
# where nobody cannot read them.
PROBE = """
import json, os, sys
import pynvml
from pytest_basht import workload as wl
from pytest_basht.energy.factory import select_meter
from pytest_basht import wiring
meters = wiring.meters()
os.setgid(65534); os.setuid(65534)  # nobody: RAPL's energy_uj is root-only (0400)
for meter in ("auto", "rapl"):
    w = wl.from_mapping({"energy": {"meter": meter, "rapl": {"root": sys.argv[1]}}})
    s = select_meter(meters, w)
    print(json.dumps({"source": s.meter.source, "reason": s.reason, "warnings": s.warnings}))
"""


def test_permission_denied_warns_with_the_fix_and_falls_back():
    root = Path(tempfile.mkdtemp(prefix="basht-rapl-"))
    try:
        os.chmod(root, 0o755)  # nobody must be able to list it, not read energy_uj
        tree = FakeRapl(root)
        for path in tree.paths.values():
            os.chmod(path / "energy_uj", 0o400)
        if os.geteuid() == 0:
            code = PROBE
        else:  # not root: the mode alone denies us
            code = PROBE.replace("os.setgid(65534); os.setuid(65534)", "pass")
            for path in tree.paths.values():
                os.chmod(path / "energy_uj", 0o000)
        out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                             text=True, check=True, env={**os.environ, "HOME": "/tmp"})
        auto, named = (json.loads(line) for line in out.stdout.splitlines())
        for result in (auto, named):
            assert result["source"] == "estimate:ccf-linear"
            (warning,) = result["warnings"]
            assert "permission denied" in warning and "CVE-2020-8694" in warning
            assert f"sudo chmod o+r {root}/intel-rapl:*/energy_uj" in warning
        assert "rapl skipped" in named["reason"] and "rapl unavailable" in named["reason"]
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_monitor_measures_known_power_through_wraps_and_idle(tmp_path):
    """The counters advance at 40 W (package) and 5 W (dram), wrapping every 2.5 s."""
    tree = FakeRapl(tmp_path, range_j=100.0, max_power_w=100.0)
    tree.play(lambda: {"package-0": 40.0, "dram-0": 5.0})
    try:
        monitor = EnergyMonitor(RaplMeter(tmp_path), hz=20)
        monitor.start()
        idle = monitor.measure_idle(1.0)
        with monitor.window("busy") as w:
            time.sleep(3.0)
        monitor.stop()
    finally:
        tree.stop()
    assert idle is not None and idle.power_w == pytest.approx(45.0, rel=0.03)
    assert monitor.idle_measured and monitor.idle_power_w == idle.power_w
    assert w.energy_j == pytest.approx(45.0 * w.duration_s, rel=0.03)
    assert w.measured and w.source == "rapl"
    zones = monitor.describe()["zones"]
    assert zones[0]["wraps"] >= 1 and zones[0]["inferred_wraps"] == 0


@pytest.mark.slow
def test_a_run_on_a_rapl_machine(tmp_path, pytester):
    """auto takes the (fake) RAPL counters; the machine draws 40 + 5 W, so the run's energy
    is 45 W × its time, the idle draw is measured, and the source shows everywhere."""
    # 60 J at 40 W wraps every 1.5 s: at least once in the 1 s idle measurement plus the run
    tree = FakeRapl(tmp_path / "powercap", range_j=60.0, max_power_w=100.0)
    tree.play(lambda: {"package-0": 40.0, "dram-0": 5.0})
    try:
        pytester.makeconftest(CONFTEST)
        # a window of seconds: a starved thread advancing the counters late by tens of ms
        # is a few % of a sub-second window
        pytester.makefile(".yaml", w=workload([1, 2, 3], epochs=2, extra=(
            "search: {space: {x: [1, 2, 3], sleep: [0.5]}}\n"
            f"energy: {{idle_s: 1.0, rapl: {{root: '{tmp_path / 'powercap'}'}}}}\n")))
        pytester.makepyfile(SCENARIO)
        result = pytester.runpytest_subprocess("--basht-workload", "w.yaml")
    finally:
        tree.stop()
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "energy: rapl (measured); auto: prometheus skipped" in out
    assert "rapl (auto: 2 RAPL counters" in out
    run = next(p for p in (pytester.path / "reports").iterdir() if p.name != "latest")
    report = json.loads((run / "report.json").read_text())
    sc = report["scenarios"][0]
    energy, m = sc["energy"], sc["metrics"]
    assert energy["source"] == "rapl" and energy["measured"] and energy["scope"] == "machine"
    assert energy["idle_measured"] and energy["idle_power_w"] == pytest.approx(45, rel=0.03)
    assert m["energy_j"] == pytest.approx(45 * m["jct_ms"] / 1e3, rel=0.03)
    assert m["wr_pct"] > 0 and not energy["band"]
    assert all(t["energy_j"] > 0 for t in sc["trials"])
    # lifecycle spans take the counters' delta over their window (a span shorter than the
    # counter's update interval may see none)
    for s in sc["spans"]:
        seconds = (s["end_ns"] - s["start_ns"]) / 1e9
        if seconds > 0.2:
            assert s["energy_j"] == pytest.approx(45 * seconds, rel=0.1), s["phase"]
    md = (run / "report.md").read_text()
    assert "rapl (measured)" in md
    assert re.search(r"idle draw 4[45]\.\d+ W measured over 1\.\d+ s before deploy", md)
    assert f"]({sc['plots'][0]})" in md and (run / sc["plots"][0]).exists()
    assert report["meters"][0]["zones"][0]["wraps"] >= 1

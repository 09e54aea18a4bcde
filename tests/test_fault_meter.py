"""Fault: the energy meter fails mid-run (RAPL becomes unreadable; see
test_fault_prometheus.py for a Prometheus server that goes away). The run goes on with the
labelled estimate from the meter's last good reading, and the report marks the window."""

from __future__ import annotations

import json
import shutil
import threading
import time

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
from rapl_tree import FakeRapl

from pytest_basht.energy.attribution import interpolate
from pytest_basht.energy.base import Allocation
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.rapl import RaplMeter

WATTS = {"package-0": 40.0, "dram-0": 5.0}


def break_rapl(tree: FakeRapl) -> None:
    """The counters vanish (a driver unloaded, a container's sysfs gone)."""
    tree.stop()
    for path in tree.paths.values():
        (path / "energy_uj").unlink()


def busy(seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def monitor_with_fallback(root, fail_after_s: float) -> EnergyMonitor:
    monitor = EnergyMonitor(RaplMeter(root), hz=20, fallback=EstimateMeter(),
                            fail_after_s=fail_after_s)
    monitor.start()
    monitor.hold(Allocation(vcpus=1, memory_gb=1.0))
    return monitor


def test_rapl_unreadable_mid_window_fails_over_to_the_estimate(tmp_path):
    tree = FakeRapl(tmp_path, max_power_w=100.0)
    tree.play(lambda: WATTS)
    monitor = monitor_with_fallback(tmp_path, fail_after_s=0.3)
    with monitor.window("w") as w:
        time.sleep(1.0)
        broke_ns = time.monotonic_ns()
        break_rapl(tree)
        busy(1.0)
        # a loaded machine may starve the sampler: wait for the switch, not a fixed time
        wait_until(lambda: monitor.failover is not None or monitor.sampler.errors,
                   "the monitor to fail over", timeout=30)
        busy(0.2)
    monitor.stop()

    fo = monitor.failover
    assert fo is not None, monitor.describe()
    assert fo.meter == "rapl" and fo.fallback == "estimate:ccf-linear"
    assert "FileNotFoundError" in fo.reason and "energy_uj" in fo.reason
    assert w.start.t_ns < fo.start_ns <= broke_ns < fo.detected_ns
    assert (fo.detected_ns - broke_ns) / 1e9 >= 0.3  # it was given fail_after_s to recover
    before = monitor.energy_between(w.start.t_ns, fo.start_ns)
    assert before == pytest.approx(45.0 * (fo.start_ns - w.start.t_ns) / 1e9, rel=0.05)
    # after the switch: exactly what the estimate counted over the same time
    after = monitor.energy_between(fo.start_ns, w.end.t_ns)
    standby = monitor.standby
    assert standby is not None
    estimated = sum(standby.at(w.end.t_ns).values()) - sum(standby.at(fo.start_ns).values())
    assert after == pytest.approx(estimated, rel=1e-6) and after > 0
    assert w.energy_j == pytest.approx(before + after, rel=1e-6)
    assert not w.measured and w.source == "rapl+estimate:ccf-linear"
    d = monitor.describe()
    assert d["failover"]["start_ns"] == fo.start_ns and "not a measurement" in \
        d["failover"]["note"]
    assert any("rapl failed mid-run" in x for x in d["warnings"])
    later = monitor.coverage(fo.start_ns + 1, w.end.t_ns)
    assert (later.source, later.measured, later.scope) == ("estimate:ccf-linear", False,
                                                           "process")
    assert monitor.coverage(w.start.t_ns, fo.start_ns - 1).measured


def test_a_blip_shorter_than_fail_after_s_loses_nothing(tmp_path):
    """Unreadable for 0.3 s, then back: no failover, and the counter's catch-up keeps the
    window's energy whole."""
    tree = FakeRapl(tmp_path, max_power_w=100.0)
    monitor = monitor_with_fallback(tmp_path, fail_after_s=2.0)
    with monitor.window("w") as w:
        last = time.monotonic()
        until = last + 1.5
        while time.monotonic() < until:
            time.sleep(0.01)
            now = time.monotonic()
            if until - 1.0 < now < until - 0.7:  # the blip: a garbled counter, no updates
                for path in tree.paths.values():
                    (path / "energy_uj").write_text("garbage\n")
                continue
            for domain, watts in WATTS.items():
                tree.add(domain, watts * (now - last))
            last = now
    monitor.stop()
    assert monitor.failover is None and w.measured and w.source == "rapl"
    assert w.energy_j == pytest.approx(45.0 * w.duration_s, rel=0.05)


@pytest.mark.slow
def test_a_run_whose_rapl_counters_vanish_goes_on_and_marks_the_window(tmp_path, pytester,
                                                                       request):
    root = tmp_path / "powercap"
    tree = FakeRapl(root, max_power_w=100.0)
    tree.play(lambda: WATTS)
    pytester.makeconftest(FAULT_CONFTEST)
    pytester.makefile(".yaml", w=marked_workload(list(range(1, 9)), epochs=3, sleep=0.2,
                                                 extra=(f"energy: {{meter: rapl, idle_s: 0, "
                                                        f"fail_after_s: 0.5, rapl: {{root: "
                                                        f"'{root}'}}}}\n")))
    pytester.makepyfile(test_faults=SCENARIO)
    marks = Marks(pytester.path / "marks")
    run = SubPytest(pytester.path, ["--basht-workload", "w.yaml"], marks)
    breaker = threading.Thread(target=lambda: (
        wait_until(lambda: len(marks.numbers("done")) >= 2, "two trials", proc=run),
        break_rapl(tree)))
    breaker.start()
    code = run.wait()
    breaker.join()
    tree.stop()
    out = run.output()
    assert code == 0, out

    [report] = reports(pytester.path / "reports")
    [sc] = report["scenarios"]
    assert sc["status"] == "complete" and sc["outcome"] == "passed"
    energy, m = sc["energy"], sc["metrics"]
    [fo] = energy["failover"]
    assert fo["meter"] == "rapl" and fo["fallback"] == "estimate:ccf-linear"
    assert "FileNotFoundError" in fo["reason"]
    assert energy["source"] == "rapl+estimate:ccf-linear" and energy["measured"] is False
    # the known 45 W up to the last good reading, the estimate's energy after it
    tl = energy["timeline"]
    first = sc["spans"][0]["start_ns"]
    before = interpolate(tl["t_ns"], tl["joules"], fo["start_ns"]) - interpolate(
        tl["t_ns"], tl["joules"], first)
    assert before == pytest.approx(45.0 * (fo["start_ns"] - first) / 1e9, rel=0.05)
    held = tl["joules.package-0"]
    after_switch = [i for i, t in enumerate(tl["t_ns"]) if t > fo["start_ns"]]
    assert after_switch and len({held[i] for i in after_switch}) == 1  # rapl held, not grown
    assert tl["joules.estimate:cpu"][-1] > 0
    assert m["energy_j"] == pytest.approx(tl["joules"][-1] - interpolate(
        tl["t_ns"], tl["joules"], first), rel=0.05)
    trials = sc["trials"]
    assert {t["state"] for t in trials} == {"complete"}
    assert marks.numbers("done") == {t["number"] for t in trials}
    assert all(t["energy_j"] > 0 for t in trials)
    assert any(t["start_ns"] > fo["start_ns"] for t in trials)  # trials ran after the switch
    assert report["meters"][0]["failover"]["start_ns"] == fo["start_ns"]
    assert "energy warning: rapl failed mid-run" in out
    run_dir = next(p for p in (pytester.path / "reports").iterdir() if not p.is_symlink())
    assert "**energy meter failed**: rapl" in (run_dir / "report.md").read_text()
    json.loads((run_dir / "report.json").read_text())
    shutil.rmtree(root, ignore_errors=True)
    done = marks.numbers("done")
    log_measurements(request, len(done), sum(1 for t in trials if t["energy_j"] > 0))

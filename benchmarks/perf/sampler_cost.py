"""The background sampler's CPU cost at 10 Hz and 100 Hz, as a share of one core.

Each round holds a process tree like the baseline's (this process and four idle worker
processes), starts an EnergyMonitor at the given rate, sleeps, and counts the CPU time this
process used meanwhile (the main thread sleeps, so it is the sampler's), minus the same
sleep without a monitor. Meters: the estimate, and RAPL on a fake powercap tree (the
reads are the same file reads as on real hardware). Rounds alternate, medians are shown.

    python benchmarks/perf/sampler_cost.py --seconds 8 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.rapl import RaplMeter

TARGET_10HZ = 0.01


def fake_powercap(root: Path) -> Path:
    """One package zone with a dram subzone, as the kernel lays them out."""
    for path, name in ((root / "intel-rapl:0", "package-0"),
                       (root / "intel-rapl:0" / "intel-rapl:0:0", "dram")):
        path.mkdir(parents=True)
        (path / "name").write_text(name + "\n")
        (path / "energy_uj").write_text("123456789\n")
        (path / "max_energy_range_uj").write_text("262143328850\n")
    return root


def cpu_during_sleep(seconds: float, monitor: EnergyMonitor | None) -> tuple[float, int]:
    """(CPU seconds this process used while the main thread slept, timeline points)."""
    if monitor is not None:
        monitor.start()
    c0 = time.process_time()
    time.sleep(seconds)
    used = time.process_time() - c0
    points = 0
    if monitor is not None:
        monitor.stop()
        points = len(monitor.timeline)
    return used, points


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    workers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10**6)"])
               for _ in range(4)]
    root = fake_powercap(Path(tempfile.mkdtemp(prefix="basht-powercap-")))
    meters = ("estimate", "rapl (fake sysfs)")
    results: dict[tuple[str, float], list[float]] = {}
    ticks: dict[tuple[str, float], list[float]] = {}
    idle: list[float] = []
    try:
        for _ in range(args.repeats):
            idle.append(cpu_during_sleep(args.seconds, None)[0])
            for name in meters:
                for hz in (10.0, 100.0):
                    meter = EstimateMeter() if name == "estimate" else RaplMeter(root)
                    used, points = cpu_during_sleep(args.seconds, EnergyMonitor(meter, hz=hz))
                    results.setdefault((name, hz), []).append(used)
                    ticks.setdefault((name, hz), []).append(points)
    finally:
        for proc in workers:
            proc.kill()
            proc.wait()
    base = statistics.median(idle)
    print(f"process tree: this process + {len(workers)} idle workers; {args.seconds:g} s per "
          f"round, {args.repeats} rounds, medians; no-monitor baseline "
          f"{base / args.seconds * 100:.3f}% of a core")
    print(f"{'meter':<20} {'rate':>7} {'CPU share of one core':>22} {'per sample':>12}")
    for (name, hz), used in results.items():
        cost = max(0.0, statistics.median(used) - base)
        share = cost / args.seconds
        per = cost / max(1, statistics.median(ticks[(name, hz)])) * 1e6
        print(f"{name:<20} {hz:>5g} Hz {share * 100:>20.3f} % {per:>9.0f} µs")
    worst = max(max(0.0, statistics.median(results[(n, 10.0)]) - base) / args.seconds
                for n in meters)
    verdict = "meets" if worst < TARGET_10HZ else "MISSES"
    print(f"at 10 Hz the sampler costs at most {worst * 100:.3f}% of a core: {verdict} the "
          f"target of {TARGET_10HZ * 100:g}%")


if __name__ == "__main__":
    main()

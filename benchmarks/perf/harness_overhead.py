"""Harness overhead: pytest-basht's baseline against the plain Optuna script, side by side.

Runs each alternately (plain, basht, plain, basht, ...) on the same machine in one
process tree and prints the times and their ratio. basht's JCT covers deploy → undeploy
(worker start, data load, trials, test, teardown); the plain time covers study creation
→ last worker exit. Both prepare the data set before the clock starts... for basht the
split is part of setup, so its JCT carries that extra work.

    python benchmarks/perf/harness_overhead.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import plain_optuna

from pytest_basht import wiring
from pytest_basht import workload as wl
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.runner import Deployments, TrialRunner

ROOT = Path(__file__).resolve().parents[2]


def basht_run() -> tuple[float, float, int]:
    """(JCT s, wall s, trials) of the baseline through the library, at the 10 Hz sampler."""
    w = wl.load(ROOT / "workloads" / "baseline.yaml")
    registry = wiring.registry()
    monitor = EnergyMonitor(EstimateMeter.from_workload(w), hz=w.energy.sample_hz)
    t0 = time.perf_counter()
    monitor.start()
    deployments = Deployments(monitor, registry)
    result = TrialRunner(w, deployments).run()
    deployments.close()
    monitor.stop()
    wall = time.perf_counter() - t0
    assert result.metrics is not None
    return result.metrics.jct_ms / 1e3, wall, len(result.trials)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    plain, jct, wall = [], [], []
    for i in range(args.repeats):
        plain.append(plain_optuna.run(4))
        j, w, n = basht_run()
        jct.append(j)
        wall.append(w)
        print(f"round {i + 1}: plain {plain[-1]:6.2f} s | basht JCT {j:6.2f} s, "
              f"wall {w:6.2f} s ({n} trials) | JCT/plain {j / plain[-1]:.2f}")
    mp, mj, mw = (statistics.median(x) for x in (plain, jct, wall))
    print(f"median: plain {mp:.2f} s, basht JCT {mj:.2f} s, basht wall {mw:.2f} s")
    print(f"ratio basht JCT / plain = {mj / mp:.2f}  (target ≤ 1.5)")
    print(f"ratio basht wall / plain = {mw / mp:.2f}")


if __name__ == "__main__":
    main()

"""What recording the conditions costs: one conditions sample against one energy sampler
tick (the estimate meter's), measured side by side in this process.

The conditions recorder samples once a second; the energy sampler ticks 10 times a
second. The script prints the CPU time of each (median of rounds), their ratio, and the
share of one core each takes at its rate.

    python benchmarks/perf/conditions_cost.py --samples 2000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from pytest_basht import workload as wl
from pytest_basht.conditions import ConditionsRecorder
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor


def cpu_per_call(call: Callable[[], object], n: int) -> float:
    """CPU seconds of one call (this process, all threads), over n calls."""
    start = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    recorder = ConditionsRecorder()
    monitor = EnergyMonitor(EstimateMeter.from_workload(wl.from_mapping({})))
    conditions, energy = [], []
    for _ in range(args.rounds):  # alternately, so that both see the same machine
        conditions.append(cpu_per_call(recorder.sample, args.samples))
        energy.append(cpu_per_call(monitor.mark, args.samples))
    c, e = statistics.median(conditions), statistics.median(energy)
    print(f"conditions sample: {c * 1e6:.0f} µs CPU; at 1 Hz {c * 100:.3f}% of one core")
    print(f"energy tick:       {e * 1e6:.0f} µs CPU; at 10 Hz {e * 1000:.3f}% of one core")
    print(f"ratio conditions sample / energy tick = {c / e:.2f}; at their rates the "
          f"conditions add {c / (10 * e) * 100:.0f}% to the sampler's cost")


if __name__ == "__main__":
    main()

"""How far a forecast from a recorded table is from the replayed run it forecasts.

For each workload below, ``basht forecast``'s table method (``pytest_basht.forecast``:
replays of the committed table with the seeds seed + 1 … seed + 5) forecasts JCT, energy,
CO2 and cost; then the workload is replayed with its own seed, as ``pytest benchmarks/``
replays it, and the script prints each figure's forecast, band, outcome and error
(forecast − outcome, in % of the outcome). docs/forecast.md keeps the numbers.

Z-BSO's sampler keeps a recurring job's state in a store: the forecast's replays and the
run each get a fresh one in a temporary folder (one recurrence, from no history).

    PYTHONPATH=$PWD python benchmarks/forecast_error.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tabulate import tabulate

from pytest_basht import forecast, wiring
from pytest_basht import search as search_mod
from pytest_basht import workload as wl
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "S-Sam (tpe)": ("s-sam-simulated.yaml", {"search.sampler": "tpe"}),
    "S-Pru (median)": ("s-pru-simulated.yaml", {"search.pruner": "median"}),
    "baseline": ("baseline-simulated.yaml", {}),
    "Z-BSO": ("z-bso.yaml", {}),
}


def case(name: str, file: str, overrides: dict[str, object], scratch: Path) -> list[list[str]]:
    if name == "Z-BSO":
        overrides = {**overrides, "search.sampler_options.store": str(scratch / "fc.sqlite")}
    w = wl.load(ROOT / "workloads" / file, overrides)
    registry = wiring.registry()
    registry.check(w)
    search_mod.check(w, registry)
    made = forecast.make(w, registry, method="table")
    assert made is not None, f"{name}: no table answers it"
    if name == "Z-BSO":
        w = wl.resolve(w, {"search.sampler_options.store": str(scratch / "run.sqlite")})
    monitor = EnergyMonitor(EstimateMeter.from_workload(w))
    monitor.start()
    try:
        result = forecast.run(w, registry, monitor)
    finally:
        monitor.stop()
    outcome = forecast.outcome_of((result.metrics or result.recompute()).to_dict())
    rows = []
    for key, band in made.figures.items():
        real = outcome[key]
        inside = "yes" if band.low <= real <= band.high else "no"
        rows.append([name, key, f"{band.value:.4g}", f"{band.low:.4g}–{band.high:.4g}",
                     f"{real:.4g}", f"{(band.value - real) / real * 100:+.1f}", inside])
    return rows


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, (file, overrides) in CASES.items():
            rows += case(name, file, overrides, Path(scratch))
    print(tabulate(rows, headers=["workload", "figure", "forecast", "band", "replayed",
                                  "error %", "inside"], disable_numparse=True,
                   tablefmt="github"))


if __name__ == "__main__":
    main()

"""Simulator speed: the naive replay that sleeps each runtime, and the simulated replay,
side by side in one run.

Both replay the same table with the same Optuna sampler (one Study per worker, the same
seed, as the ``optuna`` SUT runs them). The naive replay is mfhpo-simulator's baseline:
wn threads, each sleeping every epoch's recorded time before reporting it. The simulated
replay is the ``simulated`` SUT's (``simulation.replay``): no sleeping, the exact
asynchronous order from cumulative virtual times. Printed: both wall times and their
ratio (target ≥ 1000×), whether both produced the same trials, and the simulator's own
time per trial — its wall time minus the time spent inside Optuna's sampler and pruner
calls (target ≤ 0.05 ms) — then the same at 10,000 trials on 32 workers.

    python benchmarks/perf/simulator_speed.py [--trials 200] [--workers 4] [--repeats 5]

The machine's load average is printed too: on a shared machine the per-trial figures are
the minimum over repeats, as timeit takes them.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import threading
import time
from pathlib import Path

import optuna

from pytest_basht import wiring, workload_files
from pytest_basht import workload as wl
from pytest_basht.registry import Registry
from pytest_basht.search import suggest, trial_cap
from pytest_basht.simulation.answers import Answers
from pytest_basht.simulation.replay import Replay, ReplayResult
from pytest_basht.simulation.table import TrialTable

ROOT = Path(__file__).resolve().parents[2]


def scenario(trials: int, workers: int, sampler: str) -> wl.Workload:
    path = ROOT / "workloads" / "baseline-simulated.yaml"
    doc = workload_files.apply_overrides(workload_files.read_document(path), {
        "search.sampler": sampler, "search.trials": trials, "workers.count": workers})
    return wl.from_mapping(doc, str(path))


def naive(workload: wl.Workload, answers: Answers, registry: Registry) -> tuple[float, list]:
    """wn threads sleeping each epoch's recorded time; returns (wall s, trials by end)."""
    w = workload
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="naive", storage=storage, direction=w.goal.direction)
    sampler = registry.get("samplers", w.search.sampler)
    pruner = registry.get("pruners", w.search.pruner)
    cap = trial_cap(w)
    done: list[tuple[float, int, dict]] = []
    lock = threading.Lock()
    t0 = time.perf_counter()

    class OverBudget(Exception):
        pass

    def work() -> None:
        study = optuna.load_study(study_name="naive", storage=storage,
                                  sampler=sampler(w, w.seed), pruner=pruner(w))

        def objective(trial: optuna.Trial) -> float:
            if cap is not None and trial.number >= cap:  # as the optuna SUT's worker
                study.stop()
                raise OverBudget
            params = suggest(trial, w.search.space)
            curve = answers.curve(params)
            value = math.nan
            pruned = False
            for epoch in range(curve.epochs):
                time.sleep(curve.times_ns[epoch] / 1e9)
                value = curve.values[epoch]
                trial.report(value, epoch)
                if trial.should_prune():
                    pruned = True
                    break
            with lock:
                done.append((time.perf_counter() - t0, trial.number, params))
            if pruned:
                raise optuna.TrialPruned
            return value

        study.optimize(objective, n_trials=None, catch=(OverBudget,))

    threads = [threading.Thread(target=work) for _ in range(w.workers.count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, sorted(done)


def simulated(workload: wl.Workload, answers: Answers, registry: Registry) -> ReplayResult:
    return Replay(workload, registry, answers.curve, study_name="simulated").run(0)


def repeat(workload: wl.Workload, answers: Answers, registry: Registry,
           repeats: int) -> list[ReplayResult]:
    return [simulated(workload, answers, registry) for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", default=str(ROOT / "benchmarks/tables/baseline.csv"))
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large-trials", type=int, default=10_000)
    parser.add_argument("--large-workers", type=int, default=32)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials past the budget fail
    registry = wiring.registry()
    table = TrialTable.read(args.table)
    w = scenario(args.trials, args.workers, args.sampler)
    answers = Answers(table, w)
    load = os.getloadavg()
    print(f"table {args.table}: {table.configurations} configurations; sampler "
          f"{args.sampler} (seed {w.seed}); load average {load[0]:.1f} on "
          f"{os.cpu_count()} CPUs")

    runs = repeat(w, answers, registry, args.repeats)
    naive_s, naive_trials = naive(w, answers, registry)
    runs += repeat(w, answers, registry, args.repeats)
    sim_s = [r.wall_ns / 1e9 for r in runs]
    n = len(runs[0].trials)
    own_ms = [r.overhead_ns / 1e6 / n for r in runs]
    sampler_ms = [r.framework_ns / 1e6 / n for r in runs]
    virtual_s = (max(runs[0].retired_ns)) / 1e9
    same = ([(num, sorted(p.items())) for _, num, p in naive_trials]
            == [(t.number, sorted(t.params.items())) for t in
                sorted(runs[0].trials, key=lambda t: (t.end_ns, t.number))])
    same_set = ({(num, tuple(sorted(p.items()))) for _, num, p in naive_trials}
                == {(t.number, tuple(sorted(t.params.items()))) for t in runs[0].trials})
    best = min(sim_s)
    print(f"\n{n} trials on {args.workers} workers          wall s     per trial ms")
    print(f"  naive replay (sleeps)   {naive_s:12.3f} {naive_s * 1e3 / n:14.3f}")
    print(f"  simulated replay        {best:12.5f} {best * 1e3 / n:14.4f}   (min of "
          f"{len(runs)}; median {statistics.median(sim_s):.5f} s)")
    print(f"  speed-up naive / simulated: {naive_s / best:,.0f}×  (median "
          f"{naive_s / statistics.median(sim_s):,.0f}×; target ≥ 1000×)")
    print(f"  virtual trials window {virtual_s:.2f} s; naive took {naive_s:.2f} s")
    print(f"  same trials as naive: {'yes' if same_set else 'NO'}; same completion order: "
          f"{'yes' if same else 'no (runtimes closer than the sleeps jitter)'}")
    print(f"  simulator's own time per trial: {min(own_ms):.4f} ms (median "
          f"{statistics.median(own_ms):.4f}; target ≤ 0.05 ms); in Optuna's sampler and "
          f"pruner: {min(sampler_ms):.3f} ms")

    large = scenario(args.large_trials, args.large_workers, args.sampler)
    big = Replay(large, registry, Answers(table, large).curve, study_name="large").run(0)
    m = len(big.trials)
    print(f"\n{m:,} trials on {args.large_workers} workers: simulated {big.wall_ns / 1e9:.2f} s "
          f"for {max(big.retired_ns) / 1e9:,.0f} s of virtual time; simulator's own time "
          f"per trial {big.overhead_ns / 1e6 / m:.4f} ms; in Optuna "
          f"{big.framework_ns / 1e6 / m:.3f} ms")


if __name__ == "__main__":
    main()

"""Scaling: the harness's cost per trial at 100, 1,000 and 10,000 trials.

(a) The ``simulated`` SUT on the built-in ``mf-branin`` benchmark (random sampler, no
pruner, 8 workers), each size in a fresh process, its wall time split three ways:

- replay: the simulator's ask-and-tell loop (``simulation.replay``);
- records + metrics: the rest of the scenario's run (the virtual energy timeline, the
  trace, Table 2), its undeploy, and the scenario's record for the report;
- report files: the report assembled, report.json, report.md, trials.csv and the plots
  written, and the run saved in an SQLite history — what ``session.finish`` does.

Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that process; KB/trial is
its growth over the next smaller size per added trial (the constant part, torch and
matplotlib imported, cancels out).

(b) The ``optuna`` SUT with a no-op trainable (``noop_trainable.py``) against plain Optuna
running the same objective in the same number of worker processes, pinned the same way,
sharing one ``JournalStorage`` file (on tmpfs where there is one): alternating plain,
basht, plain, basht, each in a fresh process. Timed from the moment every worker is
ready (basht: setup's end; plain: a barrier after each worker loaded the study) until the
trials are recorded (basht: the scenario's result with its attribution and metrics, less
its result collection and test phases; plain: the last worker's study.optimize returned),
in wall seconds and in CPU seconds of every process (psutil). The difference per trial is
the ``optuna`` SUT's own overhead. With one worker it is the harness alone; with several,
Optuna's journal lock (it polls every millisecond) makes the wall time depend on how
often workers collide, and the harness's work between trials can make collisions rarer —
so both are printed.

    python benchmarks/perf/scaling.py                      # both, 100 / 1,000 / 10,000
    python benchmarks/perf/scaling.py --sim 100,1000 --real 100 --rounds 1
    python benchmarks/perf/scaling.py --profile 3000       # cProfile of (a) at 3,000

Targets: per-trial cost at 10,000 within 1.2× of that at 1,000; 10,000 simulated trials
end to end within 2× of the replay alone; the ``optuna`` SUT's own overhead under 2 ms
per trial beyond plain Optuna's.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import noop_trainable

from pytest_basht import machine, wiring, workload_files
from pytest_basht import workload as wl
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.registry import Registry
from pytest_basht.report import assemble, files
from pytest_basht.report import json as report_json
from pytest_basht.report.history import SessionHistory
from pytest_basht.runner import Deployments, TrialRunner
from pytest_basht.sut.limits import plan_cpus

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------- (a) simulated


def sim_workload(trials: int, workers: int) -> wl.Workload:
    path = ROOT / "workloads" / "mf-branin-simulated.yaml"
    doc = workload_files.apply_overrides(workload_files.read_document(path), {
        "search.sampler": "random", "search.pruner": "none", "search.trials": trials,
        "workers.count": workers})
    return wl.from_mapping(doc, str(path))


def sim_once(trials: int, workers: int, out_dir: Path, registry: Registry
             ) -> dict[str, float]:
    """One simulated scenario through the library, end to end; seconds per step."""
    w = sim_workload(trials, workers)
    monitor = EnergyMonitor(EstimateMeter.from_workload(w), hz=w.energy.sample_hz)
    monitor.start()
    deployments = Deployments(monitor, registry, work_root=out_dir)
    t0 = time.perf_counter()
    result = TrialRunner(w, deployments).run()
    deployments.close()
    monitor.stop()
    record = report_json.scenario_record("scaling.py::test_sim", result)
    record.update(scenario_id="scaling.py::test_sim", repeat=1,
                  placement={"worker": "main", "pid": os.getpid(), "host": "scaling"})
    t1 = time.perf_counter()
    facts = assemble.RunFacts(
        run_id=f"scaling-{trials}", status="complete", options={},
        machine=machine.fingerprint(record["energy"]["source"]),
        packages=machine.package_versions(), git=machine.git_info(ROOT), workload_file=None,
        meters=[monitor.describe()])
    report = assemble.build([record], [], facts)
    run_dir = files.write_report(report, out_dir / "reports")
    history = SessionHistory(f"sqlite:///{out_dir / 'history.sqlite'}", out_dir)
    history.save(report, run_dir / "report.json")
    history.close()
    t2 = time.perf_counter()
    replay_s = result.sut["simulation"]["wall_s"]
    return {"trials": len(result.trials), "replay_s": replay_s,
            "records_s": t1 - t0 - replay_s, "report_s": t2 - t1}


def sim_child(trials: int, workers: int) -> None:
    """A fresh process per size, so that its peak RSS is its own."""
    registry = wiring.registry()  # imports every trainable's framework (torch): not per trial
    with tempfile.TemporaryDirectory() as tmp:
        figures = sim_once(trials, workers, Path(tmp), registry)
    print(json.dumps({**figures, "peak_mb": peak_rss_mb()}))


def in_child(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"scaling.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def simulated(sizes: list[int], workers: int) -> dict[int, dict[str, Any]]:
    print(f"(a) simulated SUT: mf-branin, random sampler, no pruner, {workers} workers; "
          "ms per trial; peak RSS from getrusage (ru_maxrss)")
    print(f"{'trials':>7} {'replay':>8} {'records':>8} {'report':>8} {'total':>8} "
          f"{'e2e/replay':>10} {'peak RSS MB':>11} {'KB/trial':>9}")
    rows: dict[int, dict[str, Any]] = {}
    for n in sizes:
        r = in_child("--sim-child", str(n), "--workers", str(workers))
        total = r["replay_s"] + r["records_s"] + r["report_s"]
        rows[n] = {**r, "total_s": total}
        ms = {k: r[k] * 1e3 / n for k in ("replay_s", "records_s", "report_s")}
        print(f"{n:>7} {ms['replay_s']:8.3f} {ms['records_s']:8.3f} {ms['report_s']:8.3f} "
              f"{total * 1e3 / n:8.3f} {total / r['replay_s']:10.2f} {r['peak_mb']:11.1f} "
              f"{growth(rows, n):>9}", flush=True)
    return rows


def growth(rows: dict[int, dict[str, Any]], n: int) -> str:
    """Peak RSS per trial over the next smaller size (the constant part cancels out)."""
    smaller = [m for m in rows if m < n]
    if not smaller:
        return "-"
    m = max(smaller)
    return f"{(rows[n]['peak_mb'] - rows[m]['peak_mb']) * 1024 / (n - m):.2f}"


def flatness(rows: dict[int, dict[str, Any]], key: str, what: str) -> None:
    if 1000 in rows and len(rows) > 1 and max(rows) > 1000:
        big = max(rows)
        ratio = (rows[big][key] / big) / (rows[1000][key] / 1000)
        print(f"  {what}: per-trial cost at {big:,} / at 1,000 = {ratio:.2f} (target ≤ 1.2)")


# ----------------------------------------------------------------------- (b) optuna SUT


def real_workload(trials: int, workers: int) -> wl.Workload:
    return wl.from_mapping({
        "name": "noop", "model": {"name": "noop"}, "training": {"epochs": 1},
        "search": {"sampler": "random", "pruner": "none", "trials": trials,
                   "space": {"x": {"low": 0.0, "high": 1.0}}},
        "goal": {"metric": "loss", "direction": "minimize"},
        "workers": {"count": workers, "cpu": 1, "memory_mb": 1024},
        "energy": {"idle_s": 0.5}, "sut": {"name": "optuna"}}, "scaling.py")


def scratch() -> tempfile.TemporaryDirectory[str]:
    """Where both sides keep the study's journal: tmpfs when there is one. Optuna fsyncs
    the journal at every write; on a shared disk that latency, the same for both, swamps
    the difference between them (rounds of one size varied 2x)."""
    shm = Path("/dev/shm")
    return tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None)


def cpu_s(pids: list[int]) -> float:
    """CPU seconds of this process (every thread: the sampler's too) and of ``pids``."""
    import psutil

    times = [psutil.Process(pid).cpu_times() for pid in pids]
    return time.process_time() + sum(t.user + t.system for t in times)


def basht_child(trials: int, workers: int) -> None:
    """The optuna SUT with the no-op trainable: setup's end → the scenario's result (its
    trials recorded, attributed and measured), in wall and CPU seconds of every process."""
    w = real_workload(trials, workers)
    registry = wiring.registry()
    registry.trainables["noop"] = noop_trainable.NoOp
    monitor = EnergyMonitor(EstimateMeter.from_workload(w), hz=w.energy.sample_hz)
    monitor.start()
    line = ProgressLine(monitor)
    with scratch() as tmp:
        deployments = Deployments(monitor, registry, progress=line, work_root=Path(tmp))
        sut = deployments.get(w).sut  # the runner's scenario takes this deployment
        pids = [x.proc.pid for x in sut.pool.workers]
        setup, ready = sut.setup, {}

        def timed_setup(workload: wl.Workload) -> None:
            setup(workload)
            ready.update(wall=time.perf_counter(), cpu=cpu_s(pids))

        sut.setup = timed_setup
        result = TrialRunner(w, deployments).run()
        wall, cpu = time.perf_counter() - ready["wall"], cpu_s(pids) - ready["cpu"]
        deployments.close()
    monitor.stop()
    # asking Optuna for the best trial and testing it: the SUT's phases, not per-trial work
    # (a plain script does them after its loop, or not at all)
    asked = [s for s in result.spans if s.phase in ("result_collection", "test")]
    print(json.dumps({"seconds": wall - sum(s.duration_s for s in asked),
                      "cpu_s": cpu - sum(s.cpu_s for s in asked), "trials": len(result.trials)}))


class ProgressLine:
    """The plugin's live line, formatted and rate-limited as on a terminal (written to
    nowhere): its cost is part of the harness's."""

    def __init__(self, monitor: EnergyMonitor) -> None:
        from pytest_basht.report import terminal

        self.monitor = monitor
        self.line = terminal.progress_line
        self.last = 0.0
        self.text = ""

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        joules = self.monitor.timeline.joules
        self.text = self.line(progress, joules[-1] if joules else 0.0, self.monitor.source)


def plain_worker(wid: int, cores: list[int], journal: str, cap: int, ready: Any,
                 go: Any, done: Any, leave: Any) -> None:
    os.sched_setaffinity(0, set(cores))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    study = optuna.load_study(study_name="plain", storage=storage,
                              sampler=optuna.samplers.RandomSampler(seed=42),
                              pruner=optuna.pruners.NopPruner())

    class OverBudget(Exception):
        pass

    def objective(trial: optuna.Trial) -> float:
        if trial.number >= cap:  # the optuna SUT's worker: past the budget, stop
            study.stop()
            raise OverBudget
        return noop_trainable.plain_objective(trial)

    # one trial aside first, so that Optuna's lazy imports are not in the window (the
    # optuna SUT's workers did theirs at deploy and setup)
    optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).optimize(
        noop_trainable.plain_objective, n_trials=1)
    ready.release()
    go.wait()
    study.optimize(objective, n_trials=None, catch=(OverBudget,), gc_after_trial=False)
    done.release()
    leave.wait()  # measured alive: a process's exit (module teardown) is not a trial's cost


def plain_child(trials: int, workers: int) -> None:
    """Plain Optuna, the same objective and workers: the barrier → the last worker's exit."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    plan = plan_cpus(workers, 1)
    ctx = mp.get_context("spawn")
    with scratch() as tmp:
        journal = str(Path(tmp) / "journal.log")
        optuna.create_study(study_name="plain", direction="minimize",
                            storage=optuna.storages.JournalStorage(
                                optuna.storages.journal.JournalFileBackend(journal)))
        ready, go, done, leave = ctx.Semaphore(0), ctx.Event(), ctx.Semaphore(0), ctx.Event()
        procs = [ctx.Process(target=plain_worker, args=(i, plan.sets[i], journal, trials,
                                                        ready, go, done, leave))
                 for i in range(workers)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.acquire()
        pids = [p.pid for p in procs if p.pid is not None]
        cpu0 = cpu_s(pids)
        t0 = time.perf_counter()
        go.set()
        for _ in procs:
            done.acquire()
        seconds = time.perf_counter() - t0
        cpu = cpu_s(pids) - cpu0
        leave.set()
        for p in procs:
            p.join()
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "trials": trials}))


def real(sizes: list[int], workers: int, rounds: int) -> dict[int, tuple[float, float]]:
    print(f"\n(b) optuna SUT, no-op trainable, against plain Optuna: {workers} worker "
          f"processes, random sampler, JournalStorage; alternating plain/basht, {rounds} "
          "round(s); medians; wall and CPU (all processes) ms per trial")
    print(f"{'trials':>7} {'plain wall':>10} {'basht wall':>10} {'overhead':>8} "
          f"{'plain CPU':>9} {'basht CPU':>9} {'overhead':>8}")
    out = {}
    for n in sizes:
        plain, basht = [], []
        for _ in range(rounds):
            plain.append(in_child("--plain-child", str(n), "--workers", str(workers)))
            basht.append(in_child("--basht-child", str(n), "--workers", str(workers)))
        ms = {(kind, key): statistics.median(r[key] for r in runs) * 1e3 / n
              for kind, runs in (("plain", plain), ("basht", basht))
              for key in ("seconds", "cpu_s")}
        wall = ms["basht", "seconds"] - ms["plain", "seconds"]
        cpu = ms["basht", "cpu_s"] - ms["plain", "cpu_s"]
        out[n] = (wall, cpu)
        rounds_s = "; ".join(f"{kind} " + ", ".join(f"{r['seconds']:.2f}" for r in runs)
                             for kind, runs in (("plain", plain), ("basht", basht)))
        print(f"{n:>7} {ms['plain', 'seconds']:10.3f} {ms['basht', 'seconds']:10.3f} "
              f"{wall:8.3f} {ms['plain', 'cpu_s']:9.3f} {ms['basht', 'cpu_s']:9.3f} "
              f"{cpu:8.3f}   (wall s: {rounds_s})", flush=True)
    return out


# ----------------------------------------------------------------------- main


def profile(trials: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        registry = wiring.registry()
        prof = cProfile.Profile()
        prof.enable()
        figures = sim_once(trials, workers, Path(tmp), registry)
        prof.disable()
    print(json.dumps(figures))
    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)


def sizes_of(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sim", default="100,1000,10000", help="simulated sizes ('' : none)")
    parser.add_argument("--real", default="100,1000,10000", help="optuna SUT sizes")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--real-workers", default="1,4",
                        help="worker processes of (b); one table each")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--sim-child", type=int, default=0)
    parser.add_argument("--basht-child", type=int, default=0)
    parser.add_argument("--plain-child", type=int, default=0)
    args = parser.parse_args()
    if args.sim_child:
        return sim_child(args.sim_child, args.workers)
    if args.basht_child:
        return basht_child(args.basht_child, args.workers)
    if args.plain_child:
        return plain_child(args.plain_child, args.workers)
    if args.profile:
        return profile(args.profile, args.workers)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} on {os.cpu_count()} CPUs\n")
    if sizes_of(args.sim):
        rows = simulated(sizes_of(args.sim), args.workers)
        flatness(rows, "total_s", "simulated end to end")
        big = max(rows)
        print(f"  {big:,} trials end to end / replay alone = "
              f"{rows[big]['total_s'] / rows[big]['replay_s']:.2f} (target ≤ 2)")
    if sizes_of(args.real):
        for workers in sizes_of(args.real_workers):
            over = real(sizes_of(args.real), workers, args.rounds)
            wall, cpu = over[max(over)]
            print(f"  optuna SUT's own overhead at {max(over):,} trials: {wall:.3f} ms per "
                  f"trial of wall time, {cpu:.3f} ms of CPU time (target < 2 ms)")


if __name__ == "__main__":
    main()

"""The gate measured: false alarms and detections under a background load that comes and goes.

A throwaway git repository holds one scenario whose trainable does a fixed number of
loop iterations per trial (``work.txt``); its commit is the baseline. K unchanged
candidates (the working tree as committed) and K candidates with +10 % of iterations
(``--change``) are each decided by the recipe docs/ci.md recommends — ``basht paired
--pairs P --fail-on SPEC``, a pair's two runs at once (``--sequential``: one after the
other) — while a busy loop the script starts itself runs on one core
(``--load-core``, by default the core the trial worker is pinned to) for a few seconds, then
pauses for a few, until the end. Unchanged and changed decisions alternate, so the load
hits both kinds alike.

"Before" is the single-sample gate of today on the same runs: the first baseline run
against the last candidate run (made apart, as main's saved run and a pull request's
are), a threshold alone deciding (``energy_kwh:+10%,jct_ms:+20%`` as the issue's user
gated, and the recipe's own keys).

    python benchmarks/perf/gate_power.py --decisions 5 --pairs 6

Prints the false-alarm rate, the detection rate and the CI minutes per decision, each
decision's line as it finishes, and the spread of the pairs' ratios per gated metric.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_basht.report import json as report_json
from pytest_basht.report import noise

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = '''
from pathlib import Path

from pytest_basht.trainables.base import DataInfo, Trainable


class Work(Trainable):
    """A fixed amount of CPU work per trial: work.txt loop iterations per epoch."""

    name = "work"

    @classmethod
    def prepare(cls, workload, data_dir):
        return DataInfo(str(data_dir), 0, 0, 0, 0)

    def setup(self, workload, data, device):
        self.workload = workload

    def run_trial(self, ctx):
        n = int((Path(__file__).parent / "work.txt").read_text())
        value = 0.0
        for epoch in range(self.workload.training.epochs):
            with ctx.phase("trial.train", epoch=epoch):
                acc = 0
                for i in range(n):
                    acc += i * i
            with ctx.phase("trial.validate", epoch=epoch):
                value = 1 - (ctx.params["x"] - 3) ** 2 / 100
            ctx.report(epoch, value)
        Path(ctx.artifact).write_text(repr(value))
        return value

    def test(self, artifact):
        return float(Path(artifact).read_text())


def pytest_basht_register_trainables():
    return {"work": Work}
'''

WORKLOAD = """\
name: gate-power
model: {name: work}
training: {epochs: 1}
search: {space: {x: [1, 2, 3, 4]}}
goal: {target: 0.5}
workers: {count: 1, cpu: 1, memory_mb: 512}
energy: {idle_s: 0}
"""

SCENARIO = """
import pytest


@pytest.mark.basht(experiment="gate-power")
def test_work(trial_runner):
    assert trial_runner.run().trials
"""

BEFORE = {"energy_kwh": 0.10, "jct_ms": 0.20}  # the single-sample gate
PYTEST_ARGS = ["--basht-workload", "w.yaml", "-p", "no:hypothesispytest"]


def busy_load(core: int, seed: int, on: tuple[float, float], off: tuple[float, float]) -> None:
    """A busy loop on one core that comes and goes (run in its own process)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    rng = random.Random(seed)
    while True:
        until = time.monotonic() + rng.uniform(*on)
        while time.monotonic() < until:
            pass
        time.sleep(rng.uniform(*off))


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=perf@example.org", "-c", "user.name=perf", *args],
                   cwd=repo, check=True, capture_output=True)


def make_repo(repo: Path, iterations: int) -> None:
    (repo / "conftest.py").write_text(CONFTEST)
    (repo / "w.yaml").write_text(WORKLOAD)
    (repo / "test_work.py").write_text(SCENARIO)
    (repo / "work.txt").write_text(str(iterations))
    (repo / ".gitignore").write_text("reports/\n__pycache__/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline")


def value(report: dict, key: str) -> float:
    metrics = report["scenarios"][0]["metrics"]
    phases = metrics.get("phases") or {}
    return float(phases[key] if key in phases else metrics[key])


def decide(repo: Path, work: Path, pairs: int, fail_on: str, sequential: bool
           ) -> tuple[int, float, dict]:
    """One decision by the recipe: its exit status, minutes and verdict report."""
    start = time.monotonic()
    mode = ["--sequential"] if sequential else []
    done = subprocess.run([sys.executable, "-m", "pytest_basht.cli", "paired", "--baseline",
                           "HEAD", "--pairs", str(pairs), "--fail-on", fail_on, "--work-dir",
                           str(work), *mode, "--", *PYTEST_ARGS], cwd=repo,
                          capture_output=True, text=True)
    minutes = (time.monotonic() - start) / 60
    if done.returncode not in (0, 1):
        sys.exit(f"basht paired failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return done.returncode, minutes, json.loads((work / "paired.json").read_text())


def before(verdict: dict, keys: dict[str, float]) -> bool:
    """Today's single-sample gate: the first baseline run against the last candidate run
    (made apart, as main's saved run and a pull request's are); fails when a key is past
    its threshold."""
    last = max(r["pair"] for r in verdict["runs"])
    old = next(r for r in verdict["runs"] if (r["pair"], r["side"]) == (1, "baseline"))
    new = next(r for r in verdict["runs"] if (r["pair"], r["side"]) == (last, "candidate"))
    old_report, new_report = (report_json.load(Path(r["report_dir"]) / "latest")
                              for r in (old, new))
    return any(value(new_report, k) > (1 + t) * value(old_report, k) for k, t in keys.items())


def log_ratios(verdict: dict, key: str) -> list[float]:
    reports = {(r["pair"], r["side"]): report_json.load(Path(r["report_dir"]) / "latest")
               for r in verdict["runs"]}
    return [math.log(value(reports[(p, "candidate")], key) / value(reports[(p, "baseline")],
                                                                    key))
            for p in sorted({p for p, _ in reports})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=20, help="K of each kind")
    parser.add_argument("--pairs", type=int, default=noise.RECOMMENDED_PAIRS)
    parser.add_argument("--fail-on", default="trials.energy_kwh:+5%")
    parser.add_argument("--iterations", type=int, default=6_000_000,
                        help="loop iterations per trial (the fixed CPU work)")
    parser.add_argument("--change", type=float, default=0.10, help="the known change")
    parser.add_argument("--load-core", type=int, default=0)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--sequential", action="store_true",
                        help="basht paired --sequential: a pair's runs one after the other")
    args = parser.parse_args()
    keys = [item.split(":")[0] for item in args.fail_on.split(",")]
    own = {k: float(item.split(":")[1].strip("+%")) / 100
           for k, item in zip(keys, args.fail_on.split(","), strict=True)}

    tmp = Path(tempfile.mkdtemp(prefix="basht-gate-power-"))
    repo = tmp / "repo"
    repo.mkdir()
    make_repo(repo, args.iterations)
    load = multiprocessing.Process(target=busy_load, daemon=True,
                                   args=(args.load_core, args.seed, (2.0, 8.0), (2.0, 8.0)))
    load.start()
    mode = " --sequential" if args.sequential else ""
    print(f"gate power: {args.decisions} unchanged and {args.decisions} +{args.change:.0%} "
          f"decisions by basht paired --pairs {args.pairs}{mode} --fail-on {args.fail_on}; "
          f"{args.iterations} iterations per trial, 4 trials per run; a busy loop on core "
          f"{args.load_core} on 2-8 s, off 2-8 s; {os.cpu_count()} CPUs; work in {tmp}",
          flush=True)
    results: dict[str, list[tuple[int, float, bool, bool]]] = {"unchanged": [], "changed": []}
    spreads: dict[str, list[float]] = {k: [] for k in keys}
    try:
        for k in range(args.decisions):
            for kind in ("unchanged", "changed"):
                factor = 1 + args.change if kind == "changed" else 1.0
                (repo / "work.txt").write_text(str(round(args.iterations * factor)))
                status, minutes, verdict = decide(repo, tmp / f"{kind}-{k + 1:02d}",
                                                  args.pairs, args.fail_on, args.sequential)
                old_gate, own_gate = before(verdict, BEFORE), before(verdict, own)
                results[kind].append((status, minutes, old_gate, own_gate))
                for key in keys:
                    ratios = log_ratios(verdict, key)
                    centre = statistics.median(ratios)
                    spreads[key] += [r - centre for r in ratios]
                rows = {r["metric"]: r for r in verdict["comparison"]["rows"]}
                shown = "; ".join(f"{m} ×{rows[m]['ratio']:.3f} p={rows[m]['p']:.3g} "
                                  f"{rows[m]['verdict']}" for m in keys if m in rows)
                print(f"{kind:9s} {k + 1:2d}: exit {status} in {minutes:.1f} min ({shown}); "
                      f"single-sample gate {'FAIL' if old_gate else 'pass'} (issue's keys), "
                      f"{'FAIL' if own_gate else 'pass'} ({args.fail_on})", flush=True)
    finally:
        load.terminate()
        load.join()
    same, changed = results["unchanged"], results["changed"]
    minutes = [m for _, m, _, _ in same + changed]
    print()
    print(f"after  (basht paired{mode}, {args.pairs} pairs, {args.fail_on}): false alarms "
          f"{sum(s == 1 for s, *_ in same)}/{len(same)}, detected "
          f"{sum(s == 1 for s, *_ in changed)}/{len(changed)} of +{args.change:.0%}")
    print(f"before (one sample each side, threshold only, energy_kwh:+10%,jct_ms:+20%): "
          f"false alarms {sum(o for *_, o, _ in same)}/{len(same)}, detected "
          f"{sum(o for *_, o, _ in changed)}/{len(changed)}")
    print(f"before (one sample each side, threshold only, {args.fail_on}): false alarms "
          f"{sum(o for *_, o in same)}/{len(same)}, detected "
          f"{sum(o for *_, o in changed)}/{len(changed)}")
    print(f"CI minutes per decision: median {statistics.median(minutes):.1f}, max "
          f"{max(minutes):.1f} ({os.cpu_count()} CPUs, {2 * args.pairs} runs each)")
    for key, devs in spreads.items():
        s = noise.MAD_SIGMA * statistics.median(abs(d) for d in devs)
        floor = noise.as_pct(noise.paired_floor(s, args.pairs))
        print(f"spread of one pair's ratio, {key}: ±{noise.as_pct(s):.1f}% (robust σ); the "
              f"floor of {args.pairs} pairs ±{floor:.1f}%")


if __name__ == "__main__":
    main()

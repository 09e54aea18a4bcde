"""Against reality: a real multi-process run of the ``optuna`` SUT whose trials sleep their
recorded runtimes gives the same trials, in the same completion order, with the same
per-worker assignment, as the ``simulated`` SUT on that table with the same sampler seed.

The runtimes are hand-picked (and checked here) so that every pair of events on different
workers — trial ends and, with a pruner, reports — is at least ``MARGIN`` apart in the
simulation: far more than the real run's jitter (process start, storage, messaging on a
shared 2-core machine). Which worker process takes trial 0 at t=0 is a race in the real
system (all ask at once), so worker ids are compared up to relabeling: the same groups of
trials ran one after another on one worker.
"""

from __future__ import annotations

import itertools
import textwrap

import pytest

from pytest_basht.report import json as report_json

MARGIN_S = 0.4
HEADER = "source,seed,trial,state,epoch,value,time_s,energy_j,cpu_s,validate_s,test_value,param.x"

SLEEPER = '''
import csv
import time
from pathlib import Path

from pytest_basht.trainables.base import DataInfo, Trainable


class Sleeper(Trainable):
    """Replays a trial table for real: sleeps each epoch's recorded time, reports its value."""

    name = "sleeper"

    @classmethod
    def prepare(cls, workload, data_dir):
        return DataInfo(str(data_dir), 0, 0, 0, 0)

    def setup(self, workload, data, device):
        self.workload = workload
        path = Path(workload.source).parent / workload.model.params["table"]
        self.epochs = {}
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                self.epochs.setdefault(int(row["param.x"]), []).append(row)

    def run_trial(self, ctx):
        value = None
        rows = sorted(self.epochs[ctx.params["x"]], key=lambda r: int(r["epoch"]))
        for row in rows[: self.workload.training.epochs]:
            epoch = int(row["epoch"])
            with ctx.phase("trial.train", epoch=epoch):
                time.sleep(float(row["time_s"]))
            with ctx.phase("trial.validate", epoch=epoch):
                value = float(row["value"])
            ctx.report(epoch, value)
        return value

    def test(self, artifact):
        return None


def pytest_basht_register_trainables():
    return {"sleeper": Sleeper}
'''

# name: (workers, epochs, pruner, [(runtime s, value) per x])
CASES = {
    "two": (2, 1, "none", [(1.2, 0.34), (0.4, 0.75), (1.6, 0.45), (1.6, 0.66), (1.6, 0.61),
                           (1.4, 0.52)]),
    "four": (4, 1, "none", [(2.5, 0.74), (1.0, 0.61), (1.5, 0.75), (1.5, 0.52), (3.0, 0.62),
                            (2.0, 0.65)]),
    "pruned": (2, 3, "median", [(4.5, 0.72), (6.0, 0.57), (1.5, 0.62), (4.5, 0.48),
                                (1.5, 0.35), (9.0, 0.23)]),
}


def table(epochs: int, runs: list[tuple[float, float]]) -> str:
    rows = [f"r,42,{x},complete,{e},{v},{t / epochs},{t},0,0,,{x}"
            for x, (t, v) in enumerate(runs) for e in range(epochs)]
    return "\n".join([HEADER, *rows]) + "\n"


def workload(name: str) -> str:
    workers, epochs, pruner, runs = CASES[name]
    return textwrap.dedent(f"""\
        name: {name}
        model: {{name: sleeper, params: {{table: {name}.csv}}}}
        training: {{epochs: {epochs}}}
        search:
          sampler: grid
          pruner: {pruner}
          pruner_options: {{{'n_startup_trials: 2' if pruner == 'median' else ''}}}
          space: {{x: {list(range(len(runs)))}}}
        workers: {{count: {workers}, cpu: 1, memory_mb: 1500}}
        sut: {{options: {{table: {name}.csv}}}}
        """)


SCENARIOS = "\n".join(f'''
@pytest.mark.basht(workload="{name}.yaml", experiment="{name}")
@vary("sut.name", ["optuna", "simulated"])
def test_{name}(trial_runner):
    assert trial_runner.run().trials
''' for name in CASES)


def events(trials: list[dict], pruned: bool) -> list[tuple[int, int]]:
    out = []
    for t in trials:
        out.append((t["end_ns"], t["worker"]))
        if pruned:
            out += [(s["end_ns"], t["worker"]) for s in t["spans"]
                    if s["phase"] == "trial.validate"]
    return out


def groups(trials: list[dict]) -> list[tuple[int, ...]]:
    """Each worker's trials in the order it ran them, as a set of sequences (no worker ids)."""
    by_worker: dict[int, list[dict]] = {}
    for t in trials:
        by_worker.setdefault(t["worker"], []).append(t)
    return sorted(tuple(t["number"] for t in sorted(ts, key=lambda t: t["start_ns"]))
                  for ts in by_worker.values())


@pytest.mark.slow
def test_simulation_matches_a_real_parallel_run(pytester):
    pytester.makeconftest(SLEEPER)
    for name, (_, epochs, _, runs) in CASES.items():
        (pytester.path / f"{name}.csv").write_text(table(epochs, runs))
        (pytester.path / f"{name}.yaml").write_text(workload(name))
    pytester.makepyfile(test_reality="import pytest\nfrom pytest_basht import vary\n"
                        + SCENARIOS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2 * len(CASES))
    run = next(p for p in (pytester.path / "reports").iterdir() if p.name != "latest")
    report = report_json.load(run)
    by_case = {(sc["experiment"], sc["workload"]["sut"]["name"]): sc
               for sc in report["scenarios"]}
    for name, (_, _, pruner, _) in CASES.items():
        real, sim = by_case[name, "optuna"], by_case[name, "simulated"]
        assert sim["sut"]["simulated"] is True and "simulated" not in real["sut"]
        # the simulation's events are well separated (the premise of the comparison)
        ev = events(sim["trials"], pruner != "none")
        gap = min(abs(a[0] - b[0]) for a, b in itertools.combinations(ev, 2) if a[1] != b[1])
        assert gap >= MARGIN_S * 1e9, (name, gap)
        same = {(t["number"], t["params"]["x"], t["state"]) for t in sim["trials"]}
        assert {(t["number"], t["params"]["x"], t["state"]) for t in real["trials"]} == same
        real_order = [t["number"] for t in sorted(real["trials"], key=lambda t: t["end_ns"])]
        assert real_order == sim["sut"]["simulation"]["completion_order"], name
        assert groups(real["trials"]) == groups(sim["trials"]), name
        if pruner != "none":
            assert sum(t["state"] == "pruned" for t in sim["trials"]) >= 2
            real_epochs = {t["number"]: len(t["intermediate"]) for t in real["trials"]}
            assert real_epochs == {t["number"]: len(t["intermediate"]) for t in sim["trials"]}

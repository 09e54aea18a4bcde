"""zeus-bso end to end: recurrences as scenarios on the simulated SUT, the report's Zeus BSO
section and plot, waste from early stops, and a job that continues in a second process."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import jsonschema
import pytest
from postgres import postgres_server  # noqa: F401  (the fixture)

from pytest_basht import workload as wl
from pytest_basht.report import json as report_json
from pytest_basht.simulation.table import TrialTable
from pytest_basht.zeus import simulate
from pytest_basht.zeus.store import BsoStore

# One recording per batch size (P_max 10 W, η 0.5, target 0.9):
#   16: reaches it at epoch 0 (2 s, 30 J)            cost 0.5·30 + 0.5·10·2   = 25
#   32: at epoch 1 (1 s and 10 J per epoch)          cost 0.5·20 + 0.5·10·2   = 20
#   64: at epoch 0 (0.5 s, 6 J)                      cost 0.5·6 + 0.5·10·0.5  = 5.5
#  128: never (0.5 s, 8 J per epoch)                 6.5 per epoch
CURVES = {16: ([0.9, 0.92, 0.93, 0.94], 2.0, 30.0), 32: ([0.85, 0.92, 0.93, 0.94], 1.0, 10.0),
          64: ([0.91, 0.92, 0.93, 0.94], 0.5, 6.0), 128: ([0.5, 0.6, 0.7, 0.8], 0.5, 8.0)}
COST = {16: 25.0, 32: 20.0, 64: 5.5}

WORKLOAD = textwrap.dedent("""\
    name: nightly
    training: {epochs: 4, batch_size: 64, stop_at_target: true}
    search:
      sampler: zeus-bso
      pruner: zeus-bso
      sampler_options: {job: nightly}
      space: {batch_size: [16, 32, 64, 128]}
    goal: {target: 0.9}
    workers: {count: 1, cpu: 1, memory_mb: 1024}
    energy: {max_power_w: 10, idle_s: 0}
    sut: {name: simulated, options: {table: t.csv, lifecycle: none}}
    """)


def table_csv() -> str:
    rows = ["source,seed,trial,state,epoch,value,time_s,energy_j,cpu_s,validate_s,test_value,"
            "param.batch_size"]
    for n, (bs, (values, seconds, joules)) in enumerate(CURVES.items()):
        for epoch, value in enumerate(values):
            rows.append(f"rec,1,{n},complete,{epoch},{value},{seconds},{joules},{seconds},0,"
                        f",{bs}")
    return "\n".join(rows) + "\n"


@pytest.fixture
def job_dir(pytester):
    pytester.makefile(".csv", t=table_csv())
    pytester.makefile(".yaml", w=WORKLOAD)
    return pytester


def test_recurrences_learn_the_cheapest_batch_size(job_dir):
    job_dir.makepyfile(test_job="""
        from pytest_basht import vary

        @vary("seed", list(range(1, 9)))
        def test_recurrence(trial_runner):
            run = trial_runner.run()
            assert run.workload.goal.met(run.best.value)
    """)
    result = job_dir.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history", "off")
    assert result.ret == 0, result.stdout.str()
    report = report_json.load(job_dir.path / "reports" / "latest")
    jsonschema.validate(report, report_json.schema())
    tried = [[(t["params"]["batch_size"], t["state"]) for t in sc["trials"]]
             for sc in report["scenarios"]]
    # pruning round 1 from 64: down 64 32 16, up 128 — stopped at epoch 1, its cost 13
    # passing 2 × 5.5; the same recurrence retries with round 2's start, 64; round 2: 32,
    # 16, nothing above 64; then Thompson sampling keeps the cheapest
    assert tried == [[(64, "complete")], [(32, "complete")], [(16, "complete")],
                     [(128, "pruned"), (64, "complete")], [(32, "complete")],
                     [(16, "complete")], [(64, "complete")], [(64, "complete")]]
    stopped = report["scenarios"][3]
    assert stopped["trials"][0]["intermediate"] == [0.5, 0.6]  # two epochs, then stopped
    waste = stopped["metrics"]["waste"]["pruned"]
    assert waste["trials"] == 1 and waste["energy_kwh"] == pytest.approx(16.0 / 3.6e6)
    (group,) = report["zeus"]["groups"]
    assert group["job"] == "nightly" and group["policy"] == "zeus"
    costs = [r["cost"] for r in group["recurrences"]]
    assert costs == pytest.approx([5.5, 20.0, 25.0, 13.0 + 5.5, 20.0, 25.0, 5.5, 5.5])
    oracle = group["oracle"]
    assert (oracle["best_batch_size"], oracle["best_cost"]) == (64, pytest.approx(5.5))
    assert oracle["batch_sizes"]["128"]["reach_target"] == 0
    regrets = [c - 5.5 for c in costs]
    assert group["recurrences"][-1]["cumulative_regret"] == pytest.approx(sum(regrets))
    s = group["summary"]
    assert s["cumulative_cost"] == pytest.approx(sum(costs)) and s["early_stopped"] == 1
    assert (s["settled_batch_size"], s["settled_on_best"]) == (64, True)
    # what the sampler logged in the store is what the report computes from the records
    with BsoStore(str(job_dir.path / ".basht" / "history.sqlite")) as store:
        logged = store.attempts("nightly")
    assert [a["cost"] for a in logged] == pytest.approx(
        [a["cost"] for r in group["recurrences"] for a in r["attempts"]])
    assert [a["early_stopped"] for a in logged].count(True) == 1
    # and what the table simulation, without pytest, decides and costs
    replayed = simulate.recurrences(wl.load(job_dir.path / "w.yaml"),
                                    TrialTable.read(job_dir.path / "t.csv"), 8)
    assert [(o.recurrence, o.batch_size, o.converged, o.early_stopped) for o in replayed] == \
        [(a["recurrence"], a["batch_size"], a["converged"], a["early_stopped"]) for a in logged]
    assert [o.cost for o in replayed] == pytest.approx([a["cost"] for a in logged])
    run_dir = job_dir.path / "reports" / "latest"
    assert (run_dir / "bso.png").stat().st_size > 10_000 and report["zeus"]["plot"] == "bso.png"
    text = (run_dir / "report.md").read_text()
    assert "## Zeus BSO: cost and regret per recurrence" in text
    assert "128✗ → 64✓" in text and "![cumulative cost and regret per recurrence](bso.png)" in text


@pytest.mark.slow
def test_a_job_continues_in_the_next_process(job_dir):
    """One pytest run is one recurrence: the state survives the process, in SQLite."""
    job_dir.makepyfile(test_job="""
        def test_recurrence(trial_runner):
            run = trial_runner.run()
            print("BATCH", [t.params["batch_size"] for t in run.trials])
    """)
    seen = []
    for _ in range(3):
        result = job_dir.runpytest_subprocess("--basht-workload", "w.yaml", "-s")
        assert result.ret == 0, result.stdout.str() + result.stderr.str()
        seen += re.findall(r"BATCH \[[\d, ]+\]", result.stdout.str())
    assert seen == ["BATCH [64]", "BATCH [32]", "BATCH [16]"]  # the walk goes on
    cli = subprocess.run([sys.executable, "-m", "pytest_basht.cli", "bso", "show", "nightly"],
                         cwd=job_dir.path, capture_output=True, text=True, check=False)
    assert cli.returncode == 0, cli.stderr
    assert "recurrences 3, attempts 3 (3 observed, 3 reached the target, 0 stopped early); " \
           "stage: pruning round 1" in cli.stdout
    assert "pruning: round 1: 64✓ 32✓ 16✓; next 128" in cli.stdout
    assert "best cost 5.5 J; an attempt stops early above 11 J (β 2.0)" in cli.stdout
    arms = {line.split()[0]: line.split() for line in cli.stdout.splitlines()
            if line[:1].isdigit() and "pruned" not in line}
    assert arms["64"][1:4] == ["arm", "1", "5.5"] and arms["128"][2] == "0"
    listed = subprocess.run([sys.executable, "-m", "pytest_basht.cli", "bso", "list"],
                            cwd=job_dir.path, capture_output=True, text=True, check=True)
    assert "nightly" in listed.stdout and "pruning round 1" in listed.stdout


@pytest.mark.slow
def test_a_job_continues_through_postgresql(job_dir, postgres_server):  # noqa: F811
    url = postgres_server.create_database("bso_e2e")
    job_dir.makefile(".yaml", w=WORKLOAD.replace("{job: nightly}",
                                                 f"{{job: nightly, store: '{url}'}}"))
    job_dir.makepyfile(test_job="""
        def test_recurrence(trial_runner):
            assert trial_runner.run().best is not None
    """)
    for _ in range(2):
        result = job_dir.runpytest_subprocess("--basht-workload", "w.yaml",
                                              "--basht-history", "off")
        assert result.ret == 0, result.stdout.str() + result.stderr.str()
    with BsoStore(url) as store:
        assert [(o.recurrence, o.batch_size, o.cost) for o in store.observations("nightly")] \
            == [(1, 64, pytest.approx(5.5)), (2, 32, pytest.approx(20.0))]


def test_usage_errors_name_the_key(job_dir):
    job_dir.makefile(".yaml", w=WORKLOAD.replace("pruner: zeus-bso", "pruner: median"))
    job_dir.makepyfile(test_job="""
        def test_recurrence(trial_runner):
            trial_runner.run()
    """)
    result = job_dir.runpytest_subprocess("--basht-workload", "w.yaml")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret != 0 and "search.pruner: expected 'zeus-bso' with sampler zeus-bso" in out
    assert "Traceback" not in out


def test_cli_names_the_jobs_it_knows(tmp_path):
    cli = subprocess.run([sys.executable, "-m", "pytest_basht.cli", "bso", "show", "nope",
                          "--history", str(tmp_path / "h.sqlite")],
                         capture_output=True, text=True, check=False)
    assert cli.returncode == 2 and "no job 'nope' (jobs: none)" in cli.stderr
    reset = subprocess.run([sys.executable, "-m", "pytest_basht.cli", "bso", "reset", "nope",
                            "--history", str(tmp_path / "h.sqlite")],
                           capture_output=True, text=True, check=True)
    assert "nothing to reset" in reset.stdout


BATCHY = '''
import time
from pathlib import Path

from pytest_basht.trainables.base import DataInfo, Trainable


class Batchy(Trainable):
    """Larger batches: shorter epochs (busy, so the estimate sees CPU) and fewer of them."""

    name = "batchy"

    @classmethod
    def prepare(cls, workload, data_dir):
        return DataInfo(str(data_dir), 0, 0, 0, 0)

    def setup(self, workload, data, device):
        self.workload = workload

    def run_trial(self, ctx):
        w, bs = self.workload, ctx.params["batch_size"]
        value = 0.0
        for epoch in range(w.training.epochs):
            with ctx.phase("trial.train", epoch=epoch):
                end = time.monotonic() + 0.05 * (64 / bs) ** 2
                while time.monotonic() < end:
                    pass
            with ctx.phase("trial.validate", epoch=epoch):
                value = min(1.0, (epoch + 1) * bs / 192)
            ctx.report(epoch, value)
            if w.training.stop_at_target and w.goal.met(value):
                break
        Path(ctx.artifact).write_text(repr(value))
        return value

    def test(self, artifact):
        return float(Path(artifact).read_text())


def pytest_basht_register_trainables():
    return {"batchy": Batchy}
'''


@pytest.mark.slow
def test_recurrences_on_real_worker_processes(pytester):
    """The optuna SUT: the sampler and pruner run in the worker process, which meters the
    attempt itself; an early stop there is a pruned trial in the report."""
    pytester.makeconftest(BATCHY)
    pytester.makefile(".yaml", w=textwrap.dedent("""\
        name: batchy-job
        model: {name: batchy}
        training: {epochs: 6, batch_size: 64, stop_at_target: true}
        search:
          sampler: zeus-bso
          pruner: zeus-bso
          space: {batch_size: [32, 64, 128]}
        goal: {target: 0.9}
        workers: {count: 1, cpu: 1, memory_mb: 1024}
        energy: {idle_s: 0}
        """))
    pytester.makepyfile(test_job="""
        from pytest_basht import vary

        @vary("seed", [1, 2])
        def test_recurrence(trial_runner):
            assert trial_runner.run().best is not None
    """)
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history", "off")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    with BsoStore(str(pytester.path / ".basht" / "history.sqlite")) as store:
        logged = store.attempts("batchy-job")
    # recurrence 1: the default 64 (3 epochs of 0.05 s); recurrence 2 walks down to 32
    # (0.2 s epochs, 6 of them to the target): past twice 64's cost within two epochs it is
    # stopped, and the walk turns up to 128
    assert [(a["recurrence"], a["batch_size"], a["state"], a["early_stopped"])
            for a in logged] == [(1, 64, "complete", False), (2, 32, "pruned", True),
                                 (2, 128, "complete", False)]
    assert logged[0]["time_s"] >= 0.15 and logged[0]["energy_j"] > 0
    assert logged[1]["epochs"] <= 2
    assert logged[1]["cost"] > logged[1]["threshold"] == pytest.approx(2 * logged[0]["cost"])
    report = report_json.load(pytester.path / "reports" / "latest")
    second = report["scenarios"][1]
    assert [t["state"] for t in second["trials"]] == ["pruned", "complete"]
    assert second["metrics"]["waste"]["pruned"]["trials"] == 1
    (group,) = report["zeus"]["groups"]
    assert group["oracle"]["source"] == "empirical"
    assert [r["batch_size"] for r in group["recurrences"]] == [64, 128]

"""Energy-aware HPO end to end, in a sub-pytest on the simulated SUT (a recorded table, so
nothing trains): a two-objective study's Pareto front and hypervolume, energy and CO2
budgets that close a study near their limits, a constraint the study keeps to, a forecast
from the table beside the replayed outcome, ``basht forecast`` by table and by pilot, and
bad objective, constraint and budget keys as usage errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import only_report
from fake_trainable import CONFTEST

from pytest_basht import workload as wl
from pytest_basht.dominance import pareto_front
from pytest_basht.metrics import J_PER_KWH

HEADER = "source,seed,trial,state,epoch,value,time_s,energy_j,cpu_s,validate_s,test_value,param.x"
XS = range(16)


def cost_s(x: int) -> float:
    """A better x takes longer, and every third x is slower still: a front with dominated
    points beside it."""
    return 1.0 + 0.5 * x + (1.5 if x % 3 == 0 else 0.0)


def table(path: Path) -> Path:
    """x = 0..15, one epoch: accuracy 0.5 + 0.03 x, ``cost_s(x)`` seconds at 20 W."""
    rows = [f"r,42,{x},complete,0,{0.5 + 0.03 * x:.2f},{cost_s(x)},{20 * cost_s(x)},"
            f"{cost_s(x) / 2},0,{0.5 + 0.03 * x:.2f},{x}" for x in XS]
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


WORKLOAD = f"""\
name: trade
model: {{name: quadratic}}
training: {{epochs: 1}}
search: {{sampler: tpe, trials: 16, space: {{x: {list(XS)}}}}}
goal: {{metric: accuracy, direction: maximize, target: 0.8}}
workers: {{count: 2, cpu: 1, memory_mb: 1000}}
energy: {{carbon_intensity: 400}}
sut: {{name: simulated, options: {{table: trade.csv, sampler_time: 0}}}}
"""

ENERGY_KWH = 1500 / J_PER_KWH
CO2_G = 0.15
SCENARIOS = f"""\
import pytest

MANY = {{"search.sampler": "random", "search.trials": 400}}


@pytest.mark.basht(workload="w.yaml", overrides={{
    "search.sampler": "nsga2", "goal.objectives": {{"energy_j": "minimize"}},
    "goal.reference": {{"accuracy": 0.5, "energy_j": 300}}}})
def test_front(trial_runner):
    trial_runner.run()


@pytest.mark.basht(workload="w.yaml", overrides={{**MANY, "budget.energy_kwh": {ENERGY_KWH}}})
def test_energy_budget(trial_runner):
    trial_runner.run()


@pytest.mark.basht(workload="w.yaml", overrides={{**MANY, "budget.co2_g": {CO2_G}}})
def test_co2_budget(trial_runner):
    trial_runner.run()


@pytest.mark.basht(workload="w.yaml", overrides={{"goal.constraints": {{"energy_j": 150}}}})
def test_constrained(trial_runner):
    trial_runner.run()
"""


def test_fronts_budgets_constraints_and_the_forecast_in_one_run(pytester):
    pytester.makeconftest(CONFTEST)
    table(pytester.path / "trade.csv")
    pytester.makefile(".yaml", w=WORKLOAD)
    pytester.makepyfile(test_scenarios=SCENARIOS)
    result = pytester.runpytest_subprocess("--basht-history", "off", "-p", "no:cacheprovider",
                                           "--basht-forecast", "table")
    assert result.ret == 0, result.stdout.str()
    report = only_report(pytester.path)
    by = {sc["test_id"].split("::")[-1]: sc for sc in report["scenarios"]}
    markdown = (pytester.path / "reports" / "latest" / "report.md").read_text()

    front = by["test_front"]["pareto"]
    points = {p["trial"]: (p["values"]["accuracy"], p["values"]["energy_j"])
              for p in front["front"]}
    trials = {t["number"]: t for t in by["test_front"]["trials"]}
    every = [(t["value"], t["energy_j"]) for t in trials.values()]
    # no trial of the study dominates a point of the front, and every other trial is
    # dominated by one (the front is exactly the non-dominated set)
    assert {tuple(every[i]) for i in pareto_front(every, ["maximize", "minimize"])} == set(
        points.values())
    assert all(trials[n]["told"]["energy_j"] == pytest.approx(e) for n, (_, e) in
               points.items()), "the study was told the energies the front is drawn from"
    assert front["hypervolume"] > 0
    assert front["reference"] == {"accuracy": 0.5, "energy_j": 300.0}
    # the pick: the cheapest trial meeting the target (x ≥ 10; x = 10 costs 6 s × 20 W)
    assert front["pick"]["values"]["value"] >= 0.8 and front["pick"]["values"]["energy_j"] == 120
    assert "**Pareto front**: " in markdown and "a user would pick trial #" in markdown

    for name, key, limit in [("test_energy_budget", "energy_kwh", ENERGY_KWH),
                             ("test_co2_budget", "co2_g", CO2_G)]:
        study = by[name]["sut"]["study"]
        budget = study["budget"]
        assert study["stopped_by"] == f"budget.{key}", json.dumps(study)
        spent, forecast = budget["spent"][key], budget["forecast"][key]
        # closed when one more trial would not fit; the running trials then finished: the
        # study ends within one trial's forecast of its limit
        assert budget["stopped_at"][key] + forecast <= limit + 1e-12
        assert abs(spent - limit) <= forecast, (spent, limit, forecast)
        assert len(by[name]["trials"]) < 400 and budget["refused"] >= 1
        assert f"stopped by the study budget (budget.{key}); budget: {key} " in markdown
        assert f"({budget['used_pct'][key]:.4g} %)" in markdown

    constrained = by["test_constrained"]
    over = [t for t in constrained["trials"] if t["told"]["energy_j"] > 150]
    assert constrained["pareto"]["infeasible"] == len(over) > 0
    assert all(t["told"]["energy_j"] <= 150 for t in constrained["trials"]
               if t["number"] in {p["trial"] for p in constrained["pareto"]["front"]})

    # the forecast from the table beside the replayed outcome: inside the band for JCT and
    # energy, but where NSGA-II's duplicates of the seed run drew 20 % more energy than
    # the five other seeds' replays — and the report says so
    for name, sc in by.items():
        forecast = sc["forecast"]
        assert forecast["method"] == "table" and forecast["source"].endswith("trade.csv")
        assert forecast["within_band"]["jct_s"], (name, forecast)
        assert forecast["within_band"]["energy_j"] == (name != "test_front"), (name, forecast)
        for key, band in forecast["figures"].items():
            error = (band["value"] - forecast["outcome"][key]) / forecast["outcome"][key]
            assert forecast["error_pct"][key] == pytest.approx(100 * error)
    assert markdown.count("**Forecast** (table: ") == 4
    assert re.search(r"energy [\d.]+ J \([\d.]+–[\d.]+\) → [\d.]+ J, error [-+][\d.]+ %, "
                     r"outside the band", markdown)


PILOT = """\
name: pilot
dataset: {name: mnist, source: embedded, samples: 600}
model: {name: mnist-ff}
training: {epochs: 4}
search:
  sampler: random
  trials: 6
  space: {layer_size: [32, 64], learning_rate: [0.001, 0.01]}
workers: {count: 1, cpu: 1, memory_mb: 1500}
energy: {meter: estimate, idle_s: 0}
"""


@pytest.mark.slow
def test_basht_forecast_by_table_and_by_pilot_says_which(tmp_path):
    """The simulated baseline's own table answers it; no table answers the mnist-ff pilot
    workload (its space is not recorded), so a pilot (one trial of one epoch) trains for
    real and is extrapolated."""
    (tmp_path / "pilot.yaml").write_text(PILOT)
    root = Path(__file__).parents[1]
    simulated = root / "workloads" / "baseline-simulated.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest_basht.cli", "forecast", str(simulated), "pilot.yaml",
         "--tables", str(root / "benchmarks" / "tables"), "--pilot-trials", "1",
         "--pilot-epochs", "1", "--seeds", "3", "--json", "f.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert (f"{simulated}: forecast by table (" in out
            and "baseline.csv; energy simulated:" in out), out
    assert "pilot.yaml: forecast by pilot (1 trials × 1 epochs; energy estimate:" in out
    assert "does not answer it: search.space" in out, "it says why no table answered"
    made = {f["workload"]["name"]: f for f in json.loads((tmp_path / "f.json").read_text())[
        "forecasts"]}
    table_made = made[wl.load(simulated).name]
    assert table_made["method"] == "table" and table_made["runs"] == 3
    pilot = made["pilot"]
    assert pilot["method"] == "pilot" and pilot["runs"] == 1
    for band in [*table_made["figures"].values(), *pilot["figures"].values()]:
        assert 0 <= band["low"] <= band["value"] <= band["high"] and band["value"] > 0
    assert pilot["workload"]["training"]["epochs"] == 4, "the forecast is of the full workload"


GOAL = "goal: {metric: accuracy, direction: maximize, target: 0.8"
BAD = {"objective": (GOAL + ", objectives: {energy_kj: minimize}}", "goal.objectives.energy_kj"),
       "direction": (GOAL + ", objectives: {energy_j: lower}}", "goal.objectives.energy_j"),
       "constraint": (GOAL + ", constraints: {power_w: 5}}", "goal.constraints.power_w"),
       "budget": (GOAL + "}\nbudget: {energy_wh: 1}", "budget.energy_wh")}


@pytest.mark.parametrize("bad", BAD)
def test_bad_objective_constraint_and_budget_keys_are_usage_errors(pytester, bad):
    """Exit 4 and one line naming the file and the key, as any workload error."""
    text, key = BAD[bad]
    pytester.makeconftest(CONFTEST)
    table(pytester.path / "trade.csv")
    pytester.makefile(".yaml", w=WORKLOAD.replace(GOAL + "}", text))
    pytester.makepyfile(test_scenarios="""
import pytest


@pytest.mark.basht(workload="w.yaml")
def test_it(trial_runner):
    trial_runner.run()
""")
    result = pytester.runpytest_subprocess("--basht-history", "off", "-p", "no:cacheprovider")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 4, out
    assert "Traceback" not in out
    assert re.search(rf"w\.yaml.*{re.escape(key)}", out), out

"""Energy-aware HPO as pure functions, on hand-built records with known answers: a trial's
told costs and constraints (``objectives``), the pick and the Pareto front record, the
forecast's interval, matching and file errors (``forecast``), the report's front paragraph,
experiment fronts and forecast verdict (``report.pareto``, ``report.forecast``), the
goal's and budget's keys, and constraints as Optuna's samplers receive them."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from conftest import trial

from pytest_basht import forecast, objectives, search, wiring
from pytest_basht import workload as wl
from pytest_basht.dominance import pareto_front
from pytest_basht.errors import WorkloadError
from pytest_basht.metrics import J_PER_KWH, TABLE2_KEYS, hypervolume
from pytest_basht.report import forecast as report_forecast
from pytest_basht.report import pareto
from pytest_basht.report.gate import CompareError, compare, parse_fail_on

#: one worker slot idles at 2 vCPU × 1 W + 2 GB × 0.5 W = 3 W, and a busy vCPU adds 2 W
COSTED = {"workers": {"count": 2, "cpu": 2, "memory_mb": 2048},
          "energy": {"pue": 1.5, "carbon_intensity": 500,
                     "estimate": {"cpu_min_w": 1, "cpu_max_w": 3, "memory_w_per_gb": 0.5}},
          "prices": {"usd_per_worker_hour": 3.6, "usd_per_kwh": 0.2}}


def goal(**kwargs) -> wl.GoalSpec:
    return wl.from_mapping({"goal": {"target": 0.8, **kwargs}}).goal


# ----------------------------------------------------------------------------- objectives


def test_a_trials_told_cost_is_the_worker_slot_model():
    """10 s, 5 CPU-seconds: 3 W × 10 s + 5 s × 2 W = 40 J, × PUE 1.5 = 60 J; CO2 at 500
    g/kWh; cost 10 s at 3.6 USD/h plus the energy at 0.2 USD/kWh."""
    w = wl.from_mapping(COSTED)
    assert objectives.slot_energy_j(w, 10.0, 5.0) == pytest.approx(60.0)
    assert objectives.slot_energy_j(w, 10.0, 99.0) == pytest.approx(1.5 * (30 + 20 * 2)), \
        "busy CPU is capped at wcpu × the duration"
    cost = objectives.trial_cost(w, 10.0, 5.0, cint=500.0)
    kwh = 60.0 / J_PER_KWH
    assert cost.to_dict() == pytest.approx({"time_s": 10.0, "energy_j": 60.0,
                                            "co2_g": kwh * 500, "cost_usd": 0.01 + kwh * 0.2})
    recorded = objectives.trial_cost(w, 10.0, 5.0, energy_j=100.0, cint=500.0)
    assert recorded.energy_j == pytest.approx(150.0), "a recording's energy, × PUE"
    assert cost.spend() == pytest.approx({"energy_kwh": kwh, "co2_g": kwh * 500,
                                          "cost_usd": 0.01 + kwh * 0.2})


def test_values_directions_and_constraints_as_optuna_takes_them():
    g = goal(objectives={"energy_j": "minimize", "time_s": "minimize"},
             constraints={"energy_j": 50})
    costs = {"time_s": 2.0, "energy_j": 60.0, "co2_g": 0.1, "cost_usd": 0.01}
    assert g.multi and g.names == ("accuracy", "energy_j", "time_s")
    assert objectives.values(g, 0.9, costs) == [0.9, 60.0, 2.0]
    assert objectives.study_direction(g) == {"directions": ["maximize", "minimize", "minimize"]}
    assert objectives.study_direction(goal()) == {"direction": "maximize"}
    cost = objectives.TrialCost(**costs)
    assert objectives.constraint_values(g, cost) == [10.0]  # > 0: broken
    assert not objectives.feasible(g, costs) and objectives.feasible(g, {**costs, "energy_j": 50})


def test_the_pick_is_the_cheapest_feasible_trial_meeting_the_target():
    g = goal(objectives={"energy_j": "minimize"}, constraints={"time_s": 10})
    rows = [(0, 0.95, {"energy_j": 90.0, "time_s": 5.0}),
            (1, 0.85, {"energy_j": 40.0, "time_s": 5.0}),
            (2, 0.82, {"energy_j": 30.0, "time_s": 20.0}),   # cheapest, but infeasible
            (3, 0.70, {"energy_j": 10.0, "time_s": 1.0}),    # misses the target
            (4, math.nan, {"energy_j": 1.0, "time_s": 1.0})]
    assert objectives.pick(g, rows) == 1
    assert objectives.pick(g, rows, cheapest=False) == 0
    assert objectives.pick(goal(target=0.99), rows) == 0, "none meets it: the best value"
    assert objectives.pick(g, [rows[4]]) is None


def test_the_front_record_of_hand_built_trials():
    """Energies 10, 20, 30, 40 J at accuracies 0.6, 0.9, 0.7, 0.95: #2 is dominated by #1;
    reference (0.5, 50 J): hypervolume 0.1·40 + 0.3·30 + 0.05·10 = 13.5."""
    w = wl.from_mapping({"goal": {"target": 0.8, "objectives": {"energy_j": "minimize"},
                                  "reference": {"accuracy": 0.5, "energy_j": 50}}})
    trials = [trial(n, 0, 0, 1, value=v, energy=e)
              for n, (v, e) in enumerate([(0.6, 10), (0.9, 20), (0.7, 30), (0.95, 40)])]
    trials.append(trial(4, 0, 0, 1, state="failed", value=None))
    record = objectives.front_record(w, trials, 475.0, told_source=None)
    assert [p["trial"] for p in record["front"]] == [0, 1, 3]
    assert record["hypervolume"] == pytest.approx(13.5)
    assert record["reference_from"] == {"accuracy": "workload", "energy_j": "workload"}
    assert record["pick"]["trial"] == 1 and record["pick"]["values"]["energy_j"] == 20
    assert record["trials"] == 4 and record["infeasible"] == 0 and record["told"] is None
    blind = objectives.front_record(wl.from_mapping({}), trials, 475.0)
    assert blind["objectives"] == ["accuracy", "energy_j"], "energy-blind: metric and energy"
    assert blind["reference"] == {"accuracy": 0.6, "energy_j": 40.0}, "the trials' worst"
    assert objectives.front_record(w, trials[4:], 475.0) is None
    fixed = wl.from_mapping({"goal": {"reference": {"accuracy": 0.5, "energy_j": 50}}})
    assert objectives.front_record(fixed, trials, 475.0)["hypervolume"] == pytest.approx(13.5), \
        "an energy-blind study's front, from the same reference point, compares"


def test_pareto_front_and_hypervolume():
    points = [[1.0, 5.0], [2.0, 3.0], [3.0, 4.0], [2.0, 3.0], [4.0, 1.0]]
    assert sorted(pareto_front(points, ["minimize", "minimize"])) == [0, 1, 3, 4]
    assert sorted(pareto_front(points, ["maximize", "maximize"])) == [0, 2, 4]
    # minimize both, reference (5, 6), front (1, 5), (2, 3), (4, 1): the slabs x ∈ [1, 2),
    # [2, 4), [4, 5) reach from y = 5, 3, 1 up to 6: 1·1 + 2·3 + 1·5
    assert hypervolume(points, ["minimize", "minimize"], [5.0, 6.0]) == pytest.approx(12.0)
    assert hypervolume(points, ["minimize", "minimize"], [0.0, 0.0]) == 0.0


# ----------------------------------------------------------------------------- forecast


def test_the_interval_is_a_t_prediction_interval():
    from scipy import stats

    band = forecast.interval([10.0, 12.0, 14.0])
    half = stats.t.ppf(0.95, 2) * 2.0 * math.sqrt(1 + 1 / 3)
    assert (band.value, band.low, band.high) == pytest.approx((12.0, 12.0 - half, 12.0 + half))
    assert type(band.low) is float, "plain floats: report.json writes them"
    assert forecast.interval([5.0]) == forecast.Band(5.0, 5.0, 5.0)
    assert forecast.interval([1.0, 100.0]).low == 0.0, "never below zero"


def test_a_forecast_is_matched_to_the_workload_as_resolved(tmp_path):
    w = wl.from_mapping({"seed": 3})
    made = [{"workload": wl.from_mapping({"seed": 4}).to_dict(), "method": "pilot"},
            {"workload": w.to_dict(), "method": "table"}]
    assert forecast.matching(made, w, "f.json")["method"] == "table"
    missing = forecast.matching(made[:1], w, "f.json")
    assert missing["method"] is None and "f.json holds no forecast" in missing["notes"][0]
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"forecasts": made}))
    assert forecast.read(path) == made
    path.write_text(json.dumps({"forecast": made}))
    with pytest.raises(WorkloadError) as info:
        forecast.read(path)
    assert info.value.key == "forecasts" and str(path) in str(info.value)


def test_the_pilot_runs_every_trial_to_its_end_on_a_wave_of_workers():
    w = wl.from_mapping({"training": {"epochs": 10, "stop_at_target": True},
                         "goal": {"target": 0.9},
                         "search": {"trials": 12}, "workers": {"count": 3},
                         "budget": {"energy_kwh": 1}})
    pilot = forecast.pilot_workload(w, None, 2)
    assert (pilot.search.trials, pilot.training.epochs) == (3, 2)
    assert not pilot.training.stop_at_target and pilot.budget.limits() == {}


def test_the_forecast_beside_the_outcome():
    made = {"method": "table", "source": "t.csv", "notes": ["n"],
            "figures": {"jct_s": {"value": 90.0, "low": 80.0, "high": 100.0},
                        "energy_j": {"value": 500.0, "low": 450.0, "high": 550.0},
                        "co2_g": {"value": 0.1, "low": 0.09, "high": 0.11},
                        "cost_usd": {"value": 0.0, "low": 0.0, "high": 0.0}}}
    metrics = {"jct_ms": 100_000.0, "energy_j": 600.0, "co2_g": 0.1, "oc_usd": 0.0}
    judged = report_forecast.judge(made, metrics)
    assert judged["error_pct"] == pytest.approx({"jct_s": -10.0, "energy_j": -100 / 6,
                                                  "co2_g": 0.0, "cost_usd": None})
    assert judged["within_band"] == {"jct_s": True, "energy_j": False, "co2_g": True,
                                     "cost_usd": True}
    [text, _] = report_forecast.lines({"forecast": judged})
    assert text.startswith("**Forecast** (table: t.csv; forecast (band) → outcome): JCT 90 s")
    assert "energy 500 J (450–550) → 600 J, error -16.7 %, outside the band" in text
    assert report_forecast.lines({"forecast": {"method": None, "notes": ["none made"]}}) == [
        "**Forecast**: none — none made.", ""]


# ----------------------------------------------------------------------------- report


def front_block(hv: float, given: str = "workload") -> dict:
    return {"objectives": ["accuracy", "energy_j"], "directions": ["maximize", "minimize"],
            "trials": 3, "infeasible": 1, "hypervolume": hv,
            "front": [{"trial": 0, "values": {"accuracy": 0.9, "energy_j": 20.0}},
                      {"trial": 2, "values": {"accuracy": 0.6, "energy_j": 5.0}}],
            "reference": {"accuracy": 0.5, "energy_j": 50.0},
            "reference_from": {"accuracy": given, "energy_j": given},
            "pick": {"target": 0.8, "trial": 0, "values": {
                "value": 0.9, "energy_j": 20.0, "time_s": 2.0, "co2_g": 0.003}},
            "told": {"source": "estimate:ccf-linear/worker-slot", "mean_abs_pct": 12.5,
                     "trials": 3}}


def test_the_front_paragraph_and_when_it_is_shown():
    aware = {"workload": {"goal": {"objectives": {"energy_j": "minimize"}}},
             "pareto": front_block(12.0)}
    blind = {"workload": {"goal": {}}, "pareto": front_block(10.0, "trials")}
    assert pareto.shown(aware) and not pareto.shown(blind)
    assert pareto.lines(blind) == []
    text = pareto.lines(aware)[0]
    assert text.startswith("**Pareto front**: 2 of 3 feasible complete trials over accuracy "
                           "(maximize), energy_j (minimize); hypervolume 12 from the reference "
                           "point accuracy 0.5, energy_j 50;")
    assert "1 trials broke a constraint" in text
    assert "for accuracy meeting 0.8 a user would pick trial #0: accuracy 0.9, 20 J" in text
    assert "12.5 % from the energy attributed after the run" in text


def test_an_experiments_fronts_side_by_side():
    aware = {"test_id": "t::a", "workload": {"goal": {"objectives": {"energy_j": "minimize"}}},
             "pareto": front_block(12.0)}
    blind = {"test_id": "t::b", "workload": {"goal": {}}, "pareto": front_block(10.0, "trials")}
    assert pareto.experiment_fronts("x", [blind], {}) is None, "nobody weighed energy"
    fronts = pareto.experiment_fronts("x", [aware, blind], {"t::a": "aware"})
    assert fronts["plot"] == "experiment-x-fronts.png"
    a, b = fronts["scenarios"]
    assert (a["label"], a["points"], a["comparable"]) == ("aware", [[0.6, 5.0], [0.9, 20.0]],
                                                          True)
    assert (b["label"], b["comparable"]) == ("t::b", False)


# ----------------------------------------------------------------------------- keys, Optuna


@pytest.mark.parametrize(("section", "key"), [
    ({"goal": {"objectives": {"energy_kj": "minimize"}}}, "goal.objectives.energy_kj"),
    ({"goal": {"objectives": {"energy_j": "less"}}}, "goal.objectives.energy_j"),
    ({"goal": {"objectives": {"accuracy": "maximize"}}}, "goal.objectives.accuracy"),
    ({"goal": {"constraints": {"energy_j": -1}}}, "goal.constraints.energy_j"),
    ({"goal": {"constraints": {"watts": 5}}}, "goal.constraints.watts"),
    ({"goal": {"reference": {"time_s": 5}}}, "goal.reference.time_s"),
    ({"budget": {"co2_g": 0}}, "budget.co2_g"),
    ({"budget": {"cost_usd": "1$"}}, "budget.cost_usd"),
    ({"budget": {"running": "kill"}}, "budget.running"),
])
def test_bad_goal_and_budget_keys_name_the_file_and_key(section, key):
    with pytest.raises(WorkloadError) as info:
        wl.from_mapping(section, "w.yaml")
    assert info.value.key == key and "w.yaml" in str(info.value)


@pytest.mark.parametrize(("overrides", "key"), [
    ({"search.sampler": "cmaes", "goal.objectives": {"energy_j": "minimize"}},
     "search.sampler"),
    ({"search.pruner": "median", "goal.objectives": {"energy_j": "minimize"}},
     "search.pruner"),
    ({"search.sampler": "random", "goal.constraints": {"energy_j": 5}}, "search.sampler"),
])
def test_what_a_sampler_cannot_weigh_is_a_usage_error(overrides, key):
    w = wl.resolve(wl.from_mapping({"search": {"sampler": "tpe"}}, "w.yaml"), overrides)
    registry = wiring.registry()
    registry.check(w)
    with pytest.raises(WorkloadError) as info:
        search.check(w, registry)
    assert info.value.key == key


def test_constraints_reach_optunas_sampler():
    """The registry's TPE gets ``objectives.constraints`` as its constraints_func; told as
    a SUT tells it (the values in the trial's user attribute), Optuna records them and
    knows the broken trial is infeasible."""
    w = wl.from_mapping({"search": {"sampler": "tpe", "space": {"x": {"low": 0, "high": 1}}},
                         "goal": {"constraints": {"energy_j": 50}}})
    sampler = wiring.registry().get("samplers", "tpe")(w, 1)
    assert sampler.inner._constraints_func is objectives.constraints
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for energy in (40.0, 70.0):
        t = study.ask()
        t.suggest_float("x", 0, 1)
        cost = objectives.TrialCost(1.0, energy, 0.0, 0.0)
        t.set_user_attr(objectives.CONSTRAINTS_ATTR, objectives.constraint_values(w.goal, cost))
        study.tell(t, 0.5)
    done = study.get_trials()
    assert [tr.system_attrs.get("constraints") for tr in done] == [(-10.0,), (20.0,)]


def test_the_gate_tracks_hypervolume_where_the_reference_point_is_fixed():
    """A fall of the front's hypervolume past ``hv:5%`` (no sign: it is worse when it
    falls) is a regression when repeats show it (one sample each is undecided, as for
    every metric); a front measured from the trials' own worst values has no comparable
    hypervolume."""
    machine = {"id": "m", "cpu_model": "C", "cores": 2, "memory_gb": 8.0, "accelerators": [],
               "meter_source": "estimate:ccf-linear"}

    def run(*hvs: float, given: str = "workload") -> dict:
        scenarios = [{"test_id": "t", "scenario_id": "t", "repeat": i + 1,
                      "status": "complete", "outcome": "passed", "best_value": 0.9,
                      "test_score": 0.9, "workload": {"goal": {"direction": "maximize"}},
                      "metrics": {k: 1.0 for k in TABLE2_KEYS},
                      "pareto": front_block(hv, given)} for i, hv in enumerate(hvs)]
        return {"schema_version": 1, "run_id": "r", "machine": machine,
                "scenarios": scenarios, "concurrency": {"max_parallel": 1}}

    def hv_row(old: dict, new: dict):
        [row] = [r for r in compare(old, new, gate).rows if r.metric == "hypervolume"]
        return row

    gate = parse_fail_on("hv:5%")
    row = hv_row(run(10.0, 10.1, 9.9, 10.05), run(9.0, 9.1, 8.9, 9.05))
    assert (row.old, row.new, row.verdict) == (10.025, 9.025, "regression")
    assert hv_row(run(10.0), run(9.0)).verdict == "undecided"
    assert hv_row(run(10.0, 10.1, 9.9, 10.05), run(11.0, 11.1, 10.9, 11.05)).verdict == \
        "improvement"
    with pytest.raises(CompareError, match="nothing checked"):
        compare(run(10.0, given="trials"), run(9.0, given="trials"), gate)


def test_a_table_forecast_says_what_differs_from_the_recording():
    """The baseline table answers S-Energy's real workload, recorded on bigger workers: the
    forecast's notes say so, after why the other tables did not answer."""
    from pathlib import Path

    root = Path(__file__).parents[1]
    w = wl.load(root / "workloads" / "s-energy.yaml")
    tables = forecast.candidates(w, [root / "benchmarks" / "tables"])
    found, notes = forecast.find_table(w, tables)
    assert found is not None and found.name == "baseline.csv"
    assert notes[-1] == ("times and energies are replayed as recorded on workers of 2 vCPU × "
                         "2048 MB; this workload asks 1 vCPU × 1536 MB")

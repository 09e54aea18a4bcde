"""Noise: the robust spread, the floor, the paired signed-rank test, the gate's rule with a
floor from the history, and paired reports decided (pure functions; a real SQLite store)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import median_abs_deviation, wilcoxon
from sqlalchemy import create_engine

from pytest_basht.metrics import TABLE2_KEYS
from pytest_basht.report import json as report_json
from pytest_basht.report import noise, pairs
from pytest_basht.report.gate import (
    CompareError,
    Gate,
    compare,
    decide,
    gate_lines,
    parse_fail_on,
)
from pytest_basht.report.history import (
    Base,
    History,
    Resolved,
    RunRow,
    ScenarioRow,
    SessionHistory,
)

MACHINE = {"id": "m1", "cpu_model": "CPU A", "cores": 2, "memory_gb": 24.0,
           "accelerators": [], "meter_source": "estimate:ccf-linear"}
WORKLOAD = {"goal": {"direction": "maximize"}, "training": {"epochs": 1}}


def record(test_id: str = "t::a", *, workload: dict | None = None,
           conditions: dict | None = None, phases: dict | None = None, **values: float) -> dict:
    metrics = {k: 1.0 for k in TABLE2_KEYS}
    metrics.update(values)
    metrics["phases"] = phases or {}
    out = {"test_id": test_id, "scenario_id": test_id, "status": "complete",
           "outcome": "passed", "best_value": 0.9, "test_score": 0.9,
           "workload": workload or WORKLOAD, "metrics": metrics}
    if conditions is not None:
        out["conditions"] = conditions
    return out


def report(*records: dict, run_id: str = "r") -> dict:
    return {"schema_version": report_json.SCHEMA_VERSION, "run_id": run_id,
            "machine": MACHINE, "scenarios": list(records)}


# ----------------------------------------------------------------------------- statistics


def test_spread_is_the_normal_scaled_mad_of_the_logarithms():
    values = [1.0, 1.1, 0.9, 1.05, 0.95, 3.0]  # one run under a burst of load
    expected = median_abs_deviation(np.log(values), scale="normal")
    assert noise.spread(values) == pytest.approx(expected)
    assert noise.spread(values) < np.std(np.log(values)) / 3  # the burst hardly moves it
    assert noise.spread([1.0]) is None and noise.spread([1.0, 0.0]) is None


def test_the_floor_of_medians_shrinks_with_samples_and_pairs():
    assert noise.floor(0.1, 1, 1) == pytest.approx(noise.NOISE_Z * 0.1 * math.sqrt(2))
    assert noise.floor(0.1, 5, 5) == pytest.approx(noise.NOISE_Z * 0.1 * math.sqrt(0.4))
    assert noise.paired_floor(0.1, 4) == pytest.approx(noise.NOISE_Z * 0.1 / 2)
    assert noise.as_pct(math.log(1.1)) == pytest.approx(10.0)


def test_the_paired_test_is_wilcoxon_on_the_log_ratios():
    old = [10.0, 11.0, 9.5, 10.2, 10.8, 9.9, 10.1, 10.4]
    new = [11.2, 12.0, 10.4, 11.1, 11.7, 11.0, 11.3, 10.9]
    result = noise.paired_test(old, new)
    logs = [math.log(b / a) for a, b in zip(old, new, strict=True)]
    assert result.p_higher == pytest.approx(wilcoxon(logs, alternative="greater").pvalue)
    assert result.p_higher == pytest.approx(1 / 256)  # every pair higher: exact smallest p
    assert result.p_lower == pytest.approx(1.0)
    assert result.ratio == pytest.approx(math.exp(float(np.median(logs))))
    few = noise.paired_test(old[:4], new[:4])
    assert few.p_higher is None and few.pairs == 4  # 1/2^4 = 0.0625 cannot reach 0.05
    same = noise.paired_test([1.0] * 5, [1.0] * 5)
    assert (same.p_higher, same.p_lower, same.ratio) == (1.0, 1.0, 1.0)


def test_pairs_needed_for_a_floor_as_narrow_as_the_threshold():
    # 2 × 0.1 / √n ≤ ln 1.05 → n ≥ 16.4
    assert noise.pairs_needed(0.1, math.log(1.05), 8) == 17
    assert noise.pairs_needed(None, None, 8) == 16
    assert noise.pairs_needed(0.001, math.log(1.05), 3) == noise.MIN_PAIRS


def test_workload_key_and_changes():
    a = {"training": {"epochs": 10, "batch_size": 64}, "seed": 1}
    assert noise.workload_key(a) == noise.workload_key({"seed": 1, "training": {
        "batch_size": 64, "epochs": 10}})
    b = {"training": {"epochs": 30, "batch_size": 64}, "seed": 1}
    assert noise.workload_key(a) != noise.workload_key(b)
    assert noise.workload_changes(a, b) == ["training.epochs: 10 → 30"]


@pytest.mark.parametrize("args,verdict", [
    ({"worse": True, "change": 0.3, "floor": 0.4, "significant": None}, "within noise"),
    ({"worse": True, "change": 0.3, "floor": 0.1, "significant": None}, "regression"),
    ({"worse": True, "change": 0.3, "floor": None, "significant": None}, "undecided"),
    ({"worse": True, "change": 0.3, "floor": 0.1, "significant": True}, "regression"),
    ({"worse": True, "change": 0.3, "floor": 0.1, "significant": False}, "undecided"),
    ({"better": True, "change": -0.3, "floor": 0.1, "significant": True}, "improvement"),
    ({"better": True, "change": -0.3, "floor": 0.4, "significant": True}, "within noise"),
    ({"change": 0.01, "floor": None, "significant": None}, "ok"),
])
def test_the_rule(args, verdict):
    assert decide(**{"worse": False, "better": False, **args}) == verdict


# ----------------------------------------------------------------------------- the gate


def test_a_floor_from_the_history_decides_single_samples():
    gate = parse_fail_on("energy_kwh:+10%")
    tight = {("t::a", "energy_kwh"): noise.Spread(0.02, 8, "history")}
    result = compare(report(record(energy_kwh=1.0)), report(record(energy_kwh=1.3)), gate,
                     spreads=tight)
    [row] = result.regressions
    assert row.noise == "history, 8 samples"
    assert row.noise_pct == pytest.approx(noise.as_pct(noise.floor(0.02, 1, 1)))
    assert row.test.startswith("noise floor only (1 vs 1 samples")
    wide = {("t::a", "energy_kwh"): noise.Spread(0.2, 8, "history")}  # floor ±76%
    result = compare(report(record(energy_kwh=1.0)), report(record(energy_kwh=1.3)), gate,
                     spreads=wide)
    assert result.verdict == "pass" and result.rows[0].verdict == "within noise"
    lines = gate_lines(report_json.clean(result.to_dict()))
    assert lines[0].endswith("; 1 past it within the noise")
    assert any(line.startswith("within noise: t::a energy_kwh: old 1 kWh → new 1.3 kWh "
                               "(+30.0%, ×1.3; threshold +10%; noise ±76.1% (history, 8 "
                               "samples)") for line in lines)
    assert any("is wider than its threshold (+10%): this gate cannot see a change of that "
               "size here; basht paired can" in line for line in lines)


def test_too_few_history_samples_leave_it_undecided_and_say_how_many_there_are():
    few = {("t::a", "energy_kwh"): noise.Spread(0.02, 3, "history")}
    result = compare(report(record(energy_kwh=1.0)), report(record(energy_kwh=1.3)),
                     parse_fail_on("energy_kwh:+10%"), spreads=few)
    [row] = result.undecided
    assert row.noise_pct is None
    assert "5 saved runs of this scenario on this machine for a noise floor (3 so far)" in \
        row.advice


def test_a_changed_workload_and_a_different_load_are_called_out():
    busy = {"others_cpu_pct": 48.0, "load_1m": 2.9}
    quiet = {"others_cpu_pct": 3.0, "load_1m": 0.4}
    longer = {**WORKLOAD, "training": {"epochs": 3}}
    result = compare(report(record(conditions=quiet)),
                     report(record(workload=longer, conditions=busy)))
    assert ("the workload of t::a changed between baseline and candidate (training.epochs: "
            "1 → 3): the comparison measures that change too") in result.notes
    assert ("t::a ran under different load: baseline others' CPU 3%, load 0.40, this run "
            "others' CPU 48%, load 2.90 (of the machine's CPU, outside the run): a difference "
            "may be the load's") in result.notes


def test_per_phase_keys_are_gateable():
    [t] = parse_fail_on("trials.energy_kwh:+5%")
    assert t.key == "trials.energy_kwh" and t.shown == "+5%"
    [a] = parse_fail_on("deploy.time_ms:+100")
    assert a.shown == "+100 ms"
    result = compare(report(record(phases={"trials.energy_kwh": 1.0})),
                     report(record(phases={"trials.energy_kwh": 1.01})), [t])
    assert result.verdict == "pass" and result.rows[0].metric == "trials.energy_kwh"


def test_the_gate_takes_its_floor_from_the_saved_samples(tmp_path):
    history = SessionHistory(str(tmp_path / "h.sqlite"), tmp_path)
    store = history.store()
    assert store is not None
    for i, energy in enumerate([1.0, 1.02, 0.98, 1.01, 0.99, 1.03]):
        store.save(report(record(energy_kwh=energy, conditions={"others_cpu_pct": 5.0 + i}),
                          run_id=f"run-{i}"))
    other = {**WORKLOAD, "training": {"epochs": 9}}  # another workload: not a sample here
    store.save(report(record(workload=other, energy_kwh=50.0), run_id="other"))
    [entry, *_] = store.samples("t::a", "m1", noise.workload_key(WORKLOAD))
    assert entry.run_id == "run-5" and entry.conditions == {"others_cpu_pct": 10.0}
    assert entry.values["energy_kwh"] == 1.03
    gate = Gate("base", tuple(parse_fail_on("energy_kwh:+10%")),
                baseline=Resolved(report(record(energy_kwh=1.0)), "base"))
    gate.history = history
    judged = gate.judge(report(record(energy_kwh=1.3)))
    assert judged is not None and judged["verdict"] == "fail"
    [row] = [r for r in judged["rows"] if r["metric"] == "energy_kwh"]
    assert (row["verdict"], row["noise"]) == ("regression", "history, 6 samples")
    history.close()


# ----------------------------------------------------------------------------- paired


def paired(ratios: list[float], key: str = "trials.energy_kwh") -> list[tuple[dict, dict]]:
    out = []
    for i, ratio in enumerate(ratios):
        base = 1.0 + 0.3 * (i % 3)  # the load moves both sides of a pair
        out.append((report(record(phases={key: base}), run_id=f"a{i}"),
                    report(record(phases={key: base * ratio}), run_id=f"b{i}")))
    return out


def test_pairs_with_a_consistent_rise_are_a_regression():
    result = pairs.compare_pairs(paired([1.11, 1.09, 1.12, 1.08, 1.10, 1.13, 1.07, 1.10]),
                                 parse_fail_on("trials.energy_kwh:+5%"))
    [row] = result.regressions
    assert row.p == pytest.approx(1 / 256) and row.n_old == 8
    assert row.ratio == pytest.approx(1.10) and row.noise == "pairs, 8"
    assert row.test == "Wilcoxon signed-rank (8 pairs), p < 0.05"


def test_unchanged_pairs_pass_and_too_few_are_undecided():
    same = pairs.compare_pairs(paired([1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0]),
                               parse_fail_on("trials.energy_kwh:+5%"))
    assert same.verdict == "pass"
    few = pairs.compare_pairs(paired([1.2, 1.3, 1.25]), parse_fail_on("trials.energy_kwh:+5%"))
    [row] = few.undecided
    assert row.test.startswith("Wilcoxon signed-rank needs ≥ 5 pairs (has 3")
    assert row.advice == "to decide: --pairs 6"


def test_a_paired_baseline_without_the_key_is_an_error_not_a_pass():
    runs = [(report(record()), report(record(phases={"trials.cpu_s": 1.0})))] * 5
    with pytest.raises(CompareError, match=r"nothing checked: the baseline has no value of "
                                           r"trials\.cpu_s"):
        pairs.compare_pairs(runs, parse_fail_on("trials.cpu_s:+5%"))


def test_a_store_made_before_samples_gains_their_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)  # the tables an older pytest-basht made
    Base.metadata.create_all(engine, tables=[RunRow.__table__, ScenarioRow.__table__])
    engine.dispose()
    with History(url) as store:
        store.save(report(record(energy_kwh=2.0), run_id="x"))
        [entry] = store.samples()
        assert (entry.run_id, entry.values["energy_kwh"]) == ("x", 2.0)

"""The gate's pure functions: thresholds, directions, significance, verdicts, refusals."""

from __future__ import annotations

import json

import pytest
from scipy.stats import mannwhitneyu

from pytest_basht.errors import OptionError
from pytest_basht.metrics import TABLE2_KEYS
from pytest_basht.report import json as report_json
from pytest_basht.report.gate import (
    EXIT_TESTS_FAILED,
    CompareError,
    Gate,
    Threshold,
    ThresholdError,
    alarms,
    compare,
    exit_status,
    gate_lines,
    parse_fail_on,
    regression_line,
    significance,
    table,
    worse_when_higher,
)
from pytest_basht.report.history import Resolved

MACHINE = {"id": "m1", "cpu_model": "CPU A", "cores": 2, "memory_gb": 24.0,
           "accelerators": [], "meter_source": "estimate:ccf-linear"}


def scenario(test_id: str, *, repeat: int = 1, direction: str = "maximize",
             status: str = "complete", best: float | None = 0.9, score: float | None = 0.9,
             **metrics: float | None) -> dict:
    base = {k: 1.0 for k in TABLE2_KEYS}
    base.update(metrics)
    return {"test_id": f"{test_id}[repeat={repeat}]" if repeat > 1 else test_id,
            "scenario_id": test_id, "repeat": repeat, "status": status, "outcome": "passed",
            "best_value": best, "test_score": score,
            "workload": {"goal": {"direction": direction}}, "metrics": base}


def report(*scenarios: dict, machine: dict | None = None, parallel: int = 1) -> dict:
    return {"schema_version": 1, "run_id": "r", "machine": machine or MACHINE,
            "scenarios": list(scenarios), "concurrency": {"max_parallel": parallel}}


def samples(test_id: str, key: str, values: list[float], **kw: object) -> list[dict]:
    return [scenario(test_id, repeat=i + 1, **{key: v}, **kw) for i, v in enumerate(values)]


# ----------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("text,expected", [
    ("energy_kwh:+10%", [Threshold("energy_kwh", 0.10, True)]),
    ("energy_kwh:10%", [Threshold("energy_kwh", 0.10, True)]),
    ("energy_kwh:+0.001", [Threshold("energy_kwh", 0.001, False)]),
    ("energy:+5%, jct:+20% ,wte_kwh:+1e-4", [Threshold("energy_kwh", 0.05, True),
                                             Threshold("jct_ms", 0.20, True),
                                             Threshold("wte_kwh", 1e-4, False)]),
    ("test_score:2%", [Threshold("test_score", 0.02, True)]),
])
def test_fail_on_parses_relative_and_absolute_thresholds(text, expected):
    assert parse_fail_on(text) == expected


def test_every_table2_key_is_accepted_and_rises_are_worse():
    for key in TABLE2_KEYS:
        [t] = parse_fail_on(f"{key}:+1%")
        assert t.key == key and t.text == f"{key}:+1%"
        assert worse_when_higher(key)


@pytest.mark.parametrize("text,needle", [
    ("energx_kwh:+10%", "unknown 'energx_kwh' (did you mean 'energy_kwh'?)"),
    ("energy_kwh:-10%", "a rise for energy_kwh (energy_kwh:+10%): energy_kwh gets worse when "
                        "it rises"),
    ("test_score:-2%", "test_score without a sign"),
    ("energy_kwh", "'energy_kwh' has no threshold"),
    ("energy_kwh:+ten%", "a threshold like +10% or +0.001 for energy_kwh, got '+ten%'"),
    ("energy_kwh:+nan", "got '+nan'"),
    (" , ", "one or more KEY:THRESHOLD items"),
])
def test_malformed_thresholds_say_what_was_expected(text, needle):
    with pytest.raises(ThresholdError, match=None) as info:
        parse_fail_on(text)
    assert needle in str(info.value)


def test_threshold_exceeded_relative_absolute_and_from_zero():
    rel, ab = Threshold("energy_kwh", 0.10, True), Threshold("energy_kwh", 0.5, False)
    assert rel.exceeded(10, 11.01, True) and not rel.exceeded(10, 11.0, True)
    assert not rel.exceeded(10, 5, True)  # better is never past a "worse" threshold
    assert ab.exceeded(10, 10.6, True) and not ab.exceeded(10, 10.4, True)
    assert rel.exceeded(0, 1e-9, True) and not rel.exceeded(0, 0, True)
    assert rel.exceeded(0.9, 0.8, False)  # lower is worse (a maximized test score)


def test_goal_metrics_are_worse_against_the_goal_direction():
    assert not worse_when_higher("test_score", "maximize")
    assert worse_when_higher("best_value", "minimize")
    gate = parse_fail_on("test_score:2%")
    dropped = compare(report(scenario("t::a", score=0.90)), report(scenario("t::a", score=0.85)),
                      gate)
    assert dropped.verdict == "fail" and dropped.undecided[0].metric == "test_score"
    rose = compare(report(scenario("t::a", score=0.90)), report(scenario("t::a", score=0.95)),
                   gate)
    assert rose.verdict == "pass"
    loss = compare(report(scenario("t::a", direction="minimize", score=0.10)),
                   report(scenario("t::a", direction="minimize", score=0.12)), gate)
    assert loss.verdict == "fail"


# ----------------------------------------------------------------------------- significance


def test_significance_is_a_one_sided_mann_whitney_u():
    old, new = [1.0, 1.1, 0.9, 1.05, 0.95], [2.0, 2.1, 1.9, 2.05, 1.95]
    sig = significance(old, new, True)
    expected = mannwhitneyu(new, old, alternative="greater").pvalue
    assert sig.p == pytest.approx(expected) and sig.p == pytest.approx(1 / 252)
    assert sig.significant is True and sig.test.startswith("Mann–Whitney U (5 vs 5), p < 0.05")
    assert significance(new, old, True).significant is False  # it got better, not worse
    assert significance(new, old, False).significant is True  # lower is worse


def test_too_few_samples_leave_the_threshold_alone():
    sig = significance([1.0, 1.1], [2.0, 2.1, 2.2], True)
    assert sig.significant is None and sig.p is None
    assert sig.test == "threshold only (2 vs 3 samples; a significance test needs ≥ 3 on both " \
                       "sides)"


def test_three_and_three_cannot_reach_p_below_alpha_so_separation_decides():
    separated = significance([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], True)
    assert separated.significant is True and separated.p == pytest.approx(0.05)
    assert "cannot reach p < 0.05" in separated.test
    mixed = significance([1.0, 1.1, 2.5], [2.0, 2.1, 1.9], True)
    assert mixed.significant is False


def test_a_change_past_the_threshold_but_within_the_noise_is_marked_not_failed():
    old = samples("t::a", "energy_kwh", [1.0, 1.6, 0.7, 1.3, 0.9])
    new = samples("t::a", "energy_kwh", [1.2, 0.8, 1.5, 1.25, 1.1])  # median +20%
    result = compare(report(*old), report(*new), parse_fail_on("energy_kwh:+10%"))
    [row] = [r for r in result.rows if r.metric == "energy_kwh"]
    assert row.verdict == "within noise" and row.p is not None and row.p >= 0.05
    assert row.noise == "these samples" and row.noise_pct > 20
    assert result.verdict == "pass"
    assert any(line.startswith("within noise: t::a energy_kwh") for line in
               gate_lines(report_json.clean(result.to_dict())))


def test_a_significant_change_past_the_threshold_fails():
    old = samples("t::a", "energy_kwh", [1.0, 1.02, 0.98, 1.01, 0.99])
    new = samples("t::a", "energy_kwh", [1.3, 1.32, 1.28, 1.31, 1.29])
    result = compare(report(*old), report(*new), parse_fail_on("energy_kwh:+10%"))
    [row] = result.regressions
    assert (row.n_old, row.n_new, row.old, row.new) == (5, 5, 1.0, 1.3)
    assert row.p == pytest.approx(1 / 252)
    assert "fewer than 3 samples" not in " ".join(result.notes)


# ----------------------------------------------------------------------------- verdicts


def test_single_samples_past_the_threshold_are_undecided_and_say_what_would_decide():
    gate = parse_fail_on("energy_kwh:+10%,jct_ms:+20%,wte_kwh:+0.5")
    old = report(scenario("t::a", energy_kwh=2.0, jct_ms=100.0, wte_kwh=0.0),
                 scenario("t::b", energy_kwh=2.0))
    new = report(scenario("t::a", energy_kwh=4.0, jct_ms=110.0, wte_kwh=0.4),
                 scenario("t::b", energy_kwh=1.0))
    result = compare(old, new, gate, baseline_label="baseline main")
    assert result.verdict == "fail" and not result.regressions
    [und] = result.undecided
    assert (und.scenario, und.metric, und.ratio, und.change_pct) == ("t::a", "energy_kwh", 2.0,
                                                                     100.0)
    assert regression_line(und) == (
        "t::a energy_kwh: old 2 kWh → new 4 kWh (+100.0%, ×2; threshold +10%; noise floor "
        "unknown; threshold only (1 vs 1 samples; a significance test needs ≥ 3 on both "
        "sides)) — to decide: --basht-repeat 5 on both runs, 5 saved runs of this scenario "
        "on this machine for a noise floor (0 so far), or basht paired --pairs 6 (docs/ci.md)")
    verdicts = {(r.scenario, r.metric): r.verdict for r in result.rows}
    assert verdicts[("t::a", "jct_ms")] == "ok" and verdicts[("t::a", "wte_kwh")] == "ok"
    assert verdicts[("t::b", "energy_kwh")] == "improvement"
    lines = gate_lines(json.loads(json.dumps(report_json.clean(result.to_dict()))))
    assert lines[0] == ("basht gate: FAIL — 1 undecided (not told from noise) past "
                        "energy_kwh:+10%,jct_ms:+20%,wte_kwh:+0.5 against baseline main")
    assert lines[1] == "UNDECIDED " + regression_line(und)


def test_several_thresholds_on_one_key_must_all_be_passed():
    gate = parse_fail_on("energy_kwh:+10%,energy_kwh:+0.5")
    small = compare(report(scenario("t::a", energy_kwh=1.0)),
                    report(scenario("t::a", energy_kwh=1.3)), gate)
    assert small.verdict == "pass"  # +30% but only +0.3 kWh
    big = compare(report(scenario("t::a", energy_kwh=1.0)),
                  report(scenario("t::a", energy_kwh=1.6)), gate)
    assert big.verdict == "fail" and big.undecided[0].threshold == "+10% and +0.5 kWh"


def test_a_metric_that_lost_its_value_is_a_regression():
    result = compare(report(scenario("t::a", tta_ms=100.0)),
                     report(scenario("t::a", tta_ms=None)), parse_fail_on("tta_ms:+10%"))
    [reg] = result.regressions
    assert reg.verdict == "missing" and "no value in this run" in regression_line(reg)


def test_unchanged_runs_pass_and_show_default_columns():
    same = report(scenario("t::a", energy_kwh=1.0, jct_ms=5.0))
    result = compare(same, same, parse_fail_on("energy_kwh:+10%"))
    assert result.verdict == "pass"
    assert [r.metric for r in result.rows] == ["energy_kwh", "jct_ms", "wte_kwh"]
    headers, rows = table(report_json.clean(result.to_dict()))
    assert headers[:6] == ["scenario", "metric", "old", "new", "ratio", "change"]
    assert rows[0][:6] == ["a", "energy_kwh", "1", "1", "1.000", "+0.0%"]


def test_without_thresholds_it_compares_but_does_not_gate():
    result = compare(report(scenario("t::a", energy_kwh=1.0)),
                     report(scenario("t::a", energy_kwh=9.0)))
    assert result.verdict == "compared" and not result.regressions
    assert gate_lines(report_json.clean(result.to_dict()))[0].startswith("basht compare: 1 ")


def test_scenarios_present_on_one_side_only_are_named():
    result = compare(report(scenario("t::a"), scenario("t::gone")),
                     report(scenario("t::a"), scenario("t::new")), parse_fail_on("energy:+1%"))
    assert result.only_baseline == ["t::gone"] and result.only_current == ["t::new"]
    lines = gate_lines(report_json.clean(result.to_dict()))
    assert "note: in the baseline, not in this run: t::gone" in lines


def test_nothing_in_common_is_an_error_not_a_pass():
    with pytest.raises(CompareError, match="nothing to compare: no scenario of this run is in "
                                           r"the baseline \(baseline scenarios: t::x\)"):
        compare(report(scenario("t::x")), report(scenario("t::y")), parse_fail_on("energy:+1%"))


def test_records_that_did_not_complete_are_not_samples():
    old = report(scenario("t::a", energy_kwh=1.0),
                 scenario("t::a", repeat=2, status="error", energy_kwh=50.0))
    result = compare(old, report(scenario("t::a", energy_kwh=1.0)), parse_fail_on("energy:+1%"))
    assert result.verdict == "pass" and result.rows[0].n_old == 1
    assert "baseline t::a[repeat=2]: status error — not a sample" in result.notes


def test_different_machines_are_refused_unless_asked():
    other = {**MACHINE, "id": "m2", "cores": 4, "meter_source": "rapl"}
    with pytest.raises(CompareError) as info:
        compare(report(scenario("t::a"), machine=other), report(scenario("t::a")),
                parse_fail_on("energy:+10%"), baseline_label="baseline main")
    message = str(info.value)
    assert message.startswith("refusing to compare with baseline main: it was measured on "
                              "another machine (fingerprint m2, this run m1; cores: 4 → 2; "
                              "meter_source: 'rapl' → 'estimate:ccf-linear')")
    assert message.endswith("pass --basht-compare-any-machine to compare anyway")
    result = compare(report(scenario("t::a"), machine=other), report(scenario("t::a")),
                     parse_fail_on("energy:+10%"), any_machine=True)
    assert result.verdict == "pass"
    assert result.notes[0].startswith("compared across machines (--basht-compare-any-machine)")


def test_runs_with_different_concurrency_are_flagged():
    result = compare(report(scenario("t::a")), report(scenario("t::a"), parallel=2))
    assert any("the baseline ran up to 1 scenario(s) at once, this run up to 2" in n
               for n in result.notes)


@pytest.mark.parametrize("broken,needle", [
    ({"schema_version": 1}, "no scenarios list"),
    ({"schema_version": 1, "scenarios": []}, "no machine"),
    ({"schema_version": 1, "scenarios": [{"test_id": "a"}], "machine": {}},
     "scenario #0 has no test_id or metrics"),
])
def test_a_structurally_broken_report_is_named_corrupt(broken, needle):
    with pytest.raises(CompareError, match=needle):
        compare(broken, report(scenario("t::a")), baseline_label="old.json")


# ----------------------------------------------------------------------------- a run's gate


def test_a_gate_needs_a_baseline_for_its_thresholds():
    with pytest.raises(OptionError, match="--basht-fail-on: expected --basht-compare REF"):
        Gate(None, tuple(parse_fail_on("energy:+10%"))).check()
    Gate("main", tuple(parse_fail_on("energy:+10%"))).check()
    Gate().check()
    assert Gate().judge(report(scenario("t::a"))) is None, "no baseline: nothing judged"


def test_the_gate_judges_the_report_and_says_how_the_run_ends():
    gate = Gate("base.json", tuple(parse_fail_on("energy_kwh:+10%")),
                baseline=Resolved(report(scenario("t::a", energy_kwh=1.0)), "base.json"))
    ok = report(scenario("t::a", energy_kwh=1.05))
    assert gate.judge(ok)["verdict"] == "pass" and ok["comparison"]["verdict"] == "pass"
    assert exit_status(ok["comparison"]) == 0
    assert alarms(ok["comparison"])[0] == ("basht gate: PASS — 1 scenario(s) within "
                                           "energy_kwh:+10% of baseline base.json", False)
    worse = report(scenario("t::a", energy_kwh=2.0))
    judged = gate.judge(worse)
    assert judged is not None and exit_status(judged) == EXIT_TESTS_FAILED
    lines = alarms(judged)
    assert lines[0][0].startswith("basht gate: FAIL") and lines[1][0].startswith("UNDECIDED")
    assert [red for _, red in lines] == [True, True] + [False] * (len(lines) - 2)  # notes
    broken = report(scenario("t::other"))
    judged = gate.judge(broken)
    assert judged is not None and judged["verdict"] == "error"
    assert judged["baseline"] == {"label": "baseline base.json"}
    assert exit_status(judged) == EXIT_TESTS_FAILED and alarms(judged)[0][1]


def test_a_waste_category_can_be_gated():
    [threshold] = parse_fail_on("waste.failed_kwh:+0.5")
    assert threshold == Threshold("waste.failed_kwh", 0.5, False)
    assert threshold.shown == "+0.5 kWh"

    def with_waste(failed_kwh: float) -> dict:
        sc = scenario("t::a")
        sc["metrics"]["waste"] = {"failed": {"trials": 2, "time_ms": 10.0,
                                             "energy_kwh": failed_kwh, "cost_usd": 0.0}}
        return sc

    result = compare(report(with_waste(1.0)), report(with_waste(2.0)),
                     parse_fail_on("waste.failed_kwh:+0.5"))
    assert result.verdict == "fail"
    assert [r.metric for r in result.undecided] == ["waste.failed_kwh"]
    ok = compare(report(with_waste(1.0)), report(with_waste(1.2)),
                 parse_fail_on("waste.failed_trials:+1"))
    assert ok.verdict == "pass"
    with pytest.raises(ThresholdError, match=r"waste\.CATEGORY_kwh"):
        parse_fail_on("waste.falied_kwh:+1")

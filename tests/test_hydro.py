"""Hydro end to end: fusion and scaling switched on in YAML, through pytest and the report."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest
from fake_trainable import CONFTEST, workload

from pytest_basht import workload as wl
from pytest_basht.errors import WorkloadError
from pytest_basht.hydro import report as hydro_report
from pytest_basht.report import json as report_json

SCENARIO = """
def test_scenario(trial_runner):
    run = trial_runner.run()
    assert run.trials
"""

PRUNER = textwrap.dedent("""
    import optuna

    def threshold(workload):
        return optuna.pruners.ThresholdPruner(lower=0.1)

    def pytest_basht_register_pruners():
        return {"threshold": threshold}
    """)

FUSED = textwrap.dedent("""\
    name: fused
    dataset: {samples: 500}
    training: {epochs: 2, batch_size: 32}
    search:
      fusion: 4
      pruner: threshold
      space: {layer_size: [16], learning_rate: [0.0, 0.01, 0.003, 0.02, 0.005, 0.001]}
    goal: {target: 0.3}
    workers: {count: 2, cpu: 1, memory_mb: 3000}
    """)

SCALED = textwrap.dedent("""\
    name: scaled
    dataset: {samples: 500}
    training: {epochs: 2, batch_size: 32}
    search:
      scaling: 2
      retrain: 3
      fusion: 2
      space: {layer_size: [32], learning_rate: [0.01, 0.003, 0.001, 0.02]}
    goal: {target: 0.3}
    workers: {count: 2, cpu: 1, memory_mb: 3000}
    """)


def only_report(path: Path) -> tuple[dict, str]:
    runs = [p for p in (path / "reports").iterdir() if p.name != "latest"]
    assert len(runs) == 1, runs
    report = report_json.load(runs[0])
    jsonschema.validate(report, report_json.schema())
    return report, (runs[0] / "report.md").read_text()


@pytest.mark.parametrize("text,key,expected", [
    ("search: {fusion: 0}", "search.fusion", "an integer from 1 to 256"),
    ("search: {fusion: 2.5}", "search.fusion", "an integer"),
    ("search: {fusion: 1000}", "search.fusion", "an integer from 1 to 256"),
    ("search: {scaling: 0}", "search.scaling", "an integer from 1 to 1024"),
    ("search: {scaling: true}", "search.scaling", "an integer"),
    ("search: {retrain: 0}", "search.retrain", "a value > 0"),
    ("search: {fuson: 2}", "search.fuson", "did you mean 'fusion'"),
])
def test_fusion_and_scaling_keys_are_checked(tmp_path, text, key, expected):
    path = tmp_path / "w.yaml"
    path.write_text(text + "\n")
    with pytest.raises(WorkloadError) as info:
        wl.load(path)
    assert info.value.key == key and expected in str(info.value)


def test_fusion_and_scaling_default_off(tmp_path):
    w = wl.from_mapping({})
    assert (w.search.fusion, w.search.scaling, w.search.retrain) == (1, 1, 1)
    assert not w.search.grouped
    assert wl.from_mapping({"search": {"scaling": 2}}).search.grouped


@pytest.mark.slow
def test_fused_run_prunes_inside_a_group_and_reports_hydro_figures(pytester):
    pytester.makeconftest(PRUNER)
    pytester.makefile(".yaml", fused=FUSED)
    pytester.makepyfile(SCENARIO)
    pytester.runpytest_subprocess("--basht-workload", "fused.yaml").assert_outcomes(passed=1)
    report, md = only_report(pytester.path)
    sc = report["scenarios"][0]
    trials = sc["trials"]
    assert sorted(t["params"]["learning_rate"] for t in trials) == \
        [0.0, 0.001, 0.003, 0.005, 0.01, 0.02]  # every configuration once, no tail repeats
    lazy = next(t for t in trials if t["params"]["learning_rate"] == 0.0)
    assert lazy["state"] == "pruned" and len(lazy["intermediate"]) == 1
    hydro = sc["sut"]["hydro"]
    groups = hydro["fusion"]["detail"]
    assert sum(g["size"] for g in groups) == 6 and hydro["fusion"]["mean_group_size"] > 1
    home = next(g for g in groups if lazy["number"] in g["trials"])
    mates = [t for t in trials if t["number"] in home["trials"] and t is not lazy]
    assert mates and all(t["state"] == "complete" and len(t["intermediate"]) == 2
                         for t in mates)
    assert hydro["trials"] == 6 and hydro["trials_per_s"] > 0
    # members share their slot: the trials' energies add up to no more than the machine's
    timeline = sc["energy"]["timeline"]
    start = min(t["start_ns"] for t in trials)
    end = max(t["end_ns"] for t in trials)
    from pytest_basht.energy.attribution import delta

    window_j = delta(timeline["t_ns"], timeline["joules"], start, end)
    assert 0 < sum(t["energy_j"] for t in trials) <= window_j * 1.001
    assert "Hydro — fused and scaled trials" in md and "## Hydro: fused and scaled trials" in md


@pytest.mark.slow
def test_scaled_run_retrains_at_full_width_and_measures_fidelity(pytester):
    pytester.makefile(".yaml", scaled=SCALED)
    pytester.makepyfile(SCENARIO)
    pytester.runpytest_subprocess("--basht-workload", "scaled.yaml").assert_outcomes(passed=1)
    report, md = only_report(pytester.path)
    sc = report["scenarios"][0]
    scaling = sc["sut"]["hydro"]["scaling"]
    assert scaling["factor"] == 2 and scaling["widths"] == {"32": 16}
    rows = scaling["retrained"]
    assert len(rows) == 3 and all(r["state"] == "complete" and r["full_value"] is not None
                                  for r in rows)
    values = [r["surrogate_value"] for r in rows]
    assert values == sorted(values, reverse=True)  # the surrogate's best first
    assert scaling["fidelity"]["configs"] == 3
    assert scaling["tested_trial"] in {r["number"] for r in rows}
    assert scaling["tested_full_value"] == max(r["full_value"] for r in rows)
    assert sc["test_score"] is not None and sc["test_score"] > 0.2
    assert "ranking fidelity τ" in md and "Retrained at full width" in md


@pytest.mark.slow
def test_a_trainable_that_cannot_fuse_fails_the_scenario_with_the_reason(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1, 2], extra="search: {fusion: 2, "
                                                         "space: {x: [1, 2]}}\n"))
    pytester.makepyfile(SCENARIO)
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml")
    result.assert_outcomes(failed=1)
    assert "search.fusion / search.scaling need a trainable" in result.stdout.str()


def test_markdown_without_hydro_figures_has_no_hydro_section():
    report = {"scenarios": [{"sut": {}, "test_id": "t"}]}
    assert hydro_report.summary_rows(report) is None

"""Fault: the comparison baseline is missing, corrupt, of an older schema, or lacks the values
a threshold needs. The message is clear and the gate never passes silently.
(tests/test_gate.py covers a missing, corrupt or older baseline given to pytest: a usage
error before the run; here: the CLI, and a baseline that holds no value to check.)"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from fake_trainable import CONFTEST, workload

from pytest_basht import cli
from pytest_basht.report import gate
from pytest_basht.report import json as report_json

MACHINE = {"id": "m", "cpu_model": "cpu", "cores": 2, "memory_gb": 8.0, "accelerators": [],
           "meter_source": "estimate:ccf-linear"}


def report(values: dict[str, dict[str, float | None]], run_id: str = "r") -> dict:
    return {"schema_version": report_json.SCHEMA_VERSION, "run_id": run_id, "machine": MACHINE,
            "scenarios": [{"test_id": tid, "status": "complete", "metrics": metrics,
                           "workload": {"goal": {"direction": "maximize"}}}
                          for tid, metrics in values.items()]}


def test_a_gate_with_no_baseline_value_to_check_is_an_error_not_a_pass():
    old = report({"t::a": {"wte_kwh": None, "energy_kwh": 1.0},
                  "t::b": {"wte_kwh": None, "energy_kwh": 1.0}})
    new = report({"t::a": {"wte_kwh": 5.0, "energy_kwh": 1.0},
                  "t::b": {"wte_kwh": 5.0, "energy_kwh": 1.0}})
    with pytest.raises(gate.CompareError, match=r"nothing checked: the baseline has no "
                       r"value of wte_kwh for any scenario this run has too \(t::a, t::b\)"):
        gate.compare(old, new, gate.parse_fail_on("wte:+10%"))
    # one threshold checkable, another not: the gate decides on the first and says so
    result = gate.compare(old, new, gate.parse_fail_on("wte:+10%,energy:+10%"))
    assert result.verdict == "pass"
    assert "not checked, no value in the baseline: t::a wte_kwh, t::b wte_kwh" in result.notes
    lines = gate.gate_lines(report_json.clean(result.to_dict()))
    assert "note: not checked, no value in the baseline: t::a wte_kwh, t::b wte_kwh" in lines


@pytest.mark.parametrize("text,needle", [
    ('{"schema_version": 1, "run_id": "x", "scenar', "not valid JSON (line 1 column"),
    ("", "not valid JSON"),
    ('{"schema_version": 0, "scenarios": []}', "schema_version 0, this pytest-basht reads "
                                               "version 1"),
    ('{"schema_version": 1, "scenarios": "none", "machine": {}}', "no scenarios list"),
    ('[1, 2, 3]', "not a pytest-basht report (no schema_version)"),
])
def test_the_cli_names_a_bad_baseline_and_does_not_pass(tmp_path, capsys, text, needle):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(text)
    new.write_text(json.dumps(report({"t::a": {"energy_kwh": 1.0}})))
    code = cli.main(["compare", str(old), str(new), "--fail-on", "energy:+10%"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert cli.main(["compare", str(tmp_path / "gone.json"), str(new)]) == 2
    assert "gone.json: no such report" in capsys.readouterr().err


def test_the_cli_refuses_a_gate_that_checks_nothing(tmp_path, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(report({"t::a": {"energy_kwh": None}})))
    new.write_text(json.dumps(report({"t::a": {"energy_kwh": 2.0}})))
    assert cli.main(["compare", str(old), str(new), "--fail-on", "energy:+10%"]) == 2
    assert "nothing checked" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_gated_on_a_baseline_without_the_value_fails(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1, 2], workers=1, epochs=1,
                                          extra="energy: {idle_s: 0}\n"))
    pytester.makepyfile(test_faults=textwrap.dedent("""
        import pytest

        @pytest.mark.basht(experiment="faults")
        def test_scenario(trial_runner):
            assert trial_runner.run().trials
        """))
    args = ["--basht-workload", "w.yaml", "--basht-history", "off"]
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    base = json.loads((pytester.path / "reports" / "latest" / "report.json").read_text())
    for sc in base["scenarios"]:  # e.g. a report of an older pytest-basht without the metric
        sc["metrics"]["zeus_cost"] = None
    Path(pytester.path / "base.json").write_text(json.dumps(base))
    result = pytester.runpytest_subprocess(*args, "--basht-compare", "base.json",
                                           "--basht-fail-on", "zeus:+10%")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    assert "basht gate: ERROR — nothing checked: baseline base.json has no value of " \
           "zeus_cost" in out
    gated = json.loads((pytester.path / "reports" / "latest" / "report.json").read_text())
    assert gated["comparison"]["verdict"] == "error"

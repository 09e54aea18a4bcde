"""Record → export → replay through pytest: a real run of the ``optuna`` SUT, ``basht table
export``, then the same workload with only the SUT switched to ``simulated``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from fake_trainable import CONFTEST, workload

from pytest_basht.metrics import TABLE2_KEYS, finite
from pytest_basht.report import json as report_json

SCENARIO = """
import pytest

@pytest.mark.basht(experiment="demo")
def test_scenario(trial_runner):
    run = trial_runner.run()
    assert run.trials
"""


def reports(path: Path) -> list[Path]:
    return sorted(p for p in (path / "reports").iterdir() if p.name != "latest")


def load(run: Path) -> dict:
    report = report_json.load(run)
    jsonschema.validate(report, report_json.schema())
    return report


@pytest.mark.slow
def test_record_export_and_replay_by_switching_the_sut(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", real=workload([1, 2, 3, 4], workers=2, epochs=3))
    pytester.makepyfile(SCENARIO)
    pytester.runpytest_subprocess("--basht-workload", "real.yaml").assert_outcomes(passed=1)
    (recorded,) = reports(pytester.path)
    cli = subprocess.run([sys.executable, "-m", "pytest_basht.cli", "table", "export",
                          str(recorded), "-o", "table.csv"], cwd=pytester.path,
                         capture_output=True, text=True, check=False)
    assert cli.returncode == 0, cli.stderr
    assert "4 configurations" in cli.stdout and "up to 3 epochs" in cli.stdout
    pytester.makefile(".yaml", sim="extends: real.yaml\nsut: {name: simulated, options: "
                                   "{table: table.csv, sampler_time: recorded}}\n")
    result = pytester.runpytest_subprocess("--basht-workload", "sim.yaml")
    result.assert_outcomes(passed=1)
    assert "test_scenario (simulated)" in result.stdout.str()
    simulated = next(r for r in reports(pytester.path) if r != recorded)
    real, sim = load(recorded)["scenarios"][0], load(simulated)["scenarios"][0]
    info = sim["sut"]["simulation"]
    assert sim["sut"]["simulated"] is True and info["table"]["path"].endswith("table.csv")
    assert info["answers"] == {"table": len(real["trials"])}
    assert sim["energy"]["source"] == "simulated:estimate:ccf-linear"
    assert all(finite(sim["metrics"][k]) for k in TABLE2_KEYS)
    # the recorded trials, answered: same configurations, values, and per-trial cost (a
    # configuration the grid's tail ran twice has two recordings; one of them answers)
    recordings: dict[str, list[dict]] = {}
    for t in real["trials"]:
        recordings.setdefault(json.dumps(t["params"], sort_keys=True), []).append(t)
    for t in sim["trials"]:
        options = recordings[json.dumps(t["params"], sort_keys=True)]
        assert any(t["intermediate"] == o["intermediate"]
                   and t["end_ns"] - t["start_ns"] == o["end_ns"] - o["start_ns"]
                   and t["energy_j"] == pytest.approx(o["energy_j"]) for o in options)
    # lifecycle phases take their recorded time: JCT within the recording's hand-over jitter
    assert sim["metrics"]["jct_ms"] == pytest.approx(real["metrics"]["jct_ms"], rel=0.15)
    md = (simulated / "report.md").read_text()
    assert "**simulated** in virtual time from table" in md and "**Simulation**" in md


def test_a_bad_simulated_option_is_a_usage_error_at_collection(pytester, tmp_path):
    pytester.makefile(".yaml", w="sut: {name: simulated, options: {table: t.csv, seeds: "
                                 "every}}\n")
    pytester.makepyfile(SCENARIO)
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml")
    assert result.ret == 4
    err = result.stderr.str()
    assert "w.yaml: sut.options.seeds: expected one of pick, mean, got 'every'" in err
    assert "Traceback" not in err + result.stdout.str()

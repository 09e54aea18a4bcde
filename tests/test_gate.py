"""The energy gate end to end (pytester): a real regression fails, an unchanged run passes,
a bad baseline is a clear usage error, and repeats bring in the significance test."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import sqlalchemy.dialects.postgresql  # noqa: F401  (loaded once, not per in-process run)
from busy_trainable import BUSY_CONFTEST, BUSY_WORKLOAD, SCENARIO

from pytest_basht.report import json as report_json
from pytest_basht.report.markdown import fmt

GATE = "energy_kwh:+40%,twh_kwh:+40%"  # doubled work measured +84% / +108%; reruns +15%
WORK_S = 1.2  # CPU seconds per trial; the scenario runs 2 trials


@pytest.fixture
def busy(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(BUSY_CONFTEST)
    pytester.makefile(".yaml", w=BUSY_WORKLOAD)
    pytester.makepyfile(test_busy=SCENARIO)
    (pytester.path / "work.txt").write_text(str(WORK_S))
    return pytester


def run(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.runpytest_subprocess("--basht-workload", "w.yaml", *args)


def latest(p: pytest.Pytester) -> dict:
    return report_json.load(p.path / "reports" / "latest")


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + result.stderr.str()


def cli(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.run(sys.executable, "-m", "pytest_basht.cli", *args)


@pytest.mark.slow
def test_twice_the_cpu_work_fails_the_gate_and_an_unchanged_rerun_passes(busy):
    first = run(busy, "--basht-save", "base")
    assert first.ret == 0, output(first)
    assert re.search(r"history: saved run \S+ as 'base' in sqlite:///", first.stdout.str())
    base = latest(busy)
    old = base["scenarios"][0]["metrics"]
    # the load it ran under: in report.json, and in the history (basht noise shows it)
    conditions = base["scenarios"][0]["conditions"]
    assert conditions["samples"] >= 1 and conditions["cpus"] >= 1
    assert conditions["others_cpu_pct"] >= 0 and conditions["load_1m"] is not None
    assert (conditions["workers"], conditions["processes"]) == (1, 1)
    noise = cli(busy, "noise", "--metric", "trials.cpu_s")
    assert noise.ret == 0, output(noise)
    [shown] = [line for line in noise.outlines if line.startswith("test_busy.py::test_busy ")]
    assert shown.split()[2:4] == ["1", "trials.cpu_s"]  # 1 sample so far
    assert shown.split()[-2] == fmt(conditions["others_cpu_pct"])

    # One sample each side cannot tell a change from noise: undecided, and it says why.
    (busy.path / "work.txt").write_text(str(2 * WORK_S))
    doubled = run(busy, "--basht-compare", "base", "--basht-fail-on", GATE)
    out = output(doubled)
    assert doubled.ret == 1, out
    assert "Traceback" not in out
    assert "basht gate: FAIL — 2 undecided (not told from noise) past " \
           "energy_kwh:+40%,twh_kwh:+40%" in out
    assert re.search(r"=+ 1 passed, 1 basht gate failed in [\d.]+s", doubled.outlines[-1]), \
        doubled.outlines[-1]
    report = latest(busy)
    new = report["scenarios"][0]["metrics"]
    assert new["energy_kwh"] > 1.4 * old["energy_kwh"] and new["twh_kwh"] > 1.4 * old["twh_kwh"]
    lines = [line for line in out.splitlines() if line.startswith("UNDECIDED ")]
    assert len(lines) == 2, out
    energy = next(line for line in lines if " energy_kwh: " in line)
    pattern = (r"^UNDECIDED test_busy\.py::test_busy energy_kwh: old (\S+) kWh → new (\S+) kWh "
               r"\(\+([\d.]+)%, ×[\d.]+; threshold \+40%; noise floor unknown; threshold only "
               r"\(1 vs 1 samples.*\) — to decide: --basht-repeat 5 on both runs, 5 saved runs "
               r"of this scenario on this machine for a noise floor \(1 so far\), or basht "
               r"paired --pairs 6 \(docs/ci\.md\)$")
    match = re.match(pattern, energy)
    assert match, energy
    assert float(match[1]) == pytest.approx(old["energy_kwh"], rel=1e-3)
    assert float(match[2]) == pytest.approx(new["energy_kwh"], rel=1e-3)
    assert float(match[3]) == pytest.approx((new["energy_kwh"] / old["energy_kwh"] - 1) * 100,
                                            abs=0.06)
    assert report["comparison"]["verdict"] == "fail"
    assert report["comparison"]["baseline"]["run_id"] == base["run_id"]

    # The same verdict outside pytest, from the history name and the run directory.
    run_dir = str(busy.path / "reports" / report["run_id"])
    verdict = cli(busy, "compare", "base", run_dir, "--fail-on", GATE)
    assert verdict.ret == 1
    assert [line for line in verdict.outlines if line.startswith("UNDECIDED ")] == lines
    other = dict(base, machine={**base["machine"], "cpu_model": "Another CPU", "id": "x"})
    (busy.path / "other.json").write_text(json.dumps(other))
    refused = cli(busy, "compare", "other.json", run_dir, "--fail-on", GATE)
    assert refused.ret == 2 and "refusing to compare" in refused.stderr.str()
    assert "cpu_model: 'Another CPU' →" in refused.stderr.str()
    anyway = cli(busy, "compare", "other.json", run_dir, "--fail-on", GATE, "--any-machine")
    assert anyway.ret == 1 and "compared across machines" in anyway.stdout.str()
    (busy.path / "reports" / report["run_id"] / "report.md").unlink()
    assert cli(busy, "report", run_dir).ret == 0  # regenerated from report.json alone
    assert "## Comparison" in (busy.path / "reports" / report["run_id"] / "report.md").read_text()

    (busy.path / "work.txt").write_text(str(WORK_S))
    unchanged = run(busy, "--basht-compare", "base", "--basht-fail-on", GATE)
    assert unchanged.ret == 0, output(unchanged)
    assert "basht gate: PASS — 1 scenario(s) within energy_kwh:+40%,twh_kwh:+40%" in \
        unchanged.stdout.str()
    assert latest(busy)["comparison"]["verdict"] == "pass"


@pytest.mark.slow
def test_repeats_are_samples_and_the_rank_test_decides(busy):
    (busy.path / "work.txt").write_text("0.3")
    first = run(busy, "--basht-repeat", "5")
    first.assert_outcomes(passed=5)
    base = latest(busy)
    assert [s["test_id"] for s in base["scenarios"]] == [
        f"test_busy.py::test_busy[repeat={i}]" for i in range(1, 6)]
    assert {s["scenario_id"] for s in base["scenarios"]} == {"test_busy.py::test_busy"}
    assert [s["repeat"] for s in base["scenarios"]] == [1, 2, 3, 4, 5]

    # three times the work: on a loaded machine twice the work let 4 vs 4 samples overlap
    (busy.path / "work.txt").write_text("0.9")
    doubled = run(busy, "--basht-repeat", "5", "--basht-compare", "last",
                  "--basht-fail-on", "twh_kwh:+30%")
    out = output(doubled)
    assert doubled.ret == 1, out
    row = next(r for r in latest(busy)["comparison"]["rows"] if r["metric"] == "twh_kwh")
    assert (row["n_old"], row["n_new"], row["verdict"]) == (5, 5, "regression")
    assert row["p"] < 0.05 and row["test"].startswith("Mann–Whitney U (5 vs 5), p < 0.05")
    assert re.search(r"^REGRESSION test_busy\.py::test_busy twh_kwh: old .* Mann–Whitney U "
                     r"\(5 vs 5\), p < 0\.05\)$", out, re.MULTILINE), out
    assert "fewer than 3 samples" not in out


def _report_text(**changes: object) -> str:
    report = {"schema_version": report_json.SCHEMA_VERSION, "run_id": "r", "machine": {},
              "scenarios": []}
    return json.dumps({**report, **changes})


@pytest.mark.parametrize("args,files,needle", [
    (["--basht-compare", "gone/report.json"], {}, "gone/report.json: no such report"),
    (["--basht-compare", "base.json"], {"base.json": "{not json"},
     "base.json: not valid JSON (line 1 column 2"),
    (["--basht-compare", "base.json"], {"base.json": _report_text(schema_version=0)},
     "base.json: schema_version 0, this pytest-basht reads version 1"),
    (["--basht-compare", "base.json"], {"base.json": '{"runs": []}'},
     "base.json: not a pytest-basht report (no schema_version)"),
    (["--basht-compare", "base.json"], {"base.json": _report_text(scenarios=[{"x": 1}])},
     "scenario #0 has no test_id or metrics; the report is corrupt"),
    (["--basht-compare", "last"], {}, "last: the history store sqlite:///"),
    (["--basht-compare", "nightly"], {},
     "nightly: no report file of that name, and no run named or with id 'nightly'"),
    (["--basht-fail-on", "energy_kwh:+10%"], {},
     "--basht-fail-on: expected --basht-compare REF with it"),
    (["--basht-compare", "x.json", "--basht-fail-on", "energy_kw:+10%"], {},
     "did you mean 'energy_kwh'?"),
    (["--basht-save", "main", "--basht-history", "off"], {},
     "--basht-save: expected a history store to save in (it is off)"),
    (["--basht-compare", "main", "--basht-history", "postgresql://u:s3cret@127.0.0.1:1/db"],
     {}, "history store postgresql+psycopg://u:***@127.0.0.1:1/db: cannot open it"),
    (["--basht-repeat", "0"], {}, "--basht-repeat: expected a whole number from 1 to 1,000, "
                                  "got '0'"),
])
def test_a_bad_baseline_or_gate_option_is_a_usage_error(busy, args, files, needle):
    for name, text in files.items():
        (busy.path / name).write_text(text)
    result = busy.runpytest_inprocess("--basht-workload", "w.yaml", *args)
    err = result.stderr.str()
    assert result.ret == 4, output(result)
    assert needle in err
    assert "Traceback" not in output(result) and "s3cret" not in output(result)
    assert not (busy.path / "reports").exists()


def test_ini_switch_values_are_checked(busy):
    busy.makeini("[pytest]\nbasht_compare_any_machine = maybe\n")
    result = busy.runpytest_inprocess("--basht-workload", "w.yaml")
    assert result.ret == 4
    assert "basht_compare_any_machine: expected true or false, got 'maybe'" in \
        result.stderr.str()


@pytest.mark.slow
def test_a_baseline_from_other_hardware_is_refused_before_the_run(busy):
    report = {"schema_version": report_json.SCHEMA_VERSION, "run_id": "r",
              "machine": {"id": "x", "cpu_model": "Some Other CPU", "cores": 64,
                          "memory_gb": 1.0, "accelerators": [], "meter_source": "rapl"},
              "scenarios": []}
    Path(busy.path / "base.json").write_text(json.dumps(report))
    result = run(busy, "--basht-compare", "base.json", "--basht-fail-on", GATE)
    err = result.stderr.str()
    assert result.ret == 4, output(result)
    assert "refusing to compare with baseline base.json: it was measured on another machine" \
        in err
    assert "cpu_model: 'Some Other CPU' →" in err and "cores: 64 →" in err
    assert "pass --basht-compare-any-machine to compare anyway" in err
    assert not (busy.path / "reports").exists()

    # Asked to compare anyway, it runs; a baseline with nothing in common fails the gate.
    (busy.path / "work.txt").write_text("0.1")
    busy.makeini("[pytest]\nbasht_compare_any_machine = true\n")
    result = run(busy, "--basht-compare", "base.json", "--basht-fail-on", GATE)
    out = output(result)
    assert result.ret == 1, out
    assert "basht gate: ERROR — nothing to compare: no scenario of this run is in baseline " \
           "base.json (baseline scenarios: none)" in out
    assert latest(busy)["comparison"]["verdict"] == "error"

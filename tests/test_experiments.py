"""Experiments end to end (pytester, the torch-free fake trainable): sweeps that stop
themselves, budgets, skipped hardware, xdist, enforcement records, comparison output."""

from __future__ import annotations

import os
import textwrap

import pytest
from conftest import only_report
from fake_trainable import CONFTEST, workload

from pytest_basht.report import json as report_json
from pytest_basht.sut.limits import accelerator_missing


@pytest.fixture
def fake(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1, 3], epochs=1, extra="experiment: CI-sweep\n"))
    return pytester


# The carbon intensity is the one Table 2 figure a run cannot change by chance, so a sweep
# over it with metric="cint_g_per_kwh" converges (or not) deterministically.
SWEEP = """
import pytest
from pytest_basht import vary

@pytest.mark.basht(workload="w.yaml")
@pytest.mark.basht_sweep(metric="cint_g_per_kwh"{extra})
@vary("energy.carbon_intensity", {values})
def test_sweep(trial_runner):
    run = trial_runner.run()
    assert run.workload.energy.carbon_intensity != {fail}
"""


def sweep_module(values: list, *, extra: str = "", fail: float = -1) -> str:
    return SWEEP.format(values=values, extra=extra, fail=fail)


@pytest.mark.slow
def test_a_sweep_stops_itself_and_the_report_names_the_converged_value(fake):
    # 400 → 410 is 2.5% apart: converged at 400; 500 and 600 are skipped
    fake.makepyfile(sweep_module([400, 410, 500, 600]))
    result = fake.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=2, skipped=2)
    reason = ("converged at energy.carbon_intensity=400: cint_g_per_kwh 400 gCO2eq/kWh vs "
              "410 gCO2eq/kWh at 410 (Δ 2.5% < 5%)")
    assert result.stdout.str().count(reason) >= 1
    report = only_report(fake.path)
    (exp,) = report["experiments"]
    assert exp["name"] == "CI-sweep" and exp["variables"] == ["energy.carbon_intensity"]
    assert exp["sweep"]["converged_at"] == 400 and exp["sweep"]["confirmed_by"] == 410
    assert [(r["label"], r["ran"]) for r in exp["rows"]] == [
        ("400", True), ("410", True), ("500", False), ("600", False)]
    assert {s["reason"] for s in report["skipped"]} == {reason}
    scenarios = report["scenarios"]
    assert [s["sweep"]["position"] for s in scenarios] == [0, 1]
    # each step is measured on a deployment of its own, undeployed before the next decision
    assert [s["deployment"]["reused"] for s in scenarios] == [False, False]
    assert not any(s["metrics"]["provisional"] for s in scenarios)
    run_dir = fake.path / "reports" / "latest"
    assert (run_dir / exp["plot"]).read_bytes()[:4] == b"\x89PNG"
    md = (run_dir / "report.md").read_text()
    assert "## Experiments" in md and "### CI-sweep — `energy.carbon_intensity`" in md
    assert reason in md and f"]({exp['plot']})" in md
    assert "CI-sweep (energy.carbon_intensity): 2 run, 2 skipped; converged at" in \
        result.stdout.str()


@pytest.mark.slow
def test_a_failed_step_does_not_count_towards_convergence(fake):
    fake.makepyfile(sweep_module([400, 410, 420], fail=410))
    result = fake.runpytest_subprocess()
    result.assert_outcomes(passed=2, failed=1)
    sweep = only_report(fake.path)["experiments"][0]["sweep"]
    assert sweep["converged"] is False and sweep["steps_run"] == 3
    assert sweep["reason"].startswith("not converged")


@pytest.mark.slow
def test_smoke_budget_caps_sweep_steps_epochs_and_trials(fake):
    fake.makefile(".yaml", w=workload([1, 3], epochs=5, extra=(
        "experiment: CI-sweep\nsearch: {sampler: random, trials: 20, space: {x: {low: 0, "
        "high: 6}}}\n")))
    fake.makepyfile(sweep_module([400, 500, 600, 700]))
    result = fake.runpytest_subprocess("--basht-budget", "smoke")
    result.assert_outcomes(passed=3, skipped=1)
    report = only_report(fake.path)
    assert report["options"]["budget"] == "smoke"
    assert any(n.startswith("budget smoke: epochs ≤ 3") for n in report["notes"])
    for sc in report["scenarios"]:
        assert sc["workload"]["training"]["epochs"] == 3
        assert sc["workload"]["search"]["trials"] == 12 and len(sc["trials"]) == 12
    assert report["skipped"][0]["reason"] == ("budget smoke: at most 3 sweep steps, not "
                                              "converged within them")
    # full (the default) runs the file as written
    fake.makepyfile(sweep_module([400]))
    result = fake.runpytest_subprocess("--basht-report-dir", "full")
    result.assert_outcomes(passed=1)
    run = next(p for p in (fake.path / "full").iterdir() if p.name != "latest")
    sc = report_json.load(run)["scenarios"][0]
    assert sc["workload"]["training"]["epochs"] == 5 and len(sc["trials"]) == 20


def test_budget_option_and_ini_are_validated(fake):
    fake.makepyfile(sweep_module([400]))
    result = fake.runpytest_subprocess("--basht-budget", "tiny", "--co")
    assert result.ret == 4
    assert "--basht-budget: expected one of full, smoke, got 'tiny'" in result.stderr.str()
    fake.makeini("[pytest]\nbasht_budget = quick\n")
    result = fake.runpytest_subprocess("--co")
    assert result.ret == 4 and "basht_budget: expected one of full, smoke" in \
        result.stderr.str()


@pytest.mark.parametrize("module,needle", [
    ("""
import pytest
@pytest.mark.basht_sweep()
def test_x(trial_runner): pass
""", "@pytest.mark.basht_sweep needs the values to sweep: vary(path, values)"),
    ("""
import pytest
from pytest_basht import vary
@pytest.mark.basht_sweep()
@vary({"workers.cpu": [1], "seed": [1, 2]})
def test_x(trial_runner): pass
""", "sweeps exactly one variable"),
    ("""
import pytest
from pytest_basht import vary
@pytest.mark.basht_sweep(tolerance=5)
@vary("workers.cpu", [1, 2])
def test_x(trial_runner): pass
""", "tolerance=...) must be a fraction between 0 and 1"),
])
def test_sweep_misuse_is_a_usage_error(fake, module, needle):
    fake.makepyfile(module)
    result = fake.runpytest_subprocess("--co")
    assert result.ret == 4, result.stdout.str()
    assert needle in result.stderr.str() and "Traceback" not in result.stderr.str()


@pytest.mark.slow
def test_a_missing_accelerator_is_skipped_with_the_reason(fake):
    missing = accelerator_missing("gpu")
    if missing is None:
        pytest.skip("this machine has a usable GPU")
    fake.makepyfile("""
        import pytest
        from pytest_basht import vary

        @pytest.mark.basht(workload="w.yaml", experiment="R-ACL")
        @vary("workers.accelerator", ["cpu", "gpu"])
        def test_acl(trial_runner):
            assert trial_runner.run().sut["limits"]["accelerator"]["device"] == "cpu"
    """)
    result = fake.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    assert missing in result.stdout.str()
    report = only_report(fake.path)
    assert report["skipped"] == [{"test_id": "test_a_missing_accelerator_is_skipped_with_the_"
                                             "reason.py::test_acl[workers.accelerator=gpu]",
                                  "experiment": "R-ACL",
                                  "variables": {"workers.accelerator": "gpu"},
                                  "reason": missing}]
    rows = report["experiments"][0]["rows"]
    assert [(r["label"], r["outcome"]) for r in rows] == [("cpu", "passed"), ("gpu", "skipped")]


@pytest.mark.slow
def test_xdist_loadscope_keeps_a_sweep_on_one_worker(fake):
    fake.makepyfile(sweep_module([400, 410, 500]))
    fake.makepyfile(test_other="""
        import pytest

        @pytest.mark.basht(workload="w.yaml", experiment="other")
        def test_other(trial_runner):
            assert trial_runner.run().trials
    """)
    result = fake.runpytest_subprocess("-n", "2", "--dist", "loadscope")
    result.assert_outcomes(passed=3, skipped=1)
    report = only_report(fake.path)
    exp = next(e for e in report["experiments"] if e["name"] == "CI-sweep")
    assert exp["sweep"]["converged_at"] == 400
    assert [(r["label"], r["ran"]) for r in exp["rows"]] == [("400", True), ("410", True),
                                                              ("500", False)]
    assert len(report["skipped"]) == 1 and report["skipped"][0]["reason"].startswith(
        "converged at energy.carbon_intensity=400")


def test_a_split_sweep_is_refused_with_the_fix():
    from pytest_basht.sweep import SweepSpec, SweepTracker

    sweeps = SweepTracker()
    sweeps.add(SweepSpec("f", "x", (1, 2, 3)), {"f[1]": 0, "f[2]": 1, "f[3]": 2})
    assert sweeps.unseen("f[1]") == []
    assert sweeps.unseen("f[3]") == ["f[1]", "f[2]"]  # what another worker got
    sweeps.done("f[1]")
    sweeps.done("f[2]")
    assert sweeps.unseen("f[3]") == [] and sweeps.unseen("other") == []


@pytest.mark.slow
def test_limit_records_say_whether_each_limit_held(fake):
    cores = len(os.sched_getaffinity(0))
    fake.makefile(".yaml", w=workload([1, 3], epochs=1))
    fake.makepyfile(textwrap.dedent("""
        import pytest
        from pytest_basht import vary

        @pytest.mark.basht(workload="w.yaml", experiment="limits")
        @vary({"workers.count": [1, 2], "workers.cpu": [1, 2]})
        def test_limits(trial_runner):
            trial_runner.run()
    """))
    fake.runpytest_subprocess().assert_outcomes(passed=4)
    for sc in only_report(fake.path)["scenarios"]:
        w = sc["workload"]["workers"]
        cpu, memory = sc["sut"]["limits"]["cpu"], sc["sut"]["limits"]["memory"]
        given = max(1, min(w["cpu"], cores // w["count"]))
        assert cpu["given_per_worker"] == given
        assert cpu["observed_affinity"] == cpu["affinity"], "the OS reports the planned cores"
        assert cpu["enforced"] is (given == w["cpu"]), cpu
        if given < w["cpu"]:
            assert cpu["how"].startswith(f"not enforced: asked {w['cpu']} vCPUs per worker")
        else:
            assert "(checked)" in cpu["how"]
        assert memory["enforced"] is True and all(p > 0 for p in memory["peak_rss_mb"])
        assert sc["sut"]["limits"]["accelerator"] == {
            "asked": "cpu", "device": "cpu", "enforced": True,
            "how": "device 'cpu' handed to the trainable; no accelerator"}


@pytest.mark.slow
def test_a_cap_that_killed_its_worker_is_recorded_as_enforced(fake):
    # one worker: after the kill, the only worker is a fresh replacement
    fake.makefile(".yaml", w=workload([-4, 1], epochs=1, workers=1,
                                      extra="workers: {count: 1, cpu: 1, memory_mb: 400}\n"))
    fake.makepyfile(sweep_module([400]))
    fake.runpytest_subprocess().assert_outcomes(passed=1)
    sc = only_report(fake.path)["scenarios"][0]
    memory = sc["sut"]["limits"]["memory"]
    assert memory["enforced"] is True and memory["kills"] >= 1, memory
    assert sc["sut"]["respawns"] >= 1
    hog = next(t for t in sc["trials"] if t["params"]["x"] == -4)
    assert hog["state"] == "failed" and "memory cap exceeded" in hog["error"]

"""The plugin end to end, in sub-pytests (pytester): options, markers, vary, reports, faults."""

from __future__ import annotations

import csv
import json
import textwrap

import pytest
from conftest import only_report
from fake_trainable import CONFTEST, workload

from pytest_basht.lifecycle import PHASES
from pytest_basht.metrics import TABLE2_KEYS, finite
from pytest_basht.options import OPTIONS

SCENARIO = """
import pytest
from pytest_basht import vary

@pytest.mark.basht(experiment="demo")
def test_scenario(trial_runner):
    run = trial_runner.run()
    assert run.trials
"""




@pytest.fixture
def fake(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_no_basht_fixtures_no_side_effects(pytester):
    pytester.makepyfile("def test_plain():\n    assert 1\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    assert "basht" not in result.stdout.str().split("short test summary")[0].split("passed")[-1]


def test_misspelt_workload_key_exits_4_without_traceback(pytester):
    pytester.makefile(".yaml", bad="workers:\n  cout: 2\n")
    pytester.makepyfile(SCENARIO)
    result = pytester.runpytest_subprocess("--basht-workload", "bad.yaml")
    assert result.ret == 4
    err = result.stderr.str()
    assert "bad.yaml: workers.cout: expected a known key (did you mean 'count'?)" in err
    assert "Traceback" not in err + result.stdout.str()


MALFORMED = [
    (["--basht-pue", "0.5"], "--basht-pue: expected a PUE ≥ 1.0, got '0.5'"),
    (["--basht-pue", "abc"], "--basht-pue: expected a PUE ≥ 1.0"),
    (["--basht-carbon-intensity", "-3"], "--basht-carbon-intensity: expected a number ≥ 0"),
    (["--basht-carbon-intensity", "nan"], "--basht-carbon-intensity: expected"),
    (["--basht-seed", "1.5"], "--basht-seed: expected a non-negative integer"),
    (["--basht-seed", "-1"], "--basht-seed: expected a non-negative integer"),
    (["--basht-meter", " "], "--basht-meter: expected a non-empty value"),
    (["--basht-meter", "rapll"], "energy.meter: expected a registered name"),
    (["--basht-workload", "missing.yaml"], "missing.yaml: <file>: expected a readable file"),
    (["--basht-report-dir", ""], "--basht-report-dir: expected a non-empty value"),
    (["--basht-forecast", "maybe"], "--basht-forecast: expected off, table, or a .json file"),
    (["--basht-forecast-tables", " "], "--basht-forecast-tables: expected a non-empty value"),
    (["--basht-progress-every", "0"], "--basht-progress-every: expected a number of seconds > 0"),
    (["--basht-report-dir", "test_malformed_options_are_usage_errors.py/reports"],
     "--basht-report-dir: expected a directory it can write reports in"),
    (["--basht-carbon-intensity", "mars"], "--basht-carbon-intensity: expected a number ≥ 0"),
    (["--basht-prometheus-url", "ftp://x"], "--basht-prometheus-url: expected an http:// or "
                                            "https:// URL, got 'ftp://x'"),
    (["--basht-prometheus-url", "http://u:s3cret@[::1"], "--basht-prometheus-url: expected"),
    (["--basht-prometheus-port", "abc"], "--basht-prometheus-port: expected a port (0-65535) "
                                         "or HOST:PORT, got 'abc'"),
    (["--basht-prometheus-port", "70000"], "--basht-prometheus-port: expected a port"),
    (["--basht-pushgateway", "http://"], "--basht-pushgateway: expected a URL with a host"),
    (["--basht-history", "nosuchdb://x"], "--basht-history: expected an SQLAlchemy URL"),
    (["--basht-history", " "], "--basht-history: expected a non-empty value"),
    (["--basht-save", "x" * 201], "--basht-save: expected a name of at most 200 characters"),
    (["--basht-save", ""], "--basht-save: expected a non-empty value"),
    (["--basht-compare", " "], "--basht-compare: expected a non-empty value"),
    (["--basht-compare", "x.json", "--basht-fail-on", "energy"],
     "--basht-fail-on: expected KEY:THRESHOLD items"),
    (["--basht-compare", "x.json", "--basht-fail-on", "energy:-5%"], "--basht-fail-on: "
                                                                      "expected a rise"),
    (["--basht-repeat", "two"], "--basht-repeat: expected a whole number ≥ 1, got 'two'"),
    # issue 20: bounds that used to pass and fail mid-run (or at collection, unnamed)
    (["--basht-repeat", "1000000000"], "--basht-repeat: expected a whole number from 1 to "
                                       "1,000, got '1000000000'"),
    (["--basht-seed", "4294967296"], "--basht-seed: expected a non-negative integer below 2³²"),
    (["--basht-seed", "9" * 5001], "--basht-seed: expected a non-negative integer below 2³²"),
    (["--basht-report-dir", "/proc/basht-reports"],
     "--basht-report-dir: expected a directory it can write reports in (/proc/basht-reports"),
    (["--basht-history", "test_malformed_options_are_usage_errors.py"],
     "not a pytest-basht history (it is not an SQLite database)"),
    (["--basht-history", "test_malformed_options_are_usage_errors.py/h.sqlite"],
     "test_malformed_options_are_usage_errors.py is not a directory)"),
    (["--basht-sut", "optuna:storage=postgresql://u@db/b?password=s3cret"],
     "sut.options.storage: expected a URL without a password"),
    (["-o", "basht_compare_any_machine=maybe"],
     "basht_compare_any_machine: expected true or false, got 'maybe'"),
    (["--basht-budget", "huge"], "--basht-budget: expected one of full, smoke, got 'huge'"),
    (["--basht-sut", "opt una"], "--basht-sut: expected a SUT name, or NAME:KEY=VALUE"),
    (["--basht-sut", "optuna:storage"], "--basht-sut: expected a SUT name, or NAME:KEY=VALUE"),
    (["--basht-sut", "optunaa"], "sut.name: expected"),
    (["--basht-sut", "optuna:storage=sqlite:///x.db,heartbeat_s=-1"],
     "sut.options.heartbeat_s: expected"),
    (["--basht-rank-by", "joules"], "--basht-rank-by: expected one of eta, tta, cost, co2, "
                                    "got 'joules'"),
]


@pytest.mark.parametrize("args,needle", MALFORMED)
def test_malformed_options_are_usage_errors(pytester, args, needle):
    path = pytester.makepyfile(SCENARIO)
    before = path.read_bytes()
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == 4, result.stdout.str()
    assert needle in result.stderr.str()
    assert "Traceback" not in result.stderr.str()
    assert "s3cret" not in result.stderr.str() + result.stdout.str()  # never a password
    assert len(result.stderr.str()) < 5000  # the value is cut short, not echoed whole
    assert path.read_bytes() == before  # a file named as a store is never touched


def test_every_option_has_a_malformed_value_case():
    """A new --basht-* option must come with a malformed value in MALFORMED."""
    given = {a.split("=")[0] for args, _ in MALFORMED for a in args}
    missing = [o.flag for o in OPTIONS if o.flag not in given and o.name not in given]
    assert not missing, f"no malformed-value case for {missing}"


def test_malformed_ini_value_names_the_key(pytester):
    pytester.makeini("[pytest]\nbasht_pue = low\n")
    pytester.makepyfile(SCENARIO)
    result = pytester.runpytest_subprocess()
    assert result.ret == 4 and "basht_pue: expected a PUE" in result.stderr.str()


def test_marker_takes_keywords_only(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.basht("workloads/x.yaml")
        def test_a(trial_runner): pass
        @pytest.mark.basht(workload_file="x.yaml")
        def test_b(trial_runner): pass
    """)
    result = pytester.runpytest_subprocess("-k", "test_a")
    assert result.ret == 4 and "keyword arguments only" in result.stderr.str()
    result = pytester.runpytest_subprocess("-k", "test_b")
    assert result.ret == 4 and "unknown workload_file" in result.stderr.str()


def test_vary_ids_stacking_and_bad_values(pytester):
    pytester.makepyfile(test_ids="""
        from pytest_basht import vary
        @vary("workers.count", [1, 2])
        def test_one(trial_runner): pass
        @vary("search.sampler", ["grid", "random"])
        @vary("workers.count", [1, 2])
        def test_two(trial_runner): pass
        @vary({"workers.cpu": [1], "seed": [3, 4]})
        def test_grid(trial_runner): pass
    """)
    result = pytester.runpytest_subprocess("--co", "-q")
    out = result.stdout.str()
    for expected in ("test_one[workers.count=1]", "test_one[workers.count=2]",
                     "test_two[workers.count=1-search.sampler=random]",
                     "test_grid[workers.cpu=1-seed=4]"):
        assert expected in out
    assert "4 tests" in out.replace("test_two", "") or out.count("test_two[") == 4
    pytester.makepyfile(test_ids="""
        from pytest_basht import vary
        @vary("workers.count", [2, 0])
        def test_bad(trial_runner): pass
    """)
    result = pytester.runpytest_subprocess("--co")
    assert result.ret == 4
    assert ("(with workers.count=0): workers.count: expected an integer from 1 to 100,000, "
            "got 0") in result.stderr.str()


@pytest.mark.slow
def test_tiny_mnist_end_to_end(pytester):
    pytester.makefile(".yaml", tiny=textwrap.dedent("""\
        name: tiny
        dataset: {samples: 600}
        training: {epochs: 2}
        search: {space: {layer_size: [16, 32], learning_rate: [0.01]}}
        goal: {target: 0.3}
        workers: {count: 2, cpu: 1, memory_mb: 3000}
        """))
    pytester.makepyfile(SCENARIO)
    result = pytester.runpytest_subprocess("--basht-workload", "tiny.yaml")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "estimate:ccf-linear (ESTIMATE, not a measurement)" in out
    report = only_report(pytester.path)
    sc = report["scenarios"][0]
    assert sc["experiment"] == "demo" and sc["outcome"] == "passed"
    phases = {s["phase"] for s in sc["spans"]} | {s["phase"] for t in sc["trials"]
                                                  for s in t["spans"]}
    assert phases == set(PHASES)
    assert all(finite(sc["metrics"][k]) for k in TABLE2_KEYS), sc["metrics"]
    assert sc["energy"]["source"] == "estimate:ccf-linear" and not sc["energy"]["measured"]
    assert {t["params"]["layer_size"] for t in sc["trials"]} == {16, 32}
    assert all(t["energy_j"] > 0 for t in sc["trials"]) and sc["test_score"] > 0.3
    assert sc["sut"]["limits"]["cpu"]["threads_per_worker"] == 1
    assert report["workload_file"]["text"].startswith("name: tiny")
    md = (pytester.path / "reports" / "latest" / "report.md").read_text()
    assert "Table 2 — metrics" in md


@pytest.mark.slow
def test_failing_nan_and_timeout_trials_are_recorded(fake):
    fake.makefile(".yaml", w=workload([-1, -2, -3, 3], extra="trial_timeout_s: 3\n"))
    fake.makepyfile(SCENARIO)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml")
    result.assert_outcomes(passed=1)
    sc = only_report(fake.path)["scenarios"][0]
    failed = [t for t in sc["trials"] if t["state"] == "failed"]
    errors = {t["params"]["x"]: t["error"] for t in failed}
    assert "boom at x=-1" in errors[-1]
    assert "objective returned nan" in errors[-2]
    assert "trial timeout" in errors[-3]
    # Optuna may re-run an unfinished grid point at the tail; such repeats fail the same way
    assert {t["params"]["x"] for t in failed} == {-1, -2, -3}
    done = [t for t in sc["trials"] if t["state"] == "complete"]
    assert [t["params"]["x"] for t in done] == [3] and sc["best_value"] == pytest.approx(1.0)
    assert sc["metrics"]["waste"]["failed"]["trials"] == len(failed)
    assert sc["sut"]["respawns"] >= 1 and "trial timeout" in sc["sut"]["kills"][0]


@pytest.mark.slow
def test_memory_watchdog_fails_the_trial_and_refills_the_slot(fake):
    fake.makefile(".yaml", w=workload([-4, 1, 2, 3], extra="workers: {count: 2, cpu: 1, "
                                                            "memory_mb: 400}\n"))
    fake.makepyfile(SCENARIO)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml")
    result.assert_outcomes(passed=1)
    sc = only_report(fake.path)["scenarios"][0]
    hog = next(t for t in sc["trials"] if t["params"]["x"] == -4)
    assert hog["state"] == "failed" and "memory cap exceeded" in hog["error"]
    assert {t["params"]["x"] for t in sc["trials"] if t["state"] == "complete"} == {1, 2, 3}
    assert sc["sut"]["limits"]["memory"]["enforced"] is True


@pytest.mark.slow
def test_deployment_is_reused_across_samplers_and_xdist_merges(fake):
    fake.makefile(".yaml", w=workload([1, 2]))
    fake.makepyfile("""
        import pytest
        from pytest_basht import vary

        @vary("search.sampler", ["grid", "random"])
        def test_sampler(trial_runner):
            assert trial_runner.run().trials
    """)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml")
    result.assert_outcomes(passed=2)
    # the summary ranks the setups, by energy to target unless asked otherwise
    result.stdout.re_match_lines([r"ranking by ETA \(energy to target, J; goal accuracy ≥ 0\.5",
                                  r"rank +setup +runs +reached +ETA J",
                                  r"1 +search\.sampler=\w+ +1 +1/1 ",
                                  r"2 +search\.sampler=\w+ +1 +1/1 "])
    serial = only_report(fake.path)["scenarios"]
    assert [s["deployment"]["reused"] for s in serial] == [False, True]
    for sc in serial:
        assert next(s["phase"] for s in sc["spans"]) == "deploy"
        assert [s["phase"] for s in sc["spans"]][-1] == "undeploy"
        assert not sc["metrics"]["provisional"]
    for path in (fake.path / "reports").iterdir():
        path.unlink() if path.is_symlink() else __import__("shutil").rmtree(path)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml", "-n", "2",
                                       "--basht-rank-by", "tta")
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines([r"ranking by TTA \(time to target, s;"])
    parallel = only_report(fake.path)["scenarios"]
    assert (fake.path / "reports" / "latest" / "report.html").exists()
    assert sorted(s["test_id"] for s in parallel) == sorted(s["test_id"] for s in serial)
    # two scenarios side by side share the machine's modelled idle draw instead of each
    # taking all of it: half while both run, all of it while one runs alone (issue 20)
    assert [s["energy"]["meter"]["idle_share"] for s in serial] == [1.0, 1.0]
    assert all(0.5 - 1e-9 <= s["energy"]["meter"]["idle_share"] < 1.0 for s in parallel), [
        s["energy"]["meter"]["idle_share"] for s in parallel]


def test_energy_meter_fixture_windows(pytester):
    pytester.makepyfile("""
        import time
        def test_window(energy_meter):
            with energy_meter.window("busy") as w:
                t = time.process_time()
                while time.process_time() - t < 0.1:
                    pass
            assert w.energy_j > 0 and w.source.startswith("estimate:")
            assert not w.measured
    """)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


THIRD_PARTY = textwrap.dedent('''
    import optuna

    from pytest_basht.errors import WorkloadError

    def reverse_grid(workload, seed):
        return optuna.samplers.GridSampler({"x": [2, 1]}, seed=seed)

    def pytest_basht_register_samplers():
        return {"reverse-grid": reverse_grid}

    def pytest_basht_check_workload(workload, registry):
        if workload.search.sampler == "reverse-grid" and workload.workers.count > 2:
            raise WorkloadError(workload.source, "workers.count",
                                "at most 2 with sampler reverse-grid", workload.workers.count)

    def pytest_basht_update_report(config, report):
        report["labels"] = {"team": "mlops"}

    def pytest_basht_update_scenario(config, scenario):
        scenario["variables"]["amended"] = True

    def pytest_basht_sut_metrics(workload, trials, pool, tested):
        return {"trials_seen": len(trials)}

    def pytest_basht_plots(report, run_dir):
        from matplotlib.figure import Figure

        fig = Figure()
        fig.subplots().bar([0], [report["scenarios"][0]["metrics"]["energy_j"]])
        fig.savefig(run_dir / "team.png")
        report["labels"]["plot"] = "team.png"

    def pytest_basht_markdown_report(report):
        return ["## Team section", "", f"![energy]({report['labels']['plot']})", ""]

    def pytest_basht_markdown_scenario(scenario):
        return [f"Trials the team's hook saw: {scenario['sut']['trials_seen']}", ""]
    ''')


@pytest.mark.slow
def test_hooks_register_a_sampler_and_amend_the_report(fake):
    """A third party's conftest: a sampler, a workload check, a SUT metric, a plot and
    report sections, through the same hooks Zeus and Hydro use."""
    fake.makeconftest(CONFTEST + THIRD_PARTY)
    fake.makefile(".yaml", w=workload([1, 2], extra="search: {sampler: reverse-grid, "
                                                     "space: {x: [1, 2]}}\n"))
    fake.makepyfile(SCENARIO)
    fake.runpytest_subprocess("--basht-workload", "w.yaml").assert_outcomes(passed=1)
    report = only_report(fake.path)
    assert report["labels"] == {"team": "mlops", "plot": "team.png"}
    sc = report["scenarios"][0]
    assert sc["variables"]["amended"] is True and sc["workload"]["search"]["sampler"] == \
        "reverse-grid"
    assert sc["sut"]["trials_seen"] == 2
    run_dir = fake.path / "reports" / report["run_id"]
    assert (run_dir / "team.png").read_bytes().startswith(b"\x89PNG")
    md = (run_dir / "report.md").read_text()
    assert "## Team section\n\n![energy](team.png)" in md
    assert md.index("## Team section") < md.index("## Scenarios")
    assert md.index("**Trials**") < md.index("Trials the team's hook saw: 2")


def test_a_plugins_workload_check_refuses_with_the_key(fake):
    fake.makeconftest(CONFTEST + THIRD_PARTY)
    fake.makefile(".yaml", w=workload([1, 2], workers=4,
                                      extra="search: {sampler: reverse-grid, "
                                            "space: {x: [1, 2]}}\n"))
    fake.makepyfile(SCENARIO)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml")
    assert result.ret == 4, result.stdout.str()
    assert "w.yaml: workers.count: expected at most 2 with sampler reverse-grid, got 4" in \
        result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_registering_a_name_twice_is_an_error(pytester):
    pytester.makeconftest("""
        def pytest_basht_register_samplers():
            return {"grid": object()}
    """)
    pytester.makepyfile(SCENARIO)
    result = pytester.runpytest_subprocess()
    assert result.ret == 4 and "sampler 'grid' is registered twice" in result.stderr.str()


def test_report_json_is_strict_json(fake):
    fake.makefile(".yaml", w=workload([-2, 3], epochs=1))
    fake.makepyfile(SCENARIO)
    fake.runpytest_subprocess("--basht-workload", "w.yaml").assert_outcomes(passed=1)
    run = next(p for p in (fake.path / "reports").iterdir() if p.name != "latest")
    report = json.loads((run / "report.json").read_text(), parse_constant=lambda c: 1 / 0)
    with open(run / "trials.csv", newline="") as fh:  # every trial, beside it
        rows = list(csv.DictReader(fh))
    # Optuna's grid hands a failed point out again, so x = -2 may run more than once
    assert [int(r["number"]) for r in rows] == [t["number"]
                                                for t in report["scenarios"][0]["trials"]]
    assert {r["param.x"] for r in rows} == {"-2", "3"}
    for row in rows:
        if row["param.x"] == "-2":
            assert (row["state"], row["value"]) == ("failed", "") and row["error"]
        else:
            assert row["state"] == "complete" and float(row["value"]) > 0


@pytest.mark.slow
def test_random_sampler_workers_do_not_repeat_each_other(fake):
    fake.makefile(".yaml", w=workload([1], epochs=1, extra=(
        "search: {sampler: random, trials: 8, space: {x: {low: 0, high: 100000}}}\n")))
    fake.makepyfile(SCENARIO)
    fake.runpytest_subprocess("--basht-workload", "w.yaml").assert_outcomes(passed=1)
    sc = only_report(fake.path)["scenarios"][0]
    xs = [t["params"]["x"] for t in sc["trials"]]
    assert len(xs) == 8 and len(set(xs)) == 8, xs
    assert {t["worker"] for t in sc["trials"]} == {0, 1}

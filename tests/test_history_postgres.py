"""Run history on a real PostgreSQL server (a team's shared store), started by the fixture."""

from __future__ import annotations

import json
import sys

import psycopg
import pytest
from fake_trainable import CONFTEST, workload
from postgres import postgres_server  # noqa: F401  (the fixture)
from test_history import make_report

from pytest_basht.report import json as report_json
from pytest_basht.report.history import History, store_url


def test_history_on_postgresql(postgres_server, tmp_path):  # noqa: F811
    url = postgres_server.create_database("history_unit")
    with History(store_url(url.replace("+psycopg", ""), tmp_path)) as store:
        assert store.url.drivername == "postgresql+psycopg"
        store.save(make_report("run-1", 10.0), name="main")
        store.save(make_report("run-2", 12.0))
        assert [r.run_id for r in store.runs()] == ["run-2", "run-1"]
        assert store.find("main").run_id == "run-1" and store.find("last").run_id == "run-2"
        assert store.report("run-2")["scenarios"][0]["metrics"]["energy_j"] == 12.0
        samples = store.samples("t.py::test_a", exclude_run="run-2")  # the noise floor's
        assert [(e.run_id, e.values["energy_j"]) for e in samples] == [("run-1", 10.0)]
    # What other tools see: plain tables, queryable with SQL.
    dsn = postgres_server.dsn("history_unit")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT r.run_id, r.name, s.scenario_id, s.energy_j, s.metrics::json->>'jct_ms' "
            "FROM basht_runs r JOIN basht_scenarios s ON s.run_pk = r.id ORDER BY r.id").fetchall()
    assert rows == [("run-1", "main", "t.py::test_a", 10.0, "1000.0"),
                    ("run-2", None, "t.py::test_a", 12.0, "1000.0")]


@pytest.mark.slow
def test_runs_saved_and_compared_through_postgresql(postgres_server, pytester):  # noqa: F811
    url = postgres_server.create_database("history_e2e").replace(
        "basht@", "basht:s3cret@")  # trust auth ignores it; it must never be shown
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1, 2], workers=1, epochs=1))
    pytester.makepyfile("""
        def test_scenario(trial_runner):
            assert trial_runner.run().trials
    """)
    first = pytester.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history", url,
                                          "--basht-save", "main")
    assert first.ret == 0
    shown = url.replace(":s3cret@", ":***@")
    assert f"as 'main' in {shown}" in first.stdout.str()
    second = pytester.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history", url,
                                           "--basht-compare", "main",
                                           "--basht-fail-on", "energy_kwh:+400%")
    out = second.stdout.str() + second.stderr.str()
    assert second.ret == 0, out
    assert "basht gate: PASS — 1 scenario(s) within energy_kwh:+400% of baseline run" in out
    assert "s3cret" not in out
    report = report_json.load(pytester.path / "reports" / "latest")
    assert report["options"]["history"] == shown
    assert "s3cret" not in json.dumps(report)
    listing = pytester.run(sys.executable, "-m", "pytest_basht.cli", "history", "--history", url)
    assert listing.ret == 0 and "s3cret" not in listing.stdout.str()
    assert f"history: {shown} (2 runs" in listing.stdout.str()
    assert report["run_id"] in listing.stdout.str()

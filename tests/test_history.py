"""Run history on SQLite: save, list, find by name / id / last~N, machine keys, bad stores,
and the ``basht history`` / ``basht save`` / ``basht compare`` commands."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from pytest_basht import cli, db
from pytest_basht.report import json as report_json
from pytest_basht.report.gate import HARDWARE_KEYS
from pytest_basht.report.history import (
    History,
    HistoryError,
    ScenarioRow,
    resolve,
    store_url,
)

MACHINE = {"id": "m1", "cpu_model": "CPU A", "cores": 2, "memory_gb": 24.0,
           "accelerators": [], "meter_source": "estimate:ccf-linear"}


def make_report(run_id: str, energy: float = 10.0, machine: dict | None = None,
                **extra: object) -> dict:
    metrics = {"energy_j": energy, "energy_kwh": energy / 3.6e6, "jct_ms": 1000.0,
               "wte_kwh": 0.0, "waste": {"total": {"trials": 0}}}
    return {"schema_version": report_json.SCHEMA_VERSION, "run_id": run_id,
            "created_utc": f"2026-01-01T00:00:{len(run_id):02d}+00:00", "status": "complete",
            "machine": machine or MACHINE, "git": {"commit": "abc123", "branch": "main"},
            "scenarios": [{"test_id": "t.py::test_a[repeat=2]", "scenario_id": "t.py::test_a",
                           "repeat": 2, "experiment": "x", "outcome": "passed",
                           "status": "complete", "metrics": metrics}], **extra}


@pytest.fixture
def store(tmp_path: Path) -> History:
    with History(store_url(None, tmp_path)) as history:
        yield history


def test_default_store_is_sqlite_under_the_rootdir(tmp_path):
    assert str(store_url(None, tmp_path)) == f"sqlite:///{tmp_path}/.basht/history.sqlite"
    assert str(store_url("runs.db", tmp_path)) == f"sqlite:///{tmp_path}/runs.db"
    assert str(store_url("sqlite:///rel/h.db", tmp_path)) == f"sqlite:///{tmp_path}/rel/h.db"
    assert str(store_url("sqlite:////abs/h.db", tmp_path)) == "sqlite:////abs/h.db"
    pg = store_url("postgresql://ci:pw@db.example:5432/basht", tmp_path)
    assert pg.drivername == "postgresql+psycopg" and pg.password == "pw"
    assert db.shown(pg) == "postgresql+psycopg://ci:***@db.example:5432/basht"
    with pytest.raises(HistoryError, match="expected an SQLAlchemy URL"):
        store_url("notadriver:://x", tmp_path)


def test_save_list_and_find(store):
    store.save(make_report("run-1", 10.0), name="main")
    store.save(make_report("run-2", 11.0))
    store.save(make_report("run-3", 12.0), name="main", path=Path("/r/run-3/report.json"))
    assert [r.run_id for r in store.runs()] == ["run-3", "run-2", "run-1"]
    assert [r.run_id for r in store.runs(name="main")] == ["run-3", "run-1"]
    assert store.find("main").run_id == "run-3"  # a name means its newest run
    assert store.find("last").run_id == "run-3"
    assert store.find("last~2").run_id == "run-1"
    assert store.find("run-2").run_id == "run-2"
    entry = store.runs(limit=1)[0]
    assert (entry.machine_id, entry.git_commit, entry.n_scenarios, entry.energy_j) == (
        "m1", "abc123", 1, 12.0)
    assert store.report("run-2")["scenarios"][0]["metrics"]["energy_j"] == 11.0
    with Session(store.engine) as session:
        rows = session.scalars(select(ScenarioRow).order_by(ScenarioRow.id)).all()
    assert [(r.scenario_id, r.repeat, r.energy_j) for r in rows][-1] == ("t.py::test_a", 2, 12.0)
    assert rows[0].metrics["energy_kwh"] == pytest.approx(10.0 / 3.6e6)
    with pytest.raises(HistoryError, match=r"last~3: the history store .* holds 3 run"):
        store.find("last~3")
    with pytest.raises(HistoryError, match=r"no run named or with id 'nightly' .*saved names: "
                                           r"main\)"):
        store.find("nightly")
    with pytest.raises(HistoryError, match="run run-1 is already saved"):
        store.save(make_report("run-1"))


def test_last_is_the_newest_run_of_this_machine(store):
    other = {**MACHINE, "id": "m9", "cpu_model": "CPU B"}
    store.save(make_report("mine", machine=MACHINE))
    store.save(make_report("theirs", machine=other))
    here = {**MACHINE, "meter_source": ""}  # what pytest knows before the meter is chosen
    assert store.find("last").run_id == "theirs"
    assert store.find("last", machine=here, keys=HARDWARE_KEYS).run_id == "mine"
    with pytest.raises(HistoryError, match=r"holds 0 run\(s\) of this machine \(cpu_model="
                                           r"'CPU C'.*2 in all\)"):
        store.find("last", machine={**here, "cpu_model": "CPU C"}, keys=HARDWARE_KEYS)


def test_a_corrupt_or_older_stored_report_is_a_clear_error(store, tmp_path):
    store.save(make_report("old", schema_version=0))
    with pytest.raises(report_json.ReportError, match="run old: schema_version 0, this "
                                                      "pytest-basht reads version 1"):
        resolve("old", store)
    store.save(make_report("bad"))
    with sqlite3.connect(tmp_path / ".basht" / "history.sqlite") as conn:
        conn.execute("UPDATE basht_runs SET report = '{broken' WHERE run_id = 'bad'")
    with pytest.raises(report_json.ReportError, match=r"run bad: the stored report is not valid "
                                                      r"JSON .*it is corrupt"):
        resolve("bad", store)


def test_resolve_prefers_files_and_needs_the_history_for_names(store, tmp_path):
    path = tmp_path / "base.json"
    path.write_text(json.dumps(make_report("file-run")))
    store.save(make_report("hist-run"), name="main")
    assert resolve(str(path), store).report["run_id"] == "file-run"
    got = resolve("main", store)
    assert got.report["run_id"] == "hist-run"
    assert got.label.startswith("run hist-run ('main') from the history sqlite:///")
    with pytest.raises(report_json.ReportError, match=r"missing\.json: no such report"):
        resolve(str(tmp_path / "missing.json"), store)
    with pytest.raises(HistoryError, match="the history is off"):
        resolve("main", None)


def test_an_unreachable_store_names_it_without_the_password():
    with pytest.raises(HistoryError) as info:
        History(store_url("postgresql://ci:s3cret@127.0.0.1:1/basht", Path(".")))
    assert "history store postgresql+psycopg://ci:***@127.0.0.1:1/basht: cannot open it" in \
        str(info.value)
    assert "s3cret" not in str(info.value)


def test_history_save_and_compare_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for run_id, energy in (("run-1", 10.0), ("run-2", 20.0)):
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "report.json").write_text(json.dumps(make_report(run_id, energy)))
    assert cli.main(["save", "run-1", "--name", "main"]) == 0
    assert cli.main(["save", "run-2/report.json"]) == 0
    out = capsys.readouterr().out
    assert "saved run run-1 as 'main' in sqlite:///" in out and "saved run run-2 in" in out

    assert cli.main(["history"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"history: sqlite:///{tmp_path}/.basht/history.sqlite (2 runs")
    assert lines[1].split() == ["run", "name", "created", "(UTC)", "machine", "meter", "commit",
                                "status", "scenarios", "energy", "J"]
    assert lines[3].split()[:2] == ["run-2", "2026-01-01T00:00:05+00:00"]
    assert lines[4].split()[:2] == ["run-1", "main"]
    assert cli.main(["history", "--name", "nope"]) == 0
    assert "no runs saved" in capsys.readouterr().out

    assert cli.main(["compare", "main", "last", "--fail-on", "energy_kwh:+50%"]) == 1
    out = capsys.readouterr().out
    assert "basht gate: FAIL — 1 undecided (not told from noise) past energy_kwh:+50% against " \
        "run run-1" in out
    assert "UNDECIDED t.py::test_a energy_kwh: old 2.778e-06 kWh → new 5.556e-06 kWh " \
           "(+100.0%, ×2; threshold +50%" in out
    assert cli.main(["compare", "last", "main", "--fail-on", "energy_kwh:+50%"]) == 0
    assert "basht gate: PASS" in capsys.readouterr().out
    assert cli.main(["compare", "run-1", "run-2/report.json", "--history", "off"]) == 0
    assert cli.main(["compare", "main", "last", "--fail-on", "energy_kwh:-5%"]) == 2
    assert "basht: error: --fail-on: expected a rise for energy_kwh" in capsys.readouterr().err
    assert cli.main(["history", "--history", "off"]) == 2

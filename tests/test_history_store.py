"""The history store's file (issue 20, class 2): only a store this project created is ever
written to or set aside; any other file is a usage error that touches nothing, found before
the run; a store damaged in its data pages is found by SQLite's quick_check when opened and
set aside, never written to."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_basht.report import json as report_json
from pytest_basht.report.history import (
    APPLICATION_ID,
    History,
    HistoryError,
    SessionHistory,
    examine,
)

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def report(run_id: str) -> dict:
    return {"schema_version": report_json.SCHEMA_VERSION, "run_id": run_id,
            "status": "complete", "scenarios": [], "notes": ["n" * 3000]}


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def store(path: Path, runs: int = 30) -> Path:
    with History(f"sqlite:///{path}") as history:
        for i in range(runs):
            history.save(report(f"r{i}"))
    return path


def refused(path: Path) -> str:
    """What using ``path`` as the history says — before the run, and when saving at its
    end — having changed nothing there."""
    before = fingerprint(path) if path.exists() else None
    with pytest.raises(HistoryError) as at_start:
        SessionHistory(str(path), path.parent).check()
    saved = SessionHistory(str(path), path.parent).save(report("x"), path.parent / "r.json")
    assert saved is not None and saved.alarming and "not saved" in saved.line
    after = fingerprint(path) if path.exists() else None
    assert before == after
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        p.name for p in path.parent.iterdir() if ".corrupt-" not in p.name)  # none set aside
    return str(at_start.value)


@given(content=st.binary(min_size=1, max_size=4096),
       name=st.sampled_from(["report.json", "history.sqlite", "data.db", "x"]))
@FUZZ
def test_any_file_not_ours_is_refused_and_left_as_it_was(tmp_path_factory, content, name):
    path = tmp_path_factory.mktemp("h") / name
    path.write_bytes(content)
    assert "not a pytest-basht history" in refused(path)


def test_a_report_json_given_as_the_history_is_refused(tmp_path):
    path = tmp_path / "report.json"
    path.write_text('{"schema_version": 1, "run_id": "x"}')
    assert "(it is not an SQLite database)" in refused(path)


def test_another_programs_database_is_refused(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    assert "its tables are users" in refused(path)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE basht_runs (x)")  # our names, another program's id
    assert examine(other).ours  # our tables: a store of ours (an old one, or a copy)


@pytest.mark.parametrize("kind", ["directory", "fifo", "parent is a file"])
def test_a_path_where_no_store_can_be_is_refused_before_the_run(tmp_path, kind):
    path = tmp_path / "h.sqlite"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        (tmp_path / "file").write_text("mine")
        path = tmp_path / "file" / "h.sqlite"
    with pytest.raises(HistoryError, match="history store"):
        SessionHistory(str(path), tmp_path).check()
    if kind == "parent is a file":
        assert (tmp_path / "file").read_text() == "mine"


def test_a_new_store_carries_our_application_id_and_an_old_one_gets_it(tmp_path):
    new = store(tmp_path / "new.sqlite", runs=1)
    assert examine(new).application_id == APPLICATION_ID
    old = store(tmp_path / "old.sqlite", runs=1)
    with sqlite3.connect(old) as conn:  # a store made before the id was set
        conn.execute("PRAGMA application_id = 0")
    found = examine(old)
    assert found.application_id == 0 and found.ours and not found.foreign
    SessionHistory(str(old), tmp_path).check()
    with History(f"sqlite:///{old}") as history:
        assert [e.run_id for e in history.runs()] == ["r0"]
    assert examine(old).application_id == APPLICATION_ID


@pytest.mark.parametrize("seed", range(4))
def test_a_store_damaged_in_its_data_pages_is_set_aside_not_written_to(tmp_path, seed):
    path = store(tmp_path / "h.sqlite")
    data = bytearray(path.read_bytes())
    pages = len(data) // 4096
    page = random.Random(seed).randrange(1, pages)  # not the header page: the id stays
    data[page * 4096:(page + 1) * 4096] = random.Random(seed).randbytes(4096)
    path.write_bytes(bytes(data))
    found = examine(path)
    assert found.damage is not None and found.ours
    before = fingerprint(path)
    with pytest.raises(HistoryError, match="cannot open it"):
        History(f"sqlite:///{path}")  # looking a baseline up: an error, the store untouched
    assert fingerprint(path) == before
    SessionHistory(str(path), tmp_path).check()  # before a run: ours, set aside at its end
    saved = SessionHistory(str(path), tmp_path).save(report("new"), tmp_path / "r.json")
    assert saved is not None and "the old one was damaged and is kept as" in saved.line
    [aside] = tmp_path.glob("h.sqlite.corrupt-*")
    assert hashlib.sha256(aside.read_bytes()).hexdigest() == before[0]
    with History(f"sqlite:///{path}") as history:
        assert [e.run_id for e in history.runs()] == ["new"]

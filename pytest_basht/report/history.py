"""Run history: every run's report in an SQL store (SQLAlchemy), keyed by machine fingerprint.

SQLite by default (``.basht/history.sqlite`` under the rootdir); any SQLAlchemy URL for a
team's shared store (``postgresql://user@host/db``, through psycopg 3). A run is one row
holding its whole report.json, with the columns a listing or a query needs (name, machine,
git commit, energy); each scenario is a row too, with its Table 2 metrics as JSON, so
later tools can query history without parsing reports. Each scenario is also a *sample*
(``basht_samples``): its machine fingerprint, a hash of its resolved workload, every
gateable value (Table 2, per phase, best value, test score) and the conditions it ran
under — what the gate's noise floor is computed from (``samples``). URLs are read,
connected to and shown (never with a password) as every store's are (``db``).

An SQLite file is only ever written if this project made it: its header carries our
``application_id`` (set when the store is created; a store from before then is known by
its ``basht_*`` tables), or it lies at the default ``.basht/history.sqlite``. Any other
file — a report.json, another program's database — is a usage error that touches nothing,
found before the run (``SessionHistory.check``). Opening runs SQLite's ``quick_check``: a
store of ours damaged in its header or its data pages is set aside for a fresh one when a
run is saved in it, never written to.

A reference (``--basht-compare REF``, ``basht compare OLD NEW``) is a report.json or run
directory, a saved name (its newest run), a run id, or ``last`` / ``last~N`` (the newest
run, or the Nth before it, of a machine when one is given). ``SessionHistory`` is one
pytest run's handle on the store: opened when first needed, saved in at the end, closed.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, exc, func, select
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import pytest_basht.db as db
import pytest_basht.reading as reading
from pytest_basht.errors import BashtUsageError, OptionError
from pytest_basht.metrics import waste_values
from pytest_basht.report import json as report_json
from pytest_basht.report import ranking
from pytest_basht.report.noise import workload_key

DEFAULT_PATH = Path(".basht") / "history.sqlite"
APPLICATION_ID = 0x42534854  # "BSHT": SQLite's header field naming the program a file is for
SQLITE_MAGIC = b"SQLite format 3\x00"
TABLE_PREFIX = "basht_"  # every table this project creates (history, BSO, fleet)
NOT_OURS = ("pytest-basht keeps its history only in a store it created and touches no other "
            "file: give --basht-history another path, or off")
OFF = ("off", "none", "false", "0")
_LAST = re.compile(r"^last(?:~(\d+))?$")


class HistoryError(BashtUsageError):
    """The history store cannot be reached or does not hold what was asked for."""


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "basht_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    name: Mapped[str | None] = mapped_column(String(200), index=True)
    created_utc: Mapped[str] = mapped_column(String(40))
    saved_utc: Mapped[str] = mapped_column(String(40))
    machine_id: Mapped[str] = mapped_column(String(64), index=True)
    machine: Mapped[dict[str, Any]] = mapped_column(JSON)
    meter_source: Mapped[str] = mapped_column(String(200))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_branch: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    schema_version: Mapped[int] = mapped_column(Integer)
    n_scenarios: Mapped[int] = mapped_column(Integer)
    energy_j: Mapped[float | None] = mapped_column(Float)
    report_path: Mapped[str | None] = mapped_column(Text)
    report: Mapped[str] = mapped_column(Text)
    scenarios: Mapped[list[ScenarioRow]] = relationship(back_populates="run",
                                                        cascade="all, delete-orphan")
    samples: Mapped[list[SampleRow]] = relationship(cascade="all, delete-orphan")


class ScenarioRow(Base):
    __tablename__ = "basht_scenarios"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("basht_runs.id", ondelete="CASCADE"),
                                        index=True)
    test_id: Mapped[str] = mapped_column(Text)
    scenario_id: Mapped[str] = mapped_column(Text)
    repeat: Mapped[int] = mapped_column(Integer)
    experiment: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(20))
    energy_j: Mapped[float | None] = mapped_column(Float)
    jct_ms: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    run: Mapped[RunRow] = relationship(back_populates="scenarios")


class SampleRow(Base):
    """One scenario record as a sample of its metrics: what the noise floor is made of.

    A table of its own (not columns of ``basht_scenarios``), so that a store made by an
    older pytest-basht gains it on open; runs saved before it have no samples."""

    __tablename__ = "basht_samples"
    __table_args__ = (Index("ix_basht_samples_identity", "machine_id", "workload_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("basht_runs.id", ondelete="CASCADE"),
                                        index=True)
    scenario_id: Mapped[str] = mapped_column(Text)
    machine_id: Mapped[str] = mapped_column(String(64))
    workload_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    values: Mapped[dict[str, Any]] = mapped_column(JSON)
    conditions: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    load_1m: Mapped[float | None] = mapped_column(Float)
    others_cpu_pct: Mapped[float | None] = mapped_column(Float)
    steal_pct: Mapped[float | None] = mapped_column(Float)


def sample_values(scenario: dict[str, Any]) -> dict[str, float]:
    """Every gateable number of a scenario record: Table 2, per phase, per waste category,
    best value, score; and what the ranking needs (its goal, its cost of reaching it:
    ``ranking.to_target``)."""
    metrics = scenario.get("metrics") or {}
    goal = (scenario.get("workload") or {}).get("goal") or {}
    found = {**metrics, **(metrics.get("phases") or {}),
             **waste_values(metrics.get("waste") or {}),
             "best_value": scenario.get("best_value"), "test_score": scenario.get("test_score"),
             "goal.target": goal.get("target"),
             "goal.maximize": float(goal.get("direction", "maximize") == "maximize"),
             **{f"to_target.{k}": v for k, v in ranking.to_target(scenario).items()}}
    return {k: float(v) for k, v in found.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass(frozen=True)
class RunEntry:
    """One saved run, as listed."""

    run_id: str
    name: str | None
    created_utc: str
    machine_id: str
    meter_source: str
    git_commit: str | None
    status: str
    n_scenarios: int
    energy_j: float | None

    @classmethod
    def of(cls, row: RunRow) -> RunEntry:
        return cls(row.run_id, row.name, row.created_utc, row.machine_id, row.meter_source,
                   row.git_commit, row.status, row.n_scenarios, row.energy_j)


@dataclass(frozen=True)
class SampleEntry:
    """One saved sample: which run, scenario, machine and workload; its values and load."""

    run_id: str
    scenario_id: str
    machine_id: str
    workload_key: str
    values: dict[str, float]
    conditions: dict[str, Any] | None


def is_off(value: str | None) -> bool:
    return value is not None and value.strip().lower() in OFF


def store_url(value: str | None, rootdir: Path) -> URL:
    """The SQLAlchemy URL of ``--basht-history``: a URL, a file path, or the default file."""
    if value is None:
        return make_url(f"sqlite:///{rootdir / DEFAULT_PATH}")
    try:
        return db.locate(value, rootdir)
    except exc.ArgumentError:
        raise HistoryError(f"--basht-history: expected an SQLAlchemy URL such as "
                           f"sqlite:///path or postgresql://user@host/db, got "
                           f"{db.shown(value)!r}") from None


def url_problem(value: str) -> str | None:
    """Why ``--basht-history VALUE`` cannot name a store, or None; connects to nothing."""
    if is_off(value):
        return None
    try:
        db.load_driver(store_url(value, Path.cwd()))
    except HistoryError:
        return "an SQLAlchemy URL such as sqlite:///path or postgresql://user@host/db"
    except (exc.SQLAlchemyError, ImportError, ValueError) as e:
        return (f"an SQLAlchemy URL (sqlite:///path, postgresql://user@host/db) whose driver "
                f"is installed ({db.reason(e)})")
    return None


@dataclass(frozen=True)
class StoreFile:
    """An SQLite history file as found, looked at read-only before it is written to."""

    path: Path
    exists: bool
    sqlite: bool  # the SQLite header, or an empty file (SQLite's new database)
    application_id: int = 0
    tables: tuple[str, ...] | None = ()  # None: unreadable
    damage: str | None = None  # what SQLite said of a damaged file

    @property
    def ours(self) -> bool:
        """Made by this project: our application id, our tables, or our default path."""
        return (self.application_id == APPLICATION_ID
                or any(t.startswith(TABLE_PREFIX) for t in self.tables or ())
                or self.path.parts[-2:] == DEFAULT_PATH.parts)

    @property
    def foreign(self) -> bool:
        """Another program's database (sound, or damaged: its header says whose it is)."""
        if self.ours:
            return False
        return (not self.sqlite or self.application_id != 0 or self.tables is None
                or bool(self.tables))


def examine(path: Path) -> StoreFile:
    """What is at ``path`` — read-only: a store opened for writing would be changed. A
    path where no store can be (a directory, a FIFO, a parent that is a file) is a usage
    error."""
    if not os.path.lexists(path):
        for parent in path.parents:
            if os.path.lexists(parent):
                if not parent.is_dir():
                    raise HistoryError(f"history store {path}: expected a file path whose "
                                       f"directories can be made ({parent} is not a "
                                       "directory)")
                break
        return StoreFile(path, False, True)
    try:
        head = reading.read_head(path, 100)
    except OSError as e:
        raise HistoryError(f"history store {path}: expected an SQLite file ({e.strerror})"
                           ) from None
    if not head:
        return StoreFile(path, True, True)
    if not head.startswith(SQLITE_MAGIC):
        return StoreFile(path, True, False, tables=None, damage="file is not a database")
    app = int.from_bytes(head[68:72], "big")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            tables = tuple(r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"))
            checked_ = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.Error as e:
        return StoreFile(path, True, True, app, None, str(e))
    damage = None if checked_ == ["ok"] else "; ".join(checked_[:3])
    return StoreFile(path, True, True, app, tables, damage)


def refusal(found: StoreFile, shown: str) -> str | None:
    """Why the store at ``found`` may not be used, or None. A damaged store of ours is
    usable by setting it aside (when a run is saved)."""
    if found.foreign:
        what = ("it is not an SQLite database" if not found.sqlite
                else f"its tables are {', '.join(found.tables)}" if found.tables
                else "its header names another program" if found.application_id
                else f"it is damaged ({found.damage})")
        return f"history store {shown}: not a pytest-basht history ({what}); {NOT_OURS}"
    return None


class History:
    """The store: save runs, list them, find one by reference."""

    def __init__(self, url: URL | str, *, set_aside_corrupt: bool = False) -> None:
        self.url = make_url(url) if isinstance(url, str) else url
        self.shown = db.shown(self.url)
        self.set_aside: Path | None = None  # where a corrupt SQLite file was moved
        file = db.sqlite_file(self.url)
        found = examine(file) if file is not None else None
        if found is not None:
            why = refusal(found, self.shown)
            if why is not None:
                raise HistoryError(why)
            if found.damage is not None:
                if not set_aside_corrupt:
                    raise HistoryError(f"history store {self.shown}: cannot open it "
                                       f"({found.damage})")
                self._aside(found.path)
                found = None
        try:
            self._open(found)
        except exc.DatabaseError as e:
            if not (set_aside_corrupt and file is not None and _corrupt(e)):
                raise HistoryError(f"history store {self.shown}: cannot open it "
                                   f"({db.reason(e)})") from None
            self._aside(file)
            self._open(None)
        except (exc.SQLAlchemyError, ImportError, OSError) as e:
            raise HistoryError(f"history store {self.shown}: cannot open it "
                               f"({db.reason(e)})") from None

    def _aside(self, file: Path) -> None:
        """Keep the damaged file for whoever wants to recover it; a fresh store follows."""
        self.set_aside = file.with_name(f"{file.name}.corrupt-"
                                        f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
        file.rename(self.set_aside)

    def _open(self, found: StoreFile | None) -> None:
        self.engine: Engine = db.open_tables(self.url, Base.metadata)
        if db.sqlite_file(self.url) is not None and (
                found is None or found.application_id != APPLICATION_ID):
            with self.engine.begin() as conn:  # ours from now on, by its header
                conn.exec_driver_sql(f"PRAGMA application_id = {APPLICATION_ID}")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def save(self, report: dict[str, Any], *, name: str | None = None,
             path: Path | None = None, text: str | None = None) -> RunEntry:
        """Save a run; ``text``: the report's JSON as written already (else encoded here)."""
        machine = report.get("machine") or {}
        git = report.get("git") or {}
        scenarios = report.get("scenarios") or []
        energies = [sc["metrics"].get("energy_j") for sc in scenarios]
        row = RunRow(
            run_id=report["run_id"], name=name, created_utc=report.get("created_utc", ""),
            saved_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            machine_id=machine.get("id", ""), machine=machine,
            meter_source=machine.get("meter_source", ""), git_commit=git.get("commit"),
            git_branch=git.get("branch"), status=report.get("status", ""),
            schema_version=int(report.get("schema_version", 0)), n_scenarios=len(scenarios),
            energy_j=(sum(e for e in energies if e is not None)
                      if any(e is not None for e in energies) else None),
            report_path=str(path) if path is not None else None,
            report=text if text is not None else report_json.dumps(report))
        for sc in scenarios:
            m = sc["metrics"]
            row.scenarios.append(ScenarioRow(
                test_id=sc["test_id"], scenario_id=sc.get("scenario_id") or sc["test_id"],
                repeat=int(sc.get("repeat") or 1), experiment=sc.get("experiment"),
                outcome=sc.get("outcome", ""), energy_j=m.get("energy_j"),
                jct_ms=m.get("jct_ms"),
                metrics={k: v for k, v in m.items() if not isinstance(v, dict)}))
            conditions = sc.get("conditions") if isinstance(sc.get("conditions"), dict) else {}
            row.samples.append(SampleRow(
                scenario_id=sc.get("scenario_id") or sc["test_id"],
                machine_id=machine.get("id", ""), workload_key=workload_key(sc.get("workload")),
                status=sc.get("status", "complete"), values=sample_values(sc),
                conditions=conditions or None, load_1m=conditions.get("load_1m"),
                others_cpu_pct=conditions.get("others_cpu_pct"),
                steal_pct=conditions.get("steal_pct")))
        try:
            with Session(self.engine) as session, session.begin():
                if session.scalar(select(RunRow.id).where(RunRow.run_id == row.run_id)):
                    raise HistoryError(f"history store {self.shown}: run {row.run_id} is "
                                       "already saved")
                session.add(row)
                session.flush()
                return RunEntry.of(row)
        except exc.SQLAlchemyError as e:
            raise HistoryError(f"history store {self.shown}: cannot save run "
                               f"{row.run_id} ({db.reason(e)})") from None

    # ------------------------------------------------------------------ reading

    def runs(self, *, name: str | None = None, machine: dict[str, Any] | None = None,
             keys: tuple[str, ...] = (), limit: int | None = None) -> list[RunEntry]:
        """Saved runs, newest first; ``machine`` + ``keys`` keep runs whose fingerprint
        agrees with it on those keys (all keyed fields: the machine id)."""
        query = select(RunRow).order_by(RunRow.id.desc())
        if name is not None:
            query = query.where(RunRow.name == name)
        if machine is not None and not keys:
            query = query.where(RunRow.machine_id == machine.get("id"))
        try:
            with Session(self.engine) as session:
                rows = session.scalars(query).all()
                out = [RunEntry.of(r) for r in rows
                       if not keys or machine is None
                       or all((r.machine or {}).get(k) == machine.get(k) for k in keys)]
        except exc.SQLAlchemyError as e:
            raise HistoryError(f"history store {self.shown}: cannot list runs "
                               f"({db.reason(e)})") from None
        return out[:limit] if limit is not None else out

    def samples(self, scenario_id: str | None = None, machine_id: str | None = None,
                workload: str | None = None, *, limit: int | None = None,
                exclude_run: str | None = None) -> list[SampleEntry]:
        """Complete samples, newest first: of one scenario, machine fingerprint and workload
        (``noise.workload_key``) where those are given, and not of ``exclude_run``."""
        query = (select(SampleRow, RunRow.run_id).join(RunRow)
                 .where(SampleRow.status == "complete").order_by(SampleRow.id.desc())
                 .limit(limit))
        if exclude_run is not None:
            query = query.where(RunRow.run_id != exclude_run)
        for column, value in ((SampleRow.scenario_id, scenario_id),
                              (SampleRow.machine_id, machine_id),
                              (SampleRow.workload_key, workload)):
            if value is not None:
                query = query.where(column == value)
        try:
            with Session(self.engine) as session:
                return [SampleEntry(run_id, r.scenario_id, r.machine_id, r.workload_key,
                                    dict(r.values), r.conditions)
                        for r, run_id in session.execute(query)]
        except exc.SQLAlchemyError as e:
            raise HistoryError(f"history store {self.shown}: cannot read samples "
                               f"({db.reason(e)})") from None

    def count(self) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count(RunRow.id))) or 0)

    def names(self) -> list[str]:
        with Session(self.engine) as session:
            return sorted({n for n in session.scalars(select(RunRow.name)) if n})

    def report(self, run_id: str) -> dict[str, Any]:
        """The stored report of a run, checked like a report file."""
        with Session(self.engine) as session:
            text = session.scalar(select(RunRow.report).where(RunRow.run_id == run_id))
        label = f"{self.shown} run {run_id}"
        if text is None:
            raise HistoryError(f"{label}: no such run")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise report_json.ReportError(f"{label}: the stored report is not valid JSON "
                                          f"({e.msg}); it is corrupt") from None
        return checked(data, label)

    def find(self, ref: str, *, machine: dict[str, Any] | None = None,
             keys: tuple[str, ...] = ()) -> RunEntry:
        """``last``, ``last~N``, a saved name (its newest run) or a run id."""
        last = _LAST.match(ref)
        if last:
            back = int(last.group(1) or 0)
            runs = self.runs(machine=machine, keys=keys, limit=back + 1)
            if len(runs) > back:
                return runs[back]
            where = ""
            if machine is not None:
                shown = ", ".join(f"{k}={machine.get(k)!r}" for k in keys) or machine.get("id")
                where = f" of this machine ({shown}; {self.count()} in all)"
            raise HistoryError(f"{ref}: the history store {self.shown} holds {len(runs)} "
                               f"run(s){where}, so there is no {ref}")
        named = self.runs(name=ref, limit=1)
        if named:
            return named[0]
        with Session(self.engine) as session:
            row = session.scalar(select(RunRow).where(RunRow.run_id == ref))
            if row is not None:
                return RunEntry.of(row)
        names = self.names()
        raise HistoryError(f"{ref}: no report file of that name, and no run named or with id "
                           f"{ref!r} in the history store {self.shown} (saved names: "
                           f"{', '.join(names) or 'none'})")


def checked(data: Any, label: str) -> dict[str, Any]:
    """The schema check ``report_json.load`` makes, for a report from anywhere."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise report_json.ReportError(f"{label}: not a pytest-basht report (no schema_version)")
    version = data["schema_version"]
    if version != report_json.SCHEMA_VERSION:
        raise report_json.ReportError(f"{label}: schema_version {version!r}, this pytest-basht "
                                      f"reads version {report_json.SCHEMA_VERSION}")
    return data


def _corrupt(error: BaseException) -> bool:
    """SQLite's words for a damaged file (SQLITE_NOTADB, SQLITE_CORRUPT)."""
    text = str(getattr(error, "orig", error))
    return "file is not a database" in text or "malformed" in text


def looks_like_path(ref: str) -> bool:
    return ref.endswith(".json") or "/" in ref or "\\" in ref or Path(ref).exists()


@dataclass(frozen=True)
class Resolved:
    report: dict[str, Any]
    label: str


def resolve(ref: str, history: History | None, *, machine: dict[str, Any] | None = None,
            keys: tuple[str, ...] = ()) -> Resolved:
    """A report from a reference: a file or run directory first, then the history."""
    if looks_like_path(ref):
        return Resolved(report_json.load(ref), str(ref))
    if history is None:
        raise HistoryError(f"{ref}: no such report file, and the history is off "
                           "(--basht-history off), so it cannot be a saved run")
    entry = history.find(ref, machine=machine, keys=keys)
    label = f"run {entry.run_id}" + (f" ('{entry.name}')" if entry.name else "") \
        + f" from the history {history.shown}"
    return Resolved(history.report(entry.run_id), label)


@dataclass(frozen=True)
class Saved:
    """What saving a run in the history came to, for the terminal and the exit status."""

    line: str
    alarming: bool
    failed: bool  # the run was not saved under the name --basht-save asked for


def _written(path: Path) -> str | None:
    """The report.json just written (encoding a large report twice costs seconds)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


@dataclass
class SessionHistory:
    """A pytest run's history store: ``--basht-history`` (None: the default file under
    ``rootdir``; ``off``: none), opened on first use, saved in at the end, closed once."""

    setting: str | None
    rootdir: Path
    name: str | None = None  # --basht-save: the name to save the run under
    _store: History | None = None

    def check(self) -> None:
        """Before the run: a run cannot be saved under a name in a history that is off, and
        an SQLite store must be a file of ours, or a path where one can be made."""
        if self.name is not None and is_off(self.setting):
            raise OptionError("--basht-save", "a history store to save in (it is off)",
                              self.name)
        if is_off(self.setting):
            return
        url = store_url(self.setting, self.rootdir)
        file = db.sqlite_file(url)
        if file is not None:
            why = refusal(examine(file), db.shown(url))
            if why is not None:
                raise HistoryError(why)

    def store(self, *, set_aside_corrupt: bool = False) -> History | None:
        """The store (opened on first use), or None with ``--basht-history off``.
        ``set_aside_corrupt``: a damaged SQLite file is moved aside for a fresh one (when a
        run is saved; a baseline is never looked up in an empty store)."""
        if is_off(self.setting):
            return None
        if self._store is None:
            self._store = History(store_url(self.setting, self.rootdir),
                                  set_aside_corrupt=set_aside_corrupt)
        return self._store

    def save(self, report: dict[str, Any], path: Path) -> Saved | None:
        """Save the run (its report.json at ``path``); None with the history off."""
        try:
            store = self.store(set_aside_corrupt=True)
            if store is None:
                return None
            entry = store.save(report, name=self.name, path=path, text=_written(path))
        except BashtUsageError as exc:
            return Saved(f"history: not saved: {exc}", True, self.name is not None)
        named = f" as '{entry.name}'" if entry.name else ""
        line = f"history: saved run {entry.run_id}{named} in {store.shown}"
        if store.set_aside is None:
            return Saved(line, False, False)
        return Saved(f"{line} — a fresh store: the old one was damaged and is kept as "
                     f"{store.set_aside}", True, False)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

"""The database layer every store shares (``pytest_basht.db``), and the one rule by which a
URL is shown (``pytest_basht.urls.redact``): each URL form read, normalised, given its
password and shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import make_url

from pytest_basht import db
from pytest_basht.urls import redact


@pytest.fixture(autouse=True)
def no_password_in_the_environment(monkeypatch):
    monkeypatch.delenv(db.PASSWORD_ENV, raising=False)
    monkeypatch.delenv(db.LIBPQ_PASSWORD_ENV, raising=False)


@pytest.mark.parametrize("value, expected", [
    ("postgres://ci@db/basht", "postgresql+psycopg://ci@db/basht"),
    ("postgresql://ci:pw@db:5432/basht", "postgresql+psycopg://ci:pw@db:5432/basht"),
    ("postgresql+psycopg://ci@db/basht", "postgresql+psycopg://ci@db/basht"),
    ("postgresql+psycopg2://ci@db/basht", "postgresql+psycopg2://ci@db/basht"),
    ("sqlite:///rel/h.db", "sqlite:///rel/h.db"),
    ("sqlite:////abs/h.db", "sqlite:////abs/h.db"),
])
def test_parse_means_psycopg_3_for_postgresql_and_leaves_paths_alone(value, expected):
    assert db.parse(value).render_as_string(hide_password=False) == expected


def test_parse_refuses_what_is_not_a_url():
    with pytest.raises(exc.ArgumentError):
        db.parse("runs.db")


@pytest.mark.parametrize("value, expected", [
    ("runs.db", "sqlite:///{root}/runs.db"),
    ("sub/runs.db", "sqlite:///{root}/sub/runs.db"),
    ("/abs/runs.db", "sqlite:////abs/runs.db"),
    ("~/runs.db", "sqlite:///{home}/runs.db"),
    ("sqlite:///rel/h.db", "sqlite:///{root}/rel/h.db"),
    ("sqlite:////abs/h.db", "sqlite:////abs/h.db"),
    ("sqlite://", "sqlite://"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("postgres://ci@db/basht", "postgresql+psycopg://ci@db/basht"),
])
def test_locate_takes_a_url_or_a_file_path_under_the_rootdir(tmp_path, value, expected):
    url = db.locate(value, tmp_path)
    assert url == make_url(expected.format(root=tmp_path, home=Path.home()))


def test_sqlite_file_names_a_file_only():
    assert db.sqlite_file(db.parse("sqlite:////abs/h.db")) == Path("/abs/h.db")
    assert db.sqlite_file(db.parse("sqlite://")) is None
    assert db.sqlite_file(db.parse("sqlite:///:memory:")) is None
    assert db.sqlite_file(db.parse("postgresql://ci@db/basht")) is None


def test_the_password_comes_from_the_environment_when_the_url_has_none(monkeypatch):
    monkeypatch.setenv(db.LIBPQ_PASSWORD_ENV, "libpq")
    assert db.connect_string("postgresql://ci@db/b") == "postgresql+psycopg://ci:libpq@db/b"
    monkeypatch.setenv(db.PASSWORD_ENV, "ours")
    assert db.connect_string("postgresql://ci@db/b") == "postgresql+psycopg://ci:ours@db/b"
    # a URL's own password stands; a file has none; PGPASSWORD is PostgreSQL's alone
    assert db.connect_string("postgresql://ci:own@db/b") == "postgresql+psycopg://ci:own@db/b"
    assert db.connect_string("sqlite:////abs/h.db") == "sqlite:////abs/h.db"
    monkeypatch.delenv(db.PASSWORD_ENV)
    assert db.connect_string("mysql://ci@db/b") == "mysql://ci@db/b"
    shown = db.shown(db.with_password(db.parse("postgresql://ci@db/b")))
    assert "libpq" not in shown and shown == "postgresql+psycopg://ci:***@db/b"


@pytest.mark.parametrize("url, expected", [
    ("postgresql+psycopg://ci:s3cret@db.example:5432/basht",
     "postgresql+psycopg://ci:***@db.example:5432/basht"),
    ("postgresql://ci@db/basht", "postgresql://ci@db/basht"),
    ("postgresql://ci:@db/basht", "postgresql://ci:***@db/basht"),
    ("sqlite:////abs/h.db", "sqlite:////abs/h.db"),
    ("sqlite://", "sqlite://"),
    ("postgresql://ci:s3cret@db:notaport/basht", "postgresql://ci:***@db:notaport/basht"),
    ("a b://ci:s3cret@h/b", "a b://ci:***@h/b"),
])
def test_shown_hides_the_password_and_keeps_the_user(url, expected):
    assert db.shown(url) == expected


def test_shown_hides_a_password_with_characters_a_url_must_quote():
    url = db.parse("postgresql://ci@db/basht").set(password="p@ss/w:rd")
    assert db.shown(url) == "postgresql+psycopg://ci:***@db/basht"
    assert "ss" not in db.shown(url.render_as_string(hide_password=False))


@pytest.mark.parametrize("url, expected, kept", [
    ("http://basht:hunter2@127.0.0.1:9090/x?q=1#f", "http://***@127.0.0.1:9090/x?q=1#f",
     "http://basht:***@127.0.0.1:9090/x?q=1#f"),
    ("https://token@push.example", "https://***@push.example", "https://token@push.example"),
    ("http://u:p@[::1]:9090", "http://***@[::1]:9090", "http://u:***@[::1]:9090"),
    ("http://u:p@host:notaport", "http://***@host:notaport", "http://u:***@host:notaport"),
    ("http://u:p@[::1", "http://***@[::1", "http://u:***@[::1"),
    ("http://127.0.0.1:9090", "http://127.0.0.1:9090", "http://127.0.0.1:9090"),
    ("http://host/a//b@c?d=e@f", "http://host/a//b@c?d=e@f", "http://host/a//b@c?d=e@f"),
    ("sqlite:////abs/x@y.db", "sqlite:////abs/x@y.db", "sqlite:////abs/x@y.db"),
    ("postgresql+psycopg://ci:pw@db/b", "postgresql+psycopg://***@db/b",
     "postgresql+psycopg://ci:***@db/b"),
])
def test_redact_is_the_one_rule_for_every_url(url, expected, kept):
    assert redact(url) == expected
    assert redact(url, keep_user=True) == kept
    assert redact(None) is None


def test_engine_creates_the_directory_of_an_sqlite_file(tmp_path):
    url = db.locate("deep/er/h.db", tmp_path)
    engine = db.engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("select 1"))
    engine.dispose()
    assert (tmp_path / "deep" / "er" / "h.db").is_file()


def test_create_tables_tolerates_another_process_creating_them_meanwhile(tmp_path):
    class Racing(sa.MetaData):
        """The first create_all loses a race with another process (PostgreSQL's
        duplicate-table error), as two xdist workers saving runs at once can."""

        tries = 0

        def create_all(self, bind, **kwargs):
            type(self).tries += 1
            super().create_all(bind, **kwargs)
            if type(self).tries == 1:
                raise exc.ProgrammingError("CREATE TABLE t", {}, Exception("already exists"))

    metadata = Racing()
    sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True))
    engine = db.open_tables(db.locate("race.db", tmp_path), metadata)
    assert Racing.tries == 2 and sa.inspect(engine).has_table("t")
    engine.dispose()


def test_load_driver_names_a_missing_dialect():
    with pytest.raises(exc.NoSuchModuleError, match="notadriver"):
        db.load_driver(db.parse("notadriver://x/y"))
    db.load_driver(db.parse("sqlite:///x.db"))


def test_reason_is_the_first_line_of_what_the_database_said():
    error = exc.OperationalError("select", {}, Exception("could not connect\nDETAIL: x"))
    assert db.reason(error) == "could not connect"
    assert db.reason(RuntimeError()) == "RuntimeError"

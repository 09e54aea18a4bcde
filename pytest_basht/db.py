"""The SQL databases pytest-basht keeps its tables in: the run history (``report.history``),
the jobs of Zeus's batch size optimizer (``zeus.store``) and a distributed deployment's
study and fleet (``sut.store``) — one way to read their URLs, connect, create tables and
show a URL.

A URL is SQLAlchemy's: ``postgres://`` and ``postgresql://`` mean psycopg 3, our
dependency (SQLAlchemy's default would be psycopg2). Where a setting may also be a file
(``--basht-history``, the BSO's ``store``), a plain path is an SQLite file, and a relative
SQLite path lies under the rootdir. A URL without a password connects with the one in
BASHT_STORAGE_PASSWORD (for PostgreSQL, else libpq's PGPASSWORD; ~/.pgpass works too), so
that no workload, option or report ever holds one; a URL is shown through
``urls.redact`` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, exc
from sqlalchemy.engine import URL, Engine, make_url

from pytest_basht.urls import redact, secret_params

PASSWORD_ENV = "BASHT_STORAGE_PASSWORD"
LIBPQ_PASSWORD_ENV = "PGPASSWORD"  # PostgreSQL's own, read when ours is not set


def parse(value: str) -> URL:
    """An SQLAlchemy URL, ``postgresql://`` meaning psycopg 3 (sqlalchemy's ArgumentError
    when ``value`` is none)."""
    url = make_url(value)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def sqlite_file(url: URL) -> Path | None:
    """The file of an SQLite database; None for another database, or one in memory."""
    if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
        return Path(url.database)
    return None


def locate(value: str, rootdir: Path) -> URL:
    """A URL or a file path (``~`` expanded), as a URL: a plain path is an SQLite file, and
    a relative SQLite path lies under ``rootdir``."""
    if "://" not in value:
        path = Path(value).expanduser()
        return make_url(f"sqlite:///{path if path.is_absolute() else rootdir / path}")
    url = parse(value)
    file = sqlite_file(url)
    if file is not None and not file.is_absolute():
        url = url.set(database=str(rootdir / file))
    return url


def with_password(url: URL) -> URL:
    """The URL to connect with: the environment's password when it has none. Never show
    it (``shown`` is what may be shown)."""
    if url.password is not None or url.drivername.startswith("sqlite"):
        return url
    names = (PASSWORD_ENV, LIBPQ_PASSWORD_ENV) if url.drivername.startswith("postgres") \
        else (PASSWORD_ENV,)
    secret = next((os.environ[n] for n in names if os.environ.get(n)), None)
    return url if secret is None else url.set(password=secret)


def connect_string(url: URL | str) -> str:
    """``with_password`` as text, for a library that takes a URL string (Optuna's
    RDBStorage). Never show it."""
    return with_password(parse(url) if isinstance(url, str) else url).render_as_string(
        hide_password=False)


def load_driver(url: URL) -> None:
    """Import the URL's dialect and driver: a missing one raises now, not at connect."""
    url.get_dialect().import_dbapi()


def checked(value: str) -> URL:
    """``value`` parsed, its driver loaded: the URL, or a ``ValueError`` saying why not
    (SQLAlchemy's ArgumentError, NoSuchModuleError, a bad port; redacted)."""
    try:
        url = parse(value.strip())
        load_driver(url)
    except Exception as exc:  # each driver and dialect raises its own kind
        raise ValueError(f"{type(exc).__name__}: {redact(str(exc))}") from None
    return url


def secrets_in(url: URL) -> list[str]:
    """What of ``url`` holds a secret: ``password`` (its userinfo) and the names of its
    secret query parameters (libpq's ``?password=``, ``?sslpassword=``...)."""
    return (["password"] if url.password is not None else []) + [
        name for name in url.query if secret_params(f"?{name}=")]


def engine(url: URL, **options: Any) -> Engine:
    """An engine on ``url`` with the environment's password (an SQLite file's directory
    created); it connects when first used."""
    file = sqlite_file(url)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    return create_engine(with_password(url), **options)


def create_tables(metadata: MetaData, bound: Engine) -> None:
    """Create the tables of ``metadata`` that are missing. Another process may create them
    at the same moment (xdist workers saving runs, workers joining a deployment): the
    loser of that race fails, and finds them there on a second try."""
    try:
        metadata.create_all(bound)
    except (exc.IntegrityError, exc.ProgrammingError):
        metadata.create_all(bound)


def open_tables(url: URL, metadata: MetaData, **options: Any) -> Engine:
    """An engine on ``url`` with the tables of ``metadata`` created; nothing stays open when
    that fails."""
    bound = engine(url, **options)
    try:
        create_tables(metadata, bound)
    except BaseException:
        bound.dispose()
        raise
    return bound


def reason(error: BaseException) -> str:
    """The first line of what the database or its driver said (redacted: a driver may
    quote the URL it was given)."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip().splitlines()
    return str(redact(text[0])) if text else type(error).__name__


def shown(url: URL | str) -> str:
    """The URL as a log line, an error or a report shows it: the password hidden, the user
    kept (``urls.redact``). Text SQLAlchemy cannot read is redacted as it stands."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (exc.ArgumentError, ValueError):  # not a URL, or a bad port
            return str(redact(url, keep_user=True))
    return str(redact(url.render_as_string(hide_password=False), keep_user=True))

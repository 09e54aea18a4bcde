"""A real PostgreSQL server for tests: a fresh cluster in a temporary directory, on 127.0.0.1.

``PostgresServer`` runs Debian's binaries (``.ci/install-postgresql`` installs them): initdb
into a temporary directory, then ``postgres`` listening on 127.0.0.1 on a free port, trust
authentication, no Unix socket. PostgreSQL refuses to run as root, so under root the
cluster belongs to the ``postgres`` system user. The ``postgres_server`` fixture (session
scope) skips only when the binaries are absent; every other failure is an error.

Use it from a test module::

    from postgres import postgres_server  # noqa: F401  (a fixture)

    def test_x(postgres_server):
        url = postgres_server.create_database("mine")   # postgresql+psycopg://...
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0


def binaries() -> Path | None:
    """The directory holding initdb and postgres (PATH first, then Debian's layout)."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(os.path.realpath(initdb)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throw-away cluster; ``url(db)`` gives SQLAlchemy URLs (psycopg 3) to it."""

    user = "basht"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="basht-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, and there is no 'postgres' user to own "
                                   "the cluster (Debian's postgresql package creates it)") from None
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)

    def _run_as(self) -> dict[str, object]:
        if self._owner is None:
            return {}
        return {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": str(self.root), "USER": "postgres"},
                "cwd": str(self.root)}

    def start(self) -> PostgresServer:
        init = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
             "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"],
            capture_output=True, text=True, timeout=120, **self._run_as())  # type: ignore
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                 "-c", "fsync=off", "-c", "full_page_writes=off"],
                stdout=log, stderr=subprocess.STDOUT, **self._run_as())  # type: ignore
        self._wait()
        return self

    def _wait(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not accept connections within "
                                       f"{START_TIMEOUT_S:.0f} s: "
                                       f"{self.log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.2)

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        auth = self.user if password is None else f"{self.user}:{password}"
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def running_postgres() -> Iterator[PostgresServer]:
    """A started server, stopped and removed afterwards; skips without the binaries."""
    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (.ci/install-postgresql installs "
                    "Debian's postgresql)")
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from running_postgres()

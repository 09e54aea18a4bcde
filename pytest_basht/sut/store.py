"""A distributed deployment's shared tables, in the database of its Optuna storage.

Beside Optuna's own schema (studies, trials, heartbeats), a deployment of the ``optuna``
SUT over an SQLAlchemy URL keeps four small tables, created at deploy:

* ``basht_deployments`` — one row per deployment (its study name): the controller, the
  worker slots, the heartbeat settings and the scenario the workers are to run;
* ``basht_workers`` — one row per ``basht worker`` that joined: its slot (unique within
  the deployment, so two workers can never take one), host, pid, clock offset, state and
  last beat;
* ``basht_energy`` — chunks of each worker's cumulative energy timeline (its own meter);
* ``basht_artifacts`` — trial artifacts (the models the test phase loads), unless
  ``sut.options.artifacts`` names a shared directory.

Everything a deployment wrote is deleted at undeploy; Optuna's tables stay (other studies
may live there), the deployment's studies are deleted from them. The URL is read,
connected to (its password from the environment) and shown as every store's (``db``).
"""

from __future__ import annotations

import io
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import sqlalchemy as sa

import pytest_basht.db as db
from pytest_basht.energy.self_meter import wall_offset_ns

#: a controller silent this long is gone: its workers leave, its name may be taken over
CONTROLLER_STALE_S = 120.0
CONTROLLER_BEAT_S = 2.0

metadata = sa.MetaData()

deployments = sa.Table(
    "basht_deployments", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("controller", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # open, closed
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("local", sa.Integer, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False, default=0),
    sa.Column("phase", sa.String(16), nullable=False, default="idle"),  # setup, run, done
    sa.Column("scenario", sa.JSON, nullable=True),
    sa.Column("beat", sa.Float, nullable=False, default=0.0),  # the controller's, wall s
)

workers = sa.Table(
    "basht_workers", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("deployment", sa.String(255), nullable=False, index=True),
    sa.Column("slot", sa.Integer, nullable=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("offset_ns", sa.BigInteger, nullable=False),
    sa.Column("info", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # joined, ready, running, idle, left, lost
    sa.Column("seq", sa.Integer, nullable=False, default=0),
    sa.Column("beat", sa.Float, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("discarded", sa.Integer, nullable=False, default=0),
    sa.UniqueConstraint("deployment", "slot", name="basht_workers_slot"),
)

energy = sa.Table(
    "basht_energy", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment", sa.String(255), nullable=False, index=True),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("points", sa.JSON, nullable=False),
)

artifacts = sa.Table(
    "basht_artifacts", metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("deployment", sa.String(255), nullable=False, index=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


class StoreError(RuntimeError):
    """The shared store refused what the deployment asked (a name taken, no free slot)."""


def rdb_storage(url: str, heartbeat_s: int, grace_s: int, retries: int) -> Any:
    """Optuna's RDBStorage with the heartbeat on: a trial whose process stops beating for
    ``grace_s`` is failed by the next process that asks for a trial (or by the controller),
    and re-queued ``retries`` times with the same parameters."""
    import optuna

    callback = (optuna.storages.RetryFailedTrialCallback(max_retry=retries)
                if retries > 0 else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            db.connect_string(url),
            heartbeat_interval=heartbeat_s, grace_period=grace_s,
            heartbeat_stale_trial_callback=callback)


@dataclass
class WorkerRow:
    id: str
    slot: int | None
    host: str
    pid: int
    offset_ns: int
    info: dict[str, Any]
    state: str
    seq: int
    beat: float
    error: str | None
    discarded: int

    def describe(self) -> str:
        where = f"slot {self.slot}" if self.slot is not None else "no slot"
        return f"worker {self.id[:8]} ({where}, {self.host} pid {self.pid})"


@dataclass
class DeploymentRow:
    name: str
    controller: dict[str, Any]
    state: str
    slots: int
    local: int
    settings: dict[str, Any]
    seq: int
    phase: str
    scenario: dict[str, Any] | None
    beat: float = 0.0

    def silent_s(self) -> float:
        """Seconds since the controller's last beat."""
        return time.time() - self.beat


class FleetStore:
    """The deployment's rows, for the controller and for every worker."""

    def __init__(self, url: str, deployment: str) -> None:
        self.url = url
        self.deployment = deployment
        self.engine = db.engine(db.parse(url), pool_pre_ping=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ---------------------------------------------------------------- the controller

    def create_schema(self) -> None:
        db.create_tables(metadata, self.engine)

    def open(self, *, slots: int, local: int, settings: dict[str, Any],
             stale_s: float = CONTROLLER_STALE_S) -> list[str]:
        """Create the deployment's row. A leftover of a controller that died (its process
        gone from this host, or no beat for ``stale_s``) is cleared with a note; a live
        controller's name is refused."""
        notes: list[str] = []
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        with self._tx() as conn:
            old = conn.execute(sa.select(deployments).where(
                deployments.c.name == self.deployment)).mappings().first()
            if old is not None:
                owner = old["controller"]
                silent = time.time() - float(old["beat"] or 0.0)
                if not _dead_here(owner) and silent < stale_s:
                    raise StoreError(
                        f"deployment {self.deployment!r} is in use by the controller on "
                        f"{owner.get('host')} (pid {owner.get('pid')}, last beat "
                        f"{silent:.0f} s ago); set another sut.options.study")
                notes.append(f"cleared the leftover deployment {self.deployment!r} of a "
                             f"controller that died ({owner.get('host')} pid "
                             f"{owner.get('pid')})")
                self._delete_rows(conn)
            conn.execute(deployments.insert().values(
                name=self.deployment, controller=me, state="open", slots=slots, local=local,
                settings=settings, seq=0, phase="idle", scenario=None, beat=time.time()))
        return notes

    def controller_beat(self) -> None:
        self._update_deployment(beat=time.time())

    def announce(self, seq: int, scenario: dict[str, Any]) -> None:
        self._update_deployment(seq=seq, scenario=scenario, phase="setup")

    def set_phase(self, phase: str) -> None:
        self._update_deployment(phase=phase)

    def start_run(self, started_s: float) -> None:
        """The scenario's run starts now: its phase, and its start (wall clock), from which
        every worker counts the workload's budget."""
        with self._tx() as conn:
            row = conn.execute(sa.select(deployments.c.scenario).where(
                deployments.c.name == self.deployment)).first()
            scenario = {**(row[0] if row is not None and row[0] else {}),
                        "started_s": started_s}
            conn.execute(deployments.update().where(
                deployments.c.name == self.deployment).values(phase="run",
                                                              scenario=scenario))

    def set_state(self, state: str) -> None:
        self._update_deployment(state=state)

    def _update_deployment(self, **values: Any) -> None:
        with self._tx() as conn:
            conn.execute(deployments.update().where(
                deployments.c.name == self.deployment).values(**values))

    def mark_lost(self, worker_id: str, reason: str) -> None:
        """Free a silent worker's slot for a replacement; keep its row for the report."""
        with self._tx() as conn:
            conn.execute(workers.update().where(workers.c.id == worker_id).values(
                slot=None, state="lost", error=reason))

    def energy_since(self, after_id: int) -> list[tuple[int, str, dict[str, Any]]]:
        with self._tx() as conn:
            rows = conn.execute(sa.select(energy.c.id, energy.c.worker, energy.c.points).where(
                energy.c.deployment == self.deployment, energy.c.id > after_id
            ).order_by(energy.c.id)).all()
        return [(int(r[0]), str(r[1]), dict(r[2])) for r in rows]

    def remove(self) -> None:
        with self._tx() as conn:
            self._delete_rows(conn)

    def _delete_rows(self, conn: sa.Connection) -> None:
        for table in (workers, energy, artifacts):
            conn.execute(table.delete().where(table.c.deployment == self.deployment))
        conn.execute(deployments.delete().where(deployments.c.name == self.deployment))

    # ---------------------------------------------------------------- both

    def deployment_row(self) -> DeploymentRow | None:
        with self._tx() as conn:
            row = conn.execute(sa.select(deployments).where(
                deployments.c.name == self.deployment)).mappings().first()
        if row is None:
            return None
        return DeploymentRow(**{k: row[k] for k in (
            "name", "controller", "state", "slots", "local", "settings", "seq", "phase",
            "scenario", "beat")})

    def workers(self) -> list[WorkerRow]:
        with self._tx() as conn:
            rows = conn.execute(sa.select(workers).where(
                workers.c.deployment == self.deployment).order_by(workers.c.beat)).mappings()
            return [WorkerRow(**{k: r[k] for k in (
                "id", "slot", "host", "pid", "offset_ns", "info", "state", "seq", "beat",
                "error", "discarded")}) for r in rows]

    # ---------------------------------------------------------------- a worker

    def join(self, worker_id: str, info: dict[str, Any]) -> int | None:
        """Take the lowest free remote slot (the unique constraint settles races); None
        when every slot is taken."""
        for _ in range(64):
            dep = self.deployment_row()
            if dep is None or dep.state != "open":
                return None
            taken = {w.slot for w in self.workers() if w.slot is not None}
            free = [s for s in range(dep.local, dep.slots) if s not in taken]
            if not free:
                return None
            try:
                with self._tx() as conn:
                    conn.execute(workers.insert().values(
                        id=worker_id, deployment=self.deployment, slot=free[0],
                        host=socket.gethostname(), pid=os.getpid(), offset_ns=wall_offset_ns(),
                        info=info, state="joined", seq=0, beat=time.time(), error=None,
                        discarded=0))
                return free[0]
            except sa.exc.IntegrityError:
                continue  # another worker took that slot at the same moment
        raise StoreError("could not take a slot after 64 attempts")

    def beat(self, worker_id: str, **values: Any) -> WorkerRow | None:
        """Record a beat (and a new state); the worker's row as the controller left it."""
        with self._tx() as conn:
            conn.execute(workers.update().where(workers.c.id == worker_id).values(
                beat=time.time(), **values))
            row = conn.execute(sa.select(workers).where(
                workers.c.id == worker_id)).mappings().first()
        if row is None:
            return None
        return WorkerRow(**{k: row[k] for k in (
            "id", "slot", "host", "pid", "offset_ns", "info", "state", "seq", "beat", "error",
            "discarded")})

    def add_energy(self, worker_id: str, points: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(energy.insert().values(deployment=self.deployment, worker=worker_id,
                                                points=points))


def _dead_here(owner: dict[str, Any]) -> bool:
    """A controller on this host whose process is gone (a leftover to clear)."""
    if owner.get("host") != socket.gethostname():
        return False
    pid = int(owner.get("pid", 0))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class SqlArtifactStore:
    """Optuna's artifact-store protocol over the ``basht_artifacts`` table: the trained
    models reach the controller's test phase through the database the workers share
    (Optuna ships file-system, S3 and GCS stores; none for SQL)."""

    def __init__(self, store: FleetStore) -> None:
        self.store = store

    def open_reader(self, artifact_id: str) -> BinaryIO:
        with self.store._tx() as conn:
            data = conn.execute(sa.select(artifacts.c.data).where(
                artifacts.c.id == artifact_id)).scalar()
        if data is None:
            import optuna

            raise optuna.artifacts.exceptions.ArtifactNotFound(
                f"artifact {artifact_id} is not in {db.shown(self.store.url)}")
        return io.BytesIO(bytes(data))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        with self.store._tx() as conn:
            conn.execute(artifacts.insert().values(id=artifact_id,
                                                   deployment=self.store.deployment,
                                                   data=content_body.read()))

    def remove(self, artifact_id: str) -> None:
        with self.store._tx() as conn:
            conn.execute(artifacts.delete().where(artifacts.c.id == artifact_id))


def artifact_store(store: FleetStore, where: str) -> Any:
    """The deployment's artifact store: the database, or a directory every host mounts."""
    if where == "database":
        return SqlArtifactStore(store)
    import optuna

    os.makedirs(where, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(where)


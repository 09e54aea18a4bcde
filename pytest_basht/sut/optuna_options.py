"""The ``optuna`` SUT's options, validated: the journal variant takes none; over a
database (``storage``) they say where the study lives, how many worker slots this
controller fills, and how lost workers are noticed (Optuna's heartbeat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest_basht.db as db
from pytest_basht.errors import WorkloadError
from pytest_basht.sut.base import own_options
from pytest_basht.workload import Workload

OPTIONS = {
    "storage": "SQLAlchemy URL of the study's database (no password: BASHT_STORAGE_PASSWORD, "
               "PGPASSWORD or ~/.pgpass)",
    "study": "the deployment's name, which `basht worker --study` joins (default: the "
             "workload's name)",
    "local_workers": "worker slots this controller fills with its own processes (default: "
                     "all); the others wait for `basht worker`",
    "heartbeat_s": "seconds between Optuna heartbeats of a running trial (default 5)",
    "grace_s": "seconds without a heartbeat after which a trial is failed and its worker "
               "lost (default 3 × heartbeat_s)",
    "retries": "times a lost worker's trial is re-queued with its parameters (Optuna's "
               "RetryFailedTrialCallback; default 0)",
    "join_timeout_s": "seconds deploy waits for remote workers to join, and a run without "
                      "workers for a replacement (default 600)",
    "artifacts": "where trained models go: database (default), or a directory every host "
                 "mounts",
}
MAX_HEARTBEAT_S = 3600


@dataclass(frozen=True)
class StoreOptions:
    storage: str | None = None
    study: str = ""
    local_workers: int = 0
    heartbeat_s: int = 5
    grace_s: int = 15
    retries: int = 0
    join_timeout_s: float = 600.0
    artifacts: str = "database"

    @property
    def heartbeat(self) -> dict[str, int]:
        return {"heartbeat_s": self.heartbeat_s, "grace_s": self.grace_s,
                "retries": self.retries}

    @classmethod
    def parse(cls, workload: Workload) -> StoreOptions:
        """The ``optuna`` SUT's options, validated (a WorkloadError names the key)."""
        src = workload.source
        opts = own_options(workload, "optuna", OPTIONS,
                           strict="storage" in workload.sut.options)
        wn = workload.workers.count
        if "storage" not in opts:
            extra = sorted(set(opts))
            if extra:
                raise WorkloadError(src, f"sut.options.{extra[0]}",
                                    "sut.options.storage with it (it applies to a study in "
                                    "a database)")
            return cls(local_workers=wn)
        storage = _storage_url(opts["storage"], src)
        study = opts.get("study", workload.name)
        if not isinstance(study, str) or not study.strip() or len(study) > 200:
            raise WorkloadError(src, "sut.options.study", "a name of 1 to 200 characters",
                                study)
        local = _integer(opts, "local_workers", wn, 0, wn, src)
        heartbeat = _integer(opts, "heartbeat_s", 5, 1, MAX_HEARTBEAT_S, src)
        grace = _integer(opts, "grace_s", 3 * heartbeat, heartbeat + 1, 10 * MAX_HEARTBEAT_S,
                         src)
        retries = _integer(opts, "retries", 0, 0, 100, src)
        join = opts.get("join_timeout_s", 600.0)
        if (isinstance(join, bool) or not isinstance(join, (int, float))
                or not math.isfinite(join) or join <= 0):
            raise WorkloadError(src, "sut.options.join_timeout_s", "seconds > 0", join)
        artifacts = opts.get("artifacts", "database")
        if not isinstance(artifacts, str) or not artifacts.strip():
            raise WorkloadError(src, "sut.options.artifacts",
                                "database, or a directory every host mounts", artifacts)
        if local < wn and workload.search.grouped:
            key = "search.fusion" if workload.search.fusion > 1 else "search.scaling"
            raise WorkloadError(src, key, "1 with remote workers (fused and scaled trials "
                                "run on local workers: set sut.options.local_workers to "
                                f"workers.count, {wn})", getattr(workload.search, key[7:]))
        return cls(storage, study.strip(), local, heartbeat, grace, retries, float(join),
                   artifacts.strip())


def _storage_url(value: Any, src: str) -> str:
    key = "sut.options.storage"
    expected = ("an SQLAlchemy URL, e.g. postgresql+psycopg://user@host:5432/basht or "
                "sqlite:///basht.db")
    if not isinstance(value, str) or not value.strip():
        raise WorkloadError(src, key, expected, value)
    try:
        url = db.checked(value)
    except ValueError as exc:
        raise WorkloadError(src, key, f"{expected} whose driver is installed ({exc})",
                            db.shown(value)) from None
    secrets = db.secrets_in(url)
    if secrets:
        raise WorkloadError(src, key, "a URL without a password (a workload is copied into "
                            "every report; this one holds " + ", ".join(secrets) + "): set "
                            "BASHT_STORAGE_PASSWORD, PGPASSWORD or ~/.pgpass", db.shown(value))
    return value.strip()


def _integer(opts: dict[str, Any], key: str, default: int, low: int, high: int,
             src: str) -> int:
    value = opts.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WorkloadError(src, f"sut.options.{key}", f"an integer from {low} to {high}",
                            value)
    return value

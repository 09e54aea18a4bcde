"""The BSO's state in the history store: one row per job, one row per attempt.

A job row holds what must stay fixed across its recurrences (batch sizes, default,
policy, cost definition, target), its current knobs (β, window, prior) and a snapshot of
the optimizer's state after the last observation. Attempt rows are the log the state is
replayed from (``bso``): the batch size decided, the stage that decided it, the early-stop
threshold, and once the attempt ended its cost, energy, time and whether it reached the
target. An attempt that never reported back (its process died) stays unobserved and is
left out of the replay. Deciding reads the log and appends to it in one transaction, so
two processes cannot take the same place in a job's sequence.

SQLite by default, any SQLAlchemy URL (PostgreSQL through psycopg 3): the run history's
database and URL rules (``report.history``), in tables of the BSO's own (``tables``),
created when the store opens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import exc, func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

import pytest_basht.db as db
from pytest_basht.report.history import HistoryError, store_url
from pytest_basht.zeus import bso
from pytest_basht.zeus.config import JobConfig
from pytest_basht.zeus.tables import Base, BsoAttemptRow, BsoJobRow

RETRIES = 5  # another process took the same sequence number: read again and retry


class JobMismatch(HistoryError):
    """A workload that would continue a job under a setup its costs do not compare with."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """JSON-ready: infinities and NaN as None (stored JSON must be strict)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Started:
    """An attempt the store has recorded as decided."""

    attempt_id: int
    seq: int
    recurrence: int
    decision: bso.Decision


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended."""

    state: str  # complete, pruned, failed
    converged: bool
    early_stopped: bool
    cost: float
    energy_j: float
    time_s: float
    epochs: int
    value: float | None


Decider = Callable[[list[bso.Observation], int, int], bso.Decision]


def observation(row: BsoAttemptRow) -> bso.Observation:
    assert row.cost is not None
    return bso.Observation(row.recurrence, row.batch_size, row.cost, bool(row.converged),
                           bool(row.early_stopped))


class BsoStore:
    """Jobs and attempts in one history store."""

    def __init__(self, where: str | URL) -> None:
        """``where``: a URL, or what ``search.sampler_options.store`` holds (a URL or an
        SQLite path, relative to the current directory)."""
        url = store_url(where, Path.cwd()) if isinstance(where, str) else where
        self.shown = db.shown(url)
        try:
            self.engine = db.open_tables(url, Base.metadata)
        except (exc.SQLAlchemyError, ImportError, OSError) as e:
            raise HistoryError(f"history store {self.shown}: cannot open it "
                               f"({db.reason(e)})") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> BsoStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fail(self, what: str, error: BaseException) -> HistoryError:
        return HistoryError(f"BSO store {self.shown}: cannot {what} ({db.reason(error)})")

    # ------------------------------------------------------------------ one attempt

    def begin(self, config: JobConfig, decide: Decider, *, recurrence: int | None,
              origin: str) -> Started:
        """Decide the next attempt of ``config.job`` and log it, in one transaction.

        ``recurrence``: the recurrence this attempt retries (None: a new recurrence).
        ``decide(observations, recurrence, seq)`` makes the choice from the job's log.
        """
        for attempt in range(RETRIES):
            try:
                return self._begin(config, decide, recurrence, origin)
            except exc.IntegrityError:
                if attempt == RETRIES - 1:
                    raise self._fail(f"log an attempt of job {config.job!r}", RuntimeError(
                        "other processes kept taking its place in the sequence")) from None
            except exc.SQLAlchemyError as e:
                raise self._fail(f"decide an attempt of job {config.job!r}", e) from None
        raise AssertionError("unreachable")

    def _begin(self, config: JobConfig, decide: Decider, recurrence: int | None,
               origin: str) -> Started:
        with Session(self.engine) as session, session.begin():
            job = session.scalar(select(BsoJobRow).where(BsoJobRow.job == config.job)
                                 .with_for_update())
            if job is None:
                job = BsoJobRow(job=config.job, created_utc=_now(), updated_utc=_now(),
                                identity=_plain(config.identity()),
                                knobs=_plain(config.knobs()), snapshot={})
                session.add(job)
                session.flush()
            else:
                self._same_job(job, config)
                job.knobs = _plain(config.knobs())
            rows = list(session.scalars(select(BsoAttemptRow)
                                        .where(BsoAttemptRow.job_pk == job.id)
                                        .order_by(BsoAttemptRow.seq)))
            seq = (rows[-1].seq + 1) if rows else 1
            if recurrence is None:
                recurrence = max((r.recurrence for r in rows), default=0) + 1
            observed = [observation(r) for r in rows if r.observed_utc is not None]
            decision = decide(observed, recurrence, seq)
            row = BsoAttemptRow(
                job_pk=job.id, seq=seq, recurrence=recurrence,
                batch_size=decision.batch_size, stage=decision.stage,
                threshold=decision.threshold, decided_utc=_now(), origin=origin,
                detail=_plain({"arms": [{"batch_size": a.batch_size, "n": a.observations,
                                         "mean": a.mean, "precision": a.precision}
                                        for a in decision.arms],
                               "draws": list(decision.draws), **decision.detail}))
            session.add(row)
            session.flush()
            return Started(row.id, seq, recurrence, decision)

    def _same_job(self, job: BsoJobRow, config: JobConfig) -> None:
        mine = _plain(config.identity())
        differ = {k: (job.identity.get(k), v) for k, v in mine.items()
                  if job.identity.get(k) != v}
        if differ:
            what = "; ".join(f"{k} {old!r} then, {new!r} now" for k, (old, new) in
                             differ.items())
            raise JobMismatch(f"BSO job {config.job!r} in {self.shown} was started under "
                              f"another setup ({what}): its costs would not compare. Use "
                              f"another job id (search.sampler_options.job) or "
                              f"`basht bso reset {config.job}`")

    def finish(self, config: JobConfig, started: Started, outcome: Outcome) -> None:
        """Record how the attempt ended and refresh the job's snapshot."""
        try:
            with Session(self.engine) as session, session.begin():
                row = session.get(BsoAttemptRow, started.attempt_id)
                if row is None:  # the job was reset meanwhile
                    return
                row.observed_utc = _now()
                row.state = outcome.state
                row.converged = outcome.converged
                row.early_stopped = outcome.early_stopped
                row.cost = outcome.cost
                row.energy_j = outcome.energy_j
                row.time_s = outcome.time_s
                row.epochs = outcome.epochs
                row.value = outcome.value
                session.flush()
                job = row.job_row
                rows = list(session.scalars(select(BsoAttemptRow)
                                            .where(BsoAttemptRow.job_pk == job.id)
                                            .where(BsoAttemptRow.observed_utc.is_not(None))
                                            .order_by(BsoAttemptRow.seq)))
                job.snapshot = _plain(bso.state(config.spec, [observation(r) for r in rows],
                                                started.recurrence + 1))
                job.updated_utc = _now()
        except exc.SQLAlchemyError as e:
            raise self._fail(f"record an attempt of job {config.job!r}", e) from None

    # ------------------------------------------------------------------ reading

    def jobs(self) -> list[dict[str, Any]]:
        try:
            with Session(self.engine) as session:
                counts = dict(session.execute(select(BsoAttemptRow.job_pk,
                                                     func.count(BsoAttemptRow.id))
                                              .group_by(BsoAttemptRow.job_pk)).all())
                return [{"job": j.job, "created_utc": j.created_utc,
                         "updated_utc": j.updated_utc, "policy": j.identity.get("policy"),
                         "attempts": counts.get(j.id, 0),
                         "stage": (j.snapshot or {}).get("stage")}
                        for j in session.scalars(select(BsoJobRow).order_by(BsoJobRow.job))]
        except exc.SQLAlchemyError as e:
            raise self._fail("list the BSO jobs", e) from None

    def attempts(self, job: str) -> list[dict[str, Any]]:
        """Every attempt of a job, in order (an unknown job: an error naming the known)."""
        with Session(self.engine) as session:
            row = self._job(session, job)
            return [{"seq": a.seq, "recurrence": a.recurrence, "batch_size": a.batch_size,
                     "stage": a.stage, "threshold": a.threshold, "state": a.state,
                     "converged": a.converged, "early_stopped": a.early_stopped,
                     "cost": a.cost, "energy_j": a.energy_j, "time_s": a.time_s,
                     "epochs": a.epochs, "value": a.value, "decided_utc": a.decided_utc,
                     "observed_utc": a.observed_utc, "origin": a.origin}
                    for a in row.attempts]

    def observations(self, job: str) -> list[bso.Observation]:
        return [bso.Observation(a["recurrence"], a["batch_size"], a["cost"],
                                bool(a["converged"]), bool(a["early_stopped"]))
                for a in self.attempts(job) if a["observed_utc"] is not None]

    def job(self, job: str) -> dict[str, Any]:
        with Session(self.engine) as session:
            row = self._job(session, job)
            return {"job": row.job, "created_utc": row.created_utc,
                    "updated_utc": row.updated_utc, "identity": dict(row.identity),
                    "knobs": dict(row.knobs), "snapshot": dict(row.snapshot or {})}

    def _job(self, session: Session, job: str) -> BsoJobRow:
        row = session.scalar(select(BsoJobRow).where(BsoJobRow.job == job))
        if row is None:
            known = list(session.scalars(select(BsoJobRow.job).order_by(BsoJobRow.job)))
            raise HistoryError(f"BSO store {self.shown}: no job {job!r} (jobs: "
                               f"{', '.join(known) or 'none'})")
        return row

    def reset(self, job: str) -> int:
        """Forget a job (its attempts too); returns how many attempts it had (0: unknown)."""
        try:
            with Session(self.engine) as session, session.begin():
                row = session.scalar(select(BsoJobRow).where(BsoJobRow.job == job))
                if row is None:
                    return 0
                n = len(row.attempts)
                session.delete(row)  # its attempts go with it (cascade)
                return n
        except exc.SQLAlchemyError as e:
            raise self._fail(f"reset job {job!r}", e) from None


def spec_of(job: dict[str, Any]) -> bso.Spec:
    """The optimizer a stored job runs (its identity and latest knobs)."""
    i, k = job["identity"], job["knobs"]
    return bso.Spec(i["policy"], tuple(i["batch_sizes"]), i["default_batch_size"],
                    k.get("beta"), k.get("window"), k.get("prior_mean") or 0.0,
                    k.get("prior_precision") or 0.0, k.get("pruning_rounds") or 2,
                    k.get("attempts"))

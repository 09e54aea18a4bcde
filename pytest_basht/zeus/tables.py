"""The BSO's tables, in the history store's database beside the runs: their own metadata,
created when a ``zeus.store.BsoStore`` opens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class BsoJobRow(Base):
    """A recurring job of the batch size optimizer: what must stay fixed across its
    recurrences, its current knobs and a snapshot of its state."""

    __tablename__ = "basht_bso_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    created_utc: Mapped[str] = mapped_column(String(40))
    updated_utc: Mapped[str] = mapped_column(String(40))
    identity: Mapped[dict[str, Any]] = mapped_column(JSON)
    knobs: Mapped[dict[str, Any]] = mapped_column(JSON)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[list[BsoAttemptRow]] = relationship(back_populates="job_row",
                                                         cascade="all, delete-orphan",
                                                         order_by="BsoAttemptRow.seq")


class BsoAttemptRow(Base):
    """One attempt of a job: the batch size decided, and once it ended, its cost."""

    __tablename__ = "basht_bso_attempts"
    __table_args__ = (UniqueConstraint("job_pk", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("basht_bso_jobs.id", ondelete="CASCADE"),
                                        index=True)
    seq: Mapped[int] = mapped_column(Integer)
    recurrence: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(40))
    threshold: Mapped[float | None] = mapped_column(Float)
    decided_utc: Mapped[str] = mapped_column(String(40))
    origin: Mapped[str] = mapped_column(Text)
    observed_utc: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[str | None] = mapped_column(String(20))
    converged: Mapped[bool | None] = mapped_column(Boolean)
    early_stopped: Mapped[bool | None] = mapped_column(Boolean)
    cost: Mapped[float | None] = mapped_column(Float)
    energy_j: Mapped[float | None] = mapped_column(Float)
    time_s: Mapped[float | None] = mapped_column(Float)
    epochs: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    job_row: Mapped[BsoJobRow] = relationship(back_populates="attempts")

"""The trainable protocol and the context a trial runs in.

A trainable is a class registered by name. In each worker it is instantiated once,
``setup`` loads the prepared data (Basht's setup phase), and ``run_trial`` trains one
configuration, marking its phases with ``ctx.phase`` (or ``pytest_basht.phase``) and
reporting one validation value per epoch, which pruners see.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pytest_basht.records import Span, bounded_traceback
from pytest_basht.workload import Workload


class TrialPruned(Exception):
    """Raised by ``TrialContext.report`` when the pruner stops the trial."""


class TrialDiverged(Exception):
    """Raised by a trainable whose loss stopped being finite."""


class Outcome(tuple[str, float, str | None]):
    """A trial's ``(state, value, error)``, unpacked as such; a failure by an exception
    also carries its ``traceback`` (bounded, ``records.bounded_traceback``)."""

    traceback: str | None

    def __new__(cls, state: str, value: float, error: str | None,
                traceback: str | None = None) -> Outcome:
        self = super().__new__(cls, (state, value, error))
        self.traceback = traceback
        return self

    @property
    def state(self) -> str:
        return self[0]

    @property
    def value(self) -> float:
        return self[1]

    @property
    def error(self) -> str | None:
        return self[2]


def trial_outcome(objective: Callable[[], Any], intermediate: list[float],
                  pruned: tuple[type[BaseException], ...] = (TrialPruned,)) -> Outcome:
    """Run a trial's objective: its state, value and error as the record holds them. A
    pruned trial's value is its last reported one (``intermediate``, filled while it ran);
    an exception or a value that is not finite fails it with the reason (an exception
    with its traceback too)."""
    try:
        value = float(objective())
    except pruned:
        return Outcome("pruned", intermediate[-1] if intermediate else math.nan, None)
    except TrialDiverged as exc:
        return Outcome("failed", math.nan, f"diverged: {exc}", bounded_traceback(exc))
    except Exception as exc:
        return Outcome("failed", math.nan, f"{type(exc).__name__}: {exc}",
                       bounded_traceback(exc))
    if not math.isfinite(value):
        return Outcome("failed", value, f"objective returned {value}")
    return Outcome("complete", value, None)


@dataclass(frozen=True)
class DataInfo:
    """What the setup phase prepared: sample counts and bytes (the data set size ts)."""

    path: str
    train: int
    validation: int
    test: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"train": self.train, "validation": self.validation, "test": self.test,
                "ts_mb": round(self.bytes / 1e6, 3)}


def config_seed(seed: int, params: dict[str, Any]) -> int:
    """A seed per configuration: the same params train the same model on any worker."""
    text = json.dumps([seed, sorted(params.items())], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


class TrialContext(ABC):
    """What a trainable sees of its trial.

    Multi-fidelity continuation (an ask-and-tell SUT): the trial trains epochs
    ``start_epoch`` … ``epochs`` − 1 (``epoch_range()``). With ``resume`` set it first
    loads the state an earlier trial of the same params saved after ``start_epoch``
    epochs; with ``checkpoint`` set it saves its state there at the end, for a later trial
    to resume. A trainable that honours these sets ``Trainable.resumable``.
    """

    number: int
    params: dict[str, Any]
    workload: Workload
    seed: int
    artifact: Path
    #: the epochs to reach (the fidelity asked); None: ``training.epochs``
    epochs: int | None = None
    #: the first epoch to train: > 0 when the trial resumes a saved state
    start_epoch: int = 0
    #: the state to load before training (saved by an earlier trial of these params)
    resume: Path | None = None
    #: where to save the state after training, for a later continuation (None: no need)
    checkpoint: Path | None = None

    def epoch_range(self) -> range:
        """The epochs this trial trains."""
        return epoch_range(self)

    @abstractmethod
    def phase(self, name: str, *, epoch: int | None = None) -> AbstractContextManager[Span]:
        """Time a phase of this trial (``trial.load``, ``trial.train``, ``trial.validate``)."""

    @abstractmethod
    def report(self, epoch: int, value: float) -> None:
        """Report the validation value after ``epoch``; raises TrialPruned to stop."""


def epoch_range(ctx: Any) -> range:
    """The epochs a context's trial trains. A context that predates continuation (one a
    test or an older SUT builds, without ``epochs`` and ``start_epoch``) trains them all."""
    epochs = getattr(ctx, "epochs", None)
    end = epochs if epochs is not None else ctx.workload.training.epochs
    return range(getattr(ctx, "start_epoch", 0), end)


class Trainable(ABC):
    """One kind of model training, registered by name."""

    name: ClassVar[str]
    #: honours ``TrialContext.start_epoch``, ``resume`` and ``checkpoint`` (continuation)
    resumable: ClassVar[bool] = False
    #: which of ``workload.TRAINABLE_VARIABLES`` (``dataset``, ``training.algorithm``,
    #: ``training.batch_size``) it reads; Table 1 shows only those. None: all of them
    uses: ClassVar[frozenset[str] | None] = None

    @classmethod  # noqa: B027 - an optional hook; the default accepts every workload
    def check(cls, workload: Workload) -> None:
        """Refuse a workload this trainable cannot run (raise WorkloadError)."""

    @classmethod
    @abstractmethod
    def prepare(cls, workload: Workload, data_dir: Path) -> DataInfo:
        """Once per setup, in the controller: write the data the workers will load."""

    @abstractmethod
    def setup(self, workload: Workload, data: DataInfo, device: str) -> None:
        """Once per setup, in each worker: load the prepared data."""

    @abstractmethod
    def run_trial(self, ctx: TrialContext) -> float:
        """Train one configuration; return the final validation value."""

    @abstractmethod
    def test(self, artifact: Path) -> float:
        """Evaluate a saved trial's model on the held-out test split."""


def iter_batches(n: int, batch_size: int, order: Any) -> Iterator[Any]:
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]

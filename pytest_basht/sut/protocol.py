"""The worker protocol of the ``optuna`` SUT: what a controller asks of a worker process,
and what the worker tells it.

A local worker reads requests from its socket, one at a time, and answers each with one
event (``Preloaded``, ``Ready``, ``RunDone``, ``Evaluated``, ``TestDone``, ``Retrained``,
or ``Error`` when it failed). While it runs, it streams the run's events as they happen:
``TrialStarted``, ``SpanRecorded``, ``Reported``, ``GroupTrained`` and ``TrialFinished``,
so a trial killed mid-way keeps what was measured before. An ask-and-tell SUT hands out
one trial at a time instead (``Evaluate``), and may judge each report (``Proceed``). A
``basht worker`` on another host runs the same worker code; its events go to the shared
store instead (``sut.remote``).

Messages cross a ``multiprocessing.connection.Connection``, which pickles them: every one
is a frozen dataclass of plain values (spans and records as their ``to_dict()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pytest_basht.trainables.base import DataInfo
from pytest_basht.workload import Workload

# ---------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Preload:
    """Deploy: import the trainable (an import reference, or the class itself)."""

    kind: ClassVar[str] = "preload"
    trainable: Any


@dataclass(frozen=True)
class Setup:
    """A scenario's setup: load the prepared data onto ``device``."""

    kind: ClassVar[str] = "setup"
    workload: Workload
    trainable: Any
    data: DataInfo
    device: str


@dataclass(frozen=True)
class Run:
    """Take trials from the shared study until the sampler, the trial budget (``cap``) or
    the workload's ``budget:`` (``limits``, counted from ``started_s``, wall clock) stops it.

    The study lives in the ``journal`` file, or in the database at ``storage`` (with
    Optuna's ``heartbeat`` settings). ``sampler`` and ``pruner`` are factories: import
    references from the controller, or the objects a worker found in its own registry.
    """

    kind: ClassVar[str] = "run"
    study: str
    sampler: Any
    pruner: Any
    seed: int
    cap: int | None
    artifacts: str
    journal: str | None = None
    storage: str | None = None
    heartbeat: dict[str, int] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    started_s: float = 0.0


@dataclass(frozen=True)
class Evaluate:
    """Train one configuration, a trial of an ask-and-tell study (``sut.asktell``): epochs
    ``start_epoch`` … ``epochs`` − 1, loading ``resume`` first and saving the state to
    ``checkpoint`` at the end (continuation). With ``judged`` the worker waits after each
    report for the controller's ``Proceed``. Answered with ``Evaluated``."""

    kind: ClassVar[str] = "evaluate"
    number: int
    params: dict[str, Any]
    epochs: int
    artifacts: str
    start_epoch: int = 0
    resume: str | None = None
    checkpoint: str | None = None
    judged: bool = False


@dataclass(frozen=True)
class Proceed:
    """The controller's judgement of a trial's last report: go on, or stop (pruned)."""

    kind: ClassVar[str] = "proceed"
    number: int
    go: bool


@dataclass(frozen=True)
class Test:
    """Evaluate the saved model at ``artifact`` on the test set."""

    __test__: ClassVar[bool] = False  # for pytest: a message, not a test class
    kind: ClassVar[str] = "test"
    artifact: str


@dataclass(frozen=True)
class Retrain:
    """Train ``{number, params}`` configurations again, outside the study, at full width
    (``search.scaling`` 1) and fused by shape: a plugin's test phase asks for it through
    ``WorkerPool.retrain`` (Hydro's, to retrain a surrogate's best)."""

    kind: ClassVar[str] = "retrain"
    configs: list[dict[str, Any]]
    artifacts: str


@dataclass(frozen=True)
class Stop:
    """Leave: the worker process exits."""

    kind: ClassVar[str] = "stop"


Request = Preload | Setup | Run | Evaluate | Proceed | Test | Retrain | Stop

# ---------------------------------------------------------------------- events


@dataclass(frozen=True)
class Hello:
    """A worker process started: its slot, its pid, the cores it may use."""

    kind: ClassVar[str] = "hello"
    worker: int
    pid: int
    cores: list[int]


@dataclass(frozen=True)
class Preloaded:
    kind: ClassVar[str] = "preloaded"


@dataclass(frozen=True)
class Ready:
    """Set up for the scenario."""

    kind: ClassVar[str] = "ready"


@dataclass(frozen=True)
class TrialStarted:
    kind: ClassVar[str] = "trial_started"
    number: int
    params: dict[str, Any]
    start_ns: int


@dataclass(frozen=True)
class SpanRecorded:
    """A phase of a trial ended (``Span.to_dict()``)."""

    kind: ClassVar[str] = "span"
    span: dict[str, Any]


@dataclass(frozen=True)
class Reported:
    """A trial reported an epoch's value (to the pruner, and to the controller)."""

    kind: ClassVar[str] = "report"
    number: int
    epoch: int
    value: float
    t_ns: int | None = None


@dataclass(frozen=True)
class GroupTrained:
    """A fused group of trials ended: its facts (``WorkerPool.groups``, which plugins'
    metrics read: Hydro's figures)."""

    kind: ClassVar[str] = "group"
    group: dict[str, Any]


@dataclass(frozen=True)
class TrialFinished:
    """A trial ended, in any state (``TrialRecord.to_dict()``)."""

    kind: ClassVar[str] = "trial"
    record: dict[str, Any]


@dataclass(frozen=True)
class Evaluated:
    """An ``Evaluate`` ended, in any state (``TrialRecord.to_dict()``)."""

    kind: ClassVar[str] = "evaluated"
    record: dict[str, Any]


@dataclass(frozen=True)
class RunDone:
    """The worker's run ended; ``discarded`` trials were asked past the budget."""

    kind: ClassVar[str] = "run_done"
    discarded: int = 0


@dataclass(frozen=True)
class TestDone:
    __test__: ClassVar[bool] = False  # for pytest: a message, not a test class
    kind: ClassVar[str] = "test_done"
    score: float


@dataclass(frozen=True)
class Retrained:
    kind: ClassVar[str] = "retrained"
    results: list[dict[str, Any]]


@dataclass(frozen=True)
class Error:
    """A request failed (``request``: its kind); the worker serves the next one."""

    kind: ClassVar[str] = "error"
    request: str
    message: str
    traceback: str = ""


Event = (Hello | Preloaded | Ready | TrialStarted | SpanRecorded | Reported | GroupTrained
         | TrialFinished | Evaluated | RunDone | TestDone | Retrained | Error)


class Outbox(Protocol):
    """Where a worker's events go: its socket to the controller (a ``Connection``), or a
    remote worker's sink into the shared store."""

    def send(self, event: Event) -> None: ...

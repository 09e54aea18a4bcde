"""The SUT protocol, from Basht: deploy, setup, run, collect results, test, collect
metrics, undeploy. The runner times and meters each call as its phase."""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pytest_basht.energy.base import Allocation
from pytest_basht.errors import WorkloadError
from pytest_basht.records import EnergyTrace, Span, TrialRecord
from pytest_basht.registry import Registry
from pytest_basht.workload import GoalSpec, Workload

if TYPE_CHECKING:
    from pytest_basht.energy.monitor import EnergyMonitor


def own_options(workload: Workload, sut: str, known: Collection[str],
                strict: bool = False) -> dict[str, Any]:
    """The workload's ``sut.options`` that belong to the SUT ``sut``. A key it does not know
    is refused (a WorkloadError naming it) when it looks like a misspelt option of its own,
    or when ``strict``; otherwise it is another SUT's (a workload that varies ``sut.name``
    keeps one section) and is left out."""
    opts = dict(workload.sut.options)
    for key in list(opts):
        if key in known:
            continue
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
        if close or strict:
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise WorkloadError(workload.source, f"sut.options.{key}",
                                f"an option of the {sut} SUT{hint}: " + ", ".join(known))
        del opts[key]
    return opts


def refuse_optimizer(workload: Workload, registry: Registry, sut: str) -> None:
    """A SUT that runs Optuna's samplers refuses an ask-and-tell optimizer's name."""
    if workload.search.sampler in registry.optimizers:
        raise WorkloadError(workload.source, "search.sampler",
                            f"an Optuna sampler for sut {sut}: "
                            + ", ".join(sorted(registry.samplers))
                            + f" ({workload.search.sampler} is an ask-and-tell optimizer: run "
                            "it with sut.name asktell, or simulated)",
                            workload.search.sampler)


class SutError(RuntimeError):
    """The system under test could not do what a phase asked (not a trial failure)."""


@dataclass
class Progress:
    """A running tally for the live progress line."""

    done: int = 0
    running: int = 0
    expected: int = 0
    failed: int = 0
    best: float | None = None
    pruned: int = 0

    def count(self, record: TrialRecord, goal: GoalSpec) -> None:
        """A trial finished: tally it, and keep the best complete value."""
        self.done += 1
        self.failed += record.state == "failed"
        self.pruned += record.state == "pruned"
        if record.state == "complete" and record.value is not None and (
                self.best is None or goal.better(record.value, self.best)):
            self.best = record.value


ProgressCallback = Callable[[Progress], None]


class OwnMeter(Protocol):
    """Time and energy a SUT supplies itself, in place of the live meter (a simulation)."""

    def clock(self) -> tuple[int, float]:
        """(ns, CPU seconds) now, on the SUT's clock."""

    def energy_between(self, start_ns: int, end_ns: int) -> float:
        """Joules drawn between two instants of that clock."""

    def trace(self, spans: list[Span], trials: list[TrialRecord], slots: int) -> EnergyTrace:
        """The scenario's energy trace; the trials' own energies are already set."""


@dataclass(frozen=True)
class TestModel:
    """The model a plugin supplies for a SUT's test phase (``pytest_basht_sut_test_model``),
    and how it was made (handed back to the plugin's ``pytest_basht_sut_metrics``)."""

    __test__: ClassVar[bool] = False  # for pytest: a record, not a test class
    artifact: Path | None  # None: no model could be made; the scenario has no test score
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class SutContext:
    work_dir: Path
    registry: Registry
    progress: ProgressCallback | None = None
    notes: list[str] = field(default_factory=list)
    #: the live meter: a SUT with processes it cannot see (other hosts) adds theirs to it
    monitor: EnergyMonitor | None = None


class SUT(ABC):
    name: ClassVar[str]
    #: True for a SUT that trains nothing (a replay): budgets, which bound training time,
    #: leave its workloads as written.
    zero_cost: ClassVar[bool] = False

    def __init__(self, workload: Workload, ctx: SutContext) -> None:
        self.deployed_for = workload
        self.ctx = ctx

    @classmethod
    def deploy_key(cls, workload: Workload) -> dict[str, Any]:
        """The parts of a workload that need their own deployment."""
        return {"sut": workload.sut.name, "options": workload.sut.options,
                "workers": workload.to_dict()["workers"]}

    @classmethod  # noqa: B027 - an optional hook; the default accepts every workload
    def check(cls, workload: Workload, registry: Registry) -> None:
        """Refuse a workload this SUT cannot run (raise WorkloadError naming the key)."""

    def own_meter(self) -> OwnMeter | None:
        """None: the runner times and meters every phase with the live meter. A SUT that
        simulates returns its virtual clock and energy, and the runner uses those instead."""
        return None

    @abstractmethod
    def allocation(self) -> Allocation:
        """vCPUs, memory and worker slots the deployment holds (the meter models these)."""

    @abstractmethod
    def deploy(self) -> None: ...

    @abstractmethod
    def setup(self, workload: Workload) -> None: ...

    @abstractmethod
    def run(self) -> list[TrialRecord]: ...

    def trials_so_far(self) -> list[TrialRecord]:
        """Trials finished so far, for a report of a run that was interrupted or failed."""
        return []

    @abstractmethod
    def collect_results(self) -> int | None:
        """The number of the best trial, as the HPO framework identifies it."""

    @abstractmethod
    def test(self, best: TrialRecord) -> float | None: ...

    @abstractmethod
    def collect_metrics(self) -> dict[str, Any]:
        """What the SUT knows that the records don't: limits, data, notes."""

    @abstractmethod
    def undeploy(self) -> None: ...

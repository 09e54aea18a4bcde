"""The meter interface: cumulative joules by domain, read at window edges and by the sampler."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pytest_basht.workload import Workload


@dataclass(frozen=True)
class Usage:
    """What the run's processes used up to ``t_ns``: the input of modelled meters."""

    t_ns: int
    cpu_s: float
    rss_bytes: int


@dataclass(frozen=True)
class Reading:
    """Cumulative energy since the meter started, by domain (``cpu``, ``dram``, ``gpu0``...)."""

    t_ns: int
    joules: Mapping[str, float]
    source: str

    @property
    def total(self) -> float:
        return float(sum(self.joules.values()))


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str


@dataclass
class Allocation:
    """What a deployment holds: the vCPUs and memory its worker slots were given."""

    vcpus: int
    memory_gb: float
    slots: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Meter(ABC):
    """One energy source. Subclasses read counters, or model power from usage.

    ``source`` names it in every figure (``rapl``, ``nvml``, ``prometheus:<metric>``,
    ``estimate:<model>``) and ``measured`` says whether it is a measurement.
    """

    name: ClassVar[str]
    measured: ClassVar[bool]

    @property
    def source(self) -> str:
        return self.name

    #: ``auto`` considers this meter (real sources set it; the estimate is the fallback).
    auto: ClassVar[bool] = False

    @classmethod
    def from_workload(cls, workload: Workload) -> Meter:
        """Build the meter with the workload's energy settings."""
        return cls()

    @classmethod
    def available(cls) -> Availability:
        """Whether this machine can provide the meter, and if not, why."""
        return Availability(True, "always available")

    def start(self, usage: Usage) -> None:  # noqa: B027 - optional hook
        """Open counters; ``usage`` is the first sample of the run's processes."""

    @abstractmethod
    def read(self, usage: Usage) -> Reading:
        """Cumulative joules by domain up to ``usage.t_ns``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release counters."""

    def hold(self, allocation: Allocation | None) -> None:  # noqa: B027 - optional hook
        """Tell the meter what the current deployment holds (modelled meters use it)."""

    def modelled_idle_power_w(self) -> float | None:
        """Idle draw from the model, or None when it has to be measured."""
        return None

    @abstractmethod
    def max_power_w(self) -> float:
        """Peak draw of what the meter covers (P_max of the Zeus cost)."""

    def describe(self) -> dict[str, Any]:
        """Coefficients and settings, for the report."""
        return {"name": self.name, "source": self.source, "measured": self.measured}

"""The meter interface: cumulative joules by domain, read at window edges and by the sampler."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pytest_basht.energy.leases import IdleShare
    from pytest_basht.workload import Workload


@dataclass(frozen=True)
class Usage:
    """What the run's processes used up to ``t_ns``: the input of modelled meters.

    ``machine_cpu_s`` is the busy CPU time of the whole machine (every process), the
    denominator when a machine-level measurement is split among processes.
    """

    t_ns: int
    cpu_s: float
    rss_bytes: int
    machine_cpu_s: float = 0.0


@dataclass(frozen=True)
class Reading:
    """Cumulative energy since the meter started, by domain (``cpu``, ``dram``, ``gpu0``...).

    ``band`` is (low, high) cumulative joules for a modelled meter: the same usage under
    the least and the most power-hungry coefficients (never added to ``total``).
    ``machine_cpu_s`` replaces the local machine CPU time when the meter knows the CPU
    time of the machine it measures (a remote node, through Prometheus).
    """

    t_ns: int
    joules: Mapping[str, float]
    source: str
    band: tuple[float, float] | None = None
    machine_cpu_s: float | None = None

    @property
    def total(self) -> float:
        return float(sum(self.joules.values()))


@dataclass(frozen=True)
class Availability:
    """Whether a meter can run here. ``fallback``: it exists but failed (permission,
    server down), so a run that asked for it warns and takes the next meter instead of
    stopping; otherwise asking for it by name is a usage error."""

    ok: bool
    reason: str
    fallback: bool = False


@dataclass
class Allocation:
    """What a deployment holds: the vCPUs and memory its worker slots were given."""

    vcpus: int
    memory_gb: float
    slots: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MeterContext:
    """What a meter may need that does not belong in a workload file (which lands verbatim
    in reports): credentials, given by option or environment, never logged."""

    prometheus_auth: tuple[str, str] | None = None
    prometheus_token: str | None = None


class Meter(ABC):
    """One energy source. Subclasses read counters, or model power from usage.

    ``source`` names it in every figure (``rapl``, ``nvml``, ``prometheus:<metric>``,
    ``estimate:<model>``) and ``measured`` says whether it is a measurement.
    """

    name: ClassVar[str]
    measured: ClassVar[bool]

    #: What the meter covers: ``cpu``, ``dram``, ``memory``, ``gpu``, or ``host`` (all of
    #: it). Two meters covering the same thing are never combined (double counting).
    covers: ClassVar[frozenset[str]] = frozenset({"host"})

    #: ``auto`` considers this meter (real sources set it; the estimate is the fallback).
    auto: ClassVar[bool] = False
    #: Order in which ``auto`` tries meters (lower first).
    auto_priority: ClassVar[int] = 100

    #: ``machine``: the energy is the whole machine's (a counter), shared out by CPU time
    #: over every process; ``process``: a model of the run's processes only.
    scope: ClassVar[str] = "machine"

    #: Readings arrive late (a scraped server): the monitor settles windows afterwards.
    retrospective: ClassVar[bool] = False

    @property
    def source(self) -> str:
        return self.name

    @classmethod
    def from_workload(cls, workload: Workload) -> Meter:
        """Build the meter with the workload's energy settings."""
        return cls()

    @classmethod
    def configure(cls, workload: Workload, context: MeterContext) -> Meter:
        """Build the meter; meters that need credentials override this."""
        return cls.from_workload(workload)

    @classmethod
    def available(cls) -> Availability:
        """Whether this machine can provide the meter, and if not, why."""
        return Availability(True, "always available")

    @classmethod
    def probe(cls, workload: Workload, context: MeterContext) -> Availability:
        """``available()`` for this workload's settings (a sysfs root, a server URL)."""
        return cls.available()

    @classmethod
    def covers_for(cls, workload: Workload) -> frozenset[str]:
        return cls.covers

    def start(self, usage: Usage) -> None:  # noqa: B027 - optional hook
        """Open counters; ``usage`` is the first sample of the run's processes."""

    @abstractmethod
    def read(self, usage: Usage) -> Reading:
        """Cumulative joules by domain up to ``usage.t_ns``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release counters."""

    def hold(self, allocation: Allocation | None) -> None:  # noqa: B027 - optional hook
        """Tell the meter what the current deployment holds (modelled meters use it)."""

    def sync(self) -> None:  # noqa: B027 - optional hook
        """Finish outstanding device work before a window edge is read (CUDA)."""

    def min_sample_hz(self) -> float:
        """The slowest sampling rate at which the meter stays correct (counter wraps)."""
        return 0.0

    def poll_interval(self, default_s: float) -> float:
        """Seconds until the next sample; a counter near its wrap asks for sooner."""
        return default_s

    def settle(self, until_ns: int) -> bool:
        """Retrospective meters: wait until readings up to ``until_ns`` exist.
        Returns False when they did not arrive in time (the values are extrapolated)."""
        return True

    def revise(self, ts: list[int]) -> list[Reading]:
        """Retrospective meters: the settled readings at the monotonic times ``ts``."""
        raise NotImplementedError

    def share_idle(self, share: IdleShare) -> None:  # noqa: B027 - optional hook
        """Charge, over each stretch of time, only ``share.fraction(start, end)`` of the
        modelled idle draw: the scenarios running at once on the machine (xdist's workers)
        share it (``energy.leases``). Measured meters see real counters."""

    def idle_fraction(self, start_ns: int, end_ns: int) -> float:
        """The share of the idle draw this meter charged over ``[start_ns, end_ns]`` (1.0
        unless ``share_idle`` told it to share)."""
        return 1.0

    def failure(self) -> str | None:
        """Why the meter cannot read now, for a meter that hides its errors to ride out a
        blip (a scraped server); None while it works. A meter whose ``read`` raises needs
        nothing here. Past ``energy.fail_after_s`` of failure the monitor fails over."""
        return None

    def valid_until_ns(self) -> int | None:
        """Retrospective meters: the time up to which the readings rest on data (a failover
        takes over from there); None: up to the last read."""
        return None

    def modelled_idle_power_w(self) -> float | None:
        """Idle draw from the model, or None when it has to be measured."""
        return None

    @abstractmethod
    def max_power_w(self) -> float:
        """Peak draw of what the meter covers (P_max of the Zeus cost)."""

    def describe(self) -> dict[str, Any]:
        """Coefficients and settings, for the report."""
        return {"name": self.name, "source": self.source, "measured": self.measured,
                "covers": sorted(self.covers)}

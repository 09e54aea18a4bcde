"""Plain records of what happened: spans and trials.

Everything the metrics and reports need is here as dataclasses that round-trip through
JSON (``to_dict`` / ``from_dict``), so a report can be recomputed from its own file.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import traceback as traceback_mod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any


class TrialState(str, Enum):
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def mono_ns() -> int:
    """The clock of every span: CLOCK_MONOTONIC, shared by all processes of one host."""
    return time.monotonic_ns()


@dataclass
class Span:
    """One timed, metered stretch of one phase."""

    phase: str
    start_ns: int
    end_ns: int
    start_utc: str = ""
    end_utc: str = ""
    cpu_s: float = 0.0
    worker: int | None = None
    trial: int | None = None
    epoch: int | None = None
    energy_j: float | None = None

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        # every field is a scalar, so a flat copy of the instance's fields is exact; a
        # report of 10,000 trials makes hundreds of thousands of these (asdict: ~20x slower)
        return self.__dict__.copy()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        return cls(**data)


@dataclass
class TrialRecord:
    """One trial: what was tried, how it ended, and what it cost."""

    number: int
    params: dict[str, Any]
    state: str
    value: float | None
    worker: int
    start_ns: int
    end_ns: int
    intermediate: list[float] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    cpu_s: float = 0.0
    energy_j: float | None = None
    error: str | None = None
    #: the epochs it was asked to reach (multi-fidelity ask-and-tell; None: the workload's)
    fidelity: int | None = None
    #: the epoch it resumed from, continuing an earlier trial of the same params (its
    #: spans and intermediate values cover only the epochs from there); None: from scratch
    resumed_from: int | None = None
    #: its costs as its study was told them when it ended (``objectives.TrialCost``:
    #: time_s, energy_j, co2_g, cost_usd); None when the workload needs none
    told: dict[str, float] | None = None
    #: a failed trial's traceback, its last frames (``bounded_traceback``); None otherwise
    traceback: str | None = None

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        out = self.__dict__.copy()
        out["params"] = dict(self.params)  # scalars: Optuna's distributions allow no other
        out["intermediate"] = list(self.intermediate)
        out["spans"] = [s.to_dict() for s in self.spans]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        data = dict(data)
        data.pop("waste", None)  # a report's trial row lists it; the metrics derive it
        data["spans"] = [Span.from_dict(s) for s in data.get("spans", [])]
        return cls(**data)


#: A failed trial's traceback keeps its innermost frames, and at most this many bytes: a
#: report of thousands of failed trials stays readable and small.
TRACEBACK_FRAMES = 20
TRACEBACK_BYTES = 4096


def bounded_traceback(exc: BaseException, frames: int = TRACEBACK_FRAMES,
                      limit: int = TRACEBACK_BYTES) -> str:
    """The exception's traceback as Python prints it, its last ``frames`` frames only, cut
    to the last ``limit`` bytes (the innermost frames and the error say the most)."""
    text = "".join(traceback_mod.format_exception(exc, limit=-frames))
    data = text.encode()
    if len(data) <= limit:
        return text
    mark = "…"  # 3 bytes in UTF-8, within the limit
    return mark + data[-(limit - 3):].decode(errors="ignore")


@dataclass
class EnergyTrace:
    """The meter's view of one scenario: source, idle and peak power, the timeline.

    ``timeline`` holds cumulative series sampled by the background sampler:
    ``t_ns``, ``joules`` (all domains) and ``cpu_s`` (CPU seconds of the run's processes);
    attribution of spans is recomputed from it. ``machine_cpu_s`` (every process's CPU
    time) shares out a machine-level meter's energy (``scope``: ``machine``);
    ``joules_low``/``joules_high`` carry an estimate's band. ``band`` holds the band as
    factors of the scenario's energy, ``carbon`` the carbon intensity (a value, or the part
    of a time series in force during the run) that CINT is computed from.
    """

    source: str
    measured: bool
    idle_power_w: float
    max_power_w: float
    slots: int
    idle_measured: bool = False
    meter: dict[str, Any] = field(default_factory=dict)
    timeline: dict[str, list[float]] = field(default_factory=dict)
    scope: str = "process"
    band: dict[str, Any] = field(default_factory=dict)
    carbon: dict[str, Any] = field(default_factory=dict)
    #: the meter failed mid-run: what failed, from when the fallback measured, and why
    failover: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # the timeline's series are long lists of numbers: copied as lists, not element by
        # element as dataclasses.asdict would; the rest is small
        return {f.name: ({key: list(series) for key, series in self.timeline.items()}
                         if f.name == "timeline" else copy.deepcopy(getattr(self, f.name)))
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnergyTrace:
        return cls(**data)

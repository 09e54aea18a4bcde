"""A meter that fails mid-run: the run goes on, and the records say which window is not a
measurement.

A Prometheus server goes away, RAPL's files become unreadable: the monitor keeps reading
its fallback — the labelled estimate, read alongside the meter from the start (it only
models CPU time, so this costs little) — and once the meter has failed for
``energy.fail_after_s``, the fallback measures from the meter's last good reading on. The
timeline stays cumulative across the switch: the failed meter's domains hold their last
good values and the fallback's energy since then is added as its own domains
(``estimate:cpu``...), so any window's energy is still a difference of two points. Every
scenario whose window reaches past the switch carries the failover (meter, fallback,
reason, from when) and is no longer ``measured``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pytest_basht.energy.attribution import interpolate
from pytest_basht.energy.base import Meter, Reading, Usage

#: Readings of the fallback kept (at 10 Hz, ten minutes): enough to take over from the
#: failed meter's last good reading however late the failure is noticed.
KEEP = 6000


@dataclass(frozen=True)
class Failover:
    """Where the meter failed: from ``start_ns`` on, ``fallback`` measures (None: nothing)."""

    meter: str
    fallback: str | None
    reason: str
    start_ns: int  # the failed meter's last good reading
    detected_ns: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["note"] = (f"{self.meter} failed ({self.reason}); from start_ns on "
                       + (f"{self.fallback} measures: an estimate, not a measurement"
                          if self.fallback else "no energy is counted"))
        return out


@dataclass(frozen=True)
class Coverage:
    """What measured a window: the source, whether it is a measurement, the failover."""

    source: str
    measured: bool
    scope: str
    failover: list[dict[str, Any]]


class Standby:
    """The fallback meter, read at every mark, its recent readings kept."""

    def __init__(self, meter: Meter, keep: int = KEEP) -> None:
        self.meter = meter
        self.recent: deque[Reading] = deque(maxlen=keep)

    def start(self, usage: Usage) -> None:
        self.meter.start(usage)

    def read(self, usage: Usage) -> Reading:
        reading = self.meter.read(usage)
        self.recent.append(reading)
        return reading

    def at(self, t_ns: int) -> dict[str, float]:
        """Its cumulative joules by domain at ``t_ns`` (interpolated; clamped to what is
        kept)."""
        readings = list(self.recent)
        if not readings:
            return {}
        ts = [r.t_ns for r in readings]
        names = {name for r in readings for name in r.joules}
        return {name: interpolate(ts, [r.joules.get(name, 0.0) for r in readings], t_ns)
                for name in names}


def compose(frozen: Mapping[str, float], base: Mapping[str, float],
            now: Mapping[str, float], prefix: str) -> dict[str, float]:
    """The failed meter's domains at their last good values, plus the fallback's energy
    since the switch under ``prefix:domain``."""
    out = dict(frozen)
    for name, value in now.items():
        out[f"{prefix}:{name}"] = max(0.0, value - base.get(name, 0.0))
    return out

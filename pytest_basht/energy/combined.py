"""Several meters as one: a CPU source and a GPU source (``rapl,nvml``), each its domains
(named ``part:domain``, e.g. ``rapl:package-0`` and ``nvml:gpu0``).

Only meters covering different devices are combined (the factory refuses overlaps), so
the total is a sum without double counting. The combination is a measurement only when
every part is; the report lists each part with its own flag.
"""

from __future__ import annotations

from typing import Any

from pytest_basht.energy.base import Allocation, Meter, Reading, Usage
from pytest_basht.energy.leases import IdleShare


class CombinedMeter(Meter):
    name = "combined"
    measured = False

    def __init__(self, parts: list[Meter]) -> None:
        if not parts:
            raise ValueError("a combined meter needs at least one part")
        self.parts = parts
        self.covers = frozenset().union(*(p.covers for p in parts))  # type: ignore[misc]
        self.retrospective = any(p.retrospective for p in parts)  # type: ignore[misc]
        self.measured = all(p.measured for p in parts)  # type: ignore[misc]
        self.scope = ("process" if all(p.scope == "process" for p in parts)  # type: ignore[misc]
                      else "machine")

    @property
    def source(self) -> str:
        return "+".join(p.source for p in self.parts)

    def start(self, usage: Usage) -> None:
        for part in self.parts:
            part.start(usage)

    def _merge(self, parts: list[Meter], readings: list[Reading], t_ns: int) -> Reading:
        pairs = list(zip(parts, readings, strict=True))
        joules = {f"{part.name}:{name}": value for part, reading in pairs
                  for name, value in reading.joules.items()}
        band = None
        if any(r.band is not None for r in readings):
            # a measured part has no uncertainty band: it adds its value to both ends
            low = sum(r.band[0] if r.band is not None else r.total for r in readings)
            high = sum(r.band[1] if r.band is not None else r.total for r in readings)
            band = (low, high)
        machine = next((r.machine_cpu_s for r in readings if r.machine_cpu_s is not None), None)
        return Reading(t_ns, joules, self.source, band=band, machine_cpu_s=machine)

    def read(self, usage: Usage) -> Reading:
        return self._merge(self.parts, [p.read(usage) for p in self.parts], usage.t_ns)

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def hold(self, allocation: Allocation | None) -> None:
        for part in self.parts:
            part.hold(allocation)

    def sync(self) -> None:
        for part in self.parts:
            part.sync()

    def min_sample_hz(self) -> float:
        return max(p.min_sample_hz() for p in self.parts)

    def poll_interval(self, default_s: float) -> float:
        return min(p.poll_interval(default_s) for p in self.parts)

    def settle(self, until_ns: int) -> bool:
        return all([p.settle(until_ns) for p in self.parts])

    def revise(self, ts: list[int]) -> list[Reading]:
        """The retrospective parts' settled domains (live parts' values are final already)."""
        parts = [p for p in self.parts if p.retrospective]
        revised = [p.revise(ts) for p in parts]
        return [self._merge(parts, [r[i] for r in revised], t) for i, t in enumerate(ts)]

    def share_idle(self, share: IdleShare) -> None:
        for part in self.parts:
            part.share_idle(share)

    def idle_fraction(self, start_ns: int, end_ns: int) -> float:
        """The parts' shares, weighted by their modelled idle draw (a measured part's idle
        is the machine's: its share is 1)."""
        weights = [(p.modelled_idle_power_w() or 0.0, p.idle_fraction(start_ns, end_ns))
                   for p in self.parts]
        total = sum(w for w, _ in weights)
        return sum(w * f for w, f in weights) / total if total > 0 else 1.0

    def modelled_idle_power_w(self) -> float | None:
        idles = [p.modelled_idle_power_w() for p in self.parts]
        return None if any(i is None for i in idles) else float(sum(idles))  # type: ignore[arg-type]

    def max_power_w(self) -> float:
        return sum(p.max_power_w() for p in self.parts)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "measured": self.measured,
                "covers": sorted(self.covers), "parts": [p.describe() for p in self.parts]}

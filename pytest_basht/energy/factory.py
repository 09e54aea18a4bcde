"""Choosing the meter: a registered name, or ``auto`` — every real source this machine has,
else the labelled estimate — with the reason recorded for the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_basht.energy.base import Meter
from pytest_basht.errors import WorkloadError
from pytest_basht.workload import Workload


@dataclass(frozen=True)
class Selection:
    meter: Meter
    reason: str


def select_meter(meters: dict[str, Any], workload: Workload) -> Selection:
    name = workload.energy.meter
    if name != "auto":
        if name not in meters:
            raise WorkloadError(workload.source, "energy.meter",
                                "a registered meter: " + ", ".join(sorted(meters)), name)
        cls = meters[name]
        found = cls.available()
        if not found.ok:
            raise WorkloadError(workload.source, "energy.meter",
                                f"a meter this machine provides ({name}: {found.reason})", name)
        return Selection(cls.from_workload(workload), f"{name}: chosen by name")
    skipped = []
    for cand, cls in meters.items():
        if not getattr(cls, "auto", False):
            continue
        found = cls.available()
        if found.ok:
            return Selection(cls.from_workload(workload), f"auto: {cand} ({found.reason})")
        skipped.append(f"{cand}: {found.reason}")
    why = "; ".join(skipped) if skipped else "no real energy counter is registered"
    return Selection(meters["estimate"].from_workload(workload),
                     f"auto: no real energy counter ({why}), so the labelled estimate")

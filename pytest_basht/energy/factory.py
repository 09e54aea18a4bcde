"""Choosing the meter, with the reason recorded for the report.

* a name (``rapl``) or a comma list (``rapl,nvml``): those meters, combined; meters that
  cover the same device are refused (their energy would be counted twice). A meter that
  exists but fails (RAPL permission denied, Prometheus unreachable) warns and is replaced
  by the next source for what it covered; one the machine lacks altogether is a usage
  error.
* ``auto``: every real source present — a configured Prometheus server, RAPL, NVML, then
  third-party meters, in that order, each taken if it covers something not yet covered —
  and the labelled estimate for the CPU when no real CPU source is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_basht.energy import carbon
from pytest_basht.energy.base import Meter, MeterContext
from pytest_basht.energy.combined import CombinedMeter
from pytest_basht.errors import WorkloadError
from pytest_basht.urls import problem, redact, secret_params, split_credentials
from pytest_basht.workload import Workload

CPU_LIKE = frozenset({"cpu", "host"})


@dataclass(frozen=True)
class Selection:
    meter: Meter
    reason: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    #: measures if ``meter`` fails mid-run: the estimate, for a real CPU meter
    fallback: Meter | None = None


def overlaps(a: frozenset[str], b: frozenset[str]) -> bool:
    return bool(a & b) or ("host" in a and bool(b)) or ("host" in b and bool(a))


def meter_names(spec: str) -> list[str]:
    return [n.strip() for n in spec.split(",") if n.strip()]


def check_energy(workload: Workload, meters: dict[str, Any]) -> None:
    """Usage errors in the energy settings, before any test runs."""
    src = workload.source
    e = workload.energy
    if e.meter != "auto":
        names = meter_names(e.meter)
        if len(set(names)) != len(names) or not names:
            raise WorkloadError(src, "energy.meter", "distinct meter names", e.meter)
        covers = {n: meters[n].covers_for(workload) for n in names if n in meters}
        listed = list(covers.items())
        for i, (a, ca) in enumerate(listed):
            for b, cb in listed[i + 1:]:
                if overlaps(ca, cb):
                    raise WorkloadError(src, "energy.meter", "meters covering different "
                                        f"devices ({a} covers {', '.join(sorted(ca))}; {b} "
                                        f"covers {', '.join(sorted(cb))})", e.meter)
    url = e.prometheus.url
    if url is not None:
        why = problem(url)
        if why is not None:
            raise WorkloadError(src, "energy.prometheus.url", why, redact(url))
        if split_credentials(url)[1] is not None or secret_params(url):
            raise WorkloadError(src, "energy.prometheus.url", "a URL without credentials (a "
                                "workload file is copied into every report): pass them in "
                                "--basht-prometheus-url or BASHT_PROMETHEUS_USER/_PASSWORD",
                                "<a URL with credentials>")
    carbon.check(workload)


def _auto_order(meters: dict[str, Any]) -> list[tuple[str, Any]]:
    cands = [(n, c) for n, c in meters.items() if getattr(c, "auto", False)]
    return sorted(cands, key=lambda nc: getattr(nc[1], "auto_priority", 100))


@dataclass
class _Picker:
    meters: dict[str, Any]
    workload: Workload
    context: MeterContext
    parts: list[tuple[str, Meter]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def covered(self) -> frozenset[str]:
        return frozenset().union(*(m.covers for _, m in self.parts))

    def take(self, name: str, *, by: str, strict: bool) -> bool:
        cls = self.meters[name]
        found = cls.probe(self.workload, self.context)
        if found.ok:
            self.parts.append((name, cls.configure(self.workload, self.context)))
            self.reasons.append(f"{name} ({by}: {found.reason})")
            return True
        if found.fallback:
            self.warnings.append(f"meter {name} is unavailable, using the next source: "
                                 f"{found.reason}")
            self.reasons.append(f"{name} skipped ({found.reason})")
        elif strict:
            raise WorkloadError(self.workload.source, "energy.meter",
                                f"a meter this machine provides ({name}: {found.reason})",
                                self.workload.energy.meter)
        else:
            self.reasons.append(f"{name} skipped ({found.reason})")
        return False

    def fill(self, needed: frozenset[str] | None, exclude: set[str]) -> None:
        """Auto-pick real sources for ``needed`` (None: anything) not yet covered."""
        for name, cls in _auto_order(self.meters):
            if name in exclude or name in {n for n, _ in self.parts}:
                continue
            covers = cls.covers_for(self.workload)
            if needed is not None and not overlaps(covers, needed):
                continue
            if overlaps(covers, self.covered):
                continue
            self.take(name, by="auto", strict=False)

    def estimate_for_cpu(self, why: str) -> None:
        if self.covered & CPU_LIKE:
            return
        self.parts.append(("estimate", self.meters["estimate"].configure(self.workload,
                                                                         self.context)))
        self.reasons.append(f"estimate ({why}: the labelled estimate for the CPU)")


def select_meter(meters: dict[str, Any], workload: Workload,
                 context: MeterContext | None = None) -> Selection:
    context = context or MeterContext()
    picker = _Picker(meters, workload, context)
    spec = workload.energy.meter
    if spec == "auto":
        picker.fill(None, set())
        picker.estimate_for_cpu("no real CPU energy counter")
        head = "auto"
    else:
        names = meter_names(spec)
        for name in names:
            if name not in meters:
                raise WorkloadError(workload.source, "energy.meter",
                                    "a registered meter: " + ", ".join(sorted(meters)), name)
        failed: set[str] = set()
        needed: frozenset[str] = frozenset()
        for name in names:
            if not picker.take(name, by="chosen by name", strict=True):
                failed.add(name)
                needed |= meters[name].covers_for(workload)
        if failed:
            picker.fill(needed, failed)
            if needed & CPU_LIKE:
                picker.estimate_for_cpu(f"{', '.join(sorted(failed))} unavailable")
            if not picker.parts:
                picker.estimate_for_cpu("nothing else available")
        head = spec
    parts = [m for _, m in picker.parts]
    meter = parts[0] if len(parts) == 1 else CombinedMeter(parts)
    reason = f"{head}: " + "; ".join(picker.reasons)
    fallback = None
    if any(p.measured for p in parts) and picker.covered & CPU_LIKE:
        fallback = meters["estimate"].configure(workload, context)
    return Selection(meter, reason, tuple(picker.warnings), fallback)

"""The fallback meter: Cloud Carbon Footprint's linear model, labelled as an estimate.

Per vCPU, P = min + u·(max − min) (CCF: 0.74 W idle, 3.5 W busy); memory 0.392 W/GB.
u comes from CPU time, so the model is linear in CPU seconds and the energy of a window is
exact from its two edge readings. It never uses the host's full TDP.

Two scopes: ``process`` models the run's processes (their CPU time) on the vCPUs and
memory the deployment holds; ``machine`` models every vCPU and all memory of the machine
from its total busy CPU time (what a wall meter would see, other tenants included).

Every reading carries a band: the same usage under the least and the most power-hungry
CPU coefficients of CCF's per-microarchitecture table (memory unchanged), so a reader
sees how far the estimate may be off.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psutil

from pytest_basht.energy.base import Allocation, Meter, Reading, Usage
from pytest_basht.energy.leases import Alone, IdleShare
from pytest_basht.workload import EstimateSpec, Workload


def visible_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class EstimateMeter(Meter):
    name = "estimate"
    measured = False
    model = "ccf-linear"
    covers = frozenset({"cpu", "memory"})

    def __init__(self, spec: EstimateSpec | None = None) -> None:
        self.spec = spec or EstimateSpec()
        self.scope = self.spec.scope  # type: ignore[misc] # set per workload
        self.allocation: Allocation | None = None
        self.sharing: IdleShare = Alone()
        self._lock = threading.Lock()
        self._last: Usage | None = None
        self._cpu_j = 0.0
        self._mem_j = 0.0
        self._low_j = 0.0
        self._high_j = 0.0

    @classmethod
    def from_workload(cls, workload: Workload) -> EstimateMeter:
        return cls(workload.energy.estimate)

    @property
    def machine_scope(self) -> bool:
        return self.spec.scope == "machine"

    @property
    def source(self) -> str:
        return f"estimate:{self.model}" + ("/machine" if self.machine_scope else "")

    def hold(self, allocation: Allocation | None) -> None:
        with self._lock:
            self.allocation = allocation

    def share_idle(self, share: IdleShare) -> None:
        with self._lock:
            self.sharing = share

    def idle_fraction(self, start_ns: int, end_ns: int) -> float:
        return self.sharing.fraction(start_ns, end_ns)

    def _vcpus(self) -> int:
        if self.machine_scope:
            return psutil.cpu_count() or visible_cpus()
        return self.allocation.vcpus if self.allocation else visible_cpus()

    def _memory_gb(self, usage: Usage | None) -> float:
        if self.machine_scope:
            return psutil.virtual_memory().total / 2**30
        if self.allocation is not None:
            return self.allocation.memory_gb
        return usage.rss_bytes / 2**30 if usage is not None else 0.0

    def start(self, usage: Usage) -> None:
        with self._lock:
            self._last = usage

    def read(self, usage: Usage) -> Reading:
        with self._lock:
            last = self._last or usage
            dt = max(0, usage.t_ns - last.t_ns) / 1e9
            if dt > 0:
                s = self.spec
                vcpus = self._vcpus()
                # the idle part is shared by the scenarios running meanwhile on the machine;
                # the busy part is this process's own
                share = self.sharing.fraction(last.t_ns, usage.t_ns)
                idle_vcpus = vcpus * share
                if self.machine_scope:
                    used = usage.machine_cpu_s - last.machine_cpu_s
                    cores = vcpus
                else:
                    used = usage.cpu_s - last.cpu_s
                    cores = visible_cpus()
                busy = min(max(0.0, used), cores * dt)
                mem = self._memory_gb(usage) * s.memory_w_per_gb * dt * share
                self._cpu_j += (idle_vcpus * s.cpu_min_w * dt
                                + busy * (s.cpu_max_w - s.cpu_min_w))
                self._mem_j += mem
                self._low_j += (idle_vcpus * s.low_cpu_min_w * dt
                                + busy * (s.low_cpu_max_w - s.low_cpu_min_w) + mem)
                self._high_j += (idle_vcpus * s.high_cpu_min_w * dt
                                 + busy * (s.high_cpu_max_w - s.high_cpu_min_w) + mem)
                self._last = usage
            return Reading(usage.t_ns, {"cpu": self._cpu_j, "memory": self._mem_j}, self.source,
                           band=(self._low_j, self._high_j))

    def modelled_idle_power_w(self) -> float:
        """The idle draw of what the meter models, before any sharing (``idle_fraction``)."""
        return (self._vcpus() * self.spec.cpu_min_w
                + self._memory_gb(None) * self.spec.memory_w_per_gb)

    def max_power_w(self) -> float:
        s = self.spec
        mem = self._memory_gb(None) if (self.allocation or self.machine_scope) else (
            psutil.virtual_memory().total / 2**30)
        return self._vcpus() * s.cpu_max_w + mem * s.memory_w_per_gb

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        s = self.spec
        memory: Any = (round(self._memory_gb(None), 3) if (self.allocation or self.machine_scope)
                       else "process RSS")
        out.update(model=self.model, scope=s.scope, cpu_min_w=s.cpu_min_w,
                   cpu_max_w=s.cpu_max_w, memory_w_per_gb=s.memory_w_per_gb,
                   vcpus=self._vcpus(), memory_gb=memory, idle_sharing=self.sharing.describe(),
                   band={"low": {"cpu_min_w": s.low_cpu_min_w, "cpu_max_w": s.low_cpu_max_w},
                         "high": {"cpu_min_w": s.high_cpu_min_w,
                                  "cpu_max_w": s.high_cpu_max_w},
                         "how": "the same CPU time under the least and the most power-hungry "
                                "CPU coefficients of CCF's per-microarchitecture table; "
                                "memory unchanged"},
                   note="modelled from CPU time; not a measurement")
        return out

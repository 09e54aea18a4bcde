"""The fallback meter: Cloud Carbon Footprint's linear model, labelled as an estimate.

Per vCPU, P = min + u·(max − min) (CCF: 0.74 W idle, 3.5 W busy); memory 0.392 W/GB.
u comes from the CPU time of the run's processes, so the model is linear in CPU seconds
and the energy of a window is exact from its two edge readings. It never uses the host's
full TDP.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psutil

from pytest_basht.energy.base import Allocation, Meter, Reading, Usage
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

    def __init__(self, spec: EstimateSpec | None = None) -> None:
        self.spec = spec or EstimateSpec()
        self.allocation: Allocation | None = None
        self._lock = threading.Lock()
        self._last: Usage | None = None
        self._cpu_j = 0.0
        self._mem_j = 0.0

    @classmethod
    def from_workload(cls, workload: Workload) -> EstimateMeter:
        return cls(workload.energy.estimate)

    @property
    def source(self) -> str:
        return f"estimate:{self.model}"

    def hold(self, allocation: Allocation | None) -> None:
        with self._lock:
            self.allocation = allocation

    def _vcpus(self) -> int:
        return self.allocation.vcpus if self.allocation else visible_cpus()

    def _memory_gb(self, usage: Usage) -> float:
        if self.allocation is not None:
            return self.allocation.memory_gb
        return usage.rss_bytes / 2**30

    def start(self, usage: Usage) -> None:
        with self._lock:
            self._last = usage

    def read(self, usage: Usage) -> Reading:
        with self._lock:
            last = self._last or usage
            dt = max(0, usage.t_ns - last.t_ns) / 1e9
            if dt > 0:
                vcpus = self._vcpus()
                busy = min(max(0.0, usage.cpu_s - last.cpu_s), visible_cpus() * dt)
                s = self.spec
                self._cpu_j += vcpus * s.cpu_min_w * dt + busy * (s.cpu_max_w - s.cpu_min_w)
                self._mem_j += self._memory_gb(usage) * s.memory_w_per_gb * dt
                self._last = usage
            return Reading(usage.t_ns, {"cpu": self._cpu_j, "memory": self._mem_j}, self.source)

    def modelled_idle_power_w(self) -> float:
        s = self.spec
        mem = self.allocation.memory_gb if self.allocation else 0.0
        return self._vcpus() * s.cpu_min_w + mem * s.memory_w_per_gb

    def max_power_w(self) -> float:
        s = self.spec
        mem = (self.allocation.memory_gb if self.allocation
               else psutil.virtual_memory().total / 2**30)
        return self._vcpus() * s.cpu_max_w + mem * s.memory_w_per_gb

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(model=self.model, cpu_min_w=self.spec.cpu_min_w,
                   cpu_max_w=self.spec.cpu_max_w, memory_w_per_gb=self.spec.memory_w_per_gb,
                   vcpus=self._vcpus(),
                   memory_gb=self.allocation.memory_gb if self.allocation else "process RSS",
                   note="modelled from CPU time of the run's processes; not a measurement")
        return out

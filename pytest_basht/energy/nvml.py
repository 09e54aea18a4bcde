"""NVIDIA GPUs through NVML (nvidia-ml-py): energy per GPU, measured.

Volta and newer GPUs keep a total-energy counter (millijoules since the driver loaded):
a window's energy is the difference of two reads. Older GPUs only report power (mW), so
energy is power integrated over time (trapezoids between samples); on many GPUs that
power is itself an average over about one second, so short windows blur. Before a window
edge is read, outstanding CUDA work of this process is synchronised (when torch has
initialised CUDA), so the edge falls after the kernels it should include.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_basht.energy.base import Availability, Meter, Reading, Usage
from pytest_basht.workload import Workload


class Backend(Protocol):
    """The few NVML calls the meter makes (the real one is :class:`Pynvml`)."""

    def count(self) -> int: ...

    def name(self, index: int) -> str: ...

    def total_energy_mj(self, index: int) -> int | None:
        """The energy counter, or None when the GPU has none (pre-Volta)."""

    def power_mw(self, index: int) -> int: ...

    def power_limit_mw(self, index: int) -> int | None: ...

    def close(self) -> None: ...


class Pynvml:
    """NVML through nvidia-ml-py's ``pynvml`` module."""

    def __init__(self) -> None:
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                        for i in range(pynvml.nvmlDeviceGetCount())]

    def count(self) -> int:
        return len(self.handles)

    def name(self, index: int) -> str:
        return str(self.nvml.nvmlDeviceGetName(self.handles[index]))

    def total_energy_mj(self, index: int) -> int | None:
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handles[index]))
        except self.nvml.NVMLError:
            return None

    def power_mw(self, index: int) -> int:
        return int(self.nvml.nvmlDeviceGetPowerUsage(self.handles[index]))

    def power_limit_mw(self, index: int) -> int | None:
        try:
            return int(self.nvml.nvmlDeviceGetEnforcedPowerLimit(self.handles[index]))
        except self.nvml.NVMLError:
            return None

    def close(self) -> None:
        self.nvml.nvmlShutdown()


@dataclass
class Gpu:
    index: int
    name: str
    counter: bool
    max_power_w: float
    first_mj: int = 0
    last_mw: int | None = None
    last_t_ns: int = 0
    joules: float = 0.0


def cuda_synchronize() -> None:
    """Wait for this process's CUDA work, if torch has started CUDA (never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_available() and cuda.is_initialized():
        cuda.synchronize()


class NvmlMeter(Meter):
    name = "nvml"
    measured = True
    auto = True
    auto_priority = 30
    covers = frozenset({"gpu"})

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend = backend if backend is not None else Pynvml()
        self.gpus = []
        for i in range(self.backend.count()):
            limit = self.backend.power_limit_mw(i)
            self.gpus.append(Gpu(i, self.backend.name(i), self.backend.total_energy_mj(i)
                                 is not None, (limit or 0) / 1000))
        self._lock = threading.Lock()

    @classmethod
    def from_workload(cls, workload: Workload) -> NvmlMeter:
        return cls()

    @classmethod
    def available(cls) -> Availability:
        try:
            backend = Pynvml()
        except ImportError:
            return Availability(False, "nvidia-ml-py is not installed")
        except Exception as exc:  # pynvml raises NVMLError subclasses without a driver
            return Availability(False, f"no NVIDIA driver or GPU ({type(exc).__name__}: "
                                       f"{exc})")
        try:
            n = backend.count()
            if n == 0:
                return Availability(False, "NVML found no GPU")
            kinds = ["energy counter" if backend.total_energy_mj(i) is not None else
                     "power samples" for i in range(n)]
            return Availability(True, f"{n} GPU(s) through NVML ({', '.join(kinds)})")
        finally:
            backend.close()

    def start(self, usage: Usage) -> None:
        with self._lock:
            for gpu in self.gpus:
                if gpu.counter:
                    gpu.first_mj = self.backend.total_energy_mj(gpu.index) or 0
                else:
                    gpu.last_mw = self.backend.power_mw(gpu.index)
                    gpu.last_t_ns = usage.t_ns

    def read(self, usage: Usage) -> Reading:
        with self._lock:
            for gpu in self.gpus:
                if gpu.counter:
                    now = self.backend.total_energy_mj(gpu.index)
                    if now is not None:
                        gpu.joules = max(gpu.joules, (now - gpu.first_mj) / 1000)
                else:
                    self._integrate(gpu, self.backend.power_mw(gpu.index), usage.t_ns)
            return Reading(usage.t_ns, {f"gpu{g.index}": g.joules for g in self.gpus},
                           self.source)

    @staticmethod
    def _integrate(gpu: Gpu, mw: int, t_ns: int) -> None:
        if gpu.last_mw is not None and t_ns > gpu.last_t_ns:
            gpu.joules += (gpu.last_mw + mw) / 2 / 1000 * (t_ns - gpu.last_t_ns) / 1e9
        gpu.last_mw, gpu.last_t_ns = mw, t_ns

    def sync(self) -> None:
        cuda_synchronize()

    def min_sample_hz(self) -> float:
        """Power integration needs samples often enough to follow the draw."""
        return 0.0 if all(g.counter for g in self.gpus) else 10.0

    def close(self) -> None:
        self.backend.close()

    def max_power_w(self) -> float:
        return sum(g.max_power_w for g in self.gpus)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(gpus=[{"index": g.index, "name": g.name,
                          "method": "energy counter" if g.counter else "power × time",
                          "max_power_w": g.max_power_w} for g in self.gpus],
                   note="GPU board energy only; power samples are averaged by the driver "
                        "(about 1 s on recent GPUs)")
        return out

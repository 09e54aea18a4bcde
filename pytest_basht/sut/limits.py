"""Worker resource limits: vCPUs by affinity and thread count, memory by a watchdog.

On a machine with fewer cores than wn × wcpu, each worker gets an affinity set of
min(wcpu, cores // wn) cores (at least one), handed out round-robin, and exactly that many
torch/OpenMP threads — never more: oversubscribed OpenMP threads spin, and on 2 cores
4 workers × 2 threads ran the baseline 18× slower than 4 × 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psutil

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
WATCHDOG_INTERVAL_S = 0.2


def machine_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity")


@dataclass(frozen=True)
class CpuPlan:
    asked: int
    sets: tuple[tuple[int, ...], ...]
    machine_cores: tuple[int, ...]

    @property
    def threads(self) -> int:
        return len(self.sets[0]) if self.sets else 1

    @property
    def vcpus(self) -> int:
        """Distinct cores the deployment holds."""
        return len({c for s in self.sets for c in s})

    @property
    def oversubscription(self) -> float:
        """Threads asked to run at once per core held (1.0: none)."""
        return round(len(self.sets) * self.threads / max(1, self.vcpus), 3)

    def to_dict(self) -> dict[str, Any]:
        return {"asked_per_worker": self.asked, "given_per_worker": self.threads,
                "threads_per_worker": self.threads, "affinity": [list(s) for s in self.sets],
                "machine_cores": len(self.machine_cores), "vcpus_held": self.vcpus,
                "oversubscription": self.oversubscription,
                "enforced": can_pin(),
                "how": ("sched_setaffinity + torch.set_num_threads + OMP_NUM_THREADS"
                        if can_pin() else "not enforced: no sched_setaffinity on this OS")}


def plan_cpus(workers: int, per_worker: int, cores: list[int] | None = None) -> CpuPlan:
    cores = cores if cores is not None else machine_cores()
    per = max(1, min(per_worker, len(cores) // workers, len(cores)))
    sets = tuple(tuple(cores[(i * per + j) % len(cores)] for j in range(per))
                 for i in range(workers))
    return CpuPlan(per_worker, sets, tuple(cores))


def thread_env(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in THREAD_ENV}


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants (what a cgroup would charge)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total

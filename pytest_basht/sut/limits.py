"""Worker resource limits: vCPUs by affinity and thread count, memory by a watchdog, and the
records that say whether each limit was enforced and how (``cpu_record``, ``memory_record``,
``accelerator_record``); ``accelerator_missing`` says what a machine lacks.

On a machine with fewer cores than wn × wcpu, each worker gets an affinity set of
min(wcpu, cores // wn) cores (at least one), handed out round-robin, and exactly that many
torch/OpenMP threads — never more: oversubscribed OpenMP threads spin, and on 2 cores
4 workers × 2 threads ran the baseline 18× slower than 4 × 1.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import psutil

from pytest_basht.energy.process import descendants
from pytest_basht.errors import WorkloadError

LOCAL_WORKERS_PER_CORE = 16  # past this many worker processes a core, they only wait
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


def check_local_workers(count: int, source: str, key: str = "workers.count") -> None:
    """Refuse, before any test, more local worker processes than this machine can hold
    sensibly (each is a Python process with its trainable loaded): a count far beyond it
    would fail at deploy, or thrash, after the scenarios before it."""
    cores = len(machine_cores())
    most = LOCAL_WORKERS_PER_CORE * cores
    if count > most:
        raise WorkloadError(source, key, f"at most {most:,} local worker processes on this "
                            f"machine ({cores} core(s) × {LOCAL_WORKERS_PER_CORE})", count)


def memory_cap_bytes(asked_mb: int) -> int:
    """The watchdog's cap for wmem: the machine's memory when wmem is past it (such a cap
    could never trigger; ``memory_record`` says it was not enforced as asked)."""
    return min(asked_mb * 2**20, psutil.virtual_memory().total)


def thread_env(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in THREAD_ENV}


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:  # it exited meanwhile
        return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants (what a cgroup would charge).
    The watchdog reads it for every worker five times a second: the tree comes from the
    kernel's children lists (``energy.process.descendants``), not a scan of every process."""
    pids = descendants(pid)
    if pids is not None:
        total = 0
        for p in pids:
            try:
                total += _rss(psutil.Process(p))
            except psutil.Error:
                continue
        return total
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    return sum(_rss(p) for p in procs)


def affinity_of(pid: int) -> list[int] | None:
    """The cores a running process may use, as the OS reports them (None: unknown)."""
    try:
        return sorted(psutil.Process(pid).cpu_affinity())
    except (psutil.Error, AttributeError):
        return None


def cpu_record(plan: CpuPlan, observed: list[list[int] | None]) -> dict[str, Any]:
    """Whether each worker got wcpu cores of its own, checked against the OS's affinity.

    Enforced means: the machine could give every worker the vCPUs asked, and every worker
    process runs pinned to exactly its planned cores. A worker that got fewer cores than
    asked (too few on the machine for wn × wcpu) ran a different workload than the one
    asked for, so that limit is recorded as not enforced, with what was given instead.
    """
    out = {**plan.to_dict(), "observed_affinity": observed}
    planned = [sorted(s) for s in plan.sets]
    pinned = can_pin() and [sorted(o) if o is not None else None for o in observed] == planned
    given = plan.threads
    cores = len(plan.machine_cores)
    if not can_pin():
        how = "not enforced: no sched_setaffinity on this OS"
    elif not pinned:
        how = f"not enforced: worker affinity {observed} differs from the plan {planned}"
    elif given < plan.asked:
        how = (f"not enforced: asked {plan.asked} vCPUs per worker, {cores} cores for "
               f"{len(plan.sets)} workers gave {given}; pinned to {given} core(s) + "
               f"{given} torch/OpenMP thread(s)")
    else:
        how = (f"sched_setaffinity to {given} core(s) per worker (checked) + "
               f"torch.set_num_threads({given}) + OMP_NUM_THREADS={given}")
    if plan.oversubscription > 1 and pinned:
        how += f"; cores shared ×{plan.oversubscription:g} between workers"
    out.update(enforced=bool(pinned and given >= plan.asked), how=how,
               exclusive=plan.oversubscription <= 1)
    return out


def memory_record(asked_mb: int, workers: int, peak_rss_mb: list[float], kills: list[str],
                  readable: bool) -> dict[str, Any]:
    """Whether the watchdog held each worker's process tree under wmem.

    The cap is enforced when the watchdog can read the workers' resident memory (a process
    it cannot read, it cannot kill for it) and wmem is within the machine's memory: a cap
    past it could never trigger (``memory_cap_bytes`` caps it at the machine's memory, and
    this says so). It caps, it does not reserve: when wn × wmem exceeds the machine's
    memory that is said too.
    """
    machine_mb = psutil.virtual_memory().total / 2**20
    how = (f"watchdog: RSS of each worker's process tree every {WATCHDOG_INTERVAL_S:g} s; "
           "SIGKILL past the cap, the trial recorded failed"
           if readable else "not enforced: the watchdog cannot read the workers' memory")
    beyond = asked_mb > machine_mb
    if readable and beyond:
        how = (f"not enforced as asked: {asked_mb:,} MB per worker is more than this "
               f"machine's {machine_mb:.0f} MB, so the watchdog caps at {machine_mb:.0f} MB "
               "(the kernel's OOM killer may come first); " + how)
    elif readable and workers * asked_mb > machine_mb:
        how += (f"; a cap, not a reservation: {workers} × {asked_mb} MB exceeds this "
                f"machine's {machine_mb:.0f} MB")
    memory_kills = [k for k in kills if "memory cap exceeded" in k]
    return {"asked_mb": asked_mb, "enforced": readable and not beyond, "how": how,
            "peak_rss_mb": peak_rss_mb, "kills": len(memory_kills),
            "machine_mb": round(machine_mb)}


def accelerator_record(asked: str, device: str, workers: int) -> dict[str, Any]:
    """Which device the trainable was handed, against the accelerator asked for."""
    if asked == "cpu":
        return {"asked": asked, "device": device, "enforced": device == "cpu",
                "how": "device 'cpu' handed to the trainable; no accelerator"}
    if asked == "gpu" and device.startswith("cuda"):
        shared = workers > 1
        return {"asked": asked, "device": device, "enforced": True, "exclusive": not shared,
                "how": f"device '{device}' handed to the trainable"
                       + ("; the workers share the GPU (no per-worker partition)"
                          if shared else "")}
    return {"asked": asked, "device": device, "enforced": False,
            "how": f"not enforced: asked {asked}, the trainable was handed '{device}'"}


def accelerator_missing(kind: str) -> str | None:
    """Why this machine cannot give workers the accelerator ``kind`` (None: it can)."""
    if kind == "cpu":
        return None
    if kind == "gpu":
        return _gpu_missing()
    return (f"no {kind.upper()}: pytest-basht's workers run on CPU or CUDA GPUs only "
            f"(workers.accelerator: {kind})")


@functools.lru_cache(maxsize=1)
def _gpu_missing() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # NVML raises its own error types for each missing piece
        return f"no GPU: NVML is unavailable ({type(exc).__name__}: {exc})"
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    if count == 0:
        return "no GPU: NVML sees 0 devices"
    try:
        import torch
    except ImportError:
        return f"no usable GPU: NVML sees {count} device(s) but torch is not installed"
    if not torch.cuda.is_available():
        return (f"no usable GPU: NVML sees {count} device(s) but torch {torch.__version__} "
                f"cannot use CUDA (torch.version.cuda = {torch.version.cuda})")
    return None

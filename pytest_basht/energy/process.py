"""CPU time and memory of a process and all its descendants (the run's processes)."""

from __future__ import annotations

import os

import psutil

from pytest_basht.energy.base import Usage
from pytest_basht.records import mono_ns


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine, all CPUs: user, nice, system, irq, softirq.

    Idle, iowait and steal (time the hypervisor gave to other guests) are not work done
    here; guest time is already inside user on Linux.
    """
    ct = psutil.cpu_times()
    return float(sum(getattr(ct, name, 0.0) for name in ("user", "nice", "system", "irq",
                                                         "softirq")))


class ProcessTree:
    """Cumulative CPU seconds of a process tree, monotone across exits.

    A live process counts its own time plus that of the children it has reaped; a child
    that exits moves from the live sum into its parent's reaped sum, so nothing is counted
    twice. Time of a process whose parent died unreaped is lost; sampling often keeps that
    small.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.root = psutil.Process(pid or os.getpid())
        self._procs: dict[int, psutil.Process] = {}
        self._last_cpu = 0.0

    def pids(self) -> list[int]:
        try:
            return [self.root.pid] + [p.pid for p in self.root.children(recursive=True)]
        except psutil.Error:
            return [self.root.pid]

    def usage(self) -> Usage:
        t = mono_ns()
        total = 0.0
        rss = 0
        try:
            members = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            members = [self.root]
        alive: dict[int, psutil.Process] = {}
        for proc in members:
            known = self._procs.get(proc.pid)
            # Reuse the Process object: psutil checks it is the same process (create time).
            proc = known if known is not None and known.is_running() else proc
            try:
                with proc.oneshot():
                    ct = proc.cpu_times()
                    rss += proc.memory_info().rss
            except psutil.Error:
                continue
            total += ct.user + ct.system + ct.children_user + ct.children_system
            alive[proc.pid] = proc
        self._procs = alive
        self._last_cpu = max(self._last_cpu, total)
        return Usage(t_ns=t, cpu_s=self._last_cpu, rss_bytes=rss,
                     machine_cpu_s=machine_cpu_s())

"""CPU time and memory of a process and all its descendants (the run's processes).

The sampler reads this at 10 Hz or more, so it is kept cheap: the tree is rediscovered at
most every ``rescan_s`` (through the kernel's ``/proc/PID/task/TID/children`` lists, or
psutil's scan of every process where those lists are missing), memory with it; each
sample then reads only the CPU times of the known members and of the machine.
"""

from __future__ import annotations

import os
import time

import psutil

import pytest_basht.reading as reading
from pytest_basht.energy.base import Usage
from pytest_basht.records import mono_ns

CHILDREN_BYTES = 1_000_000  # a thread's children, as space-separated pids


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine, all CPUs: user, nice, system, irq, softirq.

    Idle, iowait and steal (time the hypervisor gave to other guests) are not work done
    here; guest time is already inside user on Linux.
    """
    ct = psutil.cpu_times()
    return float(sum(getattr(ct, name, 0.0) for name in ("user", "nice", "system", "irq",
                                                         "softirq")))


def _children_proc(pid: int) -> list[int] | None:
    """Direct children from /proc (every thread's list), or None when the kernel has none."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tasks:
        try:
            text = reading.read_text(f"/proc/{pid}/task/{tid}/children", CHILDREN_BYTES)
            out.extend(int(x) for x in text.split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None  # no CONFIG_PROC_CHILDREN: scan every process instead
        except (OSError, ValueError):
            continue
    return out


def descendants(pid: int) -> list[int] | None:
    """A process and all its descendants, from the kernel's children lists: a few small
    files, where psutil's ``children(recursive=True)`` reads every process of the host;
    None where the kernel keeps no such lists."""
    found, i = [pid], 0
    while i < len(found):
        kids = _children_proc(found[i])
        if kids is None:
            return None
        found.extend(k for k in kids if k not in found)
        i += 1
    return found


class ProcessTree:
    """Cumulative CPU seconds of a process tree, monotone across exits.

    A live process counts its own time plus that of the children it has reaped; a child
    that exits moves from the live sum into its parent's reaped sum, so nothing is counted
    twice. Time of a process whose parent died unreaped is lost; sampling often keeps that
    small. A child appears at the next rescan with all the time it has used.
    """

    def __init__(self, pid: int | None = None, rescan_s: float = 1.0) -> None:
        self.root = psutil.Process(pid or os.getpid())
        self.rescan_s = rescan_s
        self._procs: dict[int, psutil.Process] = {self.root.pid: self.root}
        self._rss: dict[int, int] = {}
        self._scanned = -float("inf")
        self._fast = True
        self._last_cpu = 0.0

    def pids(self) -> list[int]:
        self._rescan()
        return list(self._procs)

    def _descendants(self) -> list[int]:
        if self._fast:
            found = descendants(self.root.pid)
            if found is not None:
                return found
            self._fast = False
        try:
            return [self.root.pid] + [p.pid for p in self.root.children(recursive=True)]
        except psutil.Error:
            return [self.root.pid]

    def _rescan(self) -> None:
        procs: dict[int, psutil.Process] = {}
        rss: dict[int, int] = {}
        for pid in self._descendants():
            known = self._procs.get(pid)
            try:
                # Reuse the Process object: psutil checks it is the same process (create time).
                proc = known if known is not None and known.is_running() else psutil.Process(pid)
                rss[pid] = proc.memory_info().rss
            except psutil.Error:
                continue
            procs[pid] = proc
        procs.setdefault(self.root.pid, self.root)
        self._procs, self._rss = procs, rss
        self._scanned = time.monotonic()

    def usage(self) -> Usage:
        if time.monotonic() - self._scanned >= self.rescan_s:
            self._rescan()
        t = mono_ns()
        total = 0.0
        for pid, proc in list(self._procs.items()):
            try:
                ct = proc.cpu_times()
            except psutil.Error:
                self._procs.pop(pid, None)  # exited: its time is in its parent's now
                continue
            total += ct.user + ct.system + ct.children_user + ct.children_system
        self._last_cpu = max(self._last_cpu, total)
        return Usage(t_ns=t, cpu_s=self._last_cpu, rss_bytes=sum(self._rss.values()),
                     machine_cpu_s=machine_cpu_s())

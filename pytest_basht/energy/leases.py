"""Which scenarios run on this machine at each moment, so that its idle draw is shared
among them — not split 1/N among pytest-xdist's workers whether they run anything or not.

The pytest processes of one run (xdist's workers) share a directory of leases, one small
file per scenario: ``<pid>-<n>.lease`` holding the scenario's start on the monotonic
clock (CLOCK_MONOTONIC: one clock for every process of a host) when it begins, and its
start and end once it has ended, each written whole (a temporary file renamed over it).
A process's meter charges, for a stretch of time, the share of the idle draw

    ∫ 1 / (1 + n(t)) dt / (t1 − t0)

where n(t) counts the other processes' scenarios running at t: the process counts itself
once, running a scenario or not. One scenario alone on the machine is charged all of the
idle draw however many workers xdist started; two side by side half of it each while
they overlap. Summed over the scenarios, the idle draw is charged once for every moment
anything runs.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from pytest_basht.records import mono_ns

SUFFIX = ".lease"
MAX_BYTES = 256  # two integers
FOREVER = 2**63 - 1  # the end of a scenario still running


class IdleShare(Protocol):
    """The share of the idle draw a process charges over a stretch of the monotonic clock."""

    def fraction(self, start_ns: int, end_ns: int) -> float: ...

    def describe(self) -> str: ...


class Alone:
    """A process alone on the machine (no xdist): all of the idle draw, always."""

    def fraction(self, start_ns: int, end_ns: int) -> float:
        return 1.0

    def describe(self) -> str:
        return "alone: one pytest process, one scenario at a time"


@dataclass(frozen=True)
class Lease:
    owner: int  # the pid of the process running the scenario
    start_ns: int
    end_ns: int = FOREVER


def shared_fraction(others: Iterable[tuple[int, int]], start_ns: int, end_ns: int) -> float:
    """∫ 1/(1 + n(t)) dt / (end − start) over ``[start_ns, end_ns)``, n(t) the number of
    ``others`` intervals ``[lo, hi)`` covering t; an empty stretch: the share at its instant."""
    spans = list(others)
    if end_ns <= start_ns:
        return 1.0 / (1 + sum(1 for lo, hi in spans if lo <= start_ns < hi))
    edges: list[tuple[int, int]] = []
    for lo, hi in spans:
        lo, hi = max(lo, start_ns), min(hi, end_ns)
        if hi > lo:
            edges += [(lo, 1), (hi, -1)]
    edges.sort()
    total, running, last = 0.0, 0, start_ns
    for t, step in edges:
        total += (t - last) / (1 + running)
        running += step
        last = t
    total += (end_ns - last) / (1 + running)
    return total / (end_ns - start_ns)


class Leases:
    """The lease directory of one run, as one process sees and writes it."""

    def __init__(self, directory: Path, pid: int | None = None) -> None:
        self.directory = directory
        self.pid = os.getpid() if pid is None else pid
        self._seq = itertools.count(1)
        self._ended: dict[str, Lease] = {}  # other processes' ended leases: final, kept
        self._mine: dict[str, tuple[str, int]] = {}  # a running scenario: its lease, start

    def begin(self, start_ns: int) -> str:
        """A scenario of this process starts at ``start_ns``: its lease's name."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{self.pid}-{next(self._seq)}{SUFFIX}"
        self._write(name, f"{start_ns}\n")
        return name

    def end(self, name: str, start_ns: int, end_ns: int) -> None:
        self._write(name, f"{start_ns} {end_ns}\n")

    def begin_scenario(self, key: str) -> None:
        """Scenario ``key`` of this process starts now (again: nothing)."""
        if key not in self._mine:
            start = mono_ns()
            self._mine[key] = (self.begin(start), start)

    def end_scenario(self, key: str) -> None:
        """Scenario ``key`` ended now (one not begun: nothing)."""
        lease = self._mine.pop(key, None)
        if lease is not None:
            self.end(lease[0], lease[1], mono_ns())

    def _write(self, name: str, text: str) -> None:
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.directory / name)

    def others(self) -> list[Lease]:
        """Every other process's lease (ended ones read once, running ones each time)."""
        out = list(self._ended.values())
        try:
            names = [n for n in os.listdir(self.directory)
                     if n.endswith(SUFFIX) and n not in self._ended]
        except FileNotFoundError:  # no scenario has begun yet
            return out
        for name in names:
            owner = name.partition("-")[0]
            if not owner.isdigit() or int(owner) == self.pid:
                continue
            lease = self._read(name, int(owner))
            if lease is None:
                continue
            if lease.end_ns == FOREVER and not psutil.pid_exists(lease.owner):
                # its process died mid-scenario (a crashed xdist worker): over from now on
                lease = Lease(lease.owner, lease.start_ns, mono_ns())
            if lease.end_ns != FOREVER:
                self._ended[name] = lease
            out.append(lease)
        return out

    def _read(self, name: str, owner: int) -> Lease | None:
        try:
            with open(self.directory / name, "rb") as fh:
                fields = fh.read(MAX_BYTES).split()
            numbers = [int(f) for f in fields[:2]]
        except (OSError, ValueError):
            return None  # gone, or not one of ours: it shares nothing
        if not numbers:
            return None
        return Lease(owner, numbers[0], numbers[1] if len(numbers) > 1 else FOREVER)

    def fraction(self, start_ns: int, end_ns: int) -> float:
        return shared_fraction(((lease.start_ns, lease.end_ns) for lease in self.others()),
                               start_ns, end_ns)

    def describe(self) -> str:
        return ("shared among the scenarios running on the machine at each moment (a lease "
                "per scenario: 1 / the number running)")

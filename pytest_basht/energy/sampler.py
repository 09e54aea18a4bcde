"""The background sampler and the timeline it keeps.

The timeline holds cumulative series (time, joules by domain, CPU seconds of the run's
processes and of the whole machine). Cumulative values make any window's energy a
difference of two interpolated points, so the sampling rate limits the resolution of the
power curve, not the energy total. The timeline is bounded: past ``max_points`` it keeps
every other point.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mark:
    """One reading: cumulative joules (total and by domain) and CPU seconds at ``t_ns``.

    ``band`` is the (low, high) cumulative joules of a modelled meter.
    """

    t_ns: int
    joules: float
    cpu_s: float
    domains: dict[str, float] = field(default_factory=dict)
    machine_cpu_s: float = 0.0
    band: tuple[float, float] | None = None


class Timeline:
    def __init__(self, max_points: int = 100_000) -> None:
        self.max_points = max(16, max_points)
        self.t_ns: list[int] = []
        self.joules: list[float] = []
        self.cpu_s: list[float] = []
        self.machine_cpu_s: list[float] = []
        self.domains: dict[str, list[float]] = {}
        self.band: tuple[list[float], list[float]] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.t_ns)

    def append(self, mark: Mark) -> None:
        with self._lock:
            if self.t_ns and mark.t_ns < self.t_ns[-1]:
                return  # a late reading from another thread; keep the series monotone
            for name in mark.domains:
                if name not in self.domains:
                    self.domains[name] = [0.0] * len(self.t_ns)
            if mark.band is not None and self.band is None:
                self.band = ([0.0] * len(self.t_ns), [0.0] * len(self.t_ns))
            self.t_ns.append(mark.t_ns)
            self.joules.append(mark.joules)
            self.cpu_s.append(mark.cpu_s)
            self.machine_cpu_s.append(mark.machine_cpu_s)
            for name, series in self.domains.items():
                series.append(mark.domains.get(name, series[-1] if series else 0.0))
            if self.band is not None:
                low, high = self.band
                lo, hi = mark.band if mark.band is not None else (
                    low[-1] if low else 0.0, high[-1] if high else 0.0)
                low.append(lo)
                high.append(hi)
            if len(self.t_ns) > self.max_points:
                self._decimate()

    def _decimate(self) -> None:
        keep = [*list(range(0, len(self.t_ns) - 1, 2)), len(self.t_ns) - 1]
        self.t_ns = [self.t_ns[i] for i in keep]
        self.joules = [self.joules[i] for i in keep]
        self.cpu_s = [self.cpu_s[i] for i in keep]
        self.machine_cpu_s = [self.machine_cpu_s[i] for i in keep]
        self.domains = {k: [v[i] for i in keep] for k, v in self.domains.items()}
        if self.band is not None:
            self.band = ([self.band[0][i] for i in keep], [self.band[1][i] for i in keep])

    def times_since(self, t0: int) -> list[int]:
        with self._lock:
            return self.t_ns[bisect.bisect_left(self.t_ns, t0):]

    def revise(self, values: Mapping[int, tuple[Mapping[str, float], float | None]]) -> None:
        """Replace the given domains (and machine CPU, when given) of the points at the given
        times — a retrospective meter's settled values — and re-add the totals."""
        with self._lock:
            for t, (domains, machine) in values.items():
                i = bisect.bisect_left(self.t_ns, t)
                if i >= len(self.t_ns) or self.t_ns[i] != t:
                    continue
                for name, value in domains.items():
                    if name not in self.domains:
                        self.domains[name] = [0.0] * len(self.t_ns)
                    self.domains[name][i] = value
                self.joules[i] = sum(series[i] for series in self.domains.values())
                if machine is not None:
                    self.machine_cpu_s[i] = machine

    def snapshot(self, t0: int | None = None, t1: int | None = None) -> dict[str, list[float]]:
        """The points covering [t0, t1] (one beyond each edge), as plain lists."""
        with self._lock:
            lo = 0 if t0 is None else max(0, bisect.bisect_right(self.t_ns, t0) - 1)
            hi = len(self.t_ns) if t1 is None else bisect.bisect_left(self.t_ns, t1) + 1
            out: dict[str, list[float]] = {
                "t_ns": self.t_ns[lo:hi],
                "joules": self.joules[lo:hi],
                "cpu_s": self.cpu_s[lo:hi],
                "machine_cpu_s": self.machine_cpu_s[lo:hi],
            }
            for name, series in self.domains.items():
                out[f"joules.{name}"] = series[lo:hi]
            if self.band is not None:
                out["joules_low"] = self.band[0][lo:hi]
                out["joules_high"] = self.band[1][lo:hi]
            return out


class Sampler:
    """Calls ``tick`` in a daemon thread until stopped, every ``1/hz`` seconds or as
    ``interval(default_s)`` asks (a counter close to wrapping asks for sooner)."""

    def __init__(self, tick: Callable[[], object], hz: float,
                 interval: Callable[[float], float] | None = None) -> None:
        self.tick = tick
        self.interval = 1.0 / hz
        self.next_interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="basht-sampler", daemon=True)
        self._thread.start()

    def _wait_s(self) -> float:
        if self.next_interval is None:
            return self.interval
        try:
            return max(0.001, min(self.interval, self.next_interval(self.interval)))
        except Exception:  # a meter hiccup must not stop the sampling
            return self.interval

    def _run(self) -> None:
        while not self._stop.wait(self._wait_s()):
            try:
                self.tick()
            except Exception as exc:  # a meter hiccup must not kill the run's timeline
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

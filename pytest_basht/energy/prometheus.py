"""Energy counters scraped by a Prometheus server, read with PromQL (prometheus-api-client).

Presets name the counter of a common exporter:

* ``node_exporter``: ``node_rapl_package_joules_total`` and ``node_rapl_dram_joules_total``
  (RAPL of the node; core and uncore are inside package and are not added);
* ``kepler``: ``kepler_node_cpu_joules_total`` of ONE zone (``energy.prometheus.zone``,
  default package): Kepler's zones overlap, so they are never summed;
* ``scaphandre``: ``scaph_host_energy_microjoules`` (host energy, µJ);
* ``dcgm``: ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (per GPU, mJ);
* ``custom``: any selector of an energy counter, with its unit (``scale`` J per unit).

A window's energy comes from the raw samples around it (``selector[range]``), with counter
resets handled per series and linear interpolation between scrapes, so it is exact at the
scrape resolution (``increase()`` would extrapolate). Samples arrive one scrape interval
late: the meter is retrospective — the monitor settles each window once the server has
scraped past its end, and revises the provisional timeline. The CPU time of the measured
machine comes from ``node_cpu_seconds_total`` through the same server, so a node's energy
is shared out by that node's CPU time.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pytest_basht.energy.base import Availability, Meter, MeterContext, Reading, Usage
from pytest_basht.urls import redact
from pytest_basht.workload import PrometheusSpec, Workload

CPU_QUERY = 'node_cpu_seconds_total{mode!~"idle|iowait|steal"}'
#: How far before a window the first fetch reaches (covers scrape intervals up to 2 min).
LOOKBACK_S = 120.0
#: The provisional reads of the sampler refresh at most this often (HTTP is not free).
REFRESH_S = 1.0
HTTP_TIMEOUT_S = 5


@dataclass(frozen=True)
class Preset:
    metric: str
    matchers: tuple[str, ...]
    scale: float
    covers: frozenset[str]
    cpu: bool


PRESETS: dict[str, Preset] = {
    "node_exporter": Preset("node_rapl_*_joules_total",
                            ('__name__=~"node_rapl_(package|dram)_joules_total"',), 1.0,
                            frozenset({"cpu", "dram"}), True),
    "kepler": Preset("kepler_node_cpu_joules_total", ('__name__="kepler_node_cpu_joules_total"',),
                     1.0, frozenset({"cpu"}), True),
    "scaphandre": Preset("scaph_host_energy_microjoules",
                         ('__name__="scaph_host_energy_microjoules"',), 1e-6,
                         frozenset({"cpu", "dram"}), True),
    "dcgm": Preset("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                   ('__name__="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"',), 1e-3,
                   frozenset({"gpu"}), False),
}
KEPLER_COVERS = {"package": {"cpu"}, "core": {"cpu"}, "uncore": {"cpu"}, "dram": {"dram"}}


def with_matchers(selector: str, extra: list[str]) -> str:
    """Add label matchers to a series selector (``name{a="b"}`` or ``{...}`` or ``name``)."""
    extra = [m for m in extra if m]
    if not extra:
        return selector
    selector = selector.strip()
    if selector.endswith("}"):
        inner = selector[selector.index("{") + 1:-1].strip()
        head = selector[:selector.index("{")]
        return head + "{" + ", ".join([*([inner] if inner else []), *extra]) + "}"
    return selector + "{" + ", ".join(extra) + "}"


def queries(spec: PrometheusSpec) -> tuple[str, str | None, float, str]:
    """(energy selector, CPU selector or None, joules per unit, metric label) of a spec."""
    user = [spec.selector] if spec.selector else []
    if spec.preset == "custom":
        assert spec.query is not None, "validated: custom needs a query"
        energy = with_matchers(spec.query, user)
        cpu = with_matchers(spec.cpu_query, user) if spec.cpu_query else None
        return energy, cpu, spec.scale, spec.query.split("{")[0].strip() or spec.query
    preset = PRESETS[spec.preset]
    matchers = list(preset.matchers)
    metric = preset.metric
    if spec.preset == "kepler":
        matchers.append(f'zone="{spec.zone}"')
        metric = f'{preset.metric}{{zone="{spec.zone}"}}'
    energy = "{" + ", ".join(matchers + user) + "}"
    cpu_base = spec.cpu_query or (CPU_QUERY if preset.cpu else None)
    cpu = with_matchers(cpu_base, user) if cpu_base else None
    return energy, cpu, preset.scale, metric


def covers_of(spec: PrometheusSpec) -> frozenset[str]:
    if spec.preset == "custom":
        return frozenset({"host"})
    if spec.preset == "kepler":
        return frozenset(KEPLER_COVERS.get(spec.zone, {"host"}))
    return PRESETS[spec.preset].covers


def domain_of(preset: str, labels: dict[str, str], i: int) -> str:
    if preset == "node_exporter":
        kind = "dram" if "dram" in labels.get("__name__", "") else "package"
        return f"{kind}-{labels.get('index', i)}"
    if preset == "kepler":
        return labels.get("zone", "zone")
    if preset == "dcgm":
        return f"gpu{labels.get('gpu', i)}"
    if preset == "scaphandre":
        return "host"
    return "prometheus"


@dataclass
class Series:
    """One counter's raw samples (unix seconds, value) and its reset-corrected increase."""

    labels: dict[str, str]
    ts: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    inc: list[float] = field(default_factory=list)

    def add(self, samples: list[tuple[float, float]]) -> None:
        for t, v in samples:
            if self.ts and t <= self.ts[-1]:
                continue
            if not self.inc:
                self.inc.append(0.0)
            else:
                prev = self.values[-1]
                self.inc.append(self.inc[-1] + (v - prev if v >= prev else v))  # reset
            self.ts.append(t)
            self.values.append(v)

    def at(self, t: float) -> float:
        """The increase up to ``t``, interpolated between scrapes, held past the last."""
        if not self.ts:
            return 0.0
        i = bisect.bisect_left(self.ts, t)
        if i <= 0:
            return self.inc[0]
        if i >= len(self.ts):
            return self.inc[-1]
        t0, t1 = self.ts[i - 1], self.ts[i]
        frac = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
        return self.inc[i - 1] + frac * (self.inc[i] - self.inc[i - 1])

    @property
    def last_t(self) -> float:
        return self.ts[-1] if self.ts else -math.inf


def _client(url: str, auth: tuple[str, str] | None, token: str | None) -> Any:
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    headers = {"Authorization": f"Bearer {token}"} if token else None
    return PrometheusConnect(url=url, headers=headers, auth=auth, retry=Retry(total=0),
                             timeout=HTTP_TIMEOUT_S)


class PrometheusMeter(Meter):
    name = "prometheus"
    measured = True
    auto = True
    auto_priority = 10  # a URL was configured on purpose: prefer it to local counters
    retrospective = True

    def __init__(self, spec: PrometheusSpec, *, auth: tuple[str, str] | None = None,
                 token: str | None = None, refresh_s: float = REFRESH_S,
                 fail_after_s: float = 10.0) -> None:
        if spec.url is None:
            raise ValueError("the prometheus meter needs energy.prometheus.url")
        self.spec = spec
        self.url = spec.url
        self.client = _client(spec.url, auth, token)
        self.energy_query, self.cpu_query, self.scale, self.metric = queries(spec)
        self.covers = covers_of(spec)  # type: ignore[misc] # depends on the preset
        self.refresh_s = refresh_s
        self.offset_ns = time.time_ns() - time.monotonic_ns()
        self.energy: dict[str, Series] = {}
        self.cpu: dict[str, Series] = {}
        self.start_wall = 0.0
        self.fetched_to = 0.0
        self.last_refresh = 0.0
        self.errors = 0
        self.last_error: str | None = None
        self.extrapolated = 0
        self.fail_after_s = fail_after_s
        self.failing_since: float | None = None  # monotonic s of the first failed fetch
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ building

    @classmethod
    def configure(cls, workload: Workload, context: MeterContext) -> PrometheusMeter:
        return cls(workload.energy.prometheus, auth=context.prometheus_auth,
                   token=context.prometheus_token, fail_after_s=workload.energy.fail_after_s)

    @classmethod
    def covers_for(cls, workload: Workload) -> frozenset[str]:
        return covers_of(workload.energy.prometheus)

    @classmethod
    def probe(cls, workload: Workload, context: MeterContext) -> Availability:
        spec = workload.energy.prometheus
        if spec.url is None:
            return Availability(False, "no Prometheus URL (energy.prometheus.url or "
                                       "--basht-prometheus-url)")
        where = redact(spec.url)
        energy, _, _, _ = queries(spec)
        try:
            result = _client(spec.url, context.prometheus_auth,
                             context.prometheus_token).custom_query(energy)
        except Exception as exc:  # connection refused, DNS, TLS, HTTP status
            return Availability(False, f"Prometheus at {where} unreachable or refusing the "
                                       f"query ({type(exc).__name__}: {_short(exc)})",
                                fallback=True)
        if not result:
            return Availability(False, f"Prometheus at {where} has no series for {energy} "
                                       "(is the exporter scraped?)", fallback=True)
        zones = {r["metric"].get("zone") for r in result} - {None}
        if len(zones) > 1:
            return Availability(False, f"{energy} matches several zones ({sorted(zones)}); "
                                       "zones overlap and are never summed: select one",
                                fallback=True)
        return Availability(True, f"Prometheus at {where}: {len(result)} series of {energy}")

    @property
    def source(self) -> str:
        return f"prometheus:{self.metric}"

    # ------------------------------------------------------------------ fetching

    def wall_s(self, t_ns: int) -> float:
        return (t_ns + self.offset_ns) / 1e9

    def _try_fetch(self) -> None:
        """Fetch up to now; a failure is counted and remembered, never raised (a blip)."""
        try:
            self._fetch(time.time())
        except Exception as exc:  # the server blinked, or is gone: ``failure`` tells which
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {_short(exc)}"
            if self.failing_since is None:
                self.failing_since = time.monotonic()
        else:
            self.failing_since = None

    def failure(self) -> str | None:
        if self.failing_since is None:
            return None
        return (f"Prometheus at {redact(self.url)} unreachable for "
                f"{time.monotonic() - self.failing_since:.0f} s ({self.last_error})")

    def valid_until_ns(self) -> int | None:
        """The last sample every energy series has: readings after it are held values."""
        with self._lock:
            if not self.energy:
                return None
            last = min(s.last_t for s in self.energy.values())
        return None if last == -math.inf else int(last * 1e9) - self.offset_ns

    def _fetch(self, to_wall: float) -> None:
        """Every raw sample from where the last fetch ended up to ``to_wall``."""
        start = self.fetched_to - 1.0 if self.fetched_to else self.start_wall - LOOKBACK_S
        span_ms = max(1, math.ceil((to_wall - start) * 1000))
        for query, target in ((self.energy_query, self.energy), (self.cpu_query, self.cpu)):
            if query is None:
                continue
            rows = self.client.custom_query(f"{query}[{span_ms}ms]", params={"time": to_wall})
            for row in rows:
                key = repr(sorted(row["metric"].items()))
                series = target.setdefault(key, Series(dict(row["metric"])))
                series.add([(float(t), float(v)) for t, v in row.get("values", [])])
        self.fetched_to = to_wall

    def _joules_at(self, wall: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, series in enumerate(self.energy.values()):
            name = domain_of(self.spec.preset, series.labels, i)
            while name in out:
                name += "'"
            out[name] = (series.at(wall) - series.at(self.start_wall)) * self.scale
        return out

    def _cpu_at(self, wall: float) -> float | None:
        if not self.cpu:
            return None
        return sum(s.at(wall) for s in self.cpu.values())

    def start(self, usage: Usage) -> None:
        with self._lock:
            self.start_wall = self.wall_s(usage.t_ns)
            self._fetch(time.time())

    def read(self, usage: Usage) -> Reading:
        """Provisional: the latest scraped values (settled later by ``settle``/``revise``)."""
        with self._lock:
            now = time.monotonic()
            if now - self.last_refresh >= self.refresh_s:
                self.last_refresh = now
                self._try_fetch()  # on failure: the last values, until it answers again
            wall = self.wall_s(usage.t_ns)
            return Reading(usage.t_ns, self._joules_at(wall), self.source,
                           machine_cpu_s=self._cpu_at(wall))

    def settle(self, until_ns: int) -> bool:
        """Wait until every energy series has a sample at or after ``until_ns``."""
        target = self.wall_s(until_ns)
        deadline = time.monotonic() + self.spec.settle_s
        while True:
            with self._lock:
                self._try_fetch()
                if self.energy and all(s.last_t >= target for s in self.energy.values()):
                    return True
                gone = (self.failing_since is not None
                        and time.monotonic() - self.failing_since >= self.fail_after_s)
            if gone or time.monotonic() >= deadline:  # gone: the monitor fails over
                self.extrapolated += 1
                return False
            time.sleep(0.1)

    def revise(self, ts: list[int]) -> list[Reading]:
        with self._lock:
            return [Reading(t, self._joules_at(self.wall_s(t)), self.source,
                            machine_cpu_s=self._cpu_at(self.wall_s(t))) for t in ts]

    def max_power_w(self) -> float:
        """The highest power seen between scrapes so far (no peak is published)."""
        best = 0.0
        with self._lock:
            for series in self.energy.values():
                for i in range(1, len(series.ts)):
                    dt = series.ts[i] - series.ts[i - 1]
                    if dt > 0:
                        best = max(best, (series.inc[i] - series.inc[i - 1]) * self.scale / dt)
        return best

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(url=redact(self.url), preset=self.spec.preset, query=self.energy_query,
                   cpu_query=self.cpu_query, scale_j_per_unit=self.scale,
                   covers=sorted(self.covers), series=len(self.energy),
                   cpu_series=len(self.cpu), errors=self.errors, last_error=self.last_error,
                   windows_extrapolated=self.extrapolated,
                   note="energy of what the exporter measures, at its scrape resolution; "
                        "windows settle one scrape interval after they end")
        return out


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]

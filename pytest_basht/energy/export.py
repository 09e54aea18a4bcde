"""Live metrics of a run for Prometheus (prometheus_client): served while the run goes,
pushed to a Pushgateway at its end, so a Grafana board can follow it.

Exported (joules as the meter reports them, before PUE):

* ``basht_meter_energy_joules_total{source,domain}`` — the meter's cumulative energy;
* ``basht_power_watts{source}`` — power over the last second of the timeline;
* ``basht_trials_running|done|failed|expected{scenario}`` — the running scenario's trials;
* ``basht_best_value{scenario}`` — its best value so far;
* ``basht_phase_energy_joules_total{scenario,phase,source}`` — energy by lifecycle and
  trial phase (trial phases attributed), when a scenario finishes;
* ``basht_trials_total{scenario,state}`` — finished trials by state (complete, pruned,
  failed), when a scenario finishes.

The endpoint has no authentication and no TLS: it listens on 127.0.0.1 unless told
otherwise, and a run told to listen on another address says so (``exposure``).
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pytest_basht.records import Span, TrialRecord
from pytest_basht.urls import redact, split_credentials

if TYPE_CHECKING:
    from pytest_basht.energy.monitor import EnergyMonitor

JOB = "pytest-basht"


def exposure(host: str, port: int) -> str | None:
    """What serving on ``host`` exposes, when it is more than this machine: None for a
    loopback address."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it resolves to whatever the network says
        loopback = False
    if loopback:
        return None
    where = "every interface" if host in ("0.0.0.0", "::", "") else host
    return (f"live metrics are served on {where} (port {port}) with no authentication and "
            "no TLS: anyone who can reach this machine reads them; give 127.0.0.1:PORT "
            "(or PORT) to keep them on this machine")


def bind_problem(host: str, port: int) -> str | None:
    """Why a server cannot listen on ``host:port`` now, or None (bound and let go at once,
    with the address reuse the server itself asks for)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def short_name(test_id: str) -> str:
    return test_id.split("::")[-1] if test_id else ""


class _MonitorCollector:
    """Reads the meters' timelines when Prometheus scrapes (nothing runs in between)."""

    def __init__(self, monitors: list[EnergyMonitor]) -> None:
        self.monitors = monitors

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        energy = CounterMetricFamily("basht_meter_energy_joules",
                                     "Energy the meter has seen since the run started (J)",
                                     labels=["source", "domain"])
        power = GaugeMetricFamily("basht_power_watts", "Power over the last second (W)",
                                  labels=["source"])
        for monitor in list(self.monitors):
            tl = monitor.timeline
            if len(tl) == 0:
                continue
            last_t = tl.t_ns[-1]
            recent = tl.snapshot(last_t - 1_000_000_000, None)
            for key, series in recent.items():
                if key.startswith("joules.") and series:
                    energy.add_metric([monitor.source, key[len("joules."):]], series[-1])
            ts, js = recent["t_ns"], recent["joules"]
            if len(ts) >= 2 and ts[-1] > ts[0]:
                power.add_metric([monitor.source], (js[-1] - js[0]) / ((ts[-1] - ts[0]) / 1e9))
        yield energy
        yield power


class LiveExporter:
    def __init__(self, run_id: str, *, instance: str = "main") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.run_id = run_id
        self.instance = instance
        self.registry = CollectorRegistry()
        self.monitors: list[EnergyMonitor] = []
        self.registry.register(_MonitorCollector(self.monitors))
        self.phase_energy = Counter("basht_phase_energy_joules", "Energy by scenario and phase "
                                    "(J; trial phases attributed)", ["scenario", "phase",
                                                                     "source"],
                                    registry=self.registry)
        self.trials = Counter("basht_trials", "Finished trials by scenario and state",
                              ["scenario", "state"], registry=self.registry)
        gauge = {name: Gauge(f"basht_trials_{name}", f"Trials {name} in the running scenario",
                             ["scenario"], registry=self.registry)
                 for name in ("running", "done", "failed", "expected")}
        self.gauges = gauge
        self.best = Gauge("basht_best_value", "Best value so far in the running scenario",
                          ["scenario"], registry=self.registry)
        self.scenario = ""
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None
        self._lock = threading.Lock()

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Start the /metrics endpoint; returns the address it listens on."""
        from prometheus_client import start_http_server

        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        self.address = (host, int(self.server.server_port))
        return self.address

    def watch(self, monitor: EnergyMonitor) -> None:
        with self._lock:
            if monitor not in self.monitors:
                self.monitors.append(monitor)

    def begin(self, test_id: str) -> None:
        self.scenario = short_name(test_id)

    def progress(self, progress: Any) -> None:
        label = self.scenario or "-"
        for name in ("running", "done", "failed", "expected"):
            self.gauges[name].labels(label).set(getattr(progress, name))
        if progress.best is not None:
            self.best.labels(label).set(progress.best)

    def scenario_done(self, test_id: str, source: str, spans: Sequence[Span],
                      trials: Sequence[TrialRecord]) -> None:
        label = short_name(test_id)
        # summed first: one counter update per phase and state, not one per span and trial
        by_phase: Counter[str] = Counter()
        for span in itertools.chain(spans, (s for t in trials for s in t.spans)):
            if span.energy_j:
                by_phase[span.phase] += span.energy_j
        for phase, joules in by_phase.items():
            self.phase_energy.labels(label, phase, source).inc(joules)
        for state, count in Counter(t.state for t in trials).items():
            self.trials.labels(label, state).inc(count)
        self.gauges["running"].labels(label).set(0)

    def push(self, url: str) -> str | None:
        """Push every metric to a Pushgateway; returns why it failed, or None."""
        from prometheus_client import push_to_gateway
        from prometheus_client.exposition import basic_auth_handler, default_handler

        clean, creds = split_credentials(url)

        def handler(url: str, method: str, timeout: float | None, headers: list[Any],
                    data: bytes) -> Any:
            if creds is None:
                return default_handler(url, method, timeout, headers, data)
            return basic_auth_handler(url, method, timeout, headers, data, creds[0], creds[1])

        try:
            push_to_gateway(clean, job=JOB, registry=self.registry, timeout=10,
                            grouping_key={"run_id": self.run_id, "instance": self.instance},
                            handler=handler)
        except Exception as exc:  # unreachable, refused, HTTP error: the run stands
            return (f"could not push live metrics to the Pushgateway at {redact(url)}: "
                    f"{type(exc).__name__}: {str(exc).replace(url, str(redact(url)))[:200]}")
        return None

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

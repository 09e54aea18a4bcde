"""A real Prometheus stack on 127.0.0.1 for the tests: prometheus, prometheus-pushgateway
and prometheus-node-exporter from Debian (``.ci/install-prometheus``), on free ports, with
Prometheus scraping the other two every 250 ms. Skipped only when a binary is absent.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

BINARIES = ("prometheus", "prometheus-pushgateway", "prometheus-node-exporter")
SCRAPE_S = 0.25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    prometheus: str
    pushgateway: str
    node_exporter: str
    procs: list[subprocess.Popen[bytes]]

    def query(self, promql: str) -> list[dict]:
        r = requests.get(f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def wait_for(self, promql: str, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.1)
        raise AssertionError(f"Prometheus never returned {promql}")


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}: {log.read_text()[-800:]}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout} s: {log.read_text()[-800:]}")


@pytest.fixture(scope="module", name="stack")
def stack_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Import ``stack_fixture`` into a test module to use the ``stack`` fixture."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (run .ci/install-prometheus)")
    tmp = tmp_path_factory.mktemp("prometheus")
    push_port, node_port, prom_port = free_port(), free_port(), free_port()
    config = tmp / "prometheus.yml"
    config.write_text(f"""
global: {{scrape_interval: {int(SCRAPE_S * 1000)}ms, scrape_timeout: 200ms}}
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs: [{{targets: ["127.0.0.1:{push_port}"]}}]
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{node_port}"]}}]
""")
    procs: list[subprocess.Popen[bytes]] = []

    def start(cmd: list[str], ready: str, name: str) -> None:
        log = tmp / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        procs.append(proc)
        _wait_http(ready, proc, log)

    try:
        start(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{push_port}"],
              f"http://127.0.0.1:{push_port}/-/ready", "pushgateway")
        start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{node_port}"],
              f"http://127.0.0.1:{node_port}/metrics", "node-exporter")
        start(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
               f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
              f"http://127.0.0.1:{prom_port}/-/ready", "prometheus")
        s = Stack(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{push_port}",
                  f"http://127.0.0.1:{node_port}", procs)
        s.wait_for('up{job="node"} == 1')
        yield s
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Pusher:
    """Pushes one metric (any name, labels per series) to the Pushgateway under ``job``."""

    def __init__(self, gateway: str, job: str, name: str, labels: tuple[str, ...] = ()) -> None:
        self.gateway = gateway
        self.job = job
        self.registry = CollectorRegistry()
        self.gauge = Gauge(name, "test counter", labels, registry=self.registry)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.log: list[tuple[float, float]] = []

    def push(self, value: float, **labels: str) -> None:
        (self.gauge.labels(**labels) if labels else self.gauge).set(value)
        push_to_gateway(self.gateway, job=self.job, registry=self.registry, timeout=5)
        self.log.append((time.time(), value))

    def ramp(self, watts: float, hz: float = 40.0, start: float = 0.0) -> None:
        """Push a counter that grows at ``watts`` J/s from ``start``, ``hz`` times a second."""
        def run() -> None:
            t0 = time.monotonic()
            while not self._stop.is_set():
                self.push(start + watts * (time.monotonic() - t0))
                self._stop.wait(1 / hz)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def wait_scraped(stack: Stack, promql: str, check: Callable[[float], bool],
                 timeout: float = 10) -> None:
    """Until Prometheus has scraped a value of ``promql`` that passes ``check``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = stack.query(promql)
        if result and check(float(result[0]["value"][1])):
            return
        time.sleep(0.05)
    raise AssertionError(f"{promql} never passed the check")

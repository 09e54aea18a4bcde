"""A fake powercap sysfs tree for RAPL tests, and a thread that plays the hardware.

The layout is the kernel's: ``intel-rapl:N`` package zones with ``name``, ``energy_uj``,
``max_energy_range_uj`` and ``constraint_*_max_power_uw``; subzones ``intel-rapl:N:M``
(core, uncore, dram); a ``psys`` zone and an ``intel-rapl-mmio:0`` duplicate of the
package, both of which a correct reader must skip. Counters are replaced atomically, as
the kernel's reads are, and wrap at ``max_energy_range_uj``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path


class FakeRapl:
    def __init__(self, root: Path, *, range_j: float = 262_143.328850, packages: int = 1,
                 dram: bool = True, max_power_w: float | None = 150.0,
                 vendor: str = "intel") -> None:
        self.root = root
        self.range_uj = int(range_j * 1e6)
        self.paths: dict[str, Path] = {}
        self.uj: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        prefix = f"{vendor}-rapl"
        for n in range(packages):
            top = root / f"{prefix}:{n}"
            self._zone(top, f"package-{n}", max_power_w)
            self.paths[f"package-{n}"] = top
            self._zone(top / f"{prefix}:{n}:0", "core", None)
            if vendor == "intel":
                self._zone(top / f"{prefix}:{n}:1", "uncore", None)
            if dram:
                sub = top / f"{prefix}:{n}:2"
                self._zone(sub, "dram", None)
                self.paths[f"dram-{n}"] = sub
            # sysfs lists subzones flat under the class directory as well
            for sub in top.iterdir():
                if sub.is_dir():
                    (root / sub.name).symlink_to(sub, target_is_directory=True)
        if vendor == "intel":
            self._zone(root / f"{prefix}:{packages}", "psys", None)
            self._zone(root / "intel-rapl-mmio:0", "package-0", max_power_w)
        for domain in self.paths:
            self.set(domain, 0)

    def _zone(self, path: Path, name: str, max_power_w: float | None) -> None:
        path.mkdir(parents=True)
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{self.range_uj}\n")
        (path / "energy_uj").write_text("0\n")
        if max_power_w is not None:
            (path / "constraint_0_max_power_uw").write_text(f"{int(max_power_w * 1e6)}\n")
            (path / "constraint_1_max_power_uw").write_text("0\n")

    def set(self, domain: str, uj: int) -> None:
        with self._lock:
            self.uj[domain] = uj % self.range_uj
            path = self.paths[domain] / "energy_uj"
            tmp = path.with_name(".energy_uj.tmp")
            tmp.write_text(f"{self.uj[domain]}\n")
            os.replace(tmp, path)

    def add(self, domain: str, joules: float) -> None:
        self.set(domain, self.uj[domain] + round(joules * 1e6))

    def play(self, watts: Callable[[], dict[str, float]], hz: float = 200.0) -> None:
        """Advance the counters in a thread: ``watts()`` gives each domain's power now."""
        def run() -> None:
            last = time.monotonic()
            while not self._stop.wait(1 / hz):
                now = time.monotonic()
                for domain, w in watts().items():
                    self.add(domain, w * (now - last))
                last = now

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

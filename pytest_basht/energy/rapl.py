"""RAPL through the powercap sysfs: package and dram energy counters, measured.

Zones are ``<root>/intel-rapl:N`` (Intel, and AMD Zen on kernels whose intel_rapl_msr
driver serves AMD) and ``<root>/amd-rapl:N``. Each package zone counts ``package-N``; its
``dram`` subzone is counted too (DRAM energy is outside the package counter). ``core`` and
``uncore`` subzones are parts of the package and ``psys`` spans the platform, so they are
skipped to avoid counting energy twice. ``intel-rapl-mmio`` duplicates the package zone.

``energy_uj`` is a counter that wraps at ``max_energy_range_uj``. Between two reads it
may wrap once (seen as a decrease) or, after a long gap, several times; the number of
wraps is then inferred from the zone's last measured power, and counted in the report.
To keep gaps short the meter tells the sampler the rate it needs (at least two reads per
wrap at the zone's peak power) and asks for an early read when a counter nears its top,
as Zeus' wraparound tracker does.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_basht.reading as reading
from pytest_basht.energy.base import Availability, Meter, MeterContext, Reading, Usage
from pytest_basht.workload import Workload

ZONE_GLOBS = ("intel-rapl:*", "amd-rapl:*")
SYSFS_BYTES = 4096  # a sysfs attribute is at most a page
#: Peak power assumed for a zone that publishes no constraint (a generous server socket).
DEFAULT_MAX_POWER_W = 500.0
PERMISSION_FIX = (
    "energy_uj is readable by root only since CVE-2020-8694; give read access with "
    "`sudo chmod o+r {root}/intel-rapl:*/energy_uj {root}/intel-rapl:*/*/energy_uj` (until "
    "reboot) or a udev rule (docs/energy.md), or run as root")


@dataclass
class Zone:
    """One counter: a package or its dram subzone."""

    path: Path
    domain: str
    range_uj: int
    max_power_w: float
    last_uj: int | None = None
    last_t_ns: int = 0
    joules: float = 0.0
    power_w: float | None = None
    wraps: int = 0
    inferred_wraps: int = 0

    @property
    def energy_file(self) -> Path:
        return self.path / "energy_uj"

    def read_uj(self) -> int:
        return int(reading.read_text(self.energy_file, SYSFS_BYTES).strip())


def _read_int(path: Path) -> int | None:
    try:
        return int(reading.read_text(path, SYSFS_BYTES).strip())
    except (OSError, ValueError):
        return None


def _read_name(path: Path, default: str) -> str:
    try:
        return reading.read_text(path, SYSFS_BYTES).strip() if path.exists() else default
    except (OSError, ValueError):
        return default


def _max_power_w(path: Path) -> float:
    """The zone's highest published power constraint, or a generous default."""
    found = [v for f in sorted(path.glob("constraint_*_max_power_uw"))
             if (v := _read_int(f)) is not None and v > 0]
    return max(found) / 1e6 if found else DEFAULT_MAX_POWER_W


def discover(root: Path) -> list[Zone]:
    """The package and dram zones under ``root`` (no read of energy_uj yet)."""
    zones: list[Zone] = []
    tops = sorted({p for pattern in ZONE_GLOBS for p in root.glob(pattern)
                   if re.fullmatch(r"(intel|amd)-rapl:\d+", p.name)})
    for top in tops:
        name = _read_name(top / "name", top.name)
        if not name.startswith("package"):
            continue  # psys and friends span more than the package: counted twice
        index = name.rsplit("-", 1)[-1] if "-" in name else top.name.rsplit(":", 1)[-1]
        candidates = [(top, name)]
        for sub in sorted(top.glob(f"{top.name}:*")):
            sub_name = _read_name(sub / "name", "")
            if sub_name == "dram":
                candidates.append((sub, f"dram-{index}"))
        for path, domain in candidates:
            range_uj = _read_int(path / "max_energy_range_uj")
            if range_uj is None or range_uj <= 0:
                continue
            zones.append(Zone(path, domain, range_uj, _max_power_w(path)))
    return zones


class RaplMeter(Meter):
    name = "rapl"
    measured = True
    auto = True
    auto_priority = 20
    covers = frozenset({"cpu", "dram"})

    def __init__(self, root: Path | str = "/sys/class/powercap") -> None:
        self.root = Path(root)
        self.zones = discover(self.root)
        self._lock = threading.Lock()

    @classmethod
    def from_workload(cls, workload: Workload) -> RaplMeter:
        return cls(workload.energy.rapl.root)

    @classmethod
    def check(cls, root: Path) -> Availability:
        try:
            zones = discover(root)
        except OSError as exc:
            return Availability(False, f"cannot list {root}: {exc.strerror}")
        if not zones:
            return Availability(False, f"no RAPL zones (intel-rapl:*, amd-rapl:*) under {root}: "
                                       "no powercap RAPL driver here (a VM, a container "
                                       "without /sys/class/powercap, or not x86)")
        for zone in zones:
            try:
                zone.read_uj()
            except PermissionError:
                return Availability(False, f"{zone.energy_file}: permission denied; "
                                    + PERMISSION_FIX.format(root=root), fallback=True)
            except (OSError, ValueError) as exc:
                return Availability(False, f"{zone.energy_file}: unreadable ({exc})",
                                    fallback=True)
        names = ", ".join(z.domain for z in zones)
        return Availability(True, f"{len(zones)} RAPL counters under {root} ({names})")

    @classmethod
    def available(cls) -> Availability:
        return cls.check(Path("/sys/class/powercap"))

    @classmethod
    def probe(cls, workload: Workload, context: MeterContext) -> Availability:
        return cls.check(Path(workload.energy.rapl.root))

    def start(self, usage: Usage) -> None:
        with self._lock:
            for zone in self.zones:
                zone.last_uj = zone.read_uj()
                zone.last_t_ns = usage.t_ns

    def read(self, usage: Usage) -> Reading:
        with self._lock:
            for zone in self.zones:
                self._advance(zone, zone.read_uj(), usage.t_ns)
            return Reading(usage.t_ns, {z.domain: z.joules for z in self.zones}, self.source)

    @staticmethod
    def _advance(zone: Zone, raw: int, t_ns: int) -> None:
        if zone.last_uj is None:
            zone.last_uj, zone.last_t_ns = raw, t_ns
            return
        dt = max(0, t_ns - zone.last_t_ns) / 1e9
        step = raw - zone.last_uj
        if step < 0:
            step += zone.range_uj
            zone.wraps += 1
        # A gap long enough for the counter to go round more than once: add the whole
        # turns the zone's last measured power says it went through.
        if zone.power_w is not None and dt * zone.max_power_w * 1e6 > zone.range_uj:
            expected = zone.power_w * dt * 1e6
            extra = max(0, round((expected - step) / zone.range_uj))
            if extra:
                step += extra * zone.range_uj
                zone.wraps += extra
                zone.inferred_wraps += extra
        joules = step / 1e6
        zone.joules += joules
        if dt > 0:
            zone.power_w = joules / dt
        zone.last_uj, zone.last_t_ns = raw, t_ns

    def min_sample_hz(self) -> float:
        """Two reads per wrap at peak power: a single wrap between reads is then certain."""
        return max((2 * z.max_power_w * 1e6 / z.range_uj for z in self.zones), default=0.0)

    def poll_interval(self, default_s: float) -> float:
        """Read sooner when a counter would pass its top before the next regular read."""
        wait = default_s
        for zone in self.zones:
            if zone.last_uj is None:
                continue
            headroom_uj = zone.range_uj - zone.last_uj
            power = zone.power_w if zone.power_w else zone.max_power_w
            until_top = headroom_uj / (power * 1e6)
            if until_top < default_s:
                wait = min(wait, max(0.001, until_top / 2))
        return wait

    def max_power_w(self) -> float:
        return sum(z.max_power_w for z in self.zones)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(root=str(self.root), zones=[
            {"domain": z.domain, "path": str(z.path), "max_energy_range_uj": z.range_uj,
             "max_power_w": z.max_power_w, "wraps": z.wraps, "inferred_wraps": z.inferred_wraps}
            for z in self.zones],
            note="package and dram only: no GPU, disks, fans or power supply losses")
        return out

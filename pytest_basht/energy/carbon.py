"""Carbon intensity: a fixed value, a region from a small shipped table, or a CSV series.

The series (``timestamp,gCO2eq/kWh`` rows; ISO 8601 or unix seconds; naive times are UTC)
is a step function: each value holds from its timestamp to the next. The runner stores
the part of it that covers a scenario in the scenario's records, and the metrics weight it
by the energy drawn at each moment (``metrics.compute`` stays a pure function).

A series is read and validated once, when its workload is checked before any test, and
kept in memory for the rest of the process: a file deleted, cut or rewritten during the
run changes nothing, and no scenario's record waits on a file at its end. Should a series
that was never checked fail to read then, the record keeps the fixed value and says why.

Region values are annual averages of the carbon intensity of electricity generation
(lifecycle, gCO2eq/kWh) for 2023, from Ember and the Energy Institute as published by Our
World in Data; docs/energy.md lists each with its source.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest_basht.reading as reading
from pytest_basht.errors import WorkloadError
from pytest_basht.workload import Workload

OWID = ("Ember and Energy Institute via Our World in Data, 'Carbon intensity of electricity "
        "generation', 2023")
EMBER = "Ember, electricity generation emission intensity, 2023"


@dataclass(frozen=True)
class Region:
    g_per_kwh: float
    year: int
    source: str


REGIONS: dict[str, Region] = {
    "world": Region(481, 2023, EMBER),
    "australia": Region(549, 2023, OWID),
    "austria": Region(111, 2023, OWID),
    "belgium": Region(138, 2023, OWID),
    "brazil": Region(98, 2023, OWID),
    "canada": Region(170, 2023, OWID),
    "china": Region(582, 2023, OWID),
    "denmark": Region(152, 2023, OWID),
    "finland": Region(79, 2023, OWID),
    "france": Region(56, 2023, OWID),
    "germany": Region(381, 2023, OWID),
    "greece": Region(337, 2023, OWID),
    "india": Region(713, 2023, OWID),
    "ireland": Region(291, 2023, OWID),
    "norway": Region(30, 2023, EMBER),
    "poland": Region(662, 2023, EMBER),
    "sweden": Region(41, 2023, EMBER),
}
MAX_ROWS = 1_000_000
MAX_BYTES = 100_000_000  # a million rows of an ISO timestamp and a value, and room to spare

Series = tuple[tuple[float, float], ...]
#: every series this process has read, by resolved path: read once, before any test
_LOADED: dict[Path, Series] = {}


def region(name: str) -> Region | None:
    return REGIONS.get(name.strip().lower())


def _timestamp(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def read_series(path: Path, source: str = "", key: str = "energy.carbon_series"
                ) -> list[tuple[float, float]]:
    """(unix seconds, gCO2eq/kWh) rows sorted by time; errors name the file, line and key."""
    where = f"{source} -> {path}" if source and str(path) != source else str(path)
    try:
        text = reading.read_text(path, MAX_BYTES)
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(where, key, "a readable UTF-8 CSV file of timestamp,gCO2eq/kWh",
                            getattr(exc, "strerror", None) or str(exc)) from None
    reader = csv.reader(text.splitlines())
    try:
        return _rows(reader, where, key)
    except csv.Error as exc:  # a field past csv.field_size_limit (128 KiB), a NUL byte
        raise WorkloadError(where, key, f"line {reader.line_num}: CSV of "
                            f"timestamp,gCO2eq/kWh ({exc})") from None


def _rows(reader: Any, where: str, key: str) -> list[tuple[float, float]]:
    rows: list[tuple[float, float]] = []
    for lineno, row in enumerate(reader, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2:
            raise WorkloadError(where, key, f"line {lineno}: two columns, timestamp and "
                                "gCO2eq/kWh", ",".join(row))
        try:
            t = _timestamp(row[0])
            g = float(row[1])
        except ValueError:
            if not rows and lineno == 1:
                continue  # a header
            raise WorkloadError(where, key, f"line {lineno}: an ISO 8601 or unix timestamp "
                                "and a number", ",".join(row)) from None
        if not math.isfinite(g) or g < 0 or not math.isfinite(t):
            raise WorkloadError(where, key, f"line {lineno}: a finite intensity ≥ 0", row[1])
        rows.append((t, g))
        if len(rows) > MAX_ROWS:
            raise WorkloadError(where, key, f"at most {MAX_ROWS:,} rows")
    if not rows:
        raise WorkloadError(where, key, "at least one row of timestamp,gCO2eq/kWh")
    rows.sort()
    return rows


def series_path(workload: Workload) -> Path | None:
    raw = workload.energy.carbon_series
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_absolute():
        src = Path(workload.source) if workload.source else None
        if src is not None and src.suffix.lower() in (".yaml", ".yml", ".json"):
            path = src.parent / path
    return path


def load(path: Path, source: str = "") -> Series:
    """The series at ``path``, read and validated on first use, then kept in memory."""
    try:
        resolved = path.resolve()
    except OSError:
        resolved = path
    if resolved not in _LOADED:
        _LOADED[resolved] = tuple(read_series(path, source))
    return _LOADED[resolved]


def check(workload: Workload) -> None:
    """Usage errors in the carbon settings (unknown region, unreadable series); a series is
    read now, once, and kept for the scenarios' records."""
    e = workload.energy
    if e.carbon_region is not None and region(e.carbon_region) is None:
        raise WorkloadError(workload.source, "energy.carbon_region",
                            "a region of the shipped table: " + ", ".join(REGIONS),
                            e.carbon_region)
    path = series_path(workload)
    if path is not None:
        load(path, workload.source)


def intensity_at(series: Sequence[Sequence[float]], t: float) -> float:
    """The value in force at unix time ``t`` (the first value before the series starts)."""
    i = bisect.bisect_right([row[0] for row in series], t) - 1
    return float(series[max(0, i)][1])


def record(workload: Workload, start_wall_s: float, end_wall_s: float,
           wall_offset_ns: int) -> dict[str, Any]:
    """What the scenario's records need to compute its CINT: the fixed value, or the part
    of the series in force between the run's start and end."""
    e = workload.energy
    path = series_path(workload)
    if path is not None:
        try:
            rows = load(path, workload.source)
        except WorkloadError as exc:  # never checked, and gone: the record is kept all the same
            return {"source": "fixed", "g_per_kwh": e.carbon_intensity,
                    "note": f"the carbon series could not be read at the end of the scenario "
                            f"({exc}); the fixed value is used"}
        first = max((i for i, (t, _) in enumerate(rows) if t <= start_wall_s), default=0)
        last = max((i for i, (t, _) in enumerate(rows) if t <= end_wall_s), default=0)
        kept = [[t, g] for t, g in rows[first:last + 1]]
        covers = rows[0][0] <= start_wall_s
        out: dict[str, Any] = {"source": f"series:{path}", "series": kept,
                               "wall_offset_ns": wall_offset_ns,
                               "g_per_kwh": kept[0][1]}
        if not covers:
            out["note"] = "the series starts after the run began: its first value is used before"
        return out
    if e.carbon_region is not None:
        found = region(e.carbon_region)
        assert found is not None, "validated by check()"
        return {"source": f"region:{e.carbon_region.strip().lower()}",
                "g_per_kwh": found.g_per_kwh, "year": found.year, "reference": found.source}
    return {"source": "fixed", "g_per_kwh": e.carbon_intensity}

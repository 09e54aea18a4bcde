"""report.json: every raw record needed to recompute every metric, as plain JSON.

The layout is versioned (``schema_version``) and described by ``schema.json`` beside this
module. Non-finite floats are written as null, so the file is strict JSON.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest_basht.reading as reading
from pytest_basht.errors import BashtUsageError
from pytest_basht.metrics import TABLE2_KEYS, UNITS, WASTE_CATEGORIES
from pytest_basht.result import RunResult

SCHEMA_VERSION = 1
MAX_BYTES = 1_000_000_000  # a report of thousands of scenarios with their timelines
DEFAULTS = {"carbon_intensity_g_per_kwh": 475.0, "carbon_intensity_note": "world average",
            "pue": 1.0}


class ReportError(BashtUsageError):
    """A report that cannot be read or written; the message names the file."""


def clean(value: Any) -> Any:
    """JSON-ready: non-finite floats become None, tuples lists, keys strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def scenario_record(test_id: str, result: RunResult, *, outcome: str = "passed",
                    experiment: str | None = None,
                    variables: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics = result.metrics or result.recompute()
    best = result.best
    return clean({
        "test_id": test_id,
        "experiment": experiment or result.workload.experiment,
        "variables": variables or {},
        "outcome": outcome,
        "status": result.status,
        "error": result.error,
        "workload": result.workload.to_dict(),
        "workload_source": result.workload.source,
        "table1": [list(row) for row in result.workload.table1()],
        "deployment": result.deployment,
        "spans": [s.to_dict() for s in result.spans],
        "trials": [t.to_dict() for t in result.trials],
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "test_score": result.test_score,
        "energy": result.energy.to_dict(),
        "sut": result.sut,
        "metrics": metrics.to_dict(),
    })


def build(*, run_id: str, status: str, scenarios: list[dict[str, Any]],
          machine: dict[str, Any], packages: dict[str, Any], git: dict[str, Any] | None,
          options: dict[str, Any], workload_file: dict[str, Any] | None,
          meters: list[dict[str, Any]], notes: list[str] | None = None) -> dict[str, Any]:
    return clean({
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "machine": machine,
        "packages": packages,
        "git": git,
        "options": options,
        "workload_file": workload_file,
        "meters": meters,
        "defaults": DEFAULTS,
        "units": UNITS,
        "waste_categories": list(WASTE_CATEGORIES),
        "notes": notes or [],
        "scenarios": scenarios,
    })


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=1, allow_nan=False, sort_keys=False) + "\n"


def schema() -> dict[str, Any]:
    text = resources.files("pytest_basht.report").joinpath("schema.json").read_text("utf-8")
    return json.loads(text)


def load(path: str | Path) -> dict[str, Any]:
    """Read a report.json (or a run directory holding one), with a clear error if unusable."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(reading.read_text(path, MAX_BYTES))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the report ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: cannot read the report ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON (line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}); the file is corrupt") from None
    except ValueError as exc:  # an integer past Python's limit on digits
        raise ReportError(f"{path}: not a report this Python can read ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ReportError(f"{path}: not a pytest-basht report (no schema_version)")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise ReportError(f"{path}: schema_version {version!r}, this pytest-basht reads "
                          f"version {SCHEMA_VERSION}")
    return data


def junit_properties(record: dict[str, Any]) -> list[tuple[str, Any]]:
    """A scenario's metrics as JUnit XML properties (``basht.<key>``)."""
    m = record["metrics"]
    energy = record["energy"]
    props: list[tuple[str, Any]] = [("basht.scenario", record.get("scenario_id")
                                     or record["test_id"])]
    props += [(f"basht.{key}", m.get(key)) for key in TABLE2_KEYS]
    props += [("basht.energy_source", energy.get("source")),
              ("basht.energy_measured", energy.get("measured")),
              ("basht.best_value", record.get("best_value")),
              ("basht.test_score", record.get("test_score")),
              ("basht.trials", m.get("trials")),
              ("basht.provisional", m.get("provisional"))]
    return props

"""report.json: every raw record needed to recompute every metric, as plain JSON.

The layout is versioned (``schema_version``) and described by ``schema.json`` beside this
module. Non-finite floats are written as null, so the file is strict JSON.

A scenario's record is made JSON-ready once, where it is built (``scenario_record``); the
report around it is then only assembled and written, never copied or cleaned again. The
text is encoded by the json module's C encoder, record by record, with one line per trial
and per span (``dumps``): a report of 10,000 trials is written in about a second.
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest_basht.reading as reading
from pytest_basht.errors import BashtUsageError
from pytest_basht.metrics import TABLE2_KEYS, UNITS, WASTE_CATEGORIES, waste_categories
from pytest_basht.objectives import front_record
from pytest_basht.records import EnergyTrace, TrialRecord
from pytest_basht.report.forecast import judge
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


def _finite(value: Any) -> Any:
    """A number field, JSON-ready."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _numbers(values: list[Any]) -> list[Any]:
    """A long series of numbers, JSON-ready: checked at C speed, rebuilt only if it must."""
    try:
        if all(map(math.isfinite, values)):
            return values
    except TypeError:  # a None (or another non-number) in the series
        pass
    return clean(values)


def _span(out: dict[str, Any]) -> dict[str, Any]:
    """A span's dict, JSON-ready in place: its fields are scalars, two of them floats."""
    out["cpu_s"], out["energy_j"] = _finite(out["cpu_s"]), _finite(out["energy_j"])
    return out


def _trial(trial: TrialRecord, waste: list[str]) -> dict[str, Any]:
    out = trial.to_dict()
    out["waste"] = waste
    out["params"] = clean(out["params"])
    out["intermediate"] = _numbers(out["intermediate"])
    for key in ("value", "cpu_s", "energy_j"):
        out[key] = _finite(out[key])
    for span in out["spans"]:
        _span(span)
    return out


def _energy(trace: EnergyTrace) -> dict[str, Any]:
    """The small parts cleaned as usual; the timeline's long series at C speed."""
    return {key: ({str(k): _numbers(v) for k, v in value.items()} if key == "timeline"
                  else clean(value)) for key, value in trace.to_dict().items()}


def scenario_record(test_id: str, result: RunResult, *, outcome: str = "passed",
                    experiment: str | None = None,
                    variables: dict[str, Any] | None = None,
                    sweep: dict[str, Any] | None = None, scenario_id: str | None = None,
                    repeat: int | None = None, worker: str | None = None,
                    conditions: dict[str, Any] | None = None) -> dict[str, Any]:
    """A scenario's record as the report holds it, JSON-ready (made so once, here). The
    session's facts, where given: the sweep it is a step of, its scenario id and repeat,
    where it ran (``worker``: the xdist worker or ``main``; this process and host), the
    load it ran under."""
    metrics = result.metrics or result.recompute()
    best = result.best
    wasted = waste_categories(result.workload, result.trials,
                              best.number if best else None)
    head = clean({
        "test_id": test_id,
        "experiment": experiment or result.workload.experiment,
        "variables": variables or {},
        "outcome": outcome,
        "status": result.status,
        "error": result.error,
        "workload": result.workload.to_dict(),
        "workload_source": result.workload.source,
        "table1": [list(row) for row in result.workload.table1(result.uses)],
        "deployment": result.deployment,
    })
    record = {
        **head,
        "spans": [_span(s.to_dict()) for s in result.spans],
        "trials": [_trial(t, wasted.get(t.number, [])) for t in result.trials],
        "best_trial": best.number if best else None,
        "best_value": _finite(best.value) if best else None,
        "test_score": _finite(result.test_score),
        "energy": _energy(result.energy),
        "sut": clean(result.sut),
        "metrics": clean(metrics.to_dict()),
        "pareto": clean(front_record(result.workload, result.trials, metrics.cint_g_per_kwh,
                                     result.sut.get("told"))),
        "forecast": clean(judge(result.forecast, metrics.to_dict())
                          if result.forecast and result.forecast.get("figures")
                          else result.forecast),
    }
    if sweep is not None:
        record["sweep"] = sweep
    if scenario_id is not None:
        record["scenario_id"] = scenario_id
    if repeat is not None:
        record["repeat"] = repeat
    if worker is not None:
        record["placement"] = {"worker": worker, "pid": os.getpid(), "host": platform.node()}
    if conditions is not None:
        record["conditions"] = clean(conditions)
    return record


def skip_record(test_id: str, experiment: str | None, variables: dict[str, Any], reason: str,
                sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the report keeps of a skipped scenario (plain data: it travels over xdist)."""
    entry: dict[str, Any] = {"test_id": test_id, "experiment": experiment,
                             "variables": variables, "reason": reason}
    if sweep is not None:
        entry["sweep"] = sweep
    return clean(entry)


def build(*, run_id: str, status: str, scenarios: list[dict[str, Any]],
          machine: dict[str, Any], packages: dict[str, Any], git: dict[str, Any] | None,
          options: dict[str, Any], workload_file: dict[str, Any] | None,
          meters: list[dict[str, Any]], notes: list[str] | None = None) -> dict[str, Any]:
    """The report around its scenario records, which are JSON-ready already
    (``scenario_record``) and are taken as they are: the run's own parts are cleaned."""
    report = clean({
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
    })
    report["scenarios"] = scenarios
    return report


#: The json module's C encoder (it serves only calls without ``indent``).
_ENCODE = json.JSONEncoder(allow_nan=False, separators=(", ", ": ")).encode
#: Containers this deep (the report 0, its scenarios 2, their parts 3) are laid out one
#: item per line; deeper ones — a trial with its spans, a timeline — are one line each.
EXPANDED_DEPTH = 3


def _lay_out(value: Any, depth: int, out: list[str]) -> None:
    pad = "\n" + " " * (depth + 1)
    if isinstance(value, dict) and value and depth <= EXPANDED_DEPTH:
        sep = "{"
        for key, item in value.items():
            out.append(f"{sep}{pad}{_ENCODE(str(key))}: ")
            _lay_out(item, depth + 1, out)
            sep = ","
        out.append("\n" + " " * depth + "}")
    elif (isinstance(value, list) and value and depth <= EXPANDED_DEPTH
          and isinstance(value[0], (dict, list))):
        sep = "["
        for item in value:
            out.append(sep + pad)
            _lay_out(item, depth + 1, out)
            sep = ","
        out.append("\n" + " " * depth + "]")
    else:
        out.append(_ENCODE(value))


def dumps(report: dict[str, Any]) -> str:
    """report.json's text: strict JSON, laid out by ``EXPANDED_DEPTH``."""
    out: list[str] = []
    try:
        _lay_out(report, 0, out)
    except ValueError:  # a non-finite float a hook added: null, as everywhere else
        out = []
        _lay_out(clean(report), 0, out)
    out.append("\n")
    return "".join(out)


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

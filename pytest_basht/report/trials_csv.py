"""trials.csv: every trial of every scenario of a run, one row each, beside report.json.

report.md lists only a large scenario's best, slowest and failed trials; this file keeps
them all in a form a spreadsheet or pandas reads at once. One row per trial: which
scenario, the trial's number, worker, state, value, its start and end (monotonic ns, as
in report.json) and duration, epochs reported, CPU seconds, attributed energy, error, its
waste categories (``failed;after_target``; empty: not wasted), and one ``param.<name>``
column per hyperparameter of any scenario (empty where a scenario has no such parameter).
report.json remains the full record (spans, intermediate values, tracebacks).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_basht.report.atomic import replace_atomic

NAME = "trials.csv"
COLUMNS = ("test_id", "scenario_id", "number", "worker", "state", "value", "start_ns",
           "end_ns", "time_s", "epochs", "cpu_s", "energy_j", "error", "waste")


def _cell(value: Any) -> Any:
    return "" if value is None else value


def param_names(report: dict[str, Any]) -> list[str]:
    """Every hyperparameter name of every scenario, in order of first appearance."""
    names: dict[str, None] = {}
    for sc in report.get("scenarios", []):
        for trial in sc.get("trials", []):
            names.update(dict.fromkeys(trial["params"]))
    return list(names)


def rows(report: dict[str, Any], params: list[str]) -> Iterator[list[Any]]:
    for sc in report.get("scenarios", []):
        test_id = sc["test_id"]
        scenario_id = sc.get("scenario_id") or test_id
        for t in sc.get("trials", []):
            p = t["params"]
            yield [test_id, scenario_id, t["number"], t["worker"], t["state"],
                   _cell(t["value"]), t["start_ns"], t["end_ns"],
                   (t["end_ns"] - t["start_ns"]) / 1e9, len(t.get("intermediate") or ()),
                   _cell(t.get("cpu_s")), _cell(t.get("energy_j")), _cell(t.get("error")),
                   ";".join(t.get("waste") or ()),
                   *(_cell(p.get(name)) for name in params)]


def write(report: dict[str, Any], path: Path) -> Path:
    """Write the run's trials to ``path`` atomically (a header only when none ran)."""
    params = param_names(report)

    def fill(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow([*COLUMNS, *(f"param.{name}" for name in params)])
            out.writerows(rows(report, params))

    replace_atomic(path, fill)
    return path

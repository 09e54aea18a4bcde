"""The report assembled: a pure function of the scenario records, the run's notes and the
facts about the run that the caller gathered (machine, packages, git, options, meters).

``build`` adds what only the whole run shows: how many scenarios shared the machine at
once (``concurrency``) and what a scenario's energy then covers, the scenarios lost with a
crashed xdist worker, the skipped ones, and the experiments' tables. ``raw`` is the report
when that fails: every record as received, so that no measurement is lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_basht.reading as reading
import pytest_basht.workload_files as workload_files
from pytest_basht.report import experiments
from pytest_basht.report import json as report_json


@dataclass(frozen=True)
class RunFacts:
    """What the report says about the run beside its scenarios, gathered by the caller."""

    run_id: str
    status: str
    options: dict[str, Any]
    machine: dict[str, Any]  # machine.fingerprint
    packages: dict[str, Any]
    git: dict[str, Any] | None
    workload_file: dict[str, Any] | None  # see ``workload_file``
    meters: list[dict[str, Any]]  # the run's meters; none where no scenario ran (xdist)
    budget: str | None = None  # the budget's description, unless it is ``full``


def workload_file(path: Path | None) -> dict[str, Any] | None:
    """The --basht-workload file as the report keeps it: path, SHA-256 and text."""
    if path is None:
        return None
    try:
        text = reading.read_text(path, workload_files.MAX_BYTES)
    except (OSError, UnicodeDecodeError) as exc:
        return {"path": str(path), "error": str(exc)}
    return {"path": str(path), "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "text": text}


def meter_source(meters: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> str:
    """The source of the run's energy figures (part of the machine's fingerprint)."""
    if meters:
        return meters[0]["source"]
    return records[0]["energy"]["source"] if records else ""


def build(records: Sequence[dict[str, Any]], notes: Sequence[str], facts: RunFacts, *,
          lost: Sequence[dict[str, Any]] = (), skipped: Sequence[dict[str, Any]] = ()
          ) -> dict[str, Any]:
    """The report of a run: its scenario records (in report order), its notes, its facts,
    the scenarios ``lost`` with a crashed xdist worker and those ``skipped``."""
    records = [dict(r) for r in records]  # concurrency notes each one's overlaps
    meters = list(facts.meters)
    if not meters and records:  # an xdist controller: the meter the workers reported
        meters = [records[0]["energy"]["meter"]]
    peak = concurrency(records)
    notes = [*notes, *(lost_note(entry) for entry in lost)]
    if facts.budget is not None:
        notes.append(facts.budget)
    report = report_json.build(
        run_id=facts.run_id, status=facts.status, scenarios=records, machine=facts.machine,
        packages=facts.packages, git=facts.git, options=facts.options,
        workload_file=facts.workload_file, meters=meters, notes=notes)
    report["concurrency"] = {
        "max_parallel": peak,
        "processes": len({(r.get("placement") or {}).get("pid") for r in records}),
        "energy_scope": energy_scope(records),
    }
    report["lost"] = list(lost)
    report["skipped"] = report_json.clean(list(skipped))
    report["experiments"] = experiments.experiments(report["scenarios"], report["skipped"])
    return report


def raw(records: Sequence[dict[str, Any]], notes: Sequence[str], problem: Exception, *,
        run_id: str, status: str, options: dict[str, Any]) -> dict[str, Any]:
    """The report when the full one cannot be built: every scenario's raw record, so
    that the measurements are kept (``basht report`` can render it later)."""
    return report_json.build(
        run_id=run_id, status="error" if status == "complete" else status,
        scenarios=list(records), machine={}, packages={}, git=None, options=options,
        workload_file=None, meters=[],
        notes=[*notes, f"the full report could not be built ({type(problem).__name__}: "
                       f"{problem}); this one holds every scenario's raw record"])


def lost_note(entry: dict[str, Any]) -> str:
    """What the report says of a scenario lost with its crashed xdist worker."""
    return (f"xdist worker {entry['worker']} crashed while running {entry['test_id']}: its "
            f"record is lost ({entry['reason']}); the scenarios it had finished are kept, "
            "provisional where their deployment's undeploy was not recorded")


def _window(record: dict[str, Any]) -> tuple[int, int] | None:
    """When a scenario ran: its own deploy (not a reused one) to metric collection."""
    reused = (record.get("deployment") or {}).get("reused")
    spans = [s for s in record.get("spans", []) if s["phase"] != "undeploy"
             and not (reused and s["phase"] == "deploy")]
    edges = [(s["start_ns"], s["end_ns"]) for s in [*spans, *record.get("trials", [])]]
    if not edges:
        return None
    return min(a for a, _ in edges), max(b for _, b in edges)


def concurrency(records: list[dict[str, Any]]) -> int:
    """Note in each record how many scenarios shared the machine with it; the run's peak.

    All processes of one host share CLOCK_MONOTONIC, so windows from different xdist
    workers compare directly.
    """
    windows = [_window(r) for r in records]
    peak_run = 1 if records else 0
    for i, record in enumerate(records):
        w = windows[i]
        host = (record.get("placement") or {}).get("host")
        others = [j for j, o in enumerate(windows) if j != i and w and o and o[0] < w[1]
                  and w[0] < o[1] and (records[j].get("placement") or {}).get("host") == host]
        peak = 1
        for t in [w[0], *(max(w[0], windows[j][0]) for j in others)] if w else []:
            peak = max(peak, 1 + sum(1 for j in others if windows[j][0] <= t < windows[j][1]))
        record["concurrency"] = {"max_parallel": peak,
                                 "overlapped": [records[j]["test_id"] for j in others]}
        peak_run = max(peak_run, peak)
    return peak_run


def energy_scope(records: Sequence[dict[str, Any]]) -> str:
    """What one scenario's energy covers when scenarios share the machine."""
    if all(not r["energy"].get("measured") for r in records):
        return ("per process: each pytest process (xdist worker) models its own process "
                "tree's energy from that tree's CPU time, plus a share of the modelled idle "
                "draw: at each moment 1 / the number of scenarios then running on the "
                "machine; trials get CPU-time shares")
    return ("a measured meter: each pytest process reads the counters it has; where they "
            "cover the whole machine, a scenario's figure includes what scenarios running "
            "beside it drew, unless the meter attributes by CPU-time share")

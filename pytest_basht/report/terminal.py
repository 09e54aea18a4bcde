"""What the terminal shows: the summary after a run, and the live line while trials run.

Plain functions returning text; the pytest plugin only writes it, with each line's colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from pytest_basht.report import experiments, markdown, ranking
from pytest_basht.report.gate import table

if TYPE_CHECKING:
    from pytest_basht.sut.base import Progress


@dataclass(frozen=True)
class Line:
    """One line (or a table) of the summary, and how the terminal marks it."""

    text: str
    red: bool = False
    bold: bool = False
    yellow: bool = False

    def markup(self) -> dict[str, bool]:
        """Keyword arguments for pytest's ``TerminalReporter.write_line``."""
        return {k: v for k, v in (("red", self.red), ("bold", self.bold),
                                  ("yellow", self.yellow)) if v}


def summary(written: str, report: dict[str, Any] | None,
            finish: Sequence[tuple[str, bool]] = ()) -> list[Line]:
    """The summary under the ``basht`` rule: the scenario table, the meters, failed trials,
    concurrency, losses, the experiments, where the report is, the gate's table, then the
    end of the run's own lines (``finish``: each with whether it alarms). Without a report,
    ``written`` says why it could not be written."""
    alarms = [Line(line, red=red, bold=red) for line, red in finish]
    if report is None:
        return [Line(written, red=True), *alarms]
    headers, rows = markdown.summary_rows(report)
    out = [Line(tabulate(rows, headers=headers, disable_numparse=True))]
    out += meter_lines(report)
    out += failure_lines(report)
    peak = report.get("concurrency", {}).get("max_parallel", 1)
    if peak > 1:
        out.append(Line(f"concurrency: up to {peak} scenarios shared the machine "
                        f"({report['concurrency']['processes']} processes); energy "
                        f"{report['concurrency']['energy_scope']}"))
    out += [Line(f"LOST: {lost['test_id']} (xdist worker {lost['worker']} crashed: "
                 f"{lost['reason']})", red=True) for lost in report.get("lost", [])]
    out += [Line(line) for line in experiments.terminal_lines(report.get("experiments", []))]
    out += ranking_lines(report)
    out.append(Line(f"report: {written}/report.json, {written}/report.md, "
                    f"{written}/report.html"))
    gate = report.get("comparison")
    if gate and gate.get("rows"):
        headers, rows = table(gate)
        out.append(Line(f"comparison with {gate['baseline']['label']}:"))
        out.append(Line(tabulate(rows, headers=headers, disable_numparse=True)))
    return out + alarms


#: The terminal shows this many setups of an experiment; report.md and report.html all.
RANKING_ROWS = 12


def ranking_lines(report: dict[str, Any]) -> list[Line]:
    """The setups ranked by what it took to reach the goal (``ranking``), one table per
    experiment and goal, at most ``RANKING_ROWS`` setups each; nothing when no scenario's
    goal has a target."""
    out = []
    for caption, headers, rows in ranking.sections(report["scenarios"],
                                                   ranking.report_rank_by(report)):
        out += [Line(caption + ":", bold=True),
                Line(tabulate(rows[:RANKING_ROWS], headers=headers, disable_numparse=True))]
        if len(rows) > RANKING_ROWS:
            never = sum(row[0] == "✗" for row in rows[RANKING_ROWS:])
            out.append(Line(f"… {len(rows) - RANKING_ROWS} more setups ({never} never reached "
                            "the target): report.md and report.html rank them all"))
    return out


def meter_lines(report: dict[str, Any]) -> list[Line]:
    """Each meter: its source, measured or an estimate, why it was chosen, its warnings."""
    out = []
    for meter in report["meters"]:
        label = "measured" if meter.get("measured") else "ESTIMATE, not a measurement"
        if meter.get("failover"):
            label += f"; FAILED mid-run, then {meter['failover']['fallback'] or 'nothing'}"
        out.append(Line(f"energy: {meter.get('source')} ({label}); "
                        f"{meter.get('selection', '')}"))
        out += [Line(f"energy warning: {warning}", yellow=True)
                for warning in meter.get("warnings", [])]
    return out


def failure_lines(report: dict[str, Any]) -> list[Line]:
    """A line for each scenario where more than half the trials failed, with the first
    failure's error (a scenario where none completed has failed its test as well)."""
    out = []
    for sc in report.get("scenarios", []):
        trials = sc.get("trials") or []
        failed = [t for t in trials if t.get("state") == "failed"]
        if not trials or len(failed) * 2 <= len(trials):
            continue
        first = min(failed, key=lambda t: (t["start_ns"], t["number"]))
        error = str(first.get("error") or "no error recorded").splitlines()[0][:200]
        out.append(Line(f"FAILED TRIALS: {sc['test_id']}: {len(failed)} of {len(trials)} "
                        f"trials failed; first, #{first['number']}: {error}",
                        red=True, bold=True))
    return out


def time_left_s(progress: Progress, elapsed_s: float) -> float | None:
    """Time left at the pace so far (trials done per second of the run), None before the
    first trial ends or without a known number of trials."""
    if progress.done <= 0 or progress.expected <= 0 or elapsed_s <= 0:
        return None
    return max(0, progress.expected - progress.done) * elapsed_s / progress.done


def duration(seconds: float) -> str:
    """``45s``, ``3m 05s``, ``2h 10m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def progress_line(progress: Progress, energy_j: float, source: str,
                  elapsed_s: float = 0.0) -> str:
    """The live line while a scenario's trials run: trials done of expected, running,
    failed and pruned, the best value so far, energy so far and the time left."""
    best = "—" if progress.best is None else f"{progress.best:.4g}"
    left = time_left_s(progress, elapsed_s)
    eta = "?" if left is None else f"~{duration(left)}"
    return (f"[basht] trials {progress.done}/{progress.expected} · running {progress.running}"
            f" · failed {progress.failed} · pruned {progress.pruned} · best {best}"
            f" · energy {energy_j:.1f} J ({source}) · {duration(elapsed_s)} elapsed,"
            f" {eta} left")

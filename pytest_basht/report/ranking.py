"""Which setup reaches the goal for the least: the ranking every view shows.

A *setup* is a scenario without its repeat (``scenario_id``); its runs are its repeats.
Setups are ranked, within one experiment and goal, by what it cost to first reach the
goal's target — one of ``RANK_BY``:

- ``eta``: energy to target (ETA, J), the default;
- ``tta``: time to target (TTA, s);
- ``cost``: USD to target — worker-hours until the target (``workers.count`` × TTA) at the
  workload's price per worker-hour, plus ETA at its price per kWh (OC's formula, stopped
  at the target);
- ``co2``: gCO2eq to target — ETA in kWh × the run's energy-weighted CINT.

With repeats a setup's figure is the median of the runs that reached the target and its
spread is their min–max; two neighbours whose spreads overlap are a ``tie`` and share a
rank. One run per setup has no spread: the ranking says so rather than call a difference
within the noise a win. Setups ordered first by how many runs reached the target (all of
them first), then by the median. A setup none of whose runs reached it gets ✗ and the best
value it reached, after those that did, best value first.

Pure functions of report records (and of the experiment rows built from them), used by the
terminal, report.md, report.html and the ``basht`` views.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_basht.report.format import fmt

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class RankKey:
    """One way to rank: its name on the command line, its label, unit and meaning."""

    name: str
    label: str
    unit: str
    meaning: str


RANK_BY: dict[str, RankKey] = {k.name: k for k in (
    RankKey("eta", "ETA", "J", "energy to target"),
    RankKey("tta", "TTA", "s", "time to target"),
    RankKey("cost", "cost to target", "USD", "cost to target"),
    RankKey("co2", "CO2 to target", "gCO2eq", "carbon to target"),
)}
DEFAULT = "eta"
#: The ranking's heading row (the terminal, report.md and report.html share it).
HEADERS = ("rank", "setup", "runs", "reached", "{label} {unit}", "spread", "best", "note")


def rank_key(name: str | None) -> RankKey:
    """The ``RANK_BY`` entry for ``name`` (None: the default); ValueError names the choices."""
    key = (name or DEFAULT).strip().lower()
    if key not in RANK_BY:
        raise ValueError(f"one of {', '.join(RANK_BY)}")
    return RANK_BY[key]


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def to_target(record: Mapping[str, Any]) -> dict[str, float | None]:
    """A scenario record's cost of first reaching its goal's target, by ``RANK_BY`` name
    (all None when it never did)."""
    m = record.get("metrics") or {}
    eta_j, tta_ms = _number(m.get("eta_j")), _number(m.get("tta_ms"))
    if eta_j is None or tta_ms is None:
        return {name: None for name in RANK_BY}
    workload = record.get("workload") or {}
    prices = workload.get("prices") or {}
    workers = (workload.get("workers") or {}).get("count") or 1
    kwh = eta_j / J_PER_KWH
    cint = _number(m.get("cint_g_per_kwh"))
    return {
        "eta": eta_j, "tta": tta_ms / 1e3,
        "cost": (workers * tta_ms / 3.6e6 * float(prices.get("usd_per_worker_hour", 0.0))
                 + kwh * float(prices.get("usd_per_kwh", 0.0))),
        "co2": None if cint is None else kwh * cint,
    }


@dataclass(frozen=True)
class Run:
    """One run of a setup, as the ranking needs it."""

    setup: str
    label: str
    group: str | None
    goal: tuple[str, str, float | None]  # metric, direction, target
    to_target: Mapping[str, float | None]
    best: float | None


def setup_label(scenario_id: str) -> str:
    """A setup's short name: its parameters, else its test name."""
    name = scenario_id.split("::")[-1]
    return name[name.index("[") + 1:-1] if "[" in name and name.endswith("]") else name


def run_of(record: Mapping[str, Any]) -> Run:
    """A scenario record (report.json's ``scenarios``) as a run of its setup."""
    goal = (record.get("workload") or {}).get("goal") or {}
    setup = record.get("scenario_id") or record["test_id"]
    return Run(setup, setup_label(setup), record.get("experiment"),
               (goal.get("metric", "value"), goal.get("direction", "maximize"),
                _number(goal.get("target"))),
               to_target(record), _number(record.get("best_value")))


def run_of_row(row: Mapping[str, Any], group: str | None) -> Run:
    """An experiment row (``experiments.row``) as a run of its setup."""
    goal = row.get("goal") or {}
    return Run(row["scenario_id"], row["label"], group,
               (goal.get("metric", "value"), goal.get("direction", "maximize"),
                _number(goal.get("target"))),
               row.get("to_target") or {}, _number(row.get("best_value")))


def run_of_sample(scenario_id: str, values: Mapping[str, float]) -> Run:
    """A run saved in the history (``history.sample_values``) as a run of its setup."""
    reached = {name: values.get(f"to_target.{name}") for name in RANK_BY}
    if reached["eta"] is None and "eta_j" in values:  # saved before to_target was kept
        tta_ms = values.get("tta_ms")
        reached.update(eta=values["eta_j"], tta=None if tta_ms is None else tta_ms / 1e3)
    goal = ("value", "maximize" if values.get("goal.maximize", 1.0) else "minimize",
            values.get("goal.target"))
    return Run(scenario_id, setup_label(scenario_id), None, goal, reached,
               _number(values.get("best_value")))


@dataclass(frozen=True)
class Ranked:
    """One setup's place: ``rank`` None means it never reached the target (✗)."""

    rank: int | None
    setup: str
    label: str
    runs: int
    reached: int
    median: float | None
    low: float | None
    high: float | None
    best: float | None
    tie: bool

    @property
    def spread_known(self) -> bool:
        return self.reached >= 2


def rank(runs: Sequence[Run], by: str | None = None) -> list[Ranked]:
    """The setups of ``runs`` (one goal), best first, by the ``RANK_BY`` name ``by``."""
    key = rank_key(by).name
    setups: dict[str, list[Run]] = {}
    for run in runs:
        setups.setdefault(run.setup, []).append(run)
    maximize = bool(runs) and runs[0].goal[1] == "maximize"
    rows = []
    for setup, group in setups.items():
        values = sorted(v for r in group if (v := r.to_target.get(key)) is not None)
        bests = [r.best for r in group if r.best is not None]
        best = (max(bests) if maximize else min(bests)) if bests else None
        rows.append(Ranked(None, setup, group[0].label, len(group), len(values),
                           statistics.median(values) if values else None,
                           values[0] if values else None, values[-1] if values else None,
                           best, False))
    reached = sorted((r for r in rows if r.median is not None),
                     key=lambda r: (r.reached < r.runs, r.median))
    out: list[Ranked] = []
    for r in reached:
        prev = out[-1] if out else None
        tie = (prev is not None and prev.spread_known and r.spread_known
               and r.low is not None and prev.high is not None and r.low <= prev.high)
        place = prev.rank if tie and prev is not None else len(out) + 1
        out.append(Ranked(place, r.setup, r.label, r.runs, r.reached, r.median, r.low,
                          r.high, r.best, tie))
    never = [r for r in rows if r.median is None]
    never.sort(key=lambda r: (r.best is None,
                              0.0 if r.best is None else (-r.best if maximize else r.best)))
    return out + never


def groups(runs: Sequence[Run]) -> list[tuple[str | None, tuple[str, str, float | None],
                                              list[Run]]]:
    """Runs by experiment and goal (setups compete only under one goal), in order seen."""
    found: dict[tuple[str | None, tuple[str, str, float | None]], list[Run]] = {}
    for run in runs:
        found.setdefault((run.group, run.goal), []).append(run)
    return [(group, goal, members) for (group, goal), members in found.items()]


def goal_text(goal: tuple[str, str, float | None]) -> str:
    metric, direction, target = goal
    return f"{metric} {'≥' if direction == 'maximize' else '≤'} {fmt(target)}"


def headers(by: str | None = None) -> list[str]:
    key = rank_key(by)
    return [h.format(label=key.label, unit=key.unit) for h in HEADERS]


def rows(ranked: Sequence[Ranked], label: Callable[[Ranked], str] | None = None
         ) -> list[list[str]]:
    """The table's cells: rank (``=2`` for a tie), setup, runs, how many reached the
    target, the median (✗ when none did), min–max, the best value, a note."""
    out = []
    for r in ranked:
        name = label(r) if label is not None else r.label
        if r.rank is None:
            out.append(["✗", name, str(r.runs), f"0/{r.runs}", "✗", "—", fmt(r.best),
                        "never reached the target"])
            continue
        spread = f"{fmt(r.low)}–{fmt(r.high)}" if r.spread_known else "—"
        note = []
        if r.tie:
            note.append(f"tie with #{r.rank} (spreads overlap)")
        if r.reached < r.runs:
            note.append(f"{r.runs - r.reached} run(s) never reached it")
        out.append([f"={r.rank}" if r.tie else str(r.rank), name, str(r.runs),
                    f"{r.reached}/{r.runs}", fmt(r.median), spread, fmt(r.best),
                    "; ".join(note)])
    # the setup a tie joins shares its rank: mark it too
    for i, r in enumerate(ranked[1:], start=1):
        if r.tie and not out[i - 1][0].startswith("="):
            out[i - 1][0] = f"={out[i - 1][0]}"
    return out


def caption(by: str | None, goal: tuple[str, str, float | None], group: str | None,
            ranked: Sequence[Ranked]) -> str:
    """One line over the table: what it ranks by, under which goal, and how sure it is."""
    key = rank_key(by)
    text = (f"ranking{' of ' + group if group else ''} by {key.label} ({key.meaning}, "
            f"{key.unit}; goal {goal_text(goal)}; median of the runs that reached it)")
    if ranked and all(r.runs == 1 for r in ranked):
        text += ("; one run each: no spread, so a small difference may be noise "
                 "(--basht-repeat N gives each setup a spread)")
    return text


def sections(scenarios: Sequence[Mapping[str, Any]], by: str | None = None
             ) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every ranking of a report's scenarios: (caption, headers, rows) per experiment and
    goal. Scenarios whose goal has no target cannot be ranked and are left out."""
    return sections_of([run_of(sc) for sc in scenarios], by)


def compared(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]],
             by: str | None = None) -> list[tuple[str, list[str], list[list[str]]]]:
    """Two runs' setups ranked together (``basht compare``), each named with its side."""
    runs = [replace(r, setup=f"{side}\0{r.setup}", label=f"{r.label} ({side})")
            for side, scenarios in (("old", old), ("new", new))
            for r in (run_of(sc) for sc in scenarios)]
    return sections_of(runs, by)


def sections_of(runs: Sequence[Run], by: str | None = None
                ) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, headers, rows) per experiment and goal of ``runs`` with a target."""
    out = []
    for group, goal, members in groups([r for r in runs if r.goal[2] is not None]):
        ranked = rank(members, by)
        out.append((caption(by, goal, group, ranked), headers(by), rows(ranked)))
    return out


def report_rank_by(report: Mapping[str, Any]) -> str:
    """The ranking a report was asked for (``--basht-rank-by``), else the default."""
    return ((report.get("options") or {}).get("rank_by")) or DEFAULT

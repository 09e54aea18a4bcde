"""The Pareto front of a scenario's trials as report.md says it, and the fronts of an
experiment's scenarios side by side in one plot — pure functions of the records'
``pareto`` blocks (``objectives.front_record``).

A scenario's front is shown when its study weighed several objectives
(``goal.objectives``) or its workload fixed a hypervolume reference point
(``goal.reference``: an energy-blind search set beside an energy-aware one); an
experiment's fronts are drawn when any of its scenarios weighed several objectives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_basht.report.atomic import replace_atomic
from pytest_basht.report.format import fmt, github_table


def shown(record: Mapping[str, Any]) -> bool:
    """Whether the scenario's front is part of its report."""
    goal = (record.get("workload") or {}).get("goal") or {}
    return bool(record.get("pareto")) and bool(goal.get("objectives") or goal.get("reference"))


def _objectives(front: Mapping[str, Any]) -> str:
    return ", ".join(f"{n} ({d})" for n, d in zip(front["objectives"], front["directions"],
                                                   strict=True))


def _reference(front: Mapping[str, Any]) -> str:
    given = front["reference_from"]
    return ", ".join(f"{n} {fmt(v)}" + (" (the trials' worst)" if given[n] == "trials" else "")
                     for n, v in front["reference"].items())


def lines(record: Mapping[str, Any]) -> list[str]:
    """The scenario's **Pareto front** paragraph and table (none when not ``shown``)."""
    if not shown(record):
        return []
    front = record["pareto"]
    names = front["objectives"]
    facts = [f"{len(front['front'])} of {front['trials']} feasible complete trials over "
             f"{_objectives(front)}",
             f"hypervolume {fmt(front['hypervolume'])} from the reference point "
             f"{_reference(front)}"]
    if front["infeasible"]:
        facts.append(f"{front['infeasible']} trials broke a constraint")
    pick = front.get("pick")
    metric = names[0]
    if pick is not None:
        values = pick["values"]
        target = pick.get("target")
        what = (f"for {metric} meeting {fmt(target)}" if target is not None
                else f"without a target (the best {metric})")
        facts.append(f"{what} a user would pick trial #{pick['trial']}: {metric} "
                     f"{fmt(values['value'])}, {fmt(values['energy_j'])} J, "
                     f"{fmt(values['time_s'])} s, {fmt(values['co2_g'])} gCO2eq")
    told = front.get("told")
    if told:
        facts.append(f"the study was told each trial's costs as {told['source']}: "
                     f"{fmt(told['mean_abs_pct'])} % from the energy attributed after the run "
                     f"on average ({told['trials']} trials)")
    rows = [[f"#{p['trial']}", *(fmt(p["values"][n]) for n in names)] for p in front["front"]]
    return ["**Pareto front**: " + "; ".join(facts) + ".", "",
            github_table(rows, ["trial", *names]), ""]


def experiment_fronts(slug: str, records: Sequence[Mapping[str, Any]],
                      labels: Mapping[str, str]) -> dict[str, Any] | None:
    """An experiment's fronts, when any of its scenarios weighed several objectives: the
    plot's file and, per scenario (``labels``: its row label by test id), its front over
    the first two objectives, its hypervolume and whether that compares across scenarios
    (the reference point is the workload's). None otherwise."""
    if not any(((r.get("workload") or {}).get("goal") or {}).get("objectives")
               for r in records):
        return None
    scenarios = []
    for r in records:
        front = r.get("pareto")
        if not front:
            continue
        names = front["objectives"][:2]
        scenarios.append({
            "test_id": r["test_id"], "label": labels.get(str(r["test_id"]), r["test_id"]),
            "objectives": names,
            "points": sorted([p["values"][names[0]], p["values"][names[1]]]
                             for p in front["front"]),
            "hypervolume": front["hypervolume"],
            "comparable": all(v == "workload" for v in front["reference_from"].values())})
    return {"plot": f"experiment-{slug}-fronts.png", "scenarios": scenarios}


def plot_fronts(name: str, fronts: Mapping[str, Any], path: Path) -> None:
    """Each scenario's front (its metric against its first cost) as a step line, labelled
    with its hypervolume, on one set of axes, as a PNG. The scenarios of one test function
    (an experiment's mode, say, over its seeds) share a colour, each its own line style."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names: list[str] = ["", ""]
    seen: dict[str, int] = {}  # scenarios drawn so far, by test function
    styles = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)))
    for sc in fronts["scenarios"]:
        names = sc["objectives"]
        group = str(sc["test_id"]).split("[")[0]
        nth = seen.get(group, 0)
        seen[group] = nth + 1
        pts = sorted((b, a) for a, b in sc["points"])
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", marker="o",
                markersize=3, color=f"C{list(seen).index(group) % 10}",
                linestyle=styles[nth % len(styles)],
                label=f"{sc['label']} (HV {fmt(sc['hypervolume'])})")
    ax.set_xlabel(names[1])
    ax.set_ylabel(names[0])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{name}: the Pareto fronts of the scenarios' trials")
    replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))

"""Goal-versus-cost pictures with their Pareto fronts (matplotlib, Agg canvas).

- Per experiment (``front-<experiment>.png``): the goal's metric (each run's best value)
  against the run's energy and against its JCT, one point per setup — the median of its
  repeats, with min–max bars when it has several — the Pareto front drawn as a step line
  and its setups labelled.
- Per scenario (``trials-<n>-<scenario>.png``): each trial's value against its energy,
  coloured by state, the front of its complete trials marked; failed trials have no value
  and sit on the floor as crosses.

Axes do not exaggerate: every axis starts at zero, and an accuracy-like goal (values and
target within 0–1, maximized) runs from 0 to 1 — so a 1 % difference is 1 % of the axis —
with the target dashed. The fronts come from ``dominance.pareto_front``, the one place that
decides dominance. Each state is one scatter collection: the cost stays linear in trials.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_basht.dominance import pareto_front
from pytest_basht.report import experiments, plots
from pytest_basht.report.atomic import replace_atomic


def _setups(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The experiment's runs by setup (repeats together), rows with a best value only."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("ran") and row.get("best_value") is not None:
            out.setdefault(row.get("scenario_id") or row["test_id"], []).append(row)
    return out


def _middle(values: list[float]) -> tuple[float, float, float]:
    """(median, below it, above it): an error bar's centre and reach."""
    mid = statistics.median(values)
    return mid, mid - min(values), max(values) - mid


def experiment_png(exp: Mapping[str, Any], path: Path) -> None:
    """The experiment's setups: goal metric against energy and against JCT, with fronts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    setups = _setups(exp["rows"])
    goal = next(iter(setups.values()))[0].get("goal") or {}
    direction = goal.get("direction", "maximize")
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    labels = [runs[0]["label"] for runs in setups.values()]
    ys = [_middle([r["best_value"] for r in runs]) for runs in setups.values()]
    y_low, y_high = experiments.value_limits(
        [r["best_value"] for runs in setups.values() for r in runs], goal)
    estimate = "" if exp.get("measured") else " — an estimate"
    for ax, key, name in ((axes[0], "energy_j", f"energy J{estimate}"),
                          (axes[1], "jct_s", "JCT s")):
        xs = [_middle([r[key] for r in runs]) for runs in setups.values()]
        ax.errorbar([x[0] for x in xs], [y[0] for y in ys],
                    xerr=[[x[1] for x in xs], [x[2] for x in xs]],
                    yerr=[[y[1] for y in ys], [y[2] for y in ys]],
                    fmt="o", color="tab:blue", ecolor="tab:gray", capsize=3,
                    label="setup (median; bars: min–max of repeats)")
        front = pareto_front([(x[0], y[0]) for x, y in zip(xs, ys, strict=True)],
                             ("minimize", direction))
        steps = sorted((xs[i][0], ys[i][0]) for i in front)
        ax.step([p[0] for p in steps], [p[1] for p in steps], where="post", color="tab:red",
                lw=1.5, label="Pareto front (no setup better on both)")
        for i, label in enumerate(labels):
            ax.annotate(label + (" ★" if i in front else ""), (xs[i][0], ys[i][0]),
                        textcoords="offset points", xytext=(6, 3),
                        fontsize=8, color="tab:red" if i in front else "black")
        if goal.get("target") is not None:
            ax.axhline(goal["target"], color="tab:green", ls="--", lw=1,
                       label=f"target {goal['target']:g}")
        ax.set_xlim(left=0, right=max(x[0] + x[2] for x in xs) * 1.15 or 1.0)
        ax.set_ylim(y_low, y_high)
        ax.set_xlabel(name)
        ax.set_ylabel(f"best {goal.get('metric', 'value')} ({direction})")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{exp['name']}: {goal.get('metric', 'value')} against energy and time, "
                 f"one point per setup; ★ on the Pareto front\n{experiments.AXES_NOTE}",
                 fontsize=11)
    replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))


def trials_png(scenario: Mapping[str, Any], path: Path) -> bool:
    """One scenario's trials: value against energy by state, the front of its complete
    trials marked. False (nothing drawn) without a trial that has an energy figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    trials = [t for t in scenario.get("trials", []) if t.get("energy_j") is not None]
    if not trials:
        return False
    goal = scenario["workload"]["goal"]
    direction = goal.get("direction", "maximize")
    valued = [t for t in trials if t.get("value") is not None]
    y_low, y_high = experiments.value_limits([t["value"] for t in valued], goal)
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for state, color in plots.STATE_COLORS.items():
        chosen = [t for t in trials if t["state"] == state]
        if not chosen:
            continue
        if state == "failed":
            ax.scatter([t["energy_j"] for t in chosen], [y_low] * len(chosen), marker="x",
                       color=color, clip_on=False, zorder=3,
                       label=f"failed ({len(chosen)}; no value, on the floor)")
            continue
        shown = [t for t in chosen if t.get("value") is not None]
        ax.scatter([t["energy_j"] for t in shown], [t["value"] for t in shown], s=18,
                   color=color, alpha=0.7, label=f"{state} ({len(shown)})")
    complete = [t for t in valued if t["state"] == "complete"]
    front = [complete[i] for i in pareto_front(
        [(t["energy_j"], t["value"]) for t in complete], ("minimize", direction))]
    if front:
        steps = sorted((t["energy_j"], t["value"]) for t in front)
        ax.step([p[0] for p in steps], [p[1] for p in steps], where="post", color="black",
                lw=1.2)
        ax.scatter([p[0] for p in steps], [p[1] for p in steps], s=60, facecolors="none",
                   edgecolors="black", zorder=4,
                   label=f"Pareto front ({len(front)}: no trial better on both)")
    if goal.get("target") is not None:
        ax.axhline(goal["target"], color="tab:green", ls="--", lw=1,
                   label=f"target {goal['target']:g}")
    ax.set_xlim(left=0, right=max(t["energy_j"] for t in trials) * 1.05 or 1.0)
    ax.set_ylim(y_low, y_high)
    kind = "measured" if scenario["energy"].get("measured") else "an estimate"
    ax.set_xlabel(f"trial energy J ({kind})")
    ax.set_ylabel(f"{goal.get('metric', 'value')} ({direction})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{scenario['test_id']}: each trial's value against its energy "
                 f"({len(trials):,} trials)\n{experiments.AXES_NOTE}", fontsize=10)
    replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    return True


def front_name(exp: Mapping[str, Any]) -> str | None:
    """The experiment's front picture's file name, or None when fewer than two setups ran
    with a best value (one point has no front to draw)."""
    if len(_setups(exp["rows"])) < 2:
        return None
    return f"front-{experiments.slug(exp['name'])}.png"


def write(report: dict[str, Any], run_dir: Path) -> list[Path]:
    """Draw every experiment's front and every scenario's trials into ``run_dir``; each
    scenario names its picture under ``trial_plot``, each experiment under ``front_plot``."""
    written = []
    for exp in report.get("experiments", []):
        name = front_name(exp)
        if name is not None:
            experiment_png(exp, run_dir / name)
            exp["front_plot"] = name
            written.append(run_dir / name)
    for i, scenario in enumerate(report.get("scenarios", []), start=1):
        name = f"trials-{i}-{plots.slug(scenario['test_id'].split('::')[-1])}.png"
        if trials_png(scenario, run_dir / name):
            scenario["trial_plot"] = name
            written.append(run_dir / name)
    return written

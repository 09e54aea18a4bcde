"""PNG plots of a report (matplotlib, Agg canvas: no display, no global backend switch).

For each scenario: its power timeline (total, and each domain when there are several;
an estimate's low–high band shaded; the idle draw dashed) over its lifecycle phases drawn
as coloured bands (hatched red from where a failed meter's fallback measured), and below
it a Gantt strip of the trials per worker, each trial's own phases coloured the same way,
failed trials hatched red and pruned ones edged orange.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytest_basht.lifecycle import PHASES
from pytest_basht.report.atomic import replace_atomic

COLORS = {
    "deploy": "#8c564b", "setup": "#9467bd", "trial.load": "#17becf", "trial.train": "#1f77b4",
    "trial.validate": "#2ca02c", "result_collection": "#bcbd22", "test": "#e377c2",
    "metric_collection": "#7f7f7f", "undeploy": "#d62728",
}
MAX_POINTS = 600
MIN_BIN_S = 0.2


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:60].strip("_") or "scenario"


def power_curve(timeline: dict[str, list[float]], key: str = "joules"
                ) -> tuple[list[float], list[float]]:
    """(seconds since the first point, watts) from a cumulative series, in bins of at least
    ``MIN_BIN_S`` and at most ``MAX_POINTS`` of them (sampling noise averages out)."""
    ts, js = timeline.get("t_ns", []), timeline.get(key, [])
    if len(ts) < 2 or len(js) != len(ts):
        return [], []
    t0 = ts[0]
    span_s = (ts[-1] - t0) / 1e9
    bin_s = max(MIN_BIN_S, span_s / MAX_POINTS)
    xs: list[float] = []
    ws: list[float] = []
    i = 0
    for j in range(1, len(ts)):
        dt = (ts[j] - ts[i]) / 1e9
        if dt >= bin_s or j == len(ts) - 1:
            if dt > 0:
                xs.append(((ts[i] + ts[j]) / 2 - t0) / 1e9)
                ws.append(max(0.0, (js[j] - js[i]) / dt))
            i = j
    return xs, ws


def timeline_png(scenario: dict[str, Any], path: Path) -> bool:
    """Draw one scenario's power timeline and trial strip; False when it has no timeline."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    energy = scenario["energy"]
    timeline = energy.get("timeline") or {}
    ts = timeline.get("t_ns", [])
    if len(ts) < 2:
        return False
    t0 = ts[0]

    def sec(ns: int) -> float:
        return (ns - t0) / 1e9

    trials = scenario.get("trials", [])
    workers = sorted({t["worker"] for t in trials})
    fig = Figure(figsize=(11, 5.5 + 0.3 * len(workers)))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=[4, max(1.0, 0.45 * len(workers))], hspace=0.08)
    ax = fig.add_subplot(grid[0])
    strip = fig.add_subplot(grid[1], sharex=ax)
    end_s = sec(ts[-1])

    seen: set[str] = set()
    for span in scenario.get("spans", []):
        if span.get("trial") is not None:
            continue
        a, b = max(0.0, sec(span["start_ns"])), min(end_s, sec(span["end_ns"]))
        if b <= a:
            continue
        phase = span["phase"]
        ax.axvspan(a, b, color=COLORS.get(phase, "#cccccc"), alpha=0.18, lw=0,
                   label=None if phase in seen else phase)
        seen.add(phase)

    by_phase = {s["phase"]: s for s in scenario.get("spans", []) if s.get("trial") is None}
    if "setup" in by_phase and "result_collection" in by_phase:
        a = max(0.0, sec(by_phase["setup"]["end_ns"]))
        b = min(end_s, sec(by_phase["result_collection"]["start_ns"]))
        if b > a:
            ax.axvspan(a, b, color=COLORS["trial.train"], alpha=0.08, lw=0, label="trials")

    xs, ws = power_curve(timeline)
    ax.plot(xs, ws, color="black", lw=1.4, label="total")
    domains = sorted(k for k in timeline if k.startswith("joules."))
    if len(domains) > 1:
        for key in domains:
            dx, dw = power_curve(timeline, key)
            ax.plot(dx, dw, lw=0.9, alpha=0.8, label=key.split(".", 1)[1])
    if "joules_low" in timeline and "joules_high" in timeline:
        lx, lw_ = power_curve(timeline, "joules_low")
        hx, hw = power_curve(timeline, "joules_high")
        if lx and len(lx) == len(hx):
            ax.fill_between(lx, lw_, hw, color="grey", alpha=0.25, lw=0,
                            label="estimate band")
    for fo in energy.get("failover", []):  # the meter failed: not a measurement from here
        a = max(0.0, sec(fo["start_ns"]))
        if a < end_s:
            ax.axvspan(a, end_s, facecolor="none", edgecolor="#d62728", hatch="\\\\", lw=0,
                       label=f"{fo['meter']} failed: {fo.get('fallback') or 'no'} energy")
    idle = energy.get("idle_power_w")
    if idle:
        ax.axhline(idle, color="grey", ls="--", lw=1,
                   label=f"idle {'measured' if energy.get('idle_measured') else 'modelled'}")
    kind = "measured" if energy.get("measured") else "ESTIMATE, not a measurement"
    ax.set_title(f"{scenario['test_id']}\npower: {energy.get('source')} ({kind})", fontsize=10)
    ax.set_ylabel("power (W)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    ax.tick_params(labelbottom=False)

    rows = {w: i for i, w in enumerate(workers)}
    for trial in trials:
        y = rows[trial["worker"]]
        parts = [(sec(s["start_ns"]), (s["end_ns"] - s["start_ns"]) / 1e9, s["phase"])
                 for s in trial.get("spans", []) if s["end_ns"] > s["start_ns"]]
        start, length = sec(trial["start_ns"]), (trial["end_ns"] - trial["start_ns"]) / 1e9
        strip.broken_barh([(start, length)], (y - 0.4, 0.8), facecolors="#eeeeee",
                          edgecolors="#999999", lw=0.5)
        for a, width, phase in parts:
            strip.broken_barh([(a, width)], (y - 0.35, 0.7), facecolors=COLORS.get(phase))
        if trial["state"] != "complete":
            color = "#d62728" if trial["state"] == "failed" else "#ff7f0e"
            strip.broken_barh([(start, length)], (y - 0.4, 0.8), facecolors="none",
                              edgecolors=color, lw=1.2,
                              hatch="///" if trial["state"] == "failed" else None)
        if length > end_s / 40:
            strip.text(start + length / 2, y, f"#{trial['number']}", ha="center",
                       va="center", fontsize=6)
    strip.set_yticks(range(len(workers)), [f"worker {w}" for w in workers], fontsize=8)
    strip.set_ylim(-0.6, max(0.6, len(workers) - 0.4))
    strip.set_xlabel("seconds since the scenario's timeline starts")
    strip.set_xlim(0, end_s)
    handles = [Patch(color=COLORS[p], label=p) for p in PHASES if p.startswith("trial.")]
    handles += [Patch(facecolor="none", edgecolor="#d62728", hatch="///", label="failed"),
                Patch(facecolor="none", edgecolor="#ff7f0e", label="pruned")]
    strip.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight",
                                                 format="png"))
    return True


def write(report: dict[str, Any], run_dir: Path) -> list[Path]:
    """Draw every scenario's timeline into ``run_dir``; each scenario lists its files under
    ``plots`` (relative names, as report.md embeds them)."""
    written = []
    for i, scenario in enumerate(report.get("scenarios", []), start=1):
        name = f"timeline-{i}-{slug(scenario['test_id'].split('::')[-1])}.png"
        if timeline_png(scenario, run_dir / name):
            scenario["plots"] = [name]
            written.append(run_dir / name)
    return written

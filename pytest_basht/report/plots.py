"""PNG plots of a report (matplotlib, Agg canvas: no display, no global backend switch).

For each scenario: its power timeline (total, and each domain when there are several;
an estimate's low–high band shaded; the idle draw dashed) over its lifecycle phases drawn
as coloured bands (hatched red from where a failed meter's fallback measured), from its
start to the end of its undeploy, and below it a Gantt strip of the trials per worker,
each trial's own phases coloured the same way, failed trials hatched red and pruned ones
edged orange — drawn as one collection per worker and phase or state, so that the cost
is linear in the trials. Past ``DETAIL_MAX_PER_LANE`` trials on one worker the strip
becomes a summary (its title says so): each worker's occupancy per time bin, and a panel
of how many trials ended per bin, by state.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytest_basht.energy.trace import ADJACENT_NS
from pytest_basht.lifecycle import PHASES
from pytest_basht.report.atomic import replace_atomic

COLORS = {
    "deploy": "#8c564b", "setup": "#9467bd", "trial.load": "#17becf", "trial.train": "#1f77b4",
    "trial.validate": "#2ca02c", "result_collection": "#bcbd22", "test": "#e377c2",
    "metric_collection": "#7f7f7f", "undeploy": "#d62728",
}
MAX_POINTS = 600
MIN_BIN_S = 0.2
#: Above this many trials on one worker the strip is a summary: occupancy bands per
#: worker and trials ended per bin, in ``SUMMARY_BINS`` bins (drawing each trial would be
#: unreadable, and slow).
DETAIL_MAX_PER_LANE = 300
SUMMARY_BINS = 200
STATE_COLORS = {"complete": "#1f77b4", "pruned": "#ff7f0e", "failed": "#d62728"}


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


def scenario_window(scenario: dict[str, Any], ts: list[int]) -> tuple[int, int]:
    """The plot's x range (ns): the timeline's start, to its end or — when lifecycle spans
    follow it directly, as undeploy does — to their end. A reused deployment's undeploy,
    long after, stays out (as its deploy does at the start)."""
    end = ts[-1]
    for span in sorted(scenario.get("spans", []), key=lambda s: s["start_ns"]):
        if ts[0] <= span["start_ns"] < end + ADJACENT_NS:
            end = max(end, span["end_ns"])
    return ts[0], end


def lanes(trials: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    """Trials by worker, workers in order."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for trial in trials:
        out.setdefault(trial["worker"], []).append(trial)
    return dict(sorted(out.items()))


def occupancy(intervals: list[tuple[float, float]], edges: Any) -> Any:
    """Per bin between ``edges`` (s): the mean number of ``intervals`` running in it (a
    worker's share of the bin it spent on trials; above 1 for fused trials)."""
    import numpy as np

    if not intervals:
        return np.zeros(len(edges) - 1)
    starts = np.sort(np.array([a for a, _ in intervals]))
    ends = np.sort(np.array([b for _, b in intervals]))

    def busy_until(t: Any) -> Any:  # seconds of trial time before each t: Σ clip(t − a)
        total = np.zeros_like(t)
        for points, sign in ((starts, 1.0), (ends, -1.0)):
            k = np.searchsorted(points, t, side="right")
            sums = np.concatenate([[0.0], np.cumsum(points)])
            total += sign * (k * t - sums[k])
        return total

    return np.diff(busy_until(np.asarray(edges, dtype=float))) / np.diff(edges)


def _bars(items: list[dict[str, Any]], sec: Any) -> list[tuple[float, float]]:
    """(start s, length s) of trials or spans, as ``broken_barh`` takes them."""
    return [(sec(x["start_ns"]), (x["end_ns"] - x["start_ns"]) / 1e9) for x in items]


def _detail(strip: Any, rows: dict[Any, list[dict[str, Any]]], sec: Any, end_s: float
            ) -> None:
    """Every trial: per worker, one collection per phase and per state."""
    from matplotlib.patches import Patch

    for y, trials in enumerate(rows.values()):
        strip.broken_barh(_bars(trials, sec), (y - 0.4, 0.8), facecolors="#eeeeee",
                          edgecolors="#999999", lw=0.5)
        phases: dict[str, list[dict[str, Any]]] = {}
        for trial in trials:
            for span in trial.get("spans", []):
                if span["end_ns"] > span["start_ns"]:
                    phases.setdefault(span["phase"], []).append(span)
        for phase, spans in phases.items():
            strip.broken_barh(_bars(spans, sec), (y - 0.35, 0.7), facecolors=COLORS.get(phase))
        for state, color, hatch in (("failed", "#d62728", "///"), ("pruned", "#ff7f0e", None)):
            chosen = [t for t in trials if t["state"] == state]
            if chosen:
                strip.broken_barh(_bars(chosen, sec), (y - 0.4, 0.8), facecolors="none",
                                  edgecolors=color, lw=1.2, hatch=hatch)
        for trial in trials:
            start, length = sec(trial["start_ns"]), (trial["end_ns"] - trial["start_ns"]) / 1e9
            if length > end_s / 40:  # at most 40 labels a worker
                strip.text(start + length / 2, y, f"#{trial['number']}", ha="center",
                           va="center", fontsize=6)
    handles = [Patch(color=COLORS[p], label=p) for p in PHASES if p.startswith("trial.")]
    handles += [Patch(facecolor="none", edgecolor="#d62728", hatch="///", label="failed"),
                Patch(facecolor="none", edgecolor="#ff7f0e", label="pruned")]
    strip.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)


def _summary(strip: Any, density: Any, rows: dict[Any, list[dict[str, Any]]], sec: Any,
             end_s: float) -> None:
    """Too many trials to draw each: per worker, its occupancy per bin; below, how many
    trials ended per bin, by state."""
    import numpy as np

    edges = np.linspace(0.0, max(end_s, 1e-9), SUMMARY_BINS + 1)
    grid = np.array([occupancy([(sec(t["start_ns"]), sec(t["end_ns"])) for t in trials],
                               edges) for trials in rows.values()])
    mesh = strip.pcolormesh(edges, np.arange(len(rows) + 1) - 0.5, grid, cmap="Blues",
                            vmin=0.0, vmax=max(1.0, float(grid.max(initial=0.0))))
    bar = strip.figure.colorbar(mesh, cax=strip.inset_axes((1.01, 0.0, 0.015, 1.0)))
    bar.set_label("occupancy", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    everything = [t for trials in rows.values() for t in trials]
    below = np.zeros(SUMMARY_BINS)
    for state, color in STATE_COLORS.items():  # stacked: one artist per state, not per bin
        counts, _ = np.histogram([sec(t["end_ns"]) for t in everything if t["state"] == state],
                                 bins=edges)
        density.stairs(below + counts, edges, baseline=below.copy(), fill=True, color=color,
                       label=state)
        below += counts
    density.set_ylabel(f"trials ended\nper {end_s / SUMMARY_BINS:.3g} s", fontsize=8)
    density.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)


def timeline_png(scenario: dict[str, Any], path: Path) -> str | None:
    """Draw one scenario's power timeline and trial strip; the view the strip took
    (``detail`` or ``summary``), or None when the scenario has no timeline to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    energy = scenario["energy"]
    timeline = energy.get("timeline") or {}
    ts = timeline.get("t_ns", [])
    if len(ts) < 2:
        return None
    t0, t_end = scenario_window(scenario, ts)

    def sec(ns: int) -> float:
        return (ns - t0) / 1e9

    trials = scenario.get("trials", [])
    rows = lanes(trials)
    busiest = max((len(x) for x in rows.values()), default=0)
    summary = busiest > DETAIL_MAX_PER_LANE
    fig = Figure(figsize=(11, 5.5 + 0.3 * len(rows) + (1.5 if summary else 0)))
    FigureCanvasAgg(fig)
    heights = [4, max(1.0, 0.45 * len(rows))] + ([1.5] if summary else [])
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.08)
    ax = fig.add_subplot(grid[0])
    strip = fig.add_subplot(grid[1], sharex=ax)
    end_s = sec(t_end)

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
    title = f"{scenario['test_id']}\npower: {energy.get('source')} ({kind})"
    if summary:
        title += (f"\nsummary view: {len(trials):,} trials, up to {busiest:,} on one worker "
                  f"(over {DETAIL_MAX_PER_LANE} to draw each): occupancy per worker and "
                  "trials ended per bin")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("power (W)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    ax.tick_params(labelbottom=False)

    if summary:
        density = fig.add_subplot(grid[2], sharex=ax)
        _summary(strip, density, rows, sec, end_s)
        strip.tick_params(labelbottom=False)
        bottom = density
    else:
        _detail(strip, rows, sec, end_s)
        bottom = strip
    strip.set_yticks(range(len(rows)), [f"worker {w}" for w in rows], fontsize=8)
    strip.set_ylim(-0.6, max(0.6, len(rows) - 0.4))
    bottom.set_xlabel("seconds since the scenario's timeline starts")
    bottom.set_xlim(0, end_s)
    replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight",
                                                 format="png"))
    return "summary" if summary else "detail"


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

"""Experiments compared: one table and one plot per experiment, from the report's records.

Scenarios are grouped by their experiment name; each row is one value of the varied
variable (a skipped value is a row with its reason). The table holds JCT, energy, TWH,
WR, waste, cost, CO2 and the best score, with the change against the first row that ran;
the plot draws the same metrics against the varied variable (matplotlib, Agg canvas), every
axis from zero and the best score on the goal's own scale (``value_limits``). The table is
ranked by what each setup took to reach the goal (``ranking``).
Pruning is judged both ways: the work pruned trials did before they were stopped is waste
(``pruned`` in the waste table), and the epochs they did not run are energy saved, which
this module estimates from each stopped trial's own energy per epoch — labelled as such.
An experiment whose scenarios weighed several objectives also gets the energy to target
(ETA) and each front's hypervolume in its table, and its fronts side by side in a second
plot (``report.pareto``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest_basht.sweep as sweep_mod
from pytest_basht.report import pareto, ranking
from pytest_basht.report.atomic import replace_atomic
from pytest_basht.report.format import fmt, github_table

PANELS = (("jct_s", "JCT", "s"), ("energy_j", "energy", "J"), ("twh_kwh", "TWH", "kWh"),
          ("wr_pct", "WR", "%"), ("wte_kwh", "waste (WTE)", "kWh"), ("oc_usd", "cost (OC)", "USD"),
          ("co2_g", "CO2", "gCO2eq"), ("best_value", "best score", ""))
AXES_NOTE = "axes from 0 (accuracy-like: 0–1), so a 1% difference looks like 1%"


def value_limits(values: Sequence[float], goal: Mapping[str, Any]) -> tuple[float, float]:
    """The goal metric's axis: 0 to 1 for an accuracy-like goal (maximized, values and
    target within 0–1), else from 0 (or the lowest value, when below) to the highest value
    or target with a margin."""
    target = goal.get("target")
    seen = [*values, *([target] if target is not None else [])]
    if goal.get("direction", "maximize") == "maximize" and seen and all(
            0.0 <= v <= 1.0 for v in seen):
        return 0.0, 1.0
    low, high = min([0.0, *seen]), max([0.0, *seen])
    return low, (high * 1.05 if high > 0 else 1.0)


def slug(name: str) -> str:
    text = name.replace("Φ", "phi").replace("φ", "phi").lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "experiment"


def _param_id(test_id: str) -> str:
    match = re.search(r"\[(.*)\]$", test_id)
    return match.group(1) if match else test_id.split("::")[-1]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label(test_id: str, variables: Mapping[str, Any], space_size: Any = None) -> str:
    if len(variables) == 1:
        ((key, value),) = variables.items()
        text = str(value) if _scalar(value) else _param_id(test_id)
        if key == "search.space" and space_size is not None:
            text += f" (|Φ|={space_size})"
        return text
    return _param_id(test_id)


def _space_size(record: Mapping[str, Any]) -> Any:
    return next((row[2] for row in record.get("table1", []) if row and row[0] == "pS"), None)


def pruning(record: Mapping[str, Any]) -> dict[str, float]:
    """Pruned trials: the energy of their work (waste) and an estimate of what was saved.

    Saved, per pruned trial: its energy per epoch run × the epochs it did not run
    (``training.epochs`` − epochs reported). An estimate; a trial pruned at its last epoch
    saved nothing and wasted all of its work.
    """
    epochs = record["workload"]["training"]["epochs"]
    pue = record["workload"]["energy"]["pue"]
    wasted = saved = 0.0
    count = 0
    for t in record["trials"]:
        if t["state"] != "pruned":
            continue
        count += 1
        joules = (t.get("energy_j") or 0.0) * pue
        ran = max(1, len(t.get("intermediate") or []))
        wasted += joules
        saved += joules / ran * max(0, epochs - ran)
    return {"trials": count, "wasted_j": wasted, "saved_j": saved}


def _limit_notes(limits: Mapping[str, Any]) -> list[str]:
    notes = []
    for name, lim in limits.items():
        if not isinstance(lim, Mapping):
            continue
        given, asked = lim.get("given_per_worker"), lim.get("asked_per_worker")
        if lim.get("enforced") is False:
            if name == "cpu" and given is not None and asked is not None and given < asked:
                notes.append(f"wcpu not enforced: {given} of {asked} vCPUs given")
            else:
                notes.append(f"{name} limit not enforced")
        if name == "cpu" and (lim.get("oversubscription") or 1) > 1:
            notes.append(f"cores shared ×{lim['oversubscription']:g}")
    return notes


def row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One table row from a scenario record."""
    m = record["metrics"]
    variables = record.get("variables") or {}
    sweep = record.get("sweep")
    notes = _limit_notes((record.get("sut") or {}).get("limits") or {})
    if record.get("error"):
        notes.append(str(record["error"]).splitlines()[0][:160])
    prune = pruning(record)
    goal = record["workload"]["goal"]
    return {
        "test_id": record["test_id"],
        "scenario_id": record.get("scenario_id") or record["test_id"],
        "goal": {k: goal.get(k) for k in ("metric", "direction", "target")},
        "to_target": ranking.to_target(record), "label": _label(record["test_id"], variables,
                                                      _space_size(record)),
        "values": dict(variables), "position": sweep["position"] if sweep else None,
        "outcome": record["outcome"], "ran": True, "reason": None,
        "jct_s": m["jct_ms"] / 1e3, "energy_j": m["energy_j"], "twh_kwh": m["twh_kwh"],
        "wr_pct": m["wr_pct"], "wte_kwh": m["wte_kwh"],
        "wasted_trials": m["waste"]["total"]["trials"], "oc_usd": m["oc_usd"],
        "co2_g": m["co2_g"], "best_value": record.get("best_value"),
        "test_score": record.get("test_score"),
        "trials": {k: m[k] for k in ("complete", "pruned", "failed", "duplicate")},
        "pruned_wasted_j": prune["wasted_j"], "pruning_saved_j": prune["saved_j"],
        "eta_j": m["eta_j"], "notes": notes,
    }


def skipped_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    variables = entry.get("variables") or {}
    sweep = entry.get("sweep")
    return {"test_id": entry["test_id"], "label": _label(entry["test_id"], variables),
            "values": dict(variables), "position": sweep["position"] if sweep else None,
            "outcome": "skipped", "ran": False, "reason": entry.get("reason"),
            "notes": [entry.get("reason") or "skipped"]}


def _ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if rows and all(r["position"] is not None for r in rows):
        return sorted(rows, key=lambda r: r["position"])
    values = [next(iter(r["values"].values())) if len(r["values"]) == 1 else None
              for r in rows]
    if rows and all(_numeric(v) for v in values):
        return [r for _, r in sorted(zip(values, rows, strict=True), key=lambda p: p[0])]
    return rows


def _delta(value: float | None, ref: float | None) -> float | None:
    if value is None or ref is None or ref == 0 or not math.isfinite(ref):
        return None
    return (value - ref) / ref * 100.0


def experiments(scenarios: Sequence[Mapping[str, Any]],
                skipped: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every named experiment of a report: its variable, rows, sweep verdict and plot."""
    names: list[str] = []
    for item in [*scenarios, *skipped]:
        name = item.get("experiment")
        if name and name not in names:
            names.append(name)
    out = []
    for name in names:
        records = [s for s in scenarios if s.get("experiment") == name]
        skips = [s for s in skipped if s.get("experiment") == name]
        rows = _ordered([row(r) for r in records] + [skipped_row(s) for s in skips])
        variables: list[str] = []
        for r in rows:
            variables += [k for k in r["values"] if k not in variables]
        ref = next((r for r in rows if r["ran"]), None)
        for r in rows:
            if r["ran"] and ref is not None:
                r["delta_jct_pct"] = _delta(r["jct_s"], ref["jct_s"])
                r["delta_energy_pct"] = _delta(r["energy_j"], ref["energy_j"])
        sweep = None
        spec_src = next((s["sweep"] for s in [*records, *skips] if s.get("sweep")), None)
        if spec_src is not None:
            spec = sweep_mod.SweepSpec.from_dict(spec_src)
            sweep = sweep_mod.summary(spec, [r for r in records if r.get("sweep")],
                                      [s for s in skips if s.get("sweep")])
        energy = records[0]["energy"] if records else {}
        fronts = pareto.experiment_fronts(slug(name), records,
                                          {r["test_id"]: r["label"] for r in rows})
        if fronts is not None:
            by_id = {f["test_id"]: f for f in fronts["scenarios"]}
            for r in rows:
                front = by_id.get(r["test_id"])
                r["hypervolume"] = (front["hypervolume"] if front and front["comparable"]
                                    else None)
        out.append({
            "name": name, "variables": variables, "reference": ref["label"] if ref else None,
            "energy_source": energy.get("source"), "measured": energy.get("measured"),
            "sweep": sweep, "rows": rows,
            "plot": f"experiment-{slug(name)}.png" if variables and ref is not None else None,
            "fronts": fronts,
        })
    return out


# ----------------------------------------------------------------------------- Markdown


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}%"


def ranked(exp: Mapping[str, Any], by: str | None = None
           ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The experiment's rows in the order of ``ranking`` (by what it took each setup to
    reach the goal; skipped rows last) and each setup's rank cell (``✗``: never reached).
    Rows keep their own order when the goal has no target."""
    rows = list(exp["rows"])
    runs = [ranking.run_of_row(r, exp["name"]) for r in rows
            if r["ran"] and r.get("scenario_id") and (r.get("goal") or {}).get("target")
            is not None]
    if not runs:
        return rows, {}
    order = ranking.rank(runs, by)
    cells = {r.setup: line[0] for r, line in zip(order, ranking.rows(order), strict=True)}
    place = {r.setup: i for i, r in enumerate(order)}
    return sorted(rows, key=lambda r: place.get(r.get("scenario_id"), len(place))), cells


def table(exp: Mapping[str, Any], by: str | None = None) -> str:
    """The experiment's comparison table (GitHub Markdown), ranked (``ranked``)."""
    pruned = any(r.get("trials", {}).get("pruned") for r in exp["rows"])
    fronts = exp.get("fronts") is not None
    var = ", ".join(f"`{v}`" for v in exp["variables"]) or "scenario"
    order, cells = ranked(exp, by)
    key = ranking.rank_key(by)
    headers = [var, "outcome", "JCT s", "Δ JCT", "energy J", "Δ energy", "TWH kWh", "WR %",
               "waste kWh (trials)", "OC USD", "CO2 g", "best", "test", "trials c/p/f/dup"]
    if cells:
        headers[2:2] = [f"{key.label} {key.unit}"]
        headers.insert(0, "rank")
    if pruned:
        headers += ["pruned work J", "saved J (est.)"]
    if fronts:
        headers += ["ETA J", "hypervolume"]
    headers.append("notes")
    rows = []
    for r in order:
        if not r["ran"]:
            line = [r["label"], "skipped", *["—"] * (len(headers) - 3 - bool(cells)),
                    "; ".join(r["notes"])]
            rows.append(["—", *line] if cells else line)
            continue
        t = r["trials"]
        line = [r["label"], r["outcome"], fmt(r["jct_s"]), _pct(r.get("delta_jct_pct")),
                fmt(r["energy_j"]), _pct(r.get("delta_energy_pct")), fmt(r["twh_kwh"]),
                fmt(r["wr_pct"], 3), f"{fmt(r['wte_kwh'])} ({r['wasted_trials']})",
                fmt(r["oc_usd"]), fmt(r["co2_g"]), fmt(r["best_value"]),
                fmt(r["test_score"]),
                f"{t['complete']}/{t['pruned']}/{t['failed']}/{t['duplicate']}"]
        if cells:
            reached = (r.get("to_target") or {}).get(key.name)
            line[2:2] = ["✗" if reached is None else fmt(reached)]
            line.insert(0, cells.get(r.get("scenario_id"), "—"))
        if pruned:
            line += [fmt(r["pruned_wasted_j"]), fmt(r["pruning_saved_j"])]
        if fronts:
            line += [fmt(r["eta_j"]), fmt(r.get("hypervolume"))]
        line.append("; ".join(r["notes"]))
        rows.append(line)
    return github_table([[str(c) for c in line] for line in rows], headers)


def markdown_section(exps: Sequence[Mapping[str, Any]], by: str | None = None) -> list[str]:
    """The report.md section comparing each experiment's scenarios, ranked by ``by``."""
    if not exps:
        return []
    lines = ["## Experiments", ""]
    for exp in exps:
        var = ", ".join(f"`{v}`" for v in exp["variables"])
        lines += [f"### {exp['name']}" + (f" — {var}" if var else ""), ""]
        kind = ("measured" if exp.get("measured")
                else "estimate, not a measurement") if exp.get("energy_source") else ""
        facts = [f"{len([r for r in exp['rows'] if r['ran']])} run, "
                 f"{len([r for r in exp['rows'] if not r['ran']])} skipped"]
        if exp.get("reference") and len([r for r in exp["rows"] if r["ran"]]) > 1:
            facts.append(f"Δ against {exp['reference']}")
        if exp.get("energy_source"):
            facts.append(f"energy: {exp['energy_source']} ({kind})")
        lines += ["; ".join(facts) + ".", ""]
        if exp.get("sweep"):
            s = exp["sweep"]
            lines += [f"**Sweep** (stops when two successive steps differ by < "
                      f"{s['tolerance']:.0%} in {sweep_mod.label(s['metric'])}): {s['reason']}.",
                      ""]
        if any(r.get("to_target") for r in exp["rows"]) and ranked(exp, by)[1]:
            key = ranking.rank_key(by)
            lines += [f"Ranked by {key.label} ({key.meaning}; ✗: never reached the goal's "
                      "target; `=`: a tie, the runs' spreads overlap).", ""]
        lines += [table(exp, by), ""]
        if any(r.get("trials", {}).get("pruned") for r in exp["rows"]):
            lines += ["Pruned work is the energy pruned trials drew before they were stopped "
                      "(waste); saved is an estimate: each pruned trial's energy per epoch × "
                      "the epochs it did not run.", ""]
        if exp.get("plot"):
            lines += [f"![{exp['name']}: metrics against {var}]({exp['plot']})", ""]
        if exp.get("front_plot"):
            lines += [f"![{exp['name']}: the goal against energy and time, Pareto front]"
                      f"({exp['front_plot']})", ""]
        if exp.get("fronts"):
            lines += ["ETA is the energy until a validation value first met the target; the "
                      "hypervolume is each scenario's front's, shown where the workload fixes "
                      "its reference point (`goal.reference`).", "",
                      f"![{exp['name']}: Pareto fronts]({exp['fronts']['plot']})", ""]
    return lines


def terminal_lines(exps: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for exp in exps:
        if not exp["variables"]:
            continue
        ran = [r for r in exp["rows"] if r["ran"]]
        text = (f"{exp['name']} ({', '.join(exp['variables'])}): {len(ran)} run, "
                f"{len(exp['rows']) - len(ran)} skipped")
        if exp.get("sweep"):
            text += f"; {exp['sweep']['reason']}"
        out.append(text)
    return out


# ----------------------------------------------------------------------------- plots


def plot(exp: Mapping[str, Any], path: Path) -> None:
    """The experiment's metrics against its variable, one panel each, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(exp["rows"])
    ran = [r for r in rows if r["ran"]]
    xs = [next(iter(r["values"].values())) if len(r["values"]) == 1 else None for r in rows]
    numeric = all(_numeric(x) for x in xs)
    fig = Figure(figsize=(15, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4)
    positions = {id(r): (x if numeric else i) for i, (r, x) in enumerate(zip(rows, xs,
                                                                             strict=True))}
    converged = (exp.get("sweep") or {}).get("converged_at")
    estimate = "" if exp.get("measured") else " (estimate)"
    for ax, (key, title, unit) in zip(axes.flat, PANELS, strict=True):
        pts = [(positions[id(r)], r[key]) for r in ran if r.get(key) is not None]
        if numeric:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
            ticks = sorted({p[0] for p in pts})
            ax.set_xticks(ticks)
            ax.tick_params(axis="x", labelsize=8, labelrotation=30 if len(ticks) > 4 else 0)
            if converged is not None:
                ax.axvline(converged, color="tab:green", linestyle="--", linewidth=1)
        else:
            if key == "best_value":  # scores differ in the second decimal: no bars from 0
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color="tab:blue")
            else:
                ax.bar([p[0] for p in pts], [p[1] for p in pts], color="tab:blue")
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels([r["label"] + ("" if r["ran"] else "\n(skipped)")
                                for r in rows], rotation=20, fontsize=8)
        if key == "best_value":  # the goal's scale, target dashed: no cliff out of 1 %
            goal = next((r["goal"] for r in ran if r.get("goal")), {})
            ax.set_ylim(*value_limits([p[1] for p in pts], goal))
            if goal.get("target") is not None:
                ax.axhline(goal["target"], color="tab:green", ls="--", lw=1)
        else:
            ax.set_ylim(bottom=min(0.0, *(p[1] for p in pts)))
        energy_like = key in ("energy_j", "twh_kwh", "wr_pct", "wte_kwh", "co2_g")
        ax.set_title(title + (estimate if energy_like else ""), fontsize=10)
        ax.set_ylabel(unit)
        ax.grid(True, alpha=0.3)
    var = ", ".join(exp["variables"])
    for ax in axes[-1]:
        ax.set_xlabel(var)
    title = f"{exp['name']}: metrics against {var}"
    if converged is not None:
        title += f" (converged at {converged}, dashed)"
    skipped = [r["label"] for r in rows if not r["ran"]]
    if skipped and numeric:
        title += f"; skipped: {', '.join(map(str, skipped))}"
    fig.suptitle(f"{title}\n{AXES_NOTE}; target dashed")
    replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))


def write_plots(exps: Sequence[Mapping[str, Any]], run_dir: Path) -> list[Path]:
    written = []
    for exp in exps:
        if exp.get("plot"):
            path = run_dir / exp["plot"]
            plot(exp, path)
            written.append(path)
        if exp.get("fronts"):
            path = run_dir / exp["fronts"]["plot"]
            pareto.plot_fronts(exp["name"], exp["fronts"], path)
            written.append(path)
    return written

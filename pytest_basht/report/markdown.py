"""report.md: the report as tables a person reads (tabulate, GitHub Markdown)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from tabulate import tabulate

from pytest_basht import metrics as metrics_mod
from pytest_basht.lifecycle import PHASES
from pytest_basht.report import comparison

LABELS = {
    "jct_ms": "JCT", "energy_j": "energy", "energy_kwh": "energy", "twh_kwh": "TWH",
    "trial_power_w": "trial power", "cint_g_per_kwh": "CINT", "co2_g": "CO2",
    "oc_usd": "OC", "wtt_ms": "WTT", "wte_kwh": "WTE", "wtc_usd": "WTC", "wr_pct": "WR",
    "zeus_cost": "Zeus cost", "tta_ms": "TTA", "eta_j": "ETA",
}
ENERGY_KEYS = {"energy_j", "energy_kwh", "twh_kwh", "trial_power_w", "co2_g", "wte_kwh",
               "wr_pct", "zeus_cost", "eta_j"}


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def energy_label(energy: dict[str, Any]) -> str:
    kind = "measured" if energy.get("measured") else "estimate, not a measurement"
    return f"{energy.get('source')} ({kind})"


def summary_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["scenario", "outcome", "JCT s", "energy J", "CO2 g", "OC USD", "WTE kWh",
               "WR %", "best", "test", "trials c/p/f/dup"]
    rows = []
    for sc in report["scenarios"]:
        m = sc["metrics"]
        rows.append([
            sc["test_id"].split("::")[-1], sc["outcome"], fmt(m["jct_ms"] / 1e3),
            fmt(m["energy_j"]), fmt(m["co2_g"]), fmt(m["oc_usd"]), fmt(m["wte_kwh"]),
            fmt(m["wr_pct"], 3), fmt(sc["best_value"]), fmt(sc["test_score"]),
            f"{m['complete']}/{m['pruned']}/{m['failed']}/{m['duplicate']}",
        ])
    return headers, rows


def phase_rows(scenario: dict[str, Any]) -> list[list[str]]:
    spans = list(scenario["spans"]) + [s for t in scenario["trials"] for s in t["spans"]]
    agg: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for s in spans:
        a = agg[s["phase"]]
        a[0] += 1
        a[1] += (s["end_ns"] - s["start_ns"]) / 1e9
        a[2] += s.get("cpu_s") or 0.0
        a[3] += s.get("energy_j") or 0.0
    return [[p, str(int(agg[p][0])), fmt(agg[p][1]), fmt(agg[p][2]), fmt(agg[p][3])]
            for p in PHASES if p in agg]


def render_scenario(sc: dict[str, Any]) -> str:
    m = sc["metrics"]
    out = [f"### `{sc['test_id']}`", ""]
    facts = [f"outcome **{sc['outcome']}**", f"status {sc['status']}",
             f"energy source: {energy_label(sc['energy'])}"]
    if sc.get("experiment"):
        facts.insert(0, f"experiment **{sc['experiment']}**")
    if sc.get("variables"):
        facts.append("varied: " + ", ".join(f"`{k}={v}`" for k, v in sc["variables"].items()))
    if sc["deployment"].get("reused"):
        facts.append(f"reused deployment {sc['deployment'].get('id')} (its deploy and undeploy "
                     "are charged to this scenario too)")
    if m.get("provisional"):
        facts.append("**provisional: undeploy was not recorded**")
    out += ["; ".join(facts) + ".", ""]
    if sc.get("error"):
        out += [f"> error: {sc['error']}", ""]
    out += ["**Table 1 — workload**", "",
            _table([[f"`{r[0]}`" if r[0] else "", r[1], fmt(r[2])] for r in sc["table1"]],
                   ["symbol", "variable", "value"]), ""]
    rows = []
    for key in metrics_mod.TABLE2_KEYS:
        note = "estimate" if key in ENERGY_KEYS and not sc["energy"]["measured"] else ""
        rows.append([LABELS[key], f"`{key}`", fmt(m[key]), metrics_mod.UNITS[key], note])
    out += [f"**Table 2 — metrics** (energy: {energy_label(sc['energy'])}; idle draw "
            f"{fmt(sc['energy']['idle_power_w'])} W "
            f"{'measured' if sc['energy'].get('idle_measured') else 'modelled'})", "",
            _table(rows, ["metric", "key", "value", "unit", ""]), ""]
    out += ["**Phases**", "", _table(phase_rows(sc), ["phase", "spans", "time s", "CPU s",
                                                      "energy J"]), ""]
    waste_rows = [[cat, fmt(w["trials"]), fmt(w["time_ms"] / 1e3), fmt(w["energy_kwh"]),
                   fmt(w["cost_usd"])] for cat, w in m["waste"].items()]
    out += ["**Waste** (categories overlap; `total` counts each wasted trial once)", "",
            _table(waste_rows, ["category", "trials", "time s", "energy kWh", "cost USD"]), ""]
    trial_rows = []
    for t in sc["trials"]:
        trial_rows.append([
            str(t["number"]), str(t["worker"]),
            json.dumps(t["params"], separators=(",", ":")), t["state"], fmt(t["value"]),
            fmt((t["end_ns"] - t["start_ns"]) / 1e9), fmt(t["energy_j"]),
            (t.get("error") or "")[:120]])
    out += [f"**Trials** (best: #{sc['best_trial']} = {fmt(sc['best_value'])}, test split: "
            f"{fmt(sc['test_score'])})", "",
            _table(trial_rows, ["#", "worker", "params", "state", "value", "time s",
                                "energy J", "error"]), ""]
    limits = (sc.get("sut") or {}).get("limits")
    if limits:
        lim_rows = [[name, "yes" if v.get("enforced") else "**no**", v.get("how", ""),
                     json.dumps({k: x for k, x in v.items() if k not in ("enforced", "how")},
                                separators=(",", ":"))] for name, v in limits.items()]
        out += ["**Resource limits**", "", _table(lim_rows, ["limit", "enforced", "how",
                                                             "detail"]), ""]
    return "\n".join(out)


def by_experiment(scenarios: list[dict[str, Any]]) -> list[tuple[str | None, list[dict]]]:
    """Scenarios grouped by experiment, in order of first appearance."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for sc in scenarios:
        groups.setdefault(sc.get("experiment"), []).append(sc)
    return list(groups.items())


def render(report: dict[str, Any]) -> str:
    machine = report["machine"]
    git = report.get("git") or {}
    lines = [f"# pytest-basht report `{report['run_id']}`", ""]
    lines += [f"- status: **{report['status']}**, created {report['created_utc']}",
              f"- machine: {machine['cpu_model']}, {machine['cores']} cores, "
              f"{machine['memory_gb']} GB, accelerators: "
              f"{', '.join(machine['accelerators']) or 'none'} (fingerprint {machine['id']})"]
    if git:
        lines.append(f"- git: `{git['commit'][:12]}` on {git['branch']}"
                     + (" (dirty)" if git["dirty"] else ""))
    for meter in report["meters"]:
        lines.append(f"- meter: {meter.get('source')} — "
                     + ("measured" if meter.get("measured") else
                        "**an estimate, not a measurement**")
                     + (f"; {meter['selection']}" if meter.get("selection") else ""))
    d = report["defaults"]
    lines.append(f"- defaults: carbon intensity {d['carbon_intensity_g_per_kwh']} gCO2eq/kWh "
                 f"({d['carbon_intensity_note']}), PUE {d['pue']}")
    lines += [f"- note: {n}" for n in report.get("notes", [])]
    lines.append("")
    if report["scenarios"]:
        headers, rows = summary_rows(report)
        lines += ["## Summary", "", _table(rows, headers), ""]
        exps = report.get("experiments")
        if exps is None:
            exps = comparison.experiments(report["scenarios"], report.get("skipped", []))
        lines += comparison.markdown_section(exps)
        for name, group in by_experiment(report["scenarios"]):
            lines += [f"## Scenarios — {name}" if name else "## Scenarios", ""]
            for sc in group:
                lines += [render_scenario(sc), ""]
        loose = [s for s in report.get("skipped", []) if not s.get("experiment")]
        if loose:
            lines += ["## Skipped", "", _table([[f"`{s['test_id']}`", s.get("reason") or ""]
                                               for s in loose], ["scenario", "reason"]), ""]
    else:
        lines += ["No scenario ran.", ""]
    lines += ["## Definitions", "", "```text", (metrics_mod.__doc__ or "").strip(), "```", ""]
    return "\n".join(lines)

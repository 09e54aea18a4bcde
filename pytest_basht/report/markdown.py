"""report.md: the report as tables a person reads (tabulate, GitHub Markdown)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from tabulate import tabulate

from pytest_basht import metrics as metrics_mod
from pytest_basht.lifecycle import PHASES

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
    band = energy.get("band") or {}
    if "low" in band and "high" in band:
        kind += f"; band ×{band['low']:.2f}–×{band['high']:.2f}"
    return f"{energy.get('source')} ({kind})"


def has_band(energy: dict[str, Any]) -> bool:
    band = energy.get("band") or {}
    return "low" in band and "high" in band


def band_text(energy: dict[str, Any], value: Any) -> str:
    """An estimate's low–high band around ``value`` (empty for a measurement)."""
    band = energy.get("band") or {}
    if not has_band(energy) or not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    return f"{fmt(value * band['low'])}–{fmt(value * band['high'])}"


def carbon_text(energy: dict[str, Any], metrics: dict[str, Any]) -> str:
    carbon = energy.get("carbon") or {}
    source = carbon.get("source", "fixed")
    text = f"CINT {fmt(metrics['cint_g_per_kwh'])} gCO2eq/kWh ({source}"
    if carbon.get("reference"):
        text += f", {carbon['reference']}"
    if carbon.get("series"):
        text += f", energy-weighted over {len(carbon['series'])} value(s) in force"
    return text + ")"


def idle_text(energy: dict[str, Any]) -> str:
    idle = (energy.get("meter") or {}).get("idle") or {}
    if energy.get("idle_measured") and idle:
        return (f"idle draw {fmt(energy['idle_power_w'])} W measured over "
                f"{fmt(idle.get('seconds'))} s before deploy"
                + (f" ({idle['note']})" if idle.get("note") else ""))
    how = "measured" if energy.get("idle_measured") else "modelled"
    return f"idle draw {fmt(energy['idle_power_w'])} W {how}"


def summary_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["scenario", "outcome", "JCT s", "energy J", "CO2 g", "OC USD", "WTE kWh",
               "WR %", "best", "test", "trials c/p/f/dup"]
    rows = []
    for sc in report["scenarios"]:
        m = sc["metrics"]
        band = band_text(sc["energy"], m["energy_j"])
        rows.append([
            sc["test_id"].split("::")[-1], sc["outcome"], fmt(m["jct_ms"] / 1e3),
            fmt(m["energy_j"]) + (f" [{band}]" if band else ""), fmt(m["co2_g"]),
            fmt(m["oc_usd"]), fmt(m["wte_kwh"]),
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
    banded = has_band(scenario["energy"])
    return [[p, str(int(agg[p][0])), fmt(agg[p][1]), fmt(agg[p][2]), fmt(agg[p][3]),
             *([band_text(scenario["energy"], agg[p][3])] if banded else [])]
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
    energy = sc["energy"]
    for key in metrics_mod.TABLE2_KEYS:
        note = "estimate" if key in ENERGY_KEYS and not energy["measured"] else ""
        # ratios and the Zeus cost (partly P_max·T) do not scale with the band
        band = band_text(energy, m[key]) if key in ENERGY_KEYS - {"wr_pct", "zeus_cost"} else ""
        if band:
            note += f", band {band}"
        rows.append([LABELS[key], f"`{key}`", fmt(m[key]), metrics_mod.UNITS[key], note])
    out += [f"**Table 2 — metrics** (energy: {energy_label(energy)}; {idle_text(energy)}; "
            f"{carbon_text(energy, m)})", "",
            _table(rows, ["metric", "key", "value", "unit", ""]), ""]
    for plot in sc.get("plots", []):
        out += [f"![power timeline and trials per worker of {sc['test_id']}]({plot})", ""]
    phase_headers = ["phase", "spans", "time s", "CPU s", "energy J"]
    if has_band(energy):
        phase_headers.append("band J")
    out += [f"**Phases** (energy: {energy_label(energy)}; lifecycle phases: the meter over "
            "their window; trial phases: attributed by CPU time plus the slot's idle share)",
            "", _table(phase_rows(sc), phase_headers), ""]
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
        if has_band(energy):
            trial_rows[-1].insert(-1, band_text(energy, t["energy_j"]))
    trial_headers = ["#", "worker", "params", "state", "value", "time s", "energy J", "error"]
    if has_band(energy):
        trial_headers.insert(-1, "band J")
    out += [f"**Trials** (best: #{sc['best_trial']} = {fmt(sc['best_value'])}, test split: "
            f"{fmt(sc['test_score'])}; energy: {energy_label(energy)})", "",
            _table(trial_rows, trial_headers), ""]
    limits = (sc.get("sut") or {}).get("limits")
    if limits:
        lim_rows = [[name, "yes" if v.get("enforced") else "**no**", v.get("how", ""),
                     json.dumps({k: x for k, x in v.items() if k not in ("enforced", "how")},
                                separators=(",", ":"))] for name, v in limits.items()]
        out += ["**Resource limits**", "", _table(lim_rows, ["limit", "enforced", "how",
                                                             "detail"]), ""]
    return "\n".join(out)


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
        lines += [f"- meter warning: {w}" for w in meter.get("warnings", [])]
    d = report["defaults"]
    lines.append(f"- defaults: carbon intensity {d['carbon_intensity_g_per_kwh']} gCO2eq/kWh "
                 f"({d['carbon_intensity_note']}), PUE {d['pue']}")
    lines += [f"- note: {n}" for n in report.get("notes", [])]
    lines.append("")
    if report["scenarios"]:
        headers, rows = summary_rows(report)
        lines += ["## Summary", "", _table(rows, headers), ""]
        lines += ["## Scenarios", ""]
        for sc in report["scenarios"]:
            lines += [render_scenario(sc), ""]
    else:
        lines += ["No scenario ran.", ""]
    lines += ["## Definitions", "", "```text", (metrics_mod.__doc__ or "").strip(), "```", ""]
    return "\n".join(lines)

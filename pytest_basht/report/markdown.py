"""report.md: the report as tables a person reads (tabulate, GitHub Markdown)."""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest_basht.metrics as metrics_mod
from pytest_basht.lifecycle import PHASES
from pytest_basht.report import experiments, pareto, ranking, study
from pytest_basht.report import forecast as forecast_report
from pytest_basht.report.format import fmt, github_table
from pytest_basht.report.gate import gate_lines, table

LABELS = {
    "jct_ms": "JCT", "energy_j": "energy", "energy_kwh": "energy", "twh_kwh": "TWH",
    "trial_power_w": "trial power", "cint_g_per_kwh": "CINT", "co2_g": "CO2",
    "oc_usd": "OC", "wtt_ms": "WTT", "wte_kwh": "WTE", "wtc_usd": "WTC", "wr_pct": "WR",
    "zeus_cost": "Zeus cost", "tta_ms": "TTA", "eta_j": "ETA",
}
#: A scenario with more trials than this lists only its best, slowest and failed ones.
MAX_TRIAL_ROWS = 50
TOP = 10
TRIALS_CSV = "trials.csv"
ENERGY_KEYS = {"energy_j", "energy_kwh", "twh_kwh", "trial_power_w", "co2_g", "wte_kwh",
               "wr_pct", "zeus_cost", "eta_j"}


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


def failover_lines(sc: dict[str, Any]) -> list[str]:
    """A meter that failed during the scenario: when, why, and what measured after it."""
    out = []
    starts = [s["start_ns"] for s in sc.get("spans", [])] or [0]
    for fo in (sc.get("energy") or {}).get("failover", []):
        at = (fo["start_ns"] - min(starts)) / 1e9
        then = (f"{fo['fallback']} measured from then on (an estimate)" if fo.get("fallback")
                else "no energy was counted from then on")
        out += [f"> **energy meter failed**: {fo['meter']} ({fo['reason']}); its last good "
                f"reading was {fmt(at)} s into the scenario, and {then}. Energy after that "
                "point is not a measurement.", ""]
    return out


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
        name = sc["test_id"].split("::")[-1]
        if (sc.get("sut") or {}).get("simulated"):
            name += " (simulated)"
        band = band_text(sc["energy"], m["energy_j"])
        rows.append([
            name, sc["outcome"], fmt(m["jct_ms"] / 1e3),
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


def render_scenario(sc: dict[str, Any], plugins: Any = None) -> str:
    """A scenario's section; ``plugins``' ``pytest_basht_markdown_scenario`` hooks add
    theirs after its trials."""
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
    simulation = (sc.get("sut") or {}).get("simulation") if (sc.get("sut") or {}).get(
        "simulated") else None
    if simulation is not None:
        table = simulation.get("table")
        facts.append("**simulated** in virtual time from " + (
            f"table `{table['path']}` (sha256 {table['sha256'][:12]})" if table
            else f"the zero-cost benchmark `{simulation.get('benchmark')}`"))
    out += ["; ".join(facts) + ".", ""]
    out += study.lines(sc.get("sut") or {}, sc.get("trials") or [])
    out += pareto.lines(sc)
    out += forecast_report.lines(sc)
    if sc.get("error"):
        out += [f"> error: {sc['error']}", ""]
    out += failover_lines(sc)
    out += ["**Table 1 — workload**", "",
            github_table([[f"`{r[0]}`" if r[0] else "", r[1], fmt(r[2])]
                          for r in sc["table1"]], ["symbol", "variable", "value"]), ""]
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
            github_table(rows, ["metric", "key", "value", "unit", ""]), ""]
    for plot in sc.get("plots", []):
        out += [f"![power timeline and trials per worker of {sc['test_id']}]({plot})", ""]
    if sc.get("trial_plot"):
        out += [f"![each trial's value against its energy, Pareto front marked, of "
                f"{sc['test_id']}]({sc['trial_plot']})", ""]
    phase_headers = ["phase", "spans", "time s", "CPU s", "energy J"]
    if has_band(energy):
        phase_headers.append("band J")
    out += [f"**Phases** (energy: {energy_label(energy)}; lifecycle phases: the meter over "
            "their window; trial phases: attributed by CPU time plus the slot's idle share)",
            "", github_table(phase_rows(sc), phase_headers), ""]
    waste_rows = [[cat, fmt(w["trials"]), fmt(w["time_ms"] / 1e3), fmt(w["energy_kwh"]),
                   fmt(w["cost_usd"])] for cat, w in m["waste"].items()]
    out += ["**Waste** (categories overlap; `total` counts each wasted trial once)", "",
            github_table(waste_rows, ["category", "trials", "time s", "energy kWh",
                                      "cost USD"]), ""]
    out += trial_section(sc)
    if plugins is not None:
        for lines in plugins.pytest_basht_markdown_scenario(scenario=sc):
            out += lines
    if simulation is not None:
        out += simulation_section(simulation)
    limits = (sc.get("sut") or {}).get("limits")
    if limits:
        lim_rows = [[name, "yes" if v.get("enforced") else "**no**", v.get("how", ""),
                     json.dumps({k: x for k, x in v.items() if k not in ("enforced", "how")},
                                separators=(",", ":"))] for name, v in limits.items()]
        out += ["**Resource limits**", "",
                github_table(lim_rows, ["limit", "enforced", "how", "detail"]), ""]
    return "\n".join(out)


def _trial_table(trials: Sequence[dict[str, Any]], energy: dict[str, Any]) -> str:
    banded = has_band(energy)
    rows = []
    for t in trials:
        rows.append([
            str(t["number"]), str(t["worker"]),
            json.dumps(t["params"], separators=(",", ":")), t["state"], fmt(t["value"]),
            fmt((t["end_ns"] - t["start_ns"]) / 1e9), fmt(t["energy_j"]),
            ", ".join(t.get("waste") or ()), (t.get("error") or "")[:120]])
        if banded:
            rows[-1].insert(-2, band_text(energy, t["energy_j"]))
    headers = ["#", "worker", "params", "state", "value", "time s", "energy J", "waste",
               "error"]
    if banded:
        headers.insert(-2, "band J")
    return github_table(rows, headers)


def best_trials(trials: Sequence[dict[str, Any]], direction: str, k: int
                ) -> list[dict[str, Any]]:
    """The ``k`` complete trials with the best values, best first."""
    scored = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    pick = heapq.nlargest if direction == "maximize" else heapq.nsmallest
    return pick(k, scored, key=lambda t: t["value"])


def trial_section(sc: dict[str, Any]) -> list[str]:
    """The trials table: every trial up to ``MAX_TRIAL_ROWS``; past that the best, the
    slowest and the failed, each at most ``TOP`` rows (trials.csv holds every one)."""
    energy, trials = sc["energy"], sc["trials"]
    head = (f"**Trials** (best: #{sc['best_trial']} = {fmt(sc['best_value'])}, test split: "
            f"{fmt(sc['test_score'])}; energy: {energy_label(energy)})")
    if len(trials) <= MAX_TRIAL_ROWS:
        return [head, "", _trial_table(trials, energy), ""]
    failed = [t for t in trials if t["state"] == "failed"]
    direction = sc["workload"]["goal"]["direction"]
    slowest = heapq.nlargest(TOP, trials, key=lambda t: t["end_ns"] - t["start_ns"])
    out = [head, "", f"{fmt(len(trials))} trials: the {TOP} best, the {TOP} slowest and the "
           f"failed are shown here; every trial is in `{TRIALS_CSV}` beside this report (one "
           "row per trial of every scenario) and in report.json.", "",
           f"Best {TOP} ({direction}):", "",
           _trial_table(best_trials(trials, direction, TOP), energy), "",
           f"Slowest {TOP}:", "", _trial_table(slowest, energy), ""]
    if failed:
        shown = "" if len(failed) <= TOP else f", the first {TOP}"
        out += [f"Failed ({fmt(len(failed))}{shown}):", "",
                _trial_table(failed[:TOP], energy), ""]
    return out


def simulation_section(sim: dict[str, Any]) -> list[str]:
    """How a simulated scenario was answered, how fast, and how good its surrogate is."""
    table = sim.get("table")
    rows = []
    if table:
        rows.append(["table", f"`{table['path']}`: {fmt(table['configurations'])} configurations, "
                     f"{fmt(table['recordings'])} recorded trials, seeds {table['seeds']}, "
                     f"up to {table['epochs']} epochs"])
    else:
        rows.append(["benchmark", f"`{sim.get('benchmark')}` (zero-cost)"])
    rows.append(["answers", ", ".join(f"{k}: {v}" for k, v in sim.get("answers", {}).items())
                 or "none"])
    rows.append(["options", ", ".join(f"{k}: {v}" for k, v in sim.get("options", {}).items())])
    rows.append(["sampler time charged", f"{fmt(sim.get('sampler_s'))} s"])
    rows.append(["trials window", f"{fmt(sim.get('trials_window_s'))} s virtual, replayed in "
                 f"{fmt(sim.get('wall_s'))} s ({fmt(sim.get('speedup'))}× faster)"])
    rows.append(["replay's own time", f"{fmt(sim.get('overhead_ms_per_trial'))} ms per trial "
                 "(without the sampler's and pruner's calls)"])
    out = ["**Simulation**", "", github_table(rows, ["", ""]), ""]
    surrogate = sim.get("surrogate")
    if surrogate:
        out += [f"Surrogate: {surrogate['model']}; fitted on "
                f"{fmt(surrogate['fitted_on']['configurations'])} configurations.", ""]
        held = surrogate.get("holdout")
        if held:
            out += [f"Held out {fmt(held['configurations'])} configurations "
                    f"({fmt(held['rows'])} rows) before the final fit:", "",
                    github_table([[k, fmt(v["r2"]), fmt(v["mae"])] for k, v in held.items()
                                  if isinstance(v, dict)], ["target", "R²", "MAE"]), ""]
        else:
            out += ["Too few configurations to hold any out: quality not measured.", ""]
    out += [f"- {note}" for note in sim.get("notes", [])]
    return out + ([""] if sim.get("notes") else [])


def by_experiment(scenarios: list[dict[str, Any]]) -> list[tuple[str | None, list[dict]]]:
    """Scenarios grouped by experiment, in order of first appearance."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for sc in scenarios:
        groups.setdefault(sc.get("experiment"), []).append(sc)
    return list(groups.items())


def render(report: dict[str, Any], plugins: Any = None) -> str:
    """report.md. ``plugins``: the hook caller (pytest's, or ``wiring.plugin_manager()``'s)
    whose ``pytest_basht_markdown_report`` and ``pytest_basht_markdown_scenario`` hooks add
    the plugins' sections; None: the report's own sections only."""
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
    lines += concurrency_lines(report)
    lines.append("")
    if report["scenarios"]:
        headers, rows = summary_rows(report)
        lines += ranking_section(report)  # the answer first: which setup reached the goal
        lines += ["## Summary", "", github_table(rows, headers), ""]
        lines += comparison_section(report)
        if plugins is not None:
            for section in plugins.pytest_basht_markdown_report(report=report):
                lines += section
        exps = report.get("experiments")
        if exps is None:
            exps = experiments.experiments(report["scenarios"], report.get("skipped", []))
        lines += experiments.markdown_section(exps, ranking.report_rank_by(report))
        for name, group in by_experiment(report["scenarios"]):
            lines += [f"## Scenarios — {name}" if name else "## Scenarios", ""]
            for sc in group:
                lines += [render_scenario(sc, plugins), ""]
        loose = [s for s in report.get("skipped", []) if not s.get("experiment")]
        if loose:
            lines += ["## Skipped", "",
                      github_table([[f"`{s['test_id']}`", s.get("reason") or ""] for s in loose],
                                   ["scenario", "reason"]), ""]
    else:
        lines += ["No scenario ran.", ""]
    lines += ["## Definitions", "", "```text", (metrics_mod.__doc__ or "").strip(), "```", ""]
    return "\n".join(lines)


def ranking_section(report: dict[str, Any]) -> list[str]:
    """The setups ranked by what it took to reach the goal, per experiment and goal."""
    sections = ranking.sections(report["scenarios"], ranking.report_rank_by(report))
    if not sections:
        return []
    out = ["## Ranking", ""]
    for caption, headers, rows in sections:
        out += [caption[0].upper() + caption[1:] + ".", "", github_table(rows, headers), ""]
    return out


def concurrency_lines(report: dict[str, Any]) -> list[str]:
    """Parallel scenarios (pytest -n) and the tests an xdist worker crash lost."""
    out = []
    conc = report.get("concurrency") or {}
    if conc.get("max_parallel", 1) > 1:
        out.append(f"- concurrency: up to {conc['max_parallel']} scenarios shared the machine "
                   f"({conc.get('processes')} processes); {conc.get('energy_scope', '')}")
    out += [f"- **lost**: `{lost['test_id']}` — xdist worker {lost['worker']} crashed "
            f"({lost['reason']})" for lost in report.get("lost") or []]
    return out


def comparison_section(report: dict[str, Any]) -> list[str]:
    comparison = report.get("comparison")
    if not comparison:
        return []
    out = ["## Comparison", "", f"Baseline: {comparison.get('baseline', {}).get('label')}.", ""]
    if comparison.get("rows"):
        headers, rows = table(comparison)
        out += [github_table(rows, headers), ""]
    out += ["```text", *gate_lines(comparison), "```", ""]
    return out

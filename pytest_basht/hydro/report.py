"""Hydro's part of report.md: a table of the fused and scaled scenarios after the summary,
and each one's figures in its section (``hydro.plugin`` adds them through the Markdown
hooks)."""

from __future__ import annotations

import json
from typing import Any

import pytest_basht.metrics as metrics_mod
from pytest_basht.report.format import fmt, github_table


def _tau(scaling: dict[str, Any]) -> str:
    fidelity = scaling.get("fidelity") or {}
    if fidelity.get("kendall_tau") is None:
        return "—"
    return f"{fidelity['kendall_tau']:.3g} (n={fidelity['configs']})"


def summary_rows(report: dict[str, Any]) -> tuple[list[list[str]], list[str]] | None:
    """One row per scenario that ran with search.fusion or search.scaling set."""
    rows = []
    for sc in report["scenarios"]:
        hydro = (sc.get("sut") or {}).get("hydro")
        if not hydro:
            continue
        m, fusion, scaling = sc["metrics"], hydro["fusion"], hydro["scaling"]
        rows.append([sc["test_id"].split("::")[-1], fmt(fusion["factor"]),
                     fmt(scaling["factor"]), fmt(fusion["mean_group_size"], 3),
                     fmt(hydro["trials_per_s"]), fmt(m["twh_kwh"] * metrics_mod.J_PER_KWH),
                     fmt(hydro["trials_window_s"]), fmt(scaling.get("retrain_s")),
                     fmt(m["jct_ms"] / 1e3), fmt(m["energy_j"]), _tau(scaling),
                     fmt(sc["test_score"])])
    if not rows:
        return None
    return rows, ["scenario", "F", "S", "mean fused", "trials/s", "energy/trial J",
                  "search s", "retrain s", "JCT s", "energy J", "τ", "test"]


def report_section(report: dict[str, Any]) -> list[str]:
    """The table of every fused or scaled scenario, after the summary (none: nothing)."""
    table = summary_rows(report)
    if table is None:
        return []
    return ["## Hydro: fused and scaled trials", "",
            "Energy per trial is TWH in joules; search s is the trials window (first trial "
            "start → last trial end); retrain s the full-width retraining in the test phase; "
            "τ is Kendall's τ between the surrogate's and the full model's ranking of the "
            "retrained configurations.", "", github_table(*table), ""]


def scenario_section(sc: dict[str, Any]) -> list[str]:
    """A fused or scaled scenario's figures, and the configurations retrained at full
    width (a scenario without Hydro's figures: nothing)."""
    hydro = (sc.get("sut") or {}).get("hydro")
    if not hydro:
        return []
    m, fusion, scaling = sc["metrics"], hydro["fusion"], hydro["scaling"]
    estimate = "" if sc["energy"]["measured"] else " (estimate)"
    sizes = ", ".join(f"{n} × {k}" for k, n in fusion["group_sizes"].items()) or "—"
    rows = [
        ["fusion F", f"{fusion['factor']}: {fusion['groups']} groups, sizes {sizes}, mean "
                     f"{fmt(fusion['mean_group_size'], 3)}"],
        ["trials per second", f"{fmt(hydro['trials_per_s'])} ({hydro['trials']} trials in "
                              f"{fmt(hydro['trials_window_s'])} s, first start → last end)"],
        ["energy per trial", f"{fmt(m['twh_kwh'] * metrics_mod.J_PER_KWH)} J{estimate}"],
        ["JCT", f"{fmt(m['jct_ms'] / 1e3)} s"],
        ["scaling S", str(scaling["factor"])],
    ]
    retrained = scaling.get("retrained") or []
    if scaling["factor"] > 1:
        widths = scaling.get("widths") or {}
        rows.append(["surrogate widths", ", ".join(f"{k} → {v}" for k, v in widths.items())
                     or "—"])
        rows.append(["parametrization", scaling.get("parametrization", "")])
        fidelity = scaling.get("fidelity") or {}
        tau = _tau(scaling)
        if tau != "—":
            tau += f", p = {fmt(fidelity.get('p_value'))}"
        rows.append(["ranking fidelity τ", tau if tau != "—" else fidelity.get("note", "—")])
        rows.append(["top-1 agrees", fmt(fidelity.get("top1_agrees"))])
        rows.append(["retrained at full width",
                     f"{len(retrained)} in {fmt(scaling.get('retrain_s'))} s (test phase); "
                     f"tested #{scaling.get('tested_trial')} (full-width validation "
                     f"{fmt(scaling.get('tested_full_value'))})"])
    out = ["**Hydro — fused and scaled trials**", "", github_table(rows, ["figure", "value"]),
           ""]
    if retrained:
        table = [[str(r["number"]), json.dumps(r["params"], separators=(",", ":")),
                  fmt(r["surrogate_value"]), fmt(r["full_value"]), r["state"],
                  fmt(r.get("time_s"))] for r in retrained]
        out += ["**Retrained at full width** (the surrogate's best first)", "",
                github_table(table, ["#", "params", "surrogate value", "full value", "state",
                                     "time s"]), ""]
    return out

"""The Zeus BSO section of report.md: per job, how fast its optimizer converged (the
report's ``zeus`` section, ``zeus.report``), added through ``pytest_basht_markdown_report``."""

from __future__ import annotations

from typing import Any

from pytest_basht.report.format import fmt, github_table


def _policy(group: dict[str, Any]) -> str:
    return "zeus-bso" if group["policy"] == "zeus" else group["policy"]


def _attempts(rec: dict[str, Any]) -> str:
    """The batch sizes a recurrence tried: ✓ reached the target, ✗ stopped early or not."""
    return " → ".join(f"{a['batch_size']}{'✓' if a['converged'] else '✗'}"
                      for a in rec["attempts"])


def section(zeus: dict[str, Any] | None) -> list[str]:
    """Zeus's batch size optimizer: per job, cumulative cost and regret per recurrence."""
    if not zeus or not zeus.get("groups"):
        return []
    groups = zeus["groups"]
    out = ["## Zeus BSO: cost and regret per recurrence", "",
           f"Each scenario is one recurrence of its job; its trials are attempts (✓ reached "
           f"the target, ✗ stopped early or ran out of epochs). Cost: {zeus['cost']}. Regret: "
           "a recurrence's cost minus C*, the expected cost of always training the oracle's "
           f"batch size. Settled on: the batch size chosen first most often in the last "
           f"{zeus['settle_window']} recurrences.", ""]
    rows = []
    for g in groups:
        s, o = g["summary"], g["oracle"]
        rows.append([f"`{g['job']}`", _policy(g), str(s["recurrences"]),
                     f"{s['converged']}/{s['recurrences']}", str(s["attempts"]),
                     str(s["early_stopped"]), fmt(s["cumulative_cost"]),
                     fmt(s["cumulative_regret"]),
                     f"{s['settled_batch_size']} ({s['settled_share']:.0%})"
                     if s["settled_batch_size"] is not None else "—",
                     f"{o['best_batch_size']} ({fmt(o['best_cost'])} J)"
                     if o["best_batch_size"] is not None else "—"])
    out += [github_table(rows, ["job", "policy", "recurrences", "reached target", "attempts",
                                "stopped early", "cumulative cost J", "cumulative regret J",
                                "settled on", "oracle's batch (C*)"]), ""]
    for g in groups:
        o = g["oracle"]
        out.append(f"- `{g['job']}`: η = {g['eta']}, P_max = {fmt(g['max_power_w'])} W "
                   f"({g['max_power_source']}), target {g['target']}; oracle: {o['source']} "
                   f"({o['how']})")
    out.append("")
    if zeus.get("plot"):
        out += [f"![cumulative cost and regret per recurrence]({zeus['plot']})", ""]
    depth = max(len(g["recurrences"]) for g in groups)
    table = []
    for k in range(depth):
        row = [str(k + 1)]
        for g in groups:
            rec = g["recurrences"][k] if k < len(g["recurrences"]) else None
            row += (["", "", ""] if rec is None else
                    [_attempts(rec), fmt(rec["cumulative_cost"]), fmt(rec["cumulative_regret"])])
        table.append(row)
    headers = ["recurrence"]
    for g in groups:
        name = _policy(g)
        headers += [f"{name}: batch", f"{name}: Σ cost J", f"{name}: Σ regret J"]
    out += ["**Per recurrence**", "", github_table(table, headers), ""]
    return out

"""How fast a job's optimizer converges: cost and regret per recurrence, from the records.

Every scenario that ran with ``search.sampler: zeus-bso`` is one recurrence of its job.
Its trials are the attempts; an attempt's cost is Zeus's, to the first epoch that reached
the target (else to its last epoch), computed from the trial's own spans — the same
definition the sampler logs, so a simulated run's report and the store agree exactly.
A recurrence costs what all of its attempts cost (an attempt stopped early is waste the
job still paid for).

Regret is against an oracle that always trains the cheapest batch size: its expected cost
per recurrence, ``C*``. For a simulated run it comes from the trial table: each batch
size's mean cost over its recordings, among the batch sizes whose every recording reaches
the target within the epochs allowed (a batch size that sometimes fails cannot be relied
on). Without a table it is the cheapest batch size's mean cost over this report's
attempts that reached the target (labelled empirical). Regret per recurrence is its cost
minus ``C*``; cumulative regret is their sum, so a lucky recurrence can subtract.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest_basht.workload as wl
from pytest_basht.errors import BashtUsageError
from pytest_basht.report import json as report_json
from pytest_basht.report.atomic import replace_atomic
from pytest_basht.zeus.config import NAME, JobConfig, parse

PLOT = "bso.png"
SETTLE_WINDOW = 10  # "settled on": the most frequent first choice of the last 10 recurrences


def is_bso(record: Mapping[str, Any]) -> bool:
    return ((record.get("workload") or {}).get("search") or {}).get("sampler") == NAME


#: The sections of a recorded workload a job's configuration is read from (the rest, free
#: text included, is not needed and not re-validated).
JOB_SECTIONS = ("name", "training", "search", "goal", "workers", "energy")


def job_config(record: Mapping[str, Any]) -> JobConfig:
    data = {k: v for k, v in record["workload"].items() if k in JOB_SECTIONS}
    return parse(wl.from_mapping(data, record.get("workload_source") or ""))


def attempt_cost(trial: Mapping[str, Any], config: JobConfig) -> dict[str, Any]:
    """One attempt from its trial record: cost to the target (else to its last epoch)."""
    values = list(trial.get("intermediate") or [])
    reached = next((i for i, v in enumerate(values) if config.met(v)), None)
    last = reached if reached is not None else len(values) - 1
    start = int(trial["start_ns"])
    end, energy = start, 0.0
    for s in trial.get("spans") or []:
        epoch = s.get("epoch")
        if epoch is None or epoch > last:
            continue
        energy += s.get("energy_j") or 0.0
        end = max(end, int(s["end_ns"]))
    if last < 0:  # ended before its first report
        end, energy = int(trial["end_ns"]), trial.get("energy_j") or 0.0
    time_s = max(0, end - start) / 1e9
    return {"number": trial["number"], "batch_size": (trial.get("params") or {}).get(
                "batch_size"), "state": trial["state"], "converged": reached is not None,
            "epochs": last + 1, "energy_j": energy, "time_s": time_s,
            "cost": config.cost(energy, time_s)}


def recurrence(record: Mapping[str, Any], config: JobConfig) -> dict[str, Any]:
    attempts = [attempt_cost(t, config) for t in sorted(record.get("trials") or [],
                                                          key=lambda t: t["number"])]
    done = next((a for a in attempts if a["converged"]), None)
    return {"test_id": record["test_id"], "seed": record["workload"].get("seed"),
            "attempts": attempts, "cost": math.fsum(a["cost"] for a in attempts),
            "converged": done is not None,
            "batch_size": done["batch_size"] if done else None,
            "early_stopped": sum(1 for a in attempts if a["state"] == "pruned")}


# ----------------------------------------------------------------------------- oracle


def table_oracle(path: str | Path, config: JobConfig) -> dict[str, Any]:
    """Each batch size's mean cost to the target over a trial table's recordings."""
    from pytest_basht.simulation.table import TrialTable

    table = TrialTable.read(path)
    per: dict[int, list[float | None]] = {}
    for rec in table.recordings:
        bs = rec.params.get("batch_size")
        if bs not in config.spec.batch_sizes:
            continue
        c = rec.curve
        limit = min(c.epochs, config.max_epochs)
        first = next((i for i in range(limit) if config.met(c.values[i])), None)
        per.setdefault(bs, []).append(
            None if first is None else config.cost(math.fsum(c.energies_j[:first + 1]),
                                                   sum(c.times_ns[:first + 1]) / 1e9))
    means = {bs: {"mean_cost": (math.fsum(x for x in costs if x is not None)
                                / max(1, sum(1 for x in costs if x is not None))
                                if any(x is not None for x in costs) else None),
                  "recordings": len(costs), "reach_target": sum(1 for x in costs
                                                                if x is not None)}
             for bs, costs in sorted(per.items())}
    reliable = {bs: m["mean_cost"] for bs, m in means.items()
                if m["recordings"] and m["reach_target"] == m["recordings"]}
    best = min(reliable, key=lambda bs: (reliable[bs], bs)) if reliable else None
    return {"source": f"table {path}", "batch_sizes": means, "best_batch_size": best,
            "best_cost": reliable.get(best) if best is not None else None,
            "how": "mean cost to the target of each batch size's recordings, among the "
                   "batch sizes whose every recording reaches it within training.epochs"}


def empirical_oracle(recurrences: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    costs: dict[int, list[float]] = {}
    for r in recurrences:
        for a in r["attempts"]:
            if a["converged"]:
                costs.setdefault(a["batch_size"], []).append(a["cost"])
    means = {bs: {"mean_cost": math.fsum(c) / len(c), "attempts": len(c)}
             for bs, c in sorted(costs.items())}
    best = min(means, key=lambda bs: (means[bs]["mean_cost"], bs)) if means else None
    return {"source": "empirical", "batch_sizes": means, "best_batch_size": best,
            "best_cost": means[best]["mean_cost"] if best is not None else None,
            "how": "mean cost of each batch size's attempts in this report that reached "
                   "the target (no trial table to take the expected costs from)"}


def _table_of(record: Mapping[str, Any]) -> str | None:
    sim = (record.get("sut") or {}).get("simulation") or {}
    table = sim.get("table") or {}
    return table.get("path")


# ----------------------------------------------------------------------------- summary


def summarize(scenarios: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Recurrences grouped by job, with cumulative cost and regret; None without any."""
    groups: dict[str, dict[str, Any]] = {}
    for record in scenarios:
        if not is_bso(record) or not record.get("trials"):
            continue
        try:
            config = job_config(record)
        except BashtUsageError:
            continue
        g = groups.setdefault(config.job, {"job": config.job, "policy": config.spec.policy,
                                           "config": config, "table": _table_of(record),
                                           "recurrences": []})
        g["recurrences"].append(recurrence(record, config))
    if not groups:
        return None
    out = []
    for g in groups.values():
        config, recs = g.pop("config"), g["recurrences"]
        oracle = (table_oracle(g["table"], config) if g["table"] and Path(g["table"]).exists()
                  else empirical_oracle(recs))
        best = oracle["best_cost"]
        total = regret = 0.0
        for k, r in enumerate(recs, start=1):
            total += r["cost"]
            r["recurrence"] = k
            r["cumulative_cost"] = total
            r["regret"] = r["cost"] - best if best is not None else None
            regret = regret + r["regret"] if best is not None else math.nan
            r["cumulative_regret"] = regret if best is not None else None
        tail = [r["attempts"][0]["batch_size"] for r in recs[-SETTLE_WINDOW:] if r["attempts"]]
        settled, count = Counter(tail).most_common(1)[0] if tail else (None, 0)
        g.update({
            "oracle": oracle, "eta": config.eta, "max_power_w": config.max_power_w,
            "max_power_source": config.max_power_source, "target": config.target,
            "summary": {
                "recurrences": len(recs), "cumulative_cost": total,
                "cumulative_regret": regret if best is not None else None,
                "converged": sum(1 for r in recs if r["converged"]),
                "attempts": sum(len(r["attempts"]) for r in recs),
                "early_stopped": sum(r["early_stopped"] for r in recs),
                "settled_batch_size": settled,
                "settled_share": count / len(recs[-SETTLE_WINDOW:]) if tail else 0.0,
                "settled_on_best": settled is not None and settled == oracle[
                    "best_batch_size"],
            }})
        out.append(g)
    return {"groups": out, "settle_window": SETTLE_WINDOW,
            "cost": "η·E + (1 − η)·P_max·T to the target, × PUE (J); a recurrence's cost is "
                    "its attempts' sum", "plot": None}


# ----------------------------------------------------------------------------- plot


def plot(summary: Mapping[str, Any], path: Path) -> bool:
    """Cumulative cost and cumulative regret per recurrence, one line per job."""
    groups = [g for g in summary["groups"] if g["recurrences"]]
    if not groups:
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    cost_ax, regret_ax = fig.subplots(1, 2)
    for g in groups:
        ks = [r["recurrence"] for r in g["recurrences"]]
        label = f"{g['policy'] if g['policy'] != 'zeus' else 'zeus-bso'} ({g['job']})"
        cost_ax.plot(ks, [r["cumulative_cost"] for r in g["recurrences"]], marker=".",
                     label=label)
        oracle = g["oracle"]
        if g["summary"]["cumulative_regret"] is not None:
            kind = "table" if oracle["source"].startswith("table") else oracle["source"]
            regret_ax.plot(ks, [r["cumulative_regret"] for r in g["recurrences"]],
                           marker=".", label=f"{label}: C* {oracle['best_cost']:.4g} J, "
                                             f"batch {oracle['best_batch_size']} ({kind})")
    cost_ax.set(title="cumulative cost", xlabel="recurrence", ylabel="Zeus cost (J)")
    regret_ax.set(title="cumulative regret (cost − C*, the oracle's expected cost)",
                  xlabel="recurrence", ylabel="J")
    regret_ax.axhline(0, color="grey", linewidth=0.8)
    for ax in (cost_ax, regret_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return True


def update_report(report: dict[str, Any]) -> None:
    """Add the ``zeus`` section. Nothing here may cost the report: a failure becomes a
    note."""
    try:
        summary = summarize(report.get("scenarios") or [])
    except (BashtUsageError, OSError, ValueError, KeyError, TypeError) as exc:
        report.setdefault("notes", []).append(f"zeus section not computed: "
                                              f"{type(exc).__name__}: {exc}")
        return
    if summary is None:
        return
    report["zeus"] = report_json.clean(summary)


def write_plot(report: dict[str, Any], run_dir: Path) -> None:
    """Write ``bso.png`` for the report's ``zeus`` section into the run directory."""
    summary = report.get("zeus")
    if summary and plot(summary, run_dir / PLOT):
        summary["plot"] = PLOT

"""Hydro's test phase: with ``search.scaling`` > 1 the trials trained surrogates, so the
surrogate's best ``search.retrain`` configurations are retrained at full width on the SUT's
workers (spread over them, fused by shape within each); the one the full models rank best
is tested, and the ranking fidelity (Kendall's τ) measured over the configurations
measured both ways. The SUT calls it through ``pytest_basht_sut_test_model``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_basht.hydro.scaling import ranking_fidelity
from pytest_basht.records import TrialRecord, mono_ns
from pytest_basht.sut.base import TestModel
from pytest_basht.sut.pool import WorkerPool
from pytest_basht.workload import Workload


def to_retrain(trials: Sequence[TrialRecord], workload: Workload) -> list[TrialRecord]:
    """The surrogate's best ``search.retrain`` complete trials, best first, one per config."""
    maximize = workload.goal.direction == "maximize"
    done = [t for t in trials if t.state == "complete" and t.value is not None
            and math.isfinite(t.value)]
    done.sort(key=lambda t: (-t.value if maximize else t.value, t.number))  # type: ignore
    chosen: list[TrialRecord] = []
    seen: set[str] = set()
    for t in done:
        key = repr(sorted(t.params.items()))
        if key not in seen:
            seen.add(key)
            chosen.append(t)
    return chosen[: workload.search.retrain]


def deal(configs: list[dict[str, Any]], workers: int) -> list[list[dict[str, Any]]]:
    """Contiguous, even shares for the workers (each fuses its share by shape)."""
    per = max(1, math.ceil(len(configs) / max(1, workers)))
    return [configs[i:i + per] for i in range(0, len(configs), per)]


def best_full(results: Sequence[dict[str, Any]], workload: Workload) -> dict[str, Any] | None:
    ok = [r for r in results if r["state"] == "complete" and r["value"] is not None]
    if not ok:
        return None
    pick = max if workload.goal.direction == "maximize" else min
    return pick(ok, key=lambda r: r["value"])


def scaling_figures(workload: Workload, chosen: Sequence[TrialRecord],
                    results: Sequence[dict[str, Any]], tested: dict[str, Any] | None,
                    retrain_s: float) -> dict[str, Any]:
    by_number = {r["number"]: r for r in results}
    rows = []
    for t in chosen:
        r = by_number.get(t.number, {})
        rows.append({"number": t.number, "params": t.params, "surrogate_value": t.value,
                     "full_value": r.get("value"), "state": r.get("state", "missing"),
                     "error": r.get("error"), "worker": r.get("worker"),
                     "time_s": r.get("time_s"), "cpu_s": r.get("cpu_s")})
    fidelity = ranking_fidelity([r["surrogate_value"] for r in rows],
                                [r["full_value"] for r in rows], workload.goal.direction)
    return {"retrain": workload.search.retrain, "retrained": rows, "fidelity": fidelity,
            "tested_trial": tested["number"] if tested else None,
            "tested_full_value": tested["value"] if tested else None,
            "retrain_s": retrain_s}


def retrain_full_width(pool: WorkerPool, workload: Workload, trials: list[TrialRecord],
                       artifacts: Path) -> TestModel:
    """Retrain the surrogate's best configurations at full width on the pool: the best
    one's model, and the scaling figures."""
    t0 = mono_ns()
    chosen = to_retrain(trials, workload)
    configs = [{"number": t.number, "params": t.params} for t in chosen]
    results = pool.retrain(deal(configs, len(pool.workers)), artifacts)
    tested = best_full(results, workload)
    scaling = scaling_figures(workload, chosen, results, tested, (mono_ns() - t0) / 1e9)
    return TestModel(Path(tested["artifact"]) if tested else None, scaling)

"""The optuna SUT's Hydro side, in the controller: what to retrain, and the report figures.

With ``search.scaling`` > 1 the trials trained surrogates; the test phase retrains the
surrogate's best ``search.retrain`` configurations at full width (spread over the workers,
fused by shape within each), tests the one the full models rank best, and measures the
ranking fidelity (Kendall's τ) over the configurations measured both ways.

The ``hydro`` figures go into the scenario's ``sut`` info whenever the workload sets
``search.fusion`` or ``search.scaling`` (1 included, so an experiment's reference point
has them too): the fused groups, trials per second of the trials window, and the scaling
figures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pytest_basht.records import TrialRecord
from pytest_basht.sut.base import SutError
from pytest_basht.trainables.scaling import ranking_fidelity, surrogate_width
from pytest_basht.workload import Workload

PARAMETRIZATION = ("muP for Adam with the target model as base shape (Hydro): hidden "
                   "layers' learning rate × S and weight decay ÷ S; readout input × S and "
                   "readout initialization ÷ √S; hidden biases' initialization ÷ √S")


def requested(workload: Workload) -> bool:
    given = workload.given.get("search")
    return workload.search.grouped or (isinstance(given, dict)
                                       and bool({"fusion", "scaling"} & set(given)))


def check(trainable: Any, workload: Workload) -> None:
    """Fusion and scaling need a trainable that trains groups."""
    if workload.search.grouped and not all(callable(getattr(trainable, name, None))
                                           for name in ("group_key", "run_group")):
        raise SutError(f"{workload.source}: search.fusion / search.scaling need a trainable "
                       f"that trains groups of trials (a FusableTrainable: group_key and "
                       f"run_group); model {workload.model.name!r} has none")


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


def _widths(workload: Workload, trials: Sequence[TrialRecord]) -> dict[str, int] | None:
    sizes = {t.params["layer_size"] for t in trials if "layer_size" in t.params}
    if "layer_size" in workload.model.params:
        sizes.add(workload.model.params["layer_size"])
    sizes = {s for s in sizes if isinstance(s, int)}
    if not sizes:
        return None
    return {str(s): surrogate_width(s, workload.search.scaling) for s in sorted(sizes)}


def figures(workload: Workload, trials: Sequence[TrialRecord], groups: Sequence[dict[str, Any]],
            scaling: dict[str, Any] | None) -> dict[str, Any]:
    """The ``hydro`` entry of the scenario's sut info."""
    search = workload.search
    sizes = [g["size"] for g in groups]
    window_s = 0.0
    if trials:
        window_s = (max(t.end_ns for t in trials) - min(t.start_ns for t in trials)) / 1e9
    fusion = {"factor": search.fusion, "grouped": search.grouped, "groups": len(groups),
              "mean_group_size": (sum(sizes) / len(sizes)) if sizes else 1.0,
              "group_sizes": {str(k): v for k, v in sorted(Counter(sizes).items())},
              "detail": list(groups)}
    scaled: dict[str, Any] = {"factor": search.scaling}
    if search.scaling > 1:
        scaled.update(widths=_widths(workload, trials), parametrization=PARAMETRIZATION)
        scaled.update(scaling or {})
    return {"fusion": fusion, "scaling": scaled, "trials": len(trials),
            "trials_window_s": window_s,
            "trials_per_s": len(trials) / window_s if window_s > 0 else None}

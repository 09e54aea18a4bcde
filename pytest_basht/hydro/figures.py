"""Hydro's figures of a scenario: the ``hydro`` entry of its ``sut`` record.

They are there whenever the workload sets ``search.fusion`` or ``search.scaling`` (1
included, so an experiment's reference point has them too): the fused groups, trials per
second of the trials window, and the scaling figures (with ``search.scaling`` > 1, the
surrogate widths and what the test phase's retraining measured, ``hydro.retrain``). The
SUT adds them through ``pytest_basht_sut_metrics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pytest_basht.hydro.scaling import surrogate_width
from pytest_basht.records import TrialRecord
from pytest_basht.workload import Workload

PARAMETRIZATION = ("muP for Adam with the target model as base shape (Hydro): hidden "
                   "layers' learning rate × S and weight decay ÷ S; readout input × S and "
                   "readout initialization ÷ √S; hidden biases' initialization ÷ √S")


def requested(workload: Workload) -> bool:
    """Whether the workload sets ``search.fusion`` or ``search.scaling`` (1 included)."""
    given = workload.given.get("search")
    return workload.search.grouped or (isinstance(given, dict)
                                       and bool({"fusion", "scaling"} & set(given)))


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

"""How a scenario's study went, as report.md says it: the optimizer that searched (library
and version), what stopped the study, how close to its budget it ended, and how many
trials resumed a configuration (multi-fidelity continuation). A pure function of the
scenario record's ``sut.study`` and ``sut.optimizer`` blocks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_basht.report.format import fmt
from pytest_basht.spend import STOP_PREFIX

STOPPED = {"search.trials": "the trial budget (search.trials)",
           "sampler": "the sampler (its work done)",
           "optimizer": "the optimizer (nothing more to ask)"}


def stopped_text(study: Mapping[str, Any]) -> str:
    by = str(study.get("stopped_by") or "")
    if by.startswith("budget."):
        return f"the study budget ({by})"
    return STOPPED.get(by, by or "—")


def budget_text(budget: Mapping[str, Any] | None) -> str | None:
    """Each limit: the spend when the study ended against it, and when it closed (the
    finished trials' spend then, and what one more trial was forecast to take)."""
    if not budget:
        return None
    parts = []
    for key, limit in budget["limits"].items():
        spent = budget["spent"].get(key)
        text = f"{key} {fmt(spent)} of {fmt(limit)} ({fmt(budget['used_pct'].get(key))} %)"
        stopped_at = (budget.get("stopped_at") or {}).get(key)
        if budget.get("stopped_by") == key and stopped_at is not None:
            forecast = (budget.get("forecast") or {}).get(key)
            text += (f"; closed at {fmt(stopped_at)}, when one more trial was forecast to "
                     f"take {fmt(forecast)}")
        parts.append(text)
    return "; ".join(parts)


def lines(sut: Mapping[str, Any], trials: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The scenario's **Study** paragraph (none when its SUT recorded no study); ``trials``
    tell how many the budget stopped (``budget.running: stop``)."""
    study = sut.get("study")
    optimizer = sut.get("optimizer")
    if not study and not optimizer:
        return []
    facts = []
    if optimizer:
        version = optimizer.get("version") or "version unknown"
        facts.append(f"optimizer `{optimizer['name']}`: {optimizer['library']} {version}, "
                     f"scheme `{optimizer.get('scheme')}`"
                     + (f" ({optimizer['scheme_means']})" if optimizer.get("scheme_means")
                        else ""))
    if study:
        facts.append(f"stopped by {stopped_text(study)}")
        budget = budget_text(study.get("budget"))
        if budget:
            facts.append(f"budget: {budget}")
        stopped = sum(1 for t in trials if (t.get("error") or "").startswith(STOP_PREFIX))
        if stopped:
            facts.append(f"{stopped} running trials stopped when the budget closed the study")
        if "asked" in study:
            facts.append(f"{study['asked']} trials asked, {study.get('resumed', 0)} resumed "
                         f"a configuration ({study.get('epochs_resumed', 0)} epochs not "
                         "trained again)" if study.get("continuation")
                         else f"{study['asked']} trials asked; the trainable cannot resume, "
                         "so configurations asked again trained from the start")
    return ["**Study**: " + "; ".join(facts) + ".", ""]

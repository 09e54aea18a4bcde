"""One scenario's result: the workload, every span and trial, the best trial, the metrics.

Plain data: the runner fills it, the report reads it. It sits below the report so that
the report never reaches up into the runner for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest_basht.metrics as metrics_mod
from pytest_basht.records import EnergyTrace, Span, TrialRecord
from pytest_basht.workload import Workload


@dataclass
class RunResult:
    """One scenario: the workload, every span and trial, the best trial, the metrics."""

    workload: Workload
    spans: list[Span]
    trials: list[TrialRecord]
    best: TrialRecord | None
    test_score: float | None
    energy: EnergyTrace
    sut: dict[str, Any] = field(default_factory=dict)
    deployment: dict[str, Any] = field(default_factory=dict)
    status: str = "complete"
    error: str | None = None
    metrics: metrics_mod.Metrics | None = None
    #: the forecast made before it ran (``forecast.Forecast.to_dict``), when one was asked
    forecast: dict[str, Any] | None = None

    def recompute(self) -> metrics_mod.Metrics:
        self.metrics = metrics_mod.compute(self.workload, self.spans, self.trials, self.energy)
        return self.metrics

    def phase_spans(self) -> list[Span]:
        """Every span: the lifecycle's and the trials' own."""
        return [*self.spans, *(s for t in self.trials for s in t.spans)]

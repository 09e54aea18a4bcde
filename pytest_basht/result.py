"""One scenario's result: the workload, every span and trial, the best trial, the metrics.

Plain data: the runner fills it, the report reads it. It sits below the report so that
the report never reaches up into the runner for it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest_basht.metrics as metrics_mod
from pytest_basht.records import EnergyTrace, Span, TrialRecord
from pytest_basht.workload import Workload

#: A failed trial's traceback as the terminal shows it: its last lines (the innermost
#: frames and the error); the report keeps the whole bounded traceback.
TERMINAL_TRACEBACK_LINES = 12


class NoSuccessfulTrial(AssertionError):
    """A scenario without a complete trial: nothing was found, so the test fails. The
    message names the scenario, the trials' states and the first failure with the last
    frames of its traceback."""


def failure_text(workload: Workload, trials: list[TrialRecord], what: str) -> str:
    """Why a scenario has no best trial: ``what`` happened, the trials' states, and the
    first failed trial's error with the last lines of its traceback."""
    where = f" ({workload.source})" if workload.source else ""
    states = Counter(t.state for t in trials)
    tally = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none ran"
    out = [f"scenario {workload.name!r}{where}: {what}; trials: {tally}"]
    first = min((t for t in trials if t.state == "failed"),
                key=lambda t: (t.start_ns, t.number), default=None)
    if first is not None:
        out.append(f"first failed trial #{first.number} {first.params}: {first.error}")
        if first.traceback:
            lines = first.traceback.rstrip().splitlines()[-TERMINAL_TRACEBACK_LINES:]
            out += ["its traceback (last lines):", *(f"  {line}" for line in lines)]
    return "\n".join(out)


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
    #: the workload variables its trainable reads (``Trainable.uses``; None: all)
    uses: frozenset[str] | None = None

    def require_best(self) -> TrialRecord:
        """The best trial; a scenario without one fails with what went wrong
        (``NoSuccessfulTrial``: the scenario, the trials' states, the first error)."""
        __tracebackhide__ = True  # pytest: the message says it all
        if self.best is None:
            raise NoSuccessfulTrial(failure_text(self.workload, self.trials,
                                                 "no best trial"))
        return self.best

    def recompute(self) -> metrics_mod.Metrics:
        self.metrics = metrics_mod.compute(self.workload, self.spans, self.trials, self.energy,
                                           self.best.number if self.best else None)
        return self.metrics

    def phase_spans(self) -> list[Span]:
        """Every span: the lifecycle's and the trials' own."""
        return [*self.spans, *(s for t in self.trials for s in t.spans)]

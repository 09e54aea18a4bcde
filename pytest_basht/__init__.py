"""pytest-basht: benchmark hyperparameter optimization for sustainability, as pytest tests.

The public API::

    from pytest_basht import vary, phase, Workload, RunResult, Phase

    @vary("workers.count", [1, 2, 4, 8])
    def test_r_node(trial_runner):
        run = trial_runner.run()
        assert run.require_best().value >= run.workload.goal.target
"""

from pytest_basht.errors import BashtUsageError, WorkloadError
from pytest_basht.lifecycle import Phase, phase
from pytest_basht.metrics import Metrics
from pytest_basht.records import Span, TrialRecord
from pytest_basht.result import NoSuccessfulTrial, RunResult
from pytest_basht.runner import TrialRunner
from pytest_basht.scenarios import vary
from pytest_basht.trainables.base import Trainable, TrialContext, TrialPruned
from pytest_basht.workload import Workload, load

__all__ = [
    "BashtUsageError",
    "Metrics",
    "NoSuccessfulTrial",
    "Phase",
    "RunResult",
    "Span",
    "Trainable",
    "TrialContext",
    "TrialPruned",
    "TrialRecord",
    "TrialRunner",
    "Workload",
    "WorkloadError",
    "load",
    "phase",
    "vary",
]

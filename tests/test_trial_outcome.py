"""What every SUT shares about a finished trial: its state, value and error from the
objective (trial_outcome), and its place in the live progress tally (Progress.count)."""

from __future__ import annotations

import math

import pytest

from pytest_basht.records import TRACEBACK_BYTES, TRACEBACK_FRAMES, bounded_traceback
from pytest_basht.trainables.base import TrialDiverged, TrialPruned, trial_outcome


class OtherPruned(Exception):
    pass


def raising(exc: BaseException):
    def objective():
        raise exc
    return objective


def test_a_finite_value_completes():
    assert trial_outcome(lambda: 0.93, []) == ("complete", 0.93, None)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_value_that_is_not_finite_fails(value):
    state, got, error = trial_outcome(lambda: value, [])
    assert state == "failed" and error == f"objective returned {value}"
    assert not math.isfinite(got)


def test_a_pruned_trial_keeps_its_last_reported_value():
    seen: list[float] = []

    def objective():
        seen.extend([0.5, 0.7])  # reported while it ran
        raise TrialPruned("pruned after epoch 1")

    assert trial_outcome(objective, seen) == ("pruned", 0.7, None)
    state, value, error = trial_outcome(raising(TrialPruned()), [])
    assert state == "pruned" and math.isnan(value) and error is None


def test_other_pruned_exceptions_count_only_when_named():
    named = trial_outcome(raising(OtherPruned()), [0.4], (TrialPruned, OtherPruned))
    assert named == ("pruned", 0.4, None)
    state, value, error = trial_outcome(raising(OtherPruned("x")), [0.4])
    assert (state, error) == ("failed", "OtherPruned: x") and math.isnan(value)


def test_failures_name_their_reason():
    state, value, error = trial_outcome(raising(TrialDiverged("training loss became nan")), [])
    assert (state, error) == ("failed", "diverged: training loss became nan")
    assert math.isnan(value)
    state, value, error = trial_outcome(raising(ValueError("boom")), [0.1])
    assert (state, error) == ("failed", "ValueError: boom") and math.isnan(value)


def test_the_progress_tally_counts_failures_and_keeps_the_best_complete_value():
    from pytest_basht.records import TrialRecord
    from pytest_basht.sut.base import Progress
    from pytest_basht.workload import GoalSpec

    def record(n: int, state: str, value: float | None) -> TrialRecord:
        return TrialRecord(number=n, params={}, state=state, value=value, worker=0,
                           start_ns=0, end_ns=1)

    for direction, best in (("maximize", 0.9), ("minimize", 0.2)):
        p = Progress()
        for i, (state, value) in enumerate([("complete", 0.5), ("failed", None),
                                            ("complete", 0.9), ("pruned", 0.95),
                                            ("complete", 0.2)]):
            p.count(record(i, state, value), GoalSpec(direction=direction))
        assert (p.done, p.failed, p.best) == (5, 1, best)


def test_a_raised_error_keeps_its_traceback_bounded():
    def deep(n: int) -> float:
        if n == 0:
            raise KeyError("hidden")
        return deep(n - 1)

    outcome = trial_outcome(lambda: deep(40), [])
    assert outcome == ("failed", outcome.value, "KeyError: 'hidden'")
    assert outcome.traceback.startswith("Traceback (most recent call last):")
    assert outcome.traceback.rstrip().endswith("KeyError: 'hidden'")
    # the innermost TRACEBACK_FRAMES frames only: the outer ones (the lambda) are cut
    assert "in <lambda>" not in outcome.traceback and "in deep" in outcome.traceback
    assert f"repeated {TRACEBACK_FRAMES - 4} more times" in outcome.traceback
    assert trial_outcome(lambda: math.nan, []).traceback is None
    assert trial_outcome(raising(TrialPruned()), [0.2]).traceback is None


def test_a_huge_traceback_keeps_its_last_bytes():
    try:
        raise ValueError("x" * 10_000 + " the end")
    except ValueError as exc:
        text = bounded_traceback(exc)
    assert len(text.encode()) <= TRACEBACK_BYTES and text.endswith("the end\n")

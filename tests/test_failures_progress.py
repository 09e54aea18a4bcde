"""Failures that speak and the progress line, end to end in one sub-pytest: a scenario
whose trials all fail fails its test with the trainable's error and traceback; one where
most trials fail says so in the summary; while trials run, a progress line every
``--basht-progress-every`` seconds in a log (no TTY), and none under ``-qq``; the end of
the run says what it writes."""

from __future__ import annotations

import re

import pytest
from conftest import only_report
from fake_trainable import CONFTEST, workload

SCENARIOS = """
import pytest

@pytest.mark.basht(overrides={"search.space.x": [-1], "search.space.sleep": [0.01]})
def test_all_fail(trial_runner):
    trial_runner.run()

@pytest.mark.basht(overrides={"search.space.x": [-1, -2, 3], "workers.count": 1})
def test_most_fail(trial_runner):
    run = trial_runner.run()
    assert run.require_best().params["x"] == 3
"""


@pytest.mark.slow
def test_failures_speak_and_progress_shows(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([3], extra="search: {space: {x: [3], sleep: [1.0]}}\n"))
    pytester.makepyfile(test_scenarios=SCENARIOS)
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                           "--basht-progress-every", "1", "-p", "no:xdist")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # the all-failed scenario: its test fails with the trainable's error and traceback
    assert "NoSuccessfulTrial: scenario 'fake'" in out
    assert "no trial completed; trials: " in out and " failed\n" in out
    # two workers share the one grid point, and either may start first
    assert re.search(r"first failed trial #[01] \{'x': -1, 'sleep': 0\.01\}: "
                     r"RuntimeError: boom at x=-1\n", out), out
    assert 'raise RuntimeError("boom at x=-1")' in out and "in run_trial" in out
    # the mostly failed one passes, and the summary says most of its trials failed
    assert "FAILED TRIALS: test_scenarios.py::test_most_fail: 2 of 3 trials failed; " \
           "first, #" in out
    # progress lines in the log, and the report's steps
    lines = [line for line in out.splitlines() if line.startswith("[basht] trials ")]
    assert lines, out
    assert any("/3 · running" in line and "pruned 0" in line and " left" in line
               for line in lines)
    assert "[basht] writing report.json …" in out and "[basht] writing report.md …" in out
    report = only_report(pytester.path)
    first, most = report["scenarios"]
    assert (first["status"], first["outcome"]) == ("error", "failed")
    failed = first["trials"][0]  # Optuna may hand the failed grid point out again
    assert failed["waste"] == ["failed"] and failed["traceback"].startswith("Traceback")
    assert 'raise RuntimeError("boom at x=-1")' in failed["traceback"]
    assert most["status"] == "complete" and most["outcome"] == "passed"
    best = next(t for t in most["trials"] if t["number"] == most["best_trial"])
    assert best["waste"] == [] and best["params"]["x"] == 3

    quiet = pytester.runpytest_subprocess("--basht-workload", "w.yaml", "-qq",
                                          "--basht-progress-every", "0.2", "-p", "no:xdist",
                                          "-k", "most_fail")
    assert quiet.ret == 0  # -qq prints no outcome line to parse
    assert "[basht]" not in quiet.stdout.str() and "basht: the report" not in quiet.stdout.str()

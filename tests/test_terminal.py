"""The terminal's text: the summary after a run (lines and their colours) and the live line."""

from __future__ import annotations

from test_assemble import facts, record

from pytest_basht.report import assemble, terminal
from pytest_basht.sut.base import Progress


def test_without_a_report_the_summary_says_why_in_red():
    lines = terminal.summary("could not write the report", None, [("history: x", False)])
    assert lines == [terminal.Line("could not write the report", red=True),
                     terminal.Line("history: x")]
    assert lines[0].markup() == {"red": True} and lines[1].markup() == {}


def test_the_summary_in_order():
    records = [record("t::a", 0, 10, variables={"x": 1}),
               record("t::b", 5, 15, pid=2, variables={"x": 2})]
    report = assemble.build(records, [],
                            facts(meters=[{"source": "estimate:test", "measured": False,
                                           "selection": "no counters",
                                           "warnings": ["RAPL: permission denied"]}]),
                            lost=[{"test_id": "t::c", "worker": "gw1", "reason": "killed"}])
    lines = terminal.summary("reports/run-1", report, [("basht gate: FAIL — ...", True)])
    texts = [line.text for line in lines]
    assert texts[0].splitlines()[0].split()[:3] == ["scenario", "outcome", "JCT"]
    assert texts[1] == "energy: estimate:test (ESTIMATE, not a measurement); no counters"
    assert lines[2] == terminal.Line("energy warning: RAPL: permission denied", yellow=True)
    assert texts[3].startswith("concurrency: up to 2 scenarios shared the machine "
                               "(2 processes); energy per process")
    assert lines[4] == terminal.Line("LOST: t::c (xdist worker gw1 crashed: killed)", red=True)
    assert texts[5] == "E (x): 2 run, 0 skipped"
    assert texts[6] == ("report: reports/run-1/report.json, reports/run-1/report.md, "
                        "reports/run-1/report.html")
    assert lines[7] == terminal.Line("basht gate: FAIL — ...", red=True, bold=True)
    assert len(lines) == 8


def test_progress_line():
    progress = Progress(expected=16)
    assert terminal.progress_line(progress, 12.34, "rapl") == (
        "[basht] trials 0/16 · running 0 · failed 0 · pruned 0 · best — · energy 12.3 J "
        "(rapl) · 0s elapsed, ? left")
    progress = Progress(done=4, running=2, expected=16, failed=1, best=0.81234, pruned=1)
    assert terminal.progress_line(progress, 50.0, "rapl", 60.0) == (
        "[basht] trials 4/16 · running 2 · failed 1 · pruned 1 · best 0.8123 · energy "
        "50.0 J (rapl) · 1m 00s elapsed, ~3m 00s left")
    assert terminal.duration(7800) == "2h 10m"


def test_more_than_half_the_trials_failed_says_so():
    report = assemble.build([record("t::a", 0, 10), record("t::b", 5, 15, pid=2)], [],
                            facts())
    half, most = report["scenarios"]
    half["trials"] = [dict(half["trials"][0], number=i, state=s, error="E: x")
                      for i, s in enumerate(["failed", "complete"])]
    most["trials"] = [dict(most["trials"][0], number=i, state="failed", start_ns=10 - i,
                           error=f"KeyError: 'hidden{i}'\nmore") for i in range(3)]
    most["trials"].append(dict(most["trials"][0], number=3, state="complete", error=None))
    lines = terminal.failure_lines(report)
    assert lines == [terminal.Line("FAILED TRIALS: t::b: 3 of 4 trials failed; first, #2: "
                                   "KeyError: 'hidden2'", red=True, bold=True)]
    assert lines[0] in terminal.summary("reports/run-1", report)

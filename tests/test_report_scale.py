"""The report of a large run: every record kept, what a person reads bounded.

A synthetic 5,000-trial scenario (hand-built records, nothing trained) goes through the
whole report — assembled, report.json, trials.csv, report.md, the plot — so that a step
whose cost grows faster than the trials cannot come back unnoticed (the test would take
minutes); and the pieces that keep it linear: occupancy bins, the plot's window, the
JSON layout, the table of trials.
"""

from __future__ import annotations

import csv
import json
import math
import re

import matplotlib.image
import pytest
from conftest import flat_trace, span
from test_report import make_report

from pytest_basht import workload as wl
from pytest_basht.options import BashtOptions
from pytest_basht.records import Span, TrialRecord
from pytest_basht.report import files, markdown, plots, trials_csv
from pytest_basht.report import json as report_json
from pytest_basht.result import RunResult
from pytest_basht.session import BashtSession

S = 1_000_000_000
TRIALS, WORKERS = 5_000, 8


def big_result() -> RunResult:
    """5,000 trials on 8 workers, back to back, each a train and a validate span; every
    50th fails, every 7th is pruned, and trial 4321 is the best."""
    workload = wl.from_mapping({
        "search": {"sampler": "random", "trials": TRIALS,
                   "space": {"x": {"low": 0.0, "high": 1.0}}},
        "goal": {"metric": "loss", "direction": "minimize"},
        "workers": {"count": WORKERS}}, "big.yaml")
    trials = []
    for n in range(TRIALS):
        worker, slot = n % WORKERS, n // WORKERS
        start = 10 * S + slot * S + worker * S // 100
        mid, end = start + S * 6 // 10, start + S * 9 // 10
        state = "failed" if n % 50 == 0 else "pruned" if n % 7 == 0 else "complete"
        value = None if state == "failed" else 0.001 if n == 4321 else 1.0 + (n % 97) / 97
        spans = [Span("trial.train", start, mid, cpu_s=0.6, worker=worker, trial=n, epoch=0,
                      energy_j=6.0),
                 Span("trial.validate", mid, end, cpu_s=0.3, worker=worker, trial=n, epoch=0,
                      energy_j=3.0)]
        trials.append(TrialRecord(n, {"x": n / TRIALS}, state, value, worker, start, end,
                                  [] if value is None else [value], spans, 0.9, 9.0,
                                  "RuntimeError: boom" if state == "failed" else None))
    last = trials[-1].end_ns / S
    spans = [span("deploy", 0, 5, energy=50), span("setup", 5, 10, energy=50),
             span("result_collection", last, last + 1, energy=10),
             span("test", last + 1, last + 2, energy=10),
             span("metric_collection", last + 2, last + 3, energy=10),
             span("undeploy", last + 3, last + 8, energy=50)]
    result = RunResult(workload, spans, trials, trials[4321], 0.002,
                       flat_trace(80, 0, last + 3, idle_w=20, slots=WORKERS),
                       deployment={"id": "dep1", "reused": False, "sut": "simulated"})
    result.recompute()
    return result


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("big")
    session = BashtSession(BashtOptions(None, tmp / "reports", None, None, None, None), tmp)
    record = report_json.scenario_record("t.py::test_big", big_result())
    report = session.build_report([record])
    return report, files.write_report(report, session.options.report_dir)


def trial_rows(md: str) -> list[str]:
    """The table rows of the scenario's trials section (header rows left out)."""
    section = md[md.index("**Trials**"):]
    section = section[:re.search(r"\n(\*\*|## )", section).start()]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [r for r in rows if not r.startswith("|--") and not r.startswith("| #")]


def test_a_5000_trial_report_keeps_every_record_and_bounds_what_is_read(written):
    report, run_dir = written
    kept = report_json.load(run_dir)
    assert len(kept["scenarios"][0]["trials"]) == TRIALS
    assert kept["scenarios"][0]["trials"][4321]["spans"][1]["energy_j"] == 3.0

    with open(run_dir / "trials.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == TRIALS
    assert table[4321]["value"] == "0.001" and table[4321]["param.x"] == str(4321 / TRIALS)
    assert sum(r["state"] == "failed" for r in table) == TRIALS // 50

    md = (run_dir / "report.md").read_text()
    rows = trial_rows(md)
    assert len(rows) == 3 * markdown.TOP  # the best, the slowest, the first failed
    assert rows[0].startswith("| 4321 ")  # best first (minimize)
    assert f"`{trials_csv.NAME}`" in md and "5,000 trials" in md
    assert len(md.splitlines()) < 400

    (png,) = report["scenarios"][0]["plots"]
    image = matplotlib.image.imread(run_dir / png)
    assert image.shape[0] < 1500 and image.shape[1] < 1600  # the size of 8 workers, not 5,000


def test_report_html_and_the_trials_picture_stay_bounded(written):
    """report.html holds report.md's bounded tables and two pictures, not 5,000 rows; the
    trials picture is one scatter per state."""
    report, run_dir = written
    page = (run_dir / "report.html").read_text()
    assert page.count("<tr title=") < 200 and len(page) < 2_000_000
    (sc,) = report["scenarios"]
    image = matplotlib.image.imread(run_dir / sc["trial_plot"])
    assert image.shape[0] < 1000 and image.shape[1] < 1200
    assert page.count('src="data:image/png;base64,') == 2  # the timeline and the trials


def test_the_plot_of_many_trials_per_worker_is_a_summary(written, tmp_path):
    report, _ = written
    scenario = report["scenarios"][0]
    assert plots.timeline_png(scenario, tmp_path / "big.png") == "summary"
    small = {**scenario, "trials": scenario["trials"][:2 * WORKERS]}
    assert plots.timeline_png(small, tmp_path / "small.png") == "detail"


def test_the_plot_covers_the_scenario_up_to_its_undeploy(written):
    report, _ = written
    scenario = report["scenarios"][0]
    ts = scenario["energy"]["timeline"]["t_ns"]
    undeploy = next(s for s in scenario["spans"] if s["phase"] == "undeploy")
    assert plots.scenario_window(scenario, ts) == (ts[0], undeploy["end_ns"])
    later = {**scenario, "spans": [*scenario["spans"][:-1],
                                   {**undeploy, "start_ns": ts[-1] + 600 * S,
                                    "end_ns": ts[-1] + 601 * S}]}
    assert plots.scenario_window(later, ts) == (ts[0], ts[-1])  # a reused deployment's


def test_occupancy_is_the_share_of_each_bin_spent_on_trials():
    got = plots.occupancy([(0.0, 1.5), (2.0, 2.5), (3.0, 4.0)], [0.0, 1.0, 2.0, 3.0, 4.0])
    assert list(got) == pytest.approx([1.0, 0.5, 0.5, 1.0])
    fused = plots.occupancy([(0.0, 2.0), (1.0, 2.0)], [0.0, 1.0, 2.0])
    assert list(fused) == pytest.approx([1.0, 2.0])
    assert list(plots.occupancy([], [0.0, 1.0])) == [0.0]


def test_small_scenarios_list_every_trial(tmp_path):
    _, report = make_report(tmp_path)
    md = markdown.render(report)
    assert len(trial_rows(md)) == len(report["scenarios"][0]["trials"])


def test_trials_csv_has_a_row_per_trial_of_every_scenario(tmp_path):
    _, report = make_report(tmp_path)
    other = json.loads(json.dumps(report["scenarios"][0]))
    other["test_id"] = "t.py::test_y"
    for t in other["trials"]:
        t["params"] = {"y": 1}
    report["scenarios"].append(other)
    trials_csv.write(report, tmp_path / "trials.csv")
    with open(tmp_path / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * len(other["trials"])
    assert rows[0]["param.x"] == "0" and rows[0]["param.y"] == ""
    assert rows[-1]["test_id"] == "t.py::test_y" and rows[-1]["param.y"] == "1"
    failed = next(r for r in rows if r["state"] == "failed")
    assert failed["value"] == "" and failed["error"] == "RuntimeError: boom"


def test_report_json_lays_out_one_line_per_trial_and_nulls_what_a_hook_left_nan(tmp_path):
    _, report = make_report(tmp_path)
    report["scenarios"][0]["extra"] = {"from_a_hook": math.nan}
    text = report_json.dumps(report)
    data = json.loads(text)
    assert data["scenarios"][0]["extra"] == {"from_a_hook": None}
    assert data["scenarios"][0]["trials"] == json.loads(json.dumps(
        report["scenarios"][0]["trials"]))
    lines = text.splitlines()
    assert lines[0] == "{" and lines[1] == ' "schema_version": 1,'
    assert sum('"number": ' in line for line in lines) == len(data["scenarios"][0]["trials"])

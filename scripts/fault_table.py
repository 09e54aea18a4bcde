"""Run the fault suite and write its table into docs/reliability.md.

Each fault is injected by real tests (real processes, signals, servers: see each row's test
modules). The suite runs ``--runs`` times; a row says how often its tests ran, how often
the run survived (the test passed: the fault was handled and everything checked held), and
how many finished measurements the reports lost — from the counts the tests log through
``$BASHT_FAULT_LOG`` (``fault_kit.log_measurements``): measurements finished before the
fault, and those the report kept.

    python scripts/fault_table.py --runs 3            # run, print, rewrite the doc's table
    python scripts/fault_table.py --runs 1 --no-write -k interrupt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"
T = "tests/"


@dataclass
class Fault:
    name: str
    how: str
    tests: list[str]
    runs: int = 0
    survived: int = 0
    finished: int = 0
    lost: int = 0
    logged: bool = False
    failures: list[str] = field(default_factory=list)


FAULTS = [
    Fault("1 a trial raises, returns NaN, or hangs past trial_timeout_s",
          "fake trainable raises / returns NaN / sleeps, at once and after 2 epochs",
          [f"{T}test_plugin.py::test_failing_nan_and_timeout_trials_are_recorded",
           f"{T}test_fault_trials.py::test_trials_failing_mid_training_keep_their_epochs_and_"
           "the_run_completes"]),
    Fault("1 a trial's training loss becomes NaN", "mnist-ff at learning rate 1e20",
          [f"{T}test_fault_trials.py::test_a_nan_training_loss_fails_the_trial_and_the_run_"
           "completes"]),
    Fault("2 a worker process is SIGKILLed mid-trial",
          "kill -9 of the optuna worker while the other worker trains",
          [f"{T}test_fault_workers.py::test_a_worker_killed_mid_trial_fails_only_its_trial"]),
    Fault("2 a worker passes its memory cap", "a trial allocates 640 MB under a 400 MB cap",
          [f"{T}test_fault_workers.py::test_a_worker_past_its_memory_cap_fails_only_its_trial",
           f"{T}test_plugin.py::test_memory_watchdog_fails_the_trial_and_refills_the_slot"]),
    Fault("3 Ctrl-C mid-run", "SIGINT to pytest's process group",
          [f"{T}test_fault_interrupt.py::test_an_interrupted_run_keeps_every_finished_trial"
           "[sigint-group]"]),
    Fault("3 Ctrl-C twice", "SIGINT to the group, again 50 ms later",
          [f"{T}test_fault_interrupt.py::test_an_interrupted_run_keeps_every_finished_trial"
           "[sigint-twice]"]),
    Fault("3 SIGTERM mid-run", "SIGTERM to pytest; to its process group",
          [f"{T}test_fault_interrupt.py::test_an_interrupted_run_keeps_every_finished_trial"
           "[sigterm]",
           f"{T}test_fault_interrupt.py::test_an_interrupted_run_keeps_every_finished_trial"
           "[sigterm-group]"]),
    Fault("4 an xdist worker crashes", "kill -9 of the xdist worker mid-trial; a scenario "
          "that kills its own worker",
          [f"{T}test_fault_xdist.py::test_an_xdist_worker_killed_mid_trial_loses_only_its_"
           "scenario",
           f"{T}test_xdist.py::test_a_crashed_worker_loses_only_its_scenario_in_flight"]),
    Fault("5 RAPL becomes unreadable", "fake powercap tree: energy_uj files removed mid-run; "
          "garbled for 0.3 s",
          [f"{T}test_fault_meter.py"]),
    Fault("5 Prometheus goes away", "the real Prometheus server stopped mid-run",
          [f"{T}test_fault_prometheus.py"]),
    Fault("6 the report directory is not writable", "a file where it should be: before "
          "the run, and made so during it",
          [f"{T}test_fault_report.py::test_an_unwritable_report_directory_is_a_usage_error_"
           "before_any_test",
           f"{T}test_fault_report.py::test_a_report_directory_that_fails_during_the_run_is_"
           "rescued"]),
    Fault("6 a previous report or the history is corrupt", "a cut report.json, `latest` a "
          "directory, a torn SQLite file",
          [f"{T}test_fault_report.py::test_a_corrupt_previous_report_and_latest_directory_"
           "give_a_fresh_report",
           f"{T}test_fault_report.py::test_a_damaged_history_store_is_set_aside_for_a_fresh_"
           "one",
           f"{T}test_fault_report.py::test_a_report_part_that_fails_leaves_the_raw_records"]),
    Fault("6 a process is killed while writing a report", "kill -9 at a random moment of "
          "a slow write, 25 times a run",
          [f"{T}test_fault_report.py::test_a_process_killed_mid_write_leaves_a_whole_report"]),
    Fault("7 the baseline is missing, corrupt, older, or has no value to check",
          "--basht-compare / basht compare on such files",
          [f"{T}test_fault_gate.py",
           f"{T}test_gate.py::test_a_bad_baseline_or_gate_option_is_a_usage_error"]),
    Fault("bad input: workload files", "hypothesis: random documents, mutated shipped "
          "workloads, tags, bombs",
          [f"{T}test_fuzz_workload.py"]),
    Fault("bad input: --basht-* options", "a malformed value for every option",
          [f"{T}test_plugin.py::test_malformed_options_are_usage_errors",
           f"{T}test_plugin.py::test_every_option_has_a_malformed_value_case",
           f"{T}test_plugin.py::test_malformed_ini_value_names_the_key"]),
]


def nodeid(case: ET.Element) -> str:
    module = case.get("classname", "").replace(".", "/")
    return f"{module}.py::{case.get('name')}"


def owner(test: str) -> Fault | None:
    for fault in FAULTS:
        for prefix in fault.tests:
            if test == prefix or test.startswith(prefix + "::") or (
                    test.startswith(prefix + "[")) or (prefix.endswith(".py")
                                                       and test.startswith(prefix)):
                return fault
    return None


def run_once(tests: list[str], log: Path, junit: Path, keyword: str | None) -> None:
    env = {**os.environ, "BASHT_FAULT_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [
               os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:randomly",
           f"--junitxml={junit}", *tests]
    if keyword:
        cmd += ["-k", keyword]
    subprocess.run(cmd, cwd=ROOT, env=env, check=False)


def collect(junit: Path, log: Path) -> None:
    for case in ET.parse(junit).iter("testcase"):
        test = nodeid(case)
        fault = owner(test)
        if fault is None:
            continue
        if case.find("skipped") is not None:
            continue
        fault.runs += 1
        if case.find("failure") is None and case.find("error") is None:
            fault.survived += 1
        else:
            fault.failures.append(test)
    if log.exists():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            fault = owner(entry["test"])
            if fault is not None:
                fault.logged = True
                fault.finished += entry["finished"]
                fault.lost += entry["finished"] - entry["kept"]


def table() -> str:
    rows = [[f.name, f.how, f.runs, f.survived,
             f.finished if f.logged else "—", f.lost if f.logged else "—"]
            for f in FAULTS if f.runs]
    return tabulate(rows, headers=["fault", "injected by", "runs", "survived",
                                   "measurements finished", "lost"], tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="times to run the suite")
    parser.add_argument("-k", dest="keyword", help="only tests matching (pytest -k)")
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    args = parser.parse_args(argv)
    tests = sorted({t.split("::")[0] for f in FAULTS for t in f.tests})
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            log, junit = Path(tmp, f"log-{i}.jsonl"), Path(tmp, f"junit-{i}.xml")
            run_once(tests, log, junit, args.keyword)
            collect(junit, log)
    minutes = (time.monotonic() - started) / 60
    text = table()
    stamp = (f"`python scripts/fault_table.py --runs {args.runs}`, "
             f"{datetime.now(timezone.utc):%Y-%m-%d}, {platform.node()} "
             f"({os.cpu_count()} CPUs), {minutes:.0f} min")
    print(text)
    print(stamp)
    for fault in FAULTS:
        for test in fault.failures:
            print(f"FAILED ({fault.name}): {test}")
    if not args.no_write and not args.keyword:
        doc = DOC.read_text()
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        DOC.write_text(f"{head}{START}\n{text}\n\nFrom {stamp}.\n{END}{tail}")
    return 0 if all(f.survived == f.runs and f.lost == 0 for f in FAULTS) else 1


if __name__ == "__main__":
    sys.exit(main())

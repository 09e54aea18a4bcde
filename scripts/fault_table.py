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
    # issue 20 (reliability II): its eight classes
    Fault("II.1 an input deleted or corrupted mid-run; a scenario's end fails",
          "the carbon CSV deleted, overwritten with NULs and a 200 KB field; a meter whose "
          "peak power raises after the trials",
          [f"{T}test_fault_inputs.py::test_an_input_lost_mid_run_or_a_failure_at_the_end_"
           "costs_no_record"]),
    Fault("II.2 the history path is not a store of ours, or one damaged inside",
          "hypothesis: any bytes, a report.json, another program's SQLite, a directory, a "
          "FIFO, a parent that is a file; data pages overwritten",
          [f"{T}test_history_store.py"]),
    Fault("II.3 a secret in a URL, in any form", "hypothesis: userinfo, query and libpq "
          "keyword secrets, environment values; storage URLs, worker logs, a whole run; "
          "live metrics on 0.0.0.0",
          [f"{T}test_urls.py",
           f"{T}test_live_export.py::test_serving_past_this_machine_warns_that_there_is_no_"
           "authentication"]),
    Fault("II.4 a file that is not a file", "hypothesis: every reader on /dev/zero, "
          "/dev/urandom, FIFOs, sockets, directories, symlinks to them; oversized files",
          [f"{T}test_reading.py"]),
    Fault("II.5 input that used to end in a traceback", "a 5,001-digit integer; a CSV field "
          "over 128 KiB; basht worker --storage unknown/unparsable; an xdist worker's "
          "live-metrics port taken, before and after the check",
          [f"{T}test_fuzz_workload.py::test_an_integer_past_pythons_digit_limit_is_a_clear_"
           "error",
           f"{T}test_carbon.py::test_a_series_that_is_not_csv_is_a_clear_error",
           f"{T}test_simulation_table.py::test_malformed_tables_are_clear_errors",
           f"{T}test_urls.py::test_basht_worker_with_a_bad_storage_url_is_a_clear_error",
           f"{T}test_live_export.py::test_an_xdist_workers_busy_port_stops_the_run_before_"
           "it_starts",
           f"{T}test_live_export.py::test_a_port_taken_after_the_check_fails_the_run_and_"
           "keeps_every_test"]),
    Fault("II.6 accepted at load, crashing mid-run", "hypothesis: every integer key at "
          "its boundaries, keys given twice, sampler options of any type; seeds ≥ 2³²; "
          "workers and memory past the machine; empty files",
          [f"{T}test_fuzz_workload.py::test_integers_at_every_boundary_are_refused_at_load_"
           "or_run",
           f"{T}test_fuzz_workload.py::test_the_largest_seed_runs_and_the_next_is_refused",
           f"{T}test_fuzz_workload.py::test_workers_far_beyond_the_machine_are_refused_for_a_"
           "local_sut",
           f"{T}test_fuzz_workload.py::test_a_key_given_twice_is_an_error_at_any_depth",
           f"{T}test_fuzz_workload.py::test_sampler_options_are_checked_against_the_"
           "samplers_signature",
           f"{T}test_fuzz_workload.py::test_sampler_options_of_the_wrong_type_are_refused",
           f"{T}test_workload.py::test_an_empty_workload_file_is_refused",
           f"{T}test_limits.py::test_memory_record"]),
    Fault("II.7 the report and work directories", "a report dir that cannot be written "
          "(probed), `latest` after a failed write and a rescue; a SIGKILLed run's work "
          "directory, dead and live ones",
          [f"{T}test_fault_inputs.py::test_a_run_directory_that_fails_leaves_latest_where_it_"
           "was",
           f"{T}test_fault_inputs.py::test_after_a_rescue_latest_points_at_the_written_report",
           f"{T}test_fault_inputs.py::test_the_report_directory_is_checked_by_writing_in_it",
           f"{T}test_fault_inputs.py::test_only_provably_dead_work_directories_are_swept",
           f"{T}test_fault_inputs.py::test_a_joined_directory_lives_while_any_process_holds_"
           "it",
           f"{T}test_fault_inputs.py::test_a_sigkilled_runs_work_directory_is_cleaned_by_the_"
           "next_run",
           f"{T}test_fault_inputs.py::test_an_xdist_runs_directory_is_held_by_its_controller_"
           "from_the_start"]),
    Fault("II.8 energy that depends on -n", "a short and a long scenario serially and "
          "under -n 3; leases of overlapping scenarios",
          [f"{T}test_xdist.py::test_idle_draw_is_shared_by_the_scenarios_running_not_by_the_"
           "workers",
           f"{T}test_energy.py::test_estimate_idle_draw_is_shared_by_the_scenarios_running_"
           "at_each_moment"]),
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
    """The fault whose most specific entry (a test before its module) covers ``test``."""
    matches = [(len(prefix), fault) for fault in FAULTS for prefix in fault.tests
               if test == prefix or test.startswith(prefix + "::") or (
                   test.startswith(prefix + "[")) or (prefix.endswith(".py")
                                                      and test.startswith(prefix))]
    return max(matches, key=lambda m: m[0])[1] if matches else None


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
    # each entry as given (a module, a test, a case): a module's other tests do not run
    tests = sorted({t for f in FAULTS for t in f.tests})
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

"""The ``basht`` command: validate workloads, regenerate reports, export trial tables,
list the run history and compare two runs with the same verdict as the pytest gate (exit 1
on a regression)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from tabulate import tabulate

from pytest_basht import machine
from pytest_basht import workload as wl
from pytest_basht.errors import BashtUsageError
from pytest_basht.registry import Registry
from pytest_basht.report import compare as compare_mod
from pytest_basht.report import json as report_json
from pytest_basht.report import markdown

if TYPE_CHECKING:
    from pytest_basht.report.history import History


def _validate(args: argparse.Namespace) -> int:
    registry = Registry.default()
    for path in args.workloads:
        workload = wl.load(path)
        registry.check(workload)
        size = workload.search.size
        print(f"{path}: ok ({workload.name}; |Φ| = {size if size is not None else 'continuous'}"
              f", {workload.trial_budget} trials, {workload.workers.count} workers)")
    return 0


def _report(args: argparse.Namespace) -> int:
    data = report_json.load(args.run)
    run_dir = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    out = run_dir / "report.md"
    report_json.write_atomic(out, markdown.render(data))
    print(f"wrote {out}")
    return 0


def _table_export(args: argparse.Namespace) -> int:
    from pytest_basht.simulation.table import Export, TableError, TrialTable, card_path

    export = Export()
    for name in args.inputs:
        path = Path(name)
        if path.suffix.lower() == ".csv":
            export.add_table(TrialTable.read(path))
            continue
        report_path = path / "report.json" if path.is_dir() else path
        report = report_json.load(report_path)
        export.add_report(report, str(report_path),
                          hashlib.sha256(report_path.read_bytes()).hexdigest())
    out = Path(args.output)
    if out.suffix.lower() != ".csv":
        raise TableError(f"{out}: a trial table is written as CSV (name it *.csv)")
    text = export.csv_text()
    card = export.card(datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "basht table export " + " ".join(args.inputs))
    report_json.write_atomic(out, text)
    report_json.write_atomic(card_path(out), json.dumps(card, indent=1) + "\n")
    for note in export.notes:
        print(note)
    table = TrialTable.read(out)
    info = table.describe()
    print(f"wrote {out} and {card_path(out)}: {info['rows']} rows, {info['recordings']} trials, "
          f"{info['configurations']} configurations, seeds {info['seeds']}, "
          f"up to {info['epochs']} epochs, from {len(export.sources)} source(s)")
    return 0


def _table_info(args: argparse.Namespace) -> int:
    from pytest_basht.simulation.table import TrialTable

    for name in args.tables:
        table = TrialTable.read(name)
        print(json.dumps(table.describe(), indent=1))
    return 0


def _store(args: argparse.Namespace) -> History | None:
    from pytest_basht.report import history  # SQLAlchemy loads only for these commands

    if history.is_off(args.history):
        return None
    return history.History(history.store_url(args.history, Path.cwd()))


def _compare(args: argparse.Namespace) -> int:
    from pytest_basht.report import history

    try:
        thresholds = compare_mod.parse_fail_on(args.fail_on) if args.fail_on else []
    except compare_mod.ThresholdError as exc:
        raise BashtUsageError(f"--fail-on: expected {exc}, got {args.fail_on!r}") from None
    paths = all(history.looks_like_path(ref) for ref in (args.old, args.new))
    store = None if paths else _store(args)
    try:
        old = history.resolve(args.old, store)
        new = history.resolve(args.new, store)
    finally:
        if store is not None:
            store.close()
    result = compare_mod.compare(old.report, new.report, thresholds,
                                 baseline_label=old.label, current_label=new.label,
                                 any_machine=args.any_machine)
    comparison = report_json.clean(result.to_dict())
    headers, rows = compare_mod.table(comparison)
    print(f"old: {old.label}\nnew: {new.label}")
    if rows:
        print(tabulate(rows, headers=headers, disable_numparse=True))
    for line in compare_mod.gate_lines(comparison):
        print(line)
    return 1 if result.verdict == "fail" else 0


def _history(args: argparse.Namespace) -> int:
    store = _store(args)
    if store is None:
        raise BashtUsageError("--history off: there is no history to list")
    with store:
        here = machine.fingerprint("")
        runs = store.runs(name=args.name, limit=args.limit,
                          machine=here if args.this_machine else None,
                          keys=compare_mod.HARDWARE_KEYS)
        print(f"history: {store.shown} ({store.count()} runs; this machine: "
              f"{here['cpu_model']}, {here['cores']} cores, {here['memory_gb']} GB)")
    rows = [[r.run_id, r.name or "", r.created_utc, r.machine_id, r.meter_source,
             (r.git_commit or "")[:12], r.status, str(r.n_scenarios),
             markdown.fmt(r.energy_j)] for r in runs]
    if rows:
        print(tabulate(rows, headers=["run", "name", "created (UTC)", "machine", "meter",
                                      "commit", "status", "scenarios", "energy J"],
                       disable_numparse=True))
    else:
        print("no runs saved" + (" of this machine" if args.this_machine else ""))
    return 0


def _save(args: argparse.Namespace) -> int:
    data = report_json.load(args.run)
    store = _store(args)
    if store is None:
        raise BashtUsageError("--history off: there is nowhere to save the run")
    path = Path(args.run)
    with store:
        entry = store.save(data, name=args.name,
                           path=path / "report.json" if path.is_dir() else path)
        print(f"saved run {entry.run_id}" + (f" as '{entry.name}'" if entry.name else "")
              + f" in {store.shown}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from pytest_basht.sut import remote

    cores = [int(c) for c in args.cores.split(",") if c.strip()] if args.cores else []
    return remote.main(args.storage, args.study, args.plugin, args.wait, args.threads, cores,
                       args.meter, args.meter_selector)


def _cores(raw: str) -> str:
    if not all(c.strip().isdigit() for c in raw.split(",")):
        raise argparse.ArgumentTypeError(f"expected core numbers like 0,1, got {raw!r}")
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="basht", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check workload files")
    p.add_argument("workloads", nargs="+")
    p.set_defaults(func=_validate)
    p = sub.add_parser("report", help="regenerate report.md from a run's report.json")
    p.add_argument("run", help="a run directory or its report.json")
    p.set_defaults(func=_report)
    p = sub.add_parser("table", help="trial tables for the simulated SUT")
    tsub = p.add_subparsers(dest="table_command", required=True)
    t = tsub.add_parser("export", help="write the trials of runs (and tables) as one table")
    t.add_argument("inputs", nargs="+", metavar="RUN",
                   help="a run directory, its report.json, or a table .csv to merge")
    t.add_argument("-o", "--output", required=True, metavar="TABLE",
                   help="the table to write (.csv; its card goes to .meta.json beside it)")
    t.set_defaults(func=_table_export)
    t = tsub.add_parser("info", help="summarize trial tables")
    t.add_argument("tables", nargs="+")
    t.set_defaults(func=_table_info)
    history_help = ("history store: SQLAlchemy URL, SQLite file path, or 'off' (default: "
                    ".basht/history.sqlite in the current directory)")
    p = sub.add_parser("compare", help="compare two runs; exit 1 when a threshold is passed",
                       description="OLD and NEW: a report.json or run directory, a saved name, "
                       "a run id, 'last' or 'last~N' (from the history)")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--fail-on", metavar="SPEC", help="thresholds, e.g. "
                   "'energy_kwh:+10%%,jct_ms:+20%%,wte_kwh:+0.001'")
    p.add_argument("--any-machine", action="store_true",
                   help="compare runs from different machine fingerprints")
    p.add_argument("--history", metavar="URL", help=history_help)
    p.set_defaults(func=_compare)
    p = sub.add_parser("history", help="list the saved runs, newest first")
    p.add_argument("--history", metavar="URL", help=history_help)
    p.add_argument("--name", help="only runs saved under this name")
    p.add_argument("--this-machine", action="store_true",
                   help="only runs of this machine's hardware")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.set_defaults(func=_history)
    p = sub.add_parser("save", help="save a run's report.json in the history")
    p.add_argument("run", help="a run directory or its report.json")
    p.add_argument("--name", help="a name to compare against later (e.g. main)")
    p.add_argument("--history", metavar="URL", help=history_help)
    p.set_defaults(func=_save)
    p = sub.add_parser("worker", help="join a distributed optuna deployment as a worker",
                       description="Serve the deployment NAME (sut.options.study) of the "
                       "optuna SUT whose study lives at URL (sut.options.storage) until it "
                       "closes: take a free worker slot, set up for each scenario, run "
                       "trials, and record spans, trials, models and this host's energy in "
                       "the database. Exit codes: 0 the deployment closed, 3 it never "
                       "opened, 4 no free slot, 5 declared lost, 6 the controller stopped "
                       "beating.")
    p.add_argument("--storage", required=True, metavar="URL",
                   help="SQLAlchemy URL of the study's database (a password here is used, "
                   "never shown; or BASHT_STORAGE_PASSWORD, PGPASSWORD, ~/.pgpass)")
    p.add_argument("--study", required=True, metavar="NAME",
                   help="the deployment to join (sut.options.study, default the workload's "
                   "name)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                   help="a module or Python file registering trainables, samplers, pruners "
                   "or meters (repeatable); pytest_basht entry points load by themselves")
    p.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                   help="how long to wait for the deployment to open (default 600)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch/OpenMP threads (default: the workload's workers.cpu, at most "
                   "the cores this process may use)")
    p.add_argument("--cores", type=_cores, default=None, metavar="LIST",
                   help="pin to these cores, e.g. 0,1")
    p.add_argument("--meter", metavar="NAME", help="this worker's energy meter, in place of "
                   "the workload's energy.meter (e.g. prometheus)")
    p.add_argument("--meter-selector", metavar="MATCHERS", help="label matchers for this "
                   "worker's prometheus queries, in place of energy.prometheus.selector "
                   "(e.g. its pod: pod_name=\"$POD_NAME\")")
    p.set_defaults(func=_worker)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BashtUsageError as exc:
        print(f"basht: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

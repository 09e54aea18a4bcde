"""The ``basht`` command: validate workloads, regenerate reports, export trial tables."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from pytest_basht import workload as wl
from pytest_basht.errors import BashtUsageError
from pytest_basht.registry import Registry
from pytest_basht.report import json as report_json
from pytest_basht.report import markdown


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
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BashtUsageError as exc:
        print(f"basht: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

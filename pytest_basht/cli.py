"""The ``basht`` command: validate workloads and regenerate reports outside pytest."""

from __future__ import annotations

import argparse
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="basht", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check workload files")
    p.add_argument("workloads", nargs="+")
    p.set_defaults(func=_validate)
    p = sub.add_parser("report", help="regenerate report.md from a run's report.json")
    p.add_argument("run", help="a run directory or its report.json")
    p.set_defaults(func=_report)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BashtUsageError as exc:
        print(f"basht: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

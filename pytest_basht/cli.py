"""The ``basht`` command: validate workloads, forecast what they will take, regenerate
reports, export trial tables, list the run history and its noise, compare two runs with the
same verdict as the pytest gate (exit 1 on a regression), run a baseline ref and the working
tree in pairs and gate on them (``paired``), and show the state of Zeus batch size
optimizer jobs."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from pytest_basht import machine, wiring
from pytest_basht import workload as wl
from pytest_basht.errors import BashtUsageError
from pytest_basht.report import files, gate, markdown, ranking, trials_csv
from pytest_basht.report import json as report_json
from pytest_basht.report.atomic import write_atomic
from pytest_basht.report.noise import RECOMMENDED_PAIRS

if TYPE_CHECKING:
    from pytest_basht.report.history import History


#: Why ``basht validate`` may not know a name pytest knows.
CONFTEST_HINT = ("a name registered in a conftest.py is known to pytest, which loads that "
                 "conftest, not to basht validate: pass --conftest path/to/conftest.py (its "
                 "pytest_basht_register_* hooks then count), or register it from a package's "
                 "pytest_basht entry point")


def _validate(args: argparse.Namespace) -> int:
    registry = wiring.registry(wiring.load_plugins(args.conftest or []))
    for path in args.workloads:
        workload = wl.load(path)
        try:
            registry.check(workload)
        except BashtUsageError as exc:
            if args.conftest or "a registered" not in str(exc):
                raise
            raise BashtUsageError(f"{exc}\n  ({CONFTEST_HINT})") from None
        size = workload.search.size
        print(f"{path}: ok ({workload.name}; |Φ| = {size if size is not None else 'continuous'}"
              f", {workload.trial_budget} trials, {workload.workers.count} workers)")
    return 0


def _forecast(args: argparse.Namespace) -> int:
    """Forecast each workload (a table's replays, or a pilot run for real) and print it;
    ``--json`` keeps them for ``--basht-forecast``."""
    import pytest_basht.budget as budget_mod
    import pytest_basht.forecast as forecast_mod
    import pytest_basht.search as search
    from pytest_basht.energy.base import MeterContext
    from pytest_basht.engines import Engines
    from pytest_basht.signals import StopSignals

    registry = wiring.registry()
    notes: list[str] = []
    engines = Engines(lambda: registry, MeterContext, StopSignals(), notes)
    made = []
    try:
        for path in args.workloads:
            workload = wl.load(Path(path).resolve())
            shrink = budget_mod.get(args.budget).overrides(workload)
            workload = wl.resolve(workload, {**shrink, **({"seed": args.seed}
                                                          if args.seed is not None else {})})
            registry.check(workload)
            search.check(workload, registry)
            monitor = engines.get(workload).monitor if args.method != "table" else None
            forecast = forecast_mod.make(
                workload, registry, tables=[Path(t) for t in args.tables], seeds=args.seeds,
                method=args.method, monitor=monitor, pilot_trials=args.pilot_trials,
                pilot_epochs=args.pilot_epochs)
            if forecast is None:
                print(f"{path}: no recorded table answers it (--method auto runs a pilot)")
                continue
            made.append(forecast.to_dict())
            rows = [[key, f"{band.value:.4g}", f"{band.low:.4g}", f"{band.high:.4g}",
                     forecast_mod.UNITS[key]] for key, band in forecast.figures.items()]
            print(f"{path}: forecast by {forecast.method} ({forecast.source}; energy "
                  f"{forecast.energy_source})")
            print(tabulate(rows, headers=["figure", "forecast", "low", "high", "unit"],
                           disable_numparse=True))
            for note in forecast.notes:
                print(f"  {note}")
    finally:
        engines.close()
    for note in notes:
        print(f"note: {note}")
    if args.json:
        write_atomic(Path(args.json), json.dumps({"forecasts": made}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0 if made else 1


def _report(args: argparse.Namespace) -> int:
    data = report_json.load(args.run)
    run_dir = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    out = run_dir / "report.md"
    text = markdown.render(data, wiring.plugin_manager().hook)
    write_atomic(out, text)
    files.write_html(text, run_dir)
    table = trials_csv.write(data, run_dir / trials_csv.NAME)
    print(f"wrote {out}, {run_dir / 'report.html'} and {table}")
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
    write_atomic(out, text)
    write_atomic(card_path(out), json.dumps(card, indent=1) + "\n")
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
        thresholds = gate.parse_fail_on(args.fail_on) if args.fail_on else []
    except gate.ThresholdError as exc:
        raise BashtUsageError(f"--fail-on: expected {exc}, got {args.fail_on!r}") from None
    paths = all(history.looks_like_path(ref) for ref in (args.old, args.new))
    # two files need no store, but its noise floors help: use one that is there already
    there = args.history is not None or (Path.cwd() / history.DEFAULT_PATH).exists()
    store = None if paths and not there else _store(args)
    try:
        old = history.resolve(args.old, store)
        new = history.resolve(args.new, store)
        gate.check_report(old.report, old.label)
        gate.check_report(new.report, new.label)
        spreads = ({} if store is None or not thresholds else gate.history_spreads(
            store, old.report, new.report, {t.key for t in thresholds}))
    finally:
        if store is not None:
            store.close()
    result = gate.compare(old.report, new.report, thresholds,
                          baseline_label=old.label, current_label=new.label,
                          any_machine=args.any_machine, spreads=spreads)
    comparison = report_json.clean(result.to_dict())
    headers, rows = gate.table(comparison)
    print(f"old: {old.label}\nnew: {new.label}")
    if rows:
        print(tabulate(rows, headers=headers, disable_numparse=True))
    for line in gate.gate_lines(comparison):
        print(line)
    _print_rankings(ranking.compared(old.report["scenarios"], new.report["scenarios"],
                                     args.rank_by))
    return 1 if result.verdict == "fail" else 0


def _print_rankings(sections: list[tuple[str, list[str], list[list[str]]]]) -> None:
    for caption, headers, rows in sections:
        print(f"{caption}:")
        print(tabulate(rows, headers=headers, disable_numparse=True))


def _rank_by(raw: str) -> str:
    """argparse's type for --rank-by: a RANK_BY name (exit 2 naming the choices)."""
    try:
        return ranking.rank_key(raw).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected {exc}, got {raw!r}") from None


def _noise(args: argparse.Namespace) -> int:
    import statistics

    from pytest_basht.report import noise

    try:
        keys = [gate.metric_key(k) for k in args.metric] or list(gate.SHOWN)
    except gate.ThresholdError as exc:
        raise BashtUsageError(f"--metric: expected {exc}") from None
    store = _store(args)
    if store is None:
        raise BashtUsageError("--history off: the noise floor comes from a history store")
    with store:
        entries = store.samples(args.scenario)
        shown = store.shown
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for entry in entries:  # newest first: each group keeps its newest HISTORY_WINDOW
        group = groups.setdefault((entry.scenario_id, entry.machine_id, entry.workload_key), [])
        if len(group) < noise.HISTORY_WINDOW:
            group.append(entry)
    print(f"noise in {shown}: the newest {noise.HISTORY_WINDOW} samples of each scenario, "
          f"machine and workload; a 1-vs-1 comparison is within noise up to the floor")
    rows = []
    for (scenario, machine_id, _), found in groups.items():
        conditions = [e.conditions for e in found if e.conditions]
        others = [c["others_cpu_pct"] for c in conditions if c.get("others_cpu_pct") is not None]
        loads = [c["load_1m"] for c in conditions if c.get("load_1m") is not None]
        for key in keys:
            values = [e.values[key] for e in found if key in e.values]
            spread = noise.spread(values)
            rows.append([scenario, machine_id, str(len(values)), key,
                         markdown.fmt(statistics.median(values)) if values else "—",
                         "—" if spread is None else f"±{noise.as_pct(spread):.1f}%",
                         "—" if spread is None else
                         f"±{noise.as_pct(noise.floor(spread, 1, 1)):.1f}%",
                         markdown.fmt(statistics.median(others)) if others else "—",
                         markdown.fmt(statistics.median(loads)) if loads else "—"])
    if rows:
        print(tabulate(rows, headers=["scenario", "machine", "samples", "metric", "median",
                                      "spread", "1-vs-1 floor", "others' CPU %", "load 1m"],
                       disable_numparse=True))
    else:
        print("no samples saved" + (f" of {args.scenario}" if args.scenario else ""))
    return 0


def _history(args: argparse.Namespace) -> int:
    store = _store(args)
    if store is None:
        raise BashtUsageError("--history off: there is no history to list")
    with store:
        here = machine.fingerprint("")
        runs = store.runs(name=args.name, limit=args.limit,
                          machine=here if args.this_machine else None,
                          keys=gate.HARDWARE_KEYS)
        listed = {r.run_id for r in runs}
        samples = [s for s in store.samples() if s.run_id in listed] if args.rank_by else []
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
    if args.rank_by:  # the listed runs' scenarios: each saved run of a scenario is a repeat
        _print_rankings(ranking.sections_of([ranking.run_of_sample(s.scenario_id, s.values)
                                             for s in samples], args.rank_by))
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


def _paired(args: argparse.Namespace) -> int:
    from pytest_basht import paired

    try:
        thresholds = gate.parse_fail_on(args.fail_on) if args.fail_on else []
        pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else \
            args.pytest_args
        return paired.main(args.baseline, pytest_args, pairs_count=args.pairs,
                           thresholds=thresholds, work_dir=args.work_dir,
                           sequential=args.sequential)
    except gate.ThresholdError as exc:
        print(f"basht: error: --fail-on: expected {exc}, got {args.fail_on!r}", file=sys.stderr)
    except BashtUsageError as exc:
        print(f"basht: error: {exc}", file=sys.stderr)
    return paired.EXIT_USAGE


def _bso_store(args: argparse.Namespace) -> Any:
    from pytest_basht.report import history
    from pytest_basht.zeus.store import BsoStore

    if history.is_off(args.history):
        raise BashtUsageError("--history off: the BSO state lives in a history store")
    return BsoStore(history.store_url(args.history, Path.cwd()))


def _bso_show(args: argparse.Namespace) -> int:
    from pytest_basht.zeus import bso
    from pytest_basht.zeus.store import spec_of

    with _bso_store(args) as store:
        job = store.job(args.job)
        attempts = store.attempts(args.job)
        observations = store.observations(args.job)
        shown = store.shown
    spec = spec_of(job)
    ident = job["identity"]
    recurrence = max((a["recurrence"] for a in attempts), default=0) + 1
    state = bso.state(spec, observations, recurrence)
    print(f"job {job['job']} in {shown}: policy {spec.policy}; batch sizes "
          f"{', '.join(map(str, spec.batch_sizes))} (default {spec.default}); η "
          f"{ident['eta']}, P_max {markdown.fmt(ident['max_power_w'])} W, PUE {ident['pue']}, "
          f"target {ident['target']} ({ident['direction']}) in ≤ {ident['max_epochs']} epochs")
    print(f"recurrences {recurrence - 1}, attempts {len(attempts)} ({len(observations)} "
          f"observed, {state['converged']} reached the target, {state['early_stopped']} "
          f"stopped early); stage: {state['stage']}")
    pruning = state.get("pruning")
    if pruning:
        walk = "; ".join(f"round {r}: " + " ".join(f"{bs}{'✓' if ok else '✗'}"
                                                  for rr, bs, ok in pruning["explored"]
                                                  if rr == r)
                         for r in sorted({e[0] for e in pruning["explored"]}))
        print(f"pruning: {walk or 'not started'}"
              + (f"; arms {', '.join(map(str, pruning['candidates']))}" if pruning["done"]
                 else f"; next {pruning['next']}")
              + (" (no batch size reached the target in a round)" if pruning["stuck"] else ""))
    best, threshold = state["best_cost"], state["threshold"]
    print(f"best cost {markdown.fmt(best)} J; " + (
        f"an attempt stops early above {markdown.fmt(threshold)} J (β {spec.beta})"
        if threshold is not None else "no early stop yet" if spec.beta is not None
        else "early stopping off") + (f"; window {spec.window} recurrences"
                                      if spec.window else ""))
    arms = {a["batch_size"]: a for a in state["arms"]}
    rows = []
    for a in bso.arms(spec, spec.batch_sizes, observations, recurrence):
        role = ("arm" if a.batch_size in arms else "pruned") if pruning else spec.policy
        rows.append([str(a.batch_size), role, str(a.observations),
                     markdown.fmt(a.mean_cost), markdown.fmt(a.mean) if a.observations else "—",
                     "inf" if a.precision == float("inf") else markdown.fmt(a.precision)])
    print(tabulate(rows, headers=["batch size", "role", "observations", "mean cost J",
                                  "mean reward", "precision"], disable_numparse=True))
    if args.attempts:
        rows = [[str(a["seq"]), str(a["recurrence"]), str(a["batch_size"]), a["stage"],
                 a["state"] or "unobserved", markdown.fmt(a["cost"]),
                 markdown.fmt(a["threshold"]), str(a["epochs"] or "")]
                for a in attempts[-args.attempts:]]
        print()
        print(tabulate(rows, headers=["#", "recurrence", "batch size", "stage", "state",
                                      "cost J", "stop above J", "epochs"],
                       disable_numparse=True))
    return 0


def _bso_list(args: argparse.Namespace) -> int:
    with _bso_store(args) as store:
        jobs = store.jobs()
        print(f"BSO jobs in {store.shown}: {len(jobs)}")
    if jobs:
        print(tabulate([[j["job"], j["policy"], str(j["attempts"]), j["stage"] or "",
                         j["updated_utc"]] for j in jobs],
                       headers=["job", "policy", "attempts", "stage", "updated (UTC)"],
                       disable_numparse=True))
    return 0


def _bso_reset(args: argparse.Namespace) -> int:
    with _bso_store(args) as store:
        n = store.reset(args.job)
        shown = store.shown
    if n == 0:
        print(f"no job {args.job!r} in {shown} (nothing to reset)")
    else:
        print(f"reset job {args.job!r} in {shown}: {n} attempt(s) forgotten")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from pytest_basht.sut import remote

    cores = [int(c) for c in args.cores.split(",") if c.strip()] if args.cores else []
    registry = wiring.registry(wiring.load_plugins(args.plugin))
    return remote.main(args.storage, args.study, registry, args.wait, args.threads, cores,
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
    p.add_argument("--conftest", action="append", metavar="PATH",
                   help="a conftest.py (or a module) whose pytest_basht_register_* hooks "
                   "register names the workloads use (repeatable)")
    p.set_defaults(func=_validate)
    p = sub.add_parser("forecast", help="forecast a workload's JCT, energy, CO2 and cost "
                       "before it runs",
                       description="From a recorded trial table that answers the workload "
                       "(replayed with --seeds other seeds), else from a pilot: a few trials "
                       "of a few epochs run for real and extrapolated. Exit 1 when nothing "
                       "was forecast.")
    p.add_argument("workloads", nargs="+")
    p.add_argument("--method", choices=("auto", "table", "pilot"), default="auto",
                   help="auto: a table when one answers, else a pilot (default)")
    p.add_argument("--tables", nargs="*", default=["benchmarks/tables"], metavar="PATH",
                   help="tables, or folders of them (default: benchmarks/tables)")
    p.add_argument("--seeds", type=int, default=5, help="replays of a table (default 5)")
    p.add_argument("--pilot-trials", type=int, default=None, metavar="N",
                   help="trials of the pilot (default: the workers, one wave)")
    p.add_argument("--pilot-epochs", type=int, default=2, metavar="N",
                   help="epochs of each pilot trial (default 2)")
    p.add_argument("--budget", choices=("full", "smoke"), default="full",
                   help="the workload as --basht-budget shrinks it (default full)")
    p.add_argument("--seed", type=int, default=None, help="the workload's seed, as "
                   "--basht-seed sets it")
    p.add_argument("--json", metavar="FILE", help="write the forecasts here, for pytest's "
                   "--basht-forecast FILE")
    p.set_defaults(func=_forecast)
    p = sub.add_parser("report", help="regenerate report.md, report.html and trials.csv "
                       "from a run's report.json")
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
    p.add_argument("--rank-by", type=_rank_by, default=ranking.DEFAULT, metavar="KEY",
                   help="rank both runs' setups by what it took to reach the goal: eta "
                   "(energy, default), tta (time), cost or co2")
    p.set_defaults(func=_compare)
    p = sub.add_parser("history", help="list the saved runs, newest first")
    p.add_argument("--history", metavar="URL", help=history_help)
    p.add_argument("--name", help="only runs saved under this name")
    p.add_argument("--this-machine", action="store_true",
                   help="only runs of this machine's hardware")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.add_argument("--rank-by", type=_rank_by, metavar="KEY",
                   help="also rank the listed runs' scenarios (each saved run a repeat: "
                   "median and spread) by eta, tta, cost or co2 to the goal's target")
    p.set_defaults(func=_history)
    p = sub.add_parser(
        "paired", help="run the baseline ref and this working tree side by side, N pairs, "
        "and gate on the paired differences (exit 0 pass, 1 fail, 4 usage)",
        description="Check REF out into a temporary git worktree, run PYTEST_ARGS on it and "
        "on the working tree N times each (a pair's two runs at once, or with --sequential "
        "one after the other in alternating order), each run writing its own report, and "
        "decide each gated metric on the pairs' ratios (Wilcoxon signed-rank, needs ≥ 5 "
        "pairs). Writes paired.json and paired.md in the work directory.",
        usage="basht paired --baseline REF [--pairs N] [--fail-on SPEC] [--work-dir DIR] "
              "[--sequential] -- PYTEST_ARGS ...")
    p.add_argument("--baseline", required=True, metavar="REF",
                   help="the git ref to compare against (a branch, tag or commit)")
    p.add_argument("--pairs", type=int, default=RECOMMENDED_PAIRS, metavar="N",
                   help="pairs of runs (default %(default)s; ≥ 5 to decide at all)")
    p.add_argument("--fail-on", metavar="SPEC", help="thresholds, e.g. "
                   "'trials.energy_kwh:+5%%,trials.cpu_s:+5%%'")
    p.add_argument("--work-dir", type=Path, metavar="DIR", help="where the runs' reports and "
                   "the verdict go (default: reports/paired/<time>)")
    p.add_argument("--sequential", action="store_true", help="run a pair's two runs one "
                   "after the other (default: at once, so that a neighbour's load hits both)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS",
                   help="after --: the benchmark command's pytest arguments")
    p.set_defaults(func=_paired)
    p = sub.add_parser("noise", help="the spread of each metric across saved runs: the gate's "
                       "noise floor, with the load the runs had")
    p.add_argument("--history", metavar="URL", help=history_help)
    p.add_argument("--scenario", metavar="ID", help="only this scenario (its test id)")
    p.add_argument("--metric", action="append", default=[], metavar="KEY",
                   help="a metric to show (repeatable; default: jct_ms, energy_kwh, wte_kwh)")
    p.set_defaults(func=_noise)
    p = sub.add_parser("save", help="save a run's report.json in the history")
    p.add_argument("run", help="a run directory or its report.json")
    p.add_argument("--name", help="a name to compare against later (e.g. main)")
    p.add_argument("--history", metavar="URL", help=history_help)
    p.set_defaults(func=_save)
    p = sub.add_parser("bso", help="the state of Zeus batch size optimizer jobs")
    bsub = p.add_subparsers(dest="bso_command", required=True)
    b = bsub.add_parser("show", help="a job's arms (mean cost, precision, observations)")
    b.add_argument("job")
    b.add_argument("--history", metavar="URL", help=history_help)
    b.add_argument("--attempts", type=int, default=10, metavar="N",
                   help="also list its last N attempts (default 10; 0: none)")
    b.set_defaults(func=_bso_show)
    b = bsub.add_parser("list", help="the jobs in a store")
    b.add_argument("--history", metavar="URL", help=history_help)
    b.set_defaults(func=_bso_list)
    b = bsub.add_parser("reset", help="forget a job: its next recurrence starts afresh")
    b.add_argument("job")
    b.add_argument("--history", metavar="URL", help=history_help)
    b.set_defaults(func=_bso_reset)
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

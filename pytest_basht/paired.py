"""``basht paired``: run the baseline and the candidate side by side in one CI job.

The baseline ref is checked out into a temporary git worktree; the benchmark command
(``pytest`` and its arguments) runs N times on each side, alternating in counterbalanced
order — baseline then candidate in odd pairs, candidate then baseline in even ones, so
that a drift over the job (a warming machine, a neighbour's job starting) does not always
favour one side. Each run writes its own report into the work directory; the reports are
paired and decided by ``report.pairs``, whose verdict is written as paired.json and
paired.md. Exit status: 0 the gate passed, 1 a regression or an undecided metric (or the
candidate's benchmarks failed), 4 a usage error (a bad ref, arguments pytest refused, a
baseline that does not run).

Both sides run with this interpreter, each from its own tree: that tree (and its ``src/``
where there is one) goes first on PYTHONPATH, so the baseline imports its own code — its
own pytest-basht too, when pytest-basht is the project under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_basht.errors import BashtUsageError
from pytest_basht.report import json as report_json
from pytest_basht.report import pairs
from pytest_basht.report.atomic import write_atomic
from pytest_basht.report.gate import (
    CompareError,
    Comparison,
    Threshold,
    exit_status,
    gate_lines,
    table,
)
from pytest_basht.report.noise import MIN_PAIRS

EXIT_USAGE = 4  # pytest.ExitCode.USAGE_ERROR
EXIT_FAILED = 1
#: Options basht paired sets on each run itself (each run's own report, no history).
OWN_OPTIONS = ("--basht-report-dir", "--basht-history", "--basht-compare", "--basht-fail-on",
               "--basht-save")
TAIL_LINES = 30  # of a failed run's output


@dataclass(frozen=True)
class Side:
    name: str  # "baseline" or "candidate"
    root: Path  # its tree
    cwd: Path  # where pytest runs: the same place in its tree as ``basht paired`` was run


def git(*args: str, cwd: Path) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BashtUsageError(f"git {' '.join(args)}: {exc}") from None
    if done.returncode != 0:
        raise BashtUsageError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout.strip()


def check_args(pytest_args: Sequence[str]) -> None:
    for arg in pytest_args:
        flag = arg.split("=", 1)[0]
        if flag in OWN_OPTIONS:
            raise BashtUsageError(f"{flag} in the pytest arguments: basht paired gives each "
                                  "run its own report directory, keeps the runs out of the "
                                  "history and gates them itself (--fail-on)")


def environment(root: Path) -> dict[str, str]:
    """This process's environment with ``root`` (and ``root/src``) first on PYTHONPATH."""
    env = dict(os.environ)
    first = [str(root), *([str(root / "src")] if (root / "src").is_dir() else [])]
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*first, *rest])
    return env


def run_side(side: Side, pair: int, pytest_args: Sequence[str], runs_dir: Path
             ) -> tuple[pairs.Run, dict[str, Any] | None, str]:
    """One benchmark run: its record, its report (None: none written) and its output."""
    report_dir = runs_dir / f"{pair:02d}-{side.name}"
    command = [sys.executable, "-m", "pytest", *pytest_args, "--basht-report-dir",
               str(report_dir), "--basht-history", "off", "-p", "no:cacheprovider"]
    start = time.monotonic()
    done = subprocess.run(command, cwd=side.cwd, env=environment(side.root),
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    output = done.stdout + done.stderr
    report_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(report_dir / "pytest.log", output)
    try:
        report = report_json.load(report_dir / "latest")
    except BashtUsageError:
        report = None
    return pairs.Run(pair, side.name, str(report_dir), seconds, done.returncode), report, output


def _failure(run: pairs.Run, output: str) -> tuple[int, str]:
    """The exit status and message of a run that failed: a candidate whose benchmarks
    failed fails the gate; anything else (a baseline that fails, pytest refusing the
    arguments) is a usage error."""
    tail = "\n".join(output.strip().splitlines()[-TAIL_LINES:])
    if run.side == "candidate" and run.exit_status == EXIT_FAILED:
        return EXIT_FAILED, (f"the candidate's benchmarks failed in pair {run.pair} (pytest "
                             f"exit 1; its log: {run.report_dir}/pytest.log):\n{tail}")
    return EXIT_USAGE, (f"the {run.side} run of pair {run.pair} failed (pytest exit "
                        f"{run.exit_status}; its log: {run.report_dir}/pytest.log):\n{tail}")


def default_work_dir(cwd: Path) -> Path:
    return cwd / "reports" / "paired" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def main(baseline_ref: str, pytest_args: Sequence[str], *, pairs_count: int,
         thresholds: Sequence[Threshold], work_dir: Path | None = None,
         cwd: Path | None = None) -> int:
    """Run the paired job and print its verdict; returns the exit status."""
    cwd = (cwd or Path.cwd()).resolve()
    check_args(pytest_args)
    if thresholds and pairs_count < MIN_PAIRS:
        raise BashtUsageError(f"--pairs {pairs_count}: the signed-rank test needs ≥ "
                              f"{MIN_PAIRS} pairs to decide (the smallest one-sided p with "
                              f"{pairs_count} is {0.5 ** pairs_count:g}, not below 0.05)")
    root = Path(git("rev-parse", "--show-toplevel", cwd=cwd)).resolve()
    try:
        commit = git("rev-parse", "--verify", "--quiet", f"{baseline_ref}^{{commit}}", cwd=cwd)
    except BashtUsageError:
        raise BashtUsageError(f"--baseline {baseline_ref}: not a commit, branch or tag of "
                              f"the repository {root}") from None
    work = (work_dir or default_work_dir(cwd)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    # outside the candidate's tree, so that its pytest never collects the baseline's tests
    tree = Path(tempfile.mkdtemp(prefix="basht-baseline-")) / "tree"
    git("worktree", "add", "--detach", str(tree), commit, cwd=root)
    try:
        sides = {"baseline": Side("baseline", tree, tree / cwd.relative_to(root)),
                 "candidate": Side("candidate", root, cwd)}
        if not sides["baseline"].cwd.is_dir():
            raise BashtUsageError(f"{cwd.relative_to(root)}: not in the tree of "
                                  f"{baseline_ref}, so the baseline cannot run there")
        return _run(sides, baseline_ref, commit, pytest_args, pairs_count, thresholds, work)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root,
                       capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True)


def _run(sides: dict[str, Side], ref: str, commit: str, pytest_args: Sequence[str],
         pairs_count: int, thresholds: Sequence[Threshold], work: Path) -> int:
    runs: list[pairs.Run] = []
    reports: list[tuple[dict[str, Any], dict[str, Any]]] = []
    problem: tuple[int, str] | None = None
    print(f"basht paired: {ref} ({commit[:12]}) against the working tree, {pairs_count} "
          f"pairs; reports in {work}", flush=True)
    for pair in range(1, pairs_count + 1):
        order = ("baseline", "candidate") if pair % 2 else ("candidate", "baseline")
        got: dict[str, dict[str, Any]] = {}
        for name in order:
            run, report, output = run_side(sides[name], pair, pytest_args, work / "runs")
            runs.append(run)
            if run.exit_status != 0 or report is None:
                problem = _failure(run, output)
                break
            got[name] = report
        if problem is not None:
            break
        reports.append((got["baseline"], got["candidate"]))
        print(f"pair {pair}/{pairs_count}: " + ", ".join(
            f"{r.side} {r.seconds:.1f} s" for r in runs[-2:]), flush=True)
    baseline = {"ref": ref, "commit": commit, "tree": str(sides["baseline"].root)}
    candidate = {"label": "the working tree", "tree": str(sides["candidate"].root)}
    try:
        comparison = pairs.compare_pairs(reports, thresholds,
                                         baseline_label=f"baseline {ref}",
                                         current_label="the candidate")
        error = problem[1] if problem else None
    except CompareError as exc:
        comparison = Comparison({"label": f"baseline {ref}"}, {},
                                [t.text for t in thresholds], [])
        error = problem[1] if problem else str(exc)
    verdict = pairs.verdict_report(comparison, baseline=baseline, candidate=candidate,
                                   runs=runs, pairs=pairs_count, error=error)
    write_atomic(work / "paired.json", report_json.dumps(verdict))
    write_atomic(work / "paired.md", pairs.markdown(verdict))
    return _say(verdict, work, problem)


def _say(verdict: dict[str, Any], work: Path, problem: tuple[int, str] | None) -> int:
    """Print the verdict; the last line is the gate's own."""
    from tabulate import tabulate

    comparison = verdict["comparison"]
    if comparison.get("rows"):
        headers, rows = table(comparison)
        print(tabulate(rows, headers=headers, disable_numparse=True))
    lines = gate_lines(comparison)
    for line in lines[1:]:
        print(line)
    print(f"basht paired: {len(verdict['runs'])} runs in {verdict['minutes']:.1f} minutes; "
          f"verdict in {work / 'paired.md'}")
    print(lines[0])
    if problem is not None:
        return problem[0]
    if comparison["verdict"] == "error":
        return EXIT_USAGE
    return exit_status(comparison)

"""``basht paired``: run the baseline and the candidate side by side in one CI job.

The baseline ref is checked out into a temporary git worktree; the benchmark command
(``pytest`` and its arguments) runs N times on each side. By default the two runs of a
pair run at the same time (duet benchmarking): a neighbour's load that comes and goes
hits both alike, and cancels in their ratio — on a 2-core runner with a busy loop coming
and going, the spread of one pair's trial-energy ratio fell from ±19 % one after the other
to ±3 % at once (benchmarks/perf/gate_power.py). Both runs' workers get the same core
plan, so they share the cores evenly. ``sequential`` runs them one after the other
instead (benchmarks that do not fit twice: GPU memory, large data), in counterbalanced
order — baseline first in odd pairs, candidate first in even ones — so that a drift over
the job does not always favour one side. Each run writes its own report into the work
directory; the reports are paired and decided by ``report.pairs``, whose verdict is
written as paired.json and paired.md. Exit status: 0 the gate passed, 1 a regression or
an undecided metric (or the candidate's benchmarks failed), 4 a usage error (a bad ref,
arguments pytest refused, a baseline that does not run).

Both sides run with this interpreter, each from its own tree: that tree (and its ``src/``
where there is one) goes first on PYTHONPATH, so the baseline imports its own code — its
own pytest-basht too, when pytest-basht is the project under test.
"""

from __future__ import annotations

import os
import shutil
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


@dataclass
class Started:
    """A benchmark run in flight, its output going to its log."""

    side: Side
    pair: int
    report_dir: Path
    process: subprocess.Popen[bytes]
    start: float


def start(side: Side, pair: int, pytest_args: Sequence[str], runs_dir: Path) -> Started:
    report_dir = runs_dir / f"{pair:02d}-{side.name}"
    report_dir.mkdir(parents=True, exist_ok=True)
    # One token each: pytest takes an option value it does not know yet for a path to find
    # its rootdir and ini file from, which would put the candidate's config on the baseline.
    command = [sys.executable, "-m", "pytest", *pytest_args, f"--basht-report-dir={report_dir}",
               "--basht-history=off", "-p", "no:cacheprovider"]
    if not any(arg.split("=", 1)[0] == "--rootdir" for arg in pytest_args):
        command.append(f"--rootdir={side.root}")  # test ids alike on both sides
    with (report_dir / "pytest.log").open("wb") as log:  # the child keeps its own handle
        process = subprocess.Popen(command, cwd=side.cwd, env=environment(side.root),
                                   stdout=log, stderr=subprocess.STDOUT)
    return Started(side, pair, report_dir, process, time.monotonic())


def finish(run: Started) -> tuple[pairs.Run, dict[str, Any] | None, str]:
    """Wait for a run: its record, its report (None: none written) and its output."""
    status = run.process.wait()
    seconds = time.monotonic() - run.start
    output = (run.report_dir / "pytest.log").read_text(errors="replace")
    try:
        report = report_json.load(run.report_dir / "latest")
    except BashtUsageError:
        report = None
    return (pairs.Run(run.pair, run.side.name, str(run.report_dir), seconds, status), report,
            output)


def run_pair(sides: dict[str, Side], pair: int, pytest_args: Sequence[str], runs_dir: Path,
             sequential: bool) -> list[tuple[pairs.Run, dict[str, Any] | None, str]]:
    """Both runs of a pair: at once, or one after the other (stopping at a failure)."""
    order = ("baseline", "candidate") if pair % 2 else ("candidate", "baseline")
    if not sequential:
        started = [start(sides[name], pair, pytest_args, runs_dir) for name in order]
        try:
            return [finish(run) for run in started]
        finally:  # interrupted while waiting: the other run must not outlive the job
            for run in started:
                if run.process.poll() is None:
                    run.process.kill()
                    run.process.wait()
    done = []
    for name in order:
        done.append(finish(start(sides[name], pair, pytest_args, runs_dir)))
        if done[-1][0].exit_status != 0 or done[-1][1] is None:
            break
    return done


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
         sequential: bool = False, cwd: Path | None = None) -> int:
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
        job = Job(sides, baseline_ref, commit, tuple(pytest_args), pairs_count,
                  tuple(thresholds), work, sequential)
        return job.run()
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root,
                       capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True)
        shutil.rmtree(tree.parent, ignore_errors=True)


@dataclass(frozen=True)
class Job:
    """The pairs of one paired job, run and decided."""

    sides: dict[str, Side]
    ref: str
    commit: str
    pytest_args: tuple[str, ...]
    pairs_count: int
    thresholds: tuple[Threshold, ...]
    work: Path
    sequential: bool

    def run(self) -> int:
        runs: list[pairs.Run] = []
        reports: list[tuple[dict[str, Any], dict[str, Any]]] = []
        problem: tuple[int, str] | None = None
        how = "one after the other" if self.sequential else "both runs of a pair at once"
        print(f"basht paired: {self.ref} ({self.commit[:12]}) against the working tree, "
              f"{self.pairs_count} pairs, {how}; reports in {self.work}", flush=True)
        begin = time.monotonic()
        for pair in range(1, self.pairs_count + 1):
            done = run_pair(self.sides, pair, self.pytest_args, self.work / "runs",
                            self.sequential)
            runs += [run for run, _, _ in done]
            failed = next(((run, output) for run, report, output in done
                           if run.exit_status != 0 or report is None), None)
            if failed is not None:
                problem = _failure(*failed)
                break
            got = {run.side: report for run, report, _ in done if report is not None}
            reports.append((got["baseline"], got["candidate"]))
            print(f"pair {pair}/{self.pairs_count}: " + ", ".join(
                f"{run.side} {run.seconds:.1f} s" for run, _, _ in done), flush=True)
        minutes = (time.monotonic() - begin) / 60
        try:
            comparison = pairs.compare_pairs(reports, self.thresholds,
                                             baseline_label=f"baseline {self.ref}",
                                             current_label="the candidate")
            error = problem[1] if problem else None
        except CompareError as exc:
            comparison = Comparison({"label": f"baseline {self.ref}"}, {},
                                    [t.text for t in self.thresholds], [])
            error = problem[1] if problem else str(exc)
        verdict = pairs.verdict_report(
            comparison, baseline={"ref": self.ref, "commit": self.commit,
                                  "tree": str(self.sides["baseline"].root)},
            candidate={"label": "the working tree", "tree": str(self.sides["candidate"].root)},
            runs=runs, pairs=self.pairs_count, minutes=minutes,
            concurrent=not self.sequential, error=error)
        write_atomic(self.work / "paired.json", report_json.dumps(verdict))
        write_atomic(self.work / "paired.md", pairs.markdown(verdict))
        return _say(verdict, self.work, problem)


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

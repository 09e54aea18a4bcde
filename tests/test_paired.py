"""basht paired end to end: a git repository whose benchmark burns a fixed CPU amount per
trial; the baseline is a commit, the candidate the working tree. Unchanged, the gate
passes; with twice the work (uncommitted, as a change under review) it fails with exit 1
and one line per regression. Bad arguments are usage errors (exit 4) before any run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from busy_trainable import BUSY_CONFTEST, BUSY_WORKLOAD, SCENARIO

from pytest_basht import cli, paired

GATE = "trials.cpu_s:+25%"
#: fast runs: no idle measurement, and the hypothesis plugin (1.7 s to import) left out
PYTEST_ARGS = ("--basht-workload", "w.yaml", "-p", "no:hypothesispytest")


def git(path: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)


@pytest.fixture
def repo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(BUSY_CONFTEST)
    pytester.makefile(".yaml", w=BUSY_WORKLOAD + "energy: {idle_s: 0}\n")
    pytester.makepyfile(test_busy=SCENARIO)
    (pytester.path / "work.txt").write_text("0.15")
    (pytester.path / ".gitignore").write_text("reports/\n__pycache__/\n")
    git(pytester.path, "init", "-q")
    git(pytester.path, "-c", "user.email=ci@example.org", "-c", "user.name=ci", "add", "-A")
    git(pytester.path, "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit",
        "-qm", "baseline")
    return pytester


def run_paired(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.run(sys.executable, "-m", "pytest_basht.cli", "paired", "--baseline", "HEAD",
                 "--pairs", "5", "--work-dir", "out", *args, "--", *PYTEST_ARGS)


def verdict(p: pytest.Pytester) -> dict:
    return json.loads((p.path / "out" / "paired.json").read_text())


@pytest.mark.slow
def test_an_unchanged_paired_run_passes(repo):
    result = run_paired(repo, "--fail-on", GATE)
    out = result.stdout.str()
    assert result.ret == 0, out + result.stderr.str()
    assert result.outlines[-1] == ("basht gate: PASS — 1 scenario(s) within "
                                   "trials.cpu_s:+25% of baseline HEAD")
    report = verdict(repo)
    assert report["comparison"]["verdict"] == "pass" and report["pairs"] == 5
    sides = [(r["pair"], r["side"]) for r in report["runs"]]
    assert sides[:4] == [(1, "baseline"), (1, "candidate"), (2, "candidate"), (2, "baseline")]
    assert len(sides) == 10 and all(r["exit_status"] == 0 for r in report["runs"])
    [row] = [r for r in report["comparison"]["rows"] if r["metric"] == "trials.cpu_s"]
    assert row["n_old"] == 5 and row["noise"] == "pairs, 5"
    assert "## Runs" in (repo.path / "out" / "paired.md").read_text()
    tree = Path(report["baseline"]["tree"])  # elsewhere, and gone once the job is done
    assert repo.path not in tree.parents and not tree.parent.exists()
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo.path, text=True,
                               capture_output=True).stdout
    assert len(worktrees.strip().splitlines()) == 1, worktrees  # removed at the end


@pytest.mark.slow
def test_twice_the_work_fails_with_exit_1_and_one_line_per_regression(repo):
    (repo.path / "work.txt").write_text("0.3")  # the change under review, uncommitted
    result = run_paired(repo, "--fail-on", GATE)
    out = result.stdout.str()
    assert result.ret == 1, out + result.stderr.str()
    [line] = [line for line in result.outlines if line.startswith("REGRESSION ")]
    match = re.match(r"^REGRESSION test_busy\.py::test_busy trials\.cpu_s: old (\S+) s → new "
                     r"(\S+) s \(\+[\d.]+%, ×([\d.]+); threshold \+25%; noise ±[\d.]+% \(pairs, "
                     r"5\); Wilcoxon signed-rank \(5 pairs\), p < 0\.05\)$", line)
    assert match, line
    assert 1.8 < float(match[3]) < 2.2  # twice the CPU work per trial, baseline's from HEAD
    assert result.outlines[-1] == ("basht gate: FAIL — 1 regression(s) past "
                                   "trials.cpu_s:+25% against baseline HEAD")
    assert verdict(repo)["comparison"]["verdict"] == "fail"


@pytest.mark.parametrize("args,needle", [
    (["--pairs", "3", "--fail-on", GATE], "--pairs 3: the signed-rank test needs ≥ 5 pairs"),
    (["--fail-on", "trials.cpu:+5%"], "did you mean 'trials.cpu_s'?"),
    (["--", "--basht-report-dir", "x"], "--basht-report-dir in the pytest arguments"),
])
def test_bad_arguments_are_usage_errors(tmp_path, monkeypatch, capsys, args, needle):
    git(tmp_path, "init", "-q")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["paired", "--baseline", "HEAD", *args]) == paired.EXIT_USAGE
    assert needle in capsys.readouterr().err


def test_a_ref_that_is_not_a_commit_or_no_repository_is_a_usage_error(tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["paired", "--baseline", "HEAD", "--", "-q"]) == paired.EXIT_USAGE
    assert "not a git repository" in capsys.readouterr().err
    git(tmp_path, "init", "-q")
    assert cli.main(["paired", "--baseline", "nope", "--", "-q"]) == paired.EXIT_USAGE
    assert "--baseline nope: not a commit, branch or tag of the repository" in \
        capsys.readouterr().err


def test_each_side_imports_its_own_tree_first(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = paired.environment(tmp_path)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), str(tmp_path / "src"),
                                                   "/elsewhere"]

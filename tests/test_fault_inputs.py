"""Faults in what a run depends on and where it works (issue 20, classes 1 and 7): an input
deleted or corrupted during the run, a failure at the end of a scenario, a report directory
that fails while its files are written, and the work directory a SIGKILLed run leaves in
$TMPDIR."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from fake_trainable import CONFTEST, workload
from fault_kit import (
    FAULT_CONFTEST,
    ROOT,
    SCENARIO,
    Marks,
    SubPytest,
    log_measurements,
    marked_workload,
    wait_until,
)

import pytest_basht.workdir as workdir
from pytest_basht.errors import OptionError
from pytest_basht.report import files
from pytest_basht.report import json as report_json

# ----------------------------------------------------------------------- inputs mid-run

BRITTLE = CONFTEST + textwrap.dedent('''
    from pytest_basht.energy.estimate import EstimateMeter


    class Brittle(EstimateMeter):
        """A third party's meter whose peak power fails once the scenario has run."""

        name = "brittle"

        def max_power_w(self):
            raise RuntimeError("the counter went away")


    def pytest_basht_register_meters():
        return {"brittle": Brittle}
    ''')

INPUTS = """
from pathlib import Path

import pytest


@pytest.mark.basht(experiment="inputs")
def test_a_series_deleted(trial_runner):
    Path("grid.csv").unlink()
    assert trial_runner.run().trials


@pytest.mark.basht(experiment="inputs")
def test_b_series_corrupted(trial_runner):
    Path("grid.csv").write_bytes(b"\\0" * 16 + b"x" * 200_000)
    assert trial_runner.run().trials


@pytest.mark.basht(experiment="inputs", workload="brittle.yaml")
def test_c_fails_at_the_end(trial_runner):
    trial_runner.run()
"""


@pytest.mark.slow
def test_an_input_lost_mid_run_or_a_failure_at_the_end_costs_no_record(pytester, request):
    """The carbon series is read once, before any test: deleting or corrupting it during
    the run changes no record; a scenario whose end fails (here its meter) keeps its
    record, the failure noted, and the report is written."""
    pytester.makeconftest(BRITTLE)
    pytester.makefile(".csv", grid="timestamp,g\n1700000000,123\n")
    extra = "energy: {idle_s: 0, carbon_series: grid.csv}\n"
    pytester.makefile(".yaml", w=workload([1, 2], workers=1, epochs=1, extra=extra),
                      brittle=workload([1, 2], workers=1, epochs=1,
                                       extra="energy: {idle_s: 0, meter: brittle}\n"))
    pytester.makepyfile(test_inputs=INPUTS)
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history",
                                           "off")
    out = result.stdout.str()
    result.assert_outcomes(passed=2, failed=1)
    assert "Traceback" not in result.stderr.str()
    report = report_json.load(pytester.path / "reports" / "latest")
    by_name = {sc["test_id"].split("::")[-1]: sc for sc in report["scenarios"]}
    for name in ("test_a_series_deleted", "test_b_series_corrupted"):
        sc = by_name[name]
        assert sc["outcome"] == "passed" and len(sc["trials"]) == 2, out
        assert sc["energy"]["carbon"]["source"].startswith("series:")
        assert sc["metrics"]["cint_g_per_kwh"] == pytest.approx(123)
    broken = by_name["test_c_fails_at_the_end"]
    assert broken["outcome"] == "failed" and broken["status"] == "error"
    assert "the counter went away" in broken["error"]
    assert len(broken["trials"]) == 2 and all(t["state"] == "complete"
                                              for t in broken["trials"])
    assert "the energy trace could not be built" in broken["energy"]["meter"]["error"]
    kept = sum(len(sc["trials"]) for sc in report["scenarios"])
    log_measurements(request, 6, kept)
    assert kept == 6


# ----------------------------------------------------------------------- the report directory


def test_a_run_directory_that_fails_leaves_latest_where_it_was(tmp_path):
    root = tmp_path / "reports"
    old = root / "20000101T000000Z-old"
    old.mkdir(parents=True)
    (old / "report.json").write_text("{}")
    (root / "latest").symlink_to(old.name, target_is_directory=True)
    report = {"schema_version": report_json.SCHEMA_VERSION, "run_id": "20260101T000000Z-new",
              "status": "complete", "notes": [], "scenarios": []}
    (root / report["run_id"]).mkdir()
    (root / report["run_id"] / "report.json").mkdir()  # report.json cannot be written there
    with pytest.raises(OSError):
        files.write_report(report, root)
    assert (root / "latest").resolve() == old.resolve()  # not at a run without its report
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x").mkdir()
    (empty / "x" / "report.json").mkdir()
    fresh = {**report, "run_id": "x"}
    with pytest.raises(OSError):
        files.write_report(fresh, empty)
    assert not (empty / "latest").exists()
    assert (empty / "x").exists()  # it held something before: nothing of it is removed


def test_after_a_rescue_latest_points_at_the_written_report(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    wanted = tmp_path / "out"
    wanted.write_text("a file where the reports should go")
    report = {"schema_version": report_json.SCHEMA_VERSION, "run_id": "20260101T000000Z-r",
              "status": "complete", "notes": [], "scenarios": []}
    run_dir, line = files.rescue(report, wanted, OSError("gone"))
    assert run_dir is not None and "written to" in line
    latest = tmp_path / "tmp" / "basht-reports" / "latest"
    assert latest.resolve() == run_dir.resolve()
    assert report_json.load(latest)["run_id"] == report["run_id"]


def test_the_report_directory_is_checked_by_writing_in_it(tmp_path):
    files.check_report_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())
    with pytest.raises(OptionError, match="/proc/basht: No such file"):
        files.check_report_dir(Path("/proc/basht"))  # permission bits say it is writable


# ----------------------------------------------------------------------- work directories

HOLDER = """
import sys, time
from pytest_basht.workdir import WorkDir
work = WorkDir.create()
(work.path / "journal.log").write_text("x" * 1000)
print(work.path, flush=True)
time.sleep(600)
"""


def _holder(tmp: Path) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, env=env,
                            text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_only_provably_dead_work_directories_are_swept(tmp_path):
    live, live_dir = _holder(tmp_path)
    dead, dead_dir = _holder(tmp_path)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        unlocked = tmp_path / f"{workdir.PREFIX}being-made"  # no lock file yet: unknown
        unlocked.mkdir()
        other = tmp_path / "basht-dep1-old"  # not a run directory of this scheme
        other.mkdir()
        assert workdir.sweep(tmp_path) == [dead_dir]
        assert not dead_dir.exists()
        assert live_dir.exists() and unlocked.exists() and other.exists()
        assert workdir.held(next(live_dir.glob("*.lock")))
    finally:
        live.kill()
        live.wait()
    assert workdir.sweep(tmp_path) == [live_dir]  # its process has gone now


def test_a_joined_directory_lives_while_any_process_holds_it(tmp_path):
    own = workdir.WorkDir.create(tmp_path)
    joined = workdir.WorkDir.join(own.path)
    own_lock = own.lock_path
    os.close(own.lock_fd)  # as if the process that made it died
    own_lock.unlink()
    assert not workdir.dead(own.path)  # the other holder is alive
    joined.release()
    assert workdir.dead(own.path) is False  # no lock file left at all: not provably dead
    assert workdir.sweep(tmp_path) == []


def test_a_processs_run_work_is_made_on_first_use_and_removed_only_by_its_maker(
        tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = workdir.RunWork()
    assert list(tmp_path.glob(f"{workdir.PREFIX}*")) == []  # nothing until it is used
    path = mine.path()
    assert path.parent == tmp_path and mine.path() == path  # one directory, held
    named = tmp_path / f"{workdir.PREFIX}named"
    theirs = workdir.RunWork(named)  # an xdist worker joins what the controller named
    assert theirs.path() == named and len(list(named.glob("*.lock"))) == 1
    theirs.release()
    theirs.release()  # twice is harmless
    assert named.is_dir() and list(named.glob("*.lock")) == []  # not its to remove
    mine.release()
    assert not path.exists()
    workdir.RunWork().release()  # never used: nothing to let go of


@pytest.mark.slow
def test_a_sigkilled_runs_work_directory_is_cleaned_by_the_next_run(pytester):
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    pytester.makeconftest(FAULT_CONFTEST)
    pytester.makefile(".yaml", w=marked_workload([-5, 1], workers=1, epochs=1))
    pytester.makepyfile(test_faults=SCENARIO)
    marks = Marks(pytester.path / "marks")
    run = SubPytest(pytester.path, ["--basht-workload", "w.yaml"], marks,
                    env={"TMPDIR": str(tmp)})
    wait_until(lambda: marks.numbers("victim"), "the victim trial to start", proc=run)
    [left] = wait_until(lambda: list(tmp.glob(f"{workdir.PREFIX}*")), "its work directory",
                        proc=run)
    run.signal(signal.SIGKILL, group=True)
    run.wait()
    time.sleep(0.2)
    assert left.exists() and any(left.rglob("journal.log"))  # what SIGKILL leaves behind
    pytester.makefile(".yaml", quick=marked_workload([1], workers=1, epochs=1))
    again = SubPytest(pytester.path, ["--basht-workload", "quick.yaml"], Marks(
        pytester.path / "marks2"), env={"TMPDIR": str(tmp)})
    assert again.wait() == 0, again.output()
    assert not left.exists()
    assert not list(tmp.glob(f"{workdir.PREFIX}*"))  # and its own went at its end


HELD_BY_THE_CONTROLLER = """
import os
from pathlib import Path

import pytest_basht.workdir as workdir


def test_the_run_directory_outlives_its_workers_letting_go(request):
    run_dir = Path(request.config.workerinput["basht_run_dir"])
    # this worker has run no scenario and holds nothing; a sweep now (any run's, on this
    # machine) must not take the directory its other workers keep their leases in
    assert workdir.sweep() == []
    assert run_dir.exists() and not workdir.dead(run_dir)
    assert not any(p.name.startswith(f"{os.getpid()}-") for p in run_dir.glob("*.lock"))
"""


def test_an_xdist_runs_directory_is_held_by_its_controller_from_the_start(pytester,
                                                                         monkeypatch):
    """Issue 20, found by the fault table: the controller named the run's directory but
    held none of it, so between one worker letting go and the next joining, a sweep
    removed it with a running scenario's lease in it (an INTERNALERROR, exit 3)."""
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    pytester.makepyfile(test_held=HELD_BY_THE_CONTROLLER)
    run = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    run.assert_outcomes(passed=1)
    assert not list(tmp.glob(f"{workdir.PREFIX}*"))

"""Fault: where the report goes fails. The report directory is not writable (before the run:
a usage error; during it: the report is rescued to the temporary directory), a previous
report or the history store is corrupt (a fresh file, the old one untouched or set aside),
a part of the report cannot be built (the raw records are written), and a process killed
while it writes a report leaves the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fake_trainable import CONFTEST, workload
from fault_kit import ROOT, SCENARIO, log_measurements

from pytest_basht.report import json as report_json


@pytest.fixture
def fake(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1, 2], workers=1, epochs=1,
                                          extra="energy: {idle_s: 0}\n"))
    return pytester


def runs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                  and not p.name.startswith("."))


def test_an_unwritable_report_directory_is_a_usage_error_before_any_test(fake):
    (fake.path / "blocker").write_text("a file where a directory should be\n")
    fake.makepyfile(test_faults=SCENARIO)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-report-dir",
                                       "blocker/reports")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert ("--basht-report-dir: expected a directory it can write reports in "
            f"({fake.path / 'blocker'} is not a directory)") in err
    assert "Traceback" not in err + result.stdout.str()
    assert "passed" not in result.stdout.str()  # nothing ran


@pytest.mark.slow
def test_a_report_directory_that_fails_during_the_run_is_rescued(fake, monkeypatch, request):
    fake.makepyfile(test_faults=SCENARIO + textwrap.dedent("""

        def test_the_disk_goes(tmp_path):
            import shutil
            from pathlib import Path
            shutil.rmtree("out", ignore_errors=True)
            Path("out").write_text("no longer a directory")
        """))
    tmp = fake.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-report-dir",
                                       "out/reports", "--basht-history", "off")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, out
    result.assert_outcomes(passed=2)
    rescue = tmp / "basht-reports"
    assert f"could not write the report to {fake.path / 'out' / 'reports'}" in out
    assert f"written to {rescue} instead" in out
    [run] = runs(rescue)
    report = report_json.load(run)
    [sc] = report["scenarios"]
    assert sc["outcome"] == "passed" and len(sc["trials"]) == 2
    assert any("written to" in n for n in report["notes"])
    assert (run / "report.md").exists() and (rescue / "latest").resolve() == run.resolve()
    assert f"report: {run}/report.json" in out
    log_measurements(request, 2, len(sc["trials"]))


@pytest.mark.slow
def test_a_corrupt_previous_report_and_latest_directory_give_a_fresh_report(fake):
    reports = fake.path / "reports"
    old = reports / "20000101T000000Z-dead"
    old.mkdir(parents=True)
    (old / "report.json").write_text('{"schema_version": 1, "run_id": "20000101T0')  # cut
    (reports / "latest").mkdir()  # a directory where the symlink goes (copied reports)
    (reports / "latest" / "keep.txt").write_text("mine")
    fake.makepyfile(test_faults=SCENARIO)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history", "off")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    new = [r for r in runs(reports) if r != old and r.name != "latest"]
    assert len(new) == 1
    report = report_json.load(new[0])
    assert report["scenarios"][0]["outcome"] == "passed"
    assert any(f"{reports / 'latest'} not pointed at this run" in n for n in report["notes"])
    assert (reports / "latest" / "keep.txt").read_text() == "mine"  # nothing of theirs lost
    assert (old / "report.json").read_text().endswith("20000101T0")
    with pytest.raises(report_json.ReportError, match="the file is corrupt"):
        report_json.load(old)


@pytest.mark.slow
def test_a_damaged_history_store_is_set_aside_for_a_fresh_one(fake):
    store = fake.path / ".basht" / "history.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))  # a torn page
    fake.makepyfile(test_faults=SCENARIO)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-save", "main")
    out = result.stdout.str()
    result.assert_outcomes(passed=1)
    assert result.ret == 0, out
    [aside] = store.parent.glob("history.sqlite.corrupt-*")
    assert aside.read_bytes().startswith(b"SQLite format 3")
    assert f"a fresh store: the old one was damaged and is kept as {aside}" in out
    from pytest_basht.report.history import History

    with History(f"sqlite:///{store}") as history:
        [entry] = history.runs()
        assert entry.name == "main"
    # looking a baseline up in a damaged store is an error, and the store is left alone
    store.write_bytes(b"not a database at all" * 100)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-compare", "main")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot open it (file is not a database)" in result.stderr.str()
    assert store.read_bytes().startswith(b"not a database")


@pytest.mark.slow
def test_a_report_part_that_fails_leaves_the_raw_records(fake):
    fake.makeconftest(CONFTEST + textwrap.dedent("""
        def pytest_basht_update_report(config, report):
            raise RuntimeError("a third-party hook's bug")

        def pytest_basht_update_scenario(config, scenario):
            raise ValueError("another one")
        """))
    fake.makepyfile(test_faults=SCENARIO)
    result = fake.runpytest_subprocess("--basht-workload", "w.yaml", "--basht-history", "off")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, out
    assert "the full report could not be built (RuntimeError: a third-party hook's bug)" in out
    [run] = runs(fake.path / "reports")
    report = report_json.load(run)
    assert report["status"] == "error"
    [sc] = report["scenarios"]
    assert sc["outcome"] == "passed" and len(sc["trials"]) == 2 and sc["metrics"]["energy_j"]
    assert any("pytest_basht_update_scenario failed" in n for n in report["notes"])
    assert "report.json holds every record" in (run / "report.md").read_text() or \
        "Table 2" in (run / "report.md").read_text()


# ----------------------------------------------------------------------------- atomic writes

WRITER = """
import json, os, sys, time
from pathlib import Path
from pytest_basht.report.atomic import write_atomic

path, mode = Path(sys.argv[1]), sys.argv[2]


class SlowDisk:
    # writes in 64 KiB pieces a millisecond apart: a file is half-written most of the
    # time, for both writers alike

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, text):
        for i in range(0, len(text), 65536):
            self.fh.write(text[i:i + 65536])
            self.fh.flush()
            time.sleep(0.001)

    def __getattr__(self, name):
        return getattr(self.fh, name)


fdopen = os.fdopen
os.fdopen = lambda *a, **k: SlowDisk(fdopen(*a, **k))  # the file write_atomic writes
blob = "x" * 4_000_000
for gen in range(1, 10**9):
    text = json.dumps({"gen": gen, "blob": blob, "end": True})
    if mode == "atomic":
        write_atomic(path, text)
    else:  # a plain open().write(): the old content is gone before the new is in
        with SlowDisk(open(path, "w")) as fh:
            fh.write(text)
    print(gen, flush=True)
"""


def kill_while_writing(tmp_path: Path, mode: str, kills: int) -> list[str]:
    """Start a writer that rewrites report.json forever, SIGKILL it at a random moment,
    read what is left; ``kills`` times. Returns what was found each time."""
    path = tmp_path / mode / "report.json"
    path.parent.mkdir()
    rng = random.Random(1234)
    found = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # one whole report written: from now on there is an old one
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        try:
            data = json.loads(path.read_text())
            found.append("whole" if data.get("end") and len(data["blob"]) == 4_000_000
                         else "wrong")
        except (json.JSONDecodeError, FileNotFoundError):
            found.append("partial")
    return found


@pytest.mark.slow
def test_a_process_killed_mid_write_leaves_a_whole_report(tmp_path, request):
    atomic = kill_while_writing(tmp_path, "atomic", 25)
    assert atomic == ["whole"] * 25
    leftovers = [p.name for p in (tmp_path / "atomic").iterdir() if p.name != "report.json"]
    assert all(n.startswith(".report.json.") and n.endswith(".tmp") for n in leftovers)
    # the same check on a plain write catches the half-written file it leaves
    plain = kill_while_writing(tmp_path, "plain", 10)
    assert "partial" in plain, plain
    log_measurements(request, len(atomic), atomic.count("whole"))

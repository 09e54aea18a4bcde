"""What the fault tests share: a trainable that leaves marks, sub-pytests run as real
processes (to signal and kill), process checks, and the log the fault table reads.

The ``marked`` trainable is the fake one (``fake_trainable``) plus marks in the folder
``$BASHT_FAULT_DIR``: ``started-N`` (its worker's pid) when trial N starts, ``done-N`` when
it has finished (its record is then on its way to the controller). ``x = -5`` writes its pid
to ``victim-N`` and sleeps, for a test to kill it (once per trial number: a test that
pytest-xdist runs again after a crash goes through); ``x = -7`` allocates past its memory
cap, ``-8`` hangs and ``-9`` raises — each after an epoch or two whose measurements must be
kept (``FAULTS``). At the end of the sub-pytest the conftest writes the
processes still running under it to ``children-at-exit.json``: after undeploy there are
none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from fake_trainable import CONFTEST, compose

from pytest_basht.report import json as report_json

ROOT = Path(__file__).parents[1]
# x: epochs trained before the fault (-5 killed, -7 past its memory cap, -8 hangs, -9 raises)
FAULTS = {-5: 1, -7: 2, -8: 2, -9: 2}

FAULT_CONFTEST = CONFTEST + '''
import json
import os

import psutil


class Marked(Quadratic):
    name = "marked"

    def run_trial(self, ctx):
        marks = Path(os.environ["BASHT_FAULT_DIR"])
        (marks / f"started-{ctx.number}").write_text(str(os.getpid()))
        x = ctx.params["x"]
        if x in FAULTS:
            for epoch in range(FAULTS[x]):  # measurements made before the fault
                with ctx.phase("trial.train", epoch=epoch):
                    time.sleep(0.1)
                ctx.report(epoch, 0.1 * (epoch + 1))
            victim = marks / f"victim-{ctx.number}"
            if x == -5 and not victim.exists():  # once: a re-run of the test goes through
                victim.write_text(str(os.getpid()))
                time.sleep(60)
            if x == -7:
                hog = np.ones(80_000_000)
                time.sleep(10)
                del hog
            if x == -8:
                time.sleep(60)
            if x == -9:
                raise RuntimeError(f"boom after {FAULTS[x]} epochs")
        value = super().run_trial(ctx)
        (marks / f"done-{ctx.number}").write_text(repr(value))
        return value


FAULTS = __FAULTS__


def pytest_basht_register_trainables():
    return {"quadratic": Quadratic, "marked": Marked}


def pytest_unconfigure(config):
    marks = os.environ.get("BASHT_FAULT_DIR")
    if not marks:
        return
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child.cmdline())
        except psutil.Error:
            pass
    Path(marks, "children-at-exit.json").write_text(json.dumps(alive))
'''.replace("__FAULTS__", repr(FAULTS))


#: the scenario every fault test runs: one basht test over the workload it is given
SCENARIO = """
import pytest


@pytest.mark.basht(experiment="faults")
def test_scenario(trial_runner):
    assert trial_runner.run().trials
"""


def marked_workload(xs: list[Any], *, workers: int = 2, epochs: int = 2, sleep: float = 0.05,
                    memory_mb: int = 1500, extra: str = "") -> str:
    """A grid over ``x`` (and one ``sleep`` per epoch) for the marked trainable."""
    return compose(f"name: faults\nmodel: {{name: marked}}\ntraining: {{epochs: {epochs}}}\n"
                   f"search: {{space: {{x: {xs}, sleep: [{sleep}]}}}}\ngoal: {{target: 0.5}}\n"
                   f"workers: {{count: {workers}, cpu: 1, memory_mb: {memory_mb}}}\n"
                   f"energy: {{idle_s: 0}}\n", extra)


class Marks:
    """The marks a sub-pytest's trials leave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def numbers(self, kind: str) -> set[int]:
        return {int(p.name.split("-", 1)[1]) for p in self.path.glob(f"{kind}-*")}

    def pid(self, kind: str, number: int) -> int:
        return int((self.path / f"{kind}-{number}").read_text())

    def children_at_exit(self) -> list[list[str]]:
        return json.loads((self.path / "children-at-exit.json").read_text())


class SubPytest:
    """pytest in a fresh process (its own session and process group), so that a test can
    send it signals as a terminal, a CI runner or an init system would."""

    def __init__(self, cwd: Path, args: list[str], marks: Marks,
                 env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.marks = marks
        self.log = cwd / "sub-pytest.log"
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "BASHT_FAULT_DIR": str(marks.path), "PYTEST_ADDOPTS": "", **(env or {})}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                 "--basht-history", "off", *args], cwd=cwd, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
                start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int, *, group: bool) -> None:
        if group:
            os.killpg(self.pid, sig)
        else:
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"the sub-pytest hung; its output:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until(check: Callable[[], Any], what: str, timeout: float = 120.0,
               proc: SubPytest | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"the sub-pytest ended before {what}:\n{proc.output()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}"
                         + (f":\n{proc.output()}" if proc is not None else ""))


def sut_workers(parent: int) -> list[psutil.Process]:
    """Live worker processes of the optuna SUT whose controller is ``parent``."""
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if ("pytest_basht.sut.worker" in cmd and "--parent" in cmd
                and cmd[cmd.index("--parent") + 1] == str(parent)
                and proc.info["status"] != psutil.STATUS_ZOMBIE):
            out.append(proc)
    return out


def reports(root: Path) -> list[dict[str, Any]]:
    """Every report under a report directory (each run folder, not ``latest``)."""
    if not root.is_dir():
        return []
    return [report_json.load(p) for p in sorted(root.iterdir())
            if p.is_dir() and not p.is_symlink()]


def log_measurements(request: pytest.FixtureRequest, finished: int, kept: int) -> None:
    """Tell the fault table (``scripts/fault_table.py``, through ``$BASHT_FAULT_LOG``) how
    many measurements this run had finished before its fault and how many the report
    kept. The test itself asserts that they are equal."""
    path = os.environ.get("BASHT_FAULT_LOG")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"test": request.node.nodeid, "finished": finished,
                             "kept": kept}) + "\n")

"""The live progress line while a scenario runs, and what the end of the run is doing.

The SUTs keep a tally (``sut.base.Progress``) and hand it to a callback as trials end;
the callback only notes it here. A reporter thread writes the line through pytest's
terminal reporter: on a TTY one line, rewritten in place (carriage return) twice a
second; elsewhere (CI logs) a new line every ``--basht-progress-every`` seconds. Nothing
under ``-q -q``. Under pytest-xdist the workers have no terminal and the controller does
not see their tallies, so a distributed run (``-n N``) shows no progress line; the
controller, which writes the report, shows its steps.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.report import terminal
from pytest_basht.sut.base import Progress, ProgressCallback

TTY_INTERVAL_S = 0.5  # a line rewritten in place can change often without filling a log


@dataclass
class _Scenario:
    """The scenario whose trials run now: its tally, its meter and where both started."""

    progress: Progress
    monitor: EnergyMonitor
    start_s: float
    start_j: float


def _joules(monitor: EnergyMonitor) -> float:
    joules = monitor.timeline.joules
    return joules[-1] if joules else 0.0


class ProgressReporter:
    """Writes the progress line while a scenario runs (``line_for`` makes the SUTs'
    callback for a meter) and the end of the run's steps (``say``)."""

    def __init__(self, config: pytest.Config, every_s: float) -> None:
        self.config = config
        self.every_s = every_s
        # read now, in pytest_configure: while a test runs, its output is captured and the
        # terminal's size cannot be read
        self.width = shutil.get_terminal_size().columns
        self._lock = threading.Lock()
        self._now: _Scenario | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False  # a TTY line is on screen, to be ended before other output
        self._said = False  # the end of the run has said what it does

    @functools.cached_property
    def tr(self) -> Any:
        """pytest's terminal reporter (registered after this plugin's configure: looked up
        on first use)."""
        return self.config.pluginmanager.get_plugin("terminalreporter")

    @functools.cached_property
    def enabled(self) -> bool:
        """Not under -qq, not without a terminal reporter, not in an xdist worker (the
        controller runs no scenario: it only says what the end of the run writes)."""
        config = self.config
        return (self.tr is not None and config.get_verbosity() > -2
                and not hasattr(config, "workerinput"))

    @functools.cached_property
    def tty(self) -> bool:
        return bool(self.tr is not None and self.tr.isatty())

    def line_for(self, monitor: EnergyMonitor) -> ProgressCallback:
        """The callback the SUTs of this meter call with their tally."""

        def note(progress: Progress) -> None:
            if not self.enabled:
                return
            with self._lock:
                if self._now is None or self._now.progress is not progress:
                    self._now = _Scenario(progress, monitor, time.monotonic(),
                                          _joules(monitor))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="basht-progress",
                                                    daemon=True)
                    self._thread.start()

        return note

    def line(self) -> str | None:
        """The line for the scenario running now (None: none is)."""
        now = self._now
        if now is None:
            return None
        return terminal.progress_line(now.progress, _joules(now.monitor) - now.start_j,
                                      now.monitor.source, time.monotonic() - now.start_s)

    def end_scenario(self) -> None:
        """The scenario's test is over: its last line stays (on a TTY, ended), and no more
        are written until the next scenario's trials start."""
        with self._lock:
            if self._now is not None and self.tty:
                self._write(self.line())
            if self._shown:
                self._emit(lambda: self.tr.write("\n"))
                self._shown = False
            self._now = None

    def say(self, text: str) -> None:
        """A step of the end of the run (``writing report.json …``), on a line of its own."""
        if not self.enabled:
            return
        with self._lock:
            if not self._said:  # pytest's line of test outcomes may still be open
                self._emit(lambda: self.tr.write("\n"))
                self._emit(lambda: self.tr.write_sep("-", "basht: the report"))
                self._said, self._shown = True, False
            self._emit(lambda: self.tr.write_line(f"[basht] {text}"))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(TTY_INTERVAL_S if self.tty else self.every_s):
            with self._lock:
                self._write(self.line())

    def _write(self, line: str | None) -> None:
        if line is None:
            return
        if self.tty:  # one screen row, padded over a longer predecessor: \r rewrites it
            width = self.width - 1
            self._emit(lambda: self.tr.write("\r" + line[:width].ljust(width)))
            self._shown = True
        else:
            self._emit(lambda: self.tr.write_line(line))

    def _emit(self, write: Any) -> None:
        with self._uncaptured():
            write()
            self.tr.flush()

    @contextlib.contextmanager
    def _uncaptured(self) -> Iterator[None]:
        """pytest captures the test's output; the line goes to the terminal past it."""
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        if capman is None:
            yield
            return
        with capman.global_and_fixture_disabled():
            yield

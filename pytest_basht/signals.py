"""Stop signals while a pytest-basht session runs.

SIGTERM (a CI job cancelled, ``docker stop``, a batch scheduler's time limit) kills Python
outright by default: nothing is undeployed and no report is written. While a session runs,
SIGTERM ends it the way Ctrl-C does (a ``KeyboardInterrupt``), so the trials finished so far
are kept, the workers are stopped and the report says ``interrupted``. Once the run is
ending — after a first signal, or at its normal end — one more SIGINT or SIGTERM is held
back (with a message), so that an impatient second Ctrl-C does not cost the report; a third
ends the process as usual. The handlers in place before are restored at the end.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (pytest treats it as Ctrl-C)."""


class StopSignals:
    """Installs the handlers (main thread only) and remembers what it replaced."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.received: list[str] = []
        self.finishing = False
        self.held = 0

    @property
    def installed(self) -> bool:
        return bool(self.previous)

    def install(self) -> bool:
        """Take over SIGINT and SIGTERM; False where signals cannot be handled (a thread)."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return self.installed
        for sig in STOP_SIGNALS:
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        return True

    def finish(self) -> None:
        """The run is ending: hold back the next signal so that the report gets written."""
        self.finishing = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if self.finishing and self.held == 0:
            self.held += 1
            sys.stderr.write(f"\npytest-basht: {name} received while the run ends; finishing "
                             "the undeploy and the report first (send it again to abandon "
                             "them)\n")
            return
        self.finishing = True  # the run ends now: the next signal is held back
        raise Interrupted(f"{name} received")

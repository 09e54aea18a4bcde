"""Phase names and the recorder of timed spans (Basht's annotation wrappers).

``phase(name)`` works as a context manager and as a decorator. It records a span into the
recorder active in the current context; the harness activates one in every worker and
around every trial, so a user's own trainable marks its phases the same way the built-in
ones do. Outside an active recorder it only times and records nothing.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import Enum
from typing import Any, TypeVar

from pytest_basht.records import Span, mono_ns, utc_now


class Phase(str, Enum):
    """Basht's lifecycle phases, in order."""

    DEPLOY = "deploy"
    SETUP = "setup"
    TRIAL_LOAD = "trial.load"
    TRIAL_TRAIN = "trial.train"
    TRIAL_VALIDATE = "trial.validate"
    RESULT_COLLECTION = "result_collection"
    TEST = "test"
    METRIC_COLLECTION = "metric_collection"
    UNDEPLOY = "undeploy"

    def __str__(self) -> str:
        return self.value


PHASES: tuple[str, ...] = tuple(p.value for p in Phase)
TRIAL_PHASES: tuple[str, ...] = (Phase.TRIAL_LOAD.value, Phase.TRIAL_TRAIN.value,
                                 Phase.TRIAL_VALIDATE.value)

Clock = Callable[[], tuple[int, float]]


def process_clock() -> tuple[int, float]:
    """(monotonic ns, CPU seconds of this process, all threads)."""
    return mono_ns(), time.process_time()


class Recorder:
    """Collects spans from any thread; the clock decides what CPU time a span counts."""

    def __init__(self, *, worker: int | None = None, clock: Clock = process_clock,
                 sink: Callable[[Span], None] | None = None) -> None:
        self.worker = worker
        self.clock = clock
        self.sink = sink
        self.spans: list[Span] = []
        self.trial: int | None = None
        self._lock = threading.Lock()

    def add(self, span: Span) -> None:
        with self._lock:
            self.spans.append(span)
        if self.sink is not None:
            self.sink(span)

    def take(self) -> list[Span]:
        """Remove and return everything recorded so far."""
        with self._lock:
            spans, self.spans = self.spans, []
        return spans

    @contextmanager
    def span(self, name: str | Phase, *, epoch: int | None = None) -> Iterator[Span]:
        phase_name = _check_phase(name)
        t0, c0 = self.clock()
        span = Span(phase=phase_name, start_ns=t0, end_ns=t0, start_utc=utc_now(),
                    worker=self.worker, trial=self.trial, epoch=epoch)
        try:
            yield span
        finally:
            t1, c1 = self.clock()
            span.end_ns, span.end_utc, span.cpu_s = t1, utc_now(), max(0.0, c1 - c0)
            self.add(span)


_active: ContextVar[Recorder | None] = ContextVar("basht_recorder", default=None)


def active_recorder() -> Recorder | None:
    return _active.get()


@contextmanager
def recording(recorder: Recorder) -> Iterator[Recorder]:
    """Make ``recorder`` the one ``phase()`` records into, for this context."""
    token = _active.set(recorder)
    try:
        yield recorder
    finally:
        _active.reset(token)


def _check_phase(name: str | Phase) -> str:
    value = name.value if isinstance(name, Phase) else str(name)
    if value not in PHASES:
        raise ValueError(f"unknown phase {value!r}; phases are: {', '.join(PHASES)}")
    return value


F = TypeVar("F", bound=Callable[..., Any])


class phase:
    """Time a stretch of work as one of Basht's phases."""

    def __init__(self, name: str | Phase, *, epoch: int | None = None) -> None:
        self.name = _check_phase(name)
        self.epoch = epoch
        self._stack: list[Any] = []

    def __enter__(self) -> Span | None:
        recorder = _active.get()
        if recorder is None:
            self._stack.append(None)
            return None
        cm = recorder.span(self.name, epoch=self.epoch)
        self._stack.append(cm)
        return cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        cm = self._stack.pop()
        if cm is not None:
            cm.__exit__(*exc)

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with phase(self.name, epoch=self.epoch):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

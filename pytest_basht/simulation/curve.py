"""One trial's answer, epoch by epoch: what a replay charges and reports, and what is
left of it when the trial timeout kills it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Curve:
    """Per epoch: the validation value reported after it and what the epoch cost.

    ``times_ns`` partition the trial's wall time: epoch 0 includes loading, the last epoch
    the tail after the last report. A ``None`` value reports nothing (a failing stretch).
    ``state`` is ``complete``, ``failed`` (the trial fails after its last epoch) or
    ``truncated`` (recorded only this far: a pruner must stop it by then).
    """

    values: tuple[float | None, ...]
    times_ns: tuple[int, ...]
    energies_j: tuple[float, ...]
    cpu_s: tuple[float, ...]
    validate_ns: tuple[int, ...]
    state: str = "complete"
    error: str | None = None
    origin: str = "table"
    test_value: float | None = None

    def __post_init__(self) -> None:
        n = len(self.times_ns)
        if not (len(self.values) == len(self.energies_j) == len(self.cpu_s)
                == len(self.validate_ns) == n) or n == 0:
            raise ValueError("a curve needs one value, time, energy, CPU and validation "
                             "time per epoch, and at least one epoch")

    @property
    def epochs(self) -> int:
        return len(self.times_ns)

    def head(self, epochs: int) -> Curve:
        """The first ``epochs`` epochs as a complete curve."""
        return Curve(self.values[:epochs], self.times_ns[:epochs], self.energies_j[:epochs],
                     self.cpu_s[:epochs], self.validate_ns[:epochs], "complete", None,
                     self.origin, self.test_value)

    def cut(self, limit_ns: int | None) -> Curve:
        """The curve of a trial killed ``limit_ns`` after it started (``trial_timeout_s``):
        the epochs done by then, and the part of the next one that ran, reporting nothing
        and failing. Unchanged when the trial ends in time (or there is no limit)."""
        if limit_ns is None:
            return self
        done = 0
        for i, t in enumerate(self.times_ns):
            if done + t <= limit_ns:
                done += t
                continue
            part = limit_ns - done
            share = part / t
            return Curve((*self.values[:i], None), (*self.times_ns[:i], part),
                         (*self.energies_j[:i], self.energies_j[i] * share),
                         (*self.cpu_s[:i], self.cpu_s[i] * share),
                         (*self.validate_ns[:i], 0), "failed",
                         f"trial timeout: ran past {limit_ns / 1e9:g} s (killed)",
                         self.origin, self.test_value)
        return self

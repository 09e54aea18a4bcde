"""Errors a user can act on.

They subclass ``pytest.UsageError`` so that pytest reports them as one paragraph with exit
code 4 and no traceback, wherever in the session they surface.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest


class BashtExposureWarning(UserWarning):
    """Something of a run reaches past this machine without protection (live metrics on
    every interface, say)."""


class BashtUsageError(pytest.UsageError):
    """Bad input from the user: a workload file, an option, a marker."""


def brief(value: object, limit: int = 200) -> str:
    """A value as an error message shows it: its repr, cut short (a fuzzed or pasted value
    can be a megabyte)."""
    try:
        text = repr(value)
    except ValueError:  # an integer past Python's limit on digits cannot be written out
        return f"<an integer of {value.bit_length():,} bits>" if isinstance(value, int) \
            else f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


class WorkloadError(BashtUsageError):
    """A workload file (or an override of it) is invalid; the message names file and key.

    One error may carry the file's other problems (``more``): the message then lists them
    after the first, each with its file, key, what was expected and what was found."""

    def __init__(self, source: str, key: str, expected: str, got: object = None,
                 more: Sequence[WorkloadError] = ()) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        self.got = got
        self.more = tuple(more)
        shown = "" if got is None else f", got {brief(got)}"
        where = f"{source}: " if source else ""
        self.line = f"{where}{key or '<document>'}: expected {expected}{shown}"
        others = "".join(f"\n  {p.line}" for p in self.more)
        count = f"\nand {len(self.more)} more problem(s) found with it:" if self.more else ""
        super().__init__(self.line + count + others)

    @property
    def problems(self) -> tuple[WorkloadError, ...]:
        """This problem and the others found with it."""
        return (self, *self.more)

    @classmethod
    def of(cls, problems: Sequence[WorkloadError]) -> WorkloadError:
        """One error for several problems (the first's key, the rest in ``more``)."""
        first = problems[0]
        return cls(first.source, first.key, first.expected, first.got,
                   [p for found in problems[1:] for p in found.problems])

    def relabel(self, source: str) -> WorkloadError:
        """The same problems, named as found in ``source`` (a file with overrides)."""
        return WorkloadError(source, self.key, self.expected, self.got,
                             [p.relabel(source) for p in self.more])


class OptionError(BashtUsageError):
    """A ``--basht-*`` option or ``basht_*`` ini key has a malformed value."""

    def __init__(self, option: str, expected: str, got: object) -> None:
        self.option = option
        super().__init__(f"{option}: expected {expected}, got {brief(got)}")


class RegistryError(BashtUsageError):
    """A name in a workload that no plugin registered, or a name registered twice."""

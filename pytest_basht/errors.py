"""Errors a user can act on.

They subclass ``pytest.UsageError`` so that pytest reports them as one paragraph with exit
code 4 and no traceback, wherever in the session they surface.
"""

from __future__ import annotations

import pytest


class BashtUsageError(pytest.UsageError):
    """Bad input from the user: a workload file, an option, a marker."""


class WorkloadError(BashtUsageError):
    """A workload file (or an override of it) is invalid; the message names file and key."""

    def __init__(self, source: str, key: str, expected: str, got: object = None) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        self.got = got
        shown = "" if got is None else f", got {got!r}"
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key or '<document>'}: expected {expected}{shown}")


class OptionError(BashtUsageError):
    """A ``--basht-*`` option or ``basht_*`` ini key has a malformed value."""

    def __init__(self, option: str, expected: str, got: object) -> None:
        self.option = option
        super().__init__(f"{option}: expected {expected}, got {got!r}")


class RegistryError(BashtUsageError):
    """A name in a workload that no plugin registered, or a name registered twice."""

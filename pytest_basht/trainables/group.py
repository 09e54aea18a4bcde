"""Trainables that train a group of trials at once: the protocol the SUT's grouped
ask/tell (``sut.group``) drives when a workload sets ``search.fusion`` or
``search.scaling``.

A trainable that can train groups implements :class:`FusableTrainable`:
``group_key(params)`` says which configurations can be trained together (one shape),
``run_group(group)`` trains them together at width / ``group.scaling``, reporting each
member's validation values through its :class:`GroupContext`. Hydro's fused feed-forward
nets (``hydro.fused``) are one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from pytest_basht.trainables.base import Trainable, TrialContext
from pytest_basht.workload import Workload


class GroupContext(ABC):
    """What a fusable trainable sees of a group of trials trained together."""

    members: Sequence[TrialContext]
    workload: Workload
    scaling: int

    @abstractmethod
    def phase(self, name: str, *, epoch: int | None = None) -> AbstractContextManager[Any]:
        """A phase of the whole group, charged to its live members in equal shares."""

    @abstractmethod
    def report(self, index: int, epoch: int, value: float) -> bool:
        """Member ``index``'s validation value; False when the pruner stopped it."""

    @abstractmethod
    def fail(self, index: int, error: str) -> None:
        """Member ``index`` failed (diverged, invalid hyperparameters); train it no more."""


class FusableTrainable(Trainable):
    """A trainable that trains several configurations of one shape together."""

    @abstractmethod
    def group_key(self, workload: Workload, params: dict[str, Any]) -> str:
        """Configurations with equal keys can be fused (same shape and batch size)."""

    @abstractmethod
    def run_group(self, group: GroupContext) -> dict[int, float]:
        """Train ``group.members`` together at width / ``group.scaling``; return the final
        validation value of every member still training at the end, by index."""

"""The workload's search space as a library sees it, and back.

Every dimension becomes one of three kinds each library has: a float range, an int range
(either with ``log``), or a categorical of ``n`` labels. A list of numbers and a range with
a step become an int range over their positions (0 … n − 1), so the library keeps their
order; any other list becomes a categorical over the positions' labels (``"0"``, ``"1"``
…), so values of any type survive the round trip. ``decode`` turns a library's config
back into the workload's values, exactly those ``Dimension.grid_values()`` lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_basht.workload import Dimension


@dataclass(frozen=True)
class Coded:
    """One dimension as a library sees it."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    values: tuple[Any, ...] | None = None  # an indexed dimension's values, by position

    @property
    def labels(self) -> list[str]:
        """A categorical's labels: the positions of its values."""
        assert self.values is not None
        return [str(i) for i in range(len(self.values))]

    def decode(self, raw: Any) -> Any:
        if self.values is not None:
            return self.values[int(raw)]
        if self.kind == "int":
            return int(raw)
        return min(self.high, max(self.low, float(raw)))


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def code(dim: Dimension) -> Coded:
    if dim.choices is not None:
        values = list(dim.choices)
        if _numeric(values) and len(values) > 1:
            return Coded(dim.name, "int", 0, len(values) - 1, values=tuple(values))
        return Coded(dim.name, "categorical", values=tuple(values))
    assert dim.low is not None and dim.high is not None
    if dim.step is not None:
        grid = dim.grid_values()
        assert grid is not None
        if len(grid) == 1:
            return Coded(dim.name, "categorical", values=tuple(grid))
        return Coded(dim.name, "int", 0, len(grid) - 1, values=tuple(grid))
    return Coded(dim.name, "int" if dim.integer else "float", dim.low, dim.high, dim.log)


def coded(space: tuple[Dimension, ...]) -> list[Coded]:
    return [code(d) for d in space]


def decode(codings: list[Coded], config: Mapping[str, Any]) -> dict[str, Any]:
    """A library's config as the workload's params, in the space's order."""
    return {c.name: c.decode(config[c.name]) for c in codings}


def configspace(codings: list[Coded], seed: int) -> Any:
    """A ConfigSpace ``ConfigurationSpace`` (SMAC3, DEHB)."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer

    cs = ConfigurationSpace(seed=seed)
    hps: list[Any] = []
    for c in codings:
        if c.kind == "categorical":
            hps.append(Categorical(c.name, c.labels))
        elif c.kind == "int":
            hps.append(Integer(c.name, (int(c.low), int(c.high)), log=c.log))
        else:
            hps.append(Float(c.name, (c.low, c.high), log=c.log))
    cs.add(hps)
    return cs

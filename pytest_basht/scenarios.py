"""Scenarios as tests: ``vary(...)`` parametrization and the ``basht`` marker.

``vary("workers.count", [1, 2, 4, 8])`` is a ``pytest.mark.parametrize`` of the
``basht_variant`` fixture with ids like ``workers.count=2``; stacked ``vary`` marks on one
test combine into their product. ``@pytest.mark.basht(workload=..., experiment=...,
overrides=...)`` takes keyword arguments only and rejects unknown ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_basht.errors import BashtUsageError

VARIANT = "basht_variant"


def _id(value: Any) -> str:
    return str(value).replace(" ", "")


def vary(path: str | Mapping[str, Sequence[Any]], values: Sequence[Any] | None = None, *,
         ids: Sequence[str] | None = None) -> pytest.MarkDecorator:
    """One scenario per value of a workload variable (dotted path), or per combination."""
    if isinstance(path, Mapping):
        if values is not None:
            raise TypeError("vary({path: values, ...}) takes no second argument")
        grid = {str(k): list(v) for k, v in path.items()}
    else:
        if values is None:
            raise TypeError("vary(path, values) needs the values")
        grid = {path: list(values)}
    for key, vals in grid.items():
        if not key or not all(key.split(".")):
            raise TypeError(f"vary: {key!r} is not a dotted workload path like 'workers.count'")
        if not vals:
            raise TypeError(f"vary: no values for {key!r}")
    keys = list(grid)
    variants = [dict(zip(keys, combo, strict=False)) for combo in itertools.product(*grid.values())]
    labels = list(ids) if ids is not None else [
        "-".join(f"{k}={_id(v)}" for k, v in var.items()) for var in variants]
    if len(labels) != len(variants):
        raise TypeError(f"vary: {len(labels)} ids for {len(variants)} scenarios")
    return pytest.mark.parametrize(VARIANT, variants, ids=labels, indirect=True)


def _is_variant(mark: pytest.Mark) -> bool:
    return mark.name == "parametrize" and bool(mark.args) and mark.args[0] == VARIANT


def merge_stacked(metafunc: pytest.Metafunc) -> None:
    """Combine several ``vary`` marks on one test into one parametrization (their product).

    Ids follow pytest's own stacking order: the mark nearest the function comes first.
    """
    definition = metafunc.definition
    chain = [m for m in definition.iter_markers("parametrize") if _is_variant(m)]
    if len(chain) < 2:
        return
    own = [m for m in definition.own_markers if _is_variant(m)]
    if len(own) != len(chain):
        raise BashtUsageError(f"{definition.nodeid}: vary() is used on both the test and its "
                              "class or module; combine them into one vary({path: values, ...})")
    variants: list[dict[str, Any]] = [{}]
    labels: list[str] = [""]
    for mark in own:
        vals, ids = mark.args[1], mark.kwargs.get("ids")
        ids = list(ids) if ids is not None else [str(i) for i in range(len(vals))]
        variants = [{**a, **b} for a in variants for b in vals]
        labels = [f"{la}-{lb}".strip("-") for la in labels for lb in ids]
    merged = pytest.mark.parametrize(VARIANT, variants, ids=labels, indirect=True).mark
    definition.own_markers = [m for m in definition.own_markers if not _is_variant(m)]
    definition.own_markers.append(merged)


MARKER_KWARGS = ("workload", "experiment", "overrides")


@dataclass(frozen=True)
class ScenarioSpec:
    """What the ``basht`` marker (closest wins) says about a scenario."""

    workload: str | None = None
    experiment: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_item(cls, item: pytest.Item) -> ScenarioSpec:
        marker = item.get_closest_marker("basht")
        if marker is None:
            return cls()
        if marker.args:
            raise BashtUsageError(f"{item.nodeid}: @pytest.mark.basht takes keyword arguments "
                                  f"only ({', '.join(MARKER_KWARGS)}), got {marker.args!r}")
        unknown = sorted(set(marker.kwargs) - set(MARKER_KWARGS))
        if unknown:
            raise BashtUsageError(f"{item.nodeid}: @pytest.mark.basht got unknown "
                                  f"{', '.join(unknown)}; it takes {', '.join(MARKER_KWARGS)}")
        overrides = marker.kwargs.get("overrides") or {}
        if not isinstance(overrides, Mapping):
            raise BashtUsageError(f"{item.nodeid}: @pytest.mark.basht(overrides=...) must be a "
                                  "mapping of dotted path to value")
        for key in ("workload", "experiment"):
            value = marker.kwargs.get(key)
            if value is not None and not isinstance(value, str):
                raise BashtUsageError(f"{item.nodeid}: @pytest.mark.basht({key}=...) must be "
                                      f"a string, got {value!r}")
        return cls(marker.kwargs.get("workload"), marker.kwargs.get("experiment"),
                   dict(overrides))


def variant_of(item: pytest.Item) -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    return dict(callspec.params.get(VARIANT, {}))

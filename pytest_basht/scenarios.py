"""Scenarios as tests: ``vary(...)`` parametrization, the ``basht`` marker, repeats, and
each scenario's workload resolved.

``vary("workers.count", [1, 2, 4, 8])`` is a ``pytest.mark.parametrize`` of the
``basht_variant`` fixture with ids like ``workers.count=2``; stacked ``vary`` marks on one
test combine into their product. ``@pytest.mark.basht(workload=..., experiment=...,
overrides=...)`` takes keyword arguments only and rejects unknown ones. ``--basht-repeat N``
adds ``repeat=i`` to a test's id; the scenario it samples is its id without it.
``WorkloadResolver`` turns a scenario's file, options, marker and ``vary`` values into one
checked workload.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import pytest_basht.workload as wl
import pytest_basht.workload_files as workload_files
from pytest_basht.budget import BUDGETS, Budget
from pytest_basht.energy.factory import check_energy
from pytest_basht.errors import BashtUsageError, WorkloadError, brief

if TYPE_CHECKING:
    from pytest_basht.registry import Registry

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


_REPEAT = re.compile(r"(\[|-)repeat=\d+\]$")


def repeat_id(repeat: int) -> str:
    """The id pytest shows for the ``repeat``-th run of a scenario (1-based)."""
    return f"repeat={repeat}"


def scenario_id(test_id: str, repeat: int, count: int) -> str:
    """The scenario a test samples: its id without the repeat parametrization."""
    if count <= 1:
        return test_id
    return _REPEAT.sub(lambda m: "]" if m.group(1) == "-" else "", test_id)


DEFAULTS_SOURCE = "<defaults: the Basht baseline>"


@dataclass
class WorkloadResolver:
    """Each scenario's workload: its file (the marker's, else ``--basht-workload``, else the
    Basht baseline's defaults), then the options' overrides, the marker's, the ``vary``
    values, and the budget; checked against what is registered. Each file is read once.

    ``registry`` is called when a workload is first checked, not before: conftest files that
    pytest loads during collection may register SUTs and models.
    """

    rootdir: Path
    registry: Callable[[], Registry]
    base: Path | None = None  # --basht-workload
    overrides: Mapping[str, Any] = field(default_factory=dict)  # from the options
    budget: Budget = BUDGETS["full"]
    documents: dict[Path, dict[str, Any]] = field(default_factory=dict)  # the files read

    def validate_base(self) -> None:
        """Read and validate the --basht-workload file now (a usage error before any test)."""
        if self.base is not None:
            self._document(self.base)
            wl.from_mapping(self._base_document(None)[0], str(self.base))

    def _document(self, path: Path) -> dict[str, Any]:
        if path not in self.documents:
            self.documents[path] = workload_files.read_document(path)
        return self.documents[path]

    def _base_document(self, spec_workload: str | None) -> tuple[dict[str, Any], str]:
        if spec_workload is not None:
            path = Path(spec_workload)
            path = path if path.is_absolute() else self.rootdir / path
            return self._document(path), str(path)
        if self.base is not None:
            return self._document(self.base), str(self.base)
        return {}, DEFAULTS_SOURCE

    def experiment_of(self, spec: ScenarioSpec, variant: dict[str, Any]) -> str | None:
        """The experiment a scenario belongs to (None when its workload does not resolve:
        a skipped scenario's record is kept all the same)."""
        if spec.experiment is not None:
            return spec.experiment
        try:
            return self.resolve(spec, variant).experiment
        except WorkloadError:
            return None

    def resolve(self, spec: ScenarioSpec, variant: dict[str, Any]) -> wl.Workload:
        """The scenario's workload: file, then options, then marker overrides, then vary."""
        doc, source = self._base_document(spec.workload)
        doc = workload_files.apply_overrides(doc, self.overrides, source)
        doc = workload_files.apply_overrides(doc, spec.overrides, source)
        doc = workload_files.apply_overrides(doc, variant, source)
        try:
            workload = wl.from_mapping(doc, source)
            registry = self.registry()
            sut = registry.sut_class(workload)
            shrink = {} if sut.zero_cost else self.budget.overrides(workload, variant)
            if shrink:
                workload = wl.from_mapping(
                    workload_files.apply_overrides(doc, shrink, source), source)
            registry.check(workload)
            check_energy(workload, registry.meters)
            import pytest_basht.search as search  # optuna loads with the first scenario

            search.check(workload, registry)
        except WorkloadError as exc:
            if not variant and not spec.overrides:
                raise
            described = ", ".join(f"{k}={brief(v)}"
                                  for k, v in {**spec.overrides, **variant}.items())
            raise exc.relabel(f"{source} (with {described})") from None
        return workload

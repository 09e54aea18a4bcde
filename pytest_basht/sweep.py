"""Convergence sweeps: a ``vary(...)`` over one variable that stops itself.

Basht's R-MEM and R-CPU raise a resource "until JCT converges". A test marked
``@pytest.mark.basht_sweep(tolerance=0.05)`` and varied over one variable runs its values
in order; once two successive steps differ by less than the tolerance (relative to the
earlier step) in the sweep's metric (JCT unless ``metric=`` names another Table 2 key),
every later value is skipped with the reason "converged at …", naming the earlier value
of the pair: the point past which more of the variable stopped paying off.

A step counts only when its scenario passed, its run completed and none of its trials
failed: a step where a limit killed trials has not converged, whatever its JCT. Each step
is compared with its final JCT (the plugin undeploys the previous step's deployment
before deciding). A budget may cap the steps; the rest are then skipped, not converged.

Everything here is a pure function of records, so the report recomputes the same verdict
from report.json — also when the steps ran on an xdist worker. ``SweepTracker`` keeps a
session's sweeps and which of their steps have run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_basht.errors import BashtUsageError
from pytest_basht.metrics import TABLE2_KEYS, UNITS

MARKER = "basht_sweep"
MARKER_KWARGS = ("tolerance", "metric")
DEFAULT_TOLERANCE = 0.05
DEFAULT_METRIC = "jct_ms"


@dataclass(frozen=True)
class SweepSpec:
    """One sweep: the test it parametrizes, its variable and values in order, its rule."""

    id: str
    variable: str
    values: tuple[Any, ...]
    tolerance: float = DEFAULT_TOLERANCE
    metric: str = DEFAULT_METRIC
    max_steps: int | None = None
    budget: str = "full"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["values"] = list(self.values)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        fields = {k: data[k] for k in ("id", "variable", "tolerance", "metric", "max_steps",
                                       "budget") if k in data}
        return cls(values=tuple(data["values"]), **fields)


@dataclass(frozen=True)
class Step:
    """One step that ran: its position in the sweep, the metric, whether it counts."""

    position: int
    value: Any
    measure: float | None
    eligible: bool


@dataclass(frozen=True)
class Convergence:
    """Steps ``position`` and ``position + 1`` differ by ``change`` < tolerance."""

    position: int
    value: Any
    next_value: Any
    measures: tuple[float, float]
    change: float


def relative_change(earlier: float, later: float) -> float:
    if earlier <= 0:
        return math.inf
    return abs(later - earlier) / earlier


def convergence(spec: SweepSpec, steps: Iterable[Step]) -> Convergence | None:
    """The first pair of successive, counting steps within the tolerance, if any."""
    by_pos = {s.position: s for s in steps}
    for pos in sorted(by_pos):
        a, b = by_pos[pos], by_pos.get(pos + 1)
        if b is None or not (a.eligible and b.eligible):
            continue
        if a.measure is None or b.measure is None:
            continue
        change = relative_change(a.measure, b.measure)
        if change < spec.tolerance:
            return Convergence(pos, a.value, b.value, (a.measure, b.measure), change)
    return None


def show(metric: str, value: float) -> str:
    if metric.endswith("_ms"):
        return f"{value / 1e3:.3g} s"
    return f"{value:.4g} {UNITS.get(metric, '')}".strip()


def label(metric: str) -> str:
    return {"jct_ms": "JCT", "energy_j": "energy"}.get(metric, metric)


def converged_reason(spec: SweepSpec, conv: Convergence) -> str:
    a, b = conv.measures
    return (f"converged at {spec.variable}={conv.value}: {label(spec.metric)} "
            f"{show(spec.metric, a)} vs {show(spec.metric, b)} at {conv.next_value} "
            f"(Δ {conv.change:.1%} < {spec.tolerance:.0%})")


def budget_reason(spec: SweepSpec) -> str:
    return (f"budget {spec.budget}: at most {spec.max_steps} sweep steps, not converged "
            f"within them")


def verdict(spec: SweepSpec, steps: Sequence[Step], position: int) -> str | None:
    """Why the step at ``position`` should be skipped, or None to run it."""
    before = [s for s in steps if s.position < position]
    conv = convergence(spec, before)
    if conv is not None:
        return converged_reason(spec, conv)
    if spec.max_steps is not None and len(before) >= spec.max_steps:
        return budget_reason(spec)
    return None


def step_of(record: Mapping[str, Any]) -> Step:
    """A step from a scenario record (``sweep``, ``metrics``, ``outcome``, ``status``)."""
    sweep, metrics = record["sweep"], record["metrics"]
    measure = metrics.get(sweep.get("metric", DEFAULT_METRIC))
    eligible = (record.get("outcome") == "passed" and record.get("status") == "complete"
                and not metrics.get("failed") and not metrics.get("provisional")
                and measure is not None)
    return Step(sweep["position"], sweep["value"], measure, eligible)


def summary(spec: SweepSpec, records: Sequence[Mapping[str, Any]],
            skipped: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the report says about a sweep: its rule and where (or whether) it converged."""
    steps = [step_of(r) for r in records]
    conv = convergence(spec, steps)
    out: dict[str, Any] = {**spec.to_dict(), "steps_run": len(steps),
                           "skipped": len(skipped), "converged": conv is not None,
                           "converged_at": None, "confirmed_by": None, "change_pct": None}
    if conv is not None:
        out.update(converged_at=conv.value, confirmed_by=conv.next_value,
                   change_pct=round(conv.change * 100, 3),
                   reason=converged_reason(spec, conv))
    elif spec.max_steps is not None and len(steps) >= spec.max_steps and skipped:
        out["reason"] = budget_reason(spec)
    else:
        out["reason"] = (f"not converged: no two successive steps within "
                         f"{spec.tolerance:.0%} in {label(spec.metric)}")
    return out


def parse_marker(nodeid: str, kwargs: Mapping[str, Any], args: Sequence[Any]
                 ) -> tuple[float, str]:
    """The tolerance and metric of a ``basht_sweep`` marker, or a usage error."""
    where = f"{nodeid}: @pytest.mark.{MARKER}"
    if args:
        raise BashtUsageError(f"{where} takes keyword arguments only "
                              f"({', '.join(MARKER_KWARGS)}), got {tuple(args)!r}")
    unknown = sorted(set(kwargs) - set(MARKER_KWARGS))
    if unknown:
        raise BashtUsageError(f"{where} got unknown {', '.join(unknown)}; it takes "
                              f"{', '.join(MARKER_KWARGS)}")
    tolerance = kwargs.get("tolerance", DEFAULT_TOLERANCE)
    if (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
            or not 0 < tolerance < 1):
        raise BashtUsageError(f"{where}(tolerance=...) must be a fraction between 0 and 1 "
                              f"(0.05 is 5%), got {tolerance!r}")
    metric = kwargs.get("metric", DEFAULT_METRIC)
    if metric not in TABLE2_KEYS:
        raise BashtUsageError(f"{where}(metric=...) must be a Table 2 key: "
                              f"{', '.join(TABLE2_KEYS)}; got {metric!r}")
    return float(tolerance), str(metric)


def build(sweep_id: str, steps: Sequence[tuple[str, int, Mapping[str, Any]]], *,
          tolerance: float, metric: str, max_steps: int | None, budget: str
          ) -> tuple[SweepSpec, dict[str, int]]:
    """A sweep from its collected steps: (nodeid, parameter index, variant) each.

    Returns the spec (values in parameter order) and each nodeid's position in it.
    """
    variables = {tuple(sorted(v)) for _, _, v in steps}
    if len(variables) != 1 or len(next(iter(variables))) != 1:
        shown = sorted({", ".join(sorted(v)) or "nothing" for _, _, v in steps})
        raise BashtUsageError(f"{sweep_id}: @pytest.mark.{MARKER} sweeps exactly one "
                              f"variable with vary(path, values); it varies {shown}")
    (variable,) = next(iter(variables))
    ordered = sorted(steps, key=lambda s: s[1])
    spec = SweepSpec(sweep_id, variable, tuple(v[variable] for _, _, v in ordered),
                     tolerance, metric, max_steps, budget)
    return spec, {nodeid: pos for pos, (nodeid, _, _) in enumerate(ordered)}


def in_order(items: list[Any], positions: Mapping[str, tuple[str, int]]) -> list[Any]:
    """Items with each sweep's steps in sweep order, in the slots its steps held."""
    slots: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        entry = positions.get(item.nodeid)
        if entry is not None:
            slots.setdefault(entry[0], []).append(i)
    out = list(items)
    for indices in slots.values():
        steps = sorted((items[i] for i in indices), key=lambda it: positions[it.nodeid][1])
        for i, item in zip(indices, steps, strict=True):
            out[i] = item
    return out


@dataclass
class SweepTracker:
    """A session's sweeps: each step's sweep and position, and the steps this process ran.

    ``verdict`` asks the caller for the records of a sweep's finished steps: only the caller
    knows the scenarios, and it must first undeploy what they ran on, so that each step's
    JCT (undeploy included) is final.
    """

    sweeps: dict[str, SweepSpec] = field(default_factory=dict)
    steps: dict[str, tuple[str, int]] = field(default_factory=dict)  # nodeid -> (sweep, pos)
    ran: set[str] = field(default_factory=set)  # steps through their whole test protocol

    def add(self, spec: SweepSpec, positions: Mapping[str, int]) -> None:
        self.sweeps[spec.id] = spec
        for nodeid, pos in positions.items():
            self.steps[nodeid] = (spec.id, pos)

    def info(self, nodeid: str) -> dict[str, Any] | None:
        """What a scenario's record says about the sweep it is a step of."""
        entry = self.steps.get(nodeid)
        if entry is None:
            return None
        spec = self.sweeps[entry[0]]
        return {**spec.to_dict(), "position": entry[1], "value": spec.values[entry[1]]}

    def verdict(self, nodeid: str,
                finished: Callable[[str], Sequence[Mapping[str, Any]]]) -> str | None:
        """Why this sweep step is skipped (converged, or past the budget), or None.
        ``finished(sweep_id)``: the records of the sweep's steps that ran (``step_of``)."""
        entry = self.steps.get(nodeid)
        if entry is None:
            return None
        spec = self.sweeps[entry[0]]
        return verdict(spec, [step_of(r) for r in finished(spec.id)], entry[1])

    def done(self, nodeid: str) -> None:
        """A sweep step has been through its whole test protocol on this process."""
        if nodeid in self.steps:
            self.ran.add(nodeid)

    def unseen(self, nodeid: str) -> list[str]:
        """Earlier steps of this step's sweep that have not run on this process.

        Non-empty when a scheduler split a sweep (pytest-xdist with --dist load).
        """
        entry = self.steps.get(nodeid)
        if entry is None:
            return []
        return [other for other, (sid, pos) in self.steps.items()
                if sid == entry[0] and pos < entry[1] and other not in self.ran]

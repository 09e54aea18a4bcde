"""Table 2 from the records: pure functions, no I/O, no clocks.

Definitions (the report repeats them):

* JCT — deploy start to undeploy end. A scenario that reuses a deployment is charged that
  deployment's deploy and undeploy spans, as if it had its own: JCT = deploy + (setup
  start → metric collection end) + undeploy.
* energy — everything the meter saw in those windows, × PUE. All energy figures are × PUE.
* TWH — mean energy per trial (every trial, any state). trial power — trial energy over
  trial time.
* CINT — energy-weighted carbon intensity: a fixed value or a region's is that value; a
  time series (gCO2eq/kWh) is weighted by the energy drawn while each value was in force.
  CO2 = energy × CINT.
* OC — wn × JCT × price per worker-hour + energy × price per kWh.
* waste — a trial is wasted when it is ``failed``, ``pruned`` (the work before the stop),
  a ``duplicate`` (same params and fidelity as an earlier-started trial that did not fail,
  and not a continuation of it) or ``after_target`` (started after the first trial that
  reached the goal's target had finished). The trial reported as best is never waste, in
  any category. Each category is reported on its own (``waste.<category>_kwh`` ...);
  WTT / WTE / WTC count each wasted trial once.
* WR — the share of energy drawn by allocated but idle worker slots: in the trials window
  (setup end → result collection start) each slot's time without a trial is charged
  idle power / wn.
* Zeus cost — η·E + (1−η)·P_max·T.
* TTA / ETA — time and energy from deploy start until a validation value first met the
  target.
* per phase — ``<phase>.time_ms``, ``<phase>.energy_kwh`` and ``<phase>.cpu_s`` for each
  lifecycle phase (its span: wall time, the meter over its window × PUE, CPU seconds of the
  run's processes), for ``trials`` (the trials window setup end → result collection start;
  the energy and CPU seconds the trials themselves drew, summed) and for each trial phase
  (``trial.train`` ...: summed over every trial's spans of that phase, so worker time).
* Pareto front — the trials no other trial dominates (at least as good in every
  objective, better in one). Hypervolume — the volume the front dominates up to a
  reference point (a worse value in every objective), in the objectives' own units.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_basht.dominance import pareto_front
from pytest_basht.energy.attribution import delta
from pytest_basht.lifecycle import Phase
from pytest_basht.records import EnergyTrace, Span, TrialRecord
from pytest_basht.workload import Workload

J_PER_KWH = 3.6e6
WASTE_CATEGORIES = ("failed", "pruned", "duplicate", "after_target")

UNITS = {
    "jct_ms": "ms", "energy_j": "J", "energy_kwh": "kWh", "twh_kwh": "kWh",
    "trial_power_w": "W", "cint_g_per_kwh": "gCO2eq/kWh", "co2_g": "gCO2eq", "oc_usd": "USD",
    "wtt_ms": "ms", "wte_kwh": "kWh", "wtc_usd": "USD", "wr_pct": "%", "zeus_cost": "J",
    "tta_ms": "ms", "eta_j": "J",
}
TABLE2_KEYS = tuple(UNITS)

#: The phases with gateable figures: the lifecycle's, the trials window, each trial phase.
PHASE_NAMES = (Phase.DEPLOY.value, Phase.SETUP.value, "trials", Phase.RESULT_COLLECTION.value,
               Phase.TEST.value, Phase.METRIC_COLLECTION.value, Phase.UNDEPLOY.value,
               Phase.TRIAL_LOAD.value, Phase.TRIAL_TRAIN.value, Phase.TRIAL_VALIDATE.value)
PHASE_MEASURES = {"time_ms": "ms", "energy_kwh": "kWh", "cpu_s": "s"}
PHASE_UNITS = {f"{phase}.{measure}": unit for phase in PHASE_NAMES
               for measure, unit in PHASE_MEASURES.items()}
PHASE_KEYS = tuple(PHASE_UNITS)

#: Each waste category's figures (and the total's), gateable: ``waste.failed_kwh`` ...
WASTE_MEASURES = {"trials": ("trials", ""), "time_ms": ("ms", "ms"),
                  "energy_kwh": ("kwh", "kWh"), "cost_usd": ("usd", "USD")}
WASTE_UNITS = {f"waste.{cat}_{suffix}": unit for cat in (*WASTE_CATEGORIES, "total")
               for suffix, unit in WASTE_MEASURES.values()}
WASTE_KEYS = tuple(WASTE_UNITS)


@dataclass(frozen=True)
class WasteFigures:
    trials: int = 0
    time_ms: float = 0.0
    energy_kwh: float = 0.0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Metrics:
    jct_ms: float
    energy_j: float
    energy_kwh: float
    twh_kwh: float
    trial_power_w: float
    cint_g_per_kwh: float
    co2_g: float
    oc_usd: float
    wtt_ms: float
    wte_kwh: float
    wtc_usd: float
    wr_pct: float
    zeus_cost: float
    tta_ms: float | None
    eta_j: float | None
    trials: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    duplicate: int = 0
    worker_hours: float = 0.0
    provisional: bool = False
    waste: dict[str, WasteFigures] = field(default_factory=dict)
    phases: dict[str, float | None] = field(default_factory=dict)  # PHASE_KEYS

    def table2(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in TABLE2_KEYS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- pieces


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def duplicates(trials: Iterable[TrialRecord]) -> set[int]:
    """Trials whose params equal those of an earlier-started trial that did not fail, at
    the same fidelity. A continuation (``resumed_from``) trains new epochs of an earlier
    trial's configuration: it is no duplicate."""
    seen: set[tuple[str, int | None]] = set()
    dup: set[int] = set()
    for t in sorted(trials, key=lambda t: (t.start_ns, t.number)):
        key = (_params_key(t.params), t.fidelity)
        if key in seen and t.resumed_from is None:
            dup.add(t.number)
        elif t.state != "failed":
            seen.add(key)
    return dup


def target_time_ns(trials: Iterable[TrialRecord], workload: Workload) -> int | None:
    """When a validation value (any epoch of any trial) first met the goal's target."""
    goal = workload.goal
    if goal.target is None:
        return None
    best: int | None = None
    for t in trials:
        ends = {s.epoch: s.end_ns for s in t.spans
                if s.phase == Phase.TRIAL_VALIDATE.value and s.epoch is not None}
        for epoch, value in enumerate(t.intermediate):
            if goal.met(value):
                when = ends.get(epoch, t.end_ns)
                best = when if best is None else min(best, when)
                break
        else:
            if not t.intermediate and t.state == "complete" and goal.met(t.value):
                best = t.end_ns if best is None else min(best, t.end_ns)
    return best


def reached_target(trial: TrialRecord, workload: Workload) -> bool:
    """Whether a validation value of the trial (any epoch, or a complete trial's value
    when it reported none) met the goal's target."""
    goal = workload.goal
    if goal.target is None:
        return False
    if trial.intermediate:
        return any(goal.met(v) for v in trial.intermediate)
    return trial.state == "complete" and goal.met(trial.value)


def target_cutoff_ns(trials: Iterable[TrialRecord], workload: Workload) -> int | None:
    """When the first trial that reached the target finished: a trial started after this
    is ``after_target`` waste (the goal was met; it could only be a better answer)."""
    return min((t.end_ns for t in trials if reached_target(t, workload)), default=None)


def classify_waste(trials: Sequence[TrialRecord], cutoff_ns: int | None,
                   best: int | None = None) -> dict[int, set[str]]:
    """Trial number -> the waste categories it falls in (empty: not wasted).

    ``failed`` and ``pruned``: by state; ``duplicate``: ``duplicates``; ``after_target``:
    started after ``cutoff_ns`` (``target_cutoff_ns``). The ``best`` trial (its number)
    is in none: it is the result."""
    dup = duplicates(trials)
    out: dict[int, set[str]] = {}
    for t in trials:
        cats: set[str] = set()
        if t.number == best:
            out[t.number] = cats
            continue
        if t.state == "failed":
            cats.add("failed")
        if t.state == "pruned":
            cats.add("pruned")
        if t.number in dup:
            cats.add("duplicate")
        if cutoff_ns is not None and t.start_ns > cutoff_ns:
            cats.add("after_target")
        out[t.number] = cats
    return out


def waste_categories(workload: Workload, trials: Sequence[TrialRecord],
                     best: int | None = None) -> dict[int, list[str]]:
    """Each trial's waste categories, in ``WASTE_CATEGORIES`` order (what a trial row
    lists)."""
    cats = classify_waste(trials, target_cutoff_ns(trials, workload), best)
    return {n: [c for c in WASTE_CATEGORIES if c in found] for n, found in cats.items()}


def waste_values(waste: dict[str, Any]) -> dict[str, float]:
    """A report's ``metrics.waste`` (category -> figures) as gateable keys
    (``waste.failed_kwh`` ...)."""
    out: dict[str, float] = {}
    for cat in (*WASTE_CATEGORIES, "total"):
        figures = waste.get(cat)
        if not isinstance(figures, dict):
            continue
        for field_name, (suffix, _unit) in WASTE_MEASURES.items():
            value = figures.get(field_name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"waste.{cat}_{suffix}"] = float(value)
    return out


def busy_ns(intervals: Iterable[tuple[int, int]], lo: int, hi: int) -> int:
    """Length of the union of intervals, clipped to [lo, hi]."""
    clipped = sorted((max(lo, a), min(hi, b)) for a, b in intervals if b > lo and a < hi)
    total, cur_a, cur_b = 0, None, None
    for a, b in clipped:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def _span(spans: Sequence[Span], phase: Phase) -> Span | None:
    return next((s for s in spans if s.phase == phase.value and s.trial is None), None)


def _trial_energy(t: TrialRecord) -> float:
    return t.energy_j or 0.0


def energy_weighted_cint(workload: Workload, trace: EnergyTrace,
                         pieces: Iterable[tuple[float, int]]) -> float:
    """CINT: the carbon intensity in force at each piece of energy (joules, monotonic ns),
    weighted by that energy. A fixed value or a region's is that value."""
    carbon = trace.carbon or {}
    fixed = float(carbon.get("g_per_kwh", workload.energy.carbon_intensity))
    series = carbon.get("series")
    if not series:
        return fixed
    offset = carbon.get("wall_offset_ns", 0)
    times = [row[0] for row in series]

    def at(t_ns: int) -> float:
        i = bisect.bisect_right(times, (t_ns + offset) / 1e9) - 1
        return float(series[max(0, i)][1])

    weighted = total = 0.0
    first: int | None = None
    for joules, t_ns in pieces:
        first = t_ns if first is None else first
        weighted += joules * at(t_ns)
        total += joules
    if total > 0:
        return weighted / total
    return at(first) if first is not None else fixed


def timeline_pieces(ts: Sequence[int], joules: Sequence[float], lo: int, hi: int
                    ) -> Iterator[tuple[float, int]]:
    """(joules, midpoint ns) of each stretch between timeline points, clipped to [lo, hi];
    lazily, as only a carbon intensity that changes over time needs them."""
    first, last = bisect.bisect_right(ts, lo), bisect.bisect_left(ts, hi)
    edges = [lo, *ts[first:last], hi]
    for a, b in itertools.pairwise(edges):
        if b > a:
            yield delta(ts, joules, a, b), (a + b) // 2


# ----------------------------------------------------------------------------- per phase


def _figures(spans: Iterable[Span], pue: float) -> tuple[float, float, float]:
    """(time ms, energy kWh × PUE, CPU s) summed over spans."""
    ms = kwh = cpu = 0.0
    for s in spans:
        ms += max(0, s.end_ns - s.start_ns) / 1e6
        kwh += (s.energy_j or 0.0) * pue / J_PER_KWH
        cpu += s.cpu_s
    return ms, kwh, cpu


def phase_metrics(workload: Workload, spans: Sequence[Span], trials: Sequence[TrialRecord]
                  ) -> dict[str, float | None]:
    """Time, energy and CPU seconds of each phase (``PHASE_KEYS``); None where a phase did
    not happen. The ``trials`` window runs from setup end to result collection start (the
    first trial's start to the last one's end when those spans are missing); its energy and
    CPU are what the trials drew — their attributed shares, not the idle slots (WR)."""
    pue = workload.energy.pue
    out: dict[str, float | None] = dict.fromkeys(PHASE_KEYS)

    def put(phase: str, figures: tuple[float, float, float]) -> None:
        for measure, value in zip(PHASE_MEASURES, figures, strict=True):
            out[f"{phase}.{measure}"] = value

    for phase in (Phase.DEPLOY, Phase.SETUP, Phase.RESULT_COLLECTION, Phase.TEST,
                  Phase.METRIC_COLLECTION, Phase.UNDEPLOY):
        span = _span(spans, phase)
        if span is not None:
            put(phase.value, _figures([span], pue))
    setup, collect = _span(spans, Phase.SETUP), _span(spans, Phase.RESULT_COLLECTION)
    if trials or (setup and collect):
        lo = setup.end_ns if setup else min(t.start_ns for t in trials)
        hi = collect.start_ns if collect else max(t.end_ns for t in trials)
        put("trials", (max(0, hi - lo) / 1e6,
                       sum(_trial_energy(t) for t in trials) * pue / J_PER_KWH,
                       sum(t.cpu_s for t in trials)))
    for phase in (Phase.TRIAL_LOAD, Phase.TRIAL_TRAIN, Phase.TRIAL_VALIDATE):
        found = [s for t in trials for s in t.spans if s.phase == phase.value]
        if found:
            put(phase.value, _figures(found, pue))
    return out


# ----------------------------------------------------------------------------- Table 2


def compute(workload: Workload, spans: Sequence[Span], trials: Sequence[TrialRecord],
            trace: EnergyTrace, best: int | None = None) -> Metrics:
    """Every Table 2 metric of one scenario from its records; ``best`` (the number of the
    trial reported as best) is no waste."""
    pue = workload.energy.pue
    prices = workload.prices
    deploy = _span(spans, Phase.DEPLOY)
    setup = _span(spans, Phase.SETUP)
    collect = _span(spans, Phase.RESULT_COLLECTION)
    last = _span(spans, Phase.METRIC_COLLECTION)
    undeploy = _span(spans, Phase.UNDEPLOY)
    timeline = trace.timeline
    ts, joules = timeline.get("t_ns", []), timeline.get("joules", [])

    main_start = setup.start_ns if setup else min((t.start_ns for t in trials), default=0)
    main_end = last.end_ns if last else max((t.end_ns for t in trials), default=main_start)
    main_ns = max(0, main_end - main_start)
    edge_ns = sum(max(0, s.end_ns - s.start_ns) for s in (deploy, undeploy) if s is not None)
    jct_ns = main_ns + edge_ns
    edge_j = sum((s.energy_j or 0.0) for s in (deploy, undeploy) if s is not None)
    raw_j = edge_j + delta(ts, joules, main_start, main_end)
    energy_j = raw_j * pue
    energy_kwh = energy_j / J_PER_KWH
    jct_h = jct_ns / 3.6e12

    n = len(trials)
    trial_j = [_trial_energy(t) * pue for t in trials]
    trial_s = sum(t.duration_s for t in trials)
    twh_kwh = (sum(trial_j) / n / J_PER_KWH) if n else 0.0
    trial_power_w = sum(trial_j) / trial_s if trial_s > 0 else 0.0
    edges = [((s.energy_j or 0.0), (s.start_ns + s.end_ns) // 2)
             for s in (deploy, undeploy) if s is not None]
    cint = energy_weighted_cint(workload, trace, itertools.chain(
        edges, timeline_pieces(ts, joules, main_start, main_end)))
    wn = workload.workers.count
    worker_hours = wn * jct_h
    oc_usd = worker_hours * prices.usd_per_worker_hour + energy_kwh * prices.usd_per_kwh

    t_target = target_time_ns(trials, workload)
    cats = classify_waste(trials, target_cutoff_ns(trials, workload), best)

    def figures(selected: list[TrialRecord]) -> WasteFigures:
        ms = sum(t.duration_s for t in selected) * 1e3
        kwh = sum(_trial_energy(t) for t in selected) * pue / J_PER_KWH
        usd = ms / 3.6e6 * prices.usd_per_worker_hour + kwh * prices.usd_per_kwh
        return WasteFigures(len(selected), ms, kwh, usd)

    waste = {c: figures([t for t in trials if c in cats[t.number]]) for c in WASTE_CATEGORIES}
    total = figures([t for t in trials if cats[t.number]])
    waste["total"] = total

    # WR: idle slot time inside the trials window, at each slot's share of idle power.
    idle_j = 0.0
    if setup and collect and trace.slots > 0:
        lo, hi = setup.end_ns, collect.start_ns
        by_slot: dict[int, list[tuple[int, int]]] = {}
        for t in trials:
            by_slot.setdefault(t.worker, []).append((t.start_ns, t.end_ns))
        for slot in range(trace.slots):
            busy = busy_ns(by_slot.get(slot, ()), lo, hi)
            idle_j += max(0, hi - lo - busy) / 1e9 * trace.idle_power_w / trace.slots
    wr_pct = (idle_j * pue / energy_j * 100.0) if energy_j > 0 else 0.0

    eta = workload.energy.zeus_eta
    p_max = (workload.energy.max_power_w or trace.max_power_w) * pue
    zeus_cost = eta * energy_j + (1 - eta) * p_max * jct_ns / 1e9

    tta_ms = eta_j = None
    if t_target is not None:
        deploy_ns = (deploy.end_ns - deploy.start_ns) if deploy else 0
        tta_ms = (deploy_ns + max(0, t_target - main_start)) / 1e6
        deploy_j = (deploy.energy_j or 0.0) if deploy else 0.0
        eta_j = (deploy_j + delta(ts, joules, main_start, t_target)) * pue

    states = [t.state for t in trials]
    return Metrics(
        jct_ms=jct_ns / 1e6, energy_j=energy_j, energy_kwh=energy_kwh, twh_kwh=twh_kwh,
        trial_power_w=trial_power_w, cint_g_per_kwh=cint, co2_g=energy_kwh * cint,
        oc_usd=oc_usd, wtt_ms=total.time_ms, wte_kwh=total.energy_kwh, wtc_usd=total.cost_usd,
        wr_pct=wr_pct, zeus_cost=zeus_cost, tta_ms=tta_ms, eta_j=eta_j, trials=n,
        complete=states.count("complete"), pruned=states.count("pruned"),
        failed=states.count("failed"), duplicate=waste["duplicate"].trials,
        worker_hours=worker_hours, provisional=undeploy is None, waste=waste,
        phases=phase_metrics(workload, spans, trials))


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# ----------------------------------------------------------------------------- objectives


def _minimized(points: Sequence[Sequence[float]], directions: Sequence[str]
               ) -> list[tuple[float, ...]]:
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    return [tuple(s * v for s, v in zip(signs, p, strict=True)) for p in points]


def hypervolume(points: Sequence[Sequence[float]], directions: Sequence[str],
                reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` and bounded by ``reference``, in the product of
    the objectives' units; a point no better than the reference in every objective adds
    nothing. Exact, by slicing along the last objective (fine for the few objectives and
    the fronts of a study)."""
    ref = _minimized([reference], directions)[0]
    mins = [p for p in _minimized(points, directions)
            if all(a < r for a, r in zip(p, ref, strict=True))]
    front = [mins[i] for i in pareto_front(mins, ["minimize"] * len(ref))]
    return _slices(front, ref)


def _slices(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in points)
    ordered = sorted(points, key=lambda p: p[-1])
    total = 0.0
    for i, p in enumerate(ordered):
        upper = ordered[i + 1][-1] if i + 1 < len(ordered) else ref[-1]
        if upper > p[-1]:
            total += (upper - p[-1]) * _slices([q[:-1] for q in ordered[:i + 1]], ref[:-1])
    return total

"""The gate: compare a run with a baseline, metric by metric, and decide (pure functions);
and ``Gate``, a pytest run's: its baseline loaded before any test, its report judged at the end.

A threshold says how much worse a metric may get, relative (``energy_kwh:+10%``) or in
the metric's own unit (``energy_kwh:+0.001``); several thresholds on one key must all be
passed (``energy_kwh:+10%,energy_kwh:+0.0001``: 10% worse *and* 0.1 Wh more). Every
Table 2 metric, every per-phase metric (``trials.energy_kwh``, ``deploy.time_ms``, ...)
and every waste category's figure (``waste.failed_kwh``, ``waste.after_target_ms``,
``waste.total_trials``, ...) is worse when it rises; ``best_value`` and ``test_score``
are worse when they move against the scenario's goal direction; ``hypervolume`` (of the
scenario's Pareto front of trials) is worse when it falls, and compared only where the
workload fixes its reference point (``goal.reference`` for every objective: else two
runs' hypervolumes are measured from different points).

Samples are the repeats of a scenario (``--basht-repeat``): the centre of each side is its
median. The rule for a metric with thresholds (``report.noise`` defines spread and floor):

1. Not past its threshold: ``ok``. Past it in the better direction: ``improvement``, or
   ``within noise`` as below.
2. Past it and the change is inside the noise floor: ``within noise (±x %)``. The floor
   is NOISE_Z × spread × √(1/n_old + 1/n_new); the spread comes from the history (the
   newest HISTORY_WINDOW runs of this scenario, machine fingerprint and workload, once it
   holds MIN_HISTORY of them: noise between runs, load included), else from the samples
   themselves when both sides have ≥ 3.
3. Past the floor, with ≥ 3 samples on both sides: a one-sided Mann–Whitney U test (scipy)
   decides, as in asv: p < 0.05 is a ``regression``, otherwise ``undecided``. 3 + 3
   samples cannot give p < 0.05 (the smallest exact p is 0.05), so there every new sample
   must be worse than every old one.
4. Past the floor from the history with fewer samples: ``regression``.
5. No floor and fewer than 3 samples on a side: ``undecided`` — one sample cannot tell a
   change from noise — with what would decide it.

``regression`` and ``undecided`` fail the gate (an undecided gate cannot rule the
regression out, and says what to run); ``basht paired`` decides the same way on paired
runs (``report.pairs``).
"""

from __future__ import annotations

import difflib
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_basht.errors import BashtUsageError, OptionError
from pytest_basht.machine import fingerprint
from pytest_basht.metrics import (
    PHASE_KEYS,
    PHASE_NAMES,
    PHASE_UNITS,
    TABLE2_KEYS,
    UNITS,
    WASTE_CATEGORIES,
    WASTE_KEYS,
    WASTE_UNITS,
    waste_values,
)
from pytest_basht.report import noise
from pytest_basht.report.json import clean

if TYPE_CHECKING:
    from pytest_basht.report.history import History, Resolved, SessionHistory

ALPHA = 0.05
MIN_SAMPLES = 3
GOAL_KEYS = ("best_value", "test_score")
#: better when higher, whatever the goal's direction
HIGHER_KEYS = ("hypervolume",)
#: keys a threshold takes without a sign (worse against a direction, not by rising)
UNSIGNED_KEYS = (*GOAL_KEYS, *HIGHER_KEYS)
KEYS = (*TABLE2_KEYS, *PHASE_KEYS, *WASTE_KEYS, *GOAL_KEYS, *HIGHER_KEYS)
SHOWN = ("jct_ms", "energy_kwh", "wte_kwh")  # compared even when no threshold names them
ALIASES = {
    "jct": "jct_ms", "energy": "energy_kwh", "twh": "twh_kwh", "power": "trial_power_w",
    "cint": "cint_g_per_kwh", "co2": "co2_g", "oc": "oc_usd", "wtt": "wtt_ms",
    "wte": "wte_kwh", "wtc": "wtc_usd", "wr": "wr_pct", "zeus": "zeus_cost", "tta": "tta_ms",
    "eta": "eta_j", "best": "best_value", "test": "test_score", "hv": "hypervolume",
}
#: What makes two runs' measurements comparable (machine.fingerprint's keyed fields).
FINGERPRINT_KEYS = ("cpu_model", "cores", "memory_gb", "accelerators", "meter_source")
HARDWARE_KEYS = FINGERPRINT_KEYS[:-1]
_NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
#: Others' CPU (% of the machine) that differs this much between the sides is called out.
LOAD_GAP_PCT = 20.0


class ThresholdError(ValueError):
    """A malformed ``--basht-fail-on`` item; the message says what was expected."""


class CompareError(BashtUsageError):
    """Two reports that cannot be compared; the message says why and what to do."""


# ----------------------------------------------------------------------------- thresholds


def unit_of(key: str) -> str:
    return UNITS.get(key) or PHASE_UNITS.get(key) or WASTE_UNITS.get(key, "")


def worse_when_higher(key: str, goal_direction: str = "maximize") -> bool:
    """Which way a metric gets worse: up for every Table 2 metric, down for the
    hypervolume, against the goal for the goal's values."""
    if key in GOAL_KEYS:
        return goal_direction == "minimize"
    return key not in HIGHER_KEYS


@dataclass(frozen=True)
class Threshold:
    """How much worse ``key`` may get: a fraction of the old value, or an amount in its unit."""

    key: str
    amount: float
    relative: bool

    def exceeded(self, old: float, new: float, higher_is_worse: bool) -> bool:
        worse_by = (new - old) if higher_is_worse else (old - new)
        if worse_by <= 0:
            return False
        if not self.relative:
            return worse_by > self.amount
        if old == 0:
            return True  # from nothing to something: past any relative threshold
        return worse_by > self.amount * abs(old)

    @property
    def limit(self) -> str:
        sign = "" if self.key in UNSIGNED_KEYS else "+"
        return f"{sign}{self.amount * 100:g}%" if self.relative else f"{sign}{self.amount:g}"

    @property
    def shown(self) -> str:
        unit = "" if self.relative else unit_of(self.key)
        return f"{self.limit} {unit}".rstrip()

    @property
    def log_amount(self) -> float | None:
        """A relative threshold on the scale of ``noise`` floors (ln(1 + amount))."""
        return math.log1p(self.amount) if self.relative else None

    @property
    def text(self) -> str:
        """As written on the command line (normalised)."""
        return f"{self.key}:{self.limit}"


def metric_key(name: str) -> str:
    """A metric key from its name or short name (a ThresholdError names the keys)."""
    name = name.strip()
    if name in KEYS:
        return name
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    near = difflib.get_close_matches(name, [*KEYS, *ALIASES], n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise ThresholdError(f"a metric key such as {', '.join(KEYS[:3])}, ... — unknown "
                         f"'{name}'{hint}; keys: {', '.join((*TABLE2_KEYS, *GOAL_KEYS))}, "
                         f"per phase PHASE.time_ms, PHASE.energy_kwh or PHASE.cpu_s "
                         f"for PHASE in {', '.join(PHASE_NAMES)}, and per waste category "
                         f"waste.CATEGORY_kwh, _ms, _usd or _trials for CATEGORY in "
                         f"{', '.join((*WASTE_CATEGORIES, 'total'))}")


def parse_threshold(item: str) -> Threshold:
    """``energy_kwh:+10%`` or ``energy_kwh:+0.001`` (or ``test_score:2%``)."""
    name, sep, amount = item.partition(":")
    if not sep or not amount.strip():
        raise ThresholdError(f"KEY:THRESHOLD items like energy_kwh:+10% or energy_kwh:+0.001 "
                             f"— '{item.strip()}' has no threshold")
    key = metric_key(name)
    text = amount.strip()
    sign, body = (text[0], text[1:]) if text[:1] in "+-" else ("", text)
    relative = body.endswith("%")
    body = body.removesuffix("%").strip()
    if not _NUMBER.match(body) or not math.isfinite(float(body)):
        raise ThresholdError(f"a threshold like +10% or +0.001 for {key}, got '{text}'")
    if key in UNSIGNED_KEYS and sign:
        raise ThresholdError(f"{key} without a sign ({key}:{body}{'%' if relative else ''}): "
                             "it gets worse against its goal's direction, whichever that is")
    if key not in UNSIGNED_KEYS and sign == "-":
        raise ThresholdError(f"a rise for {key} ({key}:+{body}{'%' if relative else ''}): "
                             f"{key} gets worse when it rises")
    return Threshold(key, float(body) / (100.0 if relative else 1.0), relative)


def parse_fail_on(text: str) -> list[Threshold]:
    items = [part for part in text.split(",") if part.strip()]
    if not items:
        raise ThresholdError("one or more KEY:THRESHOLD items, e.g. energy_kwh:+10%")
    return [parse_threshold(item) for item in items]


# ----------------------------------------------------------------------------- samples


def scenario_key(scenario: dict[str, Any]) -> str:
    """The scenario a record samples: its test id without the repeat suffix."""
    return str(scenario.get("scenario_id") or scenario["test_id"])


def hypervolume_of(scenario: dict[str, Any]) -> float | None:
    """The hypervolume of the scenario's front, when its reference point is the workload's
    in every objective (None otherwise: not comparable between runs)."""
    front = scenario.get("pareto")
    if not isinstance(front, dict) or any(
            v != "workload" for v in (front.get("reference_from") or {"": ""}).values()):
        return None
    return front.get("hypervolume")


def value_of(scenario: dict[str, Any], key: str) -> float | None:
    if key in HIGHER_KEYS:
        raw: Any = hypervolume_of(scenario)
    elif key in GOAL_KEYS:
        raw = scenario.get(key)
    elif key in PHASE_UNITS:
        raw = (scenario["metrics"].get("phases") or {}).get(key)
    elif key in WASTE_UNITS:
        raw = waste_values(scenario["metrics"].get("waste") or {}).get(key)
    else:
        raw = scenario["metrics"].get(key)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        return None
    return float(raw)


def check_report(report: Any, label: str) -> None:
    """The structure the comparison reads; anything else is a corrupt report."""
    if not isinstance(report, dict) or not isinstance(report.get("scenarios"), list):
        raise CompareError(f"{label}: not a usable pytest-basht report (no scenarios list)")
    if not isinstance(report.get("machine"), dict):
        raise CompareError(f"{label}: not a usable pytest-basht report (no machine)")
    for i, sc in enumerate(report["scenarios"]):
        if not isinstance(sc, dict) or "test_id" not in sc or not isinstance(
                sc.get("metrics"), dict):
            raise CompareError(f"{label}: scenario #{i} has no test_id or metrics; the "
                               "report is corrupt")


def samples(report: dict[str, Any]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Complete records per scenario, in report order, and a note per record left out."""
    out: dict[str, list[dict[str, Any]]] = {}
    left_out = []
    for sc in report["scenarios"]:
        if sc.get("status", "complete") != "complete":
            left_out.append(f"{sc['test_id']}: status {sc.get('status')} — not a sample")
            continue
        out.setdefault(scenario_key(sc), []).append(sc)
    return out, left_out


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Significance:
    p: float | None
    significant: bool | None  # None: too few samples for the test
    test: str


def significance(old: Sequence[float], new: Sequence[float], higher_is_worse: bool,
                 alpha: float = ALPHA) -> Significance:
    """Is ``new`` worse than ``old``? A one-sided Mann–Whitney U test, as asv does."""
    n, m = len(old), len(new)
    if min(n, m) < MIN_SAMPLES:
        return Significance(None, None, f"threshold only ({n} vs {m} samples; a significance "
                                        f"test needs ≥ {MIN_SAMPLES} on both sides)")
    # scipy.stats takes most of a second to import; only repeated runs need it.
    from scipy.stats import mannwhitneyu

    alternative = "greater" if higher_is_worse else "less"
    p = float(mannwhitneyu(list(new), list(old), alternative=alternative).pvalue)
    p_min = 1.0 / math.comb(n + m, n)
    if p_min < alpha:
        ok = math.isfinite(p) and p < alpha
        return Significance(p if math.isfinite(p) else None, ok,
                            f"Mann–Whitney U ({n} vs {m}), p {'<' if ok else '≥'} {alpha:g}")
    separated = (min(new) > max(old)) if higher_is_worse else (max(new) < min(old))
    return Significance(p if math.isfinite(p) else None, separated,
                        f"Mann–Whitney U ({n} vs {m}) cannot reach p < {alpha:g} (smallest p "
                        f"{p_min:.3g}); every new sample must be worse than every old one")


def decide(*, worse: bool, better: bool, change: float | None, floor: float | None,
           significant: bool | None) -> str:
    """The verdict of a metric with thresholds (the rule in this module's docstring).

    ``worse``/``better``: past every threshold in that direction; ``change``: ln(new/old);
    ``floor``: the noise floor on that scale (None: unknown); ``significant``: what a rank
    test said about the direction the change went (None: too few samples for one)."""
    inside = floor is not None and change is not None and abs(change) <= floor
    if worse:
        if inside:
            return "within noise"
        if significant is None:
            return "regression" if floor is not None else "undecided"
        return "regression" if significant else "undecided"
    if better:
        if inside:
            return "within noise"
        return "ok" if significant is False else "improvement"
    return "ok"


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Row:
    scenario: str
    metric: str
    unit: str
    old: float | None
    new: float | None
    n_old: int
    n_new: int
    ratio: float | None
    change_pct: float | None
    threshold: str | None
    p: float | None
    test: str
    # regression | undecided | within noise | improvement | ok | missing | no baseline | shown
    verdict: str
    noise_pct: float | None = None  # the noise floor, ± this % (None: unknown)
    noise: str = ""  # where the floor comes from
    advice: str | None = None  # what would decide an undecided row

    @property
    def gated(self) -> bool:
        return self.threshold is not None


@dataclass
class Comparison:
    baseline: dict[str, Any]
    current: dict[str, Any]
    thresholds: list[str]
    rows: list[Row]
    alpha: float = ALPHA
    only_baseline: list[str] = field(default_factory=list)
    only_current: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.gated and r.verdict in ("regression", "missing")]

    @property
    def undecided(self) -> list[Row]:
        return [r for r in self.rows if r.gated and r.verdict == "undecided"]

    @property
    def verdict(self) -> str:
        if not self.thresholds:
            return "compared"
        return "fail" if self.regressions or self.undecided else "pass"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict
        out["regressions"] = [regression_line(r) for r in self.regressions]
        out["undecided"] = [regression_line(r) for r in self.undecided]
        return out


def _run_info(report: dict[str, Any], label: str) -> dict[str, Any]:
    machine = report.get("machine", {})
    return {"label": label, "run_id": report.get("run_id"),
            "created_utc": report.get("created_utc"), "machine_id": machine.get("id"),
            "git": report.get("git")}


def machine_differences(old: dict[str, Any], new: dict[str, Any],
                        keys: Iterable[str] = FINGERPRINT_KEYS) -> list[str]:
    return [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def refuse_other_machine(old: dict[str, Any], new: dict[str, Any], baseline_label: str,
                         keys: Iterable[str] = FINGERPRINT_KEYS) -> None:
    diffs = machine_differences(old, new, keys)
    if diffs:
        raise CompareError(
            f"refusing to compare with {baseline_label}: it was measured on another machine "
            f"(fingerprint {old.get('id')}, this run {new.get('id')}; {'; '.join(diffs)}). "
            "Measurements from different machines are not comparable; pass "
            "--basht-compare-any-machine to compare anyway")


def _noise(spread: noise.Spread | None, old_v: list[float], new_v: list[float]
           ) -> tuple[float | None, str, noise.Spread | None]:
    """The floor of this comparison (log units), where it comes from, and the spread used:
    the history's once it holds MIN_HISTORY samples, else the samples' own (≥ 3 a side)."""
    n, m = len(old_v), len(new_v)
    if spread is not None and spread.value is not None and spread.samples >= noise.MIN_HISTORY:
        return (noise.floor(spread.value, n, m),
                f"{spread.source}, {spread.samples} samples", spread)
    if min(n, m) >= MIN_SAMPLES:
        pooled = noise.pooled_spread(old_v, new_v)
        if pooled is not None:
            own = noise.Spread(pooled, n + m, "these samples")
            return noise.floor(pooled, n, m), "these samples", own
    return None, "", None


def _advice(verdict: str, n: int, m: int, spread: noise.Spread | None) -> str | None:
    if verdict != "undecided":
        return None
    have = spread.samples if spread is not None and spread.source == "history" else 0
    more = (f"--basht-repeat 5 on both runs, {noise.MIN_HISTORY} saved runs of this "
            f"scenario on this machine for a noise floor ({have} so far)")
    if min(n, m) >= MIN_SAMPLES:
        more = f"more samples (--basht-repeat {2 * max(n, m)} on both runs)"
    return f"to decide: {more}, or basht paired --pairs {noise.RECOMMENDED_PAIRS} (docs/ci.md)"


def _row(name: str, key: str, old_s: list[dict[str, Any]], new_s: list[dict[str, Any]],
         thresholds: list[Threshold], alpha: float, spread: noise.Spread | None = None
         ) -> Row | None:
    direction = (new_s or old_s)[0].get("workload", {}).get("goal", {}).get("direction",
                                                                            "maximize")
    worse_up = worse_when_higher(key, direction)
    old_v = [v for v in (value_of(s, key) for s in old_s) if v is not None]
    new_v = [v for v in (value_of(s, key) for s in new_s) if v is not None]
    old = statistics.median(old_v) if old_v else None
    new = statistics.median(new_v) if new_v else None
    shown = " and ".join(t.shown for t in thresholds) or None
    unit = unit_of(key)
    if old is None and new is None:
        return None
    if old is None or new is None:
        verdict = "no baseline" if old is None else "missing"
        test = "no value in the baseline" if old is None else "no value in this run"
        return Row(name, key, unit, old, new, len(old_v), len(new_v), None, None, shown, None,
                   test, verdict if (shown or verdict == "no baseline") else "shown")
    ratio = new / old if old != 0 else None
    change_pct = (new - old) / abs(old) * 100 if old != 0 else None
    floor, source, used = _noise(spread, old_v, new_v)
    noise_pct = noise.as_pct(floor) if floor is not None else None
    sig = significance(old_v, new_v, worse_up, alpha)
    if not thresholds:
        return Row(name, key, unit, old, new, len(old_v), len(new_v), ratio, change_pct, None,
                   sig.p, sig.test, "shown", noise_pct, source)
    worse = all(t.exceeded(old, new, worse_up) for t in thresholds)
    better = all(t.exceeded(old, new, not worse_up) for t in thresholds)
    if better:
        sig = significance(old_v, new_v, not worse_up, alpha)
    test = sig.test
    if sig.significant is None and floor is not None:
        test = (f"noise floor only ({len(old_v)} vs {len(new_v)} samples; a significance "
                f"test needs ≥ {MIN_SAMPLES} on both sides)")
    verdict = decide(worse=worse, better=better, change=noise.log_change(old, new),
                     floor=floor, significant=sig.significant)
    return Row(name, key, unit, old, new, len(old_v), len(new_v), ratio, change_pct, shown,
               sig.p, test, verdict, noise_pct, source,
               _advice(verdict, len(old_v), len(new_v), used or spread))


def workload_notes(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """A scenario whose workload differs between the sides: a change in what is measured."""
    changes = noise.workload_changes(old.get("workload"), new.get("workload"))
    if not changes:
        return []
    return [f"the workload of {name} changed between baseline and candidate "
            f"({'; '.join(changes)}): the comparison measures that change too"]


def _load(records: list[dict[str, Any]]) -> tuple[float, float | None] | None:
    """The median others' CPU % and load average of records that carry conditions."""
    found = [r["conditions"] for r in records if isinstance(r.get("conditions"), dict)]
    others = [c["others_cpu_pct"] for c in found if c.get("others_cpu_pct") is not None]
    if not others:
        return None
    loads = [c["load_1m"] for c in found if c.get("load_1m") is not None]
    return statistics.median(others), statistics.median(loads) if loads else None


def conditions_notes(name: str, old_s: list[dict[str, Any]], new_s: list[dict[str, Any]]
                     ) -> list[str]:
    """Sides that ran under clearly different load: their difference may be the load's."""
    old, new = _load(old_s), _load(new_s)
    if old is None or new is None or abs(old[0] - new[0]) < LOAD_GAP_PCT:
        return []

    def shown(side: tuple[float, float | None]) -> str:
        load = "" if side[1] is None else f", load {side[1]:.2f}"
        return f"others' CPU {side[0]:.0f}%{load}"

    return [f"{name} ran under different load: baseline {shown(old)}, this run {shown(new)} "
            "(of the machine's CPU, outside the run): a difference may be the load's"]


def compare(old: dict[str, Any], new: dict[str, Any], thresholds: Sequence[Threshold] = (),
            *, baseline_label: str = "the baseline", current_label: str = "this run",
            any_machine: bool = False, alpha: float = ALPHA,
            spreads: Mapping[tuple[str, str], noise.Spread] | None = None) -> Comparison:
    """Compare every scenario present in both reports on the thresholds' keys (and SHOWN);
    ``spreads`` holds the history's spread per (scenario, metric), if any."""
    check_report(old, baseline_label)
    check_report(new, current_label)
    spreads = spreads or {}
    notes: list[str] = []
    if any_machine:
        diffs = machine_differences(old["machine"], new["machine"])
        if diffs:
            notes.append("compared across machines (--basht-compare-any-machine): "
                         + "; ".join(diffs))
    else:
        refuse_other_machine(old["machine"], new["machine"], baseline_label)
    peaks = [(r.get("concurrency") or {}).get("max_parallel", 1) for r in (old, new)]
    if peaks[0] != peaks[1]:
        notes.append(f"the baseline ran up to {peaks[0]} scenario(s) at once, this run up to "
                     f"{peaks[1]}: scenarios sharing the machine take longer, and their idle "
                     "and contention energy differ, so compare runs made alike (same -n)")
    old_s, old_out = samples(old)
    new_s, new_out = samples(new)
    notes += [f"baseline {n}" for n in old_out] + [f"this run {n}" for n in new_out]
    by_key: dict[str, list[Threshold]] = {}
    for t in thresholds:
        by_key.setdefault(t.key, []).append(t)
    keys = [*by_key, *(k for k in SHOWN if k not in by_key)]
    common = [name for name in new_s if name in old_s]
    rows = [row for name in common for key in keys
            if (row := _row(name, key, old_s[name], new_s[name], by_key.get(key, []), alpha,
                            spreads.get((name, key))))]
    if thresholds and not common:
        raise CompareError(f"nothing to compare: no scenario of {current_label} is in "
                           f"{baseline_label} (baseline scenarios: "
                           f"{', '.join(old_s) or 'none'})")
    gated = [r for r in rows if r.gated]
    unchecked = [r for r in gated if r.verdict == "no baseline"]
    if thresholds and len(unchecked) == len(gated):  # a gate that checked nothing
        raise CompareError(
            f"nothing checked: {baseline_label} has no value of "
            f"{', '.join(by_key)} for any scenario this run has too "
            f"({', '.join(common)}), so no threshold could be applied")
    if unchecked:
        notes.append("not checked, no value in the baseline: "
                     + ", ".join(f"{r.scenario} {r.metric}" for r in unchecked))
    for name in common:
        notes += workload_notes(name, old_s[name][0], new_s[name][0])
        notes += conditions_notes(name, old_s[name], new_s[name])
    notes += blind_notes(rows, thresholds)
    return Comparison(
        baseline=_run_info(old, baseline_label), current=_run_info(new, current_label),
        thresholds=[t.text for t in thresholds], rows=rows, alpha=alpha,
        only_baseline=[n for n in old_s if n not in new_s],
        only_current=[n for n in new_s if n not in old_s], notes=notes)


def blind_notes(rows: Sequence[Row], thresholds: Sequence[Threshold]) -> list[str]:
    """Metrics whose noise floor is wider than their relative threshold: that gate cannot
    see a change of the threshold's size on this machine."""
    relative = {t.key: t.amount * 100 for t in thresholds if t.relative}
    out = []
    for r in rows:
        limit = relative.get(r.metric)
        if r.gated and limit is not None and r.noise_pct is not None and r.noise_pct > limit:
            out.append(f"the noise floor of {r.scenario} {r.metric} (±{r.noise_pct:.1f}%, "
                       f"{r.noise}) is wider than its threshold (+{limit:g}%): this gate "
                       "cannot see a change of that size here; basht paired can (docs/ci.md)")
    return out


def history_spreads(store: History, old: dict[str, Any], new: dict[str, Any],
                    keys: Iterable[str]) -> dict[tuple[str, str], noise.Spread]:
    """The history's spread of each metric of each scenario both reports hold: its samples
    on this run's machine fingerprint with the baseline's workload (the newest
    HISTORY_WINDOW of them; the run judged, if saved already, is not its own noise)."""
    old_s, _ = samples(old)
    new_s, _ = samples(new)
    machine_id = str(new["machine"].get("id", ""))
    out: dict[tuple[str, str], noise.Spread] = {}
    for name in (n for n in new_s if n in old_s):
        found = [e.values for e in store.samples(
            name, machine_id, noise.workload_key(old_s[name][0].get("workload")),
            limit=noise.HISTORY_WINDOW, exclude_run=new.get("run_id"))]
        for key in keys:
            values = [float(v[key]) for v in found if isinstance(v.get(key), (int, float))
                      and not isinstance(v.get(key), bool) and math.isfinite(v[key])]
            if values:
                out[(name, key)] = noise.Spread(noise.spread(values), len(values), "history")
    return out


# ----------------------------------------------------------------------------- output


def fmt_value(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if value == 0:
        text = "0"
    elif abs(value) >= 1e9 or abs(value) < 1e-3:
        text = f"{value:.3e}"
    elif abs(value) >= 1e4:
        text = f"{value:.0f}"
    else:
        text = f"{value:.4g}"
    return f"{text} {unit}".rstrip()


def fmt_change(row: Row) -> str:
    if row.old is None or row.new is None:
        return "—"
    if row.change_pct is None:
        return "from 0" if row.new != 0 else "±0%"
    return f"{row.change_pct:+.1f}%"


def fmt_noise(row: Row) -> str:
    return "unknown" if row.noise_pct is None else f"±{row.noise_pct:.1f}%"


def regression_line(row: Row) -> str:
    """One line a CI log shows: scenario, metric, old, new, change, threshold, noise floor,
    test (and what would decide an undecided one)."""
    if row.new is None:
        return (f"{row.scenario} {row.metric}: old {fmt_value(row.old, row.unit)}, new — "
                f"(no value in this run; threshold {row.threshold})")
    ratio = f", ×{row.ratio:.3g}" if row.ratio is not None else ""
    floor = ("noise floor unknown" if row.noise_pct is None
             else f"noise ±{row.noise_pct:.1f}% ({row.noise})")
    advice = f" — {row.advice}" if row.advice else ""
    return (f"{row.scenario} {row.metric}: old {fmt_value(row.old, row.unit)} → new "
            f"{fmt_value(row.new, row.unit)} ({fmt_change(row)}{ratio}; threshold "
            f"{row.threshold}; {floor}; {row.test}){advice}")


def table(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The comparison as rows (from its ``to_dict`` form, as stored in report.json)."""
    headers = ["scenario", "metric", "old", "new", "ratio", "change", "noise", "threshold",
               "p", "verdict", "n old/new"]
    rows = []
    for r in comparison["rows"]:
        row = Row(**r)
        rows.append([
            row.scenario.split("::")[-1], row.metric, fmt_value(row.old), fmt_value(row.new),
            "—" if row.ratio is None else f"{row.ratio:.3f}", fmt_change(row),
            fmt_noise(row), row.threshold or "", "—" if row.p is None else f"{row.p:.3g}",
            {"shown": "", "ok": ""}.get(row.verdict, row.verdict), f"{row.n_old}/{row.n_new}"])
    return headers, rows


def gate_lines(comparison: dict[str, Any]) -> list[str]:
    """What the terminal (and ``basht compare``) says: the verdict, then one line per
    regression, per undecided change (with what would decide it), per change past its
    threshold but within the noise, and per note."""
    label = comparison.get("baseline", {}).get("label", "the baseline")
    if comparison["verdict"] == "error":
        return [f"basht gate: ERROR — {comparison['error']}"]
    rows = [Row(**r) for r in comparison["rows"]]
    thresholds = ",".join(comparison["thresholds"])
    scenarios = len({r.scenario for r in rows})
    regressions = [r for r in rows if r.gated and r.verdict in ("regression", "missing")]
    undecided = [r for r in rows if r.gated and r.verdict == "undecided"]
    noisy = [r for r in rows if r.gated and r.verdict == "within noise"]
    if comparison["verdict"] == "compared":
        lines = [f"basht compare: {scenarios} scenario(s) compared with {label} (no "
                 "thresholds given, so no gate)"]
    elif regressions or undecided:
        counts = ", ".join(text for n, text in (
            (regressions, f"{len(regressions)} regression(s)"),
            (undecided, f"{len(undecided)} undecided (not told from noise)")) if n)
        lines = [f"basht gate: FAIL — {counts} past {thresholds} against {label}"]
        lines += [f"REGRESSION {regression_line(r)}" for r in regressions]
        lines += [f"UNDECIDED {regression_line(r)}" for r in undecided]
    else:
        within = f"; {len(noisy)} past it within the noise" if noisy else ""
        lines = [f"basht gate: PASS — {scenarios} scenario(s) within {thresholds} of "
                 f"{label}{within}"]
    lines += [f"within noise: {regression_line(r)}" for r in noisy]
    if comparison.get("only_baseline"):
        lines.append("note: in the baseline, not in this run: "
                     + ", ".join(comparison["only_baseline"]))
    if comparison.get("only_current"):
        lines.append("note: new in this run (no baseline): "
                     + ", ".join(comparison["only_current"]))
    lines += [f"note: {n}" for n in comparison.get("notes", [])]
    return lines


# ----------------------------------------------------------------------------- a run's gate

#: Terminal lines the gate says in red: a failed or broken gate, each regression and each
#: change it could not decide.
ALARMING = ("basht gate: FAIL", "basht gate: ERROR", "REGRESSION", "UNDECIDED")
EXIT_TESTS_FAILED = 1  # pytest.ExitCode.TESTS_FAILED: the gate failed


@dataclass
class Gate:
    """A pytest run's gate: the baseline ``--basht-compare`` names, loaded before any test,
    and the thresholds (``--basht-fail-on``) the run's report is held to at its end."""

    ref: str | None = None
    thresholds: tuple[Threshold, ...] = ()
    any_machine: bool = False
    baseline: Resolved | None = None
    history: SessionHistory | None = None  # where the noise floors come from

    @property
    def label(self) -> str:
        assert self.baseline is not None
        return f"baseline {self.baseline.label}"

    def check(self) -> None:
        """Thresholds need a baseline to hold the run to."""
        if self.thresholds and self.ref is None:
            raise OptionError("--basht-fail-on", "--basht-compare REF with it (the baseline "
                              "to hold this run to)", ",".join(t.text for t in self.thresholds))

    def load(self, history: SessionHistory) -> None:
        """Find and check the baseline now (a usage error before any test): a report file,
        or a run in ``history`` measured on this machine (unless ``any_machine``)."""
        self.history = history
        if self.ref is None:
            return
        from pytest_basht.report import history as history_mod  # SQLAlchemy loads on use

        here = fingerprint("")
        keys = () if self.any_machine else HARDWARE_KEYS
        store = None if history_mod.looks_like_path(self.ref) else history.store()
        self.baseline = history_mod.resolve(self.ref, store, machine=here, keys=keys)
        check_report(self.baseline.report, self.label)
        if not self.any_machine:
            refuse_other_machine(self.baseline.report["machine"], here, self.label,
                                 HARDWARE_KEYS)

    def judge(self, report: dict[str, Any]) -> dict[str, Any] | None:
        """Compare the run's report with the baseline; the result goes into the report (as
        ``comparison``), an unusable comparison as the verdict ``error``. None: no baseline."""
        if self.baseline is None:
            return None
        try:
            check_report(report, "this run")
            spreads, problem = self.spreads(report)
            result = compare(self.baseline.report, report, self.thresholds,
                             baseline_label=self.label, any_machine=self.any_machine,
                             spreads=spreads)
        except BashtUsageError as exc:
            out = {"verdict": "error", "error": str(exc), "baseline": {"label": self.label},
                   "thresholds": [t.text for t in self.thresholds], "rows": []}
        else:
            if problem is not None:
                result.notes.append(problem)
            out = result.to_dict()
        report["comparison"] = clean(out)
        return report["comparison"]

    def spreads(self, report: dict[str, Any]
                ) -> tuple[dict[tuple[str, str], noise.Spread], str | None]:
        """The history's spreads for the gated metrics, and why there are none if the
        store failed (the gate then decides without them)."""
        if not self.thresholds or self.history is None or self.baseline is None:
            return {}, None
        try:
            store = self.history.store()
            if store is None:
                return {}, None
            return history_spreads(store, self.baseline.report, report,
                                   {t.key for t in self.thresholds}), None
        except BashtUsageError as exc:
            return {}, f"no noise floor from the history ({exc})"


def alarms(comparison: dict[str, Any]) -> list[tuple[str, bool]]:
    """The gate's terminal lines, each with whether it is alarming (shown in red)."""
    return [(line, line.startswith(ALARMING)) for line in gate_lines(comparison)]


def exit_status(comparison: dict[str, Any]) -> int:
    """The exit status the gate's verdict gives the run (0: none beyond its tests')."""
    return EXIT_TESTS_FAILED if comparison["verdict"] in ("fail", "error") else 0

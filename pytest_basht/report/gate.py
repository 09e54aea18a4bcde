"""The gate: compare a run with a baseline, metric by metric, and decide (pure functions);
and ``Gate``, a pytest run's: its baseline loaded before any test, its report judged at the end.

A threshold says how much worse a metric may get, relative (``energy_kwh:+10%``) or in
the metric's own unit (``energy_kwh:+0.001``); several thresholds on one key must all be
passed (``energy_kwh:+10%,energy_kwh:+0.0001``: 10% worse *and* 0.1 Wh more). Every
Table 2 metric is worse when it rises; ``best_value`` and ``test_score`` are worse when
they move against the scenario's goal direction; ``hypervolume`` (of the scenario's Pareto
front of trials) is worse when it falls, and compared only where the workload fixes its
reference point (``goal.reference`` for every objective: else two runs' hypervolumes are
measured from different points).

Samples are the repeats of a scenario (``--basht-repeat``): the centre of each side is
its median. As in asv, a change past its threshold is a regression only when it is also
significant: with ≥ 3 samples on both sides a one-sided Mann–Whitney U test (scipy) must
give p < 0.05. 3 + 3 samples cannot give p < 0.05 (the smallest exact p is 0.05), so there
every new sample must be worse than every old one. With fewer than 3 samples on a side the
threshold alone decides, and the row says so. ``~`` marks a change past the threshold
that is not significant.
"""

from __future__ import annotations

import difflib
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_basht.errors import BashtUsageError, OptionError
from pytest_basht.machine import fingerprint
from pytest_basht.metrics import TABLE2_KEYS, UNITS
from pytest_basht.report.json import clean

if TYPE_CHECKING:
    from pytest_basht.report.history import Resolved, SessionHistory

ALPHA = 0.05
MIN_SAMPLES = 3
GOAL_KEYS = ("best_value", "test_score")
#: better when higher, whatever the goal's direction
HIGHER_KEYS = ("hypervolume",)
#: keys a threshold takes without a sign (worse against a direction, not by rising)
UNSIGNED_KEYS = (*GOAL_KEYS, *HIGHER_KEYS)
KEYS = (*TABLE2_KEYS, *GOAL_KEYS, *HIGHER_KEYS)
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


class ThresholdError(ValueError):
    """A malformed ``--basht-fail-on`` item; the message says what was expected."""


class CompareError(BashtUsageError):
    """Two reports that cannot be compared; the message says why and what to do."""


# ----------------------------------------------------------------------------- thresholds


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
        unit = "" if self.relative else UNITS.get(self.key, "")
        return f"{self.limit} {unit}".rstrip()

    @property
    def text(self) -> str:
        """As written on the command line (normalised)."""
        return f"{self.key}:{self.limit}"


def _key(name: str) -> str:
    name = name.strip()
    if name in KEYS:
        return name
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    near = difflib.get_close_matches(name, [*KEYS, *ALIASES], n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise ThresholdError(f"a metric key such as {', '.join(KEYS[:3])}, ... — unknown "
                         f"'{name}'{hint}; keys: {', '.join(KEYS)}")


def parse_threshold(item: str) -> Threshold:
    """``energy_kwh:+10%`` or ``energy_kwh:+0.001`` (or ``test_score:2%``)."""
    name, sep, amount = item.partition(":")
    if not sep or not amount.strip():
        raise ThresholdError(f"KEY:THRESHOLD items like energy_kwh:+10% or energy_kwh:+0.001 "
                             f"— '{item.strip()}' has no threshold")
    key = _key(name)
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
    else:
        raw = scenario.get(key) if key in GOAL_KEYS else scenario["metrics"].get(key)
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
    significant: bool | None  # None: too few samples, the threshold alone decides
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
    verdict: str  # regression | ~ | improved | ok | missing | no baseline | shown

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
    def verdict(self) -> str:
        if not self.thresholds:
            return "compared"
        return "fail" if self.regressions else "pass"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict
        out["regressions"] = [regression_line(r) for r in self.regressions]
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


def _row(name: str, key: str, old_s: list[dict[str, Any]], new_s: list[dict[str, Any]],
         thresholds: list[Threshold], alpha: float) -> Row | None:
    direction = (new_s or old_s)[0].get("workload", {}).get("goal", {}).get("direction",
                                                                            "maximize")
    worse_up = worse_when_higher(key, direction)
    old_v = [v for v in (value_of(s, key) for s in old_s) if v is not None]
    new_v = [v for v in (value_of(s, key) for s in new_s) if v is not None]
    old = statistics.median(old_v) if old_v else None
    new = statistics.median(new_v) if new_v else None
    shown = " and ".join(t.shown for t in thresholds) or None
    unit = UNITS.get(key, "")
    if old is None and new is None:
        return None
    if old is None or new is None:
        verdict = "no baseline" if old is None else "missing"
        test = "no value in the baseline" if old is None else "no value in this run"
        return Row(name, key, unit, old, new, len(old_v), len(new_v), None, None, shown, None,
                   test, verdict if (shown or verdict == "no baseline") else "shown")
    ratio = new / old if old != 0 else None
    change_pct = (new - old) / abs(old) * 100 if old != 0 else None
    sig = significance(old_v, new_v, worse_up, alpha)
    if not thresholds:
        return Row(name, key, unit, old, new, len(old_v), len(new_v), ratio, change_pct, None,
                   sig.p, sig.test, "shown")
    worse = all(t.exceeded(old, new, worse_up) for t in thresholds)
    better = all(t.exceeded(old, new, not worse_up) for t in thresholds)
    if worse:
        verdict = "~" if sig.significant is False else "regression"
    elif better:
        improved = significance(old_v, new_v, not worse_up, alpha).significant is not False
        verdict = "improved" if improved else "ok"
    else:
        verdict = "ok"
    return Row(name, key, unit, old, new, len(old_v), len(new_v), ratio, change_pct, shown,
               sig.p, sig.test, verdict)


def compare(old: dict[str, Any], new: dict[str, Any], thresholds: Sequence[Threshold] = (),
            *, baseline_label: str = "the baseline", current_label: str = "this run",
            any_machine: bool = False, alpha: float = ALPHA) -> Comparison:
    """Compare every scenario present in both reports on the thresholds' keys (and SHOWN)."""
    check_report(old, baseline_label)
    check_report(new, current_label)
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
            if (row := _row(name, key, old_s[name], new_s[name], by_key.get(key, []), alpha))]
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
    few = sorted({r.scenario for r in rows if r.gated and r.test.startswith("threshold only")})
    if few:
        notes.append(f"{len(few)} scenario(s) have fewer than {MIN_SAMPLES} samples on a side, "
                     "so the threshold alone decides for them (--basht-repeat 5 on both runs "
                     "adds a significance test)")
    return Comparison(
        baseline=_run_info(old, baseline_label), current=_run_info(new, current_label),
        thresholds=[t.text for t in thresholds], rows=rows, alpha=alpha,
        only_baseline=[n for n in old_s if n not in new_s],
        only_current=[n for n in new_s if n not in old_s], notes=notes)


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


def regression_line(row: Row) -> str:
    """One line a CI log shows: scenario, metric, old, new, change, threshold."""
    if row.new is None:
        return (f"{row.scenario} {row.metric}: old {fmt_value(row.old, row.unit)}, new — "
                f"(no value in this run; threshold {row.threshold})")
    ratio = f", ×{row.ratio:.3g}" if row.ratio is not None else ""
    return (f"{row.scenario} {row.metric}: old {fmt_value(row.old, row.unit)} → new "
            f"{fmt_value(row.new, row.unit)} ({fmt_change(row)}{ratio}; threshold "
            f"{row.threshold}; {row.test})")


def table(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The comparison as rows (from its ``to_dict`` form, as stored in report.json)."""
    headers = ["scenario", "metric", "old", "new", "ratio", "change", "threshold", "p",
               "verdict", "n old/new"]
    rows = []
    for r in comparison["rows"]:
        row = Row(**r)
        rows.append([
            row.scenario.split("::")[-1], row.metric, fmt_value(row.old), fmt_value(row.new),
            "—" if row.ratio is None else f"{row.ratio:.3f}", fmt_change(row),
            row.threshold or "", "—" if row.p is None else f"{row.p:.3g}",
            {"shown": "", "ok": ""}.get(row.verdict, row.verdict), f"{row.n_old}/{row.n_new}"])
    return headers, rows


def gate_lines(comparison: dict[str, Any]) -> list[str]:
    """What the terminal (and ``basht compare``) says: the verdict, then one line per
    regression, per change that is past its threshold but not significant, and per note."""
    label = comparison.get("baseline", {}).get("label", "the baseline")
    if comparison["verdict"] == "error":
        return [f"basht gate: ERROR — {comparison['error']}"]
    rows = [Row(**r) for r in comparison["rows"]]
    thresholds = ",".join(comparison["thresholds"])
    scenarios = len({r.scenario for r in rows})
    regressions = [r for r in rows if r.gated and r.verdict in ("regression", "missing")]
    if comparison["verdict"] == "compared":
        lines = [f"basht compare: {scenarios} scenario(s) compared with {label} (no "
                 "thresholds given, so no gate)"]
    elif regressions:
        lines = [f"basht gate: FAIL — {len(regressions)} regression(s) past {thresholds} "
                 f"against {label}"]
        lines += [f"REGRESSION {regression_line(r)}" for r in regressions]
    else:
        lines = [f"basht gate: PASS — {scenarios} scenario(s) within {thresholds} of {label}"]
    lines += [f"~ {regression_line(r)}: past the threshold, not significant"
              for r in rows if r.verdict == "~"]
    if comparison.get("only_baseline"):
        lines.append("note: in the baseline, not in this run: "
                     + ", ".join(comparison["only_baseline"]))
    if comparison.get("only_current"):
        lines.append("note: new in this run (no baseline): "
                     + ", ".join(comparison["only_current"]))
    lines += [f"note: {n}" for n in comparison.get("notes", [])]
    return lines


# ----------------------------------------------------------------------------- a run's gate

#: Terminal lines the gate says in red: a failed or broken gate, and each regression.
ALARMING = ("basht gate: FAIL", "basht gate: ERROR", "REGRESSION")
EXIT_TESTS_FAILED = 1  # pytest.ExitCode.TESTS_FAILED: the gate failed


@dataclass
class Gate:
    """A pytest run's gate: the baseline ``--basht-compare`` names, loaded before any test,
    and the thresholds (``--basht-fail-on``) the run's report is held to at its end."""

    ref: str | None = None
    thresholds: tuple[Threshold, ...] = ()
    any_machine: bool = False
    baseline: Resolved | None = None

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
            result = compare(self.baseline.report, report, self.thresholds,
                             baseline_label=self.label, any_machine=self.any_machine)
        except BashtUsageError as exc:
            out = {"verdict": "error", "error": str(exc), "baseline": {"label": self.label},
                   "thresholds": [t.text for t in self.thresholds], "rows": []}
        else:
            out = result.to_dict()
        report["comparison"] = clean(out)
        return report["comparison"]


def alarms(comparison: dict[str, Any]) -> list[tuple[str, bool]]:
    """The gate's terminal lines, each with whether it is alarming (shown in red)."""
    return [(line, line.startswith(ALARMING)) for line in gate_lines(comparison)]


def exit_status(comparison: dict[str, Any]) -> int:
    """The exit status the gate's verdict gives the run (0: none beyond its tests')."""
    return EXIT_TESTS_FAILED if comparison["verdict"] in ("fail", "error") else 0

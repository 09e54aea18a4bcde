"""Paired runs decided (pure functions): N pairs of reports — the baseline's and the
candidate's run of the same benchmarks, one after the other in one job — compared metric
by metric on the pairs' ratios, and the verdict report (JSON and Markdown) of ``basht
paired``.

Each pair gives one ratio candidate / baseline per scenario and metric (each run's median
where it repeats scenarios). Load that hits both runs of a pair cancels in its ratio; what
is left is decided by ``noise.paired_test`` (Wilcoxon signed-rank) under the gate's rule
(``gate.decide``): the change is the median ratio; inside the pairs' noise floor it is
``within noise``; past its threshold and significant (one-sided p < 0.05) a
``regression``; past its threshold but not significant, or with fewer than
``noise.MIN_PAIRS`` pairs, ``undecided``, with the number of pairs that would decide.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pytest_basht.report import noise
from pytest_basht.report.gate import (
    ALPHA,
    FINGERPRINT_KEYS,
    SHOWN,
    CompareError,
    Comparison,
    Row,
    Threshold,
    check_report,
    conditions_notes,
    decide,
    fmt_value,
    gate_lines,
    machine_differences,
    samples,
    table,
    unit_of,
    value_of,
    workload_notes,
    worse_when_higher,
)
from pytest_basht.report.json import clean


@dataclass(frozen=True)
class Run:
    """One benchmark run of a paired job: which pair and side, where its report is."""

    pair: int
    side: str  # "baseline" or "candidate"
    report_dir: str
    seconds: float
    exit_status: int


def _medians(report: dict[str, Any], key: str) -> dict[str, float]:
    """Each scenario's median value of ``key`` in one run."""
    by_scenario, _ = samples(report)
    out = {}
    for name, records in by_scenario.items():
        values = [v for v in (value_of(r, key) for r in records) if v is not None]
        if values:
            out[name] = statistics.median(values)
    return out


def _row(name: str, key: str, olds: list[float], news: list[float], direction: str,
         thresholds: list[Threshold], alpha: float) -> Row:
    unit = unit_of(key)
    shown = " and ".join(t.shown for t in thresholds) or None
    n = len(olds)
    worse_up = worse_when_higher(key, direction)
    result = noise.paired_test(olds, news)
    old = statistics.median(olds)
    new = old * result.ratio if result.ratio is not None else statistics.median(news)
    ratio = new / old if old != 0 else None
    change_pct = (new - old) / abs(old) * 100 if old != 0 else None
    floor = (noise.paired_floor(result.spread, n)
             if result.spread is not None and n >= noise.MIN_PAIRS else None)
    noise_pct = noise.as_pct(floor) if floor is not None else None
    source = f"pairs, {n}"
    worse = bool(thresholds) and all(t.exceeded(old, new, worse_up) for t in thresholds)
    better = bool(thresholds) and all(t.exceeded(old, new, not worse_up) for t in thresholds)
    # the direction this row tests: worse, or better where it is past its threshold so
    p = result.p_higher if worse_up != better else result.p_lower
    if result.p_higher is None:
        test = (f"Wilcoxon signed-rank needs ≥ {noise.MIN_PAIRS} pairs (has {n}; the "
                f"smallest one-sided p with {n} is {0.5 ** n:.3g})")
        significant = None
    else:
        significant = p is not None and p < alpha
        test = f"Wilcoxon signed-rank ({n} pairs), p {'<' if significant else '≥'} {alpha:g}"
    if not thresholds:
        return Row(name, key, unit, old, new, n, n, ratio, change_pct, None, p, test, "shown",
                   noise_pct, source)
    verdict = decide(worse=worse, better=better,
                     change=math.log(result.ratio) if result.ratio else None, floor=floor,
                     significant=significant)
    advice = None
    if verdict == "undecided":
        relative = [t.log_amount for t in thresholds if t.log_amount is not None]
        need = noise.pairs_needed(result.spread, min(relative) if relative else None, n)
        advice = f"to decide: --pairs {need}"
    return Row(name, key, unit, old, new, n, n, ratio, change_pct, shown, p, test, verdict,
               noise_pct, source, advice)


def _missing(name: str, key: str, thresholds: list[Threshold], in_baseline: bool) -> Row:
    """A metric one side never had: not checkable, or a value the candidate lost."""
    shown = " and ".join(t.shown for t in thresholds) or None
    verdict = "missing" if in_baseline else "no baseline"
    test = "no value in the candidate" if in_baseline else "no value in the baseline"
    return Row(name, key, unit_of(key), None, None, 0, 0, None, None, shown, None, test,
               verdict if shown or not in_baseline else "shown")


def compare_pairs(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
                  thresholds: Sequence[Threshold] = (), *, alpha: float = ALPHA,
                  baseline_label: str = "the baseline", current_label: str = "the candidate"
                  ) -> Comparison:
    """The gate over N pairs (baseline report, candidate report) of one job."""
    if not pairs:
        raise CompareError("nothing to compare: no pair of runs finished")
    for i, (old, new) in enumerate(pairs, 1):
        check_report(old, f"{baseline_label} (pair {i})")
        check_report(new, f"{current_label} (pair {i})")
    first_old, first_new = pairs[0]
    diffs = machine_differences(first_old["machine"], first_new["machine"], FINGERPRINT_KEYS)
    if diffs:
        raise CompareError(f"{baseline_label} and {current_label} measured differently on this "
                           f"machine ({'; '.join(diffs)}): their pytest-basht or workloads "
                           "select different meters, so their energy is not comparable")
    old_s, _ = samples(first_old)
    new_s, _ = samples(first_new)
    common = [name for name in new_s if name in old_s]
    if not common:
        raise CompareError(f"nothing to compare: no scenario of {current_label} is in "
                           f"{baseline_label} (baseline scenarios: "
                           f"{', '.join(old_s) or 'none'})")
    by_key: dict[str, list[Threshold]] = {}
    for t in thresholds:
        by_key.setdefault(t.key, []).append(t)
    keys = [*by_key, *(k for k in SHOWN if k not in by_key)]
    rows = []
    for key in keys:
        per_pair = [(_medians(old, key), _medians(new, key)) for old, new in pairs]
        for name in common:
            both = [(o[name], n[name]) for o, n in per_pair if name in o and name in n]
            direction = (new_s[name][0].get("workload", {}).get("goal", {})
                         .get("direction", "maximize"))
            if both:
                rows.append(_row(name, key, [a for a, _ in both], [b for _, b in both],
                                 direction, by_key.get(key, []), alpha))
            elif any(name in o for o, _ in per_pair) or any(name in n for _, n in per_pair):
                rows.append(_missing(name, key, by_key.get(key, []),
                                     any(name in o for o, _ in per_pair)))
    gated = [r for r in rows if r.gated]
    unchecked = [r for r in gated if r.verdict == "no baseline"]
    if thresholds and len(unchecked) == len(gated):
        raise CompareError(f"nothing checked: {baseline_label} has no value of "
                           f"{', '.join(by_key)} for any scenario ({', '.join(common)}); a "
                           "pytest-basht from before per-phase metrics has no phase keys")
    notes: list[str] = []
    if unchecked:
        notes.append("not checked, no value in the baseline: "
                     + ", ".join(f"{r.scenario} {r.metric}" for r in unchecked))
    for name in common:
        notes += workload_notes(name, old_s[name][0], new_s[name][0])
        olds = [r for old, _ in pairs for r in samples(old)[0].get(name, [])]
        news = [r for _, new in pairs for r in samples(new)[0].get(name, [])]
        notes += conditions_notes(name, olds, news)
    return Comparison(
        baseline={"label": baseline_label, "runs": len(pairs)},
        current={"label": current_label, "runs": len(pairs)},
        thresholds=[t.text for t in thresholds], rows=rows, alpha=alpha,
        only_baseline=[n for n in old_s if n not in new_s],
        only_current=[n for n in new_s if n not in old_s], notes=notes)


def verdict_report(comparison: Comparison, *, baseline: dict[str, Any],
                   candidate: dict[str, Any], runs: Sequence[Run], pairs: int,
                   minutes: float, concurrent: bool, error: str | None = None
                   ) -> dict[str, Any]:
    """What ``basht paired`` writes as paired.json: its sides, runs, cost (the job's wall
    minutes) and verdict."""
    out = {"kind": "paired", "baseline": baseline, "candidate": candidate,
           "pairs": pairs, "concurrent": concurrent, "runs": [asdict(r) for r in runs],
           "minutes": minutes, "comparison": comparison.to_dict()}
    if error is not None:
        out["comparison"].update(verdict="error", error=error)
    return clean(out)


def markdown(report: dict[str, Any]) -> str:
    """paired.md: the verdict, the table, the runs."""
    comparison = report["comparison"]
    base, cand = report["baseline"], report["candidate"]
    lines = ["# Paired benchmark runs", "",
             f"Baseline {base.get('ref')} ({str(base.get('commit'))[:12]}) against "
             f"{cand.get('label')}: {report['pairs']} pairs "
             f"({'both runs of a pair at once' if report['concurrent'] else 'one after the other'}"
             f"), {len(report['runs'])} runs in {report['minutes']:.1f} minutes.", ""]
    if comparison.get("rows"):
        headers, rows = table(comparison)
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                  for row in rows]
        lines.append("")
    lines += ["```text", *gate_lines(comparison), "```", "", "## Runs", "",
              "| pair | side | seconds | exit | report |", "|---|---|---|---|---|"]
    lines += [f"| {r['pair']} | {r['side']} | {fmt_value(r['seconds'])} | {r['exit_status']} "
              f"| {r['report_dir']} |" for r in report["runs"]]
    return "\n".join(lines) + "\n"

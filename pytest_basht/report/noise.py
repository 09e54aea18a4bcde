"""How noisy a measurement is, and whether a change stands out of that noise (pure functions).

* **Spread** — the robust relative spread of repeated measurements: 1.4826 × the median
  absolute deviation of their logarithms (for a normal spread that is its standard
  deviation; one run's burst of background load does not move it). Logarithms make it
  relative: a spread of 0.05 is about ±5 % per sample.
* **Noise floor** — the smallest change a comparison can tell from noise:
  ``NOISE_Z`` × spread × √(1/n_old + 1/n_new) for medians of n_old and n_new independent
  runs (the history's spread), ``NOISE_Z`` × spread / √n for the median of n paired ratios.
  As a percentage: (e^floor − 1) × 100.
* **Paired test** — the ratios candidate / baseline of N pairs of runs, decided by the
  one-sided Wilcoxon signed-rank test on their logarithms (scipy): distribution-free (a
  shared runner's noise is skewed and heavy-tailed), exact for small N, and it uses the
  pairing, so load that hits both runs of a pair cancels. The smallest one-sided p it can
  give is 1 / 2^N: N ≥ ``MIN_PAIRS`` = 5 pairs to reach p < 0.05 at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAD_SIGMA = 1 / statistics.NormalDist().inv_cdf(0.75)  # ≈ 1.4826: MAD × this = σ if normal
NOISE_Z = 2.0  # a floor of 2 standard errors: about 95 % of unchanged comparisons fall inside
MIN_HISTORY = 5  # samples of a scenario in the history before its spread is used
HISTORY_WINDOW = 20  # the newest samples that make the spread (the machine changes too)
MIN_PAIRS = 5  # one-sided signed-rank: 1/2^5 = 0.031 is the first p below 0.05
RECOMMENDED_PAIRS = 6  # p down to 0.016; one pair against the others (by a little) still decides


@dataclass(frozen=True)
class Spread:
    """The spread of a metric over ``samples`` measurements, and where they came from."""

    value: float | None  # relative (log) standard deviation of one sample; None: one sample
    samples: int
    source: str  # "history", "these samples" or "pairs"


def _mad(values: Sequence[float]) -> float:
    centre = statistics.median(values)
    return statistics.median(abs(v - centre) for v in values)


def spread(values: Sequence[float]) -> float | None:
    """The robust relative spread of positive measurements (None: fewer than two, or one
    not positive, where a relative spread means nothing)."""
    if len(values) < 2 or any(not v > 0 for v in values):
        return None
    return MAD_SIGMA * _mad([math.log(v) for v in values])


def pooled_spread(*groups: Sequence[float]) -> float | None:
    """One spread of several groups of positive samples, each about its own median."""
    deviations: list[float] = []
    for group in groups:
        if len(group) < 2 or any(not v > 0 for v in group):
            return None
        logs = [math.log(v) for v in group]
        centre = statistics.median(logs)
        deviations += [abs(v - centre) for v in logs]
    return MAD_SIGMA * statistics.median(deviations) if deviations else None


def floor(spread_value: float, n_old: int, n_new: int) -> float:
    """The noise floor (log units) of medians of n_old and n_new independent samples."""
    return NOISE_Z * spread_value * math.sqrt(1 / n_old + 1 / n_new)


def paired_floor(spread_value: float, pairs: int) -> float:
    """The noise floor (log units) of the median of ``pairs`` paired log ratios."""
    return NOISE_Z * spread_value / math.sqrt(pairs)


def as_pct(log_change: float) -> float:
    return (math.exp(log_change) - 1) * 100


def log_change(old: float, new: float) -> float | None:
    """ln(new / old); None where either is not positive."""
    return math.log(new / old) if old > 0 and new > 0 else None


@dataclass(frozen=True)
class PairedTest:
    """The signed-rank test on N pairs: the median ratio, its spread and one-sided p."""

    pairs: int
    ratio: float | None  # e^(median log ratio); None where a value was not positive
    spread: float | None
    p_higher: float | None  # p of "the candidate is higher"; None below MIN_PAIRS
    p_lower: float | None


def paired_test(old: Sequence[float], new: Sequence[float]) -> PairedTest:
    """Wilcoxon signed-rank on the paired log ratios (raw differences where a value is
    not positive). Pairs that are equal carry no sign and are dropped (Wilcoxon's way)."""
    n = len(old)
    positive = all(v > 0 for v in (*old, *new))
    diffs = ([math.log(b / a) for a, b in zip(old, new, strict=True)] if positive
             else [b - a for a, b in zip(old, new, strict=True)])
    ratio = math.exp(statistics.median(diffs)) if positive and diffs else None
    spread_value = MAD_SIGMA * _mad(diffs) if positive and n >= 2 else None
    if n < MIN_PAIRS:
        return PairedTest(n, ratio, spread_value, None, None)
    if all(d == 0 for d in diffs):
        return PairedTest(n, ratio, spread_value, 1.0, 1.0)
    # scipy.stats takes most of a second to import; only a paired decision needs it.
    from scipy.stats import wilcoxon

    higher = float(wilcoxon(diffs, alternative="greater").pvalue)
    lower = float(wilcoxon(diffs, alternative="less").pvalue)
    return PairedTest(n, ratio, spread_value, higher, lower)


def pairs_needed(spread_value: float | None, threshold_log: float | None, have: int) -> int:
    """Pairs whose noise floor would be no wider than the threshold (at least MIN_PAIRS; twice
    as many as now where the spread or a relative threshold is unknown)."""
    if spread_value is None or threshold_log is None or threshold_log <= 0:
        return max(MIN_PAIRS, have * 2)
    return max(MIN_PAIRS, have + 1, math.ceil((NOISE_Z * spread_value / threshold_log) ** 2))


def workload_key(workload: Mapping[str, Any] | None) -> str:
    """What identifies a scenario's workload across runs: a hash of its resolved form."""
    text = json.dumps(workload or {}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def workload_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
                     limit: int = 6) -> list[str]:
    """The dotted keys whose values differ between two resolved workloads, as ``k: a → b``."""
    def flat(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                out.update(flat(item, f"{prefix}{key}."))
            return out
        return {prefix.rstrip("."): value}

    a, b = flat(old or {}), flat(new or {})
    changed = [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted({*a, *b})
               if a.get(k) != b.get(k)]
    return changed[:limit] + ([f"... {len(changed) - limit} more"] if len(changed) > limit
                              else [])

"""Trials running at once on one worker slot share that slot's idle power.

Attribution charges every trial and span the idle share of its slot (idle power / wn) for
its whole duration. A fused group trains several trials at the same time in one slot, so
that would count the slot's idle power once per trial. Here each interval owns
∫ 1/n(t) dt of its duration, n(t) being how many trials of its slot are running at t, and
its idle charge is cut to that. With one trial at a time per slot nothing changes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence

from pytest_basht.records import TrialRecord

EPSILON_S = 1e-9  # below the clock's resolution: rounding, not sharing


def owned_seconds(intervals: Sequence[tuple[Hashable, int, int]]) -> list[float]:
    """For each (owner, start_ns, end_ns) on one slot: ∫ 1/n(t) dt in seconds, n(t) the
    number of distinct owners with an interval covering t."""
    edges: dict[int, list[tuple[int, Hashable]]] = defaultdict(list)
    for owner, start, end in intervals:
        if end > start:
            edges[start].append((1, owner))
            edges[end].append((-1, owner))
    active: Counter[Hashable] = Counter()
    owned_at: dict[int, float] = {}
    total, last = 0.0, None
    for t in sorted(edges):
        if last is not None and active:
            total += (t - last) / 1e9 / len(active)
        owned_at[t] = total
        for step, owner in edges[t]:
            active[owner] += step
            if active[owner] == 0:
                del active[owner]
        last = t
    return [owned_at[end] - owned_at[start] if end > start else 0.0
            for _, start, end in intervals]


def share_slot_idle(trials: Sequence[TrialRecord], idle_power_w: float, slots: int) -> None:
    """Cut the idle charge of trials (and their spans) that ran at once on one slot.

    Expects energies attributed with a full idle share per interval (``span_energy``).
    """
    per_slot = idle_power_w / max(1, slots)
    by_worker: dict[int, list[TrialRecord]] = defaultdict(list)
    for t in trials:
        by_worker[t.worker].append(t)
    for group in by_worker.values():
        if len(group) < 2:
            continue
        owned = owned_seconds([(t.number, t.start_ns, t.end_ns) for t in group])
        for t, own in zip(group, owned, strict=True):
            if t.energy_j is not None and t.duration_s - own > EPSILON_S:
                t.energy_j = max(0.0, t.energy_j - per_slot * (t.duration_s - own))
        spans = [s for t in group for s in t.spans]
        owned = owned_seconds([(s.trial, s.start_ns, s.end_ns) for s in spans])
        for s, own in zip(spans, owned, strict=True):
            if s.energy_j is not None and s.duration_s - own > EPSILON_S:
                s.energy_j = max(0.0, s.energy_j - per_slot * (s.duration_s - own))

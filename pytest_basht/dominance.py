"""Pareto dominance: which points no other point beats on every objective.

One pure function, used by every picture that draws a front — the experiment's scenarios
(goal metric against energy, against time) and a scenario's trials (value against energy).
A point dominates another when it is at least as good on every objective and strictly
better on one; the front is the points nothing dominates. Ties (equal points) are all on
the front. ``directions`` says, per objective, whether more (``maximize``) or less
(``minimize``) is better.

The cost is one sort plus a sweep that compares each point with the front found so far:
O(n log n + n·f) for a front of f points, so 10,000 trials stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Direction = Literal["maximize", "minimize"]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` everywhere and better somewhere (both as minimized)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True))


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[Direction]
                 ) -> list[int]:
    """The indices of the non-dominated ``points``, in the order of the first objective
    from best to worst. A point with a missing or non-finite coordinate is never on it."""
    if any(d not in ("maximize", "minimize") for d in directions):
        raise ValueError(f"directions must be 'maximize' or 'minimize', got {directions!r}")
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    scored = []
    for i, point in enumerate(points):
        if len(point) != len(signs):
            raise ValueError(f"point {i} has {len(point)} coordinates, expected {len(signs)}")
        if all(v is not None and math.isfinite(v) for v in point):
            scored.append((tuple(s * v for s, v in zip(signs, point, strict=True)), i))
    # sorted lexicographically, a point can only be dominated by one before it
    scored.sort()
    front: list[tuple[tuple[float, ...], int]] = []
    for key, i in scored:
        if not any(_dominates(kept, key) for kept, _ in front):
            front.append((key, i))
    return [i for _, i in front]

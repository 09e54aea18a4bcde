"""mfhpo-simulator's algorithm: the exact return order of wn asynchronous workers, without
waiting for any runtime.

Each worker p keeps a cumulative (virtual) time T_p. The free worker with the smallest T_p
asks for the next configuration; whatever the asking took (the sampler's own, measured
time) is charged to T_p before the trial starts. A trial runs epoch by epoch: after each
epoch it reports, and may stop there (a pruner), so a trial stopped after epoch k costs
its first k + 1 epochs. Results are handed back strictly in order of virtual time, so the
optimizer sees, at every ask, exactly the trials a real parallel run would have finished
by then. Ties go to the lower worker id.

Every worker has at most one pending event (its next report, or its next ask), so the
event queue is a heap of (time, worker) — no two entries compare equal.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Protocol


class Job(Protocol):
    """One trial on one worker, as the scheduler sees it."""

    #: Wall time of each epoch in ns (may grow while the trial runs).
    durations: Sequence[int]

    def report(self, epoch: int, now_ns: int) -> bool:
        """Epoch ``epoch`` ended at ``now_ns``; False stops the trial here."""

    def finish(self, now_ns: int) -> int:
        """The trial ended at ``now_ns``; returns the ns the worker spends handing it back."""


#: ``ask(worker, now_ns) -> (latency_ns, job or None)``: None retires the worker.
Ask = Callable[[int, int], "tuple[int, Job | None]"]


def run(workers: int, ask: Ask, start_ns: int = 0) -> list[int]:
    """Drive ``workers`` virtual workers from ``start_ns`` until each retires.

    Returns each worker's cumulative time when it retired.
    """
    heap: list[tuple[int, int, Job | None, int]] = [(start_ns, p, None, 0)
                                                    for p in range(workers)]
    heapq.heapify(heap)
    retired = [start_ns] * workers
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        t, p, job, k = pop(heap)
        if job is None:
            latency, job = ask(p, t)
            t += latency
            if job is None:
                retired[p] = t
                continue
            push(heap, (t + job.durations[0], p, job, 0))
        elif job.report(k, t) and k + 1 < len(job.durations):
            push(heap, (t + job.durations[k + 1], p, job, k + 1))
        else:
            push(heap, (t + job.finish(t), p, None, 0))
    return retired

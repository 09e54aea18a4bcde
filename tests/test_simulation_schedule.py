"""mfhpo-simulator's algorithm on hand-built runtimes: every answer below is worked out by
hand in the docstrings (times in seconds; ties go to the lower worker id)."""

from __future__ import annotations

import pytest

from pytest_basht.simulation import schedule

S = 1_000_000_000


class Job:
    def __init__(self, script: Script, number: int, worker: int, epochs: list[float],
                 start: int, stop_after: int | None) -> None:
        self.script, self.number, self.worker = script, number, worker
        self.durations = [round(e * S) for e in epochs]
        self.start = start
        self.stop_after = stop_after
        self.ran = 0

    def report(self, epoch: int, now_ns: int) -> bool:
        self.ran = epoch + 1
        self.script.reports.append((self.number, epoch, now_ns / S))
        return self.stop_after is None or epoch < self.stop_after

    def finish(self, now_ns: int) -> int:
        self.script.done.append((self.number, self.worker, self.start / S, now_ns / S, self.ran))
        return round(self.script.tell * S)


class Script:
    """Hands out jobs in order; each ask costs ``ask`` s and each tell ``tell`` s."""

    def __init__(self, jobs: list[list[float]], *, ask: float = 0.0, tell: float = 0.0,
                 stop_after: dict[int, int] | None = None) -> None:
        self.jobs = list(jobs)
        self.ask_s, self.tell = ask, tell
        self.stop_after = stop_after or {}
        self.asked = 0
        self.done: list[tuple[int, int, float, float, int]] = []
        self.reports: list[tuple[int, int, float]] = []

    def ask(self, worker: int, now_ns: int) -> tuple[int, Job | None]:
        if self.asked == len(self.jobs):
            return 0, None
        n = self.asked
        self.asked += 1
        latency = round(self.ask_s * S)
        return latency, Job(self, n, worker, self.jobs[n], now_ns + latency,
                            self.stop_after.get(n))

    def order(self) -> list[int]:
        return [d[0] for d in self.done]

    def by_worker(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for number, worker, *_ in sorted(self.done):
            out.setdefault(worker, []).append(number)
        return out

    def times(self) -> dict[int, tuple[float, float]]:
        return {d[0]: (d[2], d[3]) for d in self.done}


def run(script: Script, workers: int) -> list[float]:
    return [t / S for t in schedule.run(workers, script.ask)]


def test_two_workers_without_sampler_latency():
    """Runtimes 3, 1, 2, 2, 1 on 2 workers.

    t=0: W0 takes #0 (ends 3), W1 takes #1 (ends 1). t=1: W1 takes #2 (ends 3).
    t=3: #0 and #2 end together; W0 (lower id) asks first and takes #3 (ends 5), then W1
    takes #4 (ends 4). W1 retires at 4, W0 at 5.
    """
    s = Script([[3], [1], [2], [2], [1]])
    assert run(s, 2) == [5, 4]
    assert s.order() == [1, 0, 2, 4, 3]
    assert s.by_worker() == {0: [0, 3], 1: [1, 2, 4]}
    assert s.times() == {0: (0, 3), 1: (0, 1), 2: (1, 3), 3: (3, 5), 4: (3, 4)}


def test_two_workers_with_sampler_latency():
    """The same runtimes; each ask costs 0.5 s and each tell 0.25 s, charged to the worker.

    t=0: W0 asks until 0.5, #0 runs 0.5–3.5; W1 likewise, #1 runs 0.5–1.5.
    #1 ends 1.5, told by 1.75, asked by 2.25: #2 runs 2.25–4.25 on W1.
    #0 ends 3.5, told 3.75, #3 runs 4.25–6.25 on W0. #2 ends 4.25, told 4.5, #4 runs
    5.0–6.0 on W1. W1: told 6.25, nothing left. W0: #3 ends 6.25, told 6.5.
    """
    s = Script([[3], [1], [2], [2], [1]], ask=0.5, tell=0.25)
    assert run(s, 2) == [6.5, 6.25]
    assert s.order() == [1, 0, 2, 4, 3]
    assert s.by_worker() == {0: [0, 3], 1: [1, 2, 4]}
    assert s.times() == {0: (0.5, 3.5), 1: (0.5, 1.5), 2: (2.25, 4.25), 3: (4.25, 6.25),
                         4: (5.0, 6.0)}


def test_four_workers_without_sampler_latency():
    """Runtimes 4, 3, 2, 1, 3, 1, 2, 5 on 4 workers.

    t=0: #0–#3 on W0–W3 (ending 4, 3, 2, 1). t=1: W3 takes #4 (ends 4). t=2: W2 takes #5
    (ends 3). t=3: #1 (W1) and #5 (W2) end: W1 takes #6 (ends 5), W2 takes #7 (ends 8).
    t=4: #0 and #4 end, nothing left: W0 and W3 retire. W1 retires at 5, W2 at 8.
    """
    s = Script([[4], [3], [2], [1], [3], [1], [2], [5]])
    assert run(s, 4) == [4, 5, 8, 4]
    assert s.order() == [3, 2, 1, 5, 0, 4, 6, 7]
    assert s.by_worker() == {0: [0], 1: [1, 6], 2: [2, 5, 7], 3: [3, 4]}


def test_four_workers_with_sampler_latency_changes_the_assignment():
    """The same runtimes, each ask costing 1 s.

    #0–#3 run from 1 (ending 5, 4, 3, 2). #3 ends 2: W3 asks, #4 runs 3–6. #2 ends 3: W2,
    #5 runs 4–5. #1 ends 4: W1, #6 runs 5–7. t=5: #0 (W0) and #5 (W2) end; W0 asks first
    and gets #7 (runs 6–11) — without latency W2 got it — and W2 finds nothing left.
    """
    s = Script([[4], [3], [2], [1], [3], [1], [2], [5]], ask=1.0)
    assert run(s, 4) == [11, 7, 5, 6]
    assert s.order() == [3, 2, 1, 0, 5, 4, 6, 7]
    assert s.by_worker() == {0: [0, 7], 1: [1, 6], 2: [2, 5], 3: [3, 4]}
    assert s.times()[7] == (6, 11)


def test_a_stopped_trial_costs_only_the_epochs_it_ran():
    """#0 has three 1 s epochs but is stopped after its second report: it costs 2 s, so #1
    starts at 2 on the same (only) worker. Reports come at 1 and 2; #1 reports at 4."""
    s = Script([[1, 1, 1], [2]], stop_after={0: 1})
    assert run(s, 1) == [4]
    assert s.done == [(0, 0, 0, 2, 2), (1, 0, 2, 4, 1)]
    assert s.reports == [(0, 0, 1), (0, 1, 2), (1, 0, 4)]


def test_reports_interleave_across_workers_in_time_order():
    """Epochs 1+1+1 on W0 and 1.5+1.5 on W1: reports at 1, 1.5, 2, 3 (W0 first at the tie:
    its third epoch and W1's second both end at 3)."""
    s = Script([[1, 1, 1], [1.5, 1.5]])
    run(s, 2)
    assert s.reports == [(0, 0, 1), (1, 0, 1.5), (0, 1, 2), (0, 2, 3), (1, 1, 3)]


@pytest.mark.parametrize("workers", [1, 3, 32])
def test_every_worker_retires_and_no_job_is_lost(workers):
    s = Script([[0.1 * (i % 7 + 1)] for i in range(100)], ask=0.01)
    retired = run(s, workers)
    assert len(retired) == workers and len(s.done) == 100
    assert sorted(s.order()) == list(range(100))
    ends = [d[3] for d in s.done]
    assert ends == sorted(ends), "results are handed back in virtual time order"

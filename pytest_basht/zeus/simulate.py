"""A recurring job replayed on a trial table without pytest: many recurrences, many times.

Zeus ships a trace-driven simulator to study its optimizer over many recurrences; this is
ours. Each recurrence k runs the workload with seed ``first_seed + k − 1`` and asks the
trial table exactly what the simulated SUT asks it (``Answers`` with the SUT's seed
policy, cut at the target by ``until_target``); each attempt is decided with the same
random draws as the ``zeus-bso`` sampler (``sampler.draws``), followed epoch by epoch, stopped
early past its threshold, and logged as an observation. A pytest run of the same
recurrences on the simulated SUT therefore decides and costs exactly what this does (a
benchmark holds them to it), so this can repeat an experiment hundreds of times to show
how much one run of 30 recurrences owes to luck.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pytest_basht.simulation.answers import Answers
from pytest_basht.simulation.table import TrialTable
from pytest_basht.sut.simulated import SimOptions, until_target
from pytest_basht.workload import Workload
from pytest_basht.zeus import bso
from pytest_basht.zeus.config import JobConfig, parse
from pytest_basht.zeus.sampler import draws


def attempt(curve: Any, config: JobConfig, threshold: float | None) -> tuple[float, bool, bool]:
    """(cost, reached the target, stopped early) of one attempt that trains ``curve``."""
    energy = seconds = 0.0
    cost = 0.0
    for i in range(curve.epochs):
        energy += curve.energies_j[i]
        seconds += curve.times_ns[i] / 1e9
        cost = config.cost(energy, seconds)
        value = curve.values[i]
        if value is None or not math.isfinite(value):
            continue
        if config.met(value):
            return cost, True, False
        if threshold is not None and cost > threshold:
            return cost, False, True
    return cost, False, False


def recurrences(workload: Workload, table: TrialTable, count: int,
                first_seed: int = 1) -> list[bso.Observation]:
    """The log of ``count`` recurrences of the workload's job, from an empty state."""
    config = parse(workload)
    spec = config.spec
    options = SimOptions.parse(workload)
    if options.surrogate != "none":
        raise ValueError("zeus.simulate answers from the table's recordings only; this "
                         "workload sets sut.options.surrogate")
    policy = options.seeds
    log: list[bso.Observation] = []
    for k in range(1, count + 1):
        w = dataclasses.replace(workload, seed=first_seed + k - 1)
        answers = Answers(table, w, policy=policy)
        for _ in range(spec.attempts or len(spec.batch_sizes)):
            normals, uniform = draws(w.seed, config.job, len(log) + 1, len(spec.batch_sizes))
            d = bso.decide(spec, log, k, normals, uniform)
            curve = until_target(answers.curve({"batch_size": d.batch_size}), w)
            cost, reached, stopped = attempt(curve, config, d.threshold)
            log.append(bso.Observation(k, d.batch_size, cost, reached, stopped))
            if reached:
                break
    return log


def per_recurrence(log: list[bso.Observation]) -> list[float]:
    """Each recurrence's cost: the sum of its attempts'."""
    costs: dict[int, float] = {}
    for o in log:
        costs[o.recurrence] = costs.get(o.recurrence, 0.0) + o.cost
    return [costs[k] for k in sorted(costs)]

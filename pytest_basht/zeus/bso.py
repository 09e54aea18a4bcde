"""The batch size optimizer as pure functions of a job's observations (Zeus, NSDI '23).

Each attempt of a recurring job trains one batch size and ends with an observation: what
it cost (``zeus_cost``) and whether it reached the target. The BSO's state is nothing
but a replay of those observations, so it lives in any store as a plain log:

* **Pruning stage** (``pruning``): two rounds. A round starts at the default batch size
  (in round 2: round 1's cheapest), walks down through the smaller batch sizes and then
  up through the larger ones, and stops in each direction at the first batch size that
  fails to reach the target. The batch sizes that reached it are the next round's
  candidates; those that survive both rounds are the arms, each observed twice.
* **Gaussian Thompson sampling** (``posterior``, ``thompson``): the reward of an arm is
  −cost; its mean has a conjugate Gaussian prior (mean 0, precision 0 by default), the
  rewards' precision is estimated from their variance (so an arm needs two observations:
  each is explored twice first), and the arm with the largest sampled mean is pulled.
  An optional window keeps only the observations of the last W recurrences, so the
  posterior follows a drifting cost.
* **Early stopping** (``stop_threshold``): an attempt whose cost passes β × the best cost
  of any attempt that reached the target is stopped (β = 2; None: never).
* **Retries**: a recurrence needs its model, so an attempt that does not reach the target
  (stopped early, or out of epochs) is followed by another in the same recurrence. The
  pruning stage walks on; afterwards a retry takes a batch size this recurrence has not
  tried yet (the arms first, then the batch sizes pruning dropped) — the same one would
  most likely fail the same way. A recurrence's last attempt (its trial budget's last, or
  its last untried batch size) is not stopped early: it is the job's last chance of a model.

``grid`` (each batch size once, smallest first, then the cheapest) and ``random`` (a
uniform draw per attempt) are the baselines the Z-BSO experiment compares Zeus with.
Randomness comes in as arguments (standard normal draws, a uniform number), so every
choice is reproducible and checkable by hand.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

POLICIES = ("zeus", "grid", "random")
EXPLORE = 2  # observations an arm needs before its variance, hence its posterior, exists


class BsoError(ValueError):
    """A job's log that the BSO cannot replay (it was written under another setup)."""


def zeus_cost(eta: float, max_power_w: float, energy_j: float, time_s: float) -> float:
    """Zeus's cost of a training run: η·E + (1 − η)·P_max·T (joules)."""
    return eta * energy_j + (1.0 - eta) * max_power_w * time_s


@dataclass(frozen=True)
class Observation:
    """One finished attempt of a job."""

    recurrence: int
    batch_size: int
    cost: float
    converged: bool  # reached the target
    early_stopped: bool = False


@dataclass(frozen=True)
class Spec:
    """A job's optimizer: the policy and its knobs (plain data, stored with the job)."""

    policy: str
    batch_sizes: tuple[int, ...]
    default: int
    beta: float | None = 2.0
    window: int | None = None
    prior_mean: float = 0.0
    prior_precision: float = 0.0
    rounds: int = 2
    attempts: int | None = None  # per recurrence (None: one per batch size)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise BsoError(f"policy {self.policy!r}: expected one of {', '.join(POLICIES)}")
        if not self.batch_sizes or self.default not in self.batch_sizes:
            raise BsoError(f"default batch size {self.default} is not among "
                           f"{list(self.batch_sizes)}")


# ----------------------------------------------------------------------------- pruning


@dataclass(frozen=True)
class Pruning:
    """Where the pruning stage stands after the observations it consumed.

    ``next`` is the batch size to explore now (None once done); ``candidates`` are the
    round's batch sizes, and when done the surviving arms; ``used`` counts the
    observations the stage consumed (the ones after them belong to Thompson sampling).
    """

    done: bool
    round: int
    next: int | None
    candidates: tuple[int, ...]
    start: int
    used: int
    explored: tuple[tuple[int, int, bool], ...] = ()  # (round, batch size, reached target)
    stuck: bool = False  # a round in which no batch size reached the target


def pruning(batch_sizes: Sequence[int], default: int, observations: Sequence[Observation],
            rounds: int = 2) -> Pruning:
    """Replay the pruning stage over a job's observations, in order."""
    candidates = sorted(set(batch_sizes))
    start = default
    used = 0
    explored: list[tuple[int, int, bool]] = []
    for r in range(1, rounds + 1):
        good: list[int] = []
        best, best_bs = math.inf, start
        i = candidates.index(start)
        for direction in (candidates[i::-1], candidates[i + 1:]):
            for bs in direction:
                if used == len(observations):
                    return Pruning(False, r, bs, tuple(candidates), start, used,
                                   tuple(explored))
                o = observations[used]
                if o.batch_size != bs:
                    raise BsoError(f"attempt {used + 1} trained batch size {o.batch_size} "
                                   f"where the pruning stage explores {bs} (round {r})")
                used += 1
                explored.append((r, bs, o.converged))
                if not o.converged:
                    break  # this direction ends at the first batch size that fails
                good.append(bs)
                if o.cost < best:
                    best, best_bs = o.cost, bs
        if not good:
            # nothing reached the target: the job keeps its start as its only arm
            return Pruning(True, r, None, (start,), start, used, tuple(explored), stuck=True)
        candidates, start = sorted(good), best_bs
    return Pruning(True, rounds, None, tuple(candidates), start, used, tuple(explored))


# ----------------------------------------------------------------------------- Thompson


@dataclass(frozen=True)
class Arm:
    """An arm's posterior over its mean reward (−cost), from ``observations`` rewards."""

    batch_size: int
    observations: int
    mean: float
    precision: float

    @property
    def mean_cost(self) -> float | None:
        return -self.mean if self.observations else None


def posterior(rewards: Sequence[float], prior_mean: float = 0.0,
              prior_precision: float = 0.0) -> tuple[float, float]:
    """(mean, precision) of the Gaussian posterior of an arm's mean reward.

    The rewards' precision τ is 1 / their (population) variance; the posterior of the
    mean under a N(prior_mean, 1/prior_precision) prior is then
    precision = prior_precision + n·τ, mean = (prior_precision·prior_mean + τ·Σr) / precision.
    Rewards without spread (one, or all equal) give τ = ∞: the mean is their mean, exactly.
    """
    n = len(rewards)
    if n == 0:
        return prior_mean, prior_precision
    total = math.fsum(rewards)
    mean = total / n
    variance = math.fsum((r - mean) ** 2 for r in rewards) / n
    if variance <= 0.0:
        return mean, math.inf
    tau = 1.0 / variance
    precision = prior_precision + n * tau
    return (prior_precision * prior_mean + tau * total) / precision, precision


def arms(spec: Spec, candidates: Sequence[int], observations: Sequence[Observation],
         recurrence: int) -> tuple[Arm, ...]:
    """Each candidate's posterior from its observations (within the window, if any)."""
    if spec.window is not None:
        observations = [o for o in observations if o.recurrence > recurrence - spec.window]
    out = []
    for bs in sorted(candidates):
        rewards = [-o.cost for o in observations if o.batch_size == bs]
        mean, precision = posterior(rewards, spec.prior_mean, spec.prior_precision)
        out.append(Arm(bs, len(rewards), mean, precision))
    return tuple(out)


def sampled(arm: Arm, z: float) -> float:
    """A draw from the arm's posterior, given a standard normal draw ``z``."""
    if math.isinf(arm.precision):
        return arm.mean
    return arm.mean + z / math.sqrt(arm.precision)


def thompson(arm_list: Sequence[Arm], draws: Sequence[float],
             skip: Collection[int] = ()) -> int:
    """The batch size to train: an arm with fewer than two observations first (the one
    with fewest, then the smallest), else the arm whose sampled reward is largest;
    ``draws`` holds one standard normal draw per arm, in order. Arms in ``skip`` (tried in
    this recurrence already) are passed over unless every arm is."""
    if len(draws) != len(arm_list):
        raise ValueError(f"{len(draws)} draws for {len(arm_list)} arms")
    open_ = [i for i, a in enumerate(arm_list) if a.batch_size not in skip] \
        or list(range(len(arm_list)))
    young = [i for i in open_ if arm_list[i].observations < EXPLORE]
    if young:
        return arm_list[min(young, key=lambda i: (arm_list[i].observations, i))].batch_size
    best = max(open_, key=lambda i: (sampled(arm_list[i], draws[i]), -i))
    return arm_list[best].batch_size


# ----------------------------------------------------------------------------- decisions


def stop_threshold(observations: Sequence[Observation], beta: float | None) -> float | None:
    """β × the lowest cost of an attempt that reached the target (None: no early stop)."""
    costs = [o.cost for o in observations if o.converged]
    if beta is None or not costs:
        return None
    return beta * min(costs)


@dataclass(frozen=True)
class Decision:
    """The batch size of the next attempt, why, and when to stop it early."""

    batch_size: int
    stage: str
    threshold: float | None
    arms: tuple[Arm, ...] = ()
    draws: tuple[float, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


def decide(spec: Spec, observations: Sequence[Observation], recurrence: int,
           draws: Sequence[float], uniform: float) -> Decision:
    """The next attempt's batch size under the job's policy.

    ``draws``: one standard normal per batch size (Thompson sampling uses those of the
    arms, in batch size order); ``uniform``: one number in [0, 1) (the random policy).
    """
    sizes = sorted(spec.batch_sizes)
    mine = [o for o in observations if o.recurrence == recurrence]
    tried = {o.batch_size for o in mine}
    untried = [bs for bs in sizes if bs not in tried] or sizes
    last = len(untried) == 1 or len(mine) + 1 >= (spec.attempts or len(sizes))
    threshold = None if last else stop_threshold(observations, spec.beta)
    retry = {"retry": len(mine)} if mine else {}
    if spec.policy == "random":
        index = min(len(untried) - 1, int(uniform * len(untried)))
        return Decision(untried[index], "random", threshold, detail=retry)
    if spec.policy == "grid":
        seen = {o.batch_size for o in observations}
        fresh = [bs for bs in untried if bs not in seen]
        if fresh:
            return Decision(fresh[0], "grid: explore", threshold, detail=retry)
        return Decision(cheapest(observations, untried, spec.default), "grid: exploit",
                        threshold, detail=retry)
    stage = pruning(sizes, spec.default, observations, spec.rounds)
    if not stage.done:
        assert stage.next is not None
        return Decision(stage.next, f"pruning round {stage.round}", threshold,
                        detail={"candidates": list(stage.candidates), **retry})
    if tried and not set(stage.candidates) - tried:
        # every arm failed this recurrence: the batch sizes pruning dropped are left
        return Decision(cheapest(observations, untried, untried[0]), "retry off the arms",
                        threshold, detail=retry)
    arm_list = arms(spec, stage.candidates, observations, recurrence)
    chosen = [draws[sizes.index(a.batch_size)] for a in arm_list]
    return Decision(thompson(arm_list, chosen, tried), "thompson", threshold, arm_list,
                    tuple(chosen), detail=retry)


def cheapest(observations: Sequence[Observation], among: Collection[int],
             fallback: int) -> int:
    """Of ``among``, the batch size with the lowest mean cost of the attempts that reached
    the target (``fallback`` when none of them did)."""
    costs: dict[int, list[float]] = {}
    for o in observations:
        if o.converged and o.batch_size in among:
            costs.setdefault(o.batch_size, []).append(o.cost)
    if not costs:
        return fallback if fallback in among or not among else min(among)
    return min(costs, key=lambda bs: (math.fsum(costs[bs]) / len(costs[bs]), bs))


def state(spec: Spec, observations: Sequence[Observation], recurrence: int) -> dict[str, Any]:
    """What the optimizer knows, as plain data (``basht bso show``, the stored snapshot)."""
    out: dict[str, Any] = {
        "policy": spec.policy, "observations": len(observations),
        "converged": sum(1 for o in observations if o.converged),
        "early_stopped": sum(1 for o in observations if o.early_stopped),
        "best_cost": min((o.cost for o in observations if o.converged), default=None),
        "threshold": stop_threshold(observations, spec.beta),
    }
    if spec.policy == "zeus":
        stage = pruning(sorted(spec.batch_sizes), spec.default, observations, spec.rounds)
        out["stage"] = "thompson" if stage.done else f"pruning round {stage.round}"
        out["pruning"] = {"done": stage.done, "round": stage.round, "next": stage.next,
                          "candidates": list(stage.candidates), "stuck": stage.stuck,
                          "explored": [list(e) for e in stage.explored]}
        candidates = stage.candidates if stage.done else spec.batch_sizes
    else:
        out["stage"] = spec.policy
        candidates = spec.batch_sizes
    out["arms"] = [{"batch_size": a.batch_size, "observations": a.observations,
                    "mean_cost": a.mean_cost, "mean_reward": a.mean,
                    "precision": a.precision if math.isfinite(a.precision) else None,
                    "exact": math.isinf(a.precision)}
                   for a in arms(spec, candidates, observations, recurrence)]
    return out

"""Zeus's batch size optimizer as pure functions: cost, posterior, Thompson choice, the
pruning stage, early stopping, retries, the baselines, and reading a workload."""

from __future__ import annotations

import math

import pytest
import yaml

from pytest_basht import cli, wiring, workload_files
from pytest_basht import workload as wl
from pytest_basht.errors import WorkloadError
from pytest_basht.zeus import bso, config
from pytest_basht.zeus.bso import Arm, Observation, Spec

SIZES = (16, 32, 64, 128, 256, 512)


def test_zeus_cost_by_hand():
    # η·E + (1 − η)·P_max·T = 0.5·2000 + 0.5·100·30
    assert bso.zeus_cost(0.5, 100.0, 2000.0, 30.0) == 2500.0
    assert bso.zeus_cost(1.0, 100.0, 2000.0, 30.0) == 2000.0  # energy only
    assert bso.zeus_cost(0.0, 100.0, 2000.0, 30.0) == 3000.0  # time at P_max only


def test_posterior_by_hand():
    # rewards −10, −14: mean −12, population variance 4, τ = 1/4; no prior:
    # precision = 0 + 2·0.25 = 0.5, mean = 0.25·(−24)/0.5 = −12
    assert bso.posterior([-10.0, -14.0]) == (-12.0, 0.5)
    # prior N(−5, 1/0.5): precision 0.5 + 0.5 = 1, mean (0.5·−5 + 0.25·−24)/1 = −8.5
    assert bso.posterior([-10.0, -14.0], prior_mean=-5.0, prior_precision=0.5) == (-8.5, 1.0)
    # three rewards: mean −2, variance 2/3, τ = 1.5, precision 4.5
    mean, precision = bso.posterior([-1.0, -2.0, -3.0])
    assert mean == pytest.approx(-2.0) and precision == pytest.approx(4.5)
    assert bso.posterior([]) == (0.0, 0.0)  # the prior: mean 0, precision 0
    assert bso.posterior([-7.0]) == (-7.0, math.inf)  # no spread: exactly its mean
    assert bso.posterior([-3.0, -3.0]) == (-3.0, math.inf)


def test_thompson_choice_by_hand():
    a = Arm(16, 2, -12.0, 0.5)   # sd of the mean 1/√0.5 = 1.4142
    b = Arm(32, 2, -11.0, 2.0)   # sd 1/√2 = 0.7071
    # z = (1, −1): θ16 = −12 + 1.4142 = −10.586, θ32 = −11 − 0.7071 = −11.707 → 16
    assert bso.sampled(a, 1.0) == pytest.approx(-10.5858, abs=1e-4)
    assert bso.thompson([a, b], [1.0, -1.0]) == 16
    # z = (0, 0): the means decide, −11 > −12 → 32
    assert bso.thompson([a, b], [0.0, 0.0]) == 32
    # z = (0.5, −0.5): θ16 = −11.293, θ32 = −11.354 → 16
    assert bso.thompson([a, b], [0.5, -0.5]) == 16
    # an exact arm ignores its draw
    assert bso.sampled(Arm(64, 2, -3.0, math.inf), 5.0) == -3.0


def test_each_arm_is_explored_twice_first():
    arms = [Arm(16, 2, -1.0, 10.0), Arm(32, 1, -9.0, math.inf), Arm(64, 0, 0.0, 0.0)]
    assert bso.thompson(arms, [0.0, 0.0, 0.0]) == 64  # fewest observations first
    arms[2] = Arm(64, 1, -9.0, math.inf)
    assert bso.thompson(arms, [0.0, 0.0, 0.0]) == 32  # a tie: the smaller batch size
    assert bso.thompson(arms, [0.0, 0.0, 0.0], skip={32}) == 64
    # every arm tried in this recurrence: the skip is lifted
    assert bso.thompson(arms[:1], [0.0], skip={16}) == 16
    with pytest.raises(ValueError, match="2 draws for 3 arms"):
        bso.thompson(arms, [0.0, 0.0])


class Job:
    """A recurring job with known outcomes per batch size: (cost, reaches the target)."""

    def __init__(self, outcomes: dict[int, tuple[float, bool]], spec: Spec) -> None:
        self.outcomes = outcomes
        self.spec = spec
        self.log: list[Observation] = []
        self.stages: list[str] = []

    def recurrence(self, k: int, draws: list[float] | None = None) -> list[int]:
        tried = []
        for _ in range(len(self.spec.batch_sizes)):
            d = bso.decide(self.spec, self.log, k, draws or [0.0] * len(self.spec.batch_sizes),
                           0.5)
            cost, ok = self.outcomes[d.batch_size]
            stopped = d.threshold is not None and cost > d.threshold and not ok
            self.log.append(Observation(k, d.batch_size, cost, ok, stopped))
            self.stages.append(d.stage)
            tried.append(d.batch_size)
            if ok:
                break
        return tried


# Batch sizes 32 … 128 reach the target; 16 and 256 do not, 512 would but is never reached
# by the walk (it stops at 256). 64 is the cheapest.
KNOWN = {16: (9.0, False), 32: (5.0, True), 64: (3.0, True), 128: (4.0, True),
         256: (7.0, False), 512: (2.0, True)}


def test_pruning_stage_finds_the_converging_batch_sizes():
    job = Job(KNOWN, Spec("zeus", SIZES, 64))
    tried = [job.recurrence(k) for k in range(1, 8)]
    # round 1 from the default 64: down 64 ✓ 32 ✓ 16 ✗, then up 128 ✓ 256 ✗;
    # round 2 from round 1's cheapest (64) over {32, 64, 128}: 64 ✓ 32 ✓, up 128 ✓
    assert tried[:5] == [[64], [32], [16, 128], [256, 64], [32]]
    assert job.stages[:7] == ["pruning round 1"] * 5 + ["pruning round 2"] * 2
    stage = bso.pruning(SIZES, 64, job.log)
    assert stage.done and stage.candidates == (32, 64, 128) and not stage.stuck
    assert stage.explored == ((1, 64, True), (1, 32, True), (1, 16, False), (1, 128, True),
                              (1, 256, False), (2, 64, True), (2, 32, True), (2, 128, True))
    # each surviving arm was observed twice, so Thompson sampling starts at once and,
    # the costs having no spread, settles on the cheapest for good
    assert tried[5:] == [[128], [64]]
    assert [job.recurrence(k) for k in range(8, 14)] == [[64]] * 6
    arms = bso.arms(job.spec, stage.candidates, job.log, 14)
    assert [(a.batch_size, a.observations) for a in arms] == [(32, 2), (64, 9), (128, 2)]


def test_pruning_round_two_drops_what_fails_again():
    log = [Observation(1, 64, 3.0, True), Observation(2, 32, 5.0, True),
           Observation(3, 16, 9.0, False), Observation(3, 128, 4.0, True),
           Observation(4, 256, 7.0, False),
           Observation(4, 64, 3.1, True), Observation(5, 32, 11.0, False)]  # 32 fails now
    stage = bso.pruning(SIZES, 64, log)
    assert not stage.done and stage.round == 2 and stage.next == 128  # down ended at 32
    log.append(Observation(6, 128, 4.2, True))
    stage = bso.pruning(SIZES, 64, log)
    assert stage.done and stage.candidates == (64, 128)


def test_pruning_starts_round_two_at_round_ones_cheapest():
    spec_sizes = (16, 32, 64)
    log = [Observation(1, 32, 5.0, True), Observation(2, 16, 2.0, True),
           Observation(3, 64, 6.0, True)]
    stage = bso.pruning(spec_sizes, 32, log)
    assert stage.round == 2 and stage.start == 16 and stage.next == 16


def test_pruning_with_no_batch_size_reaching_the_target_keeps_the_default():
    log = [Observation(1, 64, 9.0, False), Observation(1, 128, 9.0, False)]
    stage = bso.pruning((32, 64, 128), 64, log)
    assert stage.done and stage.stuck and stage.candidates == (64,)


def test_a_log_from_another_setup_is_refused():
    with pytest.raises(bso.BsoError, match="trained batch size 32 where the pruning stage "
                                           "explores 64"):
        bso.pruning(SIZES, 64, [Observation(1, 32, 1.0, True)])


def test_early_stop_threshold():
    log = [Observation(1, 64, 3.0, True), Observation(2, 32, 1.0, False),
           Observation(3, 128, 4.0, True)]
    assert bso.stop_threshold(log, 2.0) == 6.0  # β × the best cost that reached the target
    assert bso.stop_threshold(log, None) is None
    assert bso.stop_threshold(log[1:2], 2.0) is None  # nothing reached the target yet


def test_retries_take_an_untried_batch_size_and_the_last_is_never_stopped():
    spec = Spec("zeus", (32, 64, 128), 64)
    log = [Observation(1, 64, 3.0, True), Observation(2, 32, 5.0, True),
           Observation(3, 128, 4.0, True), Observation(4, 64, 3.0, True),
           Observation(5, 32, 5.0, True), Observation(6, 128, 4.0, True)]
    first = bso.decide(spec, log, 7, [0.0, 0.0, 0.0], 0.0)
    assert (first.stage, first.batch_size, first.threshold) == ("thompson", 64, 6.0)
    log.append(Observation(7, 64, 7.0, False, early_stopped=True))
    retry = bso.decide(spec, log, 7, [0.0, 0.0, 0.0], 0.0)
    assert retry.batch_size == 128 and retry.detail["retry"] == 1  # not 64 again
    assert retry.threshold == 6.0
    log.append(Observation(7, 128, 9.0, False, early_stopped=True))
    last = bso.decide(spec, log, 7, [0.0, 0.0, 0.0], 0.0)
    assert last.batch_size == 32 and last.threshold is None  # the job's last chance
    # a trial budget of two attempts makes the second the last
    budget = Spec("zeus", (32, 64, 128), 64, attempts=2)
    assert bso.decide(budget, log[:7], 7, [0.0, 0.0, 0.0], 0.0).threshold is None


def test_window_keeps_only_recent_recurrences():
    spec = Spec("zeus", (32, 64), 64, window=3)
    log = [Observation(1, 64, 1.0, True), Observation(2, 64, 1.0, True),
           Observation(3, 64, 9.0, True), Observation(4, 64, 11.0, True),
           Observation(4, 32, 2.0, True)]
    (a32, a64) = bso.arms(spec, (32, 64), log, 5)
    assert (a64.observations, a64.mean_cost) == (2, 10.0)  # recurrences 3 and 4 only
    assert a32.observations == 1
    unwindowed = bso.arms(Spec("zeus", (32, 64), 64), (32, 64), log, 5)
    assert unwindowed[1].observations == 4 and unwindowed[1].mean_cost == 5.5


def test_grid_and_random_baselines():
    grid = Spec("grid", (16, 32, 64), 32)
    log: list[Observation] = []
    order = []
    for k in range(1, 6):
        d = bso.decide(grid, log, k, [0.0] * 3, 0.0)
        order.append((d.stage, d.batch_size))
        log.append(Observation(k, d.batch_size, {16: 4.0, 32: 2.0, 64: 3.0}[d.batch_size],
                               True))
    assert order == [("grid: explore", 16), ("grid: explore", 32), ("grid: explore", 64),
                     ("grid: exploit", 32), ("grid: exploit", 32)]
    rand = Spec("random", (16, 32, 64), 32)
    assert [bso.decide(rand, [], 1, [0.0] * 3, u).batch_size for u in (0.0, 0.34, 0.99)] \
        == [16, 32, 64]
    # a retry draws among the batch sizes the recurrence has not tried
    tried = [Observation(1, 16, 5.0, False)]
    assert bso.decide(rand, tried, 1, [0.0] * 3, 0.0).batch_size == 32


def test_state_snapshot():
    job = Job(KNOWN, Spec("zeus", SIZES, 64))
    for k in range(1, 4):
        job.recurrence(k)
    state = bso.state(job.spec, job.log, 4)
    assert state["stage"] == "pruning round 1" and state["pruning"]["next"] == 256
    assert state["best_cost"] == 3.0 and state["threshold"] == 6.0
    assert [a["batch_size"] for a in state["arms"]] == list(SIZES)


# ----------------------------------------------------------------------------- workload

BASE = {
    "name": "nightly",
    "model": {"name": "mnist-ff"},
    "training": {"epochs": 5, "batch_size": 64, "stop_at_target": True},
    "search": {"sampler": "zeus-bso", "pruner": "zeus-bso",
               "space": {"batch_size": [16, 32, 64, 128]}},
    "goal": {"target": 0.9},
    "workers": {"count": 1, "cpu": 2, "memory_mb": 2048},
}


def _workload(**changes):
    return wl.from_mapping(workload_files.apply_overrides(BASE, changes), "w.yaml")


def test_workload_reads_into_a_job():
    job = config.parse(_workload())
    assert job.job == "nightly" and job.spec.policy == "zeus"
    assert job.spec.batch_sizes == (16, 32, 64, 128) and job.spec.default == 64
    assert job.spec.beta == 2.0 and job.spec.window is None and job.spec.rounds == 2
    assert job.eta == 0.5 and job.target == 0.9 and job.max_epochs == 5
    # P_max: one slot at the estimate's peak, 2 vCPU × 3.5 W + 2 GB × 0.392 W/GB
    assert job.max_power_w == pytest.approx(7.784)
    assert job.cost(10.0, 2.0) == pytest.approx(0.5 * 10 + 0.5 * 7.784 * 2)
    job = config.parse(_workload(**{"energy.max_power_w": 300.0, "energy.zeus_eta": 0.25,
                                    "energy.pue": 1.5,
                                    "search.sampler_options": {"job": "j", "beta": None,
                                                               "window": 5,
                                                               "default_batch_size": 32}}))
    assert (job.max_power_w, job.max_power_source) == (300.0, "energy.max_power_w")
    assert job.cost(100.0, 1.0) == pytest.approx((0.25 * 100 + 0.75 * 300) * 1.5)
    assert job.spec.beta is None and job.spec.window == 5 and job.spec.default == 32


@pytest.mark.parametrize(("changes", "key", "expected"), [
    ({"search.pruner": "none"}, "search.pruner", "'zeus-bso' with sampler zeus-bso"),
    ({"goal.target": None, "training.stop_at_target": False}, "goal.target",
     "the target a recurrence trains to"),
    ({"training.stop_at_target": False}, "training.stop_at_target", "true with sampler"),
    ({"workers.count": 2}, "workers.count", "1 with sampler zeus-bso"),
    ({"search.space": {"batch_size": [16, 32], "layer_size": [8]}}, "search.space",
     "one dimension, batch_size"),
    ({"search.space": {"batch_size": [16, 0.5]}}, "search.space.batch_size",
     "positive integers"),
    ({"training.batch_size": 48}, "training.batch_size", "one of the searched batch sizes"),
    ({"search.sampler_options": {"default_batch_size": 48}},
     "search.sampler_options.default_batch_size", "one of the searched batch sizes"),
    ({"search.sampler_options": {"beta": 0.5}}, "search.sampler_options.beta",
     "a number ≥ 1 or null"),
    ({"search.sampler_options": {"window": 0}}, "search.sampler_options.window",
     "a number of recurrences ≥ 1"),
    ({"search.sampler_options": {"policy": "tpe"}}, "search.sampler_options.policy",
     "one of zeus, grid, random"),
    ({"search.sampler_options": {"jobb": "x"}}, "search.sampler_options.jobb",
     "an option of zeus-bso"),
    ({"search.pruner_options": {"beta": 3}}, "search.pruner_options", "none"),
])
def test_workload_errors_name_the_key(changes, key, expected):
    with pytest.raises(WorkloadError) as info:
        config.parse(_workload(**changes))
    assert info.value.key == key and expected in str(info.value)
    assert "w.yaml" in str(info.value)


def test_the_zeus_pruner_belongs_to_the_zeus_sampler():
    w = _workload(**{"search.sampler": "random", "search.trials": 4})
    with pytest.raises(WorkloadError, match=r"search\.pruner"):
        config.check(w)
    config.check(_workload(**{"search.sampler": "random", "search.pruner": "none",
                              "search.trials": 4}))


def test_the_plugin_check_refuses_through_the_registry_and_basht_validate(tmp_path, capsys):
    """zeus.plugin checks a workload through pytest_basht_check_workload: where pytest
    resolves scenarios (the registry's check) and in ``basht validate``."""
    bad = workload_files.apply_overrides(BASE, {"workers.count": 2})
    with pytest.raises(WorkloadError, match=r"workers\.count: expected 1 with sampler zeus"):
        wiring.registry().check(wl.from_mapping(bad, "w.yaml"))
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert cli.main(["validate", str(path)]) == 2
    assert "workers.count: expected 1 with sampler zeus-bso" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(BASE))
    assert cli.main(["validate", str(path)]) == 0


def test_stop_at_target_needs_a_target():
    with pytest.raises(WorkloadError, match=r"goal\.target"):
        wl.from_mapping({"training": {"stop_at_target": True}}, "w.yaml")

"""Each ask-and-tell adapter on the simulated SUT, against hand-computed schedules.

The table answers x = 0 … 29 (one dimension, an int range) for 3 epochs. Every
configuration's epochs take 1, 2 and 3 s (10 W), whatever x, so a trial's time depends only
on the epochs it trains: from scratch to 1 epoch 1 s, to 3 epochs 6 s, and a continuation
from 1 to 3 epochs 2 + 3 = 5 s. Values differ by x (they fall by 1 per epoch), which is what
the optimizers choose by. Asks and tells cost nothing (``sampler_time: 0``), the lifecycle
no time (``lifecycle: none``): the trials window starts at 0. Two workers; at a tie the
lower worker goes first (``schedule``). Which fidelity each library asks for, and which
configuration it promotes, is the library's (seeded: the same every run); the timelines
below follow from those by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_basht import wiring
from pytest_basht import workload as wl
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.registry import Registry
from pytest_basht.result import RunResult
from pytest_basht.runner import Deployments, TrialRunner
from pytest_basht.trainables.base import Trainable

S = 1e9
HEADER = "source,seed,trial,state,epoch,value,time_s,energy_j,cpu_s,validate_s,test_value,param.x"
EPOCH_S = (1, 2, 3)


class Recorded(Trainable):
    """Stands for whatever trained the table's trials; a simulation never calls it."""

    name = "recorded"

    @classmethod
    def prepare(cls, workload, data_dir):
        raise AssertionError("a simulation trains nothing")

    def setup(self, workload, data, device):
        raise AssertionError("a simulation trains nothing")

    def run_trial(self, ctx):
        raise AssertionError("a simulation trains nothing")

    def test(self, artifact):
        raise AssertionError("a simulation trains nothing")


def needs(module: str) -> pytest.MarkDecorator:
    """The adapter's library is an extra (the test extra installs them all)."""
    from importlib.util import find_spec

    return pytest.mark.skipif(find_spec(module) is None, reason=f"{module} is not installed")


def registry() -> Registry:
    reg = wiring.registry()
    reg.trainables["recorded"] = Recorded
    return reg


def value(x: int, epoch: int) -> float:
    return ((x * 7) % 30) / 10 + (2 - epoch)


@pytest.fixture
def scenario(tmp_path: Path):
    rows = [f"r,42,{x},complete,{k},{value(x, k)},{t},{10 * t},{t / 2},0,,{x}"
            for x in range(30) for k, t in enumerate(EPOCH_S)]
    (tmp_path / "tab.csv").write_text("\n".join([HEADER, *rows]) + "\n")

    def run(sampler: str, trials: int, extra: str = "", pruner: str = "hyperband"
            ) -> RunResult:
        path = tmp_path / "w.yaml"
        path.write_text(
            "model: {name: recorded}\ntraining: {epochs: 3}\n"
            f"search: {{sampler: {sampler}, pruner: {pruner}, trials: {trials}, "
            "space: {x: {low: 0, high: 29}}}\n"
            "goal: {metric: loss, direction: minimize}\nworkers: {count: 2}\n"
            "sut: {name: simulated, options: {table: tab.csv, sampler_time: 0, "
            f"lifecycle: none}}}}\n{extra}")
        workload = wl.load(path)
        reg = registry()
        reg.check(workload)
        monitor = EnergyMonitor(EstimateMeter.from_workload(workload))
        monitor.start()
        deployments = Deployments(monitor, reg)
        try:
            return TrialRunner(workload, deployments).run()
        finally:
            deployments.close()
            monitor.stop()

    return run


def timeline(result: RunResult) -> dict[int, tuple]:
    """number -> (worker, fidelity, resumed from, state, start s, end s)."""
    t0 = min(t.start_ns for t in result.trials)
    assert t0 == 0, "the trials window starts at 0 (no lifecycle, no sampler time)"
    return {t.number: (t.worker, t.fidelity, t.resumed_from, t.state, t.start_ns / S,
                       t.end_ns / S) for t in result.trials}


def assert_continuations(result: RunResult, expected: dict[int, int]) -> None:
    """Each resumed trial (number -> the trial it continues) trains the same configuration
    from where that one stopped: only the new epochs, their time and energy."""
    by = {t.number: t for t in result.trials}
    assert {n for n, t in by.items() if t.resumed_from is not None} == set(expected)
    for number, source in expected.items():
        t, before = by[number], by[source]
        assert t.params == before.params and t.resumed_from == before.fidelity
        epochs = range(t.resumed_from, t.fidelity)
        assert [s.epoch for s in t.spans if s.phase == "trial.train"] == list(epochs)
        charged = sum(EPOCH_S[k] for k in epochs)
        assert (t.end_ns - t.start_ns) / S == charged < sum(EPOCH_S[:t.fidelity])
        assert t.energy_j == pytest.approx(10 * charged)
        assert t.intermediate == [value(t.params["x"], k) for k in epochs]


@needs("smac")
def test_smac_hyperband_resumes_promoted_configurations(scenario):
    """SMAC3's Hyperband over budgets 1 and 3 epochs, 10 trials.

    t=0: #0 and #1 at 1 epoch (0–1). t=1: W0 #2 and W1 #3, both new at 3 epochs (1–7).
    t=7: #2 then #3 (the tie: W0 first); #4 and #5 at 1 epoch (7–8). t=8: W0 #6 at 1 epoch
    (8–9); W1 #7 promotes #0's configuration to 3 epochs, resumed after epoch 1: epochs 2
    and 3, 2 + 3 = 5 s (8–13) — not 6. t=9: W0 #8 promotes #6's, likewise (9–14). t=13:
    W1 #9 new at 3 epochs (13–19); W0 retires at 14 (the trial budget is spent).
    """
    result = scenario("smac", 10)
    assert timeline(result) == {
        0: (0, 1, None, "complete", 0, 1), 1: (1, 1, None, "complete", 0, 1),
        2: (0, 3, None, "complete", 1, 7), 3: (1, 3, None, "complete", 1, 7),
        4: (0, 1, None, "complete", 7, 8), 5: (1, 1, None, "complete", 7, 8),
        6: (0, 1, None, "complete", 8, 9), 7: (1, 3, 1, "complete", 8, 13),
        8: (0, 3, 1, "complete", 9, 14), 9: (1, 3, None, "complete", 13, 19)}
    assert result.sut["simulation"]["completion_order"] == list(range(10))
    assert_continuations(result, {7: 0, 8: 6})
    study = result.sut["study"]
    assert (study["asked"], study["resumed"], study["epochs_resumed"]) == (10, 2, 2)
    assert result.sut["optimizer"]["library"] == "smac" and result.sut["optimizer"]["version"]
    assert result.metrics.duplicate == 0, "a continuation is no duplicate"


@needs("dehb")
def test_dehb_promotes_in_its_first_brackets_and_repeats_one_configuration(scenario):
    """DEHB (η 3, fidelities 1 and 3), 12 trials.

    t=0: #0, #1 at 1 epoch (0–1). t=1: W0 #2 at 1 (1–2); W1 #3 new at 3 (1–7). t=2: W0 #4
    promotes #1's configuration, resumed after epoch 1: 5 s (2–7). t=7: #4 (W0) and #3 (W1)
    end together, W0's first: completion 4, 3. W0 #5 new at 3 (7–13); W1 #6, #7, #8 at 1
    (7–8, 8–9, 9–10), then #9 at 3 (10–16). t=13: W0 #10 at 3 (13–19). t=16: W1 #11 asks
    #1's configuration at 3 epochs again: it already reached 3 (#4), so it trains from the
    start (16–22), a duplicate of #4.
    """
    result = scenario("dehb", 12)
    assert timeline(result) == {
        0: (0, 1, None, "complete", 0, 1), 1: (1, 1, None, "complete", 0, 1),
        2: (0, 1, None, "complete", 1, 2), 3: (1, 3, None, "complete", 1, 7),
        4: (0, 3, 1, "complete", 2, 7), 5: (0, 3, None, "complete", 7, 13),
        6: (1, 1, None, "complete", 7, 8), 7: (1, 1, None, "complete", 8, 9),
        8: (1, 1, None, "complete", 9, 10), 9: (1, 3, None, "complete", 10, 16),
        10: (0, 3, None, "complete", 13, 19), 11: (1, 3, None, "complete", 16, 22)}
    assert result.sut["simulation"]["completion_order"] == [0, 1, 2, 4, 3, 6, 7, 8, 5, 9,
                                                            10, 11]
    assert_continuations(result, {4: 1})
    trials = {t.number: t for t in result.trials}
    assert trials[11].params == trials[1].params
    assert result.metrics.duplicate == 1 and result.metrics.waste["duplicate"].trials == 1


@needs("syne_tune")
def test_syne_tune_stops_trials_at_their_rungs(scenario):
    """Syne Tune's ASHA (stopping, brackets at 1 and 3 epochs), 8 trials, every one asked
    at 3 epochs (6 s) and judged after each. #0–#3: 0–6, 0–6, 6–12, 6–12. t=12: #4 on W0
    (12–18); #5 on W1 is stopped at its first rung, after 1 s (12–13, pruned); W1 #6
    (13–19). t=18: W0 #7, stopped after 1 s (18–19). At 19, #7 (W0) before #6 (W1).
    Nothing resumes: a stopped trial is not asked again."""
    result = scenario("syne-tune", 8)
    assert timeline(result) == {
        0: (0, 3, None, "complete", 0, 6), 1: (1, 3, None, "complete", 0, 6),
        2: (0, 3, None, "complete", 6, 12), 3: (1, 3, None, "complete", 6, 12),
        4: (0, 3, None, "complete", 12, 18), 5: (1, 3, None, "pruned", 12, 13),
        6: (1, 3, None, "complete", 13, 19), 7: (0, 3, None, "pruned", 18, 19)}
    assert result.sut["simulation"]["completion_order"] == [0, 1, 2, 3, 5, 4, 7, 6]
    assert_continuations(result, {})
    assert result.metrics.pruned == 2


def test_optuna_through_the_protocol_prunes_with_its_hyperband(scenario):
    """Optuna (TPE, HyperbandPruner) asked and told: every trial at 3 epochs. #0–#4 as
    for Syne Tune; #5 (W1) is pruned after its second epoch, 1 + 2 = 3 s (12–15), #6 (W1)
    too (15–18); at 18 #4 (W0) before #6; W0 #7, pruned likewise (18–21)."""
    result = scenario("optuna", 8)
    assert timeline(result) == {
        0: (0, 3, None, "complete", 0, 6), 1: (1, 3, None, "complete", 0, 6),
        2: (0, 3, None, "complete", 6, 12), 3: (1, 3, None, "complete", 6, 12),
        4: (0, 3, None, "complete", 12, 18), 5: (1, 3, None, "pruned", 12, 15),
        6: (1, 3, None, "pruned", 15, 18), 7: (0, 3, None, "pruned", 18, 21)}
    assert result.sut["simulation"]["completion_order"] == [0, 1, 2, 3, 5, 4, 6, 7]
    assert result.sut["optimizer"]["settings"]["pruner_class"] == "HyperbandPruner"


@needs("smac")
def test_a_time_budget_closes_the_study_exactly_as_hand_computed(scenario):
    """SMAC3 as above but a trial budget of 20 (its initial design follows it: other
    asks) and ``budget: {time_s: 11}``. A trial is handed out while the time so far plus
    the mean of the finished trials' times stays ≤ 11.

    #0, #1 at 1 epoch (0–1), nothing known yet. t=1: 1 + 1 ≤ 11: W0 #2 at 1 epoch (1–2),
    W1 #3 at 3 (1–7). t=2: 2 + 1: W0 #4 at 3 (2–8). t=7: 7 + 9/4: W1 #5 at 1 (7–8). t=8:
    W0 first, #5 not back yet: 8 + 15/5 = 11 ≤ 11: #6 (8–9); then W1: 8 + 16/6: #7 (8–9).
    t=9: 9 + 17/7 = 11.43 > 11: closed, by W0; W1 finds it closed. The study ends at 9.
    """
    result = scenario("smac", 20, "budget: {time_s: 11}")
    assert sorted(timeline(result)) == list(range(8))
    budget = result.sut["study"]["budget"]
    assert result.sut["study"]["stopped_by"] == "budget.time_s"
    assert budget["stopped_at"] == {"time_s": 9.0} and budget["spent"] == {"time_s": 9.0}
    assert budget["forecast"]["time_s"] == pytest.approx(17 / 7)
    assert budget["used_pct"]["time_s"] == pytest.approx(900 / 11)
    assert budget["refused"] == 2


@needs("smac")
def test_trials_running_when_the_budget_closes_finish(scenario):
    """The same with ``time_s: 2.5``: at t=1 the forecast is 1 s, so W1's #3 (6 s) starts;
    at t=2, 2 + 1 > 2.5 closes the study, and #3 runs on to 7 — past the limit by less than
    one trial: the forecast is a mean, not a promise."""
    result = scenario("smac", 20, "budget: {time_s: 2.5}")
    assert timeline(result) == {
        0: (0, 1, None, "complete", 0, 1), 1: (1, 1, None, "complete", 0, 1),
        2: (0, 1, None, "complete", 1, 2), 3: (1, 3, None, "complete", 1, 7)}
    budget = result.sut["study"]["budget"]
    assert budget["stopped_at"] == {"time_s": 2.0} and budget["spent"] == {"time_s": 7.0}


def test_the_optuna_replay_keeps_the_budget_too(scenario):
    """The Optuna SUT's replay (``search.sampler: random``, not an ask-and-tell optimizer):
    every trial 6 s on 2 workers. t=0: #0, #1. t=6: W0 first: 6 + 6 > 11 closes the study."""
    result = scenario("random", 10, "budget: {time_s: 11}", pruner="none")
    assert timeline(result) == {0: (0, None, None, "complete", 0, 6),
                                1: (1, None, None, "complete", 0, 6)}
    assert result.sut["study"]["stopped_by"] == "budget.time_s"
    assert "optimizer" not in result.sut


@needs("smac")
def test_the_trial_timeout_kills_a_simulated_trial(scenario):
    """``trial_timeout_s: 4``: a trial of 3 epochs (6 s) is killed 4 s in, during its third
    epoch: failed, charged 4 s and the energy of those 4 s; one at 1 epoch is untouched."""
    result = scenario("smac", 10, "trial_timeout_s: 4")
    by = {t.number: t for t in result.trials}
    killed = by[2]
    assert (killed.state, killed.end_ns - killed.start_ns) == ("failed", 4 * S)
    assert "trial timeout" in killed.error and killed.energy_j == pytest.approx(40)
    assert killed.intermediate == [value(killed.params["x"], k) for k in (0, 1)]
    assert by[0].state == "complete"

"""The grouped-trial path in one process: a real study, the real mnist-ff, real pruners."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from pytest_basht.hydro import figures
from pytest_basht.hydro import retrain as full_width
from pytest_basht.hydro.fused import FusedMnistFF
from pytest_basht.records import TrialRecord
from pytest_basht.sut import group as sut_group
from pytest_basht.sut import protocol
from pytest_basht.sut.base import SutError
from pytest_basht.sut.group import GroupRunner, Member, by_key, retrain, tell, train_group
from pytest_basht.trainables.base import config_seed
from pytest_basht.trainables.feedforward import MnistFF
from pytest_basht.trainables.group import FusableTrainable
from pytest_basht.workload import from_mapping

LRS = [0.0, 0.01, 0.003, 0.02]  # lr 0 never learns: the threshold pruner stops it


def make_workload(**search: Any) -> Any:
    return from_mapping({
        "dataset": {"samples": 500}, "training": {"epochs": 3, "batch_size": 32},
        "search": {"space": {"layer_size": [16], "learning_rate": LRS}, **search}})


@pytest.fixture(scope="module")
def trainable(tmp_path_factory: pytest.TempPathFactory) -> FusedMnistFF:
    w = make_workload()
    t = FusedMnistFF()
    t.setup(w, FusedMnistFF.prepare(w, tmp_path_factory.mktemp("data")), "cpu")
    return t


class Alone:
    """The context mnist-ff's own run_trial gets, minus a study: collects its values."""

    def __init__(self, workload: Any, params: dict, artifact: Path) -> None:
        self.workload, self.params, self.artifact = workload, params, artifact
        self.seed = config_seed(workload.seed, params)
        self.values: list[float] = []

    def phase(self, name: str, epoch: int | None = None) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def report(self, epoch: int, value: float) -> None:
        self.values.append(value)


def run_search(trainable: FusedMnistFF, tmp_path: Path, w: Any,
               pruner: optuna.pruners.BasePruner) -> tuple[optuna.Study, list[protocol.Event]]:
    space = {d.name: d.grid_values() for d in w.search.space}
    study = optuna.create_study(direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.GridSampler(space, seed=1))
    events: list[protocol.Event] = []
    runner = GroupRunner(trainable=trainable, workload=w, study=study, cap=None,
                         artifacts=tmp_path, worker=0, send=events.append)
    assert runner.run() == 0
    return study, events


def test_pruning_stops_one_member_and_the_group_goes_on(trainable, tmp_path):
    w = make_workload(fusion=4)
    cpu0 = time.process_time()
    study, events = run_search(trainable, tmp_path, w, optuna.pruners.ThresholdPruner(lower=0.1))
    cpu = time.process_time() - cpu0
    records = {r.number: r for r in (TrialRecord.from_dict(e.record) for e in events
                                     if isinstance(e, protocol.TrialFinished))}
    groups = [e.group for e in events if isinstance(e, protocol.GroupTrained)]
    assert len(groups) == 1 and sorted(groups[0]["trials"]) == [0, 1, 2, 3]
    lazy = next(r for r in records.values() if r.params["learning_rate"] == 0.0)
    assert lazy.state == "pruned" and len(lazy.intermediate) == 1
    others = [r for r in records.values() if r is not lazy]
    assert all(r.state == "complete" and len(r.intermediate) == 3 for r in others)
    assert all(lazy.end_ns < r.end_ns for r in others)
    states = {t.number: t.state for t in study.trials}
    assert states[lazy.number] == optuna.trial.TrialState.PRUNED
    assert {t.number: t.value for t in study.trials if t.number != lazy.number} == \
        {r.number: r.value for r in others}
    # one span per live member for each phase of the group, with the group's interval
    assert [s.phase for s in lazy.spans] == ["trial.load", "trial.train", "trial.validate"]
    assert all(len(r.spans) == 7 for r in others)
    for a, b in zip(others[0].spans, others[1].spans, strict=True):
        assert (a.phase, a.epoch, a.start_ns, a.end_ns, a.cpu_s) == \
            (b.phase, b.epoch, b.start_ns, b.end_ns, b.cpu_s)
    train0 = next(s for s in lazy.spans if s.phase == "trial.train")
    train0_other = next(s for s in others[0].spans if s.phase == "trial.train" and s.epoch == 0)
    assert train0.cpu_s == train0_other.cpu_s  # four shared epoch 0
    # CPU shares add up to what the group used, never to more than the process did
    shared = sum(r.cpu_s for r in records.values())
    assert shared == pytest.approx(groups[0]["cpu_s"], abs=1e-5)
    assert 0.5 * cpu < shared <= cpu
    assert all(r.cpu_s >= sum(s.cpu_s for s in r.spans) for r in records.values())
    assert not (tmp_path / f"trial-{lazy.number}.pt").exists()
    assert all((tmp_path / f"trial-{r.number}.pt").exists() for r in others)


def test_fused_members_match_their_unfused_twins(trainable, tmp_path):
    w = make_workload(fusion=4)
    _, events = run_search(trainable, tmp_path, w, optuna.pruners.NopPruner())
    for e in (e for e in events if isinstance(e, protocol.TrialFinished)):
        record = e.record
        alone = Alone(w, record["params"], tmp_path / f"alone-{record['number']}.pt")
        MnistFF.run_trial(trainable, alone)  # type: ignore[arg-type]
        # float32 sums in another order may move a validation sample (1 of 100)
        assert record["intermediate"] == pytest.approx(alone.values, abs=0.0101)
        fused_score = trainable.test(tmp_path / f"trial-{record['number']}.pt")
        assert fused_score == pytest.approx(trainable.test(alone.artifact), abs=0.0101)


def test_a_member_with_invalid_hyperparameters_fails_alone(trainable, tmp_path):
    w = make_workload(fusion=3)
    params = [{"layer_size": 16, "learning_rate": 0.01, "beta1": b} for b in (0.9, 1.5, 0.8)]
    members = [Member(i, p, w, i, tmp_path / f"m{i}.pt") for i, p in enumerate(params)]
    stopped: list[Member] = []
    train_group(trainable, members, w, 1, 0, None, stopped.append)
    assert [m.state for m in members] == ["complete", "failed", "complete"]
    assert "Invalid beta parameter at index 0: 1.5" in (members[1].error or "")
    assert sorted(m.number for m in stopped) == [0, 1, 2]


def test_a_failing_trainable_fails_every_live_member(trainable, tmp_path, monkeypatch):
    w = make_workload(fusion=2)

    def boom(group: Any) -> dict:
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(trainable, "run_group", boom)
    members = [Member(i, {"layer_size": 16}, w, i, tmp_path / f"m{i}.pt") for i in range(2)]
    train_group(trainable, members, w, 1, 0, None, lambda m: None)
    assert [(m.state, m.error) for m in members] == [("failed", "RuntimeError: out of cheese")] * 2


def test_scaled_members_train_a_surrogate_and_retrain_at_full_width(trainable, tmp_path):
    w = make_workload(fusion=2, scaling=4)
    params = [{"layer_size": 16, "learning_rate": lr} for lr in (0.01, 0.003)]
    members = [Member(i, p, w, config_seed(w.seed, p), tmp_path / f"s{i}.pt")
               for i, p in enumerate(params)]
    train_group(trainable, members, w, w.search.scaling, 0, None, lambda m: None)
    saved = torch.load(tmp_path / "s0.pt", weights_only=True)
    assert saved["hyperparameters"]["layer_size"] == 4
    assert saved["hyperparameters"]["full_layer_size"] == 16
    assert saved["state"]["0.weight"].shape == (4, 784)
    assert 0 <= trainable.test(tmp_path / "s0.pt") <= 1
    results = retrain(trainable, w, [{"number": 7, "params": params[0]},
                                     {"number": 9, "params": params[1]}], tmp_path, 0)
    assert [r["number"] for r in results] == [7, 9] and all(r["state"] == "complete"
                                                            for r in results)
    full = torch.load(tmp_path / "full-7.pt", weights_only=True)
    assert full["state"]["0.weight"].shape == (16, 784) and full["hyperparameters"]["scaling"] == 1
    alone = Alone(w, params[0], tmp_path / "alone.pt")
    MnistFF.run_trial(trainable, alone)  # type: ignore[arg-type]
    assert results[0]["value"] == pytest.approx(alone.values[-1], abs=0.0101)


def test_by_key_groups_shapes_and_caps_the_size(trainable):
    w = make_workload()
    configs = [{"layer_size": s, "layer_count": c} for s, c in
               ((16, 1), (32, 1), (16, 1), (16, 2), (16, 1), (32, 1))]
    groups = by_key(trainable, w, configs, lambda c: c, 2)
    assert [[(c["layer_size"], c["layer_count"]) for c in g] for g in groups] == [
        [(16, 1), (16, 1)], [(16, 1)], [(32, 1), (32, 1)], [(16, 2)]]


def test_to_retrain_takes_the_best_distinct_complete_trials():
    w = from_mapping({"search": {"scaling": 2, "retrain": 2}})
    rec = [TrialRecord(n, {"x": x}, state, v, 0, 0, 1) for n, x, state, v in (
        (0, 1, "complete", 0.5), (1, 2, "complete", 0.9), (2, 2, "complete", 0.8),
        (3, 3, "pruned", 0.95), (4, 4, "failed", None), (5, 5, "complete", 0.7))]
    assert [t.number for t in full_width.to_retrain(rec, w)] == [1, 5]
    w_min = from_mapping({"search": {"scaling": 2, "retrain": 3},
                          "goal": {"direction": "minimize"}})
    assert [t.number for t in full_width.to_retrain(rec, w_min)] == [0, 5, 2]
    assert full_width.deal([{"n": i} for i in range(5)], 2) == [[{"n": 0}, {"n": 1}, {"n": 2}],
                                                           [{"n": 3}, {"n": 4}]]
    assert full_width.deal([], 3) == []


def test_figures_and_when_they_are_reported():
    w = from_mapping({"search": {"fusion": 4}})
    trials = [TrialRecord(n, {"layer_size": 32}, "complete", 0.5, 0, int(1e9), int(3e9))
              for n in range(4)]
    groups = [{"size": 3}, {"size": 1}]
    fig = figures.figures(w, trials, groups, None)
    assert fig["trials_per_s"] == pytest.approx(2.0) and fig["fusion"]["mean_group_size"] == 2
    assert fig["fusion"]["group_sizes"] == {"1": 1, "3": 1} and fig["scaling"] == {"factor": 1}
    assert figures.requested(w)
    assert figures.requested(from_mapping({"search": {"fusion": 1}}))
    assert not figures.requested(from_mapping({}))
    scaled = figures.figures(from_mapping({"search": {"scaling": 4}}), trials, [], None)
    assert scaled["scaling"]["widths"] == {"32": 8} and "muP" in scaled["scaling"][
        "parametrization"]


def test_a_trainable_without_groups_is_refused_with_the_key():
    class Plain:
        pass

    with pytest.raises(SutError, match=r"search\.fusion / search\.scaling need a trainable"):
        sut_group.check(Plain, from_mapping({"search": {"fusion": 2}}))
    sut_group.check(Plain, from_mapping({}))
    sut_group.check(FusedMnistFF, from_mapping({"search": {"scaling": 2}}))


def test_a_trial_past_the_budget_is_discarded_even_when_the_grid_is_done(trainable, tmp_path,
                                                                        monkeypatch):
    """Another worker took the last grid point between our count and our ask."""
    w = make_workload(fusion=4)
    space = {d.name: d.grid_values() for d in w.search.space}
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.GridSampler(space, seed=1))
    for _ in range(4):  # the whole grid, done elsewhere
        tell(study, study.ask(), 0.5)
    monkeypatch.setattr(study, "get_trials", lambda **kw: [])  # our stale view of it
    runner = GroupRunner(trainable=trainable, workload=w, study=study, cap=None,
                         artifacts=tmp_path, worker=0, send=lambda e: None)
    assert runner._ask(4) == [] and runner.discarded == 1
    monkeypatch.undo()
    assert len(study.trials) == 5 and study.trials[-1].state == optuna.trial.TrialState.FAIL


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


class Busy(FusableTrainable):
    """Burns CPU in nested phases and between them, and fails a member mid-phase."""

    name = "busy"

    @classmethod
    def prepare(cls, workload: Any, data_dir: Path) -> Any:
        raise NotImplementedError

    def setup(self, workload: Any, data: Any, device: str) -> None:
        raise NotImplementedError

    def run_trial(self, ctx: Any) -> float:
        raise NotImplementedError

    def test(self, artifact: Path) -> float:
        raise NotImplementedError

    def group_key(self, workload: Any, params: dict) -> str:
        return "one"

    def run_group(self, group: Any) -> dict[int, float]:
        from pytest_basht import phase

        with group.phase("trial.load"):
            burn(0.05)
        with group.phase("trial.train", epoch=0):
            burn(0.05)
            with phase("trial.validate", epoch=0):  # nested: counted once
                burn(0.03)
            group.fail(1, "gave up mid-phase")
        burn(0.03)  # between phases: shared by the two left
        with group.phase("trial.validate", epoch=0):
            burn(0.02)
        return {0: 0.5, 2: 0.7}


def test_group_cpu_shares_add_up_with_nested_phases_and_a_mid_phase_stop(tmp_path):
    w = make_workload(fusion=3)
    members = [Member(i, {"x": i}, w, i, tmp_path / f"b{i}.pt") for i in range(3)]
    cpu0 = time.process_time()
    facts = train_group(Busy(), members, w, 1, 0, None, lambda m: None)
    used = time.process_time() - cpu0
    assert [m.state for m in members] == ["complete", "failed", "complete"]
    assert sum(m.cpu_s for m in members) == pytest.approx(facts["cpu_s"], abs=1e-5)
    assert 0.17 <= facts["cpu_s"] <= used + 1e-6  # 0.18 s burnt, nothing counted twice
    gone = members[1]
    assert [s.phase for s in gone.spans] == ["trial.load", "trial.validate", "trial.train"]
    assert gone.end_ns < members[0].end_ns
    assert gone.cpu_s == pytest.approx((0.05 + 0.05 + 0.03) / 3, abs=0.02)
    assert members[0].cpu_s == pytest.approx(gone.cpu_s + (0.03 + 0.02) / 2, abs=0.02)

"""The ask-and-tell SUT for real: every adapter on the local worker pool, continuation
through a trainable's checkpoints (and mnist-ff's own), energy attributed per trial, and a
time budget that closes a study within one trial of its limit (``asktell``, and the
``optuna`` SUT's workers, which close it themselves)."""

from __future__ import annotations

import contextlib
import json

import pytest
from conftest import only_report

from pytest_basht.trainables.base import TrialContext, config_seed

CONFTEST = '''
import json
import math
import time
from pathlib import Path

from pytest_basht.trainables.base import DataInfo, Trainable


class Steps(Trainable):
    """loss(x, e) = (x - 3)² / 10 + 1 / (e + 1) after epoch e; each epoch 0.05 s of busy
    CPU. It can resume: its checkpoint holds the epochs trained, and a continuation checks
    that it starts where they stopped (it fails otherwise)."""

    name = "steps"
    resumable = True

    @classmethod
    def prepare(cls, workload, data_dir):
        return DataInfo(str(data_dir), 0, 0, 0, 0)

    def setup(self, workload, data, device):
        self.workload = workload

    def run_trial(self, ctx):
        epochs = ctx.epoch_range()
        if ctx.resume is not None:
            saved = json.loads(Path(ctx.resume).read_text())
            if saved["epochs"] != epochs.start:
                raise RuntimeError(f"resumed at {epochs.start}, saved at {saved}")
        x = ctx.params["x"]
        value = math.nan
        for epoch in epochs:
            with ctx.phase("trial.train", epoch=epoch):
                end = time.perf_counter() + 0.05
                while time.perf_counter() < end:
                    pass
            with ctx.phase("trial.validate", epoch=epoch):
                value = (x - 3) ** 2 / 10 + 1 / (epoch + 1)
            ctx.report(epoch, value)
        Path(ctx.artifact).write_text(repr(value))
        if ctx.checkpoint is not None:
            Path(ctx.checkpoint).write_text(json.dumps({"epochs": epochs.stop}))
        return value

    def test(self, artifact):
        return float(Path(artifact).read_text())


def pytest_basht_register_trainables():
    return {"steps": Steps}
'''

WORKLOAD = """\
name: steps
model: {name: steps}
training: {epochs: 3}
search:
  sampler: smac
  pruner: hyperband
  trials: 9
  space: {x: {low: 0, high: 20}}
goal: {metric: loss, direction: minimize}
workers: {count: 2, cpu: 1, memory_mb: 1500}
energy: {idle_s: 0}
sut: {name: asktell}
"""

SCENARIOS = """\
import pytest

from pytest_basht import vary

BUDGET = {"budget.time_s": 2.0, "search.trials": 500}


@pytest.mark.basht(workload="w.yaml")
@vary("search.sampler", ["optuna", "smac", "dehb", "syne-tune"])
def test_library(trial_runner):
    run = trial_runner.run()
    assert run.best is not None and run.test_score == run.best.value


@pytest.mark.basht(workload="w.yaml", overrides={**BUDGET, "search.sampler": "dehb"})
def test_asktell_budget(trial_runner):
    trial_runner.run()


@pytest.mark.basht(workload="w.yaml", overrides={
    **BUDGET, "sut.name": "optuna", "search.sampler": "random", "search.pruner": "none"})
def test_optuna_budget(trial_runner):
    trial_runner.run()
"""

LIBRARIES = {"optuna": "optuna", "smac": "smac", "dehb": "dehb", "syne-tune": "syne-tune"}


@pytest.mark.slow
def test_every_adapter_trains_for_real_and_budgets_close_the_study(pytester):
    for module in ("smac", "dehb", "syne_tune"):
        pytest.importorskip(module, reason="the test extra installs every adapter's library")
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=WORKLOAD)
    pytester.makepyfile(test_scenarios=SCENARIOS)
    result = pytester.runpytest_subprocess("--basht-history", "off", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    report = only_report(pytester.path)
    by = {sc["test_id"].split("::")[-1]: sc for sc in report["scenarios"]}
    assert len(by) == 6

    resumed = 0
    for name, library in LIBRARIES.items():
        sc = by[f"test_library[search.sampler={name}]"]
        optimizer = sc["sut"]["optimizer"]
        assert (optimizer["name"], optimizer["library"]) == (name, library)
        assert optimizer["version"], "the report names the library's version"
        trials = sc["trials"]
        assert len(trials) == 9 and sc["sut"]["study"]["stopped_by"] == "search.trials"
        assert all(t["state"] in ("complete", "pruned") for t in trials), \
            [t["error"] for t in trials]
        assert all(t["energy_j"] and t["energy_j"] > 0 for t in trials), "energy per trial"
        assert {t["worker"] for t in trials} == {0, 1}
        for t in trials:
            first = t["resumed_from"] or 0
            epochs = [s["epoch"] for s in t["spans"] if s["phase"] == "trial.train"]
            assert epochs == list(range(first, first + len(t["intermediate"])))
            if t["state"] == "complete":
                assert first + len(epochs) == t["fidelity"]
        resumed += sum(1 for t in trials if t["resumed_from"])
        assert sc["sut"]["study"]["resumed"] == sum(1 for t in trials if t["resumed_from"])
    assert resumed > 0, "SMAC3's and DEHB's promotions resumed from checkpoints"

    markdown = (pytester.path / "reports" / "latest" / "report.md").read_text()
    assert "**Study**: optimizer `smac`: smac 2." in markdown

    for name in ("test_asktell_budget", "test_optuna_budget"):
        sc = by[name]
        study = sc["sut"]["study"]
        budget = study["budget"]
        assert study["stopped_by"] == "budget.time_s", json.dumps(study)
        limit, forecast = budget["limits"]["time_s"], budget["forecast"]["time_s"]
        closed, spent = budget["stopped_at"]["time_s"], budget["spent"]["time_s"]
        # refused when one more would not fit; asks come when a worker is free, so on a
        # loaded machine the refusing ask may come a moment past the limit itself
        assert closed > limit - forecast, "closed when one more would not fit"
        first = min(t["start_ns"] for t in sc["trials"])
        handed = max(t["start_ns"] - first for t in sc["trials"]) / 1e9
        assert handed <= closed, "no trial handed out after the study closed"
        longest = max((t["end_ns"] - t["start_ns"]) / 1e9 for t in sc["trials"])
        # the trials running then finish: within one trial of the limit (plus the turn of
        # the controller's loop that receives the last one)
        assert spent <= limit + longest + 0.5, (spent, longest)
        assert budget["refused"] >= 1 and len(sc["trials"]) < 500
        assert "stopped by the study budget (budget.time_s)" in markdown


class Alone(TrialContext):
    """A trial context outside any SUT: values collected, phases untimed."""

    def __init__(self, workload, params, artifact, *, epochs, start=0, resume=None,
                 checkpoint=None) -> None:
        self.workload, self.params, self.artifact = workload, params, artifact
        self.number, self.seed = 0, config_seed(workload.seed, params)
        self.epochs, self.start_epoch, self.resume, self.checkpoint = (epochs, start, resume,
                                                                       checkpoint)
        self.values: list[tuple[int, float]] = []

    def phase(self, name, *, epoch=None):
        return contextlib.nullcontext()

    def report(self, epoch, value):
        self.values.append((epoch, value))


def test_mnist_ff_resumed_trains_on_as_if_it_never_stopped(tmp_path):
    """One epoch, saved, then resumed for two more: the same values as three epochs in one
    go (the checkpoint holds the model, Adam's state and the batch order's generator)."""
    from pytest_basht import workload as wl
    from pytest_basht.hydro.fused import FusedMnistFF

    w = wl.from_mapping({"dataset": {"samples": 600}, "training": {"epochs": 3}})
    trainable = FusedMnistFF()
    trainable.setup(w, FusedMnistFF.prepare(w, tmp_path), "cpu")
    params = {"layer_size": 32, "layer_count": 1, "learning_rate": 0.01, "weight_decay": 0}
    straight = Alone(w, params, tmp_path / "a.pt", epochs=3)
    trainable.run_trial(straight)
    first = Alone(w, params, tmp_path / "b.pt", epochs=1, checkpoint=tmp_path / "b.ckpt")
    trainable.run_trial(first)
    rest = Alone(w, params, tmp_path / "c.pt", epochs=3, start=1, resume=tmp_path / "b.ckpt")
    trainable.run_trial(rest)
    assert [e for e, _ in first.values + rest.values] == [0, 1, 2]
    assert first.values + rest.values == straight.values
    assert trainable.test(tmp_path / "c.pt") == trainable.test(tmp_path / "a.pt")

"""Study budgets (``spend``) as pure functions, the workload's ``budget:`` section, and the
ask-and-tell protocol's usage errors: a library missing, a scheme or option it lacks, an
optimizer on a SUT that runs Optuna's samplers."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
from conftest import trial

from pytest_basht import spend, wiring
from pytest_basht import workload as wl
from pytest_basht.errors import RegistryError, WorkloadError
from pytest_basht.hookspecs import hookimpl
from pytest_basht.optimizers.study import Study, best_number
from pytest_basht.registry import Registry
from pytest_basht.spend import Ledger, Measure, forecast, refusal


def test_the_forecast_is_the_mean_of_the_finished_trials():
    assert forecast([]) == {}
    assert forecast([{"time_s": 1.0}, {"time_s": 3.0}]) == {"time_s": 2.0}


def test_time_is_concurrent_one_more_trial_fits_up_to_the_limit():
    """Elapsed 8 s, finished trials of 1 and 3 s: one more is forecast 2 s, 10 in all."""
    finished = [{"time_s": 1.0}, {"time_s": 3.0}]
    running = [{"time_s": 0.5}, {"time_s": 0.1}]  # side by side: they do not add up
    assert refusal({"time_s": 10.0}, {"time_s": 8.0}, finished, running) is None
    assert refusal({"time_s": 9.99}, {"time_s": 8.0}, finished, running) == "time_s"
    assert refusal({"time_s": 1.0}, {"time_s": 0.5}, [], running) is None  # nothing known


def test_an_additive_measure_counts_what_the_running_trials_will_still_spend(monkeypatch):
    """An energy budget as the energy-aware issue will add it: spent 5, finished trials of
    2 each, running trials at 1 (1 more to come) and 3 (past the forecast: 0 more), one
    more trial 2: 8 in all."""
    monkeypatch.setitem(spend.MEASURES, "energy_kwh",
                        Measure("energy_kwh", "energy", "kWh", concurrent=False))
    finished = [{"energy_kwh": 2.0}, {"energy_kwh": 2.0}]
    running = [{"energy_kwh": 1.0}, {"energy_kwh": 3.0}]
    assert refusal({"energy_kwh": 8.0}, {"energy_kwh": 5.0}, finished, running) is None
    assert refusal({"energy_kwh": 7.9}, {"energy_kwh": 5.0}, finished, running) == "energy_kwh"


def test_a_refusal_closes_the_ledger_for_good():
    ledger = Ledger({"time_s": 10.0}, started_s=100.0)
    ledger.start(0, 100.0)
    ledger.finish(0, 106.0)  # one trial of 6 s
    assert ledger.admits(104.0)  # 4 + 6 = 10
    assert not ledger.admits(104.5)
    ledger.finish(1, 104.5)  # a trial of 0 s would shrink the forecast to 3 s ...
    assert not ledger.admits(104.6), "... but the study stays closed"
    summary = ledger.summary(108.0)
    assert summary["stopped_by"] == "time_s" and summary["stopped_at"] == {"time_s": 4.5}
    assert summary["spent"] == {"time_s": 8.0} and summary["used_pct"] == {"time_s": 80.0}
    assert summary["forecast"] == {"time_s": 6.0} and summary["refused"] == 2


def test_no_budget_admits_everything_and_reports_nothing():
    ledger = Ledger.of(wl.from_mapping({}), 0.0)
    assert ledger.limits == {} and ledger.admits(1e9) and ledger.summary(1e9) is None


def test_the_workload_section(tmp_path):
    w = wl.from_mapping({"budget": {"time_s": 600}})
    assert spend.limits_of(w) == {"time_s": 600.0}
    assert ("", "study budget", "time_s ≤ 600") in w.table1()
    assert all(row[1] != "study budget" for row in wl.from_mapping({}).table1())
    for bad, key in [({"time_s": 0}, "budget.time_s"), ({"time_s": "1h"}, "budget.time_s"),
                     ({"energy": 1}, "budget.energy")]:
        with pytest.raises(WorkloadError) as info:
            wl.from_mapping({"budget": bad}, "w.yaml")
        assert info.value.key == key


# ----------------------------------------------------------------------------- the study


def test_the_best_trial_is_judged_at_the_highest_fidelity_reached():
    goal = wl.GoalSpec(metric="loss", direction="minimize")
    low = dataclasses.replace(trial(0, 0, 0, 1, value=0.1), fidelity=1)
    high = dataclasses.replace(trial(1, 0, 0, 3, value=0.5, intermediate=[0.9, 0.7, 0.5]),
                               fidelity=3)
    resumed = dataclasses.replace(trial(2, 0, 0, 2, value=0.4, intermediate=[0.6, 0.4]),
                                  fidelity=3, resumed_from=1)
    assert best_number([low, high], goal) == 1, "1 epoch's 0.1 is not comparable"
    assert best_number([low, high, resumed], goal) == 2
    assert best_number([], goal) is None


class Fixed:
    """Asks configuration a at 1 epoch, then at 3, then b at 3, then a at 3 again."""

    judges_epochs = False

    def __init__(self) -> None:
        from pytest_basht.optimizers.base import Suggestion

        self.plan = [Suggestion(0, {"c": "a"}, 1), Suggestion(1, {"c": "a"}, 3),
                     Suggestion(2, {"c": "b"}, 3), Suggestion(3, {"c": "a"}, 3)]
        self.told: list[tuple[int, str]] = []

    def ask(self):
        return self.plan.pop(0) if self.plan else None

    def tell(self, id, outcome):
        self.told.append((id, outcome.state))


def test_continuation_takes_the_saved_state_once_and_only_to_go_further():
    from pytest_basht.optimizers.base import Outcome

    opt = Fixed()
    study = Study(opt, Ledger({}), cap=None)  # type: ignore[arg-type]
    first = study.next(0.0)
    assert first is not None and first.resume is None and first.start_epoch == 0
    study.finished(first, Outcome("complete", 0.5, 1, 1.0), 1.0, "/c/0.ckpt")
    second = study.next(1.0)
    assert second is not None and second.start_epoch == 1
    assert second.resume is not None and second.resume.checkpoint == "/c/0.ckpt"
    other = study.next(1.0)
    assert other is not None and other.resume is None
    study.finished(second, Outcome("complete", 0.4, 3, 2.0), 3.0, "/c/1.ckpt")
    again = study.next(3.0)  # a at 3 epochs, which it has reached: from scratch
    assert again is not None and again.resume is None
    assert study.next(3.0) is None and study.stopped_by == "optimizer"
    assert (study.resumed, study.epochs_resumed) == (1, 1)
    assert opt.told == [(0, "complete"), (1, "complete")]


def test_a_trainable_that_cannot_resume_starts_every_trial_from_scratch():
    from pytest_basht.optimizers.base import Outcome

    study = Study(Fixed(), Ledger({}), cap=2, resumable=False)  # type: ignore[arg-type]
    first = study.next(0.0)
    assert first is not None
    study.finished(first, Outcome("complete", 0.5, 1, 1.0), 1.0, "/c/0.ckpt")
    second = study.next(1.0)
    assert second is not None and second.resume is None
    assert study.next(1.0) is None and study.stopped_by == "search.trials"


# ----------------------------------------------------------------------------- usage errors


def mf(sampler: str, **search) -> wl.Workload:
    return wl.from_mapping({
        "model": {"name": "mf-branin"}, "training": {"epochs": 9},
        "search": {"sampler": sampler, "pruner": "hyperband", "trials": 10,
                   "space": {"x0": {"low": -5.0, "high": 10.0},
                             "x1": {"low": 0.0, "high": 15.0}}, **search},
        "goal": {"metric": "loss", "direction": "minimize"},
        "sut": {"name": "simulated"}}, "w.yaml")


@pytest.fixture(scope="module")
def reg() -> Registry:
    return wiring.registry()


@pytest.mark.parametrize("name", ["optuna", "smac", "dehb", "syne-tune"])
def test_every_adapter_accepts_the_workload(reg, name):
    pytest.importorskip(reg.optimizers[name].module)
    reg.check(mf(name))


@pytest.mark.parametrize("sampler,extra", [("smac", "smac"), ("dehb", "dehb"),
                                            ("syne-tune", "syne-tune")])
def test_a_missing_library_names_the_extra_to_install(reg, monkeypatch, sampler, extra):
    real = importlib.util.find_spec
    module = reg.optimizers[sampler].module
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))
    with pytest.raises(WorkloadError) as info:
        reg.check(mf(sampler))
    assert info.value.key == "search.sampler"
    assert f"pip install 'pytest-basht[{extra}]'" in str(info.value)


@pytest.mark.parametrize("sampler,search,key,needle", [
    ("dehb", {"pruner": "none"}, "search.pruner", "hyperband"),
    ("smac", {"pruner": "median"}, "search.pruner", "successive-halving"),
    ("smac", {"sampler_options": {"etta": 3}}, "search.sampler_options.etta",
     "did you mean 'eta'"),
    ("smac", {"sampler_options": {"eta": 1}}, "search.sampler_options.eta", "≥ 2"),
    ("dehb", {"sampler_options": {"min_epochs": 9}}, "search.sampler_options.min_epochs",
     "from 1 to 8"),
    ("dehb", {"sampler_options": {"strategy": "best3_bin"}},
     "search.sampler_options.strategy", "rand1_bin"),
    ("dehb", {"sampler_options": {"crossover_prob": 2}},
     "search.sampler_options.crossover_prob", "[0, 1]"),
    ("syne-tune", {"sampler_options": {"searcher": "gp"}},
     "search.sampler_options.searcher", "kde"),
    ("optuna", {"sampler_options": {"sampler": "grid"}}, "search.sampler_options.sampler",
     "other than grid"),
    ("optuna", {"sampler_options": {"sampler": "tpee"}}, "search.sampler_options.sampler",
     "did you mean 'tpe'"),
    ("optuna", {"sampler_options": {"n_startup_trial": 3}},
     "search.sampler_options.n_startup_trial", "an option of TPESampler"),
    ("tpee", {}, "search.sampler", "syne-tune"),
])
def test_a_bad_optimizer_setting_is_a_usage_error_naming_the_key(reg, sampler, search, key,
                                                               needle):
    if sampler in reg.optimizers:
        pytest.importorskip(reg.optimizers[sampler].module)
    with pytest.raises(WorkloadError) as info:
        reg.check(mf(sampler, **search))
    assert info.value.key == key and needle in str(info.value)


@pytest.mark.parametrize("sut,sampler,needle", [
    ("optuna", "smac", "run it with sut.name asktell"),
    ("asktell", "tpe", "an ask-and-tell optimizer for sut asktell"),
])
def test_optimizers_and_optuna_samplers_run_on_their_own_suts(reg, sut, sampler, needle):
    w = wl.from_mapping({"search": {"sampler": sampler, "trials": 4}, "sut": {"name": sut}},
                        "w.yaml")
    with pytest.raises(WorkloadError) as info:
        reg.check(w)
    assert info.value.key == "search.sampler" and needle in str(info.value)


class Clash:
    @hookimpl
    def pytest_basht_register_optimizers(self):
        return {"tpe": object}


def test_a_name_registered_as_sampler_and_optimizer_is_refused():
    pm = wiring.plugin_manager()
    pm.register(Clash(), "clash")
    with pytest.raises(RegistryError, match="tpe registered both"):
        Registry.from_hooks(pm.hook)

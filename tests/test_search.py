"""Samplers and pruners by name: Optuna's own, seeded so parallel workers do not repeat."""

from __future__ import annotations

import optuna
import pytest

from pytest_basht import search, wiring
from pytest_basht import workload as wl
from pytest_basht.errors import WorkloadError

optuna.logging.set_verbosity(optuna.logging.ERROR)

SPACE = {"layer_size": {"low": 32, "high": 128, "step": 32}, "layer_count": {"low": 1, "high": 3},
         "learning_rate": {"low": 0.0005, "high": 0.0105, "step": 0.001}}


def numeric(sampler: str = "random", trials: int = 12, **extra) -> wl.Workload:
    return wl.from_mapping({"search": {"sampler": sampler, "trials": trials, "space": SPACE,
                                       **extra}}, "w.yaml")


def run_workers(sampler_name: str, workers: int = 4, waves: int = 3,
                seed: int = 42) -> list[list[tuple]]:
    """``workers`` samplers built alike (as the SUT's worker processes build them) on one
    study, each starting a trial at once, wave after wave; the params, by wave."""
    w = numeric(sampler_name, workers * waves)
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    studies = [optuna.load_study(study_name="s", storage=storage,
                                 sampler=search.SAMPLERS[sampler_name](w, seed))
               for _ in range(workers)]
    out = []
    for _ in range(waves):
        running = [(study, study.ask()) for study in studies]
        wave = []
        for study, trial in running:
            params = search.suggest(trial, w.search.space)
            study.tell(trial, -abs(params["learning_rate"] - 0.003))
            wave.append(tuple(sorted(params.items())))
        out.append(wave)
    return out


def test_builtin_names():
    assert set(search.SAMPLERS) == {"grid", "random", "tpe", "cmaes", "nsga2", "qmc"}
    assert set(search.PRUNERS) == {"none", "median", "successive-halving", "hyperband"}
    w = numeric()
    assert isinstance(search.SAMPLERS["qmc"](w, 1), optuna.samplers.QMCSampler)
    assert isinstance(search.PRUNERS["successive-halving"](w),
                      optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(search.PRUNERS["hyperband"](w), optuna.pruners.HyperbandPruner)
    for name in ("random", "tpe", "cmaes"):
        sampler = search.SAMPLERS[name](w, 1)
        assert isinstance(sampler, search.PerTrialSeed)
        assert isinstance(sampler.inner, sampler.cls)


@pytest.mark.parametrize("name", ["random", "tpe", "cmaes", "qmc"])
def test_parallel_workers_with_one_seed_do_not_repeat_each_other(name):
    for wave in run_workers(name):
        assert len(set(wave)) == len(wave), wave
    if name in ("random", "qmc"):  # model-based samplers may return to a good point
        drawn = [p for wave in run_workers(name) for p in wave]
        assert len(set(drawn)) >= len(drawn) - 1, drawn  # chance collisions aside


def test_plain_optuna_with_one_seed_per_worker_would_repeat():
    """Why random, tpe and cmaes draw per trial: the same seed in 4 workers, 4 copies."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage)
    studies = [optuna.load_study(study_name="s", storage=storage,
                                 sampler=optuna.samplers.RandomSampler(seed=42))
               for _ in range(4)]
    drawn = []
    for i in range(8):
        trial = studies[i % 4].ask()
        drawn.append(trial.suggest_float("x", 0, 1))
        studies[i % 4].tell(trial, 0.0)
    assert len(set(drawn)) == 2


def test_per_trial_seeds_are_reproducible_and_differ_between_samplers():
    assert run_workers("random") == run_workers("random")
    assert run_workers("random") != run_workers("random", seed=7)
    assert run_workers("random")[:5] != run_workers("tpe")[:5], "TPE's start is not random's"
    assert search.trial_seed(42, "random", 3) != search.trial_seed(42, "random", 4)


def test_grid_and_qmc_walk_one_sequence_with_one_seed():
    w = numeric("grid", 10)
    a, b = search.SAMPLERS["grid"](w, 42), search.SAMPLERS["grid"](w, 42)
    assert a._all_grids == b._all_grids
    assert not isinstance(search.SAMPLERS["qmc"](w, 42), search.PerTrialSeed)


def test_options_are_passed_and_unknown_ones_refused():
    w = numeric("tpe", sampler_options={"n_startup_trials": 3})
    assert search.SAMPLERS["tpe"](w, 1).inner._n_startup_trials == 3
    p = wl.from_mapping({"search": {"pruner": "successive-halving",
                                    "pruner_options": {"reduction_factor": 3}}})
    assert search.PRUNERS["successive-halving"](p)._reduction_factor == 3
    bad = numeric("cmaes", sampler_options={"sigma": 1.0})
    with pytest.raises(WorkloadError, match=r"w\.yaml: search\.sampler_options\.sigma: "
                                            r"expected an option of CmaEsSampler: x0, sigma0"):
        search.SAMPLERS["cmaes"](bad, 1)


def test_check_turns_a_bad_option_value_into_a_usage_error():
    registry = wiring.registry()
    bad = wl.from_mapping({"search": {"pruner": "successive-halving",
                                      "pruner_options": {"reduction_factor": 1}}}, "p.yaml")
    with pytest.raises(WorkloadError, match=r"p\.yaml: search\.pruner_options: expected "
                                            r"options successive-halving accepts \(The value "
                                            r"of `reduction_factor` is 1"):
        search.check(bad, registry)
    search.check(numeric("qmc", sampler_options={"qmc_type": "halton"}), registry)
    with pytest.raises(WorkloadError, match=r"sampler_options: expected options qmc"):
        search.check(numeric("qmc", sampler_options={"qmc_type": "nope"}), registry)

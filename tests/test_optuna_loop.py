"""Optuna's private loop state, as the replay uses it: fails loudly on an Optuna upgrade
that moves it (``pytest_basht.simulation.optuna_loop`` is the one place to follow it)."""

from __future__ import annotations

import optuna
import pytest

from pytest_basht.simulation import optuna_loop


def test_stop_is_refused_outside_the_loop_and_seen_inside() -> None:
    study = optuna.create_study()
    with pytest.raises(RuntimeError):
        study.stop()  # what Optuna does outside optimize(): the reason the loop is faked
    assert not optuna_loop.stopped(study)
    with optuna_loop.optimize_loop([study]):
        study.stop()
    assert optuna_loop.stopped(study)
    with pytest.raises(RuntimeError):
        study.stop()  # the flag is cleared again on the way out


def test_an_exhausted_grid_stops_its_study_in_the_loop() -> None:
    sampler = optuna.samplers.GridSampler({"x": [0, 1]}, seed=0)
    study = optuna.create_study(sampler=sampler)
    with optuna_loop.optimize_loop([study]):
        for _ in range(2):
            trial = study.ask()
            study.tell(trial, trial.suggest_int("x", 0, 1))
    assert optuna_loop.stopped(study)


def test_a_study_without_the_private_state_is_refused() -> None:
    class Bare:
        pass

    with pytest.raises(RuntimeError, match="optuna_loop must follow"):
        optuna_loop.check(Bare())  # type: ignore[arg-type]

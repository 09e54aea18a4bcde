"""Optuna's own samplers and pruners, by name, and how a trial suggests the space.

Every factory takes the workload and the sampler seed. All workers of a run build the
sampler with the same seed: Optuna's GridSampler shuffles its grid with it, and workers
with different seeds would skip and repeat points.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import optuna

from pytest_basht.errors import WorkloadError
from pytest_basht.workload import Dimension, Workload

SamplerFactory = Callable[[Workload, int], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[Workload], optuna.pruners.BasePruner]


def _kwargs(target: Callable[..., Any], options: dict[str, Any], key: str,
            workload: Workload) -> dict[str, Any]:
    accepted = inspect.signature(target).parameters
    for name in options:
        if name not in accepted or name in ("seed", "search_space"):
            raise WorkloadError(workload.source, f"{key}.{name}",
                                f"an option of {target.__name__}: "
                                + ", ".join(p for p in accepted
                                            if p not in ("seed", "search_space")))
    return dict(options)


def grid_sampler(workload: Workload, seed: int) -> optuna.samplers.BaseSampler:
    space = {}
    for dim in workload.search.space:
        values = dim.grid_values()
        assert values is not None, "validated: a grid has discrete dimensions"
        space[dim.name] = values
    opts = _kwargs(optuna.samplers.GridSampler, workload.search.sampler_options,
                   "search.sampler_options", workload)
    return optuna.samplers.GridSampler(space, seed=seed, **opts)


# GridSampler shuffles its grid with the seed: workers must agree on it to share one grid.
grid_sampler.shared_seed = True  # type: ignore[attr-defined]


def sampler_seed(factory: SamplerFactory, seed: int, worker: int) -> int:
    """The seed worker ``worker`` builds its sampler with.

    Samplers whose workers must agree (a factory with ``shared_seed = True``: grid, QMC)
    get the workload's seed; every other sampler gets a distinct, reproducible seed per
    worker — with one seed, random, TPE and CMA-ES workers would all suggest the same
    sequence and the run would be mostly duplicates.
    """
    if getattr(factory, "shared_seed", False):
        return seed
    digest = hashlib.sha256(f"{seed}:{worker}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _seeded(cls: type) -> SamplerFactory:
    def factory(workload: Workload, seed: int) -> optuna.samplers.BaseSampler:
        opts = _kwargs(cls, workload.search.sampler_options, "search.sampler_options", workload)
        return cls(seed=seed, **opts)

    factory.__name__ = f"{cls.__name__}_factory"
    return factory


random_sampler = _seeded(optuna.samplers.RandomSampler)
tpe_sampler = _seeded(optuna.samplers.TPESampler)


def _pruner(cls: type) -> PrunerFactory:
    def factory(workload: Workload) -> optuna.pruners.BasePruner:
        return cls(**_kwargs(cls, workload.search.pruner_options, "search.pruner_options",
                             workload))

    factory.__name__ = f"{cls.__name__}_factory"
    return factory


no_pruner = _pruner(optuna.pruners.NopPruner)
median_pruner = _pruner(optuna.pruners.MedianPruner)

SAMPLERS: dict[str, SamplerFactory] = {"grid": grid_sampler, "random": random_sampler,
                                       "tpe": tpe_sampler}
PRUNERS: dict[str, PrunerFactory] = {"none": no_pruner, "median": median_pruner}


def suggest(trial: optuna.trial.Trial, space: tuple[Dimension, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for dim in space:
        if dim.choices is not None:
            params[dim.name] = trial.suggest_categorical(dim.name, list(dim.choices))
        elif dim.integer:
            assert dim.low is not None and dim.high is not None
            params[dim.name] = trial.suggest_int(dim.name, int(dim.low), int(dim.high),
                                                 step=int(dim.step or 1), log=dim.log)
        else:
            assert dim.low is not None and dim.high is not None
            params[dim.name] = trial.suggest_float(dim.name, dim.low, dim.high, step=dim.step,
                                                   log=dim.log)
    return params


def trial_cap(workload: Workload) -> int | None:
    """How many trials the SUT may create: the budget; none for a grid left to finish itself."""
    if workload.search.trials is not None:
        return workload.search.trials
    if workload.search.sampler == "grid":
        return None
    return workload.search.size

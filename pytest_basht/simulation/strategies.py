"""Optuna's CMA-ES and QMC samplers and successive-halving and Hyperband pruners, by name.

S-Sam and S-Pru compare them; issue 4 adds them to ``search.py``'s tables, which take
precedence over these where both name one (``builtins`` merges them that way). They are
module-level functions so that worker processes of the ``optuna`` SUT can import them.
"""

from __future__ import annotations

import optuna

from pytest_basht.search import PrunerFactory, SamplerFactory, _kwargs
from pytest_basht.workload import Workload


def _sampler_options(cls: type, workload: Workload) -> dict:
    return _kwargs(cls, workload.search.sampler_options, "search.sampler_options", workload)


def _pruner_options(cls: type, workload: Workload) -> dict:
    return _kwargs(cls, workload.search.pruner_options, "search.pruner_options", workload)


def cmaes_sampler(workload: Workload, seed: int) -> optuna.samplers.BaseSampler:
    cls = optuna.samplers.CmaEsSampler
    return cls(seed=seed, **_sampler_options(cls, workload))


def qmc_sampler(workload: Workload, seed: int) -> optuna.samplers.BaseSampler:
    cls = optuna.samplers.QMCSampler
    return cls(seed=seed, **_sampler_options(cls, workload))


# QMC indexes one scrambled sequence by trial number: workers must share its seed.
qmc_sampler.shared_seed = True  # type: ignore[attr-defined]


def successive_halving_pruner(workload: Workload) -> optuna.pruners.BasePruner:
    cls = optuna.pruners.SuccessiveHalvingPruner
    return cls(**_pruner_options(cls, workload))


def hyperband_pruner(workload: Workload) -> optuna.pruners.BasePruner:
    cls = optuna.pruners.HyperbandPruner
    return cls(**_pruner_options(cls, workload))


SAMPLERS: dict[str, SamplerFactory] = {"cmaes": cmaes_sampler, "qmc": qmc_sampler}
PRUNERS: dict[str, PrunerFactory] = {"successive-halving": successive_halving_pruner,
                                     "hyperband": hyperband_pruner}

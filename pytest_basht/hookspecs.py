"""Hooks by which a conftest or a package extends pytest-basht.

Register hooks return a dict of name -> object; every plugin's dict is merged, and a name
registered twice is an error naming both. The built-ins register through these same hooks
(each package's ``plugin`` module, marked with ``hookimpl``; ``pytest_basht.wiring`` lists
them). A package can also register without pytest, through the ``pytest_basht`` entry
point group (used by ``basht`` on the command line).

Objects that run in worker processes (SUT code excepted) must be module-level names, so a
worker can import them: classes, functions, or module attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import pytest

hookspec = pluggy.HookspecMarker("pytest")
#: marks a hook implementation, as ``pytest.hookimpl`` does, without importing pytest
hookimpl = pluggy.HookimplMarker("pytest")


@hookspec
def pytest_basht_register_suts() -> dict[str, type]:
    """Systems under test: name -> a ``pytest_basht.sut.base.SUT`` subclass.

    .. code-block:: python

        # conftest.py
        from my_hpo import MySUT

        def pytest_basht_register_suts():
            return {"my-hpo": MySUT}
    """


@hookspec
def pytest_basht_register_trainables() -> dict[str, type]:
    """Trainables: name -> a ``pytest_basht.trainables.base.Trainable`` subclass.

    .. code-block:: python

        def pytest_basht_register_trainables():
            from my_models import CifarResNet
            return {"cifar-resnet": CifarResNet}
    """


@hookspec
def pytest_basht_register_samplers() -> dict[str, Any]:
    """Samplers: name -> ``factory(workload, seed) -> optuna.samplers.BaseSampler``.

    .. code-block:: python

        import optuna

        def gp_sampler(workload, seed):
            return optuna.samplers.GPSampler(seed=seed)

        def pytest_basht_register_samplers():
            return {"gp": gp_sampler}
    """


@hookspec
def pytest_basht_register_optimizers() -> dict[str, type]:
    """Ask-and-tell optimizers: name -> a ``pytest_basht.optimizers.base.Optimizer``
    subclass, any HPO library behind ``ask() -> Suggestion(id, config, fidelity)`` and
    ``tell(id, Outcome)``. A workload selects one with ``search.sampler`` and runs it with
    ``sut.name: asktell`` (real training on local workers) or ``simulated`` (a replay); a
    name may not also be a sampler's.

    .. code-block:: python

        import random

        from pytest_basht.optimizers.base import Optimizer, Suggestion


        class RandomHalf(Optimizer):
            # random points of a discrete space, every other one at half the epochs
            library = module = extra = "numpy"  # the report names numpy's version
            schemes = {"none": "no early stopping"}

            def __init__(self, workload, seed, work_dir, registry):
                super().__init__(workload, seed, work_dir, registry)
                self.rng = random.Random(seed)
                self.asked = 0

            def ask(self):
                config = {d.name: self.rng.choice(d.grid_values())
                          for d in self.workload.search.space}
                n, self.asked = self.asked, self.asked + 1
                return Suggestion(n, config, self.max_epochs // (1 + n % 2))

            def tell(self, id, outcome):
                pass

        def pytest_basht_register_optimizers():
            return {"random-half": RandomHalf}
    """


@hookspec
def pytest_basht_register_pruners() -> dict[str, Any]:
    """Pruners: name -> ``factory(workload) -> optuna.pruners.BasePruner``.

    .. code-block:: python

        import optuna

        def patient_median(workload):
            return optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(), patience=2)

        def pytest_basht_register_pruners():
            return {"patient-median": patient_median}
    """


@hookspec
def pytest_basht_register_meters() -> dict[str, type]:
    """Energy meters: name -> a ``pytest_basht.energy.base.Meter`` subclass.

    .. code-block:: python

        def pytest_basht_register_meters():
            from my_meters import SmartPlugMeter
            return {"smart-plug": SmartPlugMeter}
    """


@hookspec
def pytest_basht_update_scenario(config: pytest.Config, scenario: dict[str, Any]) -> None:
    """Amend one scenario's record (a JSON-ready dict) before it joins the report.

    .. code-block:: python

        def pytest_basht_update_scenario(config, scenario):
            scenario["labels"] = {"team": "mlops"}
    """


@hookspec
def pytest_basht_update_report(config: pytest.Config, report: dict[str, Any]) -> None:
    """Amend the whole report (a JSON-ready dict) before it is written.

    .. code-block:: python

        import os

        def pytest_basht_update_report(config, report):
            report["ci"] = {"job": os.environ.get("CI_JOB_ID")}
    """

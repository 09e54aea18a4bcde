"""Hooks by which a conftest or a package extends pytest-basht.

Register hooks return a dict of name -> object; every plugin's dict is merged, and a name
registered twice is an error naming both. The other hooks let a plugin refuse a workload,
extend a SUT's test phase and metrics, draw figures and add sections to report.md, and
amend the records. The built-ins register through these same hooks (each package's
``plugin`` module, marked with ``hookimpl``; ``pytest_basht.wiring`` lists them); Zeus
(``zeus.plugin``) and Hydro (``hydro.plugin``) use nothing else. A package can also
register without pytest, through the ``pytest_basht`` entry point group (used by
``basht`` on the command line).

Objects that run in worker processes (SUT code excepted) must be module-level names, so a
worker can import them: classes, functions, or module attributes. Hooks run in the pytest
process (or ``basht`` command) that calls them, never in a SUT's worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import pytest

    from pytest_basht.records import TrialRecord
    from pytest_basht.registry import Registry
    from pytest_basht.sut.base import TestModel
    from pytest_basht.sut.pool import WorkerPool
    from pytest_basht.workload import Workload

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
def pytest_basht_check_workload(workload: Workload, registry: Registry) -> None:
    """Refuse a workload this plugin cannot run: raise ``WorkloadError`` naming the key.

    Called for every scenario's workload when pytest collects it (a usage error, exit 4,
    before any test runs), and by ``basht validate``, after the registered names and the
    SUT's and trainable's own checks.

    .. code-block:: python

        from pytest_basht.errors import WorkloadError

        def pytest_basht_check_workload(workload, registry):
            if workload.search.sampler == "my-sampler" and workload.workers.count > 1:
                raise WorkloadError(workload.source, "workers.count",
                                    "1 with sampler my-sampler", workload.workers.count)
    """


@hookspec(firstresult=True)
def pytest_basht_sut_test_model(workload: Workload, trials: list[TrialRecord],
                                pool: WorkerPool, artifacts: Path) -> TestModel | None:
    """Supply the model the SUT's test phase evaluates, in place of the best trial's.

    Called by the ``optuna`` SUT (local and distributed) in its test phase; the first
    plugin that returns a ``TestModel`` decides (``artifact`` None: no model to test, the
    scenario has no test score). ``pool`` holds the local worker processes:
    ``pool.retrain(shares, artifacts)`` trains ``{number, params}`` configurations again,
    at full width and outside the study, one share per worker (with the trainable's
    ``run_group``: a ``trainables.group.FusableTrainable``). Hydro retrains the
    surrogate's best configurations this way (``hydro.retrain``).

    .. code-block:: python

        from pathlib import Path

        from pytest_basht.sut.base import TestModel

        def pytest_basht_sut_test_model(workload, trials, pool, artifacts):
            if workload.search.sampler != "my-sampler":
                return None
            done = [t for t in trials if t.value is not None]
            best = max(done, key=lambda t: t.value)
            [again] = pool.retrain([[{"number": best.number, "params": best.params}]],
                                   artifacts)
            return TestModel(Path(again["artifact"]), {"retrained_value": again["value"]})
    """


@hookspec
def pytest_basht_sut_metrics(workload: Workload, trials: list[TrialRecord], pool: WorkerPool,
                             tested: TestModel | None) -> dict[str, Any] | None:
    """Add to what the SUT reports of a scenario (its ``sut`` record): a dict merged in.

    Called by the ``optuna`` SUT at metric collection; ``pool.groups`` holds the facts of
    the fused groups its workers trained, ``tested`` what ``pytest_basht_sut_test_model``
    supplied (None: the best trial was tested). Hydro adds its ``hydro`` figures.

    .. code-block:: python

        def pytest_basht_sut_metrics(workload, trials, pool, tested):
            return {"slowest_trial": max(t.end_ns - t.start_ns for t in trials) / 1e9}
    """


@hookspec
def pytest_basht_plots(report: dict[str, Any], run_dir: Path) -> None:
    """Draw this plugin's figures of the report into the run directory, and record them
    in the report (report.json and report.md are written after).

    .. code-block:: python

        def pytest_basht_plots(report, run_dir):
            from matplotlib.figure import Figure

            fig = Figure()
            fig.subplots().bar(range(len(report["scenarios"])),
                               [sc["metrics"]["energy_j"] for sc in report["scenarios"]])
            fig.savefig(run_dir / "energy.png")
            report["my_plot"] = "energy.png"
    """


@hookspec
def pytest_basht_markdown_report(report: dict[str, Any]) -> list[str] | None:
    """A section of report.md, after the summary and the comparison: its Markdown lines.

    Called when pytest writes the report and when ``basht report`` renders it again, so a
    section is a function of the report alone (put what it needs into the report with
    ``pytest_basht_update_report``).

    .. code-block:: python

        def pytest_basht_markdown_report(report):
            if "my_plot" not in report:
                return None
            return ["## Energy per scenario", "", f"![energy]({report['my_plot']})", ""]
    """


@hookspec
def pytest_basht_markdown_scenario(scenario: dict[str, Any]) -> list[str] | None:
    """Markdown lines added to one scenario's section of report.md, after its trials.

    .. code-block:: python

        def pytest_basht_markdown_scenario(scenario):
            slowest = scenario["sut"].get("slowest_trial")
            return None if slowest is None else [f"Slowest trial: {slowest:.1f} s", ""]
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

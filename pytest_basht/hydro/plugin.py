"""Hydro as a plugin, through the project's own hooks as any plugin's: ``mnist-ff`` (the
feed-forward net that can fuse and scale), the full-width retraining of a scaled run's
best configurations in the SUT's test phase, the scenario's ``hydro`` figures, and its
part of report.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_basht.hookspecs import hookimpl

if TYPE_CHECKING:
    from pytest_basht.records import TrialRecord
    from pytest_basht.sut.base import TestModel
    from pytest_basht.sut.pool import WorkerPool
    from pytest_basht.workload import Workload


@hookimpl
def pytest_basht_register_trainables() -> dict[str, type]:
    from pytest_basht.hydro.fused import FusedMnistFF  # torch loads with the registry

    return {"mnist-ff": FusedMnistFF}


@hookimpl
def pytest_basht_sut_test_model(workload: Workload, trials: list[TrialRecord],
                                pool: WorkerPool, artifacts: Path) -> TestModel | None:
    """With ``search.scaling`` > 1 the trials trained surrogates: the model to test is the
    best of their best configurations, retrained at full width."""
    if workload.search.scaling <= 1:
        return None
    from pytest_basht.hydro.retrain import retrain_full_width

    return retrain_full_width(pool, workload, trials, artifacts)


@hookimpl
def pytest_basht_sut_metrics(workload: Workload, trials: list[TrialRecord], pool: WorkerPool,
                             tested: TestModel | None) -> dict[str, Any] | None:
    from pytest_basht.hydro import figures

    if not figures.requested(workload):
        return None
    scaling = tested.figures if tested is not None else None
    return {"hydro": figures.figures(workload, trials, pool.groups, scaling)}


@hookimpl
def pytest_basht_markdown_report(report: dict[str, Any]) -> list[str] | None:
    from pytest_basht.hydro import report as hydro_report

    return hydro_report.report_section(report) or None


@hookimpl
def pytest_basht_markdown_scenario(scenario: dict[str, Any]) -> list[str] | None:
    from pytest_basht.hydro import report as hydro_report

    return hydro_report.scenario_section(scenario) or None

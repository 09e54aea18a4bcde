"""The built-in SUTs, trainables, samplers, pruners and meters, registered like any plugin's;
and the Zeus BSO's section of the report (``pytest_basht.zeus.report``), added through the
report hook like any plugin's."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookimpl
def pytest_basht_register_suts() -> dict[str, type]:
    from pytest_basht.sut.optuna import OptunaSUT
    from pytest_basht.sut.ray import RaySUT  # imports Ray only when deployed
    from pytest_basht.sut.simulated import SimulatedSUT

    return {"optuna": OptunaSUT, "simulated": SimulatedSUT, "ray": RaySUT}


@pytest.hookimpl
def pytest_basht_register_trainables() -> dict[str, type]:
    from pytest_basht.simulation.synthetic import MFBranin
    from pytest_basht.trainables.fused import FusedMnistFF

    # mnist-ff can fuse and scale (Hydro); mf-branin is the synthetic benchmark
    return {"mnist-ff": FusedMnistFF, "mf-branin": MFBranin}


@pytest.hookimpl
def pytest_basht_register_samplers() -> dict[str, Any]:
    from pytest_basht import search  # optuna loads when a registry is built, not at import
    from pytest_basht.zeus.sampler import zeus_sampler

    return {**search.SAMPLERS, "zeus-bso": zeus_sampler}


@pytest.hookimpl
def pytest_basht_register_pruners() -> dict[str, Any]:
    from pytest_basht import search
    from pytest_basht.zeus.sampler import zeus_pruner

    return {**search.PRUNERS, "zeus-bso": zeus_pruner}


@pytest.hookimpl
def pytest_basht_register_meters() -> dict[str, type]:
    from pytest_basht.energy.estimate import EstimateMeter
    from pytest_basht.energy.nvml import NvmlMeter
    from pytest_basht.energy.prometheus import PrometheusMeter
    from pytest_basht.energy.rapl import RaplMeter

    return {"estimate": EstimateMeter, "rapl": RaplMeter, "nvml": NvmlMeter,
            "prometheus": PrometheusMeter}


@pytest.hookimpl
def pytest_basht_update_report(config: pytest.Config | None, report: dict[str, Any]) -> None:
    from pytest_basht.zeus import report as zeus_report

    zeus_report.update_report(report)

"""The built-in SUTs, trainables, samplers, pruners and meters, registered like any plugin's."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_basht import search


@pytest.hookimpl
def pytest_basht_register_suts() -> dict[str, type]:
    from pytest_basht.sut.optuna import OptunaSUT

    return {"optuna": OptunaSUT}


@pytest.hookimpl
def pytest_basht_register_trainables() -> dict[str, type]:
    from pytest_basht.trainables.feedforward import MnistFF

    return {"mnist-ff": MnistFF}


@pytest.hookimpl
def pytest_basht_register_samplers() -> dict[str, Any]:
    return dict(search.SAMPLERS)


@pytest.hookimpl
def pytest_basht_register_pruners() -> dict[str, Any]:
    return dict(search.PRUNERS)


@pytest.hookimpl
def pytest_basht_register_meters() -> dict[str, type]:
    from pytest_basht.energy.estimate import EstimateMeter
    from pytest_basht.energy.nvml import NvmlMeter
    from pytest_basht.energy.prometheus import PrometheusMeter
    from pytest_basht.energy.rapl import RaplMeter

    return {"estimate": EstimateMeter, "rapl": RaplMeter, "nvml": NvmlMeter,
            "prometheus": PrometheusMeter}

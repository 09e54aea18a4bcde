"""The wiring: a registry without pytest (built-ins, extra plugin modules, plain
``pytest_basht_*`` functions as in a conftest), and the ``optuna`` SUT's variant chosen
from the workload at registration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_basht import wiring
from pytest_basht import workload as wl
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.errors import BashtUsageError, RegistryError
from pytest_basht.registry import Registry
from pytest_basht.sut.distributed import DistributedOptunaSUT
from pytest_basht.sut.optuna import OptunaSUT
from pytest_basht.sut.plugin import optuna_sut
from pytest_basht.sut.simulated import SimulatedSUT


def test_the_builtins_register_without_pytest():
    registry = wiring.registry()
    assert {"optuna", "simulated", "ray"} <= set(registry.suts)
    assert {"mnist-ff", "mf-branin"} <= set(registry.trainables)
    assert {"grid", "zeus-bso"} <= set(registry.samplers) and "zeus-bso" in registry.pruners
    assert registry.meters == wiring.meters() and registry.meters["estimate"] is EstimateMeter


def test_a_plugin_file_registers_with_plain_functions(tmp_path: Path):
    plugin = tmp_path / "conftest.py"
    plugin.write_text("from pytest_basht.search import grid_sampler\n\n"
                      "def pytest_basht_register_samplers():\n"
                      "    return {'my-grid': grid_sampler}\n")
    registry = wiring.registry(wiring.load_plugins([str(plugin)]))
    assert registry.samplers["my-grid"] is registry.samplers["grid"]
    with pytest.raises(BashtUsageError, match="no such file"):
        wiring.load_plugins([str(tmp_path / "missing.py")])


def test_a_name_a_plugin_registers_twice_is_an_error(tmp_path: Path):
    plugin = tmp_path / "clash.py"
    plugin.write_text("def pytest_basht_register_suts():\n    return {'optuna': object}\n")
    with pytest.raises(RegistryError, match="'optuna' is registered twice"):
        wiring.registry(wiring.load_plugins([str(plugin)]))


def _workload(options: dict[str, Any]) -> wl.Workload:
    return wl.from_mapping({"sut": {"name": "optuna", "options": options}})


@pytest.mark.parametrize("options, chosen", [
    ({}, OptunaSUT),
    ({"local_workers": 1}, OptunaSUT),  # no storage: the journal one (whose check refuses)
    ({"storage": "sqlite:///x.db"}, DistributedOptunaSUT),
    ({"storage": "sqlite:///x.db", "local_workers": 0}, DistributedOptunaSUT),
])
def test_the_distributed_variant_is_chosen_exactly_when_storage_is_set(options, chosen):
    assert optuna_sut(_workload(options)) is chosen
    assert wiring.registry().sut_class(_workload(options)) is chosen


def test_a_sut_registered_as_a_plain_class_is_that_class():
    registry = Registry(suts={"simulated": SimulatedSUT, "optuna": optuna_sut})
    workload = wl.from_mapping({"sut": {"name": "simulated"}})
    assert registry.sut_class(workload) is SimulatedSUT

"""The built-in SUTs, and Optuna's own samplers and pruners (``search``), registered
through the project's own hooks as any plugin's (the ask-and-tell optimizers the
``asktell`` and ``simulated`` SUTs run are ``optimizers.plugin``'s).

``optuna`` is registered as a chooser, not a class: a workload with ``sut.options.storage``
runs on the distributed variant, any other on the local journal one.
"""

from __future__ import annotations

from typing import Any

from pytest_basht.hookspecs import hookimpl
from pytest_basht.sut.base import SUT
from pytest_basht.workload import Workload


def optuna_sut(workload: Workload) -> type[SUT]:
    """The ``optuna`` SUT for ``workload``: over a database (``storage``), with workers on
    any host, or local worker processes sharing a journal file."""
    if "storage" in workload.sut.options:
        from pytest_basht.sut.distributed import DistributedOptunaSUT

        return DistributedOptunaSUT
    from pytest_basht.sut.optuna import OptunaSUT

    return OptunaSUT


@hookimpl
def pytest_basht_register_suts() -> dict[str, Any]:
    from pytest_basht.sut.asktell import AskTellSUT
    from pytest_basht.sut.ray import RaySUT  # imports Ray only when deployed
    from pytest_basht.sut.simulated import SimulatedSUT

    return {"optuna": optuna_sut, "simulated": SimulatedSUT, "ray": RaySUT,
            "asktell": AskTellSUT}


@hookimpl
def pytest_basht_register_samplers() -> dict[str, Any]:
    import pytest_basht.search as search  # optuna loads when a registry is built, not at import

    return dict(search.SAMPLERS)


@hookimpl
def pytest_basht_register_pruners() -> dict[str, Any]:
    import pytest_basht.search as search

    return dict(search.PRUNERS)

"""Zeus's batch size optimizer as a plugin: the ``zeus-bso`` sampler and pruner, and its
section of the report (``zeus.report``), through the project's own hooks as any plugin's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_basht.hookspecs import hookimpl

if TYPE_CHECKING:
    import pytest


@hookimpl
def pytest_basht_register_samplers() -> dict[str, Any]:
    from pytest_basht.zeus.sampler import zeus_sampler

    return {"zeus-bso": zeus_sampler}


@hookimpl
def pytest_basht_register_pruners() -> dict[str, Any]:
    from pytest_basht.zeus.sampler import zeus_pruner

    return {"zeus-bso": zeus_pruner}


@hookimpl
def pytest_basht_update_report(config: pytest.Config | None, report: dict[str, Any]) -> None:
    from pytest_basht.zeus import report as zeus_report

    zeus_report.update_report(report)

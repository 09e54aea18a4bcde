"""Zeus's batch size optimizer as a plugin, through the project's own hooks as any
plugin's: the ``zeus-bso`` sampler and pruner, the check of a workload that uses them, the
report's ``zeus`` section (``zeus.report``), its plot and its part of report.md
(``zeus.section``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_basht.hookspecs import hookimpl

if TYPE_CHECKING:
    import pytest

    from pytest_basht.registry import Registry
    from pytest_basht.workload import Workload


@hookimpl
def pytest_basht_register_samplers() -> dict[str, Any]:
    from pytest_basht.zeus.sampler import zeus_sampler

    return {"zeus-bso": zeus_sampler}


@hookimpl
def pytest_basht_register_pruners() -> dict[str, Any]:
    from pytest_basht.zeus.sampler import zeus_pruner

    return {"zeus-bso": zeus_pruner}


@hookimpl
def pytest_basht_check_workload(workload: Workload, registry: Registry) -> None:
    """A zeus-bso workload is checked whole (space, pruner, target, workers)."""
    from pytest_basht.zeus import config

    config.check(workload)


@hookimpl
def pytest_basht_update_report(config: pytest.Config | None, report: dict[str, Any]) -> None:
    from pytest_basht.zeus import report as zeus_report

    zeus_report.update_report(report)


@hookimpl
def pytest_basht_plots(report: dict[str, Any], run_dir: Path) -> None:
    from pytest_basht.zeus import report as zeus_report

    zeus_report.write_plot(report, run_dir)


@hookimpl
def pytest_basht_markdown_report(report: dict[str, Any]) -> list[str] | None:
    from pytest_basht.zeus import section

    return section.section(report.get("zeus")) or None

"""The simulator's built-in zero-cost benchmark, ``mf-branin``, registered through the
project's own hook as any plugin's trainable."""

from __future__ import annotations

from pytest_basht.hookspecs import hookimpl


@hookimpl
def pytest_basht_register_trainables() -> dict[str, type]:
    from pytest_basht.simulation.synthetic import MFBranin

    return {"mf-branin": MFBranin}

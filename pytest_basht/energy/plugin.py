"""The built-in energy meters, registered through the project's own hook as any plugin's."""

from __future__ import annotations

from pytest_basht.hookspecs import hookimpl


@hookimpl
def pytest_basht_register_meters() -> dict[str, type]:
    from pytest_basht.energy.estimate import EstimateMeter
    from pytest_basht.energy.nvml import NvmlMeter
    from pytest_basht.energy.prometheus import PrometheusMeter
    from pytest_basht.energy.rapl import RaplMeter

    return {"estimate": EstimateMeter, "rapl": RaplMeter, "nvml": NvmlMeter,
            "prometheus": PrometheusMeter}

"""The wiring: the one place that builds a plugin manager and fills the registries.

Every package registers its built-ins through the project's own hooks (``hookspecs``), in
a ``plugin`` module of its own (``BUILTINS``). Under pytest, the plugin registers them on
pytest's plugin manager (``register_builtins``), beside conftests and installed plugins.
Without pytest (``basht validate``, ``basht worker``, a library caller), ``plugin_manager``
builds one from the hook specifications, the built-ins, the ``pytest_basht`` entry point
group and any extra plugin modules; ``registry`` fills a ``Registry`` from it, and
``meters`` gives the registered meters alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

import pytest_basht.hookspecs as hookspecs
from pytest_basht.errors import BashtUsageError
from pytest_basht.registry import Registry

#: the built-in plugin modules: (module, the name it is registered under)
BUILTINS: tuple[tuple[str, str], ...] = (
    ("pytest_basht.energy.plugin", "basht-energy"),
    ("pytest_basht.optimizers.plugin", "basht-optimizers"),
    ("pytest_basht.simulation.plugin", "basht-simulation"),
    ("pytest_basht.sut.plugin", "basht-sut"),
    ("pytest_basht.zeus.plugin", "basht-zeus"),
    ("pytest_basht.hydro.plugin", "basht-hydro"),  # its sections come before Zeus's
)
ENTRY_POINTS = "pytest_basht"


def register_builtins(pm: pluggy.PluginManager) -> None:
    """Register every built-in plugin module on ``pm`` (pytest's, or one of ours)."""
    for module, name in BUILTINS:
        pm.register(importlib.import_module(module), name)


class Plugins(pluggy.PluginManager):
    """Hooks marked with ``hookimpl`` (or ``pytest.hookimpl``), and plain
    ``pytest_basht_*`` functions, as pytest takes them from a conftest."""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("pytest_basht_") and callable(
                getattr(plugin, name, None)):
            return {}
        return opts


def plugin_manager(plugins: Sequence[ModuleType] = ()) -> pluggy.PluginManager:
    """The hook specifications, the built-ins, ``pytest_basht`` entry points and the given
    plugin modules."""
    pm = Plugins("pytest")
    pm.add_hookspecs(hookspecs)
    register_builtins(pm)
    pm.load_setuptools_entrypoints(ENTRY_POINTS)
    for module in plugins:
        pm.register(module, module.__name__)
    return pm


def load_plugins(specs: Sequence[str]) -> list[ModuleType]:
    """Modules registering trainables, samplers, pruners or meters: a module name, or the
    path of a Python file (a conftest.py)."""
    modules = []
    for i, spec in enumerate(specs):
        if spec.endswith(".py"):
            path = Path(spec).resolve()
            if not path.is_file():
                raise BashtUsageError(f"--plugin {spec}: no such file")
            name = f"basht_worker_plugin_{i}_{path.stem}"
            loader = importlib.util.spec_from_file_location(name, path)
            assert loader is not None and loader.loader is not None
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            sys.path.insert(0, str(path.parent))
            loader.loader.exec_module(module)
        else:
            try:
                module = importlib.import_module(spec)
            except ImportError as exc:
                raise BashtUsageError(f"--plugin {spec}: {exc}") from None
        modules.append(module)
    return modules


def registry(plugins: Sequence[ModuleType] = ()) -> Registry:
    """Every registration of the built-ins, entry points and ``plugins`` (no pytest)."""
    return Registry.from_hooks(plugin_manager(plugins).hook)


def meters() -> dict[str, Any]:
    """The registered meters alone: a process that only meters itself need not import
    every trainable (and torch) to choose its meter."""
    found: dict[str, Any] = {}
    for result in plugin_manager().hook.pytest_basht_register_meters():
        found.update(result or {})
    return found

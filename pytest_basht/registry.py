"""Registries of named SUTs, trainables, samplers, pruners, optimizers and meters, filled
by hooks.

Dicts and lookup only: ``pytest_basht.wiring`` builds the plugin manager whose hooks fill
them, and the registry keeps its hook caller, through which the core calls the plugins'
other hooks (a workload's checks, a SUT's test phase and metrics). A workload names what
it uses; only registered names resolve. Objects that run in worker processes travel there
as import references (``module:attribute``), never as code.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_basht.errors import RegistryError, WorkloadError
from pytest_basht.workload import Workload

KINDS = ("suts", "trainables", "samplers", "pruners", "optimizers", "meters")


@dataclass
class Registry:
    suts: dict[str, Any] = field(default_factory=dict)
    trainables: dict[str, Any] = field(default_factory=dict)
    samplers: dict[str, Any] = field(default_factory=dict)
    pruners: dict[str, Any] = field(default_factory=dict)
    optimizers: dict[str, Any] = field(default_factory=dict)
    meters: dict[str, Any] = field(default_factory=dict)
    #: the plugins' hook caller the registrations came from (None: filled by hand)
    hook: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_hooks(cls, hook: Any) -> Registry:
        """Collect every plugin's registrations; a name given twice is an error."""
        registry = cls(hook=hook)
        for kind in KINDS:
            caller = getattr(hook, f"pytest_basht_register_{kind}")
            target: dict[str, Any] = getattr(registry, kind)
            owners: dict[str, str] = {}
            for impl in reversed(caller.get_hookimpls()):
                result = impl.function()
                if result is None:
                    continue
                if not isinstance(result, dict):
                    raise RegistryError(f"pytest_basht_register_{kind} in {impl.plugin_name} "
                                        f"must return a dict of name -> object")
                for name, obj in result.items():
                    if name in target and target[name] is not obj:
                        raise RegistryError(f"{kind[:-1]} {name!r} is registered twice: by "
                                            f"{owners[name]} and by {impl.plugin_name}")
                    target[name] = obj
                    owners[name] = impl.plugin_name
        both = set(registry.samplers) & set(registry.optimizers)
        if both:  # search.sampler names either: it must say which
            raise RegistryError(f"{', '.join(sorted(both))} registered both as a sampler "
                                "and as an optimizer")
        return registry

    def get(self, kind: str, name: str, *, source: str = "", key: str = "") -> Any:
        table: dict[str, Any] = getattr(self, kind)
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise WorkloadError(source, key or kind, "a registered name: " + ", ".join(sorted(table))
                            + hint, name)

    def sampler(self, workload: Workload) -> Any:
        """The Optuna sampler factory ``search.sampler`` names; a usage error, listing the
        optimizers too, when it names neither."""
        name = workload.search.sampler
        if name in self.samplers:
            return self.samplers[name]
        known = sorted([*self.samplers, *self.optimizers])
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise WorkloadError(workload.source, "search.sampler", "a registered sampler or "
                            "ask-and-tell optimizer: " + ", ".join(known) + hint, name)

    def optimizer(self, workload: Workload) -> Any:
        """The ask-and-tell optimizer ``search.sampler`` names, or None (an Optuna
        sampler's name)."""
        return self.optimizers.get(workload.search.sampler)

    def sut_class(self, workload: Workload) -> Any:
        """The SUT class that runs ``workload``: the class registered under its name, or
        what a chooser registered in its place (a function, not a class) picks for it."""
        entry = self.get("suts", workload.sut.name, source=workload.source, key="sut.name")
        return entry if isinstance(entry, type) else entry(workload)

    def check(self, workload: Workload) -> None:
        """Every name in the workload is registered, the trainable and the SUT accept the
        workload, and so does every plugin (``pytest_basht_check_workload``)."""
        src = workload.source
        sut = self.sut_class(workload)
        trainable = self.get("trainables", workload.model.name, source=src, key="model.name")
        if workload.search.sampler in self.optimizers:
            self.optimizers[workload.search.sampler].check(workload, self)
        else:
            self.sampler(workload)
        self.get("pruners", workload.search.pruner, source=src, key="search.pruner")
        if workload.energy.meter != "auto":
            for name in workload.energy.meter.split(","):
                self.get("meters", name.strip(), source=src, key="energy.meter")
        trainable.check(workload)
        if hasattr(sut, "check"):
            sut.check(workload, self)
        if self.hook is not None:
            self.hook.pytest_basht_check_workload(workload=workload, registry=self)


def ref_of(obj: Any) -> str:
    """An import reference for a module-level object: ``module:name`` or ``/file.py:name``."""
    module_name = getattr(obj, "__module__", None)
    module = sys.modules.get(module_name or "")
    if module is None:
        raise RegistryError(f"{obj!r} has no importable module")
    name = None
    qual = getattr(obj, "__qualname__", "")
    if "<locals>" not in qual and _lookup(module, qual) is obj:
        name = qual
    else:
        name = next((k for k, v in vars(module).items() if v is obj), None)
    if name is None:
        raise RegistryError(f"{obj!r} must be a module-level name in {module_name} so that "
                            "worker processes can import it")
    file = getattr(module, "__file__", None)
    if file and Path(file).name == "conftest.py":
        return f"{file}:{name}"
    return f"{module_name}:{name}"


def _lookup(module: Any, qual: str) -> Any:
    obj = module
    for part in qual.split("."):
        obj = getattr(obj, part, None)
    return obj


def load_ref(ref: str) -> Any:
    """Import what ``ref_of`` named (in a worker process)."""
    target, _, name = ref.rpartition(":")
    if target.endswith(".py"):
        module_name = f"basht_conftest_{abs(hash(target))}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, target)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            sys.path.insert(0, str(Path(target).parent))
            spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return _lookup(module, name)

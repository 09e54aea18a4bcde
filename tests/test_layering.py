"""The house rules, checked: no module imports from a layer above its own, and the import
graph of ``pytest_basht`` has no cycle. Imports inside functions count (a lazy import is
still an arrow); ``if TYPE_CHECKING:`` blocks do not (they never run).

The layers, bottom to top (docs/architecture.md explains each). A module's layer is that
of the longest prefix listed here; a module that matches none fails the test, so a new
room must be given its floor.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "pytest_basht"
ROOT = Path(__file__).resolve().parents[1]

LAYERS: dict[str, int] = {
    # 1: plain data and process facts
    "errors": 1, "records": 1, "machine": 1, "signals": 1, "urls": 1, "reading": 1,
    "workdir": 1,
    # 2: the workload, the lifecycle, the hook specifications, the registry (dicts only)
    "workload": 2, "workload_files": 2, "lifecycle": 2, "hookspecs": 2, "registry": 2,
    # 3: meters, trainables, search spaces, ask-and-tell optimizers, metrics, budgets and
    # study budgets, scenarios, storage, run conditions, Pareto dominance
    "dominance": 3, "energy": 3, "trainables": 3, "search": 3, "optimizers": 3, "metrics": 3,
    "budget": 3, "spend": 3, "objectives": 3, "scenarios": 3, "sweep": 3, "db": 3,
    "conditions": 3,
    # 4: systems under test and the simulator they may replay on
    "simulation": 4, "sut": 4,
    # 5: one scenario driven, its result as plain data, the session's meters and deployments
    "runner": 5, "result": 5, "engines": 5, "forecast": 5,
    # 6: the report: assembled, written, gated, kept in history
    "report": 6,
    # 7: feature packages that plug in through hooks, as a third party would
    "zeus": 7, "hydro": 7,
    # 8: the top: wiring, the session coordinator, options, the CLI, the pytest plugin
    "wiring": 8, "session": 8, "xdist_tracker": 8, "options": 8, "cli": 8, "plugin": 8,
    "terminal_progress": 8,
    "paired": 8, "": 8,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def layer_of(module: str) -> int | None:
    rest = module.removeprefix(PACKAGE).removeprefix(".")
    parts = rest.split(".") if rest else []
    for n in range(len(parts), -1, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    return None


def imports(module: str, source: str, known: set[str], *, is_package: bool = False
            ) -> set[str]:
    """The package's modules that ``module`` imports (anywhere but TYPE_CHECKING)."""
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts:
            if ".".join(parts) in known:
                return ".".join(parts)
            parts.pop()
        return None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.orelse:
                    visit(stmt)
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    prefix = ".".join(base + ([child.module] if child.module else []))
                else:
                    prefix = child.module or ""
                # ``from pkg import x`` imports pkg (its __init__) and, maybe, pkg.x
                names = [prefix] + [f"{prefix}.{a.name}" for a in child.names]
            for name in names:
                if name == PACKAGE or name.startswith(PACKAGE + "."):
                    target = resolve(name)
                    if target is not None and target != module:
                        found.add(target)
            visit(child)

    visit(ast.parse(source))
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(m, p.read_text(encoding="utf-8"), known,
                       is_package=p.name == "__init__.py") for m, p in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def upward(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for module, targets in sorted(edges.items()):
        own = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                out.append(f"{module} (layer {own}) imports {target} (layer {theirs})")
    return out


def test_every_module_has_a_layer() -> None:
    missing = [m for m in modules() if layer_of(m) is None]
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_no_module_imports_from_a_layer_above() -> None:
    problems = upward(graph())
    assert not problems, "imports that point up the layers:\n" + "\n".join(problems)


def test_the_import_graph_has_no_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(", ".join(c) for c in found)


def test_no_module_imports_a_private_name_of_another() -> None:
    problems = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                private = [a.name for a in node.names
                           if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    problems.append(f"{module}: from {node.module} import {private}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source, expected", [
    # a layer-3 module reaching up into the report (layer 6), inside a function
    ("def f():\n    from pytest_basht.report import gate\n", "layer 6"),
    # the same through the package root, which sits at the top
    ("from pytest_basht import runner\n", "layer 8"),
])
def test_an_upward_import_is_caught(source: str, expected: str) -> None:
    """The checker itself: a deliberately added upward import is reported."""
    probe = "pytest_basht.energy.probe"
    edges = {probe: imports(probe, source, set(modules()) | {"pytest_basht.report.gate"})}
    problems = upward(edges)
    assert problems and expected in problems[0]


def test_a_cycle_is_caught() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

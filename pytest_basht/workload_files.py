"""Workload files as plain data: YAML or JSON read safely, ``extends:`` and overrides.

Every document is read through ``reading`` (a regular file, bounded) and parsed with
``yaml.SafeLoader`` (or ``json``) under limits — size, aliases, nodes with aliases
expanded, nesting depth — and a key given twice in one mapping is an error. What comes out
is plain data for ``workload.from_mapping`` to validate into the schema.
"""

from __future__ import annotations

import copy
import errno
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

import pytest_basht.reading as reading
from pytest_basht.errors import WorkloadError

MAX_BYTES = 1_000_000
MAX_ALIASES = 100
MAX_NODES = 500_000  # YAML nodes with every alias expanded: a few aliases can nest a bomb
MAX_DEPTH = 32


def check_depth(data: Any, source: str, depth: int = 0) -> None:
    """Refuse a document nested deeper than ``MAX_DEPTH`` (JSON has no alias cap)."""
    if depth > MAX_DEPTH:
        raise WorkloadError(source, "<document>", f"nesting at most {MAX_DEPTH} levels deep")
    if isinstance(data, Mapping):
        for v in data.values():
            check_depth(v, source, depth + 1)
    elif isinstance(data, list):
        for v in data:
            check_depth(v, source, depth + 1)


class _LimitedLoader(yaml.SafeLoader):
    """safe_load with a cap on aliases: an alias bomb is refused before it expands."""

    def __init__(self, stream: Any, source: str) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.source = source

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise WorkloadError(self.source, "<document>",
                                    f"at most {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """A key given twice in one mapping is an error, not "the last one wins" (YAML
        1.2 says keys are unique). Keys that a merge (``<<: *base``) brings in may be
        overridden: that is what a merge is for."""
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the constructor says so below
                    continue
                if duplicate:
                    raise WorkloadError(self.source, "<document>", "each key once per mapping "
                                        f"(line {key_node.start_mark.line + 1}: "
                                        f"{_shown_key(key)} is given again)")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None and expanded_nodes(node, MAX_NODES) > MAX_NODES:
            raise WorkloadError(self.source, "<document>",
                                f"at most {MAX_NODES:,} YAML nodes with aliases expanded")
        return node


def expanded_nodes(root: yaml.Node, limit: int) -> int:
    """Nodes of a composed document as if every alias were copied out, capped at
    ``limit + 1``. An alias shares the node it names, so each node's size is computed once
    and reused; an alias inside the node it names (a recursive document) is endless."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            open_.discard(id(node))
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_:
            return limit + 1
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _shown_key(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:60] + "…"


def _unique_pairs(source: str) -> Any:
    """A ``json.loads`` object hook that refuses a key given twice in one object."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise WorkloadError(source, "<document>", "each key once per object "
                                    f"({_shown_key(key)} is given again)")
            out[key] = value
        return out

    return hook


def _construct(loader: _LimitedLoader, node: yaml.Node, source: str) -> Any:
    try:
        return loader.construct_document(node)
    except (yaml.YAMLError, RecursionError, WorkloadError):
        raise
    except Exception as exc:  # a safe tag's own constructor on a bad value: !!timestamp x
        raise WorkloadError(source, "<document>", "valid YAML (a value its tag cannot hold: "
                            f"{type(exc).__name__}: {exc})") from None


def parse_text(text: str, source: str, as_json: bool = False) -> Any:
    """Parse a document (YAML, or JSON when asked) into plain data, refusing bombs."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise WorkloadError(source, "<document>", f"at most {MAX_BYTES:,} bytes")
    try:
        if as_json:
            return json.loads(text, object_pairs_hook=_unique_pairs(source))
        loader = _LimitedLoader(text, source)
        try:
            node = loader.get_single_node()
            return None if node is None else _construct(loader, node, source)
        finally:
            loader.dispose()
    except WorkloadError:
        raise
    except json.JSONDecodeError as exc:
        raise WorkloadError(source, "<document>",
                            f"valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
                            ) from None
    except ValueError as exc:  # an integer past Python's limit on digits (4,300 by default)
        raise WorkloadError(source, "<document>", f"numbers Python can read ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise WorkloadError(source, "<document>", f"valid YAML ({where}{problem})") from None
    except RecursionError:
        raise WorkloadError(source, "<document>", "a document nested less deeply") from None


def read_document(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a workload file and resolve ``extends:`` (a path relative to the file)."""
    source = str(path)
    if "\0" in source:  # no OS call takes it; say so rather than raise a ValueError
        raise WorkloadError(source.replace("\0", "\\0"), "<file>", "a path without NUL bytes")
    try:
        resolved = path.resolve()
    except OSError as exc:
        raise WorkloadError(source, "<file>", "a readable file", exc.strerror) from None
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise WorkloadError(source, "extends", "no cycle", chain)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise WorkloadError(source, "<file>", "a .yaml, .yml or .json file", path.suffix)
    try:
        text = reading.read_text(path, MAX_BYTES)
    except UnicodeDecodeError:
        raise WorkloadError(source, "<file>", "UTF-8 text") from None
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise WorkloadError(source, "<document>", f"at most {MAX_BYTES:,} bytes") from None
        raise WorkloadError(source, "<file>", "a readable file", exc.strerror) from None
    data = parse_text(text, source, as_json=path.suffix.lower() == ".json")
    if data is None or data == {}:  # a cut or a wrong file far more often than a choice
        raise WorkloadError(source, "<document>", "a mapping with at least one key (an empty "
                            "workload file is refused; the Basht baseline is "
                            "workloads/baseline.yaml, the defaults alone `name: baseline`)")
    if not isinstance(data, dict):
        raise WorkloadError(source, "<document>", "a mapping at the top level",
                            type(data).__name__)
    parent = data.get("extends")
    if parent is None:
        return data
    if not isinstance(parent, str) or "://" in parent or "\0" in parent:
        raise WorkloadError(source, "extends", "a relative path to another workload file", parent)
    try:
        base = read_document(path.parent / parent, (*_seen, resolved))
    except WorkloadError as exc:
        if exc.key != "<file>":
            raise  # a problem inside the file it extends: that file and key are named
        raise WorkloadError(source, "extends", f"a workload file to extend ({exc.source}: "
                            f"expected {exc.expected})", parent) from None
    return merge(base, {k: v for k, v in data.items() if k != "extends"})


def merge(base: Mapping[str, Any], child: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge ``child`` over ``base``; ``search.space`` is replaced as a whole."""
    out = copy.deepcopy(dict(base))
    for key, value in child.items():
        here = f"{path}.{key}" if path else str(key)
        if (isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
                and here != "search.space"):
            out[key] = merge(out[key], value, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any],
                    source: str = "") -> dict[str, Any]:
    """Set values by dotted path (``workers.count=2``) in a copy of a raw document."""
    out = copy.deepcopy(dict(data))
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if not all(parts):
            raise WorkloadError(source, dotted, "a dotted key path like 'workers.count'")
        node: dict[str, Any] = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise WorkloadError(source, ".".join(parts[: i + 1]),
                                    "a mapping to override inside", child)
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out

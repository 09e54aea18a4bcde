"""Configuration → curve: which recording answers a trial, and whether a table fits a workload.

``pick`` (the default) answers with one recording per configuration: one from the
workload's own seed when the table has it (so a replay of the recording run's seed gives
that run's answers), else one chosen by a hash of the seed and the configuration (so other
seeds sample the recorded seeds reproducibly). A replay may pick by another seed than its
sampler's (``seed``: the simulated SUT's ``recorded_seed``). ``mean`` averages the configuration's
complete recordings. A configuration the table lacks goes to the surrogate when one is
configured, and is otherwise an error that names it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from typing import Any, Protocol

from pytest_basht.errors import WorkloadError
from pytest_basht.simulation.curve import Curve
from pytest_basht.simulation.table import (
    SETUP_KEYS,
    Recording,
    TrialTable,
    canon,
    config_key,
    parse_param,
    summarize,
)
from pytest_basht.sut.base import SutError
from pytest_basht.workload import Workload

POLICIES = ("pick", "mean")
COVERAGE_LIMIT = 200_000


class MissingConfiguration(SutError):
    """The replay asked for a configuration (or an epoch) that nothing can answer."""


class Predictor(Protocol):
    def curve(self, params: dict[str, Any]) -> Curve: ...


def _index(seed: int, key: tuple[str, ...], n: int) -> int:
    digest = hashlib.sha256(json.dumps([seed, list(key)]).encode()).digest()
    return int.from_bytes(digest[:8], "little") % n


def fit_epochs(curve: Curve, epochs: int) -> Curve:
    """The curve of a trial that runs ``epochs`` epochs, from a recording of any length."""
    if curve.state == "failed":
        # the last row is the stretch that failed; before it, every epoch reported
        return curve.head(epochs) if curve.epochs - 1 >= epochs else curve
    if curve.epochs >= epochs:
        return curve.head(epochs)
    return Curve(curve.values, curve.times_ns, curve.energies_j, curve.cpu_s,
                 curve.validate_ns, "truncated", None, curve.origin, curve.test_value)


def _mean(curves: Sequence[Curve]) -> Curve:
    n = len(curves)

    def avg(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs)

    values: list[float | None] = []
    for i in range(curves[0].epochs):
        seen = [c.values[i] for c in curves if c.values[i] is not None]
        values.append(avg(seen) if seen else None)  # type: ignore[arg-type]
    tested = [c.test_value for c in curves if c.test_value is not None]
    return Curve(tuple(values),
                 tuple(round(sum(c.times_ns[i] for c in curves) / n)
                       for i in range(curves[0].epochs)),
                 tuple(avg([c.energies_j[i] for c in curves]) for i in range(curves[0].epochs)),
                 tuple(avg([c.cpu_s[i] for c in curves]) for i in range(curves[0].epochs)),
                 tuple(round(sum(c.validate_ns[i] for c in curves) / n)
                       for i in range(curves[0].epochs)),
                 "complete", None, "table", avg(tested) if tested else None)


class Answers:
    """Answers trials of one workload from a table (and a surrogate, when configured)."""

    def __init__(self, table: TrialTable, workload: Workload, *, policy: str = "pick",
                 surrogate: Predictor | None = None, seed: int | None = None) -> None:
        self.table = table
        self.epochs = workload.training.epochs
        self.seed = workload.seed if seed is None else seed
        self.policy = policy
        self.surrogate = surrogate
        self._cache: dict[tuple[str, ...], Curve] = {}
        # The sampler's raw values key a second cache, unless a dimension mixes booleans
        # with numbers: True == 1 as a dict key, but they are different configurations.
        self._raw: dict[tuple[Any, ...], Curve] | None = {}
        for dim in workload.search.space:
            kinds = {type(v) for v in dim.choices or ()}
            if bool in kinds and kinds & {int, float}:
                self._raw = None

    def curve(self, params: dict[str, Any]) -> Curve:
        raw = self._raw
        if raw is not None:
            found = raw.get(tuple(params.values()))
            if found is not None:
                return found
        key = config_key(params, self.table.params)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._answer(key, params)
        if raw is not None:
            raw[tuple(params.values())] = found
        return found

    def longer(self, params: dict[str, Any], curve: Curve) -> Curve:
        """A full-length curve where the table's only recording stops too early."""
        if self.surrogate is not None:
            return self.surrogate.curve(params)
        raise MissingConfiguration(
            f"configuration {json.dumps(params, sort_keys=True)} is recorded in table "
            f"{self.table.path} only for {curve.epochs} epoch(s) (its trials were pruned), "
            f"and this trial runs on; record it for {self.epochs} epochs or set "
            "sut.options.surrogate: random-forest")

    def _answer(self, key: tuple[str, ...], params: dict[str, Any]) -> Curve:
        recordings = self.table.by_key.get(key)
        if not recordings:
            if self.surrogate is not None:
                return self.surrogate.curve(params)
            raise MissingConfiguration(self.missing_message(params))
        curves = [fit_epochs(r.curve, self.epochs) for r in recordings]
        if self.policy == "mean":
            complete = [c for c in curves if c.state == "complete"]
            if complete:
                return _mean(complete)
        return self._pick(key, recordings, curves)

    def _pick(self, key: tuple[str, ...], recordings: list[Recording],
              curves: list[Curve]) -> Curve:
        pool = [(r, c) for r, c in zip(recordings, curves, strict=True)
                if c.state != "truncated"] or list(zip(recordings, curves, strict=True))
        pool = [(r, c) for r, c in pool if r.seed == self.seed] or pool
        return pool[_index(self.seed, key, len(pool))][1]

    def missing_message(self, params: dict[str, Any]) -> str:
        table = self.table
        hints = []
        for name in table.params:
            if canon(params.get(name)) not in table.values_of(name):
                recorded = sorted((parse_param_canon(v) for v in table.values_of(name)),
                                  key=str)
                hints.append(f"{name}={params.get(name)!r} was never recorded (recorded: "
                             f"{', '.join(map(repr, recorded[:8]))}"
                             f"{', ...' if len(recorded) > 8 else ''})")
        why = "; ".join(hints) or "this combination was never recorded"
        return (f"configuration {json.dumps(params, sort_keys=True)} is not in the trial table "
                f"{table.path} ({table.configurations} configurations recorded): {why}. Record "
                "it, restrict search.space to recorded configurations, or set "
                "sut.options.surrogate: random-forest")


def parse_param_canon(key: str) -> Any:
    """A canonical value back as a plain value, for messages."""
    if key == "null":
        return None
    if key.startswith("s:"):
        return key[2:]
    return parse_param(key)


# ----------------------------------------------------------------------------- checks


def _workload_value(workload: Workload, dotted: str) -> Any:
    data: Any = workload.to_dict()
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def check_fits(table: TrialTable, workload: Workload, *, surrogate: bool,
               key_prefix: str = "sut.options.table") -> list[str]:
    """Refuse a workload the table cannot answer; return notes on what differs but is fine."""
    src = workload.source
    names = [d.name for d in workload.search.space]
    if set(names) != set(table.params):
        raise WorkloadError(src, "search.space", f"the hyperparameters recorded in "
                            f"{table.path}: {', '.join(table.params)}", ", ".join(names))
    notes: list[str] = []
    summary = summarize(table.meta) if table.meta else None
    if summary is None:
        notes.append(f"table {table.path} has no card: its training setup is not checked and "
                     "idle power is modelled from the workload's estimate coefficients")
    else:
        for key in SETUP_KEYS:
            recorded = summary.setup.get(key)
            if recorded in (None, {}, ""):
                continue
            mine = _workload_value(workload, key)
            if mine != recorded:
                raise WorkloadError(src, key, f"{json.dumps(recorded)}, what table "
                                    f"{table.path} recorded (a table answers only its own "
                                    "training setup)", mine)
        rec = summary.workers
        w = workload.workers
        if rec and (rec.get("cpu"), rec.get("memory_mb")) != (w.cpu, w.memory_mb):
            notes.append(f"times and energies are replayed as recorded on workers of "
                         f"{rec.get('cpu')} vCPU × {rec.get('memory_mb')} MB; this workload asks "
                         f"{w.cpu} vCPU × {w.memory_mb} MB")
    epochs = workload.training.epochs
    longest = max(r.curve.epochs for r in table.recordings)
    if surrogate:
        return notes
    if longest < epochs:
        raise WorkloadError(src, "training.epochs", f"at most {longest}, the epochs recorded in "
                            f"{table.path} (or set sut.options.surrogate)", epochs)
    space = workload.search.space
    for dim in space:
        values = dim.grid_values()
        if values is None:
            raise WorkloadError(src, f"search.space.{dim.name}", "a list of values or a range "
                                f"with a step: table {table.path} answers only recorded "
                                "configurations (or set sut.options.surrogate)", dim.to_dict())
        missing = [v for v in values if canon(v) not in table.values_of(dim.name)]
        if missing:
            raise WorkloadError(src, f"search.space.{dim.name}", f"values recorded in "
                                f"{table.path} (or set sut.options.surrogate); never recorded",
                                missing)
    size = workload.search.size or 0
    if size <= COVERAGE_LIMIT:
        lists = [d.grid_values() or [] for d in space]
        absent = 0
        example: dict[str, Any] | None = None
        for combo in itertools.product(*lists):
            params = dict(zip(names, combo, strict=True))
            if config_key(params, table.params) not in table.by_key:
                absent += 1
                example = example or params
        if example is not None:
            raise WorkloadError(src, "search.space", f"configurations recorded in "
                                f"{table.path} (or set sut.options.surrogate): {absent} of "
                                f"{size} are not, e.g.", example)
    return notes


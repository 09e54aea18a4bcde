"""The ``simulated`` SUT: HPO on a recorded trial table, in virtual time, at zero cost.

``sut: {name: simulated, options: {table: benchmarks/tables/mnist-ff-wide.csv}}`` runs any
experiment's workload on the table instead of training: Optuna's own samplers and pruners
ask and tell as in a real run of the ``optuna`` SUT (``simulation.replay``) — or, when
``search.sampler`` names an ask-and-tell optimizer, that optimizer as in a real run of the
``asktell`` SUT, multi-fidelity continuation included (``simulation.asktell``) — and every
trial is answered from the table with its recorded values, time and energy, epoch by
epoch, in mfhpo-simulator's exact asynchronous order of wn workers
(``simulation.schedule``). Without a table, a trainable with a built-in zero-cost
benchmark (``mf-branin``) answers. The workload's ``budget:`` and ``trial_timeout_s`` hold
on the virtual clock.

Every span and the energy timeline are in virtual time (``simulation.energy``), so every
metric — JCT, energy, TWH, WR, waste, cost, CO2 — is what the recorded run's hardware
would have shown; lifecycle phases take the recorded mean times and energies of the
table's source runs (``lifecycle: recorded``) or none (``lifecycle: none``).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_basht.objectives as objectives
from pytest_basht.energy.base import Allocation
from pytest_basht.errors import WorkloadError
from pytest_basht.optimizers.base import Optimizer
from pytest_basht.optimizers.study import Study
from pytest_basht.records import TrialRecord
from pytest_basht.registry import Registry
from pytest_basht.search import trial_cap
from pytest_basht.simulation.answers import POLICIES, Answers, check_fits
from pytest_basht.simulation.asktell import AskTellReplay
from pytest_basht.simulation.curve import Curve
from pytest_basht.simulation.energy import VirtualMeter
from pytest_basht.simulation.replay import Replay, ReplayResult
from pytest_basht.simulation.table import TableError, TrialTable, summarize
from pytest_basht.spend import Ledger
from pytest_basht.sut.asktell import check_optimizer
from pytest_basht.sut.base import SUT, OwnMeter, SutContext
from pytest_basht.workload import Workload

OPTIONS = {
    "table": "trial table (CSV), relative to the workload file; none: the trainable's "
             "built-in zero-cost benchmark",
    "seeds": "pick: one recording per configuration (the workload seed's, if recorded); "
             "mean: the mean of its recordings",
    "surrogate": "none: a configuration the table lacks is an error; random-forest: predict it",
    "sampler_time": "measured: charge each worker the sampler's measured time (ask and "
                    "tell); recorded: the recording's mean gap between a worker's trials; a "
                    "number: that many seconds per trial",
    "lifecycle": "recorded: deploy, setup, ... take the table's recorded mean time and "
                 "energy; none: they take no time",
    "recorded_seed": "pick answers (and the recorded lifecycle) by this seed's recordings "
                     "instead of the workload's seed, which still seeds the sampler (a "
                     "forecast's replays: other searches under the same recorded conditions)",
}
SURROGATES = ("none", "random-forest")
LIFECYCLES = ("recorded", "none")


@dataclass(frozen=True)
class SimOptions:
    table: Path | None
    seeds: str = "pick"
    surrogate: str = "none"
    sampler_time: float | str = "measured"
    lifecycle: str = "recorded"
    recorded_seed: int | None = None

    @classmethod
    def parse(cls, workload: Workload) -> SimOptions:
        src = workload.source
        opts = dict(workload.sut.options)
        for key in opts:
            if key not in OPTIONS:
                raise WorkloadError(src, f"sut.options.{key}", "an option of the simulated SUT: "
                                    + ", ".join(OPTIONS))

        def choice(key: str, allowed: tuple[str, ...], default: str) -> str:
            value = opts.get(key, default)
            if value not in allowed:
                raise WorkloadError(src, f"sut.options.{key}", "one of " + ", ".join(allowed),
                                    value)
            return str(value)

        table = opts.get("table")
        path = None
        if table is not None:
            if not isinstance(table, str) or not table.strip():
                raise WorkloadError(src, "sut.options.table", "a path to a trial table (CSV)",
                                    table)
            path = Path(table)
            if not path.is_absolute():
                base = Path(src).parent if src and Path(src).is_file() else Path.cwd()
                path = base / path
        sampler_time = opts.get("sampler_time", "measured")
        if (isinstance(sampler_time, (int, float)) and not isinstance(sampler_time, bool)
                and math.isfinite(sampler_time) and sampler_time >= 0):
            sampler_time = float(sampler_time)
        elif sampler_time not in ("measured", "recorded"):
            raise WorkloadError(src, "sut.options.sampler_time",
                                "'measured', 'recorded' or seconds ≥ 0", sampler_time)
        recorded = opts.get("recorded_seed")
        if recorded is not None and (isinstance(recorded, bool) or not isinstance(recorded, int)
                                     or recorded < 0):
            raise WorkloadError(src, "sut.options.recorded_seed", "a seed (an integer ≥ 0)",
                                recorded)
        return cls(path, choice("seeds", POLICIES, "pick"),
                   choice("surrogate", SURROGATES, "none"), sampler_time,
                   choice("lifecycle", LIFECYCLES, "recorded"), recorded)

    def seed(self, workload: Workload) -> int:
        """The seed whose recordings answer: ``recorded_seed``, else the workload's."""
        return workload.seed if self.recorded_seed is None else self.recorded_seed


#: every table this process has read, by resolved path: read once, when its workload is
#: checked before any test, and kept — a table changed or deleted during the run changes no
#: scenario
_TABLES: dict[str, TrialTable] = {}


def until_target(curve: Curve, workload: Workload) -> Curve:
    """``training.stop_at_target``: the trial ends after the first epoch meeting the target."""
    if not workload.training.stop_at_target:
        return curve
    first = next((i for i, v in enumerate(curve.values) if workload.goal.met(v)), None)
    if first is None or (first + 1 == curve.epochs and curve.state == "complete"):
        return curve
    return curve.head(first + 1)


def load_table(path: Path, workload: Workload) -> TrialTable:
    """Read a table once: collection checks and every scenario share it."""
    key = str(path.resolve())
    if key not in _TABLES:
        try:
            _TABLES[key] = TrialTable.read(path)
        except TableError as exc:
            what = "a readable trial table" if "cannot read" in str(exc) else "a valid trial table"
            raise WorkloadError(workload.source, "sut.options.table", f"{what} ({exc})",
                                str(path)) from None
    return _TABLES[key]


def _zero_cost(registry: Registry, workload: Workload) -> Any:
    trainable = registry.get("trainables", workload.model.name, source=workload.source,
                             key="model.name")
    return getattr(trainable, "zero_cost", None)


class SimulatedSUT(SUT):
    name = "simulated"
    zero_cost = True

    @classmethod
    def check(cls, workload: Workload, registry: Registry) -> None:
        opts = SimOptions.parse(workload)
        if registry.optimizer(workload) is not None:
            check_optimizer(workload, registry, cls.name)
        if opts.table is None:
            if opts.sampler_time == "recorded":
                raise WorkloadError(workload.source, "sut.options.sampler_time",
                                    "'measured' or seconds (no table records a gap)", "recorded")
            if _zero_cost(registry, workload) is None:
                raise WorkloadError(workload.source, "sut.options.table",
                                    f"a trial table: model {workload.model.name} has no built-in "
                                    "zero-cost benchmark (record one with `basht table export`)")
            return
        table = load_table(opts.table, workload)
        check_fits(table, workload, surrogate=opts.surrogate != "none")
        if opts.sampler_time == "recorded":
            card = summarize(table.meta, opts.seed(workload)) if table.meta else None
            if card is None or card.handoff_s is None:
                raise WorkloadError(workload.source, "sut.options.sampler_time",
                                    "'measured' or seconds: table "
                                    f"{table.path} records no gap between trials", "recorded")

    def __init__(self, workload: Workload, ctx: SutContext) -> None:
        super().__init__(workload, ctx)
        self.options = SimOptions.parse(workload)
        self.table = (load_table(self.options.table, workload)
                      if self.options.table is not None else None)
        card = (summarize(self.table.meta, self.options.seed(workload))
                if self.table and self.table.meta
                else None)
        self.lifecycle = card.lifecycle if card and self.options.lifecycle == "recorded" else {}
        self.handoff_s = card.handoff_s if card else None
        w, est = workload.workers, workload.energy.estimate
        memory = w.memory_mb / 1024 * est.memory_w_per_gb
        if card is not None:
            source, measured, idle_measured = card.source, card.measured, card.idle_measured
            idle, peak = card.idle_w_per_slot, card.max_w_per_slot
        else:  # modelled like the estimate meter models one worker slot
            source, measured, idle_measured = "estimate:ccf-linear", False, False
            idle, peak = w.cpu * est.cpu_min_w + memory, w.cpu * est.cpu_max_w + memory
        self.meter = VirtualMeter(source=source, measured=measured, idle_measured=idle_measured,
                                  idle_w_per_slot=idle, max_w_per_slot=peak, slots=w.count,
                                  describe={"table": str(self.table.path) if self.table
                                            else None})
        self.workload: Workload | None = None
        self.answers: Answers | None = None
        self.benchmark: Any = None
        self.surrogate: Any = None
        self.replay: Replay | AskTellReplay | None = None
        self.optimizer: Optimizer | None = None
        self.result: ReplayResult | None = None
        self.notes: list[str] = []
        self.setups = 0
        self.window = (0, 0)
        self._surrogates: dict[tuple[Any, ...], Any] = {}

    def own_meter(self) -> OwnMeter:
        return self.meter

    def allocation(self) -> Allocation:
        # nothing is trained: the deployment holds this process only
        return Allocation(vcpus=1, memory_gb=0.0, slots=1, extra={"simulated": True})

    def _phase(self, name: str) -> None:
        figures = self.lifecycle.get(name)
        if figures:
            self.meter.advance(round(figures["time_s"] * 1e9), figures["energy_j"],
                               figures["cpu_s"])

    def deploy(self) -> None:
        self._phase("deploy")

    def undeploy(self) -> None:
        self._phase("undeploy")
        shutil.rmtree(self.ctx.work_dir, ignore_errors=True)  # an optimizer's own files

    def setup(self, workload: Workload) -> None:
        self.workload = workload
        self.setups += 1
        self.notes = []
        self.result = None
        self.benchmark = None
        self.surrogate = None
        if self.table is None:
            self.benchmark = _zero_cost(self.ctx.registry, workload)
            self.answers = None
        else:
            self.notes = check_fits(self.table, workload,
                                    surrogate=self.options.surrogate != "none")
            if self.options.surrogate != "none":
                self.surrogate = self._fit_surrogate(workload)
            self.answers = Answers(self.table, workload, policy=self.options.seeds,
                                   seed=self.options.seed(workload),
                                   surrogate=self.surrogate)
        self._phase("setup")

    def _fit_surrogate(self, workload: Workload) -> Any:
        from pytest_basht.simulation.surrogate import Surrogate

        assert self.table is not None
        key = (workload.training.epochs, workload.seed,
               tuple((d.name, d.log) for d in workload.search.space))
        if key not in self._surrogates:
            self._surrogates[key] = Surrogate(self.table, workload)
        return self._surrogates[key]

    def _answer(self, params: dict[str, Any]) -> Curve:
        assert self.workload is not None
        if self.answers is not None:
            return until_target(self.answers.curve(params), self.workload)
        return until_target(self.benchmark(self.workload, params), self.workload)

    def _longer(self, params: dict[str, Any], curve: Curve) -> Curve:
        assert self.answers is not None
        return self.answers.longer(params, curve)

    def run(self) -> list[TrialRecord]:
        w = self.workload
        assert w is not None
        optimizer = self.ctx.registry.optimizer(w)
        if optimizer is None:
            self.replay = Replay(w, self.ctx.registry, self._answer, longer=self._longer,
                                 study_name=f"{w.name}-{self.setups}",
                                 sampler_time_s=self._sampler_time_s(),
                                 progress=self.ctx.progress)
        else:
            files = self.ctx.work_dir / f"optimizer-{self.setups}"
            files.mkdir(parents=True, exist_ok=True)
            self.optimizer = optimizer(w, w.seed, files, self.ctx.registry)
            study = Study(self.optimizer, Ledger.of(w, 0.0), trial_cap(w))
            self.replay = AskTellReplay(w, study, self._answer, longer=self._longer,
                                        sampler_time_s=self._sampler_time_s(),
                                        progress=self.ctx.progress)
        start = self.meter.now_ns
        try:
            self.result = self.replay.run(start)
        finally:
            done = self.replay.result
            end = max([start, *done.retired_ns, *(t.end_ns for t in done.trials)])
            self.meter.trials_window(end, done.trials)
            self.window = (start, end)
        return self.trials_so_far()

    def _sampler_time_s(self) -> float | None:
        chosen = self.options.sampler_time
        if chosen == "measured":
            return None
        return self.handoff_s if chosen == "recorded" else float(chosen)

    def trials_so_far(self) -> list[TrialRecord]:
        if self.replay is None:
            return []
        return sorted(self.replay.result.trials, key=lambda t: t.number)

    def collect_results(self) -> int | None:
        self._phase("result_collection")
        return self.replay.best_number() if self.replay is not None else None

    def test(self, best: TrialRecord) -> float | None:
        self._phase("test")
        if self.answers is not None:
            return self.answers.curve(best.params).test_value
        assert self.workload is not None
        return self.benchmark(self.workload, best.params).test_value

    def collect_metrics(self) -> dict[str, Any]:
        self._phase("metric_collection")
        r = self.result or (self.replay.result if self.replay else ReplayResult())
        n = max(1, len(r.trials))
        w = self.workload
        info: dict[str, Any] = {
            "table": self.table.describe() if self.table else None,
            "benchmark": None if self.table else w.model.name if w else None,
            "options": {"seeds": self.options.seeds, "surrogate": self.options.surrogate,
                        "sampler_time": self.options.sampler_time,
                        "lifecycle": self.options.lifecycle},
            "surrogate": self.surrogate.describe() if self.surrogate is not None else None,
            "answers": dict(r.origins),
            "trials_window_s": (self.window[1] - self.window[0]) / 1e9,
            "sampler_s": r.charged_ns / 1e9,
            "wall_s": r.wall_ns / 1e9,
            "overhead_ms_per_trial": r.overhead_ns / 1e6 / n,
            "completion_order": list(r.completion),
            "notes": list(self.notes),
        }
        wall = info["wall_s"]
        info["speedup"] = info["trials_window_s"] / wall if wall > 0 else None
        out: dict[str, Any] = {"simulated": True, "simulation": info,
                               "over_budget_discarded": r.discarded}
        if w is not None and objectives.needed(w):
            out["told"] = objectives.TOLD_RECORDED
        study = self._study_record(r)
        if study is not None:
            out["study"] = study
        if self.optimizer is not None:
            out["optimizer"] = self.optimizer.describe()
        return out

    def _study_record(self, r: ReplayResult) -> dict[str, Any] | None:
        """What stopped the study, and its spend against the workload's budget."""
        ended = self.window[1] / 1e9
        if isinstance(self.replay, AskTellReplay):
            study = self.replay.study
            return {**study.describe(), "continuation": True,
                    "budget": study.ledger.summary(ended)}
        if isinstance(self.replay, Replay):
            ledger = self.replay.ledger
            by = (f"budget.{ledger.stopped_by}" if ledger.stopped_by
                  else "search.trials" if r.discarded else "sampler")
            return {"stopped_by": by, "budget": ledger.summary(ended)}
        return None

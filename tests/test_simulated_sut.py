"""The ``simulated`` SUT through the runner: hand-computed timelines, energy and metrics in
virtual time, pruning costs, the synthetic benchmark, the surrogate, option errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from fake_trainable import compose

from pytest_basht import wiring, workload_files
from pytest_basht import workload as wl
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.errors import WorkloadError
from pytest_basht.metrics import J_PER_KWH, TABLE2_KEYS, finite
from pytest_basht.registry import Registry
from pytest_basht.result import RunResult
from pytest_basht.runner import Deployments, TrialRunner
from pytest_basht.simulation.answers import MissingConfiguration
from pytest_basht.simulation.synthetic import MFBranin, branin, epoch_times_ns
from pytest_basht.simulation.table import card_path
from pytest_basht.trainables.base import Trainable

S = 1e9
HEADER = "source,seed,trial,state,epoch,value,time_s,energy_j,cpu_s,validate_s,test_value,param.x"


class Ordered(optuna.samplers.BaseSampler):
    """Trial n gets x = order[n mod len(order)]: a sampler whose choices a test can plan."""

    def __init__(self, order: list[int]) -> None:
        self.order = order

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.order[trial.number % len(self.order)]


def ordered(workload, seed):
    return Ordered([0, 1, 2, 3, 4])


def threshold(workload):
    return optuna.pruners.ThresholdPruner(lower=0.5)


class Recorded(Trainable):
    """Stands for whatever trained the table's trials; a simulation never calls it."""

    name = "recorded"

    @classmethod
    def prepare(cls, workload, data_dir):
        raise AssertionError("a simulation trains nothing")

    def setup(self, workload, data, device):
        raise AssertionError("a simulation trains nothing")

    def run_trial(self, ctx):
        raise AssertionError("a simulation trains nothing")

    def test(self, artifact):
        raise AssertionError("a simulation trains nothing")


def registry() -> Registry:
    reg = wiring.registry()
    reg.trainables["recorded"] = Recorded
    reg.samplers["ordered"] = ordered
    reg.pruners["threshold"] = threshold
    return reg


def run(workload: wl.Workload, reg: Registry | None = None) -> RunResult:
    """Validate like collection does, then deploy, run and undeploy one scenario."""
    reg = reg or registry()
    reg.check(workload)
    monitor = EnergyMonitor(EstimateMeter.from_workload(workload))
    monitor.start()
    deployments = Deployments(monitor, reg)
    try:
        result = TrialRunner(workload, deployments).run()
    finally:
        deployments.close()
        monitor.stop()
    return result


def load(tmp_path: Path, text: str) -> wl.Workload:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return wl.load(path)


@pytest.fixture
def five(tmp_path: Path) -> Path:
    """x = 0..4 run 3, 1, 2, 2, 1 s (one epoch) at 10 W, value x/10; x=4 was tested (0.77).
    The card: idle 4 W for 2 slots, deploy 1 s / 5 J, setup 2 s / 8 J, undeploy 0.5 s / 2 J."""
    rows = [f"r,42,{x},complete,0,{x / 10},{t},{10 * t},{t / 2},0,{0.77 if x == 4 else ''},{x}"
            for x, t in enumerate([3, 1, 2, 2, 1])]
    path = tmp_path / "five.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    card = {"format": "pytest-basht trial table", "version": 1, "sources": [{
        "source": "r", "handoff_s": 0.25,
        "energy": {"source": "rapl", "measured": True, "idle_power_w": 4.0,
                   "max_power_w": 20.0, "slots": 2, "idle_measured": True},
        "lifecycle": {"deploy": {"time_s": 1.0, "energy_j": 5.0, "cpu_s": 0.5},
                      "setup": {"time_s": 2.0, "energy_j": 8.0, "cpu_s": 1.0},
                      "undeploy": {"time_s": 0.5, "energy_j": 2.0, "cpu_s": 0.1}}}]}
    card_path(path).write_text(json.dumps(card))
    return path


def five_workload(tmp_path: Path, extra: str = "", options: str = "sampler_time: 0.5") -> str:
    return compose(f"model: {{name: recorded}}\n"
                   f"search: {{sampler: ordered, trials: 5, space: {{x: [0, 1, 2, 3, 4]}}}}\n"
                   f"training: {{epochs: 1}}\nworkers: {{count: 2}}\n"
                   f"sut: {{name: simulated, options: {{table: five.csv, {options}}}}}\n", extra)


def test_known_timeline_energy_and_metrics_in_virtual_time(tmp_path, five):
    """Two workers, each ask charged 0.5 s, trials start after deploy (1 s) + setup (2 s):

    #0 (3 s) on W0 3.5–6.5, #1 (1 s) on W1 3.5–4.5, #2 (2 s) on W1 5.0–7.0, #3 (2 s) on W0
    7.0–9.0, #4 (1 s) on W1 7.5–8.5. W1 then asks #5, past the budget of 5: it fails and
    W1 retires at 9.0; W0 likewise at 9.5. Undeploy 9.5–10.0: JCT 10 s.
    Energy: 5 + 8 + 2 J of phases, 90 J of trials, and idle slots: W0 idle 1.5 s and W1
    2.5 s of the 6.5 s window at 2 W each = 8 J; 113 J in all. WR = 8 / 113.
    """
    result = run(load(tmp_path, five_workload(tmp_path)))
    trials = {t.number: t for t in result.trials}
    assert {n: (t.worker, t.start_ns / S, t.end_ns / S) for n, t in trials.items()} == {
        0: (0, 3.5, 6.5), 1: (1, 3.5, 4.5), 2: (1, 5.0, 7.0), 3: (0, 7.0, 9.0),
        4: (1, 7.5, 8.5)}
    sim = result.sut["simulation"]
    assert result.sut["simulated"] is True and result.sut["over_budget_discarded"] == 2
    assert sim["completion_order"] == [1, 0, 2, 4, 3] and sim["answers"] == {"table": 5}
    assert sim["trials_window_s"] == 6.5 and sim["sampler_s"] == 3.5
    assert [t.energy_j for t in result.trials] == [30, 10, 20, 20, 10]
    m = result.metrics
    assert m.jct_ms == pytest.approx(10_000)
    assert m.energy_j == pytest.approx(113)
    assert m.wr_pct == pytest.approx(8 / 113 * 100)
    assert m.twh_kwh == pytest.approx(18 / J_PER_KWH)
    assert m.trial_power_w == pytest.approx(10)
    assert m.co2_g == pytest.approx(113 / J_PER_KWH * 475)
    assert m.zeus_cost == pytest.approx(0.5 * 113 + 0.5 * 20 / 2 * 2 * 10)
    assert result.best.number == 4 and result.test_score == 0.77
    assert result.energy.source == "simulated:rapl" and not result.energy.measured
    assert result.energy.idle_power_w == 4.0 and result.energy.idle_measured
    spans = {s.phase: (s.start_ns / S, s.end_ns / S, s.energy_j) for s in result.spans}
    assert spans["deploy"] == (0, 1, 5) and spans["setup"] == (1, 3, 8)
    assert spans["undeploy"] == (9.5, 10, 2)
    assert all(finite(getattr(m, k)) for k in TABLE2_KEYS if k not in ("tta_ms", "eta_j"))


def test_lifecycle_none_and_recorded_hand_over(tmp_path, five):
    """lifecycle: none makes the phases instant; sampler_time: recorded charges the card's
    0.25 s hand-over per trial: #0 0.25–3.25, #1 0.25–1.25, #2 1.5–3.5, #3 3.5–5.5 (W0:
    3.25 + 0.25), #4 3.75–4.75; W1 retires at 5.0, W0 at 5.75."""
    w = load(tmp_path, five_workload(tmp_path, options="sampler_time: recorded, "
                                                      "lifecycle: none"))
    result = run(w)
    assert {t.number: (t.worker, t.start_ns / S, t.end_ns / S) for t in result.trials} == {
        0: (0, 0.25, 3.25), 1: (1, 0.25, 1.25), 2: (1, 1.5, 3.5), 3: (0, 3.5, 5.5),
        4: (1, 3.75, 4.75)}
    assert result.metrics.jct_ms == pytest.approx(5750)


def test_measured_sampler_time_is_charged(tmp_path, five):
    result = run(load(tmp_path, five_workload(tmp_path, options="lifecycle: none")))
    sim = result.sut["simulation"]
    assert sim["sampler_s"] > 0 and sim["wall_s"] > 0
    first = min(t.start_ns for t in result.trials)
    assert first > 0, "the first ask's measured time delays the first trial"
    # measured times break the hand-worked ties at random; the rest stands
    assert sim["completion_order"][:2] == [1, 0] and sorted(sim["completion_order"]) == [
        0, 1, 2, 3, 4]


def test_a_pruned_trial_costs_only_its_first_epochs(tmp_path):
    """x=0 reports 0.9, 0.4, ...: the threshold pruner (lower 0.5) stops it after epoch 1,
    so it costs 1 + 2 s of its 1 + 2 + 4 s and 10 + 20 J of its 70 J."""
    rows = [f"r,42,0,complete,{e},{v},{t},{10 * t},0,0,,0"
            for e, (v, t) in enumerate([(0.9, 1), (0.4, 2), (0.8, 4)])]
    rows += [f"r,42,1,complete,{e},0.9,1,10,0,0,,1" for e in range(3)]
    (tmp_path / "p.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    w = load(tmp_path, "model: {name: recorded}\n"
                       "search: {sampler: grid, pruner: threshold, space: {x: [0, 1]}}\n"
                       "training: {epochs: 3}\nworkers: {count: 1}\n"
                       "sut: {name: simulated, options: {table: p.csv, sampler_time: 0}}\n")
    result = run(w)
    t = {t.params["x"]: t for t in result.trials}
    assert t[0].state == "pruned" and t[0].duration_s == 3 and t[0].energy_j == 30
    assert t[0].intermediate == [0.9, 0.4] and t[0].value == 0.4
    assert [s.epoch for s in t[0].spans if s.phase == "trial.validate"] == [0, 1]
    assert t[1].state == "complete" and t[1].duration_s == 3
    m = result.metrics
    assert m.pruned == 1 and m.waste["pruned"].energy_kwh == pytest.approx(30 / J_PER_KWH)


def test_what_the_table_cannot_answer_is_an_error_naming_it(tmp_path, five):
    w = load(tmp_path, five_workload(tmp_path).replace("[0, 1, 2, 3, 4]", "[0, 1, 2, 3, 4, 5]"))
    with pytest.raises(WorkloadError, match=r"search.space.x: .* never recorded, got \[5\]"):
        registry().check(w)
    # x=1 was pruned after one epoch in the recording, and nothing prunes it here
    rows = [f"r,42,{x},{'pruned' if x == 1 else 'complete'},{e},0.5,1,1,0,0,,{x}"
            for x in (0, 1) for e in range(1 if x == 1 else 2)]
    (tmp_path / "short.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    w = load(tmp_path, "model: {name: recorded}\nsearch: {space: {x: [0, 1]}}\n"
                       "training: {epochs: 2}\nsut: {name: simulated, options: {table: "
                       "short.csv}}\n")
    with pytest.raises(MissingConfiguration, match=r'\{"x": 1\} is recorded in table .*short'
                                                   r'.csv only for 1 epoch'):
        run(w)


@pytest.mark.parametrize("options,needle", [
    ("{table: five.csv, speed: 2}", "sut.options.speed: expected an option of the simulated"),
    ("{table: five.csv, seeds: all}", "sut.options.seeds: expected one of pick, mean"),
    ("{table: five.csv, surrogate: gp}", "sut.options.surrogate: expected one of none, random"),
    ("{table: five.csv, sampler_time: -1}", "sut.options.sampler_time: expected 'measured', "),
    ("{table: five.csv, lifecycle: some}", "sut.options.lifecycle: expected one of recorded"),
    ("{table: nope.csv}", "sut.options.table: expected a readable trial table"),
    ("{table: 3}", "sut.options.table: expected a path to a trial table"),
    ("{}", "sut.options.table: expected a trial table: model recorded has no built-in "
           "zero-cost benchmark"),
])
def test_options_are_validated_naming_the_key(tmp_path, five, options, needle):
    w = load(tmp_path, five_workload(tmp_path).split("sut:")[0]
             + f"sut: {{name: simulated, options: {options}}}\n")
    with pytest.raises(WorkloadError) as err:
        registry().check(w)
    assert needle in str(err.value) and "w.yaml" in str(err.value)


def test_a_bad_table_is_a_workload_error_naming_the_option(tmp_path):
    (tmp_path / "bad.csv").write_text("source,trial\n")
    w = load(tmp_path, "sut: {name: simulated, options: {table: bad.csv}}\n")
    with pytest.raises(WorkloadError, match=r"sut.options.table: expected a valid trial table "
                                            r"\(.*bad.csv: line 1: missing column"):
        registry().check(w)


BRANIN = """\
model: {name: mf-branin, params: {runtime_s: 30}}
goal: {metric: loss, direction: minimize, target: 5}
training: {epochs: 4}
search:
  sampler: tpe
  pruner: median
  trials: 40
  space: {x0: {low: -5.0, high: 10.0}, x1: {low: 0.0, high: 15.0}}
workers: {count: 4, cpu: 1, memory_mb: 1024}
sut: {name: simulated}
"""


def test_the_synthetic_benchmark_runs_simulated_with_every_metric(tmp_path):
    result = run(load(tmp_path, BRANIN))
    assert len(result.trials) == 40 and result.sut["simulation"]["answers"] == {
        "benchmark": 40}
    m = result.metrics
    assert all(finite(getattr(m, k)) for k in TABLE2_KEYS), m
    assert m.pruned > 0, "the median pruner stops some trials"
    for t in result.trials:
        x0, x1 = t.params["x0"], t.params["x1"]
        ran = len(t.intermediate)
        assert t.intermediate == [branin(x0, x1, (k + 1) / 4) for k in range(ran)]
        assert t.end_ns - t.start_ns == sum(epoch_times_ns(x0, 4, 30)[:ran])
        # modelled: one vCPU at 3.5 W + 1 GB at 0.392 W, busy
        assert t.energy_j == pytest.approx((3.5 + 0.392) * t.duration_s)
    assert result.test_score == pytest.approx(branin(result.best.params["x0"],
                                                     result.best.params["x1"]))
    assert result.energy.source == "simulated:estimate:ccf-linear"


def test_the_synthetic_function_and_its_cost_model():
    assert branin(math.pi, 2.275) == pytest.approx(0.397887, abs=1e-6)
    assert branin(math.pi, 2.275, 0.25) != pytest.approx(branin(math.pi, 2.275))
    times = epoch_times_ns(-5.0, 4, 60)
    assert sum(times) == round(60 * 0.5 * 1e9)  # the smallest "model", full fidelity
    assert sum(epoch_times_ns(10.0, 4, 60)) == round(60 * 1.5 * 1e9)
    assert times[0] == round(60 * 0.5 * (0.05 + 0.95 * 0.25**1.5) * 1e9)


@pytest.mark.parametrize("text,needle", [
    ("search: {space: {x0: [1], x2: [1]}}", "search.space: expected the hyperparameters of "
                                           "mf-branin"),
    ("search: {trials: 3, sampler: random, space: {x0: {low: -9, high: 1}, x1: [1]}}",
     "search.space.x0: expected numbers within [-5, 10]"),
    ("model: {name: mf-branin, params: {runtime_s: 0}}", "model.params.runtime_s: expected"),
    ("model: {name: mf-branin, params: {depth: 2}}", "model.params.depth: expected runtime_s"),
    ("goal: {direction: maximize}", "goal.direction: expected 'minimize'"),
])
def test_mf_branin_refuses_what_it_cannot_run(text, needle):
    base = {"model": {"name": "mf-branin"}, "goal": {"direction": "minimize"},
            "search": {"space": {"x0": [1.0], "x1": [2.0]}}}
    doc = workload_files.merge(base, workload_files.parse_text(text, "w.yaml"))
    if "space" in doc["search"] and "sampler" not in doc["search"]:
        doc["search"]["sampler"] = "grid"
    with pytest.raises(WorkloadError) as err:
        MFBranin.check(wl.from_mapping(doc, "w.yaml"))
    assert needle in str(err.value)


def branin_table(path: Path, workload: wl.Workload, grid: int = 6) -> Path:
    """A table of mf-branin's answers over a grid (what a recorded run would hold)."""
    rows = []
    n = 0
    for i in range(grid):
        for j in range(grid):
            x0, x1 = -5 + 15 * i / (grid - 1), 15 * j / (grid - 1)
            c = MFBranin.zero_cost(workload, {"x0": x0, "x1": x1})
            rows += [f"b,42,{n},complete,{e},{c.values[e]},{c.times_ns[e] / 1e9},"
                     f"{c.energies_j[e]},{c.cpu_s[e]},0,,{x0},{x1}" for e in range(c.epochs)]
            n += 1
    path.write_text("\n".join([HEADER.replace("param.x", "param.x0,param.x1"), *rows]) + "\n")
    return path


def test_a_surrogate_answers_unrecorded_configurations_and_reports_its_quality(tmp_path):
    text = BRANIN.replace("sut: {name: simulated}", "sut: {name: simulated, options: "
                          "{table: b.csv, surrogate: random-forest, sampler_time: 0}}")
    text = text.replace("pruner: median", "pruner: none").replace("trials: 40", "trials: 12")
    w = load(tmp_path, text)
    branin_table(tmp_path / "b.csv", w, grid=8)
    result = run(w)
    sim = result.sut["simulation"]
    assert sim["answers"] == {"surrogate": 12}  # a continuous space: never on the grid
    held = sim["surrogate"]["holdout"]
    assert held["configurations"] == 13 and held["rows"] == 52
    # held-out configurations (seeded split): the runtime model depends on x0 alone and is
    # learnt well; Branin's value, with its three basins, less so
    assert held["time_s"]["r2"] > 0.9 and held["energy_j"]["r2"] > 0.9
    assert 0.7 < held["value"]["r2"] < held["time_s"]["r2"]
    assert "RandomForestRegressor" in sim["surrogate"]["model"]
    assert all(t.state == "complete" and len(t.intermediate) == 4 for t in result.trials)
    without = load(tmp_path, text.replace(", surrogate: random-forest", ""))
    with pytest.raises(WorkloadError, match=r"search.space.x0: expected a list of values"):
        registry().check(without)


def test_the_virtual_timeline_charges_idle_slots_and_epoch_power():
    """Two slots at 1 W idle each. A phase: 2 s, 6 J. Then one trial on slot 0 from 3 to
    5 s (4 J over 2 s, then an instant epoch of 1 J at 5 s) while slot 1 stays idle, in a
    window ending at 6 s: slot 1 idle 4 s = 4 J, slot 0 idle 1 + 1 s = 2 J, the trial 5 J:
    11 J. From 3 to 4 s: 2 W + 1 W; from 5 to 6 s, after the instant: 2 J."""
    from pytest_basht.records import Span, TrialRecord
    from pytest_basht.simulation.energy import VirtualMeter

    meter = VirtualMeter(source="rapl", measured=True, idle_measured=True, idle_w_per_slot=1.0,
                         max_w_per_slot=5.0, slots=2)
    meter.advance(2 * 10**9, 6.0, 1.0)
    assert meter.clock() == (2 * 10**9, 1.0)
    spans = [Span("trial.train", 3 * 10**9, 5 * 10**9, "", "", 2.0, 0, 0, 0, 4.0),
             Span("trial.validate", 5 * 10**9, 5 * 10**9, "", "", 0.5, 0, 0, 1, 1.0)]
    trial = TrialRecord(0, {}, "complete", 1.0, 0, 3 * 10**9, 5 * 10**9, [1.0], spans, 2.5, 5.0)
    meter.trials_window(6 * 10**9, [trial])
    assert meter.energy_between(2 * 10**9, 6 * 10**9) == pytest.approx(11.0)
    assert meter.energy_between(3 * 10**9, 4 * 10**9) == pytest.approx(2 + 1)
    assert meter.energy_between(4 * 10**9, 5 * 10**9 + 1) == pytest.approx(3 + 1, rel=1e-6)
    assert meter.energy_between(5 * 10**9 + 1, 6 * 10**9) == pytest.approx(2, rel=1e-6)
    assert meter.energy_between(0, 6 * 10**9) == pytest.approx(17.0)
    assert meter.clock() == (6 * 10**9, pytest.approx(3.5))
    trace = meter.trace([], [trial], 2)
    assert trace.source == "simulated:rapl" and trace.idle_power_w == 2.0
    assert trace.max_power_w == 10.0 and trace.timeline["t_ns"][0] <= 3 * 10**9


def test_a_replay_that_fails_keeps_its_trials_in_the_record(tmp_path):
    rows = [f"r,42,0,complete,{e},0.5,1,1,0,0,,0" for e in range(2)]
    rows += ["r,42,1,pruned,0,0.4,1,1,0,0,,1"]
    (tmp_path / "short.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    w = load(tmp_path, "model: {name: recorded}\n"
                       "search: {sampler: ordered, trials: 2, space: {x: [0, 1]}}\n"
                       "training: {epochs: 2}\nworkers: {count: 1}\n"
                       "sut: {name: simulated, options: {table: short.csv}}\n")
    reg = registry()
    monitor = EnergyMonitor(EstimateMeter.from_workload(w))
    deployments = Deployments(monitor, reg)
    results: list[RunResult] = []
    with pytest.raises(MissingConfiguration):
        TrialRunner(w, deployments, on_result=results.append).run()
    deployments.close()
    (result,) = results
    assert result.status == "error" and "MissingConfiguration" in result.error
    assert [(t.params["x"], t.state) for t in result.trials] == [(0, "complete")]
    assert result.energy.source == "simulated:estimate:ccf-linear"
    assert result.metrics is not None and not result.metrics.provisional


def test_budgets_leave_zero_cost_replays_as_written(tmp_path):
    """Smoke shrinks real training; a replay costs nothing and keeps its recorded epochs."""
    from pytest_basht.options import BashtOptions
    from pytest_basht.scenarios import ScenarioSpec
    from pytest_basht.session import BashtSession

    root = Path(__file__).parents[1]
    options = BashtOptions(None, tmp_path, None, None, None, None, budget="smoke")
    session = BashtSession(options, root)
    real = session.resolver.resolve(ScenarioSpec(workload="workloads/s-pru.yaml"), {})
    replay = session.resolver.resolve(ScenarioSpec(workload="workloads/s-pru-simulated.yaml"),
                                      {})
    assert real.training.epochs == 3
    assert replay.training.epochs == wl.load(root / "workloads/s-pru-simulated.yaml"
                                             ).training.epochs > 3

"""The BSO's state in the history store, and the zeus-bso sampler and pruner in a study:
decisions logged, costs observed, attempts stopped early, jobs that refuse another setup;
on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import time

import optuna
import psycopg
import pytest
from postgres import postgres_server  # noqa: F401  (the fixture)

from pytest_basht import workload as wl
from pytest_basht import workload_files
from pytest_basht.zeus import bso, config
from pytest_basht.zeus.sampler import ZeusPruner, store_for, zeus_pruner, zeus_sampler
from pytest_basht.zeus.store import BsoStore, JobMismatch, Outcome

SIZES = [32, 64, 128]


def job_workload(store: str, **changes: object) -> wl.Workload:
    data = {
        "name": "nightly",
        "training": {"epochs": 4, "batch_size": 64, "stop_at_target": True},
        "search": {"sampler": "zeus-bso", "pruner": "zeus-bso",
                   "sampler_options": {"job": "nightly", "store": store},
                   "space": {"batch_size": SIZES}},
        "goal": {"target": 0.9},
        "workers": {"count": 1, "cpu": 1, "memory_mb": 1024},
        "energy": {"max_power_w": 10.0},
    }
    return wl.from_mapping(workload_files.apply_overrides(data, changes), "w.yaml")


def recurrence_study(w: wl.Workload, seed: int = 1) -> tuple[optuna.Study, ZeusPruner]:
    """One recurrence: a fresh study with the zeus-bso sampler and pruner (as a SUT builds)."""
    pruner = zeus_pruner(w)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=zeus_sampler(w, seed),
                                pruner=pruner)
    return study, pruner


def attempt(study: optuna.Study, pruner: ZeusPruner,
            epochs: list[tuple[float, float, float]]) -> tuple[int, str]:
    """Train one attempt: per epoch (value, seconds so far, joules so far), as a SUT feeds
    them; returns the batch size and how it ended."""
    trial = study.ask()
    bs = trial.suggest_categorical("batch_size", SIZES)
    for epoch, (value, seconds, joules) in enumerate(epochs):
        pruner.trial_usage(study.study_name, trial.number, epoch, seconds, joules)
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return bs, "pruned"
        if value >= 0.9:
            break
    study.tell(trial, value)
    return bs, "complete"


def test_attempts_are_decided_observed_and_stopped_early(tmp_path):
    w = job_workload(str(tmp_path / "bso.sqlite"))
    # recurrence 1 trains the default batch size; it reaches the target after 2 s, 20 J:
    # cost 0.5·20 + 0.5·10 W·2 s = 20
    study, pruner = recurrence_study(w)
    assert attempt(study, pruner, [(0.8, 1.0, 10.0), (0.95, 2.0, 20.0)]) == (64, "complete")
    # recurrence 2 walks down to 32; early stop above 2 × 20 = 40. Epoch 0 costs 10; epoch 1
    # (5 s, 60 J) costs 30 + 25 = 55 > 40: stopped, and the walk turns up to 128
    study, pruner = recurrence_study(w)
    assert attempt(study, pruner, [(0.7, 1.0, 10.0), (0.8, 5.0, 60.0), (0.95, 6.0, 70.0)]) \
        == (32, "pruned")
    assert attempt(study, pruner, [(0.92, 1.0, 4.0)]) == (128, "complete")
    store = store_for(str(tmp_path / "bso.sqlite"))
    rows = store.attempts("nightly")
    assert [(a["recurrence"], a["batch_size"], a["stage"], a["state"], a["converged"],
             a["early_stopped"]) for a in rows] == [
        (1, 64, "pruning round 1", "complete", True, False),
        (2, 32, "pruning round 1", "pruned", False, True),
        (2, 128, "pruning round 1", "complete", True, False)]
    assert [a["cost"] for a in rows] == pytest.approx([20.0, 55.0, 0.5 * 4 + 0.5 * 10])
    assert [a["threshold"] for a in rows] == [None, 40.0, 40.0]
    assert (rows[1]["epochs"], rows[1]["time_s"], rows[1]["energy_j"]) == (2, 5.0, 60.0)
    snapshot = store.job("nightly")["snapshot"]
    assert snapshot["stage"] == "pruning round 2" and snapshot["best_cost"] == 7.0
    assert snapshot["pruning"]["next"] == 128  # round 2 starts at round 1's cheapest


def test_without_a_feed_the_pruner_meters_the_training_process(tmp_path):
    w = job_workload(str(tmp_path / "bso.sqlite"))
    study, _ = recurrence_study(w)
    trial = study.ask()
    trial.suggest_categorical("batch_size", SIZES)
    t0, c0 = time.monotonic(), time.process_time()
    while time.process_time() - c0 < 0.2:  # an epoch's worth of CPU work
        sum(i * i for i in range(10_000))
    trial.report(0.95, 0)
    assert not trial.should_prune()
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    study.tell(trial, 0.95)
    (row,) = store_for(str(tmp_path / "bso.sqlite")).attempts("nightly")
    idle_w = 1 * 0.74 + 1.0 * 0.392  # one slot: 1 vCPU idle, 1 GB of memory
    busy_w = 3.5 - 0.74
    assert 0.2 <= row["time_s"] <= wall + 0.05
    assert row["energy_j"] == pytest.approx(idle_w * row["time_s"] + busy_w * cpu, rel=0.2)
    assert row["cost"] == pytest.approx(0.5 * row["energy_j"] + 0.5 * 10 * row["time_s"])


def test_a_job_refuses_another_setup_and_can_be_reset(tmp_path):
    where = str(tmp_path / "bso.sqlite")
    study, pruner = recurrence_study(job_workload(where))
    attempt(study, pruner, [(0.95, 1.0, 10.0)])
    other = job_workload(where, **{"energy.zeus_eta": 0.9})
    study, _ = recurrence_study(other)
    with pytest.raises(JobMismatch, match=r"eta 0\.5 then, 0\.9 now.*basht bso reset nightly"):
        study.ask().suggest_categorical("batch_size", SIZES)
    # knobs may change between recurrences: β, window, prior
    tuned = job_workload(where, **{"search.sampler_options": {"job": "nightly", "store": where,
                                                             "beta": 3.0}})
    study, pruner = recurrence_study(tuned)
    assert attempt(study, pruner, [(0.95, 1.0, 10.0)])[0] == 32
    store = BsoStore(where)
    assert store.job("nightly")["knobs"]["beta"] == 3.0
    assert [j["job"] for j in store.jobs()] == ["nightly"]
    assert store.reset("nightly") == 2 and store.jobs() == [] and store.reset("nightly") == 0
    store.close()


def test_an_attempt_that_never_reported_back_is_left_out(tmp_path):
    where = str(tmp_path / "bso.sqlite")
    w = job_workload(where)
    study, _ = recurrence_study(w)
    study.ask().suggest_categorical("batch_size", SIZES)  # decided; its process "dies"
    study, pruner = recurrence_study(w)
    assert attempt(study, pruner, [(0.95, 1.0, 10.0)]) == (64, "complete")  # decided again
    rows = store_for(where).attempts("nightly")
    assert [(a["seq"], a["recurrence"], a["state"]) for a in rows] == [
        (1, 1, None), (2, 2, "complete")]
    assert [o.batch_size for o in store_for(where).observations("nightly")] == [64]


def test_store_replays_the_decisions_it_logged(tmp_path):
    """The log is the state: a decision made from what the store returns equals one made
    from the same observations by hand."""
    job = config.parse(job_workload(str(tmp_path / "x.sqlite")))
    spec = job.spec
    store = BsoStore(str(tmp_path / "x.sqlite"))
    outcomes = {64: (5.0, True), 32: (9.0, True), 128: (3.0, True)}
    for _ in range(5):
        started = store.begin(job, lambda obs, k, seq: bso.decide(spec, obs, k, [0.0] * 3, 0.0),
                              recurrence=None, origin="test")
        cost, ok = outcomes[started.decision.batch_size]
        store.finish(job, started, Outcome("complete", ok, False, cost, cost, 1.0, 1, 0.95))
    by_hand: list[bso.Observation] = []
    for k in range(1, 6):
        d = bso.decide(spec, by_hand, k, [0.0] * 3, 0.0)
        by_hand.append(bso.Observation(k, d.batch_size, *outcomes[d.batch_size]))
    assert store.observations("nightly") == by_hand
    store.close()


def test_bso_state_on_postgresql(postgres_server):  # noqa: F811
    url = postgres_server.create_database("bso_unit")
    w = job_workload(url)
    study, pruner = recurrence_study(w)
    assert attempt(study, pruner, [(0.8, 1.0, 10.0), (0.95, 2.0, 20.0)]) == (64, "complete")
    study, pruner = recurrence_study(w)  # the next recurrence continues from PostgreSQL
    assert attempt(study, pruner, [(0.95, 1.0, 10.0)]) == (32, "complete")
    with BsoStore(url) as store:  # a second connection sees the same job
        assert [o.batch_size for o in store.observations("nightly")] == [64, 32]
        assert store.job("nightly")["snapshot"]["stage"] == "pruning round 1"
    with psycopg.connect(postgres_server.dsn("bso_unit")) as conn:
        rows = conn.execute("SELECT j.job, a.seq, a.batch_size, a.converged, a.cost "
                            "FROM basht_bso_jobs j JOIN basht_bso_attempts a "
                            "ON a.job_pk = j.id ORDER BY a.seq").fetchall()
    assert rows == [("nightly", 1, 64, True, 20.0), ("nightly", 2, 32, True, 10.0)]

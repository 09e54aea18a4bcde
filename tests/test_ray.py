"""The ray SUT: options, the pruner as Tune's scheduler, and end to end on a local Ray (one
node, 2 CPUs) and on an existing Ray cluster started beside the test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import pytest
from fake_trainable import CONFTEST, workload

from pytest_basht import wiring, workload_files
from pytest_basht import workload as wl
from pytest_basht.errors import WorkloadError
from pytest_basht.metrics import TABLE2_KEYS, finite
from pytest_basht.report import json as report_json
from pytest_basht.sut.ray import RayOptions, RaySUT, build_scheduler

tune = pytest.importorskip("ray.tune", reason="the ray extra (pip install 'pytest-basht[ray]')")


def _workload(text: str) -> wl.Workload:
    return wl.from_mapping(workload_files.parse_text(text, "w.yaml"), "w.yaml")


# --------------------------------------------------------------------------- options


def test_options_and_their_errors():
    assert RayOptions.parse(_workload("sut: {name: ray}")) == RayOptions()
    opts = RayOptions.parse(_workload("sut: {name: ray, options: {address: 'ray://h:10001', "
                                      "storage_path: /nfs/tune}}"))
    assert (opts.address, opts.storage_path) == ("ray://h:10001", "/nfs/tune")
    # the optuna SUT's option, in a workload that varies sut.name: not Ray's
    assert RayOptions.parse(_workload("sut: {name: ray, options: {storage: 'sqlite:///x'}}")
                            ) == RayOptions()
    for sut, key in [("{name: ray, options: {adress: auto}}", "sut.options.adress"),
                     ("{name: ray, options: {address: 7}}", "sut.options.address"),
                     ("{name: ray, options: {object_store_mb: 10}}",
                      "sut.options.object_store_mb")]:
        with pytest.raises(WorkloadError) as err:
            RayOptions.parse(_workload(f"sut: {sut}"))
        assert err.value.key == key


@pytest.mark.parametrize("pruner,options,kind,attrs", [
    ("none", "{}", "FIFOScheduler", {}),
    ("median", "{n_startup_trials: 2, n_warmup_steps: 1}", "MedianStoppingRule",
     {"_min_samples_required": 2, "_grace_period": 2}),
    ("successive-halving", "{min_resource: 2, reduction_factor: 3}", "AsyncHyperBandScheduler",
     {"_reduction_factor": 3, "_max_t": 6}),
    ("hyperband", "{}", "AsyncHyperBandScheduler", {"_max_t": 6}),
])
def test_pruners_map_to_tune_schedulers(pruner, options, kind, attrs):
    w = _workload(f"training: {{epochs: 6}}\nsearch: {{pruner: {pruner}, "
                  f"pruner_options: {options}}}\nsut: {{name: ray}}")
    scheduler = build_scheduler(w)
    assert type(scheduler).__name__ == kind
    for name, value in attrs.items():
        assert getattr(scheduler, name) == value
    if pruner == "hyperband":
        assert len(scheduler._brackets) == 2  # log3(6 / 1) + 1, as Optuna's HyperbandPruner


def test_what_ray_cannot_run_is_refused_by_name():
    registry = wiring.registry()
    cases = [("search: {pruner: median, pruner_options: {interval_steps: 2}}",
              "search.pruner_options.interval_steps"),
             ("search: {fusion: 2}", "search.fusion")]
    for text, key in cases:
        with pytest.raises(WorkloadError) as err:
            RaySUT.check(_workload(text + "\nsut: {name: ray}"), registry)
        assert err.value.key == key
    registry.pruners["patient"] = registry.pruners["median"]
    with pytest.raises(WorkloadError) as err:
        RaySUT.check(_workload("search: {pruner: patient}\nsut: {name: ray}"), registry)
    assert err.value.key == "search.pruner" and "maps to a Tune scheduler" in str(err.value)


def test_without_ray_installed_choosing_it_is_a_usage_error(pytester):
    pytester.makeconftest("import sys\nsys.modules['ray'] = None  # as if not installed\n")
    pytester.makefile(".yaml", w="sut: {name: ray}\n")
    pytester.makepyfile("def test_s(trial_runner):\n    trial_runner.run()\n")
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml")
    assert result.ret == 4
    err = result.stderr.str()
    assert "w.yaml: sut.name: expected an installed SUT: 'ray' needs the optional extra ray" in err
    assert "pip install 'pytest-basht[ray]'" in err and "Traceback" not in err


# --------------------------------------------------------------------------- end to end

BOTH = """
from pytest_basht import vary

@vary("sut.name", ["optuna", "ray"])
def test_grid(trial_runner):
    run = trial_runner.run()
    assert run.best is not None and run.test_score is not None
"""


def latest(pytester) -> dict:
    report = report_json.load(pytester.path / "reports" / "latest")
    jsonschema.validate(report, report_json.schema())
    return report


@pytest.mark.slow
def test_a_local_ray_runs_the_grid_and_reports_the_optuna_metrics(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1, 2, 3, 4, 5, 6], workers=2, epochs=3))
    pytester.makepyfile(BOTH)
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                           "--basht-history", "off")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    optuna_sc, ray_sc = latest(pytester)["scenarios"]
    assert ray_sc["workload"]["sut"]["name"] == "ray"
    assert set(ray_sc["metrics"]) == set(optuna_sc["metrics"])
    assert all(finite(ray_sc["metrics"][k]) for k in TABLE2_KEYS)
    trials = ray_sc["trials"]
    assert sorted(t["params"]["x"] for t in trials) == [1, 2, 3, 4, 5, 6]
    assert {t["worker"] for t in trials} <= {0, 1} and all(t["state"] == "complete"
                                                            for t in trials)
    for t in trials:
        phases = [(s["phase"], s["epoch"]) for s in t["spans"]]
        assert [p for p in phases if p[0] != "setup"] == [
            ("trial.load", None), ("trial.train", 0), ("trial.validate", 0), ("trial.train", 1),
            ("trial.validate", 1), ("trial.train", 2), ("trial.validate", 2)]
        assert len(t["intermediate"]) == 3 and t["value"] == t["intermediate"][-1]
        assert t["energy_j"] > 0 and t["cpu_s"] > 0
        assert all(s["trial"] == t["number"] and s["worker"] == t["worker"] for s in t["spans"])
    # each Ray worker process set the trainable up once, inside the trial that paid for it
    setups = [s for t in trials for s in t["spans"] if s["phase"] == "setup"]
    assert 1 <= len(setups) <= len(trials)
    ray = ray_sc["sut"]["ray"]
    assert ray["started"] is True and ray["cpus"] == 2.0 and ray["nodes"] == 1
    assert ray["scheduler"] == "FIFOScheduler" and ray["searcher"] == "OptunaSearch"
    deploy = next(s for s in ray_sc["spans"] if s["phase"] == "deploy")
    undeploy = next(s for s in ray_sc["spans"] if s["phase"] == "undeploy")
    assert deploy["end_ns"] - deploy["start_ns"] > 5e8, "ray.init starts a cluster"
    assert undeploy["energy_j"] > 0 and deploy["energy_j"] > 0
    assert ray_sc["test_score"] == pytest.approx(1.0)  # x = 3, from its Tune checkpoint
    assert "fleet" not in ray_sc["energy"]["meter"], "a local Ray is under the live meter"


@pytest.mark.slow
def test_ray_prunes_with_asha_and_records_failed_trials(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload(
        [1, 2, 3, 4, 5, 30, 40, -1], workers=2, epochs=4,
        extra="search: {space: {x: [1, 2, 3, 4, 5, 30, 40, -1]}, pruner: successive-halving,"
              " pruner_options: {min_resource: 1, reduction_factor: 2}}\nsut: {name: ray}\n"))
    pytester.makepyfile("def test_s(trial_runner):\n    assert trial_runner.run().trials\n")
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                           "--basht-history", "off")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    sc = latest(pytester)["scenarios"][0]
    by_x = {t["params"]["x"]: t for t in sc["trials"]}
    assert set(by_x) == {1, 2, 3, 4, 5, 30, 40, -1}
    failed = by_x[-1]
    assert failed["state"] == "failed" and "boom at x=-1" in failed["error"]
    assert 'raise RuntimeError("boom at x=-1")' in failed["traceback"]  # the trial's own
    assert failed["value"] is None and failed["spans"], "its load span came back"
    pruned = [t for t in sc["trials"] if t["state"] == "pruned"]
    assert pruned, "ASHA stopped some trial"
    for t in pruned:
        assert 1 <= len(t["intermediate"]) < 4 and t["value"] == t["intermediate"][-1]
    assert sc["metrics"]["pruned"] == len(pruned) and sc["metrics"]["failed"] == 1
    assert sc["metrics"]["waste"]["pruned"]["trials"] == len(pruned)
    assert sc["sut"]["ray"]["scheduler"] == "AsyncHyperBandScheduler"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_cluster(tmp_path):
    """A Ray head started beside the test (`ray start --head --block`), with its own
    authentication token; stopped with its whole process group."""
    ray_bin = Path(sys.executable).parent / "ray"
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    log = tmp_path / "head.log"
    with open(log, "wb") as out:
        head = subprocess.Popen([str(ray_bin), "start", "--head", "--port", str(port),
                                 "--num-cpus", "2", "--include-dashboard=false",
                                 "--disable-usage-stats", "--block"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in log.read_bytes():
            assert head.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(head.pid, signal.SIGKILL)  # what SIGTERM left of the group
        head.wait()


@pytest.mark.slow
def test_an_existing_ray_cluster_meters_each_trial_on_its_node(pytester, ray_cluster,
                                                               monkeypatch):
    address, env = ray_cluster
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        monkeypatch.setenv(key, env[key])
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload(
        [1, 2, 3, 4], workers=2, epochs=2,
        extra=f"sut: {{name: ray, options: {{address: '{address}'}}}}\n"))
    pytester.makepyfile("def test_s(trial_runner):\n    assert trial_runner.run().trials\n")
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                           "--basht-history", "off")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    sc = latest(pytester)["scenarios"][0]
    assert sc["sut"]["ray"]["started"] is False and sc["sut"]["ray"]["address"] == address
    assert sorted(t["params"]["x"] for t in sc["trials"]) == [1, 2, 3, 4]
    fleet = sc["energy"]["meter"]["fleet"]
    assert fleet["remote_slots"] == 2 and fleet["remote"], "trials sent their meters' timelines"
    assert all(r["energy_j"] > 0 and r["source"].startswith("estimate:")
               for r in fleet["remote"])
    for t in sc["trials"]:  # energies from the trial's own meter, spans with theirs
        assert t["energy_j"] > 0 and all(s["energy_j"] is not None for s in t["spans"])
    remote_j = sum(r["energy_j"] for r in fleet["remote"])
    assert sc["metrics"]["energy_j"] > remote_j > 0
    assert 0 <= sc["metrics"]["wr_pct"] <= 100
    assert sc["test_score"] is not None


@pytest.mark.slow
def test_a_time_budget_closes_a_ray_study(pytester):
    """``budget: {time_s: 12}``: Tune's searcher answers FINISHED at the first suggestion
    Tune asks for once one more trial (forecast: the mean so far, Ray's start of its trial
    actors included) would pass it; the trials running then finish. Tune asks only when a
    slot frees, so the study may close a little after the limit, never before it is due."""
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=(
        "name: fake\nmodel: {name: quadratic}\ntraining: {epochs: 2}\n"
        "search: {sampler: random, trials: 400, space: {x: [1, 2, 3, 4], sleep: [0.2]}}\n"
        "goal: {target: 0.5}\nworkers: {count: 2, cpu: 1, memory_mb: 1500}\n"
        "budget: {time_s: 12}\nsut: {name: ray}\n"))
    pytester.makepyfile("def test_s(trial_runner):\n    assert trial_runner.run().trials\n")
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                           "--basht-history", "off")
    assert result.ret == 0, result.stdout.str()
    sc = latest(pytester)["scenarios"][0]
    study = sc["sut"]["study"]
    budget = study["budget"]
    assert study["stopped_by"] == "budget.time_s"
    closed = budget["stopped_at"]["time_s"]
    assert closed + budget["forecast"]["time_s"] > 12, "one more would not have fitted"
    longest = max((t["end_ns"] - t["start_ns"]) / 1e9 for t in sc["trials"])
    assert budget["spent"]["time_s"] <= closed + longest + 1.0, "Tune's loop turns each second"
    # the first wave is handed out before any trial ends (nothing to forecast from); on a
    # loaded machine Ray's start of its actors can make that wave the whole study
    assert 2 <= len(sc["trials"]) < 400 and all(t["state"] == "complete"
                                                for t in sc["trials"])

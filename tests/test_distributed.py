"""The optuna SUT across machines: options, the shared store, the fleet's energy, and end to
end on a real PostgreSQL server with `basht worker` processes (one of them SIGKILLed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jsonschema
import optuna
import pytest
from fake_trainable import CONFTEST, compose, workload
from postgres import postgres_server  # noqa: F401  (the fixture)

from pytest_basht import db, workload_files
from pytest_basht import workload as wl
from pytest_basht.errors import OptionError, WorkloadError
from pytest_basht.metrics import TABLE2_KEYS, finite
from pytest_basht.options import _sut as _sut_option
from pytest_basht.report import json as report_json
from pytest_basht.sut import store as store_mod
from pytest_basht.sut.fleet import IdleFill, Series, idle_fill, merge, shift_trial
from pytest_basht.sut.optuna_options import StoreOptions

# --------------------------------------------------------------------------- options


def _options(sut: str, extra: str = "") -> StoreOptions:
    return StoreOptions.parse(wl.from_mapping(workload_files.parse_text(
        compose(f"workers: {{count: 4}}\nsut: {sut}\n", extra), "w.yaml"), "w.yaml"))


def test_options_defaults_and_values():
    plain = _options("{name: optuna}")
    assert plain.storage is None and plain.local_workers == 4
    opts = _options("{name: optuna, options: {storage: 'postgresql://basht@db:5432/b', "
                    "study: r1, local_workers: 1, heartbeat_s: 2, retries: 1}}")
    assert (opts.storage, opts.study, opts.local_workers) == (
        "postgresql://basht@db:5432/b", "r1", 1)
    assert opts.heartbeat == {"heartbeat_s": 2, "grace_s": 6, "retries": 1}
    assert _options("{options: {storage: 'sqlite:///x.db'}}").study == "baseline"
    # the simulated SUT's option, in a workload that varies sut.name: not the journal's
    assert _options("{name: optuna, options: {table: t.csv}}").storage is None


@pytest.mark.parametrize("sut,key,needle", [
    ("{options: {storage: 'postgresql://u:hunter2@db/b'}}", "sut.options.storage",
     "a URL without a password"),
    ("{options: {storage: 'notaurl'}}", "sut.options.storage", "an SQLAlchemy URL"),
    ("{options: {storage: 'nosuchdb://x/y'}}", "sut.options.storage",
     "whose driver is installed"),
    ("{options: {storage: ''}}", "sut.options.storage", "an SQLAlchemy URL"),
    ("{options: {storag: 'sqlite:///x'}}", "sut.options.storag",
     "an option of the optuna SUT (did you mean 'storage'?)"),
    ("{options: {storage: 'sqlite:///x', table: t.csv}}", "sut.options.table",
     "an option of the optuna SUT"),
    ("{options: {local_workers: 1}}", "sut.options.local_workers",
     "sut.options.storage with it"),
    ("{options: {storage: 'sqlite:///x', local_workers: 5}}", "sut.options.local_workers",
     "an integer from 0 to 4"),
    ("{options: {storage: 'sqlite:///x', heartbeat_s: 0}}", "sut.options.heartbeat_s",
     "an integer from 1"),
    ("{options: {storage: 'sqlite:///x', heartbeat_s: 5, grace_s: 5}}", "sut.options.grace_s",
     "an integer from 6"),
    ("{options: {storage: 'sqlite:///x', join_timeout_s: -1}}", "sut.options.join_timeout_s",
     "seconds > 0"),
    ("{options: {storage: 'sqlite:///x', study: ''}}", "sut.options.study", "a name of 1"),
])
def test_bad_options_name_the_key(sut, key, needle):
    with pytest.raises(WorkloadError) as err:
        _options(sut)
    assert err.value.key == key and needle in str(err.value)
    assert "hunter2" not in str(err.value)


def test_fused_trials_need_local_workers():
    with pytest.raises(WorkloadError) as err:
        _options("{options: {storage: 'sqlite:///x', local_workers: 2}}",
                 "search: {fusion: 2}")
    assert err.value.key == "search.fusion" and "local_workers" in str(err.value)
    _options("{options: {storage: 'sqlite:///x'}}", "search: {fusion: 2}")  # all local: fine


def test_storage_password_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(db.PASSWORD_ENV, "s3cret")
    url = db.connect_string("postgresql://basht@db:5432/b")
    assert url == "postgresql+psycopg://basht:s3cret@db:5432/b"
    assert "s3cret" not in db.shown(url)


# --------------------------------------------------------------------------- the store


def test_slots_are_taken_once_and_freed_when_a_worker_is_lost(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    ctl = store_mod.FleetStore(url, "dep")
    ctl.create_schema()
    assert ctl.open(slots=3, local=1, settings={}) == []
    a, b, c = (store_mod.FleetStore(url, "dep") for _ in range(3))
    assert a.join("a" * 32, {}) == 1
    assert b.join("b" * 32, {}) == 2
    assert c.join("c" * 32, {}) is None  # wn = 3, one slot local: two remote slots
    ctl.mark_lost("a" * 32, "silent")
    assert c.join("c" * 32, {}) == 1
    states = {w.id[0]: (w.slot, w.state) for w in ctl.workers()}
    assert states == {"a": (None, "lost"), "b": (2, "joined"), "c": (1, "joined")}
    with pytest.raises(store_mod.StoreError, match="in use by the controller"):
        store_mod.FleetStore(url, "dep").open(slots=1, local=0, settings={})
    ctl.remove()
    assert ctl.deployment_row() is None and ctl.workers() == []
    for s in (ctl, a, b, c):
        s.close()


def test_a_dead_controllers_leftover_is_cleared(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    store = store_mod.FleetStore(url, "dep")
    store.create_schema()
    with store._tx() as conn:
        conn.execute(store_mod.deployments.insert().values(
            name="dep", controller={"host": os.uname().nodename, "pid": int(dead)},
            state="open", slots=1, local=0, settings={}, seq=3, phase="run", scenario=None))
    notes = store.open(slots=2, local=0, settings={"x": 1})
    assert "cleared the leftover deployment 'dep'" in notes[0]
    assert store.deployment_row().settings == {"x": 1}
    # a controller elsewhere: refused while it beats, cleared once it has gone silent
    with store._tx() as conn:
        conn.execute(store_mod.deployments.update().values(
            controller={"host": "elsewhere", "pid": 1}, beat=time.time()))
    with pytest.raises(store_mod.StoreError, match="in use by the controller on elsewhere"):
        store.open(slots=2, local=0, settings={})
    with store._tx() as conn:
        conn.execute(store_mod.deployments.update().values(beat=time.time() - 1000))
    assert "elsewhere pid 1" in store.open(slots=2, local=0, settings={})[0]
    store.close()


def test_workers_leave_a_controller_that_stopped_beating(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    store = store_mod.FleetStore(url, "dep")
    store.create_schema()
    store.open(slots=1, local=0, settings={
        "workload": {"model": {"name": "quadratic"}, "search": {"space": {"x": [1]}}},
        "source": "w.yaml", "heartbeat": {"heartbeat_s": 1, "grace_s": 3, "retries": 0},
        "artifacts": "database", "poll_s": 0.2})
    worker = subprocess.Popen([sys.executable, "-m", "pytest_basht.cli", "worker", "--storage",
                               url, "--study", "dep", "--wait", "60", "--plugin",
                               str(tmp_path / "conftest.py")], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not [w for w in store.workers() if w.state == "idle"]:
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        with store._tx() as conn:  # the controller's last beat, long ago
            conn.execute(store_mod.deployments.update().values(beat=time.time() - 1000))
        assert worker.wait(timeout=60) == 6
        assert "the controller stopped beating" in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
        store.close()


# --------------------------------------------------------------------------- the fleet's energy


def test_remote_timelines_add_to_the_live_one_on_its_clock():
    local = {"t_ns": [0, 10_000_000_000], "joules": [0.0, 100.0], "cpu_s": [0.0, 5.0],
             "machine_cpu_s": [0.0, 9.0]}
    remote = Series("w", "estimate:x", False, 1.0, 4.0)
    # the remote host's monotonic clock runs 1000 s behind ours: its 1002 s is our 2 s
    remote.extend({"meta": {"offset_ns": 1_000_000_000_000}, "t_ns": [1_000_000_000,
                                                                      3_000_000_000],
                   "joules": [7.0, 27.0], "cpu_s": [1.0, 3.0]}, local_offset_ns=0)
    assert remote.t_ns == [1_001_000_000_000, 1_003_000_000_000]
    remote = Series("w", "estimate:x", False, 1.0, 4.0)
    remote.extend({"meta": {"offset_ns": 0}, "t_ns": [2_000_000_000, 6_000_000_000],
                   "joules": [7.0, 27.0], "cpu_s": [1.0, 3.0]}, local_offset_ns=0)
    merged = merge(local, [remote])
    assert merged["t_ns"] == [0, 2_000_000_000, 6_000_000_000, 10_000_000_000]
    assert merged["joules"] == pytest.approx([0.0, 20.0, 80.0, 120.0])
    assert merged["joules.remote"] == pytest.approx([0.0, 0.0, 20.0, 20.0])
    assert merged["cpu_s"] == pytest.approx([0.0, 1.0, 5.0, 7.0])
    assert remote.between(0, 4_000_000_000) == pytest.approx(10.0)


def test_unoccupied_remote_slots_are_charged_idle_in_the_trials_window():
    local = {"t_ns": [0, 10_000_000_000], "joules": [0.0, 10.0], "cpu_s": [0.0, 1.0]}
    worker = Series("w", "estimate:x", False, 2.0, 4.0)  # one of two remote slots, 4-8 s
    worker.extend({"meta": {"offset_ns": 0}, "t_ns": [4_000_000_000, 8_000_000_000],
                   "joules": [0.0, 12.0], "cpu_s": [0.0, 1.0]}, local_offset_ns=0)
    fill = IdleFill(2_000_000_000, 9_000_000_000, slots=2, power_w=2.0)
    merged = merge(local, [worker], fill)
    # 2-4 s: two empty slots; 4-8 s: one; 8-9 s: two -> (2·2 + 4·1 + 1·2) s × 2 W = 20 J
    assert merged["joules.remote_idle"][-1] == pytest.approx(20.0)
    assert merged["joules"][-1] == pytest.approx(10.0 + 12.0 + 20.0)
    assert merged["joules.remote"][-1] == pytest.approx(12.0)
    assert idle_fill([0, 1_000_000_000], [], fill) == [0.0, 0.0]  # outside the window


def test_the_sut_option_replaces_the_workloads_sut():
    parsed = _sut_option("--basht-sut", "optuna:storage=postgresql://basht@db:5432/b, "
                         "local_workers=0,heartbeat_s=2")
    assert parsed == {"name": "optuna", "options": {
        "storage": "postgresql://basht@db:5432/b", "local_workers": 0, "heartbeat_s": 2}}
    assert _sut_option("--basht-sut", "ray") == {"name": "ray", "options": {}}
    for bad in ("", "a b", "optuna:storage", "optuna:=x"):
        with pytest.raises(OptionError):
            _sut_option("--basht-sut", bad)


def test_a_remote_trial_moves_onto_the_local_clock_and_its_slot():
    record = {"number": 3, "params": {"x": 1}, "state": "complete", "value": 0.5,
              "worker": 0, "start_ns": 100, "end_ns": 200, "cpu_s": 0.1, "energy_j": 2.0,
              "spans": [{"phase": "trial.train", "start_ns": 120, "end_ns": 180,
                         "worker": 0, "trial": 3, "energy_j": 1.5}]}
    trial = shift_trial(record, 1000, worker=2)
    assert (trial.start_ns, trial.end_ns, trial.worker, trial.energy_j) == (1100, 1200, 2, 2.0)
    assert (trial.spans[0].start_ns, trial.spans[0].worker) == (1120, 2)


# --------------------------------------------------------------------------- end to end

SCENARIO = """
def test_scenario(trial_runner):
    run = trial_runner.run()
    assert run.trials and run.best is not None
"""


def start_workers(pytester, url: str, study: str, count: int, *plugins: str
                  ) -> list[tuple[subprocess.Popen, Path]]:
    out = []
    for i in range(count):
        log = pytester.path / f"worker-{i}.log"
        cmd = [sys.executable, "-m", "pytest_basht.cli", "worker", "--storage", url,
               "--study", study, "--wait", "300", "--threads", "1"]
        for plugin in plugins:
            cmd += ["--plugin", plugin]
        with open(log, "wb") as fh:
            out.append((subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                         cwd=pytester.path), log))
    return out


def stop_workers(workers: list[tuple[subprocess.Popen, Path]]) -> list[int | None]:
    codes = []
    for proc, _ in workers:
        try:
            codes.append(proc.wait(timeout=60))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            codes.append(None)
    return codes


def logs(workers: list[tuple[subprocess.Popen, Path]]) -> str:
    return "\n".join(log.read_text(errors="replace") for _, log in workers)


def latest(pytester) -> dict:
    report = report_json.load(pytester.path / "reports" / "latest")
    jsonschema.validate(report, report_json.schema())
    return report


def assert_clean(url: str, study: str) -> None:
    """Undeploy left nothing behind: no deployment rows, no studies."""
    store = store_mod.FleetStore(url, study)
    try:
        assert store.deployment_row() is None and store.workers() == []
    finally:
        store.close()
    storage = optuna.storages.RDBStorage(db.connect_string(url))
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == []


@pytest.mark.slow
def test_baseline_grid_on_postgresql_with_two_remote_workers(postgres_server, pytester):  # noqa: F811
    url = postgres_server.create_database("baseline")
    pytester.makefile(".yaml", w=textwrap.dedent(f"""\
        extends: {Path(__file__).parents[1] / 'workloads' / 'baseline.yaml'}
        name: baseline-pg
        dataset: {{samples: 600}}
        training: {{epochs: 2}}
        goal: {{target: 0.5}}
        workers: {{count: 2, cpu: 1, memory_mb: 3000}}
        sut:
          name: optuna
          options: {{storage: "{url}", study: pg-baseline, local_workers: 0,
                    heartbeat_s: 2, join_timeout_s: 240}}
        """))
    pytester.makepyfile(SCENARIO)
    workers = start_workers(pytester, url, "pg-baseline", 2)
    try:
        result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                               "--basht-history", "off")
    finally:
        codes = stop_workers(workers)
    assert result.ret == 0, result.stdout.str() + logs(workers)
    assert codes == [0, 0], logs(workers)
    sc = latest(pytester)["scenarios"][0]
    trials = sc["trials"]
    grid = {tuple(sorted(t["params"].items())) for t in trials}
    assert len(grid) == 16, "every grid point was tried"
    assert {t["worker"] for t in trials} == {0, 1}, "both remote slots ran trials"
    assert all(t["state"] == "complete" for t in trials)
    repeats = len(trials) - 16
    assert sc["metrics"]["duplicate"] == repeats == sc["metrics"]["waste"]["duplicate"]["trials"]
    for t in trials:  # spans, epochs and energies from the workers' own meters
        phases = [s["phase"] for s in t["spans"]]
        assert phases.count("trial.train") == 2 and phases.count("trial.validate") == 2
        assert t["energy_j"] > 0 and all(s["energy_j"] is not None for s in t["spans"])
        assert sc["spans"][0]["start_ns"] < t["start_ns"] < t["end_ns"]
    assert sc["test_score"] is not None and sc["test_score"] > 0.5, "model came via PostgreSQL"
    dist = sc["sut"]["distributed"]
    assert dist["local_workers"] == 0 and len(dist["remote_workers"]) == 2
    assert {w["trials"] for w in dist["remote_workers"]} != {0}
    fleet = sc["energy"]["meter"]["fleet"]
    assert len(fleet["remote"]) == 2 and all(r["energy_j"] > 0 for r in fleet["remote"])
    remote_j = sum(r["energy_j"] for r in fleet["remote"])
    assert sum(t["energy_j"] for t in trials) < remote_j < sc["metrics"]["energy_j"]
    assert all(finite(sc["metrics"][k]) for k in TABLE2_KEYS if k not in ("tta_ms", "eta_j"))
    assert_clean(url, "pg-baseline")


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_a_failed_trial(postgres_server, pytester):  # noqa: F811
    url = postgres_server.create_database("killed")
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload(
        [1, 2, 3, 4, 5, 6], workers=2, epochs=4,
        extra=f"search: {{space: {{x: [1, 2, 3, 4, 5, 6], sleep: [0.4]}}}}\n"
              f"sut: {{name: optuna, options: {{storage: '{url}', study: killed, "
              f"local_workers: 0, heartbeat_s: 1, grace_s: 3, join_timeout_s: 120}}}}\n"))
    pytester.makepyfile(SCENARIO)
    conftest = str(pytester.path / "conftest.py")
    workers = start_workers(pytester, url, "killed", 2, conftest)
    killed: dict[str, object] = {}

    def kill_one_mid_trial() -> None:
        """SIGKILL the worker of the first running trial that has recorded a span."""
        store = store_mod.FleetStore(url, "killed")
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline and not killed:
                time.sleep(0.2)
                pids = {w.id: w.pid for w in _rows(store)}
                for t in _running(url, "killed.1"):
                    start = t.user_attrs.get("basht:start") or {}
                    if start.get("worker") in pids and t.user_attrs.get("basht:spans"):
                        os.kill(pids[start["worker"]], signal.SIGKILL)
                        killed.update(pid=pids[start["worker"]], trial=t.number)
                        return
        finally:
            store.close()

    db.load_driver(db.parse(url))  # load the dialect here, not in two threads at once
    killer = threading.Thread(target=kill_one_mid_trial)
    killer.start()
    try:
        result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                               "--basht-history", "off")
    finally:
        killer.join()
        codes = stop_workers(workers)
    out = result.stdout.str() + logs(workers)
    assert killed, "no trial was caught running"
    assert result.ret == 0, out
    survivor = [c for (p, _), c in zip(workers, codes, strict=True) if p.pid != killed["pid"]]
    assert survivor == [0] and -signal.SIGKILL in codes
    sc = latest(pytester)["scenarios"][0]
    by_number = {t["number"]: t for t in sc["trials"]}
    lost = by_number[killed["trial"]]
    assert lost["state"] == "failed" and "worker lost" in lost["error"]
    assert "Optuna's heartbeat failed the trial" in lost["error"]
    assert lost["spans"], "the spans it recorded before dying are kept"
    assert sc["metrics"]["failed"] >= 1 and sc["metrics"]["waste"]["failed"]["trials"] >= 1
    assert sc["status"] == "complete" and sc["best_trial"] is not None
    done = {t["params"]["x"] for t in sc["trials"] if t["state"] == "complete"}
    assert done | {lost["params"]["x"]} == {1, 2, 3, 4, 5, 6}
    remote = sc["sut"]["distributed"]["remote_workers"]
    assert any(w["lost"] and "no beat" in w["lost"] for w in remote), remote
    assert_clean(url, "killed")


def _rows(store: store_mod.FleetStore) -> list[store_mod.WorkerRow]:
    try:
        return store.workers()
    except Exception:  # the schema is not created yet
        return []


def _running(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        storage = optuna.storages.RDBStorage(db.connect_string(url))
        found = optuna.load_study(study_name=study, storage=storage)
    except Exception:  # not created yet
        return []
    return found.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


@pytest.mark.slow
def test_local_and_remote_workers_share_one_study(postgres_server, pytester):  # noqa: F811
    url = postgres_server.create_database("mixed")
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload(
        [1, 2, 3, 4, 5, 6, 7, 8], workers=2, epochs=2,
        extra=f"sut: {{name: optuna, options: {{storage: '{url}', study: mixed, "
              f"local_workers: 1, heartbeat_s: 1, join_timeout_s: 120}}}}\n"))
    pytester.makepyfile(SCENARIO)
    workers = start_workers(pytester, url, "mixed", 1, str(pytester.path / "conftest.py"))
    try:
        result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                               "--basht-history", "off")
    finally:
        codes = stop_workers(workers)
    assert result.ret == 0, result.stdout.str() + logs(workers)
    assert codes == [0]
    sc = latest(pytester)["scenarios"][0]
    assert {t["params"]["x"] for t in sc["trials"]} == set(range(1, 9))
    assert {t["worker"] for t in sc["trials"]} == {0, 1}, "slot 0 local, slot 1 remote"
    assert all(t["energy_j"] and t["energy_j"] > 0 for t in sc["trials"])
    assert sc["sut"]["distributed"]["remote_workers"][0]["slot"] == 1
    assert sc["energy"]["meter"]["fleet"]["local_slots"] == 1
    assert_clean(url, "mixed")


@pytest.mark.slow
def test_all_local_workers_on_postgresql(postgres_server, pytester):  # noqa: F811
    url = postgres_server.create_database("local")
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload(
        [1, 2, 3, 4], workers=2, epochs=2,
        extra=f"sut: {{name: optuna, options: {{storage: '{url}'}}}}\n"))
    pytester.makepyfile(SCENARIO)
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                           "--basht-history", "off")
    assert result.ret == 0, result.stdout.str()
    sc = latest(pytester)["scenarios"][0]
    assert {t["params"]["x"] for t in sc["trials"]} == {1, 2, 3, 4}
    assert sc["sut"]["distributed"]["study"] == "fake.1"
    assert "fleet" not in sc["energy"]["meter"], "every slot under the live meter"
    assert_clean(url, "fake")


@pytest.mark.slow
def test_basht_sut_moves_a_marked_scenario_onto_postgresql(postgres_server, pytester):  # noqa: F811
    """What running R-Node (its marker names its workload) on another SUT takes."""
    url = postgres_server.create_database("moved")
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1, 2, 3], workers=2, epochs=1))
    pytester.makepyfile("""
        import pytest
        from pytest_basht import vary

        @pytest.mark.basht(workload="w.yaml")
        @vary("workers.count", [1, 2])
        def test_r_node(trial_runner):
            run = trial_runner.run()
            assert {t.worker for t in run.trials} <= set(range(run.workload.workers.count))
    """)
    result = pytester.runpytest_subprocess(
        "--basht-sut", f"optuna:storage={url},study=moved,heartbeat_s=1",
        "--basht-history", "off")
    assert result.ret == 0, result.stdout.str()
    report = latest(pytester)
    assert [sc["sut"]["distributed"]["study"] for sc in report["scenarios"]] == [
        "moved.1", "moved.1"], "one deployment per workers.count"
    assert report["options"]["sut"]["options"]["storage"].startswith("postgresql+psycopg://***@")
    assert_clean(url, "moved")


def test_a_worker_without_a_deployment_gives_up(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    proc = subprocess.run([sys.executable, "-m", "pytest_basht.cli", "worker", "--storage", url,
                           "--study", "nowhere", "--wait", "0"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3
    assert "deployment 'nowhere' did not open within 0 s" in proc.stderr


def test_a_workers_own_meter_is_checked_like_the_workloads(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    store = store_mod.FleetStore(url, "dep")
    store.create_schema()
    store.open(slots=1, local=0, settings={"workload": {}, "source": "w.yaml",
                                           "heartbeat": {}, "artifacts": "database"})
    proc = subprocess.run([sys.executable, "-m", "pytest_basht.cli", "worker", "--storage", url,
                           "--study", "dep", "--wait", "5", "--meter", "rapll"],
                          capture_output=True, text=True, timeout=120)
    store.close()
    assert proc.returncode == 2, proc.stderr
    assert "energy.meter: expected a registered meter" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_password_in_the_workload_is_a_usage_error(pytester):
    pytester.makefile(".yaml", w="sut: {options: {storage: 'postgresql://u:hunter2@db/b'}}\n")
    pytester.makepyfile(SCENARIO)
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml")
    assert result.ret == 4
    err = result.stderr.str()
    assert "w.yaml: sut.options.storage: expected a URL without a password" in err
    assert "hunter2" not in err + result.stdout.str() and "Traceback" not in err


@pytest.mark.slow
def test_a_time_budget_closes_a_study_of_local_and_remote_workers(postgres_server, pytester):  # noqa: F811
    """``budget: {time_s: 3}`` over one local and one remote worker, trials of 0.4 s: the
    first worker refused closes the study in the database for both, the others' trials
    finish, and the controller reports what stopped it."""
    url = postgres_server.create_database("budget")
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=textwrap.dedent(f"""\
        name: fake
        model: {{name: quadratic}}
        training: {{epochs: 2}}
        search:
          sampler: random
          trials: 400
          space: {{x: [1, 2, 3, 4, 5, 6, 7, 8], sleep: [0.2]}}
        goal: {{target: 0.5}}
        workers: {{count: 2, cpu: 1, memory_mb: 1500}}
        budget: {{time_s: 3}}
        sut: {{name: optuna, options: {{storage: '{url}', study: budget, local_workers: 1,
                                        heartbeat_s: 1, join_timeout_s: 120}}}}
        """))
    pytester.makepyfile(SCENARIO)
    workers = start_workers(pytester, url, "budget", 1, str(pytester.path / "conftest.py"))
    try:
        result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                               "--basht-history", "off")
    finally:
        codes = stop_workers(workers)
    assert result.ret == 0, result.stdout.str() + logs(workers)
    assert codes == [0]
    sc = latest(pytester)["scenarios"][0]
    study = sc["sut"]["study"]
    assert study["stopped_by"] == "budget.time_s"
    budget = study["budget"]
    assert 3 - budget["forecast"]["time_s"] < budget["stopped_at"]["time_s"] <= 3
    longest = max((t["end_ns"] - t["start_ns"]) / 1e9 for t in sc["trials"])
    assert budget["spent"]["time_s"] <= 3 + longest + 2 * 1.0, "a poll of the remote rows"
    # which worker takes how many trials before the study closes is the machine's load's
    assert {t["worker"] for t in sc["trials"]} <= {0, 1} and 0 < len(sc["trials"]) < 400
    assert all(t["state"] == "complete" for t in sc["trials"])
    assert_clean(url, "budget")

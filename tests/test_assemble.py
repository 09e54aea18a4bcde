"""The report assembled as a pure function: hand-built records and facts in, the report
dict out; no file, meter, machine or pytest involved."""

from __future__ import annotations

import copy

import jsonschema
from conftest import flat_trace, span, trial

from pytest_basht import workload as wl
from pytest_basht.report import assemble
from pytest_basht.report import json as report_json
from pytest_basht.result import RunResult

MACHINE = {"id": "m1", "cpu_model": "Test CPU", "cores": 4, "memory_gb": 8.0,
           "accelerators": [], "meter_source": "estimate:test"}


def record(test_id: str, start_s: float, end_s: float, *, host: str = "h", pid: int = 1,
           experiment: str | None = "E", variables: dict | None = None) -> dict:
    """A scenario record as a worker sends it: deploy → trials → undeploy in the window."""
    spans = [span("deploy", start_s, start_s + 0.5, energy=1),
             span("metric_collection", end_s - 0.5, end_s, energy=1),
             span("undeploy", end_s, end_s + 1, energy=1)]
    trials = [trial(0, 0, start_s + 0.5, end_s - 0.5, value=0.8)]
    result = RunResult(wl.from_mapping({}, "defaults"), spans, trials, trials[0], 0.7,
                       flat_trace(10, start_s, end_s + 1))
    result.recompute()
    rec = report_json.scenario_record(test_id, result, experiment=experiment,
                                      variables=variables or {})
    rec["placement"] = {"worker": "gw0", "pid": pid, "host": host}
    return rec


def facts(**changes) -> assemble.RunFacts:
    base = {"run_id": "run-1", "status": "complete", "options": {"budget": "full"},
            "machine": MACHINE, "packages": {"optuna": "4"}, "git": None,
            "workload_file": None, "meters": [{"source": "estimate:test", "measured": False}]}
    return assemble.RunFacts(**{**base, **changes})


def test_build_is_a_pure_function_of_records_notes_and_facts():
    records = [record("t::a", 0, 10, variables={"x": 1}), record("t::b", 5, 15, pid=2,
                                                                  variables={"x": 2})]
    before = copy.deepcopy(records)
    skipped = [{"test_id": "t::c", "experiment": "E", "variables": {"x": 3},
                "reason": "no GPU"}]
    lost = [{"test_id": "t::d", "worker": "gw1", "reason": "killed", "scenario": True}]
    report = assemble.build(records, ["first note"], facts(budget="budget smoke: ..."),
                            lost=lost, skipped=skipped)

    assert records == before, "the records passed in are left as they were"
    jsonschema.validate(report, report_json.schema())
    assert (report["run_id"], report["status"], report["machine"]) == ("run-1", "complete",
                                                                       MACHINE)
    assert [s["test_id"] for s in report["scenarios"]] == ["t::a", "t::b"]
    assert report["concurrency"]["max_parallel"] == 2
    assert report["concurrency"]["processes"] == 2
    assert report["concurrency"]["energy_scope"].startswith("per process")
    assert report["scenarios"][0]["concurrency"] == {"max_parallel": 2, "overlapped": ["t::b"]}
    assert report["notes"][0] == "first note"
    assert report["notes"][1].startswith("xdist worker gw1 crashed while running t::d: its "
                                         "record is lost (killed)")
    assert report["notes"][2] == "budget smoke: ..."
    assert report["lost"] == lost and report["skipped"] == skipped
    (exp,) = report["experiments"]
    assert exp["name"] == "E" and len(exp["rows"]) == 3  # two ran, one skipped


def test_without_meters_of_its_own_the_report_names_the_workers_meter():
    """An xdist controller runs no meter: the meter its workers used is the report's."""
    records = [record("t::a", 0, 10)]
    report = assemble.build(records, [], facts(meters=[]))
    assert report["meters"] == [records[0]["energy"]["meter"]]
    assert assemble.meter_source([], records) == records[0]["energy"]["source"]
    assert assemble.meter_source([{"source": "rapl"}], records) == "rapl"
    assert assemble.meter_source([], []) == ""


def test_no_scenario_makes_an_empty_report():
    report = assemble.build([], [], facts())
    assert report["scenarios"] == [] and report["experiments"] == []
    assert report["concurrency"]["max_parallel"] == 0


def test_raw_keeps_every_record_and_says_why():
    records = [record("t::a", 0, 10)]
    report = assemble.raw(records, ["n"], ValueError("a table broke"), run_id="run-1",
                          status="complete", options={})
    assert report["status"] == "error" and report["scenarios"] == records
    assert report["notes"] == ["n", "the full report could not be built (ValueError: a table "
                                    "broke); this one holds every scenario's raw record"]
    interrupted = assemble.raw(records, [], ValueError("x"), run_id="r", status="interrupted",
                               options={})
    assert interrupted["status"] == "interrupted"


def test_workload_file_fingerprint(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("name: w\n")
    got = assemble.workload_file(path)
    assert got is not None and got["text"] == "name: w\n" and len(got["sha256"]) == 64
    missing = assemble.workload_file(tmp_path / "gone.yaml")
    assert missing is not None and missing["path"].endswith("gone.yaml") and missing["error"]
    assert assemble.workload_file(None) is None

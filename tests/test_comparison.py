"""Experiments compared: rows, deltas, skipped values, sweeps, pruning, Markdown and plots."""

from __future__ import annotations

import jsonschema
import pytest
from conftest import flat_trace, span, trial

from pytest_basht import workload as wl
from pytest_basht.options import BashtOptions
from pytest_basht.report import experiments, files, markdown
from pytest_basht.report import json as report_json
from pytest_basht.result import RunResult
from pytest_basht.session import BashtSession
from pytest_basht.sweep import SweepSpec


def record(test_id: str, variables: dict, *, experiment: str = "R-X", watts: float = 10,
           length: float = 5, epochs: int = 4, pruned: int = 0, sweep: dict | None = None,
           limits: dict | None = None, target: float | None = None, value: float = 0.9,
           repeat: int | None = None) -> dict:
    """A scenario record: ``watts`` drawn over a run of ``length`` seconds after setup; its
    one complete trial reaches ``value`` at its end (the goal's ``target`` if given)."""
    workload = wl.from_mapping({"training": {"epochs": epochs}, "workers": {"count": 2},
                                "goal": {"target": target}}, "w.yaml")
    end = 2 + length
    spans = [span("deploy", 0, 1, energy=5), span("setup", 1, 2, energy=5),
             span("result_collection", end, end + 0.1, energy=1),
             span("test", end + 0.1, end + 0.2, energy=1),
             span("metric_collection", end + 0.2, end + 0.3, energy=1),
             span("undeploy", end + 0.3, end + 1, energy=3)]
    trials = [trial(0, 0, 2, end, value=value, energy=40.0,
                    intermediate=[0.5, 0.7, 0.8, value][:epochs])]
    for i in range(pruned):  # each stopped after 1 of ``epochs`` epochs, 8 J
        trials.append(trial(1 + i, 1, 2, 3, state="pruned", value=0.2, energy=8.0,
                            intermediate=[0.2], params={"x": 10 + i}))
    result = RunResult(workload, spans, trials, trials[0], 0.88,
                       flat_trace(watts, 1, end + 0.3),
                       sut={"limits": limits or {}},
                       deployment={"id": "dep1", "reused": False, "sut": "optuna"})
    result.recompute()
    rec = report_json.scenario_record(test_id, result, experiment=experiment,
                                      variables=variables)
    if repeat is not None:
        rec["test_id"] = f"{test_id[:-1]}-repeat={repeat}]"
        rec["scenario_id"], rec["repeat"] = test_id, repeat
    if sweep is not None:
        rec["sweep"] = sweep
    return rec


SPEC = SweepSpec("t.py::test_mem", "workers.memory_mb", (768, 896, 1024, 1152), max_steps=None)


def step(position: int) -> dict:
    return {**SPEC.to_dict(), "position": position, "value": SPEC.values[position]}


def sweep_records() -> tuple[list[dict], list[dict]]:
    """R-MEM: 9 s at 768 MB, 5 s at 896, 5.1 s at 1024 (converged at 896); 1152 skipped."""
    records = [record(f"t.py::test_mem[workers.memory_mb={v}]", {"workers.memory_mb": v},
                      experiment="R-MEM", length=length, sweep=step(i))
               for i, (v, length) in enumerate([(768, 9.0), (896, 5.0), (1024, 5.1)])]
    skipped = [{"test_id": "t.py::test_mem[workers.memory_mb=1152]", "experiment": "R-MEM",
                "variables": {"workers.memory_mb": 1152}, "sweep": step(3),
                "reason": "converged at workers.memory_mb=896: ..."}]
    return records, skipped


def test_rows_follow_the_sweep_with_deltas_and_the_converged_value():
    records, skipped = sweep_records()
    (exp,) = experiments.experiments(records, skipped)
    assert exp["name"] == "R-MEM" and exp["variables"] == ["workers.memory_mb"]
    assert [r["label"] for r in exp["rows"]] == ["768", "896", "1024", "1152"]
    assert [r["ran"] for r in exp["rows"]] == [True, True, True, False]
    first, second = exp["rows"][0], exp["rows"][1]
    assert first["delta_jct_pct"] == 0
    assert second["delta_jct_pct"] == pytest.approx((second["jct_s"] - first["jct_s"])
                                                    / first["jct_s"] * 100)
    assert second["jct_s"] < first["jct_s"] and second["energy_j"] < first["energy_j"]
    assert exp["sweep"]["converged_at"] == 896 and exp["sweep"]["confirmed_by"] == 1024
    assert exp["rows"][3]["notes"] == ["converged at workers.memory_mb=896: ..."]
    assert exp["plot"] == "experiment-r-mem.png" and exp["reference"] == "768"
    for key in ("jct_s", "energy_j", "twh_kwh", "wr_pct", "wte_kwh", "oc_usd", "co2_g",
                "best_value"):
        assert first[key] is not None


def test_numeric_values_sort_and_others_keep_their_order():
    recs = [record(f"t.py::n[workers.count={n}]", {"workers.count": n}) for n in (4, 1, 2)]
    (exp,) = experiments.experiments(recs, [])
    assert [r["label"] for r in exp["rows"]] == ["1", "2", "4"]
    recs = [record(f"t.py::s[search.sampler={n}]", {"search.sampler": n}, experiment="S-Sam")
            for n in ("tpe", "grid")]
    (exp,) = experiments.experiments(recs, [])
    assert [r["label"] for r in exp["rows"]] == ["tpe", "grid"]


def test_a_space_is_labelled_by_its_id_and_size():
    rec = record("t.py::test_s_phi[small]", {"search.space": {"x": [1, 2]}}, experiment="S-Φ")
    (exp,) = experiments.experiments([rec], [])
    assert exp["rows"][0]["label"] == "small (|Φ|=16)"  # the record's own workload: 16
    assert "| small (\\|Φ\\|=16) |" in experiments.table(exp), "pipes escaped in a table cell"
    assert exp["plot"] == "experiment-s-phi.png"


def test_pruning_waste_and_savings():
    rec = record("t.py::p[search.pruner=median]", {"search.pruner": "median"}, pruned=2,
                 experiment="S-Pru")
    prune = experiments.pruning(rec)
    # each pruned trial: 8 J for 1 epoch of 4; 3 epochs not run at 8 J each
    assert prune == {"trials": 2, "wasted_j": 16.0, "saved_j": 48.0}
    (exp,) = experiments.experiments([rec], [])
    assert exp["rows"][0]["trials"]["pruned"] == 2
    text = experiments.table(exp)
    assert "pruned work J" in text and "saved J (est.)" in text and "| 48 " in text


def test_unenforced_limits_and_skips_are_noted():
    limits = {"cpu": {"enforced": False, "asked_per_worker": 2, "given_per_worker": 1,
                      "oversubscription": 2.0},
              "memory": {"enforced": True}}
    rec = record("t.py::a[workers.accelerator=cpu]", {"workers.accelerator": "cpu"},
                 experiment="R-ACL", limits=limits)
    skip = {"test_id": "t.py::a[workers.accelerator=gpu]", "experiment": "R-ACL",
            "variables": {"workers.accelerator": "gpu"}, "reason": "no GPU: NVML sees 0 devices"}
    (exp,) = experiments.experiments([rec], [skip])
    assert exp["rows"][0]["notes"] == ["wcpu not enforced: 1 of 2 vCPUs given",
                                       "cores shared ×2"]
    text = "\n".join(experiments.markdown_section([exp]))
    assert "| gpu " in text and "| skipped " in text and "no GPU: NVML sees 0 devices" in text
    assert "![R-ACL: metrics against `workers.accelerator`](experiment-r-acl.png)" in text


def test_plots_are_pngs_with_the_experiment(tmp_path):
    records, skipped = sweep_records()
    acl = record("t.py::a[workers.accelerator=cpu]", {"workers.accelerator": "cpu"},
                 experiment="R-ACL")
    gpu = {"test_id": "t.py::a[workers.accelerator=gpu]", "experiment": "R-ACL",
           "variables": {"workers.accelerator": "gpu"}, "reason": "no GPU"}
    exps = experiments.experiments([*records, acl], [*skipped, gpu])
    written = experiments.write_plots(exps, tmp_path)
    assert sorted(p.name for p in written) == ["experiment-r-acl.png", "experiment-r-mem.png"]
    for path in written:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not list(tmp_path.glob(".*.tmp*")), "no temporary file left behind"


def test_the_report_groups_by_experiment_and_validates(tmp_path):
    records, skipped = sweep_records()
    base = record("t.py::test_baseline", {}, experiment="baseline")
    session = BashtSession(BashtOptions(None, tmp_path / "reports", None, None, None, None,
                                        budget="smoke"), tmp_path)
    session.skipped = skipped
    report = session.build_report([base, *records])
    jsonschema.validate(report, report_json.schema())
    assert [e["name"] for e in report["experiments"]] == ["baseline", "R-MEM"]
    assert report["experiments"][0]["plot"] is None  # nothing varied: a table, no plot
    assert report["experiments"][0]["rows"][0]["label"] == "test_baseline"
    assert any("budget smoke" in n for n in report["notes"])
    run_dir = files.write_report(report, session.options.report_dir)
    assert (run_dir / "experiment-r-mem.png").exists()
    md = (run_dir / "report.md").read_text()
    assert md.index("## Experiments") < md.index("## Scenarios — baseline") < \
        md.index("## Scenarios — R-MEM")
    assert "**Sweep** (stops when two successive steps differ by < 5% in JCT): converged at " \
           "workers.memory_mb=896" in md
    assert markdown.by_experiment(report["scenarios"])[1][0] == "R-MEM"
    lines = experiments.terminal_lines(report["experiments"])
    assert lines == [f"R-MEM (workers.memory_mb): 3 run, 1 skipped; "
                     f"{report['experiments'][1]['sweep']['reason']}"]

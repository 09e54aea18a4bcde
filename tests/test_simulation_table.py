"""The trial table: export from reports, exact partition, merge, strict reading, answers."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import span, trial
from fake_trainable import compose

from pytest_basht import workload as wl
from pytest_basht import workload_files
from pytest_basht.cli import main
from pytest_basht.errors import WorkloadError
from pytest_basht.simulation.answers import Answers, MissingConfiguration, check_fits
from pytest_basht.simulation.table import (
    Export,
    TableError,
    TrialTable,
    canon,
    card_path,
    summarize,
)

HEADER = "source,seed,trial,state,epoch,value,time_s,energy_j,cpu_s,validate_s,test_value,param.x"


def write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def workload(space: str = "{x: [1, 2]}", epochs: int = 2, extra: str = "") -> wl.Workload:
    return wl.from_mapping(workload_files.parse_text(
        compose(f"search: {{space: {space}}}\ntraining: {{epochs: {epochs}}}\n", extra),
        "w.yaml"), "w.yaml")


def report_with(trials: list, *, test_id: str = "t.py::test_a", seed: int = 42,
                space: dict | None = None, **extra) -> dict:
    scenario = {
        "test_id": test_id, "sut": {}, "trials": [t.to_dict() for t in trials],
        "workload": {"seed": seed, "model": {"name": "m", "params": {}},
                     "dataset": {"name": "d"}, "training": {"algorithm": "adam",
                                                             "batch_size": 64, "epochs": 2},
                     "goal": {"metric": "accuracy", "direction": "maximize"},
                     "workers": {"count": 2, "cpu": 1, "memory_mb": 1000},
                     "search": {"space": space or {"x": [1, 2]}}},
        "energy": {"source": "estimate:ccf-linear", "measured": False, "idle_power_w": 4.0,
                   "max_power_w": 20.0, "slots": 2, "idle_measured": False},
        "spans": [span("deploy", 0, 1, energy=5.0).to_dict(),
                  span("setup", 1, 3, energy=8.0).to_dict(),
                  span("undeploy", 9, 9.5, energy=2.0).to_dict()],
        "best_trial": trials[0].number, "test_score": 0.75, **extra}
    return {"run_id": "run1", "created_utc": "2026-01-01T00:00:00+00:00", "git": None,
            "machine": {"id": "m", "cpu_model": "cpu", "cores": 2, "memory_gb": 8},
            "scenarios": [scenario]}


def two_epoch_trial(number: int, x: int, worker: int, start: float, *, state="complete",
                    values=(0.5, 0.6)) -> object:
    """Load 0.1 s, then per epoch train 0.3 s and validate 0.1 s; a 0.05 s tail."""
    t = trial(number, worker, start, start + 0.1 + 0.4 * len(values) + 0.05, state=state,
              value=values[-1] if values else None, params={"x": x},
              energy=9.0, intermediate=list(values))
    spans = [span("trial.load", start, start + 0.1, energy=1.0, cpu=0.1, trial=number)]
    a = start + 0.1
    for e in range(len(values)):
        spans.append(span("trial.train", a, a + 0.3, energy=3.0, cpu=0.3, epoch=e,
                          trial=number))
        spans.append(span("trial.validate", a + 0.3, a + 0.4, energy=1.0, cpu=0.1, epoch=e,
                          trial=number))
        a += 0.4
    t.spans, t.cpu_s = spans, 1.0
    return t


def test_export_partitions_each_trial_exactly(tmp_path):
    t0 = two_epoch_trial(0, 1, 0, 3.0)
    export = Export()
    export.add_report(report_with([t0]), "r.json", "abc")
    out = write(tmp_path / "t.csv", export.csv_text().splitlines()[1:],
                export.csv_text().splitlines()[0])
    table = TrialTable.read(out)
    (rec,) = table.recordings
    c = rec.curve
    # epoch 0: start → first report (load + train + validate = 0.5 s); epoch 1: 0.4 s + tail
    assert c.times_ns == (500_000_000, 450_000_000)
    assert sum(c.times_ns) == t0.end_ns - t0.start_ns
    # energy 9 J split like the spans' (load+train+validate 5 J : 4 J), CPU likewise
    assert c.energies_j == pytest.approx((5.0, 4.0))
    assert c.cpu_s == pytest.approx((0.5 / 0.9, 0.4 / 0.9))
    assert c.validate_ns == (100_000_000, 100_000_000)
    assert c.values == (0.5, 0.6) and c.state == "complete" and c.test_value == 0.75
    assert rec.params == {"x": 1} and rec.seed == 42


def test_a_failed_trial_ends_with_a_row_without_value(tmp_path):
    t = two_epoch_trial(0, 2, 0, 0.0, state="failed", values=(0.4,))
    t.end_ns += 1_000_000_000  # it failed a second after its last report
    export = Export()
    export.add_report(report_with([t]), "r.json", "abc")
    lines = export.csv_text().splitlines()
    table = TrialTable.read(write(tmp_path / "t.csv", lines[1:], lines[0]))
    c = table.recordings[0].curve
    assert c.values == (0.4, None) and c.state == "failed"
    assert c.times_ns == (500_000_000, 1_050_000_000)
    assert sum(c.energies_j) == pytest.approx(9.0)


def test_cli_exports_merges_and_writes_a_card(tmp_path, capsys):
    a = tmp_path / "a" / "report.json"
    a.parent.mkdir()
    a.write_text(json.dumps({"schema_version": 1, **report_with(
        [two_epoch_trial(0, 1, 0, 3.0), two_epoch_trial(1, 2, 1, 3.0)])}))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"schema_version": 1, **report_with(
        [two_epoch_trial(0, 1, 0, 3.0)], seed=7, test_id="t.py::test_b")}))
    out = tmp_path / "table.csv"
    assert main(["table", "export", str(a.parent), str(b), "-o", str(out)]) == 0
    assert "3 trials, 2 configurations, seeds [7, 42]" in capsys.readouterr().out
    table = TrialTable.read(out)
    assert table.meta is not None and len(table.meta["sources"]) == 2
    card = summarize(table.meta)
    assert card is not None and card.idle_w_per_slot == 2.0 and card.max_w_per_slot == 10.0
    assert card.lifecycle["setup"] == {"time_s": 2.0, "energy_j": 8.0, "cpu_s": 0.0}
    assert card.handoff_s is None  # one trial per worker: no gap between trials
    # a table merges with more runs; its own sources stay in the card
    again = tmp_path / "again.csv"
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"schema_version": 1, **report_with(
        [two_epoch_trial(0, 2, 0, 3.0)], test_id="t.py::test_c")}))
    assert main(["table", "export", str(out), str(c), "-o", str(again)]) == 0
    merged = TrialTable.read(again)
    assert len(merged.recordings) == 4 and len(merged.meta["sources"]) == 3
    # the same run twice is refused
    assert main(["table", "export", str(out), str(b), "-o", str(again)]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["table", "info", str(again)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["recordings"] == 4 and info["seeds"] == [7, 42] and info["card"] is True
    assert main(["table", "export", str(out), "-o", str(tmp_path / "t.parquet")]) == 2
    assert "written as CSV" in capsys.readouterr().err


def test_merging_different_training_setups_is_refused(tmp_path):
    export = Export()
    export.add_report(report_with([two_epoch_trial(0, 1, 0, 0)]), "a.json", "a")
    other = report_with([two_epoch_trial(0, 1, 0, 0)], test_id="t.py::test_b")
    other["scenarios"][0]["workload"]["training"]["batch_size"] = 128
    with pytest.raises(TableError, match=r"training.batch_size is 128 but 64"):
        export.add_report(other, "b.json", "b")
    renamed = report_with([two_epoch_trial(0, 1, 0, 0)], test_id="t.py::test_c",
                          space={"y": [1]})
    renamed["scenarios"][0]["trials"][0]["params"] = {"y": 1}
    with pytest.raises(TableError, match=r"hyperparameters \['y'\] differ"):
        export.add_report(renamed, "c.json", "c")


def test_simulated_runs_are_not_exported_as_recordings():
    export = Export()
    report = report_with([two_epoch_trial(0, 1, 0, 0)], sut={"simulated": True})
    export.add_report(report, "r.json", "abc")
    assert not export.rows and "a simulated run" in export.notes[0]
    with pytest.raises(TableError, match="nothing to export"):
        export.csv_text()


@pytest.mark.parametrize("rows,header,needle", [
    ([], HEADER, "no rows"),
    (["s,1,0,complete,0,0.5,abc,1,0,0,,1"], HEADER, "line 2: column time_s: expected a number"),
    (["s,1,0,complete,0,0.5,-1,1,0,0,,1"], HEADER, "column time_s: expected a number ≥ 0"),
    (["s,1,0,complete,1,0.5,1,1,0,0,,1"], HEADER, "epochs [1]; expected 0..0"),
    (["s,1,0,done,0,0.5,1,1,0,0,,1"], HEADER, "column state: expected one of complete"),
    (["s,1,0,complete,0,0.5,1,1,0,0,,1", "s,1,0,complete,0,0.6,1,1,0,0,,1"], HEADER,
     "epoch 0 of trial 0 of 's' appears twice"),
    (["s,1,0,complete,0,0.5,1,1,0,0,,1", "s,1,0,complete,1,0.6,1,1,0,0,,2"], HEADER,
     "column param.x: differs from line 2 (same trial)"),
    (["s,1,0,complete,0,0.5,1,1,0,0,,1"], HEADER.replace("time_s", "time"),
     "unknown column 'time' (did you mean 'time_s'?)"),
    (["s,0,0.5,1,1"], "source,trial,epoch,value,time_s", "missing column(s) energy_j"),
    (["s,0,0,0.5,1,1"], "source,trial,epoch,value,time_s,energy_j", "no hyperparameter"),
    (["s,1,0,complete,0,0.5,1,1,0,0"], HEADER, "10 cells, the header has 12"),
    (["s,1,0,complete,0,0.5,1,1,0,0,," + "1" * 200_000], HEADER,  # past 128 KiB (issue 20)
     "line 2: not CSV (field larger than field limit (131072))"),
])
def test_malformed_tables_are_clear_errors(tmp_path, rows, header, needle):
    path = write(tmp_path / "bad.csv", rows, header)
    with pytest.raises(TableError) as err:
        TrialTable.read(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_a_minimal_table_reads_with_defaults(tmp_path):
    path = write(tmp_path / "t.csv", ["lab,0,0,0.5,1.5,3,1", "lab,0,1,,0.5,1,1"],
                 "source,trial,epoch,value,time_s,energy_j,param.x")
    table = TrialTable.read(path)
    (rec,) = table.recordings
    assert rec.state == "complete" and rec.seed is None and table.meta is None
    assert rec.curve.values == (0.5, None) and rec.curve.cpu_s == (0.0, 0.0)


def test_canonical_values_match_across_types():
    assert canon(1) == canon(1.0) == canon(1.00000000000001) == "1"
    assert canon(0.1 + 0.2) == canon(0.3)
    assert canon(True) != canon(1) and canon("1") != canon(1) and canon(None) == "null"


def recorded(tmp_path: Path) -> TrialTable:
    """x=1 from seeds 42 and 7 (different values), x=2 from seed 42 only (pruned after one
    epoch), x=3 failed after one epoch."""
    return TrialTable.read(write(tmp_path / "t.csv", [
        "a,42,0,complete,0,0.5,1,2,0,0,0.9,1", "a,42,0,complete,1,0.6,1,2,0,0,0.9,1",
        "b,7,0,complete,0,0.3,3,6,0,0,,1", "b,7,0,complete,1,0.4,3,6,0,0,,1",
        "a,42,1,pruned,0,0.2,1,2,0,0,,2",
        "a,42,2,failed,0,0.1,1,2,0,0,,3", "a,42,2,failed,1,,0.5,1,0,0,,3",
    ]))


def test_pick_prefers_the_workload_seed_and_mean_averages(tmp_path):
    table = recorded(tmp_path)
    mine = Answers(table, workload(extra="seed: 42"))
    assert mine.curve({"x": 1}).values == (0.5, 0.6)
    assert mine.curve({"x": 1}).test_value == 0.9
    other = Answers(table, workload(extra="seed: 7"))
    assert other.curve({"x": 1}).values == (0.3, 0.4)
    mean = Answers(table, workload(), policy="mean").curve({"x": 1})
    assert mean.values == pytest.approx((0.4, 0.5)) and mean.times_ns == (2 * 10**9,) * 2
    assert mean.energies_j == (4.0, 4.0) and mean.test_value == 0.9


def test_truncated_failed_and_missing_configurations(tmp_path):
    table = recorded(tmp_path)
    answers = Answers(table, workload())
    short = answers.curve({"x": 2})
    assert short.state == "truncated" and short.epochs == 1
    with pytest.raises(MissingConfiguration, match=r"only for 1 epoch\(s\)"):
        answers.longer({"x": 2}, short)
    failed = answers.curve({"x": 3})
    assert failed.state == "failed" and failed.values == (0.1, None)
    one_epoch = Answers(table, workload(epochs=1)).curve({"x": 3})
    assert one_epoch.state == "complete" and one_epoch.values == (0.1,)
    with pytest.raises(MissingConfiguration) as err:
        answers.curve({"x": 9})
    assert '{"x": 9} is not in the trial table' in str(err.value)
    assert "x=9 was never recorded (recorded: 1, 2, 3)" in str(err.value)
    assert "sut.options.surrogate: random-forest" in str(err.value)


def test_check_fits_names_the_key_that_does_not_fit(tmp_path):
    table = recorded(tmp_path)
    assert check_fits(table, workload("{x: [1, 2, 3]}"), surrogate=False)
    with pytest.raises(WorkloadError, match=r"search.space.x: .*never recorded, got \[4\]"):
        check_fits(table, workload("{x: [1, 4]}"), surrogate=False)
    with pytest.raises(WorkloadError, match=r"search.space.x: expected a list of values or a"):
        check_fits(table, workload("{x: {low: 1, high: 3.5}}", extra="search: {trials: 3, "
                                   "sampler: random, space: {x: {low: 1, high: 3.5}}}"),
                   surrogate=False)
    with pytest.raises(WorkloadError, match=r"training.epochs: expected at most 2"):
        check_fits(table, workload(epochs=3), surrogate=False)
    with pytest.raises(WorkloadError, match=r"search.space: expected the hyperparameters"):
        check_fits(table, workload("{y: [1]}"), surrogate=False)
    # a surrogate answers what the table lacks: no coverage checks
    check_fits(table, workload("{x: [1, 4]}", epochs=3), surrogate=True)


def test_check_fits_compares_the_training_setup_of_the_card(tmp_path):
    table = recorded(tmp_path)
    card = {"format": "pytest-basht trial table", "version": 1, "sources": [{
        "source": "a", "energy": {"source": "rapl", "measured": True, "idle_power_w": 8,
                                  "max_power_w": 40, "slots": 4},
        "workload": {"model": {"name": "mnist-ff", "params": {}},
                     "training": {"algorithm": "adam", "batch_size": 32},
                     "workers": {"cpu": 1, "memory_mb": 1000}}}]}
    card_path(table.path).write_text(json.dumps(card))
    table = TrialTable.read(table.path)
    with pytest.raises(WorkloadError, match=r"training.batch_size: expected 32, what table"):
        check_fits(table, workload(), surrogate=False)
    assert check_fits(table, workload(extra="training: {batch_size: 32, epochs: 2}"),
                      surrogate=False) == [
        "times and energies are replayed as recorded on workers of 1 vCPU × 1000 MB; "
        "this workload asks 2 vCPU × 2048 MB"]
    card_path(table.path).write_text(textwrap.dedent('{"format": "other"}'))
    with pytest.raises(TableError, match="not a pytest-basht trial table card"):
        TrialTable.read(table.path)

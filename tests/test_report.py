"""report.json (schema, atomic writes, clear load errors), report.md, and the CLI."""

from __future__ import annotations

import csv
import json
import os

import jsonschema
import pytest
from conftest import flat_trace, span, trial

from pytest_basht import cli
from pytest_basht import workload as wl
from pytest_basht.hydro import figures
from pytest_basht.options import BashtOptions
from pytest_basht.report import files, markdown
from pytest_basht.report import json as report_json
from pytest_basht.report.atomic import replace_atomic, write_atomic
from pytest_basht.result import NoSuccessfulTrial, RunResult
from pytest_basht.session import BashtSession


def make_result() -> RunResult:
    workload = wl.from_mapping({"goal": {"target": 0.7}, "workers": {"count": 2}}, "w.yaml")
    spans = [span("deploy", 0, 1, energy=5), span("setup", 1, 2, energy=5),
             span("result_collection", 6, 6.1, energy=1), span("test", 6.1, 6.2, energy=1),
             span("metric_collection", 6.2, 6.3, energy=1), span("undeploy", 6.3, 7, energy=3)]
    trials = [trial(0, 0, 2, 4, value=0.8), trial(1, 1, 2, 5, state="failed", value=None),
              trial(2, 0, 4, 6, state="pruned", value=float("nan"), intermediate=[0.1])]
    trials[1].error = "RuntimeError: boom"
    result = RunResult(workload, spans, trials, trials[0], 0.77, flat_trace(10, 1, 6.3),
                       sut={"limits": {"cpu": {"enforced": True, "how": "affinity"}}},
                       deployment={"id": "dep1", "reused": False, "sut": "optuna"})
    result.recompute()
    return result


def make_report(tmp_path) -> tuple[BashtSession, dict]:
    options = BashtOptions(None, tmp_path / "reports", None, None, None, None)
    session = BashtSession(options, tmp_path)
    record = report_json.scenario_record("t.py::test_x[workers.count=2]", make_result(),
                                         variables={"workers.count": 2})
    return session, session.build_report([record])


def test_report_validates_against_the_shipped_schema(tmp_path):
    _, report = make_report(tmp_path)
    jsonschema.validate(report, report_json.schema())
    sc = report["scenarios"][0]
    assert sc["trials"][2]["value"] is None  # NaN became null: strict JSON
    assert sc["metrics"]["waste"]["failed"]["trials"] == 1
    assert report["machine"]["cores"] >= 1 and report["packages"]["optuna"]
    json.loads(report_json.dumps(report))


def test_schema_rejects_a_missing_metric(tmp_path):
    _, report = make_report(tmp_path)
    del report["scenarios"][0]["metrics"]["wr_pct"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, report_json.schema())


def test_write_report_files_and_latest(tmp_path):
    session, report = make_report(tmp_path)
    run_dir = files.write_report(report, session.options.report_dir)
    assert (run_dir / "report.json").exists() and (run_dir / "report.md").exists()
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and (latest / "report.json").exists()
    assert report_json.load(run_dir)["run_id"] == session.run_id


def test_markdown_has_the_tables(tmp_path):
    _, report = make_report(tmp_path)
    text = markdown.render(report)
    for heading in ("Table 1 — workload", "Table 2 — metrics", "**Phases**", "**Waste**",
                    "**Trials**", "Resource limits", "## Definitions"):
        assert heading in text
    assert "estimate, not a measurement" in text and "RuntimeError: boom" in text
    assert "`workers.count=2`" in text


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    write_atomic(target, '{"old": true}\n')

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(target, '{"new": true}\n')
    assert target.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_files_get_the_mode_of_a_new_file(tmp_path):
    """Not mkstemp's 0600: a team (or a CI artifact upload) must be able to read them."""
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "report.json", "{}\n")
        replace_atomic(tmp_path / "plot.png", lambda tmp: tmp.write_bytes(b"\x89PNG"))
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "plot.png").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "plot.png").read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "report.json"]


@pytest.mark.parametrize("content,message", [
    (None, "no such report"),
    ("{not json", "corrupt"),
    ('{"a": 1}', "not a pytest-basht report"),
    ('{"schema_version": 0}', "schema_version 0"),
])
def test_load_errors_are_clear(tmp_path, content, message):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(report_json.ReportError, match=message):
        report_json.load(path)


def test_cli_report_and_validate(tmp_path, capsys):
    session, report = make_report(tmp_path)
    run_dir = files.write_report(report, session.options.report_dir)
    (run_dir / "report.md").unlink()
    assert cli.main(["report", str(run_dir)]) == 0
    assert "Table 2" in (run_dir / "report.md").read_text()
    good = tmp_path / "good.yaml"
    good.write_text("workers: {count: 2}\n")
    assert cli.main(["validate", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {sampler: tpee}\n")
    assert cli.main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "search.sampler" in err and "did you mean 'tpe'" in err


def test_basht_report_renders_the_plugins_sections_again(tmp_path):
    """Hydro's sections come from its plugin's Markdown hooks, when the session writes
    report.md and when ``basht report`` renders it again from report.json."""
    session, report = make_report(tmp_path)
    fused = wl.from_mapping({"search": {"fusion": 2}})
    report["scenarios"][0]["sut"]["hydro"] = figures.figures(fused, [], [], None)
    run_dir = files.write_report(report, session.options.report_dir, session.plugins)
    md = (run_dir / "report.md").read_text()
    assert "## Hydro: fused and scaled trials" in md
    assert "**Hydro — fused and scaled trials**" in md
    assert "Hydro" not in markdown.render(report)  # without the plugins: the core's own
    (run_dir / "report.md").unlink()
    assert cli.main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").read_text() == md


def test_each_trial_row_lists_its_waste_and_keeps_its_traceback(tmp_path):
    result = make_result()
    result.trials[1].traceback = "Traceback (most recent call last):\nRuntimeError: boom\n"
    record = report_json.scenario_record("t.py::test_x", result)
    assert [t["waste"] for t in record["trials"]] == [[], ["failed"], ["pruned"]]
    assert record["trials"][1]["traceback"].endswith("RuntimeError: boom\n")
    session = BashtSession(BashtOptions(None, tmp_path / "reports", None, None, None, None),
                           tmp_path)
    report = session.build_report([record])
    jsonschema.validate(report, report_json.schema())
    run_dir = files.write_report(report, session.options.report_dir)
    rows = [line for line in (run_dir / "report.md").read_text().splitlines()
            if line.startswith("| 1 ") and "boom" in line]  # trial #1, not rank 1
    cells = [cell.strip() for cell in rows[0].split("|")]
    assert cells[-3:-1] == ["failed", "RuntimeError: boom"]  # the waste column, the error
    with open(run_dir / "trials.csv", newline="") as fh:
        waste = {row["number"]: row["waste"] for row in csv.DictReader(fh)}
    assert waste == {"0": "", "1": "failed", "2": "pruned"}


def test_require_best_names_the_scenario_the_states_and_the_first_error():
    result = make_result()
    assert result.require_best() is result.best
    result.best = None
    result.trials[1].traceback = ("Traceback (most recent call last):\n  File x\n"
                                  "RuntimeError: boom\n")
    with pytest.raises(NoSuccessfulTrial) as info:
        result.require_best()
    text = str(info.value)
    assert text.startswith("scenario 'baseline' (w.yaml): no best trial; trials: "
                           "1 complete, 1 failed, 1 pruned")
    assert "first failed trial #1 {'x': 1}: RuntimeError: boom" in text
    assert text.endswith("    File x\n  RuntimeError: boom")

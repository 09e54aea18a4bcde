"""Setups ranked by what it took to reach the goal; the Pareto fronts and their pictures."""

from __future__ import annotations

import jsonschema
import matplotlib.image
import pytest
from test_comparison import record

from pytest_basht import cli
from pytest_basht.dominance import pareto_front
from pytest_basht.options import BashtOptions
from pytest_basht.report import experiments, files, fronts, ranking, terminal
from pytest_basht.report import json as report_json
from pytest_basht.session import BashtSession

GOAL = ("accuracy", "maximize", 0.85)


def run(setup: str, eta: float | None, best: float = 0.9) -> ranking.Run:
    return ranking.Run(f"t.py::s[{setup}]", setup, "E", GOAL,
                       {"eta": eta, "tta": None if eta is None else eta / 10}, best)


# ----------------------------------------------------------------------------- dominance


def test_the_front_is_the_points_nothing_beats_on_every_objective():
    # (energy, accuracy): less energy and more accuracy are better
    points = [(10, 0.90), (20, 0.95), (15, 0.89), (30, 0.95), (5, 0.80), (10, 0.90)]
    assert pareto_front(points, ("minimize", "maximize")) == [4, 0, 5, 1]
    # flipped directions pick the other corner
    assert pareto_front(points, ("maximize", "minimize")) == [3, 2, 4]
    assert pareto_front([(1.0, float("nan")), (2.0, 1.0)], ("minimize", "minimize")) == [1]
    assert pareto_front([], ("minimize",)) == []
    with pytest.raises(ValueError, match="maximize"):
        pareto_front([(1, 2)], ("up", "down"))
    with pytest.raises(ValueError, match="2 coordinates, expected 3"):
        pareto_front([(1, 2)], ("minimize",) * 3)


# ----------------------------------------------------------------------------- ranking


def test_setups_in_order_of_energy_to_target_and_never_reached_last():
    runs = [run("slow", 300.0), run("none-high", None, best=0.84), run("fast", 100.0),
            run("none-low", None, best=0.5)]
    ranked = ranking.rank(runs)
    assert [r.label for r in ranked] == ["fast", "slow", "none-high", "none-low"]
    rows = ranking.rows(ranked)
    assert rows[0][:5] == ["1", "fast", "1", "1/1", "100"]
    assert rows[2] == ["✗", "none-high", "1", "0/1", "✗", "—", "0.84",
                       "never reached the target"]
    caption = ranking.caption(None, GOAL, "E", ranked)
    assert caption.startswith("ranking of E by ETA (energy to target, J; goal accuracy ≥ 0.85")
    assert "one run each: no spread" in caption
    assert [r.label for r in ranking.rank(runs, "tta")] == ["fast", "slow", "none-high",
                                                          "none-low"]


def test_repeats_give_a_median_and_spread_and_overlapping_spreads_tie():
    runs = [run("a", 100.0), run("a", 120.0), run("a", 110.0),
            run("b", 115.0), run("b", 135.0),
            run("c", 300.0), run("c", 310.0),
            run("d", 90.0), run("d", None)]  # reached the target in one run of two
    ranked = ranking.rank(runs)
    assert [(r.label, r.rank, r.tie) for r in ranked] == [
        ("a", 1, False), ("b", 1, True), ("c", 3, False), ("d", 4, False)]
    assert (ranked[0].median, ranked[0].low, ranked[0].high) == (110.0, 100.0, 120.0)
    rows = ranking.rows(ranked)
    assert [r[0] for r in rows] == ["=1", "=1", "3", "4"]
    assert rows[1][5:] == ["115–135", "0.9", "tie with #1 (spreads overlap)"]
    assert rows[3][3] == "1/2" and rows[3][7] == "1 run(s) never reached it"
    assert "one run each" not in ranking.caption(None, GOAL, "E", ranked)


def test_an_unknown_rank_key_names_the_choices():
    with pytest.raises(ValueError, match="one of eta, tta, cost, co2"):
        ranking.rank_key("joules")


def test_to_target_cost_and_carbon_stop_at_the_target():
    rec = record("t.py::s[a]", {"x": 1}, target=0.85, watts=10, length=5)
    # deploy 5 J + 10 W from setup's start (1 s) until the trial's last epoch met the
    # target (7 s)
    reached = ranking.to_target(rec)
    assert reached["eta"] == pytest.approx(65.0)
    assert reached["tta"] == pytest.approx(7.0)  # deploy 1 s + 6 s from setup on
    workload = rec["workload"]
    assert reached["cost"] == pytest.approx(
        2 * 7.0 / 3600 * workload["prices"]["usd_per_worker_hour"]
        + 65.0 / 3.6e6 * workload["prices"]["usd_per_kwh"])
    assert reached["co2"] == pytest.approx(65.0 / 3.6e6 * rec["metrics"]["cint_g_per_kwh"])
    never = record("t.py::s[b]", {"x": 2}, target=0.95)
    assert ranking.to_target(never) == {"eta": None, "tta": None, "cost": None, "co2": None}


# ----------------------------------------------------------------------------- the views


def ranked_report(tmp_path, rank_by: str = "eta") -> dict:
    """E: four setups of ``workers.count`` (two repeats each) under target 0.85; w=8 never
    reaches it. Plus one scenario whose goal has no target (not ranked)."""
    recs = []
    for n, watts, value in ((1, 30, 0.9), (2, 10, 0.92), (4, 20, 0.95), (8, 5, 0.8)):
        for repeat, jitter in ((1, 0.0), (2, 0.4)):
            recs.append(record(f"t.py::test_w[workers.count={n}]", {"workers.count": n},
                               experiment="E", watts=watts + jitter, target=0.85,
                               value=value, repeat=repeat))
    recs.append(record("t.py::test_plain", {}, experiment="plain"))
    options = BashtOptions(None, tmp_path / "reports", None, None, None, None,
                           rank_by=rank_by)
    report = BashtSession(options, tmp_path).build_report(recs)
    jsonschema.validate(report, report_json.schema())
    return report


def test_terminal_report_md_and_experiment_table_rank_alike(tmp_path):
    report = ranked_report(tmp_path)
    lines = [line.text for line in terminal.ranking_lines(report)]
    assert lines[0].startswith("ranking of E by ETA (energy to target, J; goal accuracy ≥ "
                               "0.85; median of the runs that reached it)")
    body = lines[1].splitlines()
    assert body[0].split()[:4] == ["rank", "setup", "runs", "reached"]
    assert [line.split()[1] for line in body[2:]] == [
        "workers.count=2", "workers.count=4", "workers.count=1", "workers.count=8"]
    assert body[-1].split()[0] == "✗" and "never reached the target" in body[-1]
    assert len(lines) == 2, "the scenario without a target is not ranked"

    (exp,) = [e for e in report["experiments"] if e["name"] == "E"]
    table = experiments.table(exp, "eta").splitlines()
    assert table[0].startswith("| rank ") and "| ETA J " in table[0]
    labels = [line.split("|")[2].strip() for line in table[2:]]
    assert labels == ["2", "2", "4", "4", "1", "1", "8", "8"]  # repeats side by side
    assert table[-1].split("|")[1].strip() == "✗"

    run_dir = files.write_report(report, tmp_path / "reports")
    md = (run_dir / "report.md").read_text()
    assert "## Ranking" in md and md.index("## Ranking") < md.index("## Experiments")
    assert "Ranked by ETA (energy to target; ✗: never reached" in md


def test_rank_by_time_reorders(tmp_path):
    report = ranked_report(tmp_path, "tta")
    (caption, headers, rows) = ranking.sections(report["scenarios"], "tta")[0]
    assert "by TTA (time to target, s" in caption and headers[4] == "TTA s"
    # every setup took the same 5 s of trials: TTA ties, the spreads (one value) do too
    assert {row[4] for row in rows[:3]} == {"7"}


def test_pictures_fronts_and_axes(tmp_path):
    report = ranked_report(tmp_path)
    written = fronts.write(report, tmp_path)
    names = sorted(p.name for p in written)
    assert "front-e.png" in names and len([n for n in names if n.startswith("trials-")]) == 9
    (exp,) = [e for e in report["experiments"] if e["name"] == "E"]
    assert exp["front_plot"] == "front-e.png"
    assert report["scenarios"][0]["trial_plot"].startswith("trials-1-")
    plain = next(e for e in report["experiments"] if e["name"] == "plain")
    assert "front_plot" not in plain, "one setup has no front"
    for path in written:
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 300 and image[..., :3].std() > 0.05
    # an accuracy-like goal runs 0–1: 0.966 and 0.975 are 1 % of the axis apart
    assert experiments.value_limits([0.966, 0.975], {"direction": "maximize",
                                                     "target": 0.9}) == (0.0, 1.0)
    assert experiments.value_limits([2.0, 3.0], {"direction": "minimize",
                                                 "target": None}) == (0.0, 3.0 * 1.05)


def test_basht_compare_and_history_rank_the_setups(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = ranked_report(tmp_path)
    for name in ("old", "new"):
        (tmp_path / f"{name}.json").write_text(report_json.dumps(
            {**report, "run_id": f"{report['run_id']}-{name}"}))
    assert cli.main(["compare", "old.json", "new.json", "--history", "off"]) == 0
    out = capsys.readouterr().out
    ranked = out[out.index("ranking of E by ETA"):].splitlines()
    assert [line.split()[:2] for line in ranked[3:5]] == [["=1", "workers.count=2"]] * 2
    assert {ranked[3].split()[2], ranked[4].split()[2]} == {"(old)", "(new)"}
    assert ranked[-1].split()[0] == "✗"

    store = f"sqlite:///{tmp_path / 'h.sqlite'}"
    for name in ("old.json", "new.json"):
        assert cli.main(["save", name, "--history", store]) == 0
    assert cli.main(["history", "--history", store, "--rank-by", "co2"]) == 0
    out = capsys.readouterr().out
    ranked = out[out.index("ranking by CO2 to target"):].splitlines()
    # each saved run of a setup is one more repeat: two runs × two repeats
    assert ranked[3].split()[:4] == ["1", "workers.count=2", "4", "4/4"]

    with pytest.raises(SystemExit) as stop:
        cli.main(["compare", "old.json", "new.json", "--rank-by", "joules"])
    assert stop.value.code == 2
    assert "expected one of eta, tta, cost, co2, got 'joules'" in capsys.readouterr().err


def test_the_terminal_shows_the_first_setups_of_a_long_ranking():
    recs = [record(f"t.py::test_w[workers.count={n}]", {"workers.count": n}, experiment="E",
                   watts=n, target=0.85, value=0.9 if n % 3 else 0.8)
            for n in range(1, terminal.RANKING_ROWS + 6)]
    (caption, table, more) = [line.text for line in terminal.ranking_lines(
        {"scenarios": recs, "options": {}})]
    assert caption.startswith("ranking of E by ETA")
    assert len(table.splitlines()) == 2 + terminal.RANKING_ROWS
    assert more == "… 5 more setups (5 never reached the target): report.md and " \
                   "report.html rank them all"

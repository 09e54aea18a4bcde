"""The power timeline PNG: its curve, the file in the run directory, report.md's embed."""

from __future__ import annotations

import matplotlib.image
import pytest
from test_report import make_report

from pytest_basht.report import files, markdown, plots

S = 1_000_000_000


def test_power_curve_bins_a_cumulative_series():
    # 10 W for 2 s then 30 W for 2 s, sampled every 0.1 s
    ts = [i * S // 10 for i in range(41)]
    joules = [10 * t / S if t <= 2 * S else 20 + 30 * (t - 2 * S) / S for t in ts]
    xs, ws = plots.power_curve({"t_ns": ts, "joules": joules})
    assert xs[0] == pytest.approx(0.1) and len(xs) == 20  # 0.2 s bins
    assert ws[0] == pytest.approx(10) and ws[-1] == pytest.approx(30)
    assert plots.power_curve({"t_ns": [0], "joules": [0.0]}) == ([], [])


def test_each_scenario_gets_a_timeline_png_that_report_md_embeds(tmp_path):
    _, report = make_report(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    written = plots.write(report, run_dir)
    (png,) = written
    sc = report["scenarios"][0]
    assert sc["plots"] == [png.name] and png.name.startswith("timeline-1-test_x")
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank canvas
    md = markdown.render(report)
    assert f"![power timeline and trials per worker of {sc['test_id']}]({png.name})" in md
    assert not list(run_dir.glob(".*.tmp"))


def test_write_report_puts_the_png_beside_report_json(tmp_path):
    session, report = make_report(tmp_path)
    run_dir = files.write_report(report, session.options.report_dir)
    names = {p.name for p in run_dir.iterdir()}
    assert {"report.json", "report.md"} <= names
    assert any(n.startswith("timeline-1-") and n.endswith(".png") for n in names)
    assert "timeline-1-" in (run_dir / "report.md").read_text()


def test_no_timeline_no_plot(tmp_path):
    _, report = make_report(tmp_path)
    report["scenarios"][0]["energy"]["timeline"] = {"t_ns": [], "joules": [], "cpu_s": []}
    assert plots.write(report, tmp_path) == []
    assert "plots" not in report["scenarios"][0]

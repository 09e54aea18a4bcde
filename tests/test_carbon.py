"""Carbon intensity (a number, a region, a CSV series with an energy-weighted CINT) and
PUE on every energy figure that feeds carbon and cost."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from conftest import span, trial
from fake_trainable import CONFTEST, workload

from pytest_basht import metrics
from pytest_basht import workload as wl
from pytest_basht.energy import carbon
from pytest_basht.errors import OptionError, WorkloadError
from pytest_basht.options import BashtOptions, _carbon
from pytest_basht.records import EnergyTrace

SCENARIO = """
def test_scenario(trial_runner):
    assert trial_runner.run().trials
"""
T0 = 1_700_000_000.0  # a wall-clock second the synthetic timelines start at


def trace(carbon_record: dict, watts: list[float], *, idle: float = 0.0) -> EnergyTrace:
    """One point per second from 0 s, drawing ``watts[i]`` during second i."""
    joules = [0.0]
    for w in watts:
        joules.append(joules[-1] + w)
    ts = [int(i * 1e9) for i in range(len(joules))]
    return EnergyTrace(source="rapl", measured=True, idle_power_w=idle, max_power_w=100.0,
                       slots=1, timeline={"t_ns": ts, "joules": joules,
                                          "cpu_s": [0.0] * len(ts)}, carbon=carbon_record)


def lifecycle(end_s: float) -> list:
    return [span("deploy", 0, 0, energy=0), span("setup", 0, 0.5),
            span("result_collection", end_s - 0.5, end_s - 0.4),
            span("metric_collection", end_s - 0.1, end_s), span("undeploy", end_s, end_s,
                                                                 energy=0)]


def test_region_table_and_unknown_regions():
    assert carbon.region("France").g_per_kwh == 56 and carbon.region("world").year == 2023
    w = wl.from_mapping({"energy": {"carbon_region": "atlantis"}}, "w.yaml")
    with pytest.raises(WorkloadError, match=r"energy\.carbon_region: expected a region of "
                                            r"the shipped table: world, australia"):
        carbon.check(w)


def test_csv_series_parses_iso_and_unix_times_and_names_bad_lines(tmp_path):
    path = tmp_path / "ci.csv"
    path.write_text("timestamp,gco2_per_kwh\n2023-11-14T22:13:20Z,100\n1700000005,500\n"
                    "# a comment\n2023-11-14T22:13:10,50\n")
    rows = carbon.read_series(path)
    assert rows == [(T0 - 10, 50.0), (T0, 100.0), (T0 + 5, 500.0)]  # sorted, naive is UTC
    path.write_text("2023-11-14T22:13:20Z,100\nyesterday,200\n")
    with pytest.raises(WorkloadError, match="line 2: an ISO 8601 or unix timestamp"):
        carbon.read_series(path)
    path.write_text("1700000000,-1\n")
    with pytest.raises(WorkloadError, match="line 1: a finite intensity ≥ 0"):
        carbon.read_series(path)
    with pytest.raises(WorkloadError, match="a readable UTF-8 CSV file"):
        carbon.read_series(tmp_path / "missing.csv")


@pytest.mark.parametrize("text, needle", [
    ("1700000000,100\n1700000005," + "9" * 200_000 + "\n", "line 2: CSV of timestamp,"
     "gCO2eq/kWh (field larger than field limit (131072))"),
    ("1700000000,100\n17000\x0000005,200\n", "line 2: an ISO 8601 or unix timestamp"),
])
def test_a_series_that_is_not_csv_is_a_clear_error(tmp_path, text, needle):
    """Issue 20: a field past csv.field_size_limit (128 KiB) was a traceback."""
    path = tmp_path / "ci.csv"
    path.write_text(text)
    with pytest.raises(WorkloadError) as err:
        carbon.read_series(path)
    assert needle in str(err.value) and str(path) in str(err.value)
    assert err.value.key == "energy.carbon_series"


def test_series_path_is_relative_to_the_workload_file(tmp_path):
    (tmp_path / "grid.csv").write_text("1700000000,123\n")
    (tmp_path / "w.yaml").write_text("energy: {carbon_series: grid.csv}\n")
    w = wl.load(tmp_path / "w.yaml")
    carbon.check(w)
    rec = carbon.record(w, T0 + 1, T0 + 2, 0)
    assert rec["source"] == f"series:{tmp_path / 'grid.csv'}" and rec["series"] == [[T0, 123.0]]


def test_energy_weighted_cint_known_answer():
    """100 J at 100 g/kWh in the first 5 s, 300 J at 500 g/kWh in the next 5 s: 400."""
    offset = int(T0 * 1e9)
    rec = {"source": "series:x", "series": [[T0 - 60, 100.0], [T0 + 5, 500.0]],
           "wall_offset_ns": offset}
    w = wl.from_mapping({})
    m = metrics.compute(w, lifecycle(10), [], trace(rec, [20] * 5 + [60] * 5))
    assert m.energy_j == pytest.approx(400.0)
    assert m.cint_g_per_kwh == pytest.approx((100 * 100 + 300 * 500) / 400)
    assert m.co2_g == pytest.approx(400 / 3.6e6 * 400)
    flat = metrics.compute(w, lifecycle(10), [], trace({"source": "region:france",
                                                        "g_per_kwh": 56.0}, [40] * 10))
    assert flat.cint_g_per_kwh == 56.0


def test_pue_applies_to_every_energy_figure_feeding_carbon_and_cost():
    base = {"energy": {"carbon_intensity": 400}, "workers": {"count": 1},
            "prices": {"usd_per_kwh": 0.2, "usd_per_worker_hour": 0}}
    trials = [trial(0, 0, 1, 5, energy=40.0), trial(1, 0, 5, 9, state="failed", value=None,
                                                    energy=40.0)]
    results = {}
    for pue in (1.0, 1.5):
        w = wl.from_mapping({**base, "energy": {**base["energy"], "pue": pue}})
        results[pue] = metrics.compute(w, lifecycle(10), trials,
                                       trace({"source": "fixed", "g_per_kwh": 400}, [10] * 10))
    one, more = results[1.0], results[1.5]
    for key in ("energy_j", "energy_kwh", "co2_g", "oc_usd", "twh_kwh", "wte_kwh", "wtc_usd"):
        assert getattr(more, key) == pytest.approx(1.5 * getattr(one, key)), key
    assert one.co2_g == pytest.approx(100 / 3.6e6 * 400)
    assert one.oc_usd == pytest.approx(100 / 3.6e6 * 0.2)


def test_option_takes_a_number_a_region_or_a_csv(tmp_path):
    assert _carbon("--basht-carbon-intensity", "12.5") == 12.5
    assert _carbon("--basht-carbon-intensity", "France") == "france"
    assert str(_carbon("--basht-carbon-intensity", "grid.csv")) == "grid.csv"
    with pytest.raises(OptionError, match=r"a region \(world, australia"):
        _carbon("--basht-carbon-intensity", "atlantis")
    options = BashtOptions(None, tmp_path, None, "france", None, None)
    assert options.workload_overrides() == {"energy.carbon_region": "france",
                                            "energy.carbon_series": None}
    options = BashtOptions(None, tmp_path, None, 300.0, None, None)
    assert options.workload_overrides()["energy.carbon_series"] is None


def test_a_run_in_a_region_and_with_a_series(pytester):
    pytester.makeconftest(CONFTEST)
    now = datetime.now(timezone.utc).timestamp()
    pytester.makefile(".csv", grid=f"{now - 3600:.0f},200\n{now + 3600:.0f},800\n")
    pytester.makefile(".yaml", w=workload([1, 2], epochs=1, extra="energy: {pue: 1.2}\n"))
    pytester.makepyfile(SCENARIO)
    for arg, expected in (("france", 56.0), ("grid.csv", 200.0)):
        result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                               "--basht-carbon-intensity", arg)
        result.assert_outcomes(passed=1)
        report = json.loads((pytester.path / "reports" / "latest" / "report.json").read_text())
        sc = report["scenarios"][0]
        m = sc["metrics"]
        assert m["cint_g_per_kwh"] == pytest.approx(expected)
        assert m["co2_g"] == pytest.approx(m["energy_kwh"] * expected)
        md = (pytester.path / "reports" / "latest" / "report.md").read_text()
        assert f"CINT {expected:g} gCO2eq/kWh" in md
    assert sc["energy"]["carbon"]["source"].startswith("series:")

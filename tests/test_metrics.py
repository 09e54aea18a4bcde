"""Table 2 on hand-built records, every key checked against numbers worked out by hand."""

from __future__ import annotations

import pytest
from conftest import flat_trace, span, trial

from pytest_basht import metrics
from pytest_basht import workload as wl


@pytest.fixture
def scenario():
    workload = wl.from_mapping({
        "workers": {"count": 2},
        "goal": {"target": 0.7},
        "energy": {"pue": 1.5, "carbon_intensity": 400, "zeus_eta": 0.5},
        "prices": {"usd_per_worker_hour": 3.6, "usd_per_kwh": 1.0},
    })
    spans = [
        span("deploy", 0, 1, energy=10), span("setup", 1, 2),
        span("result_collection", 10, 10.5), span("test", 10.5, 11),
        span("metric_collection", 11, 12), span("undeploy", 12, 13, energy=10),
    ]
    t0 = trial(0, 0, 2, 6, value=0.8, energy=100, intermediate=[0.6, 0.8], params={"x": 0})
    t0.spans[0].end_ns = int(4e9)  # epoch 0 (0.6) validated at 4 s, epoch 1 (0.8) at 6 s
    t1 = trial(1, 1, 2, 4, state="failed", value=None, energy=50, params={"x": 1})
    t2 = trial(2, 1, 4, 8, state="pruned", value=0.3, energy=80, params={"x": 2})
    t3 = trial(3, 0, 6.5, 10, value=0.75, energy=90, params={"x": 0})
    trace = flat_trace(100.0, 1, 12, idle_w=20.0, max_w=100.0, slots=2)
    return workload, spans, [t0, t1, t2, t3], trace


def test_table2_known_answers(scenario):
    m = metrics.compute(*scenario)
    approx = pytest.approx
    assert m.jct_ms == approx(13_000)
    assert m.energy_j == approx(1680)                      # (10 + 1100 + 10) × 1.5
    assert m.energy_kwh == approx(1680 / 3.6e6)
    assert m.twh_kwh == approx(80 * 1.5 / 3.6e6)            # mean trial energy × PUE
    assert m.trial_power_w == approx(480 / 13.5)
    assert m.cint_g_per_kwh == 400
    assert m.co2_g == approx(1680 / 3.6e6 * 400)
    assert m.oc_usd == approx(2 * 13 / 3600 * 3.6 + 1680 / 3.6e6)
    assert m.wtt_ms == approx(9_500)                        # failed 2 s + pruned 4 s + dup 3.5 s
    assert m.wte_kwh == approx(220 * 1.5 / 3.6e6)
    assert m.wtc_usd == approx(9.5 / 3600 * 3.6 + 330 / 3.6e6)
    assert m.wr_pct == approx((0.5 + 2.0) * 10 * 1.5 / 1680 * 100)
    assert m.zeus_cost == approx(0.5 * 1680 + 0.5 * 150 * 13)
    assert m.tta_ms == approx(6_000)                        # deploy 1 s + (6 − 1) s
    assert m.eta_j == approx((10 + 500) * 1.5)
    assert (m.trials, m.complete, m.pruned, m.failed, m.duplicate) == (4, 2, 1, 1, 1)
    assert not m.provisional


def test_waste_per_category(scenario):
    w = metrics.compute(*scenario).waste
    assert w["failed"].trials == 1 and w["failed"].time_ms == pytest.approx(2000)
    assert w["pruned"].energy_kwh == pytest.approx(80 * 1.5 / 3.6e6)
    assert w["duplicate"].trials == 1 and w["after_target"].trials == 1
    assert w["total"].trials == 3


def test_without_undeploy_the_metrics_are_provisional(scenario):
    workload, spans, trials, trace = scenario
    m = metrics.compute(workload, [s for s in spans if s.phase != "undeploy"], trials, trace)
    assert m.provisional and m.jct_ms == pytest.approx(12_000)


def test_no_target_no_tta(scenario):
    workload, spans, trials, trace = scenario
    m = metrics.compute(wl.resolve(workload, {"goal.target": None}), spans, trials, trace)
    assert m.tta_ms is None and m.eta_j is None and m.waste["after_target"].trials == 0


def test_minimize_goal_target():
    w = wl.from_mapping({"goal": {"metric": "loss", "direction": "minimize", "target": 0.2}})
    t = trial(0, 0, 0, 1, value=0.3, intermediate=[0.5, 0.1])
    assert metrics.target_time_ns([t], w) is not None
    assert w.goal.met(0.1) and not w.goal.met(0.3)


def test_duplicates_follow_start_order_and_skip_failed_originals():
    a = trial(0, 0, 0, 1, params={"p": 1}, state="failed", value=None)
    b = trial(1, 1, 2, 3, params={"p": 1})
    c = trial(2, 0, 2.5, 3, params={"p": 1})
    assert metrics.duplicates([c, b, a]) == {2}


def test_busy_time_is_a_clipped_union():
    assert metrics.busy_ns([(0, 5), (3, 8), (10, 12)], 2, 11) == 6 + 1
    assert metrics.busy_ns([], 0, 10) == 0


def test_no_trials_is_finite():
    w = wl.from_mapping({})
    m = metrics.compute(w, [span("setup", 0, 1), span("metric_collection", 1, 2)], [],
                        flat_trace(10, 0, 2))
    assert m.twh_kwh == 0 and m.trial_power_w == 0 and m.wr_pct == 0
    assert m.energy_j == pytest.approx(20)


def test_per_phase_figures_known_answers(scenario):
    phases = metrics.compute(*scenario).phases
    approx = pytest.approx
    assert set(phases) == set(metrics.PHASE_KEYS)
    assert phases["deploy.time_ms"] == approx(1000)
    assert phases["deploy.energy_kwh"] == approx(10 * 1.5 / 3.6e6)
    assert phases["undeploy.energy_kwh"] == approx(10 * 1.5 / 3.6e6)
    assert phases["setup.time_ms"] == approx(1000) and phases["setup.energy_kwh"] == 0
    assert phases["trials.time_ms"] == approx(8000)          # setup end 2 s → collection 10 s
    assert phases["trials.energy_kwh"] == approx(320 * 1.5 / 3.6e6)   # the trials' own energy
    assert phases["trials.cpu_s"] == approx(4 + 2 + 4 + 3.5)
    assert phases["metric_collection.time_ms"] == approx(1000)
    assert phases["trial.validate.time_ms"] == 0  # the hand-built validations take no time
    assert phases["trial.train.time_ms"] is None  # no trial recorded that phase


def test_per_phase_trials_window_without_lifecycle_spans():
    workload = wl.from_mapping({"workers": {"count": 1}})
    t0, t1 = trial(0, 0, 1, 3, energy=36.0), trial(1, 0, 3, 7, energy=72.0)
    phases = metrics.phase_metrics(workload, [], [t0, t1])
    assert phases["trials.time_ms"] == pytest.approx(6000)  # first start → last end
    assert phases["trials.energy_kwh"] == pytest.approx(108 / 3.6e6)
    assert phases["deploy.time_ms"] is None and phases["setup.energy_kwh"] is None
    assert all(v is None for v in metrics.phase_metrics(workload, [], []).values())


# ----------------------------------------------------------------------------- waste, exactly


@pytest.fixture
def waste_case():
    """Target 0.7. #0 reaches it at its second epoch and ends at 5 s; #1 ran across that
    (started 4 s); #2 failed; #3 pruned; #4 repeats #1's params; #5 and #6 start after 5 s
    (#6 the best, 0.95); #7 repeats #6 after it and fails."""
    w = wl.from_mapping({"goal": {"target": 0.7}})
    trials = [
        trial(0, 0, 0, 5, value=0.8, intermediate=[0.6, 0.8], params={"x": 0}),
        trial(1, 1, 4, 9, value=0.5, params={"x": 1}),
        trial(2, 1, 1, 3, state="failed", value=None, params={"x": 2}),
        trial(3, 0, 2, 3, state="pruned", value=0.1, params={"x": 3}),
        trial(4, 0, 4.5, 6, value=0.5, params={"x": 1}),
        trial(5, 0, 6, 7, value=0.6, params={"x": 5}),
        trial(6, 1, 9.5, 11, value=0.95, params={"x": 6}),
        trial(7, 0, 12, 13, state="failed", value=None, params={"x": 6}),
    ]
    return w, trials


def test_each_waste_category_holds_exactly_these_trials(waste_case):
    w, trials = waste_case
    assert metrics.target_cutoff_ns(trials, w) == int(5e9)
    cats = metrics.waste_categories(w, trials, best=6)
    assert cats == {0: [], 1: [], 2: ["failed"], 3: ["pruned"], 4: ["duplicate"],
                    5: ["after_target"], 6: [], 7: ["failed", "duplicate", "after_target"]}


def test_the_best_trial_is_never_waste(waste_case):
    w, trials = waste_case
    # without naming the best, #6 started after the target was met: after_target
    assert metrics.waste_categories(w, trials)[6] == ["after_target"]
    trace = flat_trace(10.0, 0, 13, slots=2)
    m = metrics.compute(w, [], trials, trace, best=6)
    assert m.waste["after_target"].trials == 2 and m.waste["total"].trials == 5
    # a best that is a repeat of earlier params is no duplicate either
    again = trial(8, 1, 13, 14, value=0.99, params={"x": 0})
    assert metrics.waste_categories(w, [*trials, again], best=8)[8] == []
    assert metrics.waste_categories(w, [*trials, again], best=6)[8] == [
        "duplicate", "after_target"]


def test_no_target_no_after_target(waste_case):
    w, trials = waste_case
    free = wl.resolve(w, {"goal.target": None})
    assert metrics.target_cutoff_ns(trials, free) is None
    assert all("after_target" not in c for c in metrics.waste_categories(free, trials).values())


def test_waste_figures_as_gate_keys(scenario):
    m = metrics.compute(*scenario)
    values = metrics.waste_values(m.to_dict()["waste"])
    assert set(values) == set(metrics.WASTE_KEYS)
    assert values["waste.failed_kwh"] == pytest.approx(50 * 1.5 / 3.6e6)
    assert values["waste.failed_ms"] == pytest.approx(2000)
    assert values["waste.total_trials"] == 3
    assert metrics.WASTE_UNITS["waste.after_target_kwh"] == "kWh"

"""The scenario's energy trace (``energy.trace``), on hand-built timelines: where a
scenario's window starts (a deploy made for it, or not), the estimate's band, and the
trials' attributed shares adding up to what the machine drew."""

from __future__ import annotations

import pytest

from pytest_basht import workload as wl
from pytest_basht.energy import trace
from pytest_basht.energy.sampler import Mark, Timeline
from pytest_basht.records import Span, TrialRecord

S = 1_000_000_000


class Monitor:
    """What ``trace.snapshot`` reads of a monitor: a mark, a settle and the timeline."""

    def __init__(self, points: list[tuple[float, float, float]]) -> None:
        self.timeline = Timeline()
        for t_s, joules, cpu_s in points:
            self.timeline.append(Mark(round(t_s * S), joules, cpu_s))
        self.calls: list[str] = []

    def mark(self) -> None:
        self.calls.append("mark")

    def settle(self, until_ns: int | None = None) -> None:
        self.calls.append("settle")


def scenario(deploy_end_s: float, setup_start_s: float) -> list[Span]:
    return [Span("deploy", 0, round(deploy_end_s * S)),
            Span("setup", round(setup_start_s * S), round((setup_start_s + 1) * S))]


EVERY_SECOND = [(float(t), 10.0 * t, 0.5 * t) for t in range(21)]


def test_a_deploy_made_for_the_scenario_opens_its_window():
    spans = scenario(deploy_end_s=2, setup_start_s=4)  # setup 2 s after the deploy
    assert trace.scenario_start(spans, []) == 0
    monitor = Monitor(EVERY_SECOND)
    snap = trace.snapshot(monitor, spans, [])
    assert monitor.calls == ["mark", "settle"]
    assert snap["t_ns"][0] == 0 and snap["t_ns"][-1] == 20 * S


def test_a_reused_deployment_is_left_out_of_the_window():
    spans = scenario(deploy_end_s=2, setup_start_s=12)  # deployed 10 s before: reused
    assert trace.scenario_start(spans, []) == 12 * S
    snap = trace.snapshot(Monitor(EVERY_SECOND), spans, [])
    assert snap["t_ns"][0] == 12 * S
    # the rule's edge: exactly ADJACENT_NS after the deploy is no longer adjacent
    edge = scenario(deploy_end_s=2, setup_start_s=2 + trace.ADJACENT_NS / S)
    assert trace.scenario_start(edge, []) == 7 * S


def test_a_trial_before_setup_starts_the_window_and_no_span_at_all_is_zero():
    spans = scenario(deploy_end_s=2, setup_start_s=12)
    early = TrialRecord(0, {}, "complete", 1.0, worker=0, start_ns=9 * S, end_ns=11 * S)
    assert trace.scenario_start(spans, [early]) == 9 * S
    assert trace.scenario_start([], []) == 0
    deploy_only = [Span("deploy", 3 * S, 4 * S)]  # its end starts it: adjacent to itself
    assert trace.scenario_start(deploy_only, []) == 3 * S


def test_the_band_is_a_factor_of_the_central_energy():
    timeline = {"t_ns": [0, S], "joules": [0.0, 10.0], "joules_low": [0.0, 5.0],
                "joules_high": [0.0, 20.0]}
    band = trace.band(timeline)
    assert (band["low"], band["high"]) == (0.5, 2.0) and band["how"] == trace.BAND_HOW
    assert trace.band(timeline, "remote")["how"] == "remote"
    assert trace.band({"t_ns": [0, S], "joules": [0.0, 10.0]}) == {}  # a measurement
    assert trace.band({**timeline, "joules": [0.0, 0.0]}) == {}  # nothing drawn


def test_trials_get_their_share_and_the_shares_add_up():
    # 10 W for 10 s, 10 CPU seconds; idle 2 W over two slots
    timeline = {"t_ns": [0, 10 * S], "joules": [0.0, 100.0], "cpu_s": [0.0, 10.0]}
    spans = [Span("trial.train", 0, 10 * S, cpu_s=5.0, worker=w, trial=w) for w in (0, 1)]
    trials = [TrialRecord(w, {}, "complete", 1.0, worker=w, start_ns=0, end_ns=10 * S,
                          spans=[spans[w]], cpu_s=5.0) for w in (0, 1)]
    trace.attribute(timeline, trials, idle_power_w=2.0, slots=2, scope="process")
    # dynamic (100 J - 2 W × 10 s) × 5/10 CPU, plus the slot's idle 1 W × 10 s
    assert [t.energy_j for t in trials] == pytest.approx([50.0, 50.0])
    assert [s.energy_j for s in spans] == pytest.approx([50.0, 50.0])
    assert sum(t.energy_j for t in trials) == pytest.approx(100.0)


def test_the_window_and_its_carbon_record():
    spans = scenario(deploy_end_s=2, setup_start_s=4)
    timeline = {"t_ns": [S, 20 * S]}
    assert trace.window(spans, timeline) == (0, 20 * S)
    assert trace.window([], timeline) == (S, 20 * S)
    assert trace.window([], {}) == (0, 0)
    record = trace.carbon(wl.from_mapping({}), 0, 20 * S, wall_offset_ns=5 * S)
    assert record["g_per_kwh"] == 475  # the documented default

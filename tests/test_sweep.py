"""Convergence sweeps: the stopping rule, what counts as a step, markers, order, budgets."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from pytest_basht import budget, sweep
from pytest_basht import workload as wl
from pytest_basht.errors import BashtUsageError
from pytest_basht.sweep import Step, SweepSpec

SPEC = SweepSpec("t.py::test_mem", "workers.memory_mb", (768, 896, 1024, 1152, 1280))


def steps(*jcts: float | None, eligible: tuple[bool, ...] | None = None) -> list[Step]:
    ok = eligible or (True,) * len(jcts)
    return [Step(i, SPEC.values[i], j, e) for i, (j, e) in enumerate(zip(jcts, ok, strict=True))
            if j is not None]


def test_converges_on_the_first_pair_within_the_tolerance():
    conv = sweep.convergence(SPEC, steps(30_000, 20_000, 19_500, 19_400))
    assert conv is not None
    assert (conv.position, conv.value, conv.next_value) == (1, 896, 1024)
    assert conv.change == pytest.approx(0.025)


def test_the_tolerance_is_strict_and_relative_to_the_earlier_step():
    assert sweep.convergence(SPEC, steps(20_000, 21_000)) is None  # exactly 5%
    assert sweep.convergence(SPEC, steps(20_000, 20_999)) is not None
    assert sweep.convergence(SPEC, steps(20_000, 19_001)) is not None  # faster counts too
    loose = SweepSpec(SPEC.id, SPEC.variable, SPEC.values, tolerance=0.2)
    assert sweep.convergence(loose, steps(20_000, 23_000)) is not None


def test_a_step_that_does_not_count_breaks_the_pair():
    # 20.0 s and 19.9 s, but the second step had failed trials: no convergence there
    assert sweep.convergence(SPEC, steps(20_000, 19_900, 30_000,
                                         eligible=(True, False, True))) is None
    conv = sweep.convergence(SPEC, steps(20_000, 19_900, 19_800, 19_700,
                                         eligible=(True, False, True, True)))
    assert conv is not None and conv.value == 1024


def test_only_successive_steps_are_compared():
    ran = [Step(0, 768, 20_000, True), Step(2, 1024, 20_000, True)]  # 896 never ran here
    assert sweep.convergence(SPEC, ran) is None


def test_verdict_skips_what_follows_convergence_with_the_reason():
    ran = steps(30_000, 20_000, 19_500)
    assert sweep.verdict(SPEC, ran, 1) is None
    assert sweep.verdict(SPEC, ran, 2) is None  # the pair is only known after step 2
    reason = sweep.verdict(SPEC, ran, 3)
    assert reason == ("converged at workers.memory_mb=896: JCT 20 s vs 19.5 s at 1024 "
                      "(Δ 2.5% < 5%)")
    assert sweep.verdict(SPEC, ran, 4) == reason


def test_verdict_stops_at_the_budget_without_calling_it_converged():
    capped = SweepSpec(SPEC.id, SPEC.variable, SPEC.values, max_steps=3, budget="smoke")
    ran = steps(30_000, 20_000, 15_000)
    assert sweep.verdict(capped, ran[:2], 2) is None
    assert sweep.verdict(capped, ran, 3) == ("budget smoke: at most 3 sweep steps, not "
                                             "converged within them")


def record(position: int, jct_ms: float, *, outcome: str = "passed", status: str = "complete",
           failed: int = 0, provisional: bool = False) -> dict:
    return {"sweep": {**SPEC.to_dict(), "position": position, "value": SPEC.values[position]},
            "metrics": {"jct_ms": jct_ms, "failed": failed, "provisional": provisional},
            "outcome": outcome, "status": status}


@pytest.mark.parametrize("kwargs", [{}, {"outcome": "failed"}, {"status": "error"},
                                    {"failed": 2}, {"provisional": True}])
def test_what_counts_as_a_step(kwargs):
    step = sweep.step_of(record(1, 20_000, **kwargs))
    assert (step.position, step.value, step.measure) == (1, 896, 20_000)
    assert step.eligible is (not kwargs)


def test_summary_names_the_converged_value():
    records = [record(0, 30_000), record(1, 20_000), record(2, 19_600)]
    skipped = [{"sweep": {**SPEC.to_dict(), "position": 3}}]
    out = sweep.summary(SPEC, records, skipped)
    assert out["converged"] and out["converged_at"] == 896 and out["confirmed_by"] == 1024
    assert out["change_pct"] == pytest.approx(2.0)
    assert out["reason"].startswith("converged at workers.memory_mb=896")
    assert (out["steps_run"], out["skipped"]) == (3, 1)
    out = sweep.summary(SPEC, records[:2], [])
    assert not out["converged"] and out["converged_at"] is None
    assert out["reason"] == "not converged: no two successive steps within 5% in JCT"


def test_summary_round_trips_the_spec():
    spec = SweepSpec("a::b", "workers.cpu", (1, 2), 0.1, "energy_j", 3, "smoke")
    assert SweepSpec.from_dict(spec.to_dict()) == spec
    assert sweep.relative_change(0, 5) == math.inf


@pytest.mark.parametrize("args,kwargs,needle", [
    ((0.05,), {}, "keyword arguments only"),
    ((), {"tol": 0.05}, "unknown tol"),
    ((), {"tolerance": 5}, "a fraction between 0 and 1 (0.05 is 5%), got 5"),
    ((), {"tolerance": True}, "a fraction"),
    ((), {"tolerance": "5%"}, "a fraction"),
    ((), {"metric": "jct"}, "must be a Table 2 key"),
])
def test_marker_errors_name_the_test(args, kwargs, needle):
    with pytest.raises(BashtUsageError, match=r"t\.py::test_x: @pytest\.mark\.basht_sweep") as e:
        sweep.parse_marker("t.py::test_x", kwargs, args)
    assert needle in str(e.value)


def test_marker_defaults():
    assert sweep.parse_marker("t", {}, ()) == (0.05, "jct_ms")
    assert sweep.parse_marker("t", {"tolerance": 0.1, "metric": "energy_j"}, ()) == \
        (0.1, "energy_j")


def test_build_orders_values_by_parameter_index_and_refuses_two_variables():
    spec, positions = sweep.build("f", [("f[b]", 1, {"x": 20}), ("f[a]", 0, {"x": 10}),
                                        ("f[c]", 2, {"x": 30})],
                                  tolerance=0.05, metric="jct_ms", max_steps=None,
                                  budget="full")
    assert spec.values == (10, 20, 30) and spec.variable == "x"
    assert positions == {"f[a]": 0, "f[b]": 1, "f[c]": 2}
    with pytest.raises(BashtUsageError, match="sweeps exactly one variable"):
        sweep.build("f", [("f[a-b]", 0, {"x": 1, "y": 2})], tolerance=0.05, metric="jct_ms",
                    max_steps=None, budget="full")


def test_in_order_puts_a_shuffled_sweep_back_in_its_slots():
    items = [SimpleNamespace(nodeid=n) for n in ("s[2]", "other", "s[0]", "s[1]")]
    positions = {"s[0]": ("s", 0), "s[1]": ("s", 1), "s[2]": ("s", 2)}
    assert [i.nodeid for i in sweep.in_order(items, positions)] == \
        ["s[0]", "other", "s[1]", "s[2]"]


# ----------------------------------------------------------------------------- budgets


def test_smoke_shrinks_epochs_and_explicit_trial_budgets_only():
    smoke = budget.get("smoke")
    w = wl.from_mapping({"training": {"epochs": 9}, "search": {"sampler": "random",
                                                                "trials": 40}})
    assert smoke.overrides(w) == {"training.epochs": 3, "search.trials": 12}
    grid = wl.from_mapping({"training": {"epochs": 2}})
    assert smoke.overrides(grid) == {}, "a grid keeps its size; small epochs stay"
    assert budget.get("full").overrides(w) == {}
    assert smoke.max_sweep_steps == 3


def test_smoke_never_shrinks_what_a_scenario_varies():
    smoke = budget.get("smoke")
    w = wl.from_mapping({"training": {"epochs": 9}, "search": {"sampler": "random",
                                                                "trials": 40}})
    assert smoke.overrides(w, ["training.epochs"]) == {"search.trials": 12}
    assert smoke.overrides(w, ["training"]) == {"search.trials": 12}
    assert smoke.overrides(w, ["search"]) == {"training.epochs": 3}
    assert "not comparable" in smoke.describe()


# ----------------------------------------------------------------------------- the tracker


def tracked() -> sweep.SweepTracker:
    tracker = sweep.SweepTracker()
    tracker.add(SPEC, {f"t.py::test_mem[{v}]": i for i, v in enumerate(SPEC.values)})
    return tracker


def step_record(position: int, jct: float) -> dict:
    return {"sweep": {"position": position, "value": SPEC.values[position]},
            "metrics": {"jct_ms": jct}, "outcome": "passed", "status": "complete"}


def test_tracker_says_what_a_record_keeps_of_its_step():
    tracker = tracked()
    info = tracker.info("t.py::test_mem[1024]")
    assert info is not None and (info["position"], info["value"]) == (2, 1024)
    assert info["id"] == SPEC.id and info["tolerance"] == SPEC.tolerance
    assert tracker.info("t.py::test_other") is None


def test_tracker_verdict_asks_for_the_finished_steps_of_that_sweep_only():
    tracker = tracked()
    asked: list[str] = []

    def finished(sweep_id: str) -> list[dict]:
        asked.append(sweep_id)
        return [step_record(0, 30_000), step_record(1, 20_000), step_record(2, 19_500)]

    assert tracker.verdict("t.py::test_mem[1152]", finished).startswith(
        "converged at workers.memory_mb=896")
    assert tracker.verdict("t.py::test_mem[896]", finished) is None  # nothing before it pairs
    assert asked == [SPEC.id, SPEC.id]
    assert tracker.verdict("t.py::test_other", finished) is None and len(asked) == 2


def test_tracker_knows_the_steps_that_ran_here():
    tracker = tracked()
    assert tracker.unseen("t.py::test_mem[896]") == ["t.py::test_mem[768]"]
    tracker.done("t.py::test_mem[768]")
    tracker.done("t.py::test_other")  # not a sweep step: nothing to remember
    assert tracker.unseen("t.py::test_mem[896]") == []
    assert tracker.ran == {"t.py::test_mem[768]"}

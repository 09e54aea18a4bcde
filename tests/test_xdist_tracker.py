"""The xdist controller's bookkeeping: a worker's crash loses only the scenario it had in
flight; pytest-xdist running that scenario again clears the loss; merged records go back
into collection order."""

from __future__ import annotations

from pytest_basht.xdist_tracker import XdistTracker


def test_a_crash_loses_only_the_scenario_in_flight():
    tracker = XdistTracker()
    tracker.started("t::done", "gw0")
    tracker.ended("t::done")  # its record came home with its teardown report
    tracker.started("t::running", "gw0")
    tracker.started("t::elsewhere", "gw1")
    tracker.down("gw0", "Not properly terminated")
    assert [e["test_id"] for e in tracker.lost] == ["t::running"]
    assert tracker.lost[0]["scenario"] is True
    assert tracker.lost[0]["reason"] == "worker gw0 went down: Not properly terminated"
    assert tracker.in_flight == {"t::elsewhere": "gw1"}


def test_the_crash_report_after_the_node_went_down_updates_the_reason_only():
    tracker = XdistTracker()
    tracker.started("t::a", "gw0")
    tracker.down("gw0", "gone")
    tracker.crashed("t::a", "gw0", "worker 'gw0' crashed while running 't::a'")
    assert tracker.lost == [{"test_id": "t::a", "worker": "gw0", "scenario": True,
                             "reason": "worker 'gw0' crashed while running 't::a'"}]


def test_a_re_run_clears_the_loss_with_a_note():
    tracker = XdistTracker()
    tracker.started("t::a", "gw0")
    tracker.crashed("t::a", "gw0", "segfault")
    assert tracker.recovered({"test_id": "t::other"}) == []
    notes = tracker.recovered({"test_id": "t::a", "placement": {"worker": "gw2"}})
    assert tracker.lost == []
    assert notes == ["xdist worker gw0 crashed while running t::a (segfault); pytest-xdist "
                     "ran it again on gw2, and that run's record is kept"]


def test_records_go_back_into_collection_order():
    tracker = XdistTracker()
    records = [{"test_id": "t::b"}, {"test_id": "t::x"}, {"test_id": "t::a"}]
    assert tracker.in_order(records) == records, "no collection order: as given"
    tracker.order = ["t::a", "t::b"]
    assert [r["test_id"] for r in tracker.in_order(records)] == ["t::a", "t::b", "t::x"]

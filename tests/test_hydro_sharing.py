"""Trials running at once on one worker slot share its idle power (known answers)."""

from __future__ import annotations

import pytest
from conftest import span, trial

from pytest_basht.energy.attribution import span_energy
from pytest_basht.energy.sharing import owned_seconds, share_slot_idle


def test_owned_seconds_split_overlaps_by_the_number_of_owners():
    # a: 0-4 s, b: 0-2 s, c: 2-4 s alone with a  → a owns 1 + 1, b 1, c 1
    s = 1_000_000_000
    assert owned_seconds([("a", 0, 4 * s), ("b", 0, 2 * s), ("c", 2 * s, 4 * s)]) == \
        pytest.approx([2.0, 1.0, 1.0])
    # three members that leave one by one (a fused group with pruning)
    assert owned_seconds([(1, 0, 3 * s), (2, 0, 2 * s), (3, 0, 1 * s)]) == \
        pytest.approx([1 / 3 + 1 / 2 + 1, 1 / 3 + 1 / 2, 1 / 3])


def test_owned_seconds_counts_an_owner_once_and_leaves_sequential_intervals_whole():
    s = 1_000_000_000
    # two spans of one trial (nested) do not split with each other
    assert owned_seconds([(7, 0, 2 * s), (7, 0, 1 * s)]) == pytest.approx([2.0, 1.0])
    assert owned_seconds([(1, 0, s), (2, s, 3 * s), (3, 5 * s, 5 * s)]) == [1.0, 2.0, 0.0]


def test_sequential_trials_are_untouched():
    trials = [trial(0, 0, 0, 2, energy=5.0), trial(1, 0, 2, 5, energy=7.0),
              trial(2, 1, 0, 5, energy=9.0)]
    share_slot_idle(trials, idle_power_w=4.0, slots=2)
    assert [t.energy_j for t in trials] == [5.0, 7.0, 9.0]


def test_a_fused_group_costs_what_one_trial_running_as_long_would():
    """Four members, 10 s, 1 of 2 slots, 4 W idle, a flat 20 W draw: as one trial the slot
    would be charged idle 2 W × 10 s + its CPU share of the dynamic 16 W."""
    timeline = {"t_ns": [0, int(10e9)], "joules": [0.0, 200.0], "cpu_s": [0.0, 10.0]}
    members = [trial(n, 0, 0, 10, energy=None) for n in range(4)]
    for t in members:
        t.cpu_s = 10.0 / 4  # the group's 10 CPU seconds in equal shares
        t.spans = [span("trial.train", 0, 10, worker=0, trial=t.number, epoch=0, cpu=2.5)]
        t.energy_j = span_energy(timeline, t.start_ns, t.end_ns, t.cpu_s, 4.0, 2)
        t.spans[0].energy_j = span_energy(timeline, 0, int(10e9), 2.5, 4.0, 2)
    alone = span_energy(timeline, 0, int(10e9), 10.0, 4.0, 2)
    assert alone == pytest.approx(160.0 + 20.0)
    assert sum(t.energy_j for t in members) == pytest.approx(160.0 + 4 * 20.0)  # overcount
    share_slot_idle(members, idle_power_w=4.0, slots=2)
    assert sum(t.energy_j for t in members) == pytest.approx(alone)
    assert sum(t.spans[0].energy_j for t in members) == pytest.approx(alone)

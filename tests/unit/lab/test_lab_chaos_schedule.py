"""The chaos schedule (issue 12 item 6): seeded, every kind, never overlapping, in bounds."""

from __future__ import annotations

import itertools

import pytest

from nonstop.lab.faults import CHAOS_KINDS, GAP_S, QUICK_GAP_S, chaos_schedule


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    assert chaos_schedule(7, 600) == chaos_schedule(7, 600)
    assert chaos_schedule(7, 600) != chaos_schedule(8, 600)


def test_full_schedule_fills_the_duration_without_overlap() -> None:
    faults = chaos_schedule(12, 600)
    assert faults[0].at == 0.0
    assert faults[-1].end <= 600
    for a, b in itertools.pairwise(faults):
        assert b.at - a.end >= GAP_S[0] - 0.1  # rounding of ``at`` to 0.1 s
    # Ten minutes hold several rounds: every kind at least three times, evenly.
    counts = {k: sum(f.kind == k for f in faults) for k in CHAOS_KINDS}
    assert min(counts.values()) >= 3
    assert max(counts.values()) - min(counts.values()) <= 1


def test_fault_parameters_stay_in_the_issue_s_ranges() -> None:
    for seed in range(20):
        for f in chaos_schedule(seed, 600):
            if f.kind == "stop":
                assert 1.0 <= f.duration <= 4.0
            if f.kind == "loss":
                assert 30 <= f.percent <= 50
                assert f.direction in ("in", "out", "both")
            else:
                assert f.percent == 0
            if f.kind == "crash":
                assert f.role == "active"
            assert f.role in ("active", "standby")
            assert f.pick in (0, 1)


def test_quick_schedule_has_every_kind_once_and_is_short() -> None:
    faults = chaos_schedule(12, 60, quick=True)
    assert sorted(f.kind for f in faults) == sorted(CHAOS_KINDS)
    assert faults[-1].end < 40
    for a, b in itertools.pairwise(faults):
        assert b.at == pytest.approx(a.end + QUICK_GAP_S, abs=0.11)


def test_describe_names_kind_role_and_duration() -> None:
    loss = next(f for f in chaos_schedule(3, 600) if f.kind == "loss")
    assert loss.describe() == (f"loss {loss.percent} % {loss.direction} on the {loss.role} "
                               f"for {loss.duration:.1f} s")


def test_bad_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="duration must be positive"):
        chaos_schedule(1, 0)

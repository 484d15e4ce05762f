"""The lease book: what a node may believe about its group leases at a simulated ``now``."""

from __future__ import annotations

import pytest

from nonstop.coord.lease import MIN_TTL_S, LeaseBook, LeaseState, LeaseTiming
from nonstop.coord.port import KeyHolder


@pytest.mark.parametrize(("deadtime_ms", "ttl"), [(500, MIN_TTL_S), (2000, 2), (2500, 3),
                                                  (10000, 10), (30000, 30)])
def test_ttl_is_the_deadtime_in_whole_seconds(deadtime_ms: int, ttl: int) -> None:
    t = LeaseTiming.from_deadtime(deadtime_ms)
    assert t.ttl_s == ttl
    # two renewals may fail (each bounded by rpc_timeout) before the holder stops trusting
    assert t.renew_s * 2 + t.rpc_timeout_s <= t.ttl_s - t.margin_s
    assert 0 < t.campaign_s <= t.renew_s
    # after a cut, the holder trusts its lease at least TTL - margin - renew_s: long enough
    # for an etcd election (leader's box cut off, 0.5-1.5 s in the lab) with the talk's TTL
    assert t.ttl_s - t.margin_s - t.renew_s >= 0.6 * t.ttl_s


T = LeaseTiming(ttl_s=4, renew_s=1.0, rpc_timeout_s=1.0, margin_s=1.0, campaign_s=0.2)


def book() -> LeaseBook:
    return LeaseBook("n1", T, {0: "g0", 1: "g1"})


def test_trusted_from_send_time_until_ttl_minus_margin() -> None:
    b = book()
    assert b.states(0.0) == {0: LeaseState(None, False, False), 1: LeaseState(None, False, False)}
    b.granted(7, 4, sent=10.0)
    b.acquired(0)
    b.read({"g0": KeyHolder("n1", 7), "g1": KeyHolder("n2", 9)}, sent=10.1)
    assert b.states(12.9)[0] == LeaseState("n1", True, True)
    assert b.states(12.9)[1] == LeaseState("n2", True, False)
    # etcd counts the TTL from receipt (later than 10.0); we stop believing at 13.0
    assert b.states(13.0)[0] == LeaseState("n1", True, False)
    assert b.states(14.2)[1] == LeaseState("n2", False, False)  # read older than the TTL
    b.renewed(4, sent=12.5)
    assert b.states(15.4)[0].mine and not b.states(15.5)[0].mine


def test_renewal_due_every_renew_period() -> None:
    b = book()
    assert b.renew_due(0.0)
    b.granted(7, 4, sent=10.0)
    assert not b.renew_due(10.9) and b.renew_due(11.0)


def test_lost_lease_and_foreign_keys_are_not_ours() -> None:
    b = book()
    b.granted(7, 4, sent=0.0)
    b.acquired(0)
    b.acquired(1)
    b.read({"g0": KeyHolder("n1", 7), "g1": KeyHolder("n3", 9)}, sent=0.5)  # g1 taken by n3
    assert b.owned == {0}
    b.lease_lost()
    assert b.owned == set() and not b.lease_valid(0.6)
    assert not any(s.mine for s in b.states(0.6).values())
    b.granted(8, 4, sent=1.0)
    assert b.owned == set()


def test_released_clears_our_name() -> None:
    b = book()
    b.granted(7, 4, sent=0.0)
    b.acquired(0)
    b.released(0)
    assert b.states(0.1)[0] == LeaseState(None, False, False)


def test_a_key_is_ours_exactly_under_our_current_lease() -> None:
    b = book()
    b.granted(7, 4, sent=0.0)
    # a create whose answer was lost: the read shows it, and it is ours (to keep or drop)
    b.read({"g0": KeyHolder("n1", 7), "g1": KeyHolder("n1", 6)}, sent=0.1)
    assert b.owned == {0}  # g1 names us under an earlier lease: not ours, it will expire
    assert b.states(0.2)[1] == LeaseState("n1", True, False)
    b.read({}, sent=0.3)  # deleted by hand
    assert b.owned == set()

"""Own-key self-diagnosis: failures from configured peers' addresses, over a window."""

from __future__ import annotations

import pytest

from nonstop.heartbeat.keycheck import OwnKeyCheck

PEER = "198.18.0.2"
ROGUE = "198.18.0.3"


def check(**kw: float) -> OwnKeyCheck:
    return OwnKeyCheck([PEER], window_s=kw.get("window_s", 10.0),
                       threshold=int(kw.get("threshold", 5)))


def test_failures_from_a_peer_make_the_verdict_suspect_at_the_threshold() -> None:
    c = check()
    for i in range(4):
        assert c.bad(PEER, float(i)) == []
    assert not c.verdict(3.5).suspect
    (changed,) = c.bad(PEER, 4.0)
    v = changed.verdict
    assert v.suspect and v.failures == 5 and v.sources == (PEER,)
    assert "my own key is probably wrong" in v.reason and "refusing to take over" in v.reason
    assert c.bad(PEER, 4.5) == []  # said once


def test_failures_from_other_addresses_never_count() -> None:
    c = check()
    for i in range(100):
        assert c.bad(ROGUE, i * 0.01) == []
        assert c.bad("garbage", i * 0.01) == []
    assert c.verdict(1.0).failures == 0


def test_failures_spread_wider_than_the_window_do_not_add_up() -> None:
    c = check(window_s=10.0)
    for i in range(20):
        assert c.bad(PEER, i * 3.0) == []  # at most 4 within any 10 s
    assert not c.verdict(57.0).suspect


def test_an_authenticated_peer_packet_clears_and_prevents_the_verdict() -> None:
    c = check()
    for i in range(5):
        c.bad(PEER, float(i))
    (cleared,) = c.good(PEER, 5.0)
    assert not cleared.verdict.suspect
    assert "my key is right" in cleared.verdict.reason
    # While peers authenticate, failures (a forger using a peer's address) prove nothing.
    for i in range(10):
        assert c.bad(PEER, 5.1 + i * 0.1) == []
    assert not c.verdict(6.0).suspect


def test_verdict_ends_when_failures_age_out() -> None:
    c = check()
    for i in range(5):
        c.bad(PEER, float(i))
    assert c.tick(9.9) == []  # all five still within 10 s
    (changed,) = c.tick(10.5)  # the first has aged out: four are below the threshold
    assert not changed.verdict.suspect


def test_status_keys() -> None:
    c = check(threshold=1)
    c.bad(PEER, 0.0)
    assert set(c.verdict(0.0).as_dict()) == {
        "own_key_suspect", "auth_failures_from_peers", "auth_failure_sources", "own_key_reason"}


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        OwnKeyCheck([PEER], threshold=0)
    with pytest.raises(ValueError):
        OwnKeyCheck(["not-an-ip"])


def test_the_cheap_per_packet_check_flips_exactly_when_the_verdict_does() -> None:
    """Every packet asks whether the verdict flipped without building it: a random mix of
    good and bad packets, peers and others, with time passing, must report each flip once,
    carrying the verdict of that moment, and never one that did not happen."""
    import random

    rng = random.Random(7)
    c = check(window_s=2.0, threshold=3)
    said = False
    now = 0.0
    for _ in range(3000):
        now += rng.choice((0.01, 0.2, 0.7, 2.5))
        src = rng.choice((PEER, PEER, ROGUE, "::ffff:198.18.0.2"))
        kind = rng.choice(("bad", "bad", "bad", "good", "tick"))
        got = (c.tick(now) if kind == "tick" else c.good(src, now) if kind == "good"
               else c.bad(src, now))
        truth = c.verdict(now).suspect
        if truth != said:
            assert len(got) == 1 and got[0].verdict == c.verdict(now)
            said = truth
        else:
            assert got == []


def test_the_source_of_an_accepted_packet_is_a_peer_address_from_then_on() -> None:
    """bcast and mcast name no peer address: the source of an accepted packet does."""
    c = OwnKeyCheck([])  # nothing configured, nothing in /etc/hosts
    for i in range(10):
        assert c.bad(ROGUE, i * 0.1) == []  # an unknown address proves nothing
    c.good(ROGUE, 2.0)  # ROGUE's address turns out to be a peer's
    c.keys_changed(3.0)  # and then our keys are reloaded
    events = [e for i in range(5) for e in c.bad(ROGUE, 3.1 + i * 0.2)]
    assert [e.verdict.suspect for e in events] == [True]
    assert events[0].verdict.sources == (ROGUE,)


def test_new_keys_forget_what_passed_under_the_old_ones() -> None:
    """A peer that authenticated a moment before a reload proves nothing about the new keys:
    the verdict comes within threshold failures, not a window later (after deadtime)."""
    c = check()
    c.good(PEER, 0.0)
    assert c.keys_changed(0.5) == []
    events = [e for i in range(5) for e in c.bad(PEER, 0.6 + i * 0.2)]
    assert [e.verdict.suspect for e in events] == [True]
    (cleared,) = c.good(PEER, 2.0)  # the keys agree again
    assert not cleared.verdict.suspect


def test_learned_addresses_are_bounded() -> None:
    c = OwnKeyCheck([], max_sources=3)
    for i in range(10):
        c.good(f"198.18.1.{i}", float(i))
    c.keys_changed(10.0)
    assert [e for i in range(5) for e in c.bad("198.18.1.0", 10.0 + i)] == []  # forgotten
    events = [e for i in range(5) for e in c.bad("198.18.1.9", 10.0 + i)]
    assert [e.verdict.suspect for e in events] == [True]


def test_a_suspect_verdict_holds_across_a_reload_until_a_peer_passes() -> None:
    """The right key put back: the peers still look dead until their next status, and a
    verdict cleared by the reload itself let a takeover race that status."""
    c = check()
    for i in range(5):
        c.bad(PEER, float(i))
    assert c.verdict(4.0).suspect
    assert c.keys_changed(4.5) == []  # still suspect
    assert c.verdict(4.6).suspect
    (cleared,) = c.good(PEER, 4.7)
    assert not cleared.verdict.suspect


def test_with_a_single_peer_the_verdict_does_not_blame_this_node_s_key() -> None:
    """Two nodes, one with a wrong authkeys: both see only failures, and both said "my own key
    is probably wrong", the right node too (a user trial). With one peer the verdict says
    that the two keys differ and either may be wrong; with more, the peers that agree among
    themselves make ours the likely one."""
    for peer_nodes, words in ((1, "my key and my peer's differ, and either may be the wrong "
                                  "one (compare authkeys on both nodes); refusing to take over"),
                              (2, "my own key is probably wrong (check authkeys); refusing")):
        c = OwnKeyCheck([PEER], peer_nodes=peer_nodes)
        for i in range(5):
            c.bad(PEER, float(i))
        v = c.verdict(4.0)
        assert v.suspect and words in v.reason, v.reason
        assert ("probably wrong" in v.reason) is (peer_nodes > 1)

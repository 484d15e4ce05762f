"""Membership with a simulated clock: no sleeps, every timing rule by advancing a number."""

from __future__ import annotations

import random

import pytest
from peers import TALK, Peer, of

from nonstop.config.model import Bcast, HaConfig
from nonstop.heartbeat.membership import (
    ClusterMessage,
    CommUp,
    Dropped,
    Event,
    LateHeartbeat,
    LinkChanged,
    Membership,
    MessageView,
    NodeDied,
    NodeReturned,
    PeerAdChanged,
    RexmitWanted,
    Send,
    SilenceWarning,
    StatusChanged,
)
from nonstop.heartbeat.states import IllegalTransition, NodeStatus


def started(ha: HaConfig = TALK, now: float = 0.0) -> tuple[Membership, Peer]:
    m = Membership(ha, "vpbx1-1", now, rng=random.Random(1))
    return m, Peer("vpbx1-2")


def test_first_heartbeat_goes_out_at_once_then_every_keepalive() -> None:
    m, _ = started()
    assert of(m.tick(0.0), Send)
    assert m.next_wakeup() == pytest.approx(0.2)
    assert not of(m.tick(0.1), Send)
    sent = of(m.tick(0.2), Send)
    assert len(sent) == 1
    fields = dict(sent[0].fields)  # type: ignore[attr-defined]
    assert fields == {"t": "status", "st": "up", "dt": "7d0", "protocol": "1"}


def test_no_burst_after_a_stall() -> None:
    m, _ = started()
    m.tick(0.0)
    assert len(of(m.tick(5.0), Send)) == 1
    assert m.next_wakeup() == pytest.approx(5.2)


def test_comm_up_when_every_node_heard_then_local_active() -> None:
    m, p = started()
    m.tick(0.0)
    ev = m.receive(p.status("up"), "eth0", 0.5)
    assert of(ev, CommUp)
    assert StatusChanged("vpbx1-1", NodeStatus.UP, NodeStatus.ACTIVE, local=True) in ev
    assert StatusChanged("vpbx1-2", NodeStatus.INIT, NodeStatus.UP) in ev
    assert LinkChanged("vpbx1-2", "eth0", True) in ev
    # the status change is announced at once, not at the next keepalive
    assert any(dict(s.fields)["st"] == "active" for s in of(ev, Send))  # type: ignore[attr-defined]


def test_initdead_applies_until_comm_up() -> None:
    m, _ = started()
    m.tick(0.0)
    assert not of(m.tick(119.9), NodeDied)
    ev = m.tick(120.0)
    died = of(ev, NodeDied)
    assert died == [NodeDied("vpbx1-2", "timeout", 120000, 120000)]
    assert of(ev, CommUp)  # declared dead counts for comm up


def test_view_counts_down_to_the_declaration() -> None:
    """Status says when a silent peer is declared dead: initdead left, then deadtime left."""
    m, p = started()
    m.tick(0.0)
    assert m.view(25.5).node("vpbx1-2").dead_in_ms == 94500
    assert m.view(25.5).node("vpbx1-1").dead_in_ms is None
    m.receive(p.status("up"), "eth0", 30.0)
    assert m.view(30.5).node("vpbx1-2").dead_in_ms == 1500
    assert m.view(33.0).node("vpbx1-2").dead_in_ms == 0  # overdue: never negative
    m.tick(32.0)
    assert m.view(32.0).node("vpbx1-2").dead_in_ms is None


def test_dead_exactly_deadtime_after_last_status() -> None:
    m, p = started()
    m.tick(0.0)
    for i in range(10):
        m.receive(p.status(), "eth0", 0.1 + i * 0.2)
    last = 0.1 + 9 * 0.2
    assert m.next_wakeup() <= last + 2.0
    assert not of(m.tick(last + 1.999), NodeDied)
    ev = m.tick(last + 2.0)
    assert of(ev, NodeDied)
    assert LinkChanged("vpbx1-2", "eth0", False) in ev
    assert m.view(last + 2.0).node("vpbx1-2").status is NodeStatus.DEAD
    # a shell that sleeps until next_wakeup() declares death exactly on the deadline
    m2, p2 = started()
    m2.tick(0.0)
    m2.receive(p2.status(), "eth0", 1.0)
    t = 0.0
    for _ in range(100):
        t = m2.next_wakeup()
        if of(m2.tick(t), NodeDied):
            break
    assert t == pytest.approx(3.0)


def test_peer_advertised_deadtime_is_honoured() -> None:
    m, p = started()
    m.tick(0.0)
    m.receive(p.status(dt=5000), "eth0", 1.0)
    assert not of(m.tick(3.5), NodeDied)
    assert of(m.tick(6.0), NodeDied)


def test_warntime_late_heartbeat_and_early_silence_warning() -> None:
    m, p = started()
    m.tick(0.0)
    m.receive(p.status(), "eth0", 1.0)
    ev = m.tick(2.0)
    assert of(ev, SilenceWarning) == [SilenceWarning("vpbx1-2", 1000)]
    assert not of(m.tick(2.1), SilenceWarning)  # once per silence
    ev = m.receive(p.status(), "eth0", 2.5)
    assert of(ev, LateHeartbeat) == [LateHeartbeat("vpbx1-2", 1500)]
    assert not of(m.receive(p.status(), "eth0", 2.7), LateHeartbeat)


def test_silent_on_one_medium_only_is_not_dead() -> None:
    m, p = started()
    m.tick(0.0)
    m.receive(p.status(), "eth0", 0.0)
    t = 0.0
    for _ in range(20):
        t += 0.2
        m.receive(p.status(), "eth1", t)
    ev = m.tick(t)
    assert not of(ev, NodeDied)
    assert LinkChanged("vpbx1-2", "eth0", False) in ev
    assert m.view(t).node("vpbx1-2").links == {"eth0": False, "eth1": True}


def test_duplicates_across_media_are_processed_once() -> None:
    m, p = started()
    m.tick(0.0)
    msg = p.status()
    m.receive(msg, "eth0", 0.1)
    ev = m.receive(msg, "eth1", 0.1)
    assert not of(ev, StatusChanged)
    assert m.counters["duplicate"] == 1
    assert LinkChanged("vpbx1-2", "eth1", True) in ev


def test_replay_of_an_older_generation_is_dropped_and_counted() -> None:
    m, p = started()
    m.tick(0.0)
    m.receive(p.status(), "eth0", 0.1)
    old = Peer("vpbx1-2", gen=6)
    ev = m.receive(old.status(), "eth0", 0.2)
    assert of(ev, Dropped) and m.counters["replay"] == 1


def test_unknown_node_and_missing_fields_are_dropped() -> None:
    m, _ = started()
    assert m.receive(Peer("intruder").status(), "eth0", 0.1)
    assert m.counters["unknown_node"] == 1
    m.receive(MessageView([("t", "status")]), "eth0", 0.1)
    assert m.counters["missing_fields"] == 1


def test_own_packets_are_self_liveness_not_a_peer() -> None:
    m, _ = started()
    assert m.receive(Peer("vpbx1-1").status(), "eth0", 0.3) == []
    assert m.self_heard("eth0") == 0.3


def test_partition_heal_and_restart_are_told_apart() -> None:
    m, p = started()
    m.tick(0.0)
    m.receive(p.status(), "eth0", 0.0)
    m.tick(2.0)  # dead
    ev = m.receive(p.status(), "eth0", 12.0)
    assert NodeReturned("vpbx1-2", "partition") in ev
    assert StatusChanged("vpbx1-2", NodeStatus.DEAD, NodeStatus.ACTIVE) in ev
    m.tick(14.0)  # dead again
    reborn = Peer("vpbx1-2", gen=8)
    ev = m.receive(reborn.status("up"), "eth0", 20.0)
    assert NodeReturned("vpbx1-2", "restart") in ev
    assert StatusChanged("vpbx1-2", NodeStatus.DEAD, NodeStatus.UP) in ev


def test_restart_faster_than_deadtime_is_detected_by_generation() -> None:
    m, p = started()
    m.tick(0.0)
    m.receive(p.status(), "eth0", 0.0)
    reborn = Peer("vpbx1-2", gen=8)
    ev = m.receive(reborn.status("up"), "eth0", 0.5)
    assert NodeReturned("vpbx1-2", "restart") in ev
    assert StatusChanged("vpbx1-2", NodeStatus.ACTIVE, NodeStatus.UP) in ev


def test_graceful_leave_is_seen_without_waiting_for_deadtime() -> None:
    m, p = started()
    m.tick(0.0)
    m.receive(p.status(), "eth0", 0.0)
    ev = m.receive(p.msg(("t", "shutdone"), ("st", "dead")), "eth0", 0.3)
    assert of(ev, NodeDied) == [NodeDied("vpbx1-2", "shutdown", 300, 2000)]
    # when it comes back with a new generation that is a plain rejoin
    ev = m.receive(Peer("vpbx1-2", gen=8).status("up"), "eth0", 5.0)
    assert not of(ev, NodeReturned)
    assert StatusChanged("vpbx1-2", NodeStatus.DEAD, NodeStatus.UP) in ev


def test_our_leave_sends_shutdone_and_stops_heartbeats() -> None:
    m, _ = started()
    m.tick(0.0)
    ev = m.leave()
    sends = of(ev, Send)
    assert dict(sends[0].fields) == {"t": "shutdone", "st": "dead"}  # type: ignore[attr-defined]
    assert m.local_status is NodeStatus.DEAD
    assert m.tick(10.0) == []
    assert m.leave() == []


def test_a_peer_heard_after_we_left_before_comm_up_changes_nothing() -> None:
    """Stopped during initdead, before the peer was heard: its first status, arriving before
    we exit, used to bring comm up and raise IllegalTransition (dead -> active)."""
    m, p = started()
    m.tick(0.0)
    m.leave()
    ev = m.receive(p.status(), "eth0", 0.5)
    assert not of(ev, CommUp) and not of(ev, Send)
    assert m.local_status is NodeStatus.DEAD and not m.comm_up


def test_reqnodes_from_a_heartbeat_peer_gets_repnodes() -> None:
    m, p = started()
    ev = m.receive(p.msg(("t", "reqnodes"), ("dest", "vpbx1-1")), "eth0", 0.1)
    (rep,) = [s for s in of(ev, Send) if dict(s.fields)["t"] == "repnodes"]  # type: ignore[attr-defined]
    assert rep.fields == (  # type: ignore[attr-defined]
        ("dest", "vpbx1-2"),
        ("t", "repnodes"),
        ("nodelist", "vpbx1-1 vpbx1-2 "),
        ("delnodelist", " "),
    )


def test_acks_about_every_tenth_sequenced_message() -> None:
    m, p = started()
    acks = 0
    for i in range(100):
        ev = m.receive(p.status(), "eth0", i * 0.2)
        sends = [e for e in ev if isinstance(e, Send)]
        acks += sum(1 for s in sends if dict(s.fields)["t"] == "NS_ackmsg")
    assert acks == 10


def test_other_messages_go_up_to_the_failover_layer() -> None:
    m, p = started()
    ev = m.receive(p.msg(("t", "resource"), ("rsc_hold", "all")), "eth0", 0.1)
    (cm,) = of(ev, ClusterMessage)
    assert cm.msg.get("rsc_hold") == "all"  # type: ignore[attr-defined]
    ev = m.receive(p.msg(("t", "resource"), ("dest", "vpbx1-3")), "eth0", 0.2)
    assert not of(ev, ClusterMessage)


def test_status_extra_fields_are_visible_in_the_view() -> None:
    m, p = started()
    m.receive(
        p.msg(("t", "status"), ("st", "active"), ("dt", "7d0"), ("protocol", "1"), ("nsh", "g1")),
        "eth0",
        0.1,
    )
    assert m.view(0.1).node("vpbx1-2").fields == {"nsh": "g1"}


def test_a_change_of_a_peers_extra_status_fields_is_an_event() -> None:
    m, p = started()

    def status(*extra: tuple[str, str]) -> list[object]:
        msg = p.msg(("t", "status"), ("st", "active"), ("dt", "7d0"), ("protocol", "1"), *extra)
        return of(m.receive(msg, "eth0", 0.1), PeerAdChanged)

    assert status() == []  # none before, none now
    assert status(("nsh", "g1")) == [PeerAdChanged("vpbx1-2")]
    assert status(("nsh", "g1")) == []  # the same ad again: nothing new
    assert status(("nsh", "g1"), ("nse", "2")) == [PeerAdChanged("vpbx1-2")]
    assert status() == [PeerAdChanged("vpbx1-2")]  # it dropped its ad


def test_status_fields_of_a_higher_layer_ride_on_every_status() -> None:
    m, _ = started()
    assert not m.set_status_fields((("nsh", "g1"),))  # the first: with the next keepalive
    assert dict(m.status_message().fields)["nsh"] == "g1"
    assert not m.set_status_fields((("nsh", "g1"),))  # unchanged
    assert m.set_status_fields((("nsh", "none"),))  # changed: a status must go at once
    assert m.view(0.0).node("vpbx1-1").fields == {"nsh": "none"}


def test_view_reports_last_heard_even_after_death() -> None:
    m, p = started()
    m.tick(0.0)
    m.receive(p.status(), "eth0", 1.0)
    m.tick(3.0)
    v = m.view(4.0)
    assert v.node("vpbx1-2").last_heard_ago_ms == 3000
    assert v.alive() == ("vpbx1-1",)


def test_local_node_must_be_configured() -> None:
    with pytest.raises(ValueError, match="not in configuration"):
        Membership(TALK, "vpbx1-9", 0.0)


def test_illegal_local_transition_raises() -> None:
    m, _ = started()
    m.leave()
    with pytest.raises(IllegalTransition):
        m._set_local(NodeStatus.ACTIVE)


def test_three_nodes_comm_up_waits_for_all() -> None:
    ha = HaConfig(
        path="ha.cf", nodes=("a", "b", "c"), media=(Bcast("eth0"),), keepalive_ms=100,
        deadtime_ms=1000, warntime_ms=500, initdead_ms=5000,
    )
    m = Membership(ha, "a", 0.0)
    assert not of(m.receive(Peer("b").status(), "eth0", 0.1), CommUp)
    assert of(m.receive(Peer("c").status(), "eth0", 0.2), CommUp)


def test_a_gap_in_sequence_numbers_asks_for_a_retransmission() -> None:
    m, p = started()
    m.receive(p.status(), "eth0", 0.0)
    p.seq += 3  # three messages lost
    ev = m.receive(p.status(), "eth0", 0.2)
    assert RexmitWanted("vpbx1-2", 2, 4) in ev
    assert m.counters["lost"] == 3


def statuses(events: list[Event]) -> list[dict[str, object]]:
    """The status messages among ``events`` (acks aside), as field dicts."""
    return [f for f in (dict(s.fields) for s in of(events, Send)) if f["t"] == "status"]  # type: ignore[attr-defined]


def test_a_peer_status_shortly_before_ours_is_due_sends_ours_in_the_same_turn() -> None:
    # One node of a pair then wakes for the peer's heartbeats only: ours rides along.
    m, p = started()
    m.tick(0.0)
    m.receive(p.status("up"), "eth0", 0.01)  # comm up: our change went out at once
    m.tick(0.2)  # the keepalive: next due at 0.4
    assert not statuses(m.receive(p.status("up"), "eth0", 0.25))  # 150 ms early: not yet
    assert len(statuses(m.receive(p.status("up"), "eth0", 0.35))) == 1  # 50 ms early: now
    # The next keepalive counts from this one, with a little slack for the peer's next.
    assert m.next_wakeup() == pytest.approx(0.35 + 0.2 * 1.05)
    assert not statuses(m.tick(0.4))
    # The peer's next status, a keepalive later, comes before our timer and carries ours.
    assert statuses(m.receive(p.status("up"), "eth0", 0.55))
    assert m.next_wakeup() == pytest.approx(0.55 + 0.2 * 1.05)
    # Without the peer our own timer sends, never later than keepalive + slack.
    assert not statuses(m.tick(0.55 + 0.2))
    assert statuses(m.tick(0.55 + 0.21))


def test_a_status_change_sent_at_once_is_not_doubled_by_an_early_status() -> None:
    m, p = started()
    m.tick(0.0)
    ev = m.receive(p.status("up"), "eth0", 0.15)  # comm up: "active" announced at once
    assert [s["st"] for s in statuses(ev)] == ["active"]

"""Replays of a dead node's packets stay replays (issue 9), across its death and our restart.

Heartbeat forgets a node's last sequence number when it declares it dead, so one captured
status packet of a crashed node, replayed every few seconds, brought it "back after partition"
each time and made the survivor give the VIP up. Simulated clock, no sleeps.
"""

from __future__ import annotations

import random

from peers import TALK_INITDEAD_5 as TALK
from peers import Peer, of

from nonstop.heartbeat.membership import (
    Dropped,
    Membership,
    NodeDied,
    NodeReturned,
    RexmitWanted,
    StatusChanged,
)
from nonstop.heartbeat.states import NodeStatus


def started(**kw: object) -> Membership:
    m = Membership(TALK, "vpbx1-1", 0.0, rng=random.Random(3), **kw)  # type: ignore[arg-type]
    m.tick(0.0)
    return m


def test_a_captured_packet_of_a_crashed_node_is_a_replay_after_every_death() -> None:
    m = started()
    p = Peer()
    for i in range(5):
        m.receive(p.status(), "eth0", 0.1 * i)
    captured = p.status()
    m.receive(captured, "eth0", 0.5)
    assert of(m.tick(2.5), NodeDied)  # it crashed: silence for deadtime
    for k in range(5):  # replayed every 4 s
        now = 4.0 + 4 * k
        ev = m.receive(captured, "eth0", now)
        assert of(ev, Dropped) and of(ev, Dropped)[0].reason == "replay"  # type: ignore[attr-defined]
        assert not of(ev, NodeReturned) and not of(ev, StatusChanged)
        assert m.view(now).node("vpbx1-2").status is NodeStatus.DEAD
        m.tick(now + 2.5)
    assert m.counters["replay"] == 5


def test_a_real_return_after_a_partition_is_still_accepted() -> None:
    m = started()
    p = Peer()
    m.receive(p.status(), "eth0", 0.1)
    m.tick(2.2)
    for _ in range(30):  # it went on counting while we could not hear it
        p.status()
    ev = m.receive(p.status(), "eth0", 9.0)
    assert NodeReturned("vpbx1-2", "partition") in ev
    assert StatusChanged("vpbx1-2", NodeStatus.DEAD, NodeStatus.ACTIVE) in ev
    assert not of(ev, RexmitWanted)  # nothing is asked of a node that was dead


def test_replays_after_our_restart_are_dropped_with_the_recorded_state() -> None:
    before = started()
    p = Peer()
    old = p.status()
    before.receive(old, "eth0", 0.1)
    before.receive(p.status(), "eth0", 0.3)
    state = before.replay_state()
    assert state == {"vpbx1-2": (7, 2)}

    after = started(known=state)
    ev = after.receive(old, "eth0", 0.1)
    assert [d.reason for d in of(ev, Dropped)] == ["replay"]  # type: ignore[attr-defined]
    assert not of(ev, StatusChanged)
    older = Peer(gen=6).status()
    ev = after.receive(older, "eth0", 0.2)
    assert [d.reason for d in of(ev, Dropped)] == ["replay"]  # type: ignore[attr-defined]
    ev = after.receive(p.status(), "eth0", 0.3)  # the live node goes on: accepted
    assert StatusChanged("vpbx1-2", NodeStatus.INIT, NodeStatus.ACTIVE) in ev
    assert not of(ev, NodeReturned)
    assert after.counters["replay"] == 2


def test_without_recorded_state_an_old_packet_is_taken_as_heartbeat_does() -> None:
    # What the recorded state protects against: a fresh start believes an old packet.
    p = Peer()
    old = p.status()
    ev = started().receive(old, "eth0", 0.1)
    assert StatusChanged("vpbx1-2", NodeStatus.INIT, NodeStatus.ACTIVE) in ev


def test_what_the_peer_sent_while_we_were_down_is_not_asked_for() -> None:
    # Issue 13: nonstop restarted after a crash next to a live Heartbeat, whose numbers had
    # moved on from the recorded ones; asking for them made Heartbeat log "Cannot rexmit pkt
    # ...: seqno too low" five times.
    after = started(known={"vpbx1-2": (7, 10)})
    p = Peer()
    p.seq = 40
    ev = after.receive(p.status(), "eth0", 0.1)
    assert StatusChanged("vpbx1-2", NodeStatus.INIT, NodeStatus.ACTIVE) in ev
    assert not of(ev, RexmitWanted)
    assert after.missing("vpbx1-2") == frozenset()
    p.seq += 1  # a gap once we hear it is a loss, asked for
    ev = after.receive(p.status(), "eth0", 0.3)
    assert of(ev, RexmitWanted) == [RexmitWanted("vpbx1-2", 42, 42)]


def test_an_unnumbered_packet_first_does_not_make_the_gap_a_loss() -> None:
    # Found with a real Heartbeat beside a restarted nonstop: the peer's first packet after our
    # restart was an ack (no sequence number), its next status numbered far past the recorded
    # one. The gap was asked for, Heartbeat resent what it still kept, and an old standby
    # request among it made this node take a group Heartbeat held.
    after = started(known={"vpbx1-2": (7, 10)})
    p = Peer()
    p.seq = 40
    ack = p.msg(("t", "NS_ackmsg"), ("dest", "vpbx1-1"), ("ackseq", "5"), seq=False)
    assert not of(after.receive(ack, "eth0", 0.05), Dropped)
    ev = after.receive(p.status(), "eth0", 0.1)
    assert StatusChanged("vpbx1-2", NodeStatus.INIT, NodeStatus.ACTIVE) in ev
    assert not of(ev, RexmitWanted)
    assert after.missing("vpbx1-2") == frozenset()
    p.seq += 1  # once a number was heard, a gap is a loss again, and asked for
    ev = after.receive(p.status(), "eth0", 0.3)
    assert of(ev, RexmitWanted) == [RexmitWanted("vpbx1-2", 42, 42)]

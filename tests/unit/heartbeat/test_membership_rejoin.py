"""Membership: how a node that was dead comes back (late start, healed partition, leave).

Found by the namespace tests and the interop tests with Heartbeat 3.0.6 (tests/integration/
test_membership_netns.py, test_interop_heartbeat.py); simulated clock, no sleeps.
"""

from __future__ import annotations

import random

from peers import TALK_INITDEAD_5 as TALK
from peers import Peer, of

from nonstop.heartbeat.membership import (
    LinkChanged,
    Membership,
    NodeDied,
    NodeReturned,
    StatusChanged,
)
from nonstop.heartbeat.states import NodeStatus


def started() -> Membership:
    m = Membership(TALK, "vpbx1-1", 0.0, rng=random.Random(3))
    m.tick(0.0)
    return m


def test_a_node_first_heard_after_initdead_is_a_late_start_not_a_partition() -> None:
    # Heartbeat 3.0.6 logs only "Link up" and "Status update" for it; no CRIT.
    m = started()
    died = m.tick(5.0)
    assert of(died, NodeDied) == [NodeDied("vpbx1-2", "timeout", 5000, 5000)]
    ev = m.receive(Peer().status("up"), "eth0", 30.0)
    assert not of(ev, NodeReturned)
    assert StatusChanged("vpbx1-2", NodeStatus.DEAD, NodeStatus.UP) in ev
    assert LinkChanged("vpbx1-2", "eth0", True) in ev


def test_a_node_heard_before_and_back_with_the_same_generation_is_a_partition() -> None:
    m = started()
    p = Peer()
    m.receive(p.status(), "eth0", 0.1)
    m.tick(2.1)
    assert m.view(2.1).node("vpbx1-2").status is NodeStatus.DEAD
    ev = m.receive(p.status(), "eth0", 9.0)
    assert NodeReturned("vpbx1-2", "partition") in ev


def test_the_copies_of_a_shutdown_notice_are_duplicates_not_drops() -> None:
    """A node leaving sends its notice three times: the peer's status said "dropped packets:
    after_shutdown 2" after every clean stop, as if something had gone wrong (a user trial)."""
    m = started()
    p = Peer()
    m.receive(p.status(), "eth0", 0.1)
    notice = p.shutdone()
    for i in range(3):
        m.receive(notice, "eth0", 0.3 + i * 0.001)
    counters = m.view(0.4).counters
    assert counters.get("after_shutdown", 0) == 0 and counters["duplicate"] == 2
    assert m.view(0.4).node("vpbx1-2").status is NodeStatus.DEAD


def test_heartbeats_after_a_shutdown_notice_do_not_revive_the_node() -> None:
    # Heartbeat 3.0.6 keeps sending status for about 2 s after its shutdone while its
    # processes stop; the node has left and must stay dead until it restarts.
    m = started()
    p = Peer()
    m.receive(p.status(), "eth0", 0.1)
    ev = m.receive(p.shutdone(), "eth0", 0.3)
    assert of(ev, NodeDied) == [NodeDied("vpbx1-2", "shutdown", 200, 2000)]
    for i in range(10):
        now = 0.4 + i * 0.2
        assert m.receive(p.status(), "eth0", now) == []
        assert not of(m.tick(now), NodeDied)
    view = m.view(2.5)
    assert view.node("vpbx1-2").status is NodeStatus.DEAD
    assert view.node("vpbx1-2").links == {"eth0": False}
    assert view.counters["after_shutdown"] == 10
    # A restart (higher generation) brings it back at once.
    ev = m.receive(Peer(gen=8).status("up"), "eth0", 6.0)
    assert StatusChanged("vpbx1-2", NodeStatus.DEAD, NodeStatus.UP) in ev
    assert not of(ev, NodeReturned)


def _dead_after_crash() -> tuple[Membership, Peer]:
    m = started()
    p = Peer()
    m.receive(p.status(), "eth0", 0.1)
    m.tick(2.1)
    assert m.view(2.1).node("vpbx1-2").status is NodeStatus.DEAD
    return m, p


def test_a_restart_first_seen_on_a_status_is_a_restart_not_a_partition() -> None:
    m, _ = _dead_after_crash()
    reborn = Peer(gen=8)
    ev = m.receive(reborn.status("up"), "eth0", 9.0)
    assert of(ev, NodeReturned) == [NodeReturned("vpbx1-2", "restart")]
    ev = m.receive(reborn.status("active"), "eth0", 9.2)
    assert not of(ev, NodeReturned)


def test_a_restart_first_seen_on_another_packet_is_a_restart_not_a_partition() -> None:
    # Issue 13: Heartbeat's restarted node sent a non-status packet first; its generation was
    # taken from that packet, and the next status (same generation as "known") was reported
    # as a healed partition in the same millisecond as the restart.
    m, _ = _dead_after_crash()
    reborn = Peer(gen=8)
    ev = m.receive(reborn.msg(("t", "reqnodes"), ("dest", "vpbx1-1")), "eth0", 9.0)
    assert of(ev, NodeReturned) == [NodeReturned("vpbx1-2", "restart")]
    ev = m.receive(reborn.status("up"), "eth0", 9.01)
    assert not of(ev, NodeReturned)
    assert StatusChanged("vpbx1-2", NodeStatus.DEAD, NodeStatus.UP) in ev


def test_a_partition_first_seen_on_another_packet_is_still_a_partition() -> None:
    m, p = _dead_after_crash()
    m.receive(p.msg(("t", "NS_ackmsg"), ("dest", "vpbx1-1"), ("ackseq", "1"), seq=False),
              "eth0", 9.0)
    ev = m.receive(p.status(), "eth0", 9.01)
    assert of(ev, NodeReturned) == [NodeReturned("vpbx1-2", "partition")]


def test_a_restart_after_a_shutdown_first_seen_on_another_packet_brings_the_node_back() -> None:
    # Issue 13 item 4, after a clean leave: the restarted Heartbeat's first packet may be a
    # reqnodes or an ack. Its generation must not make the next status look like one more
    # status of the node that left (dropped as after_shutdown, the node dead for ever).
    m = started()
    p = Peer()
    m.receive(p.status(), "eth0", 0.1)
    m.receive(p.shutdone(), "eth0", 0.3)
    reborn = Peer(gen=8)
    m.receive(reborn.msg(("t", "reqnodes"), ("dest", "vpbx1-1")), "eth0", 6.0)
    ev = m.receive(reborn.status("up"), "eth0", 6.01)
    assert StatusChanged("vpbx1-2", NodeStatus.DEAD, NodeStatus.UP) in ev
    assert not of(ev, NodeReturned)
    assert m.view(6.01).counters.get("after_shutdown", 0) == 0
    # A late status of the old generation is a replay: it changes nothing.
    assert not of(m.receive(p.status(), "eth0", 6.02), StatusChanged)
    assert m.view(6.02).node("vpbx1-2").status is NodeStatus.UP

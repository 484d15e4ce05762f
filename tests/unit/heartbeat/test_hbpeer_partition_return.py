"""The migration trial's split brain: the nonstop node holding the group is cut off, the
Heartbeat standby takes the group over (and clients follow it, by its gratuitous ARP). At the
heal Heartbeat restarts and releases without a word about having held the group: the nonstop
node, which kept it throughout, must treat that release as a release of the group (and so
re-announce its address), or clients stay with the Heartbeat box until their ARP entry
expires (25-60 s in the lab)."""

from __future__ import annotations

from peers import Peer
from test_hbpeer_mixed_trial import KEYS, N1, N2, PREFERRED, G, hold, view

from nonstop.failover.decide import Action, decide
from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.heartbeat.hbpeer import HeartbeatPeer

HELD = hold(GroupState.HELD)


def standby_heartbeat() -> tuple[HeartbeatPeer, Peer]:
    """We hold the group; the Heartbeat peer, standby, says it holds nothing."""
    me, hb = HeartbeatPeer(N2, N1, PREFERRED), Peer(N1)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, HELD)
    return me, hb


def partition_healed(me: HeartbeatPeer) -> HeartbeatPeer:
    me.peer_died()
    me.peer_returned()
    me.peer_back()
    return me


def shutting_down(me: HeartbeatPeer, hb: Peer) -> None:
    """Heartbeat's restart after a partition it noticed: ``info=shutdown`` first."""
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "0"), ("info", "shutdown")), 5.0, HELD)


def test_after_a_partition_heartbeat_s_shutdown_stops_what_it_may_have_taken() -> None:
    me, hb = standby_heartbeat()
    partition_healed(me)
    # Still what it said before: nothing (no double holding to settle by our release).
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})
    shutting_down(me, hb)
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.STOPPING, 0)})
    d = decide(view(GroupState.HELD, me.ad(KEYS)))[-1]
    assert d.action is Action.REANNOUNCE, d
    assert f"stopping group {G}" in d.reason
    me.peer_died()  # its shutdone
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})


def test_a_plain_stop_of_the_standby_heartbeat_node_stops_nothing() -> None:
    me, hb = standby_heartbeat()
    shutting_down(me, hb)
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})


def test_what_it_says_after_the_heal_replaces_the_doubt() -> None:
    # A one-way fault Heartbeat never noticed: once it says what it holds (here: nothing),
    # a later clean stop is a plain one again.
    me, hb = standby_heartbeat()
    partition_healed(me)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "1")), 4.0, HELD)
    shutting_down(me, hb)
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})


def test_a_restart_of_heartbeat_clears_the_doubt() -> None:
    me, hb = standby_heartbeat()
    partition_healed(me)
    me.peer_died()
    me.peer_restarted()
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "1")), 9.0, HELD)
    shutting_down(me, hb)
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})

"""A mixed cluster's user trial (one Heartbeat 3.0.6 box, one nonstop node): the faults it
found in the Heartbeat peer's side, each on the pure core (HeartbeatPeer, decide() with the
peer's ad) and on the daemon's wiring of membership events to it."""

from __future__ import annotations

from typing import Any

import pytest
from peers import Peer

from nonstop.config.model import AutoFailback
from nonstop.daemon_hbpeer import HeartbeatPeerWiring
from nonstop.failover.decide import Action, decide
from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.failover.view import ClusterView, GroupInfo, LocalFacts, build_view
from nonstop.heartbeat.events import NodeDied, NodeReturned, Send, StatusChanged
from nonstop.heartbeat.hbpeer import MARK, HbOutput, HeartbeatPeer, LocalHold
from nonstop.heartbeat.hbresource import RscSet, TakeoverArg
from nonstop.heartbeat.membership import MembershipView, NodeView
from nonstop.heartbeat.states import NodeStatus

N1, N2 = "vpbx1-1", "vpbx1-2"  # vpbx1-1 is the Heartbeat box, vpbx1-2 the nonstop node
G = "MailTo::tech@webinmotion.ca::Asterisk"
KEYS = (G,)
PREFERRED = {G: N1}


def hold(state: GroupState = GroupState.NONE) -> LocalHold:
    return LocalHold.of(NodeAd({0: GroupAd(state, 1)}), frozenset(), KEYS, ready=True)


def sent(out: list[HbOutput]) -> list[dict[str, str]]:
    return [{n: str(v) for n, v in o.fields if n != MARK[0]} for o in out
            if isinstance(o, Send)]


def heartbeat_holding(rsc: str = "local") -> tuple[HeartbeatPeer, Peer]:
    me, hb = HeartbeatPeer(N2, N1, PREFERRED), Peer(N1)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", rsc), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold())
    return me, hb


def view(mine: GroupState, peer_ad: NodeAd | None, *, epoch: int = 1,
         incomplete: bool = False, wants: bool = False, agreed: bool = False,
         auto: AutoFailback = AutoFailback.OFF) -> ClusterView:
    here = LocalFacts(NodeAd({0: GroupAd(mine, epoch)},
                             wants=frozenset({0}) if wants else frozenset()),
                      incomplete=frozenset({0}) if incomplete else frozenset())
    members = MembershipView(10.0, N2, True, (
        NodeView(N1, NodeStatus.ACTIVE, False, 0, 2000, 7, {"eth0": True}, {}),
        NodeView(N2, NodeStatus.ACTIVE, True, 0, 2000, None, {}, {}),
    ), {})
    return build_view(members, here, now=10.0, order=(N1, N2),
                      groups=(GroupInfo(0, G, N1),), auto_failback=auto,
                      probed=True, leaving=False, heartbeat_ads={N1: peer_ad},
                      handover_agreed=frozenset({0}) if agreed else frozenset())


# ---------------------------------------------------------------- 1. one-way link fault


def test_a_partition_return_keeps_what_the_heartbeat_peer_held() -> None:
    # Heartbeat never noticed (only its sends were lost): it does not restart, so it sends
    # no "starting" and no "resource" again. Its holdings must not become unknown.
    me = _back_after(heartbeat_holding()[0], "partition", taken_over=True)
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.HELD, 0)})


def _back_after(me: HeartbeatPeer, how: str, taken_over: bool = False) -> HeartbeatPeer:
    """The Heartbeat peer died (to us), then came back after a partition or a restart."""
    me.peer_died()
    if taken_over:  # we take over meanwhile
        assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})
    me.peer_returned() if how == "partition" else me.peer_restarted()
    me.peer_back()
    return me


def test_a_restart_still_voids_what_it_said() -> None:
    me = _back_after(heartbeat_holding()[0], "restart")
    assert me.ad(KEYS) is None  # until its answer to our "starting"


class _Wiring:
    """The daemon's Heartbeat wiring without a daemon (the events it reacts to)."""

    def __init__(self, hb: HeartbeatPeer) -> None:
        self.hb_peer = hb

    def _now(self) -> float:
        return 0.0

    def react(self, ev: Any) -> None:
        HeartbeatPeerWiring._hb_react(self, ev)  # type: ignore[arg-type]


@pytest.mark.parametrize(("how", "ad"), [
    ("partition", NodeAd({0: GroupAd(GroupState.HELD, 0)})),  # a healed partition: kept
    ("restart", None),  # a restarted peer: its holdings are void until it says them again
])
def test_the_daemon_wiring_over_a_peer_s_return(how: str, ad: NodeAd | None) -> None:
    me, _ = heartbeat_holding()
    w = _Wiring(me)
    w.react(NodeDied(N1, "timeout", 2100, 2000))
    # membership's order: NodeReturned, then the status change
    w.react(NodeReturned(N1, how))
    w.react(StatusChanged(N1, NodeStatus.DEAD, NodeStatus.ACTIVE))
    assert me.ad(KEYS) == ad


def test_a_double_holding_with_the_heartbeat_peer_is_settled_by_our_release() -> None:
    # We took the group over (epoch 1) while Heartbeat kept it: it never gives it up.
    me = _back_after(heartbeat_holding()[0], "partition")
    d = decide(view(GroupState.HELD, me.ad(KEYS)))[-1]
    assert d.action is Action.RELEASE and d.conflict
    assert "also held by Heartbeat node vpbx1-1, which keeps it" in d.reason


def test_an_unstable_heartbeat_claim_is_not_yielded_to() -> None:
    # In flux (e.g. the window of a standby exchange): not a settled double holding.
    ad = NodeAd({0: GroupAd(GroupState.STARTING, 0)})
    d = decide(view(GroupState.HELD, ad))[-1]
    assert d.action is Action.REANNOUNCE


# ---------------------------------------------------------------- 2. restart on a kept VIP


def test_partly_running_at_start_up_waits_for_the_heartbeat_peer_to_say() -> None:
    d = decide(view(GroupState.HELD, None, incomplete=True))[-1]
    assert d.action is Action.WAIT and d.waiting_on == {N1}
    assert "not starting the rest of it until vpbx1-1 says what it holds" in d.reason


def test_partly_running_at_start_up_is_given_up_to_heartbeat_that_took_it_over() -> None:
    me, _ = heartbeat_holding("all")
    d = decide(view(GroupState.HELD, me.ad(KEYS), incomplete=True))[-1]
    assert d.action is Action.RELEASE and d.conflict


def test_partly_running_at_start_up_is_completed_when_heartbeat_holds_nothing() -> None:
    me, _ = heartbeat_holding("none")
    d = decide(view(GroupState.HELD, me.ad(KEYS), incomplete=True))[-1]
    assert d.action is Action.ACQUIRE and "starting the rest of it" in d.reason


# ---------------------------------------------------------------- 3. start failure in hb_standby


def test_hb_standby_ends_with_done_even_when_our_start_fails() -> None:
    me, hb = heartbeat_holding()
    me.sync(hold(), 0.0)
    out = me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"), ("info", "me")),
                     1.0, hold())
    assert {"t": "ask_resources", "rsc_hold": "all", "info": "other"} in sent(out)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "all"), ("rtype", "full"),
                          ("isstable", "0"), ("info", "standby")), 1.1, hold())
    me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"), ("info", "done")),
               1.2, hold())
    assert {"t": "ask_resources", "rsc_hold": "all", "info": "done"} not in sent(
        me.sync(hold(GroupState.STARTING), 1.3))  # acquiring: not done yet
    out = me.sync(hold(GroupState.START_FAILED), 1.5)
    assert {"t": "ask_resources", "rsc_hold": "all", "info": "done"} in sent(out)
    assert me.exchange is None
    # It gave its groups away: its stale "all, unstable" no longer counts as a claim.
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})


def test_hb_standby_is_not_done_before_the_start_was_tried() -> None:
    me, hb = heartbeat_holding()
    me.sync(hold(), 0.0)
    me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"), ("info", "me")),
               1.0, hold())
    out = me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"),
                                ("info", "done")), 1.2, hold())
    assert {"t": "ask_resources", "rsc_hold": "all", "info": "done"} not in sent(out)


def test_after_our_failed_start_the_group_is_handed_back_to_heartbeat() -> None:
    # Heartbeat takes a group from a live peer only through the standby exchange (and does
    # the same itself after a failed start): ask it, rather than wait for it for ever.
    free = NodeAd({0: GroupAd(GroupState.NONE, 0)})
    d = decide(view(GroupState.START_FAILED, free))[-1]
    assert d.action is Action.HAND_OVER and d.waiting_on == {N1}
    assert "asking Heartbeat node vpbx1-1 to take it (standby exchange)" in d.reason
    d = decide(view(GroupState.START_FAILED, free, agreed=True))[-1]
    assert d.action is Action.WAIT  # agreed: it takes it after our "done"
    me, hb = heartbeat_holding("none")
    failed = hold(GroupState.START_FAILED)
    me.sync(failed, 0.0)
    assert sent(me.ask_standby(RscSet.FOREIGN, 1.0))[0]["info"] == "me"
    out = me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "foreign"),
                                ("info", "other")), 1.1, failed)
    assert {"t": "ask_resources", "rsc_hold": "foreign", "info": "done"} in sent(out)


# ---------------------------------------------------------------- 4. joining a Heartbeat holder


def test_joining_claims_nothing_before_the_heartbeat_peer_says_what_it_holds() -> None:
    p = HeartbeatPeer(N2, N1, PREFERRED)
    p.comm_up()
    free = LocalHold(frozenset(), frozenset(), frozenset({G}), True)
    p.sync(free, 0.0)
    assert p.held(free) is RscSet.NONE
    out = p.receive(N1, Peer(N1).msg(("t", "resource"), ("rsc_hold", "all"),
                                     ("rtype", "full"), ("isstable", "1")), 0.1, free)
    assert p.held(free) is RscSet.NONE  # not "local": "Both machines own foreign resources!"
    assert [m["rsc_hold"] for m in sent(out)] == ["none"]


def test_joining_a_peer_that_holds_only_its_own_half_claims_ours() -> None:
    p = HeartbeatPeer(N2, N1, PREFERRED)
    p.comm_up()
    free = LocalHold(frozenset(), frozenset(), frozenset({G}), True)
    p.sync(free, 0.0)
    p.receive(N1, Peer(N1).msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                               ("isstable", "1")), 0.1, free)
    assert p.held(free) is RscSet.LOCAL  # our (empty) half, as Heartbeat's req_our_resources


# ---------------------------------------------------------------- 5. standby, then takeover


def test_an_agreed_standby_goes_on_after_our_standby_was_cancelled() -> None:
    # "nonstop standby" then "nonstop takeover": the declines are gone, but Heartbeat agreed
    # and waits for our "done"; keeping the group would leave it in transition for an hour.
    free = NodeAd({0: GroupAd(GroupState.NONE, 0)})
    d = decide(view(GroupState.HELD, free, agreed=True))[-1]
    assert d.action is Action.RELEASE and "cannot be taken back" in d.reason
    d = decide(view(GroupState.NONE, free, wants=True, agreed=True))[-1]
    assert d.action is Action.WAIT and d.waiting_on == {N1}
    assert "handed over to Heartbeat node vpbx1-1" in d.reason


def test_a_takeover_during_the_exchange_is_sent_once_it_is_over() -> None:
    me, hb = heartbeat_holding("none")
    held = hold(GroupState.HELD)
    me.sync(held, 0.0)
    assert sent(me.ask_standby(RscSet.FOREIGN, 1.0))[0]["info"] == "me"
    me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "foreign"), ("info", "other")),
               1.1, held)
    # Heartbeat would ignore it now ("Standby in progress- new request ... ignored").
    assert sent(me.takeover(TakeoverArg.ALL)) == []
    out = me.sync(hold(), 1.2)  # released: our "done"
    assert {"t": "ask_resources", "rsc_hold": "foreign", "info": "done"} in sent(out)
    assert not any(m["t"] == "hb_takeover" for m in sent(out))
    out = me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "foreign"),
                                ("info", "done")), 1.5, hold())
    assert {"t": "hb_takeover", "rsc_hold": "all"} in sent(out)
    assert sent(me.sync(hold(), 1.6)) == []  # once


# ---------------------------------------------------------------- 6. auto_failback legacy


def test_the_wait_for_a_silent_peer_names_auto_failback_legacy() -> None:
    # Heartbeat with legacy (no auto_failback line) never sends "resource": the wait, which
    # the engine logs at warning level once it outlasts deadtime, says what to change.
    d = decide(view(GroupState.NONE, None, auto=AutoFailback.LEGACY))[-1]
    assert d.action is Action.WAIT
    assert "with auto_failback legacy a Heartbeat node never says it" in d.reason
    d = decide(view(GroupState.NONE, None))[-1]
    assert "legacy" not in d.reason

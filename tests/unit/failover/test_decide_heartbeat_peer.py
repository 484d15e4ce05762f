"""decide() next to a real Heartbeat node (issue 13): its ad comes from its resource messages
(hbpeer.ad_from_heartbeat through build_view), and a group goes to it only through its
standby exchange."""

from __future__ import annotations

from nonstop.config.model import AutoFailback
from nonstop.failover.decide import Action, decide
from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.failover.view import ClusterView, GroupInfo, LocalFacts, build_view
from nonstop.heartbeat.hbpeer import Exchange, Phase, ad_from_heartbeat
from nonstop.heartbeat.hbresource import PeerResources, RscSet
from nonstop.heartbeat.membership import MembershipView, NodeView
from nonstop.heartbeat.states import NodeStatus

N1, N2 = "vpbx1-1", "vpbx1-2"
KEY = "MailTo::tech@webinmotion.ca::Asterisk"
PREFERRED = {KEY: N1}


def snapshot(local: str, mine: GroupState, peer_res: PeerResources | None, *,
             exchange: Exchange | None = None, declines: bool = False,
             needs_failback: bool = False, agreed: bool = False,
             auto: AutoFailback = AutoFailback.OFF) -> ClusterView:
    peer = N2 if local == N1 else N1
    here = LocalFacts(NodeAd({0: GroupAd(mine, 3)}, declines=frozenset({0}) if declines
                             else frozenset()),
                      needs_failback=frozenset({0}) if needs_failback else frozenset())
    members = MembershipView(10.0, local, True, (
        NodeView(local, NodeStatus.ACTIVE, True, 0, 2000, None, {}, {}),
        NodeView(peer, NodeStatus.ACTIVE, False, 0, 2000, 7, {"eth0": True}, {}),
    ), {})
    hb_ad = None if peer_res is None else ad_from_heartbeat(peer, peer_res, exchange, (KEY,),
                                                            PREFERRED)
    return build_view(members, here, now=10.0, order=(N1, N2),
                      groups=(GroupInfo(0, KEY, N1),), auto_failback=auto, probed=True,
                      leaving=False, heartbeat_ads={peer: hb_ad},
                      handover_agreed=frozenset({0}) if agreed else frozenset())


def last(v: ClusterView) -> tuple[Action, str]:
    d = decide(v)[-1]
    return d.action, d.reason


def test_the_peer_is_a_heartbeat_peer_only_without_failover_fields() -> None:
    v = snapshot(N1, GroupState.NONE, PeerResources(RscSet.NONE, False, True))
    assert v.heartbeat_peers == {N2}
    assert v.ads[N2] == NodeAd({0: GroupAd(GroupState.NONE, 0)})


def test_cold_start_waits_for_the_heartbeat_peer_to_say_what_it_holds() -> None:
    action, why = last(snapshot(N1, GroupState.NONE, None))
    assert action is Action.WAIT and "until vpbx1-2 says what it holds" in why


def test_cold_start_takes_our_own_group_once_the_peer_does_not_cover_it() -> None:
    action, why = last(snapshot(N1, GroupState.NONE, PeerResources(RscSet.NONE, False, True)))
    assert action is Action.ACQUIRE and "vpbx1-1 is its preferred node" in why


def test_never_takes_the_heartbeat_peers_group_at_start_up() -> None:
    # Unstable and holding nothing yet: Heartbeat takes its own within 10 s of stable.
    v = snapshot(N2, GroupState.NONE, PeerResources(RscSet.NONE, False, True))
    action, why = last(v)
    assert action is Action.WAIT and "goes to vpbx1-1" in why
    assert decide(v)[-1].waiting_on == {N1}  # warned about if it lasts (issue 13 item 3)
    action, why = last(snapshot(N2, GroupState.NONE, PeerResources(RscSet.LOCAL, False, True)))
    assert action is Action.WAIT and "held by vpbx1-1" in why


def test_its_standby_makes_the_group_stopping_then_ours() -> None:
    res = PeerResources(RscSet.NONE, False, True)
    agreed = Exchange(N1, RscSet.ALL, Phase.AGREED, 3600.0, frozenset({KEY}))
    action, why = last(snapshot(N2, GroupState.NONE, res, exchange=agreed))
    assert action is Action.WAIT and "held by vpbx1-1" in why  # still stopping there
    released = Exchange(N1, RscSet.ALL, Phase.RELEASED, 3600.0, frozenset({KEY}))
    action, why = last(snapshot(N2, GroupState.NONE, res, exchange=released))
    assert action is Action.ACQUIRE and "vpbx1-2 is the first available node" in why


def test_our_standby_asks_heartbeat_first_and_releases_once_it_agreed() -> None:
    res = PeerResources(RscSet.LOCAL, True, True)  # vpbx1-2's (empty) half
    v = snapshot(N1, GroupState.HELD, res, declines=True)
    action, why = last(v)
    assert action is Action.HAND_OVER and decide(v)[-1].waiting_on == {N2}
    assert "asking Heartbeat node vpbx1-2 to take it (standby exchange)" in why
    action, why = last(snapshot(N1, GroupState.HELD, res, declines=True, agreed=True))
    assert action is Action.RELEASE and "standby: handing group" in why


def test_auto_failback_to_heartbeat_is_its_standby_exchange_too() -> None:
    res = PeerResources(RscSet.NONE, True, True)  # vpbx1-1 returned, took nothing
    v = snapshot(N2, GroupState.HELD, res, needs_failback=True, auto=AutoFailback.ON)
    action, why = last(v)
    assert action is Action.HAND_OVER and "auto_failback on" in why
    v = snapshot(N2, GroupState.HELD, res, needs_failback=True, auto=AutoFailback.ON,
                 agreed=True)
    assert last(v)[0] is Action.RELEASE
    # auto_failback off: it stays.
    assert last(snapshot(N2, GroupState.HELD, res, needs_failback=True))[0] is Action.WAIT

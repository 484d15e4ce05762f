"""A nonstop node's side of Heartbeat 3.0.6's resource protocol (hbpeer.py), driven by the
sequences of docs/HEARTBEAT-RESOURCES.md section 3 with a simulated clock."""

from __future__ import annotations

import logging

from peers import Peer

from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.heartbeat.events import Send
from nonstop.heartbeat.hbpeer import (
    ASK_TIMEOUT_S,
    MARK,
    HbOutput,
    HeartbeatPeer,
    LocalHold,
    Note,
    StandbyCancelled,
    StandbyRequested,
)
from nonstop.heartbeat.hbresource import RscSet, TakeoverArg

N1, N2 = "vpbx1-1", "vpbx1-2"
GROUP = "MailTo::tech@webinmotion.ca::Asterisk"
KEYS = (GROUP,)
PREFERRED = {GROUP: N1}


def hold(state: GroupState = GroupState.NONE, *, busy: bool = False,
         ready: bool = True) -> LocalHold:
    return LocalHold.of(NodeAd({0: GroupAd(state, 1)}), frozenset({0}) if busy else frozenset(),
                        KEYS, ready=ready)


def sent(out: list[HbOutput]) -> list[dict[str, str]]:
    """The messages in ``out``, as dicts of their fields (every one carries the mark)."""
    msgs = []
    for o in out:
        if isinstance(o, Send):
            fields = dict((n, str(v)) for n, v in o.fields)
            assert fields.pop(MARK[0]) == MARK[1]
            msgs.append(fields)
    return msgs


def notes(out: list[HbOutput]) -> list[str]:
    return [o.text for o in out if isinstance(o, Note)]


def hb_peer(local: str = N2) -> tuple[HeartbeatPeer, Peer]:
    peer = N1 if local == N2 else N2
    return HeartbeatPeer(local, peer, PREFERRED), Peer(peer)


def test_starting_once_and_every_starting_is_answered_with_what_we_hold() -> None:
    me, hb = hb_peer()
    assert sent(me.comm_up()) == [{"t": "starting"}]
    assert me.comm_up() == []
    # Before the probe nothing can be said: the answer waits for it.
    assert sent(me.receive(N1, hb.msg(("t", "starting")), 0.1, None)) == []
    out = me.sync(hold(), 0.2)
    assert sent(out) == [{"t": "resource", "rsc_hold": "local", "rtype": "full",
                          "isstable": "1"}]
    assert me.sync(hold(), 0.3) == []  # nothing changed: nothing said
    out = me.receive(N1, hb.msg(("t", "starting")), 5.0, hold())
    assert sent(out) == [{"t": "resource", "rsc_hold": "local", "rtype": "full",
                          "isstable": "1"}]


def test_a_nonstop_peer_is_recognised_by_the_mark_and_left_alone() -> None:
    me, hb = hb_peer()
    assert me.receive(N1, hb.msg(("t", "starting"), MARK), 0.1, hold()) == []
    assert not me.is_heartbeat
    assert me.sync(hold(), 0.2) == []
    assert me.ad(KEYS) is None


def test_cold_start_on_the_preferred_nonstop_node_takes_the_group_once_heartbeat_says() -> None:
    me, hb = hb_peer(N1)
    assert me.ad(KEYS) is None  # unknown until its first resource message
    me.receive(N2, hb.msg(("t", "starting")), 0.1, hold())
    ad = me.ad(KEYS)
    assert ad is None
    me.receive(N2, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "0")), 0.2, hold())
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})


def test_heartbeat_holding_its_group_is_held_when_stable_starting_when_not() -> None:
    me, hb = hb_peer(N2)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                          ("isstable", "0")), 0.1, hold())
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.STARTING, 0)})
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                          ("isstable", "1")), 0.2, hold())
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.HELD, 0)})


def test_hb_standby_on_the_heartbeat_holder_hands_the_group_over() -> None:
    # docs 3.3 with vpbx1-1 a real Heartbeat holding its group, this node vpbx1-2.
    me, hb = hb_peer(N2)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold())
    me.sync(hold(), 0.0)
    out = me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"), ("info", "me")),
                     1.0, hold())
    assert {"t": "ask_resources", "rsc_hold": "all", "info": "other"} in sent(out)
    assert "vpbx1-1 wants to go standby [all]" in notes(out)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "0"), ("info", "standby")), 1.1, hold())
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.STOPPING, 0)})
    out = me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"),
                                ("info", "done")), 1.5, hold())
    # Released and declined: decide() gives it to us.
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)}, declines=frozenset({0}))
    assert not [m for m in sent(out) if m["t"] == "ask_resources"]
    starting = me.sync(hold(GroupState.STARTING, busy=True), 1.6)
    assert sent(starting) == [{"t": "resource", "rsc_hold": "all", "rtype": "full",
                               "isstable": "0"}]
    out = me.sync(hold(GroupState.HELD), 2.5)
    assert sent(out) == [{"t": "ask_resources", "rsc_hold": "all", "info": "done"},
                         {"t": "resource", "rsc_hold": "all", "rtype": "full",
                          "isstable": "1"}]
    assert me.exchange is None


def test_standby_request_while_we_are_busy_is_ignored_as_heartbeat_would() -> None:
    me, hb = hb_peer(N2)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold())
    out = me.receive(N1, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"), ("info", "me")),
                     1.0, hold(GroupState.STARTING, busy=True))
    assert not [m for m in sent(out) if m["t"] == "ask_resources"]
    assert any("ignored" in n for n in notes(out))
    assert me.exchange is None


def test_our_standby_waits_for_other_then_releases_then_says_done() -> None:
    # nonstop vpbx1-1 holds its group; Heartbeat vpbx1-2 takes it through the exchange.
    me, hb = hb_peer(N1)
    me.receive(N2, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold(GroupState.HELD))
    out = me.ask_standby(RscSet.ALL, 1.0)
    assert sent(out) == [{"t": "ask_resources", "rsc_hold": "all", "info": "me"}]
    assert me.agreed() == frozenset()  # not yet: no stop before "other"
    assert sent(me.sync(hold(GroupState.HELD), 1.1)) == []  # still stable, nothing to say
    out = me.receive(N2, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"),
                                ("info", "other")), 1.2, hold(GroupState.HELD))
    assert me.agreed() == {GROUP}
    # Before anything stops (docs 3.3): what we keep, unstable, "standby".
    assert sent(out) == [{"t": "resource", "rsc_hold": "none", "rtype": "full",
                          "isstable": "0", "info": "standby"}]
    assert sent(me.sync(hold(GroupState.STOPPING, busy=True), 1.3)) == []
    out = me.sync(hold(GroupState.NONE), 2.0)
    assert {"t": "ask_resources", "rsc_hold": "all", "info": "done"} in sent(out)
    assert "Local standby process completed [all]." in notes(out)
    out = me.receive(N2, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"),
                                ("info", "done")), 3.0, hold())
    assert me.exchange is None
    assert sent(out)[-1] == {"t": "resource", "rsc_hold": "none", "rtype": "full",
                             "isstable": "1"}


def test_no_other_within_ten_seconds_cancels_our_standby_with_a_warning() -> None:
    me, hb = hb_peer(N1)
    me.receive(N2, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold(GroupState.HELD))
    me.ask_standby(RscSet.LOCAL, 1.0)
    assert not [o for o in me.sync(hold(GroupState.HELD), 1.0 + ASK_TIMEOUT_S - 0.1)
                if isinstance(o, StandbyCancelled)]
    out = me.sync(hold(GroupState.HELD), 1.0 + ASK_TIMEOUT_S)
    assert StandbyCancelled(RscSet.LOCAL) in out
    assert Note(logging.WARNING,
                "No reply to standby request.  Standby request cancelled.") in out
    assert me.exchange is None


def test_hb_takeover_from_heartbeat_is_a_standby_here_and_ours_is_sent() -> None:
    me, hb = hb_peer(N1)
    out = me.receive(N2, hb.msg(("t", "hb_takeover"), ("rsc_hold", "foreign")), 0.5,
                     hold(GroupState.HELD))
    assert StandbyRequested(RscSet.LOCAL) in out  # its foreign is our local
    assert sent(me.takeover(TakeoverArg.ALL)) == [{"t": "hb_takeover", "rsc_hold": "all"}]


def test_shutdown_says_none_first_and_then_nothing_more() -> None:
    me, hb = hb_peer(N1)
    me.receive(N2, hb.msg(("t", "starting")), 0.0, hold(GroupState.HELD))
    assert sent(me.shutdown()) == [{"t": "resource", "rsc_hold": "none", "rtype": "full",
                                    "isstable": "0", "info": "shutdown"}]
    assert me.sync(hold(GroupState.STOPPING, busy=True), 1.0) == []


def test_after_the_peer_dies_it_holds_nothing_and_we_say_all_when_we_took_it() -> None:
    me, hb = hb_peer(N2)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold())
    me.sync(hold(), 0.0)
    me.peer_died()
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})
    out = me.sync(hold(GroupState.HELD), 3.0)
    assert sent(out) == [{"t": "resource", "rsc_hold": "all", "rtype": "full",
                          "isstable": "1"}]
    # It returns: its "starting" gets that answer at once (docs 3.6).
    me.peer_restarted()
    out = me.receive(N1, Peer(N1, gen=9).msg(("t", "starting")), 9.0, hold(GroupState.HELD))
    assert sent(out) == [{"t": "resource", "rsc_hold": "all", "rtype": "full",
                          "isstable": "1"}]


def test_a_bad_resource_message_is_a_warning_not_an_exception() -> None:
    me, hb = hb_peer(N2)
    out = me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "most")), 0.0, hold())
    assert any("bad resource message from vpbx1-1" in n for n in notes(out))


def test_an_empty_half_the_peer_holds_is_not_claimed() -> None:
    # vpbx1-2 (no group of its own) returns while Heartbeat holds all after a takeover: as
    # Heartbeat's req_our_resources, it claims nothing ("Both machines own foreign
    # resources!" otherwise).
    me, hb = hb_peer(N2)
    out = me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "all"), ("rtype", "full"),
                                ("isstable", "1")), 0.0, hold())
    assert sent(out) == [{"t": "resource", "rsc_hold": "none", "rtype": "full",
                          "isstable": "1"}]


def test_taking_all_from_heartbeat_claims_its_empty_half_too() -> None:
    # Heartbeat vpbx1-2 (no group of its own) holds vpbx1-1's group and runs hb_standby:
    # the taker says "all" as Heartbeat does, else vpbx1-2 logs "No one owns our local
    # resources!" (seen in the lab).
    me, hb = hb_peer(N1)
    me.receive(N2, hb.msg(("t", "resource"), ("rsc_hold", "all"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold())
    me.receive(N2, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"), ("info", "me")), 1.0,
               hold())
    me.receive(N2, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"), ("info", "done")), 1.5,
               hold())
    out = me.sync(hold(GroupState.HELD), 2.0)
    assert sent(out) == [{"t": "ask_resources", "rsc_hold": "all", "info": "done"},
                         {"t": "resource", "rsc_hold": "all", "rtype": "full",
                          "isstable": "1"}]
    # Handing all back gives both halves away.
    me.receive(N2, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "1")), 2.5, hold(GroupState.HELD))
    assert sent(me.ask_standby(RscSet.ALL, 3.0))
    out = me.receive(N2, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"),
                                ("info", "other")), 3.1, hold(GroupState.HELD))
    assert sent(out) == [{"t": "resource", "rsc_hold": "none", "rtype": "full",
                          "isstable": "0", "info": "standby"}]


def test_no_hand_over_is_asked_of_a_heartbeat_peer_in_flux() -> None:
    me, hb = hb_peer(N2)
    me.receive(N1, hb.msg(("t", "starting")), 0.0, hold(GroupState.HELD))
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "0")), 0.1, hold(GroupState.HELD))
    assert me.ask_standby(RscSet.FOREIGN, 0.2) == []
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "1")), 0.3, hold(GroupState.HELD))
    assert sent(me.ask_standby(RscSet.FOREIGN, 0.4)) == [
        {"t": "ask_resources", "rsc_hold": "foreign", "info": "me"}]


def test_a_returning_peer_is_unknown_until_it_says_again() -> None:
    me, hb = hb_peer(N2)
    me.receive(N1, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold())
    me.peer_died()
    assert me.ad(KEYS) is not None
    me.peer_restarted()
    assert me.ad(KEYS) is None
    assert me.ask_standby(RscSet.FOREIGN, 1.0) == []


def test_a_heartbeat_peer_shutting_down_holds_its_groups_until_shutdone() -> None:
    # Seen in the lab: its "resource none ... info=shutdown" comes before it stops anything;
    # taking the group then put the address on both nodes until its stop.
    me, hb = hb_peer(N1)
    me.receive(N2, hb.msg(("t", "resource"), ("rsc_hold", "all"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold())
    me.receive(N2, hb.msg(("t", "resource"), ("rsc_hold", "none"), ("rtype", "full"),
                          ("isstable", "0"), ("info", "shutdown")), 1.0, hold())
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.STOPPING, 0)})
    me.peer_died()  # its shutdone
    assert me.ad(KEYS) == NodeAd({0: GroupAd(GroupState.NONE, 0)})


def test_its_standby_request_while_ours_waits_for_an_answer_is_ignored() -> None:
    me, hb = hb_peer(N1)
    me.receive(N2, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                          ("isstable", "1")), 0.0, hold(GroupState.HELD))
    me.ask_standby(RscSet.LOCAL, 1.0)
    out = me.receive(N2, hb.msg(("t", "ask_resources"), ("rsc_hold", "all"), ("info", "me")),
                     1.1, hold(GroupState.HELD))
    assert not [m for m in sent(out) if m["t"] == "ask_resources"]
    assert me.exchange is not None and me.exchange.requester == N1

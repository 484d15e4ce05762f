"""decide(): every failover rule as a snapshot in, a decision and its reason out.

One table row per rule: a hand-written ``ClusterView`` (simulated ``now``, no daemon), the
decision expected about the group (action, words of its reason, fields) and the one-shot
requests that end with it. Node vpbx1-1 is the group's preferred node.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from nonstop.config.model import AutoFailback
from nonstop.failover.decide import (
    START_FAILED_HOLD_S,
    Action,
    ClusterView,
    Decision,
    GroupInfo,
    decide,
)
from nonstop.failover.state import (
    GroupAd,
    GroupState,
    NodeAd,
    decode_ad,
    encode_ad,
)
from nonstop.failover.view import LocalFacts, holders

N1, N2 = "vpbx1-1", "vpbx1-2"
G = GroupInfo(0, "MailTo::tech@webinmotion.ca::Asterisk", N1)
H, N, S, T, B, F = (GroupState.HELD, GroupState.NONE, GroupState.STARTING, GroupState.STOPPING,
                    GroupState.STOP_FAILED, GroupState.START_FAILED)
NOW = 1000.0


def ad(state: GroupState = N, epoch: int = 0, *, declines: bool = False,
       wants: bool = False) -> NodeAd:
    return NodeAd({0: GroupAd(state, epoch)}, frozenset({0}) if declines else frozenset(),
                  frozenset({0}) if wants else frozenset())


def view(local: str, ads: dict[str, NodeAd | None], *, alive: set[str] | None = None,
         auto: AutoFailback = AutoFailback.OFF, comm_up: bool = True,
         failback: bool = True, **facts: Any) -> ClusterView:
    """A snapshot as ``build_view`` makes it; ``facts`` are LocalFacts fields, or
    ``active``, ``unannounced``, ``probed``, ``leaving`` of the view itself."""
    alive_set = frozenset(alive if alive is not None else ads.keys())
    top = {k: facts.pop(k) for k in ("active", "unannounced", "probed", "leaving")
           if k in facts}
    here = LocalFacts(ads.get(local) or NodeAd({}),
                      needs_failback=frozenset({0}) if failback else frozenset(), **facts)
    v = ClusterView(now=NOW, local=local, order=(N1, N2), alive=alive_set, active=alive_set,
                    comm_up=comm_up, ads=ads, groups=(G,), auto_failback=auto, here=here)
    return replace(v, **top)


def one(v: ClusterView) -> Decision:
    (d,) = decide(v)
    return d


@dataclass(frozen=True)
class Row:
    name: str
    view: ClusterView
    action: Action
    words: str = ""  # in the reason
    fields: dict[str, Any] = field(default_factory=dict)  # of the decision
    ends: tuple[Action, ...] = ()  # one-shot requests that end before the decision


ROWS = [
    # ---- when nothing may be decided yet
    Row("nothing before comm up", view(N1, {N1: ad()}, comm_up=False), Action.WAIT, "initdead"),
    Row("nothing before the start-up probe", view(N1, {N1: ad(), N2: ad()}, probed=False),
        Action.WAIT, "until the start-up probe"),
    Row("nothing while shutting down (the shutdown releases)",
        view(N1, {N1: ad(H, 1, declines=True), N2: ad(H, 2)}, leaving=True),
        Action.WAIT, "shutting down", {"seen_epoch": 0}),
    Row("no decision while a peer has not said what it holds", view(N1, {N1: ad(), N2: None}),
        Action.WAIT, "until vpbx1-2 says"),
    Row("a peer heard before its first status is not taken for dead",
        view(N1, {N1: ad()}, alive={N1}, unannounced=frozenset({N2})),
        Action.WAIT, "until vpbx1-2 sends its first status"),
    Row("a peer still starting is waited for, not skipped",
        view(N2, {N1: ad(), N2: ad()}, active=frozenset({N2})),
        Action.WAIT, "until vpbx1-1 is active"),
    Row("a group being started here is left alone",
        view(N1, {N1: ad(S, 1), N2: ad()}, busy=frozenset({0})),
        Action.WAIT, "group MailTo::tech@webinmotion.ca::Asterisk: start in progress"),
    Row("a group being stopped here is left alone",
        view(N1, {N1: ad(T, 1, declines=True), N2: ad()}, busy=frozenset({0})),
        Action.WAIT, "stop in progress"),
    Row("a group whose resources are being checked is left alone",
        view(N1, {N1: ad(H, 1), N2: ad(wants=True)}, busy=frozenset({0})),
        Action.WAIT, "resource check in progress"),
    # ---- a group nobody holds
    Row("both start together: the preferred node acquires", view(N1, {N1: ad(), N2: ad()}),
        Action.ACQUIRE, "preferred node", {"epoch": 1}),
    Row("both start together: the other one waits", view(N2, {N1: ad(), N2: ad()}),
        Action.WAIT, "goes to vpbx1-1"),
    Row("the standby takes over when the holder dies", view(N2, {N2: ad(N, 3)}),
        Action.ACQUIRE, "preferred node vpbx1-1 is dead",
        {"needs_failback": True, "epoch": 4}),  # epoch: one above the highest seen
    Row("the holder re-announces while the loser of a double claim stops its copy",
        view(N2, {N1: ad(T, 3), N2: ad(H, 4)}), Action.REANNOUNCE, "vpbx1-1 is stopping group"),
    Row("the standby takes over from a preferred node shutting down: it fails back later",
        view(N2, {N1: replace(ad(N, 3, declines=True), leaving=True), N2: ad()}),
        Action.ACQUIRE, "", {"needs_failback": True, "epoch": 4}),
    Row("a group handed over by standby does not fail back",
        view(N2, {N1: ad(N, 3, declines=True), N2: ad()}),
        Action.ACQUIRE, "", {"needs_failback": False, "epoch": 4}),
    Row("a takeover outranks the claim of the dead node it replaces",
        view(N2, {N2: ad(N, 0)}, seen_epochs={0: 1}), Action.ACQUIRE, "",
        {"epoch": 2, "seen_epoch": 1}),
    Row("once released by failback, the preferred node takes it",
        view(N1, {N1: ad(N, 1), N2: ad(N, 2)}, auto=AutoFailback.ON), Action.ACQUIRE, "",
        {"epoch": 3, "needs_failback": False}),
    Row("a start failure sends the group to the other node",
        view(N2, {N1: ad(F, 1), N2: ad()}), Action.ACQUIRE, "failed to start on preferred node"),
    Row("a start failure here: the failed node waits", view(N1, {N1: ad(F, 1), N2: ad()}),
        Action.WAIT),
    Row("a start failure here is not retried at once",
        view(N1, {N1: ad(F, 1), N2: ad()}, start_failed_at={0: NOW - 1}), Action.WAIT),
    Row("a start failure here ages",
        view(N1, {N1: ad(F, 1)}, start_failed_at={0: NOW - START_FAILED_HOLD_S}),
        Action.FORGET_FAILURE, "start failure is 30 s old; may be tried here again"),
    Row("a start failure here is forgotten once another node holds the group",
        view(N1, {N1: ad(F, 1), N2: ad(H, 2)}, start_failed_at={0: NOW - 1}),
        Action.FORGET_FAILURE, "held by vpbx1-2: forgetting its start failure"),
    Row("a start failure here is kept while another node is only starting (it may fail too)",
        view(N1, {N1: ad(F, 1), N2: ad(S, 2)}, start_failed_at={0: NOW - 1}), Action.WAIT),
    Row("standby: the peer acquires", view(N2, {N1: ad(N, 1, declines=True), N2: ad()}),
        Action.ACQUIRE, "standby"),
    Row("takeover: the asking node acquires", view(N2, {N1: ad(N, 1), N2: ad(wants=True)}),
        Action.ACQUIRE),
    Row("takeover: the other node waits", view(N1, {N1: ad(N, 1), N2: ad(wants=True)}),
        Action.WAIT),
    Row("no takeover while a live node failed to stop", view(N2, {N1: ad(B, 1), N2: ad()}),
        Action.WAIT, "failed to stop"),
    # ---- a group held here
    Row("auto_failback off: the holder keeps it when the old node returns",
        view(N2, {N1: ad(N, 1), N2: ad(H, 2)}), Action.WAIT),
    Row("auto_failback off: the returning node waits",
        view(N1, {N1: ad(N, 1), N2: ad(H, 2)}), Action.WAIT, "held by vpbx1-2"),
    Row("auto_failback on hands the group back to the preferred node",
        view(N2, {N1: ad(N, 1), N2: ad(H, 2)}, auto=AutoFailback.ON),
        Action.RELEASE, "auto_failback on"),
    Row("auto_failback legacy fails back too",
        view(N2, {N1: ad(N, 1), N2: ad(H, 2)}, auto=AutoFailback.LEGACY), Action.RELEASE),
    Row("a group moved by standby does not fail back",
        view(N2, {N1: ad(N, 1), N2: ad(H, 2)}, auto=AutoFailback.ON, failback=False),
        Action.WAIT, "holding"),
    Row("standby releases to the peer", view(N1, {N1: ad(H, 1, declines=True), N2: ad()}),
        Action.RELEASE, "standby: handing"),
    Row("standby with no peer keeps the group", view(N1, {N1: ad(H, 1, declines=True)}),
        Action.WAIT, "no other node"),
    Row("a takeover request moves the group", view(N1, {N1: ad(H, 1), N2: ad(wants=True)}),
        Action.RELEASE, "asked to take over"),
    Row("healed partition: the older claim releases, address first",
        view(N1, {N1: ad(H, 1), N2: ad(H, 2)}), Action.RELEASE, "newer claim",
        {"conflict": True}),
    Row("a blip just past deadtime: the holder keeps the group while the newer claim is still "
        "starting (probing the address), and announces it so that the probe fails",
        view(N1, {N1: ad(H, 1), N2: ad(S, 2)}), Action.REANNOUNCE, "still starting"),
    Row("healed partition: the newer claim keeps it", view(N2, {N1: ad(H, 1), N2: ad(H, 2)}),
        Action.REANNOUNCE, "keeping it"),
    Row("equal epochs go to the preferred node", view(N1, {N1: ad(H, 4), N2: ad(H, 4)}),
        Action.REANNOUNCE),
    Row("equal epochs: the other node releases", view(N2, {N1: ad(H, 4), N2: ad(H, 4)}),
        Action.RELEASE),
    Row("a takeover's epoch wins over a box that kept the address: the old claim releases",
        view(N1, {N1: ad(H, 1), N2: ad(H, 2)}, seen_epochs={0: 1}), Action.RELEASE),
    Row("a takeover's epoch wins over a box that kept the address: the takeover keeps it",
        view(N2, {N1: ad(H, 1), N2: ad(H, 2)}, seen_epochs={0: 1}), Action.REANNOUNCE),
    Row("a group found partly running at start-up is completed with its epoch",
        view(N1, {N1: ad(H, 5), N2: ad()}, incomplete=frozenset({0})),
        Action.ACQUIRE, "found partly running", {"epoch": 5, "needs_failback": True}),
    Row("a group found partly running is not completed when it must go",
        view(N1, {N1: ad(H, 1), N2: ad(H, 2)}, incomplete=frozenset({0})),
        Action.RELEASE, "newer claim"),
    # ---- a failed stop here
    Row("a failed stop is retried", view(N1, {N1: ad(B, 1), N2: ad()}),
        Action.RELEASE, "retrying the failed stop"),
    Row("a failed stop is retried later, not at once",
        view(N1, {N1: ad(B, 1), N2: ad()}, stop_retry_at={0: NOW + 1}),
        Action.WAIT, "waiting a moment to retry"),
    # ---- one-shot requests end once done
    Row("a standby ends once the peer holds the group",
        view(N1, {N1: ad(N, 1, declines=True), N2: ad(S, 2)}),
        Action.WAIT, "held by vpbx1-2", ends=(Action.END_STANDBY,)),
    Row("a standby stays while nobody else holds the group",
        view(N1, {N1: ad(H, 1, declines=True)}), Action.WAIT, "no other node"),
    Row("a takeover ends once this node holds the group",
        view(N2, {N1: ad(N, 1), N2: ad(H, 2, wants=True)}),
        Action.WAIT, "holding", ends=(Action.END_TAKEOVER,)),
    Row("a takeover stays while the group is being started here",
        view(N2, {N1: ad(N, 1), N2: ad(S, 2, wants=True)}, busy=frozenset({0})),
        Action.WAIT, "start in progress"),
    Row("requests end even before anything may be decided",
        view(N1, {N1: ad(N, 1, declines=True), N2: ad(H, 2)}, unannounced=frozenset({"x"})),
        Action.WAIT, "sends its first status", ends=(Action.END_STANDBY,)),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_rule(row: Row) -> None:
    *ends, d = decide(row.view)
    assert (d.group, d.action) == (0, row.action), d.reason
    assert row.words in d.reason
    for name, value in row.fields.items():
        assert getattr(d, name) == value, name
    assert tuple(e.action for e in ends) == row.ends
    assert all(e.group == 0 and e.reason for e in ends)


def test_every_decision_remembers_the_highest_epoch_seen() -> None:
    assert one(view(N2, {N1: ad(H, 7), N2: ad(N, 2)})).seen_epoch == 7
    assert one(view(N2, {N2: ad(N, 2)}, seen_epochs={0: 9})).seen_epoch == 9
    assert one(view(N1, {N1: ad()}, probed=False, seen_epochs={0: 3})).seen_epoch == 3


def test_one_decision_per_group_in_order() -> None:
    g1 = GroupInfo(1, "198.18.0.10", N2)
    ads: dict[str, NodeAd | None] = {
        N1: NodeAd({0: GroupAd(N, 0), 1: GroupAd(N, 0)}),
        N2: NodeAd({0: GroupAd(N, 0), 1: GroupAd(N, 0)}),
    }
    v = replace(view(N1, ads), groups=(G, g1))
    assert [(d.group, d.action) for d in decide(v)] == [(0, Action.ACQUIRE), (1, Action.WAIT)]


def test_holders_are_the_nodes_that_claim_a_group_this_node_first() -> None:
    assert holders(view(N1, {N1: ad(N), N2: ad(S, 1)})) == {0: N2}
    assert holders(view(N2, {N1: ad(H, 1), N2: ad(H, 2)})) == {0: N2}
    assert holders(view(N1, {N1: ad(H, 1), N2: ad(H, 2)})) == {0: N1}
    # stopping or failed to stop: resources may run, but nobody claims the group
    assert holders(view(N1, {N1: ad(T, 1), N2: ad(B, 2)})) == {}
    # a dead node's last advertisement counts for nothing
    assert holders(view(N1, {N1: ad(), N2: ad(H, 1)}, alive={N1})) == {}


def test_ads_round_trip_through_status_fields() -> None:
    a = NodeAd({0: GroupAd(H, 5), 3: GroupAd(N, 2)}, frozenset({3}), frozenset({0}), "abcd1234")
    fields = dict(encode_ad(a))
    assert fields == {"nsg": "0:H:5 3:N:2", "nsdecl": "3", "nswant": "0", "nsres": "abcd1234"}
    assert decode_ad(fields) == a
    assert decode_ad({}) is None
    assert decode_ad({"nsg": "0:Q:1"}) is None
    assert decode_ad({"nsg": "-"}) == NodeAd({})
    leaving = replace(a, leaving=True)
    assert dict(encode_ad(leaving))["nsleave"] == "1"
    assert decode_ad(dict(encode_ad(leaving))) == leaving

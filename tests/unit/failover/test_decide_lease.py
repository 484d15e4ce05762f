"""decide() with nonstop_etcd: the lease is one more input and has the last word.

Three nodes (vpbx1-1 preferred); each row a hand-written snapshot with the group's lease as
this node knows it, the decision expected and words of its reason.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from nonstop.config.model import AutoFailback
from nonstop.coord.lease import LeaseState
from nonstop.failover.decide import Action, ClusterView, Decision, GroupInfo, decide, lease_wants
from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.failover.view import LocalFacts

N1, N2, N3 = "vpbx1-1", "vpbx1-2", "vpbx1-3"
G = GroupInfo(0, "IPaddr::198.18.0.10", N1)
H, N, B = GroupState.HELD, GroupState.NONE, GroupState.STOP_FAILED

MINE = LeaseState(N1, known=True, mine=True)
FREE = LeaseState(None, known=True, mine=False)
UNKNOWN = LeaseState(None, known=False, mine=False)
AT_N2 = LeaseState(N2, known=True, mine=False)
STALE_MINE = LeaseState(N1, known=True, mine=False)


def ad(state: GroupState = N, epoch: int = 0) -> NodeAd:
    return NodeAd({0: GroupAd(state, epoch)})


def view(ads: dict[str, NodeAd], lease: LeaseState | None, *,
         alive: set[str] | None = None, busy: bool = False,
         heard: set[str] | None = None) -> ClusterView:
    """``heard`` (default: every alive peer): peers heard recently enough (view.heard)."""
    alive_set = frozenset(alive if alive is not None else ads)
    heard_set = frozenset(heard if heard is not None else alive_set - {N1})
    here = LocalFacts(ads[N1], busy=frozenset({0}) if busy else frozenset())
    return ClusterView(now=100.0, local=N1, order=(N1, N2, N3), alive=alive_set,
                       active=alive_set, comm_up=True,
                       ads={n: a for n, a in ads.items() if n in alive_set}, groups=(G,),
                       auto_failback=AutoFailback.OFF, here=here,
                       lease=None if lease is None else {0: lease}, heard=heard_set)


def one(v: ClusterView) -> Decision:
    (d,) = decide(v)
    return d


ALL_NONE = {N1: ad(), N2: ad(), N3: ad()}
I_HOLD = {N1: ad(H, 3), N2: ad(), N3: ad()}

ROWS = [
    ("the lease's owner starts the group", view(ALL_NONE, MINE), Action.ACQUIRE,
     "nobody alive holds"),
    ("no lease: campaign, start nothing", view(ALL_NONE, FREE), Action.CAMPAIGN,
     "waiting for the etcd lease of group IPaddr::198.18.0.10"),
    ("etcd silent: campaign, start nothing", view(ALL_NONE, UNKNOWN), Action.CAMPAIGN,
     "etcd not answering"),
    ("another node owns the lease", view(ALL_NONE, AT_N2), Action.CAMPAIGN,
     "vpbx1-2 holds the etcd lease of group IPaddr::198.18.0.10: not taking it"),
    ("our key of an earlier lease", view(ALL_NONE, STALE_MINE), Action.CAMPAIGN,
     "earlier lease has not expired"),
    ("a holder with its lease keeps it", view(I_HOLD, MINE), Action.WAIT, "holding group"),
    ("lost lease, another node owns it: release", view(I_HOLD, AT_N2), Action.RELEASE,
     "lost the etcd lease of group IPaddr::198.18.0.10: vpbx1-2 holds it; releasing the "
     "group, address first"),
    ("lost lease, a peer unheard: release", view(I_HOLD, UNKNOWN, alive={N1, N3}),
     Action.RELEASE, "(not renewed in time) and vpbx1-2 not heard: releasing the group"),
    ("cut off from everyone: release", view(I_HOLD, FREE, alive={N1}), Action.RELEASE,
     "vpbx1-2, vpbx1-3 not heard"),
    ("etcd lost, every peer heard: keep", view(I_HOLD, UNKNOWN), Action.WAIT,
     "kept while every peer is heard"),
    ("etcd lost, a peer alive but not heard lately: release",
     view(I_HOLD, UNKNOWN, heard={N2}), Action.RELEASE, "vpbx1-3 not heard"),
    ("lease lapsed, key free, every peer heard: keep", view(I_HOLD, FREE), Action.WAIT,
     "kept while every peer is heard"),
    ("a peer holds it: the heartbeat rule stands", view({N1: ad(), N2: ad(H, 2), N3: ad()},
     FREE), Action.WAIT, "held by vpbx1-2"),
    ("a busy group is left alone", view(I_HOLD, AT_N2, busy=True), Action.WAIT,
     "in progress"),
]


@pytest.mark.parametrize(("name", "v", "action", "words"), ROWS, ids=[r[0] for r in ROWS])
def test_lease_rules(name: str, v: ClusterView, action: Action, words: str) -> None:
    d = one(v)
    assert d.action is action, d.reason
    assert words in d.reason
    if action is Action.RELEASE:
        assert d.conflict  # address first, no last push of files from the cut-off side


def test_no_lease_input_is_the_heartbeat_rules_unchanged() -> None:
    for ads in (ALL_NONE, I_HOLD):
        for alive in ({N1, N2, N3}, {N1}):
            plain = decide(view(ads, None, alive=alive))
            assert plain == decide(replace(view(ads, MINE, alive=alive), lease=None))
            assert all(d.action is not Action.CAMPAIGN for d in plain)


def test_the_lease_never_lets_two_nodes_start() -> None:
    """Whatever the heartbeats say (everyone else dead), only the lease owner acquires."""
    lone = {N1: ad(), N2: ad(), N3: ad()}
    owners = []
    for me in (N1, N2, N3):
        v = replace(view(lone, None, alive={N1}), local=me, alive=frozenset({me}),
                    active=frozenset({me}), ads={me: lone[me]},
                    here=LocalFacts(lone[me]),
                    lease={0: LeaseState(N2, True, mine=me == N2)})
        if one(v).action is Action.ACQUIRE:
            owners.append(me)
    assert owners == [N2]


def test_lease_wants() -> None:
    v = view(ALL_NONE, FREE)
    assert lease_wants(v, decide(v)) == (frozenset({0}), frozenset())
    v = view(I_HOLD, MINE)
    assert lease_wants(v, decide(v)) == (frozenset({0}), frozenset())
    v = view(I_HOLD, UNKNOWN, alive={N1})  # releasing: keep the key until stopped
    assert lease_wants(v, decide(v)) == (frozenset(), frozenset({0}))
    v = view({N1: ad(B, 3), N2: ad(), N3: ad()}, MINE)  # a failed stop keeps it too
    assert lease_wants(v, decide(v)) == (frozenset(), frozenset({0}))
    v = view({N1: ad(), N2: ad(H, 2), N3: ad()}, FREE)
    assert lease_wants(v, decide(v)) == (frozenset(), frozenset())

"""build_view(): the one snapshot decide() reads, from membership's view and local facts."""

from __future__ import annotations

from nonstop.config.model import AutoFailback
from nonstop.failover.decide import Action, decide
from nonstop.failover.state import GroupAd, GroupState, NodeAd, encode_ad
from nonstop.failover.view import ClusterView, GroupInfo, LocalFacts, build_view, foreign_digests
from nonstop.heartbeat.membership import MembershipView, NodeView
from nonstop.heartbeat.states import NodeStatus

N1, N2, N3 = "vpbx1-1", "vpbx1-2", "vpbx1-3"
G = GroupInfo(0, "198.18.0.10", N1)
MINE = NodeAd({0: GroupAd(GroupState.NONE, 0)}, digest="abcd1234")


def node(name: str, status: NodeStatus, *, links: dict[str, bool] | None = None,
         ad: NodeAd | None = None, local: bool = False) -> NodeView:
    fields = dict(encode_ad(ad)) if ad is not None else {}
    return NodeView(name, status, local, 0, 2000, None, links or {}, fields)


def build(*peers: NodeView, comm_up: bool = True, **kw: bool) -> ClusterView:
    members = MembershipView(50.0, N1, comm_up, (node(N1, NodeStatus.ACTIVE, local=True),
                                                 *peers), {})
    return build_view(members, LocalFacts(MINE), now=50.0, order=(N1, N2, N3), groups=(G,),
                      auto_failback=AutoFailback.OFF, probed=kw.get("probed", True),
                      leaving=kw.get("leaving", False))


def test_alive_active_and_advertisements() -> None:
    theirs = NodeAd({0: GroupAd(GroupState.HELD, 3)}, digest="abcd1234")
    v = build(node(N2, NodeStatus.UP, links={"eth0": True}, ad=theirs),
              node(N3, NodeStatus.DEAD, ad=theirs))
    assert v.now == 50.0 and v.local == N1 and v.comm_up
    assert v.alive == {N1, N2} and v.active == {N1}
    assert v.ads == {N1: MINE, N2: theirs}  # a dead node's last advertisement is not used
    assert v.unannounced == frozenset()
    assert foreign_digests(v) == {}


def test_a_peer_without_failover_fields_is_alive_with_unknown_holdings() -> None:
    v = build(node(N2, NodeStatus.ACTIVE, links={"eth0": True}))
    assert v.ads[N2] is None
    assert "until vpbx1-2 says what it holds" in decide(v)[-1].reason


def test_a_peer_heard_but_without_a_status_is_unannounced() -> None:
    v = build(node(N2, NodeStatus.INIT, links={"eth0": True}),
              node(N3, NodeStatus.INIT, links={"eth0": False}))
    assert v.unannounced == {N2}  # vpbx1-3 was never heard: initdead decides about it
    assert v.alive == {N1}
    d = decide(v)[-1]
    assert d.action is Action.WAIT and "until vpbx1-2 sends its first status" in d.reason


def test_lifecycle_flags_and_a_foreign_haresources_digest() -> None:
    other = NodeAd({0: GroupAd(GroupState.NONE, 0)}, digest="ffff0000")
    v = build(node(N2, NodeStatus.ACTIVE, ad=other), probed=False)
    assert not v.probed and not v.leaving
    assert foreign_digests(v) == {N2: "ffff0000"}
    assert build(leaving=True).leaving


def test_heard_counts_peers_heard_within_fresh_ms() -> None:
    """With a lease, ``heard`` is the peers heard at most ``fresh_ms`` ago (alive ones)."""
    from nonstop.coord.lease import LeaseState

    def node(name: str, ago: int | None, status: NodeStatus = NodeStatus.ACTIVE,
             local: bool = False) -> NodeView:
        return NodeView(name=name, local=local, status=status, last_heard_ago_ms=ago,
                        deadtime_ms=2000, generation=None, links={"eth0": True}, fields={})

    members = MembershipView(now=0.0, local="a", comm_up=True, nodes=(
        node("a", 0, local=True), node("b", 900), node("c", 1400), node("d", None),
        node("e", 100, NodeStatus.DEAD)), counters={})
    v = build_view(members, LocalFacts(NodeAd({})), now=0.0, order=("a", "b", "c", "d", "e"),
                   groups=(), auto_failback=AutoFailback.OFF, probed=True, leaving=False,
                   lease={0: LeaseState(None, False, False)}, fresh_ms=1300)
    assert v.heard == {"b"}

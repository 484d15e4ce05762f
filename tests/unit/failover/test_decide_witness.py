"""Three nodes, a cut between the holder and one standby alone: the standby must not take the
group while the third node still sees the holder running it (a user trial: both held the
address for the whole 17 s cut). Each node's testimony is computed from its own snapshot and
read by the others through the status field, as the daemons do."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from nonstop.config.model import AutoFailback
from nonstop.failover.decide import Action, ClusterView, Decision, GroupInfo, decide
from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.failover.view import LocalFacts
from nonstop.failover.witness import decode_running, encode_running, witness_fields

N1, N2, N3 = "vpbx1-1", "vpbx1-2", "vpbx1-3"
ORDER = (N1, N2, N3)
G = GroupInfo(0, "IPaddr::198.18.0.10", N1)
H, T, N = GroupState.HELD, GroupState.STOPPING, GroupState.NONE


def _ad(state: GroupState, declines: bool = False) -> NodeAd:
    return NodeAd({0: GroupAd(state, 1)}, declines=frozenset({0}) if declines else frozenset())


def _view(me: str, hears: frozenset[str], ads: Mapping[str, NodeAd],
          seen: Mapping[str, Mapping[int, str]] | None = None) -> ClusterView:
    alive = hears | {me}
    return ClusterView(
        now=100.0, local=me, order=ORDER, alive=alive, active=alive, comm_up=True,
        ads={n: ads[n] for n in alive}, groups=(G,), auto_failback=AutoFailback.OFF,
        here=LocalFacts(ads[me], seen_epochs={0: 1}),
        lost=frozenset(ORDER) - alive, running_seen=dict(seen or {}))


def _round(ads: Mapping[str, NodeAd], hears: Mapping[str, frozenset[str]],
           ) -> dict[str, Decision]:
    """Every node's decision, each reading the testimony of the peers it hears."""
    said = {n: decode_running(dict(witness_fields(_view(n, hears[n], ads)))) for n in hears}
    return {n: decide(_view(n, hears[n], ads, {p: said[p] for p in hears[n]}))[0]
            for n in hears}


def test_a_standby_cut_from_the_holder_alone_waits_while_the_third_node_sees_it_serve() -> None:
    ads = {N1: _ad(H), N2: _ad(N), N3: _ad(N)}
    cut = {N1: frozenset({N3}), N2: frozenset({N3}), N3: frozenset({N1, N2})}
    d = _round(ads, cut)
    assert d[N2].action is Action.WAIT
    assert d[N2].reason == (f"group {G.key}: {N1} is silent here but {N3} still sees it "
                            f"running the group: the cut is between {N1} and this node; "
                            "not taking over")
    assert d[N1].action is Action.WAIT and d[N3].action is Action.WAIT  # N1 keeps it
    # Without the third node's word, the standby takes it: the rule is what stops it.
    assert decide(_view(N2, cut[N2], ads))[0].action is Action.ACQUIRE


def test_when_the_holder_then_dies_the_testimony_ends_and_exactly_one_takes_over() -> None:
    ads = {N1: _ad(H), N2: _ad(N), N3: _ad(N)}
    survivors = {N2: frozenset({N3}), N3: frozenset({N2})}
    d = _round(ads, survivors)
    assert d[N2].action is Action.ACQUIRE
    assert d[N3].action is Action.WAIT


def test_a_release_by_the_holder_ends_the_testimony_once_its_stop_is_done() -> None:
    """nonstop standby on the holder while a standby cannot hear it: the group must still
    move once the holder has stopped it (a testimony about a stopped group would leave it
    nowhere), and not while the holder's stop runs."""
    cut = {N1: frozenset({N3}), N2: frozenset({N3}), N3: frozenset({N1, N2})}
    stopping = {N1: _ad(T, declines=True), N2: _ad(N), N3: _ad(N)}
    assert _round(stopping, cut)[N2].action is Action.WAIT
    stopped = {N1: _ad(N, declines=True), N2: _ad(N), N3: _ad(N)}
    d = _round(stopped, cut)
    assert d[N2].action is Action.ACQUIRE
    assert d[N3].action is Action.WAIT


def test_testimony_is_only_about_peers_and_garbage_reads_as_none() -> None:
    ads = {N1: _ad(H), N2: _ad(N), N3: _ad(N)}
    assert witness_fields(_view(N1, frozenset({N2, N3}), ads)) == ()  # its own holding is in nsg
    assert witness_fields(_view(N3, frozenset({N1, N2}), ads)) == (("nsrun", f"0:{N1}"),)
    assert encode_running({}) == ()
    two = _view(N2, frozenset({N1}), ads)
    assert witness_fields(dataclasses.replace(two, order=(N1, N2))) == ()  # a pair: no field
    assert decode_running({"nsrun": f"x:y 3: 2:{N2} 2:{N3} :z"}) == {2: N2}
    assert decode_running({}) == {}

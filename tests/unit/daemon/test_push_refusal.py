"""Which pushes the daemon's sync node refuses while it holds a group (daemon_sync.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nonstop.daemon_sync import ReplicationWiring
from nonstop.failover.state import GroupAd, GroupState, NodeAd

ME, PEER = "vpbx1-2", "vpbx1-1"


def _refusal(active: bool, peer_groups: dict[int, GroupState] | None, alive: bool = True,
             peer: str = PEER) -> str | None:
    ads = {} if peer_groups is None else {
        PEER: NodeAd({i: GroupAd(st, 1) for i, st in peer_groups.items()})}
    view = SimpleNamespace(ads=ads, alive=frozenset({ME, PEER} if alive else {ME}))
    mine = NodeAd({0: GroupAd(GroupState.HELD, 2)} if active else {})  # we hold group 0
    wiring = SimpleNamespace(_was_active=active, node=ME,
                             cfg=SimpleNamespace(ha=SimpleNamespace(nodes=(PEER, ME))),
                             _cluster_view=lambda: view,
                             engine=SimpleNamespace(local_ad=lambda: mine))
    return ReplicationWiring._push_refusal(wiring, peer)  # type: ignore[arg-type]


@pytest.mark.parametrize(("case", "active", "peer_groups", "alive", "refused"), [
    ("a standby takes every push", False, {}, True, False),
    ("the active node refuses a peer that claims nothing (split brain's loser, stale push)",
     True, {}, True, True),
    ("... and one releasing its claim (the loser's master script runs while it stops)",
     True, {0: GroupState.STOPPING}, True, True),
    ("... and one it has not heard say what it holds", True, None, True, True),
    ("... and a dead one", True, {0: GroupState.HELD}, False, True),
    ("... and a split brain's loser still claiming our group before it settles",
     True, {0: GroupState.HELD}, True, True),
    ("a peer holding another group pushes as before (two haresources lines)",
     True, {1: GroupState.HELD}, True, False),
    ("a peer taking a group over pushes (its master script's start)",
     True, {1: GroupState.STARTING}, True, False),
])
def test_who_may_push_to_the_active_node(case: str, active: bool,
                                         peer_groups: dict[int, GroupState] | None,
                                         alive: bool, refused: bool) -> None:
    reason = _refusal(active, peer_groups, alive)
    assert (reason is not None) is refused, case
    if reason:
        assert f"{ME} holds a group and {PEER} none that {ME} does not hold" in reason


def test_a_csync2_host_outside_the_cluster_is_not_judged() -> None:
    assert _refusal(True, None, peer="backup-box") is None

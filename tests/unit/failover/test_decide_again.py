"""decide_again_at(): when time alone changes what decide() returned.

The daemon decides on every change it hears of and, between changes, only at this moment (or
once a second while it says ``now``). So the property that matters: for any snapshot, decide()
gives the same decisions at every instant before that moment, everything else unchanged.
Checked over many random snapshots (states, epochs, requests, busy groups, failed stops and
starts at random ages), then the rules one by one.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from test_decide import N1, N2, NOW, B, F, G, H, N, S, T, ad, view

from nonstop.config.model import AutoFailback
from nonstop.coord.lease import LeaseState
from nonstop.failover.decide import (
    START_FAILED_HOLD_S,
    Action,
    ClusterView,
    decide,
    decide_again_at,
)
from nonstop.failover.state import NodeAd

STATES = (H, N, S, T, B, F)


def random_view(rng: random.Random) -> ClusterView:
    local = rng.choice((N1, N2))
    ads: dict[str, NodeAd | None] = {}
    for n in (N1, N2):
        if n == local or rng.random() < 0.8:
            ads[n] = None if n != local and rng.random() < 0.1 else ad(
                rng.choice(STATES), rng.randrange(4), declines=rng.random() < 0.15,
                wants=rng.random() < 0.15)
    alive = {local} | {n for n in ads if rng.random() < 0.85}
    facts: dict[str, object] = {}
    if rng.random() < 0.4:
        facts["stop_retry_at"] = {0: NOW + rng.uniform(-3.0, 3.0)}
    if rng.random() < 0.4:
        facts["start_failed_at"] = {0: NOW - rng.uniform(0.0, 2 * START_FAILED_HOLD_S)}
    if rng.random() < 0.15:
        facts["busy"] = frozenset({0})
    if rng.random() < 0.1:
        facts["active"] = frozenset(alive - {rng.choice(sorted(alive))})
    if rng.random() < 0.05:
        facts["unannounced"] = frozenset({N2 if local == N1 else N1})
    return view(local, {n: a for n, a in ads.items() if n in alive}, alive=alive,
                auto=rng.choice(list(AutoFailback)), comm_up=rng.random() < 0.95,
                failback=rng.random() < 0.5, probed=rng.random() < 0.95,
                leaving=rng.random() < 0.03, **facts)


@pytest.mark.parametrize("seed", range(6))
def test_nothing_changes_before_the_moment_it_names(seed: int) -> None:
    rng = random.Random(seed)
    later_moments = 0
    for _ in range(2000):
        v = random_view(rng)
        decisions = decide(v)
        again = decide_again_at(v, decisions)
        assert again >= v.now
        if again == v.now:
            continue
        horizon = min(again, v.now + 3 * START_FAILED_HOLD_S)
        for t in (v.now + 1e-6, rng.uniform(v.now, horizon), horizon - 1e-6):
            assert decide(replace(v, now=t)) == decisions, (v, t, again)
        if again != float("inf"):
            later_moments += 1
            changed = decide(replace(v, now=again + 1e-6))  # (the float sum may round down)
            assert changed != decisions, "a moment named where nothing changes"
    assert later_moments > 20  # the deadlines were reached, not only the settled cases


def settled_holder() -> ClusterView:
    return view(N1, {N1: ad(H, 1), N2: ad(N, 0)})


def test_a_settled_cluster_needs_no_decision_until_something_changes() -> None:
    for v in (settled_holder(), view(N2, {N1: ad(H, 1), N2: ad(N, 0)})):
        (d,) = decide(v)
        assert d.action is Action.WAIT and not d.waiting_on
        assert decide_again_at(v, [d]) == float("inf")


def test_a_failed_stop_is_decided_again_when_its_retry_is_due() -> None:
    v = view(N1, {N1: ad(B, 1), N2: ad()}, stop_retry_at={0: NOW + 2})
    assert decide_again_at(v, decide(v)) == NOW + 2
    assert decide(replace(v, now=NOW + 2))[0].action is Action.RELEASE


def test_a_start_failure_is_decided_again_when_its_hold_ends() -> None:
    v = view(N1, {N1: ad(F, 1)}, start_failed_at={0: NOW - 10})
    (d,) = decide(v)
    assert d.action is Action.WAIT and "no node is available" in d.reason
    assert decide_again_at(v, [d]) == NOW - 10 + START_FAILED_HOLD_S
    assert decide(replace(v, now=NOW + 20))[0].action is Action.FORGET_FAILURE
    # A peer's start failure changes with its ad (an event), not with our clock.
    w = view(N1, {N1: ad(H, 1), N2: ad(F, 2)}, start_failed_at={0: NOW - 10})
    assert decide_again_at(w, decide(w)) == float("inf")


@pytest.mark.parametrize(("name", "changes"), [
    ("etcd lease", {"lease": {0: LeaseState(N1, known=True, mine=True)}}),
    ("ipfail ping counts", {"ping_counts": {N1: 1, N2: 1}, "ping_total": 1}),
    ("fencing", {"fencing": {}}),
    ("a Heartbeat peer", {"heartbeat_peers": frozenset({N2})}),
    ("own key in doubt", {"own_key_suspect": "no peer heard"}),
    ("shutting down", {"leaving": True}),
    ("before comm up", {"comm_up": False}),
    ("before the start-up probe", {"probed": False}),
    ("a peer not yet announced", {"unannounced": frozenset({N2})}),
])
def test_inputs_that_age_by_themselves_are_decided_again_at_every_chance(
        name: str, changes: dict[str, object]) -> None:
    v = replace(settled_holder(), **changes)  # type: ignore[arg-type]
    assert decide_again_at(v, decide(v)) == NOW, name


def test_an_action_running_or_a_decision_that_acts_or_waits_on_a_peer() -> None:
    busy = view(N1, {N1: ad(S, 1), N2: ad()}, busy=frozenset({0}))
    acquire = view(N1, {N1: ad(), N2: ad()})
    unknown = view(N1, {N1: ad(), N2: None})
    assert decide(acquire)[0].action is Action.ACQUIRE
    assert decide(unknown)[0].waiting_on
    for v in (busy, acquire, unknown):
        assert decide_again_at(v, decide(v)) == NOW
    assert G.index == 0

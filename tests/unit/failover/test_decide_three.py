"""Three nodes deciding from each other's ads, with a simulated clock: the survivors of a
holder whose address stays up (its daemon killed, not its box) may each fail to start the
group, and must not take turns at it for ever."""

from __future__ import annotations

from dataclasses import replace

from nonstop.config.model import AutoFailback
from nonstop.failover.decide import START_FAILED_HOLD_S, Action, ClusterView, GroupInfo, decide
from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.failover.view import LocalFacts

N1, N2, N3 = "vpbx1-1", "vpbx1-2", "vpbx1-3"
G = GroupInfo(0, "IPaddr::198.18.0.10", N1)


def test_two_survivors_whose_starts_fail_do_not_take_turns_for_ever() -> None:
    ads = {n: NodeAd({0: GroupAd(GroupState.NONE, 1)}) for n in (N2, N3)}
    failed_at: dict[str, float] = {}
    acquisitions = 0
    now, step = 100.0, 0.05
    starting: set[str] = set()
    for _ in range(int(4.0 / step)):  # 4 s of decisions, every 50 ms on each node
        for me in (N2, N3):
            g = ads[me].groups[0]
            if me in starting:  # the start fails: vpbx1-1's box still answers for the address
                starting.discard(me)
                ads[me] = replace(ads[me], groups={0: GroupAd(GroupState.START_FAILED, g.epoch)})
                failed_at[me] = now
                continue
            here = LocalFacts(ads[me], seen_epochs={0: max(a.groups[0].epoch
                                                           for a in ads.values())},
                              start_failed_at={0: failed_at[me]} if me in failed_at else {})
            view = ClusterView(now=now, local=me, order=(N1, N2, N3),
                               alive=frozenset({N2, N3}), active=frozenset({N2, N3}),
                               comm_up=True, ads=dict(ads), groups=(G,),
                               auto_failback=AutoFailback.OFF, here=here,
                               lost=frozenset({N1}))
            d = decide(view)[0]
            if d.action is Action.ACQUIRE:
                acquisitions += 1
                ads[me] = replace(ads[me], groups={0: GroupAd(GroupState.STARTING,
                                                              d.epoch or g.epoch)})
                starting.add(me)  # the other node sees it starting before it fails
            elif d.action is Action.FORGET_FAILURE:
                ads[me] = replace(ads[me], groups={0: GroupAd(GroupState.NONE, g.epoch)})
                failed_at.pop(me, None)
        now += step
    assert START_FAILED_HOLD_S > 4.0
    assert acquisitions <= 2, f"{acquisitions} acquisitions in 4 s"

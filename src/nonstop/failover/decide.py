"""Who must hold which resource group: a pure function of one snapshot of the cluster.

``decide(view)`` returns, for every group, what the local node must do (acquire, release,
re-announce, or wait) and a sentence saying why; the engine logs the sentence and tests assert
it. Every node evaluates the same rules over the same advertised states, so they agree without
extra messages:

* Nothing happens before comm is up (initdead), and never while a peer's holdings are unknown.
* A group held by a live node stays there (stickiness), unless that node declines it
  (``standby``), another node asks for it (``takeover``), or ``auto_failback on|legacy`` hands
  it back to its preferred node once that node is active and idle (only a group taken over
  while its preferred node was away, as Heartbeat's ``rsc_needs_failback``).
* A group nobody alive holds goes to the first available of: a node asking for it, its
  preferred node, the other nodes in ha.cf order. "Available" means active, holdings known,
  not declining the group and no recent start failure there.
* Two nodes holding the same group (a healed partition, a late heartbeat, a daemon restarted
  on a box that kept its resources) is settled at once: every acquisition carries an epoch
  one above the highest seen, the higher epoch keeps the group (it is the newer takeover, so
  clients already follow it) and re-announces its address; ties go to the preferred node, then
  ha.cf order. No restart, no outage for clients already on the keeper.
* A live node whose stop failed may still hold the address: nobody takes the group over
  while it lives (step down when certainty is lost).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from nonstop.config.model import AutoFailback
from nonstop.failover.state import GroupAd, GroupState, NodeAd


class Action(enum.Enum):
    ACQUIRE = "acquire"
    RELEASE = "release"
    REANNOUNCE = "reannounce"  # keep the group, re-send gratuitous ARP (after a conflict)
    WAIT = "wait"


@dataclass(frozen=True)
class GroupInfo:
    index: int
    key: str
    preferred: str


@dataclass(frozen=True)
class ClusterView:
    """The snapshot ``decide`` reads. ``ads`` has an entry for every alive node; None means
    that node has not (yet) told us what it holds."""

    local: str
    order: tuple[str, ...]
    alive: frozenset[str]
    active: frozenset[str]
    comm_up: bool
    ads: Mapping[str, NodeAd | None]
    groups: tuple[GroupInfo, ...]
    auto_failback: AutoFailback
    busy: frozenset[int] = frozenset()
    # Groups the local node took over because their preferred node was unavailable (dead, not
    # active, failed): only these fail back (Heartbeat's rsc_needs_failback), not a group
    # that came here through standby or takeover.
    needs_failback: frozenset[int] = frozenset()
    # The highest epoch this node has ever seen for each group, dead nodes' claims included:
    # a takeover must out-rank the claim of the node it replaces if that node comes back.
    seen_epochs: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    group: int
    action: Action
    reason: str
    epoch: int = 0
    needs_failback: bool = False  # with ACQUIRE: taken because the preferred node was away
    conflict: bool = False  # with RELEASE: another node holds it too (drop the address first)


_NONE_AD = GroupAd(GroupState.NONE, 0)


def _ad(view: ClusterView, node: str, g: int) -> GroupAd:
    ad = view.ads.get(node)
    if ad is None:
        return _NONE_AD
    return ad.groups.get(g, _NONE_AD)


def _rank(view: ClusterView, info: GroupInfo, node: str) -> tuple[int, int]:
    """Tie-break: the preferred node first, then ha.cf order (higher tuple wins)."""
    pos = view.order.index(node) if node in view.order else len(view.order)
    return (1 if node == info.preferred else 0, -pos)


def _available(view: ClusterView, node: str, g: int) -> bool:
    ad = view.ads.get(node)
    return (
        node in view.active
        and ad is not None
        and _ad(view, node, g).state is not GroupState.START_FAILED
    )


def owner(view: ClusterView, info: GroupInfo) -> tuple[str | None, str]:
    """The node that should take a group nobody holds, and why."""
    g = info.index
    nodes = [n for n in view.order if n in view.alive]
    avail = [n for n in nodes if _available(view, n, g)]
    for n in avail:
        ad = view.ads[n]
        if ad is not None and g in ad.wants:
            return n, f"{n} asked to take it over"
    willing = [n for n in avail if g not in (view.ads[n] or NodeAd({})).declines]
    if info.preferred in willing:
        return info.preferred, f"{info.preferred} is its preferred node"
    why_not = _why_not_preferred(view, info)
    if willing:
        return willing[0], f"{willing[0]} is the first available node ({why_not})"
    if avail:
        pick = info.preferred if info.preferred in avail else avail[0]
        return pick, f"every available node declines it; {pick} takes it anyway"
    return None, "no node is available to hold it"


def _why_not_preferred(view: ClusterView, info: GroupInfo) -> str:
    p = info.preferred
    if p not in view.alive:
        return f"preferred node {p} is dead"
    if p not in view.active:
        return f"preferred node {p} is not active yet"
    ad = view.ads.get(p)
    if ad is None:
        return f"preferred node {p} has not said what it holds"
    if _ad(view, p, info.index).state is GroupState.START_FAILED:
        return f"it failed to start on preferred node {p}"
    if info.index in ad.declines:
        return f"preferred node {p} is in standby"
    return f"preferred node {p} is unavailable"


def _decide_group(view: ClusterView, info: GroupInfo) -> Decision:
    g, me = info.index, view.local
    mine = _ad(view, me, g)
    peers = [n for n in view.order if n in view.alive and n != me]
    seen_epochs = [_ad(view, n, g).epoch for n in view.alive]
    next_epoch = max([*seen_epochs, view.seen_epochs.get(g, 0)]) + 1
    key = info.key

    if mine.state is GroupState.HELD:
        rivals = [n for n in peers if _ad(view, n, g).state in (GroupState.HELD,
                                                                  GroupState.STARTING)]
        if rivals:
            contenders = [me, *rivals]
            winner = max(contenders, key=lambda n: (_ad(view, n, g).epoch, _rank(view, info, n)))
            theirs = ", ".join(f"{n} (epoch {_ad(view, n, g).epoch})" for n in rivals)
            if winner != me:
                return Decision(
                    g, Action.RELEASE,
                    f"group {key} is also held by {theirs}; {winner} has the newer claim over "
                    f"mine (epoch {mine.epoch}): releasing it, address first",
                    conflict=True,
                )
            return Decision(
                g, Action.REANNOUNCE,
                f"group {key} is also held by {theirs}; mine (epoch {mine.epoch}) is the newer "
                f"claim: keeping it and re-announcing its address",
            )
        my_ad = view.ads.get(me)
        if my_ad is not None and g in my_ad.declines:
            takers = [n for n in peers if _available(view, n, g)
                      and g not in (view.ads[n] or NodeAd({})).declines]
            if takers:
                return Decision(g, Action.RELEASE,
                                f"standby: handing group {key} over to {takers[0]}")
            return Decision(g, Action.WAIT,
                            f"standby requested for group {key} but no other node can take it")
        for n in peers:
            ad = view.ads.get(n)
            if ad is not None and g in ad.wants and _available(view, n, g):
                return Decision(g, Action.RELEASE, f"{n} asked to take over group {key}")
        p = info.preferred
        if (
            view.auto_failback is not AutoFailback.OFF
            and g in view.needs_failback
            and p != me
            and _available(view, p, g)
            and g not in (view.ads[p] or NodeAd({})).declines
            and _ad(view, p, g).state is GroupState.NONE
        ):
            return Decision(
                g, Action.RELEASE,
                f"auto_failback {view.auto_failback.value}: handing group {key} back to its "
                f"preferred node {p}",
            )
        return Decision(g, Action.WAIT, f"holding group {key}")

    if mine.state is GroupState.STOP_FAILED:
        return Decision(g, Action.RELEASE, f"retrying the failed stop of group {key}")

    # We do not hold it (NONE or START_FAILED).
    holders = [n for n in peers if _ad(view, n, g).state.holding]
    if holders:
        h = holders[0]
        if _ad(view, h, g).state is GroupState.STOP_FAILED:
            return Decision(
                g, Action.WAIT,
                f"{h} failed to stop group {key} and may still hold it: not taking over while "
                f"{h} is alive",
            )
        return Decision(g, Action.WAIT, f"group {key} is held by {h}")
    starting = [n for n in peers if n not in view.active]
    if starting:
        # Alive but still waiting out its initdead: it is about to be active and may be the
        # group's owner, so taking the group now would race it.
        return Decision(
            g, Action.WAIT,
            f"not deciding group {key} until {', '.join(starting)} is active",
        )
    unknown = [n for n in peers if view.ads.get(n) is None]
    if unknown:
        return Decision(
            g, Action.WAIT,
            f"not deciding group {key} until {', '.join(unknown)} says what it holds",
        )
    who, why = owner(view, info)
    if who == me:
        preferred_away = me != info.preferred and not _available(view, info.preferred, g)
        return Decision(
            g, Action.ACQUIRE, f"nobody alive holds group {key}; taking it: {why}", next_epoch,
            needs_failback=preferred_away,
        )
    if who is None:
        return Decision(g, Action.WAIT, f"group {key} stays down: {why}")
    return Decision(g, Action.WAIT, f"group {key} goes to {who}: {why}")


def decide(view: ClusterView) -> list[Decision]:
    """One decision per group (groups with an action in progress are skipped)."""
    if not view.comm_up:
        return [
            Decision(i.index, Action.WAIT, "waiting for every node to be heard or declared dead "
                     "(initdead) before touching resources")
            for i in view.groups
        ]
    return [_decide_group(view, info) for info in view.groups if info.index not in view.busy]

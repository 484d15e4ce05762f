"""Who must hold which resource group: a pure function of one snapshot of the cluster.

``decide(view)`` returns, for every group, what the local node must do and a sentence saying
why; the engine carries it out and logs the sentence, ``nonstop status`` shows it, and tests
assert it. Every rule is here, nowhere else; the engine only executes. Every node evaluates
the same rules over the same advertised states, so they agree without extra messages:

* Nothing is decided while this node shuts down (the shutdown releases everything), before
  its start-up probe has seen what the box still runs, before comm is up (initdead), while an
  action on the group is running here, and never while a peer's holdings are unknown (heard
  but no status yet, alive but not yet active, or no failover fields in its status).
* A group held by a live node stays there (stickiness), unless that node declines it
  (``standby``), another node asks for it (``takeover``), or ``auto_failback on|legacy`` hands
  it back to its preferred node once that node is active and idle (only a group taken over
  while its preferred node was away, as Heartbeat's ``rsc_needs_failback``). A group the
  probe found partly running is kept and the rest of it started.
* A group nobody alive holds goes to the first available of: a node asking for it, its
  preferred node, the other nodes in ha.cf order. "Available" means active, holdings known,
  not declining the group and no recent start failure there. A start failure is forgotten
  once another node holds the group, or after ``START_FAILED_HOLD_S``; while it lasts, the
  group's reason says what failed (an address another host answered for, docs/SECURITY.md).
* A takeover from a node lost by silence (dead, or never heard within initdead) probes each
  virtual address with ARP before adding it (``Decision.probe``): that node, or a rogue, may
  still answer for it. A hand-off from a live node that advertised the release does not.
* Two nodes holding the same group (a healed partition, a late heartbeat, a daemon restarted
  on a box that kept its resources) is settled at once: every acquisition carries an epoch
  one above the highest seen, the higher epoch keeps the group (it is the newer takeover, so
  clients already follow it) and re-announces its address; ties go to the preferred node, then
  ha.cf order. No restart, no outage for clients already on the keeper. A holder does not
  yield to a claim still starting (it re-announces, failing that takeover's address probe).
  A Heartbeat node (mixed cluster) never gives up a doubly held group: the nonstop node
  releases it to it.
* A live node whose stop failed may still hold the address: nobody takes the group over
  while it lives (step down when certainty is lost); the node itself retries the stop.
* With ``nonstop_etcd`` (docs/ETCD.md) every rule above still runs, then the etcd lease has
  the last word: a group is started only by the node that owns its lease (otherwise the node
  campaigns for it and waits), and a holder whose lease is gone releases the group, address
  first, when another node owns the lease or when not every peer is heard (recently enough
  that none can have declared this node dead: ``view.heard``); while every peer is heard
  nobody else can take the group, so losing all of etcd moves nothing.
* ``standby`` and ``takeover`` are one-shot requests: each ends (is dropped) once done, a
  standby when another node holds the group, a takeover when this node does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from nonstop.config.model import AutoFailback
from nonstop.coord.lease import LeaseState
from nonstop.failover import guards
from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.failover.view import ClusterView, GroupInfo, holders

__all__ = ["START_FAILED_HOLD_S", "Action", "ClusterView", "Decision", "GroupInfo", "decide",
           "decide_again_at", "lease_wants", "owner"]

START_FAILED_HOLD_S = 30.0  # Heartbeat waits 30 s before pushing a failed group away


class Action(enum.Enum):
    ACQUIRE = "acquire"
    RELEASE = "release"
    REANNOUNCE = "reannounce"  # keep the group, re-send gratuitous ARP (after a conflict)
    WAIT = "wait"
    FORGET_FAILURE = "forget_failure"  # START_FAILED here -> NONE: it may be tried here again
    END_STANDBY = "end_standby"  # the standby request for the group is done: drop it
    END_TAKEOVER = "end_takeover"  # the takeover request for the group is done: drop it
    CAMPAIGN = "campaign"  # nonstop_etcd: ask etcd for the group's lease, start nothing yet
    # Ask a Heartbeat peer to take the group (standby exchange, ``ask_resources ... me``);
    # the group is released once it agrees.
    HAND_OVER = "hand_over"
    FENCE = "fence"  # fence the dead peer ``Decision.target`` before taking the group over


@dataclass(frozen=True)
class Decision:
    """What this node must do about one group, and the sentence saying why."""

    group: int
    action: Action
    reason: str
    epoch: int = 0
    needs_failback: bool = False  # with ACQUIRE: taken because the preferred node was away
    conflict: bool = False  # with RELEASE: another node holds it too (drop the address first)
    # The highest epoch seen for the group, for this node to remember (0: nothing to note).
    seen_epoch: int = 0
    # With WAIT and HAND_OVER: the peers whose word or action the decision waits for (the
    # engine warns once when such a wait outlasts deadtime).
    waiting_on: frozenset[str] = frozenset()
    target: str = ""  # with FENCE: the peer to fence
    # With ACQUIRE: probe each virtual address with ARP before adding it (a takeover from a
    # node lost by silence, which may still answer for it); a hand-off from a live node that
    # said it released the group needs none.
    probe: bool = False
    down: bool = False  # with WAIT: nobody runs the group and this node will not: logged at info


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
        and not guards.worse(view, node)
    )


def _declines(view: ClusterView, node: str, g: int) -> bool:
    return g in (view.ads.get(node) or NodeAd({})).declines


def owner(view: ClusterView, info: GroupInfo) -> tuple[str | None, str]:
    """The node that should take a group nobody holds, and why."""
    g = info.index
    nodes = [n for n in view.order if n in view.alive]
    avail = [n for n in nodes if _available(view, n, g)]
    for n in avail:
        ad = view.ads[n]
        if ad is not None and g in ad.wants:
            return n, f"{n} asked to take it over"
    willing = [n for n in avail if not _declines(view, n, g)]
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
    if guards.worse(view, p):
        return f"preferred node {p} reaches fewer ping nodes"
    return f"preferred node {p} is unavailable"


def _seen_epoch(view: ClusterView, g: int) -> int:
    """The highest epoch of the group seen so far, alive nodes' claims and remembered ones."""
    return max([*(_ad(view, n, g).epoch for n in view.alive), view.here.seen_epochs.get(g, 0)])


def _in_progress(state: GroupState) -> str:
    if state is GroupState.STARTING:
        return "start in progress"
    if state is GroupState.STOPPING:
        return "stop in progress"
    if state is GroupState.HELD:
        return "resource check in progress"
    return "action in progress"


def _not_yet(view: ClusterView, info: GroupInfo) -> Decision | None:
    """Why nothing may be decided for the group yet, if so."""
    g, key = info.index, info.key
    if not view.probed:
        return Decision(g, Action.WAIT, f"not deciding group {key} until the start-up probe "
                        "has seen what this box still runs")
    if not view.comm_up:
        return Decision(g, Action.WAIT, "waiting for every node to be heard or declared dead "
                        "(initdead) before touching resources")
    mine = _ad(view, view.local, g)
    if g in view.here.busy:
        return Decision(g, Action.WAIT, f"group {key}: {_in_progress(mine.state)}")
    holder = holders(view).get(g)
    # Only a holder that got there: one still starting may fail too, and two nodes that each
    # forgot their failure as the other began took turns for ever (three nodes, the dead
    # holder's address still up: 90 acquisitions each in 4 s).
    if (mine.state is GroupState.START_FAILED and holder not in (None, view.local)
            and _ad(view, holder, g).state is GroupState.HELD):
        return Decision(g, Action.FORGET_FAILURE,
                        f"group {key} is held by {holder}: forgetting its start failure here")
    if view.unannounced:
        return Decision(
            g, Action.WAIT,
            f"not deciding group {key} until {', '.join(sorted(view.unannounced))} sends its "
            "first status (heard, holdings unknown)", waiting_on=view.unannounced,
        )
    return None


def _alive_peers(view: ClusterView) -> list[str]:
    """The other nodes that are alive, in ha.cf order."""
    return [n for n in view.order if n in view.alive and n != view.local]


def _rival_claim(view: ClusterView, info: GroupInfo, rivals: list[str]) -> Decision:
    """We hold the group and so do ``rivals``: the newer claim keeps it, except against a
    Heartbeat node, which never gives a group up for a double claim (it only logs "Both
    machines own ..."; a healed partition it noticed itself ends in its restart, which it
    announces with ``info=shutdown``): only our release ends the double holding."""
    g, me = info.index, view.local
    mine = _ad(view, me, g)
    keeper = [n for n in rivals if n in view.heartbeat_peers
              and _ad(view, n, g).state is GroupState.HELD]
    if keeper:
        return Decision(
            g, Action.RELEASE,
            f"group {info.key} is also held by Heartbeat node {keeper[0]}, which keeps it "
            f"(Heartbeat never gives a group up for a double claim): releasing it, address "
            f"first", conflict=True,
        )
    if all(_ad(view, n, g).state is GroupState.STARTING for n in rivals):
        # Not yet a holder: a takeover from a node lost by silence probes the address first
        # and fails on ours. Releasing to it left nobody serving for 2 s after a 0.2 s blip
        # of the link (the sub-second profile); our announcement also fails a probe under way.
        return Decision(g, Action.REANNOUNCE, f"group {info.key} is also claimed by "
                        f"{', '.join(rivals)}, still starting it: keeping it and "
                        f"re-announcing its address until a rival holds it")
    winner = max([me, *rivals], key=lambda n: (_ad(view, n, g).epoch, _rank(view, info, n)))
    theirs = ", ".join(f"{n} (epoch {_ad(view, n, g).epoch})" for n in rivals)
    if winner != me:
        return Decision(
            g, Action.RELEASE,
            f"group {info.key} is also held by {theirs}; {winner} has the newer claim over "
            f"mine (epoch {mine.epoch}): releasing it, address first",
            conflict=True,
        )
    return Decision(
        g, Action.REANNOUNCE,
        f"group {info.key} is also held by {theirs}; mine (epoch {mine.epoch}) is the newer "
        f"claim: keeping it and re-announcing its address",
    )


def _release_to(view: ClusterView, info: GroupInfo, taker: str, d: Decision) -> Decision:
    """A release towards a Heartbeat peer is its standby exchange: ask it first, stop the
    group once it agreed (it never takes a live node's group otherwise)."""
    if taker not in view.heartbeat_peers or info.index in view.handover_agreed:
        return d
    return Decision(info.index, Action.HAND_OVER,
                    f"{d.reason}: asking Heartbeat node {taker} to take it (standby exchange)",
                    waiting_on=frozenset({taker}))


def _held(view: ClusterView, info: GroupInfo) -> Decision:
    """We hold the group: keep it, or hand it over, or settle a double claim."""
    g, me, key = info.index, view.local, info.key
    peers = _alive_peers(view)
    rivals = [n for n in peers if _ad(view, n, g).state.claims]
    if rivals:
        return _rival_claim(view, info, rivals)
    stopping = [n for n in peers if _ad(view, n, g).state is GroupState.STOPPING]
    if stopping:
        # It gave a double claim up (a healed partition) and is dropping the address: clients
        # that followed it must learn ours again, whichever node noticed the double claim
        # first (seen in the chaos run: 10.9 s without service when the loser noticed first).
        return Decision(g, Action.REANNOUNCE,
                        f"{stopping[0]} is stopping group {key} while this node holds it: "
                        f"re-announcing its address")
    if _declines(view, me, g):
        takers = [n for n in peers if _available(view, n, g) and not _declines(view, n, g)]
        if takers:
            return _release_to(view, info, takers[0], Decision(
                g, Action.RELEASE, f"standby: handing group {key} over to {takers[0]}"))
        return Decision(g, Action.WAIT,
                        f"standby requested for group {key} but no other node can take it")
    for n in peers:
        ad = view.ads.get(n)
        if ad is not None and g in ad.wants and _available(view, n, g):
            return Decision(g, Action.RELEASE, f"{n} asked to take over group {key}")
    better = [n for n in peers if _available(view, n, g) and guards.reaches_more(view, n, me)]
    if better:
        return Decision(g, Action.RELEASE, guards.give_reason(view, better[0]))
    p = info.preferred
    if (
        view.auto_failback is not AutoFailback.OFF
        and not guards.fenced_standby(view, p)
        and g in view.here.needs_failback
        and p != me
        and _available(view, p, g)
        and not _declines(view, p, g)
        and _ad(view, p, g).state is GroupState.NONE
    ):
        return _release_to(view, info, p, Decision(
            g, Action.RELEASE,
            f"auto_failback {view.auto_failback.value}: handing group {key} back to its "
            f"preferred node {p}",
        ))
    if g in view.handover_agreed:
        # Our standby was cancelled (a takeover) after the Heartbeat node agreed: it waits
        # for our "done" (for an hour), and its hb_standby cannot be taken back either.
        return Decision(g, Action.RELEASE, f"standby: a Heartbeat node agreed to take group "
                        f"{key} (standby exchange, cannot be taken back): releasing it")
    return Decision(g, Action.WAIT, f"holding group {key}")


def _keep(view: ClusterView, info: GroupInfo) -> Decision:
    """We hold the group; if we keep it and the probe found it partly running, the rest is
    started now (with the epoch it was claimed with)."""
    d = _held(view, info)
    g = info.index
    if d.action is not Action.WAIT or g not in view.here.incomplete:
        return d
    unknown = [n for n in _alive_peers(view) if view.ads.get(n) is None]
    if unknown:
        # A Heartbeat node says what it holds only in answer to our "starting": it may have
        # taken the group over while this daemon was away (then it keeps it, see above).
        return Decision(
            g, Action.WAIT,
            f"group {info.key} was found partly running at start-up: not starting the rest "
            f"of it until {', '.join(unknown)} says what it holds", waiting_on=frozenset(unknown),
        )
    epoch = _ad(view, view.local, g).epoch
    return Decision(
        g, Action.ACQUIRE,
        f"group {info.key} was found partly running at start-up: starting the rest of it "
        f"(epoch {epoch})",
        epoch, needs_failback=g in view.here.needs_failback,
        probe=bool(view.lost) and view.address_probe,
    )


def _stop_failed(view: ClusterView, info: GroupInfo) -> Decision:
    g = info.index
    if view.now < view.here.stop_retry_at.get(g, 0.0):
        return Decision(g, Action.WAIT,
                        f"the stop of group {info.key} failed: waiting a moment to retry it")
    return Decision(g, Action.RELEASE, f"retrying the failed stop of group {info.key}")


def _start_failure_aged(view: ClusterView, info: GroupInfo) -> Decision | None:
    g = info.index
    failed_at = view.here.start_failed_at.get(g)
    if _ad(view, view.local, g).state is not GroupState.START_FAILED or failed_at is None:
        return None
    if view.now - failed_at < START_FAILED_HOLD_S:
        return None
    return Decision(g, Action.FORGET_FAILURE,
                    f"group {info.key}: start failure is {START_FAILED_HOLD_S:.0f} s old; "
                    "may be tried here again")


def _unheld(view: ClusterView, info: GroupInfo) -> Decision:
    """We do not hold the group (NONE or START_FAILED): wait, or take it."""
    g, me, key = info.index, view.local, info.key
    aged = _start_failure_aged(view, info)
    if aged is not None:
        return aged
    peers = _alive_peers(view)
    running = [n for n in peers if _ad(view, n, g).state.may_run]
    if running:
        h = running[0]
        if _ad(view, h, g).state is GroupState.STOP_FAILED:
            return Decision(
                g, Action.WAIT,
                f"{h} failed to stop group {key} and may still hold it: not taking over while "
                f"{h} is alive", waiting_on=frozenset({h}),
            )
        return Decision(g, Action.WAIT, f"group {key} is held by {h}")
    starting = [n for n in peers if n not in view.active]
    if starting:
        # Alive but still waiting out its initdead: it is about to be active and may be the
        # group's owner, so taking the group now would race it.
        return Decision(
            g, Action.WAIT,
            f"not deciding group {key} until {', '.join(starting)} is active",
            waiting_on=frozenset(starting),
        )
    unknown = [n for n in peers if view.ads.get(n) is None]
    if unknown:
        # Heartbeat with auto_failback legacy (its default) sends no resource messages at all.
        legacy = ("; with auto_failback legacy a Heartbeat node never says it: set "
                  "auto_failback on or off on both nodes" if view.auto_failback is
                  AutoFailback.LEGACY else "")
        return Decision(
            g, Action.WAIT,
            f"not deciding group {key} until {', '.join(unknown)} says what it holds (a "
            "nonstop node says it in its heartbeats, a Heartbeat node only in answer to our "
            f"'starting'{legacy})", waiting_on=frozenset(unknown),
        )
    if g in view.handover_agreed:
        hb = frozenset(view.heartbeat_peers)
        return Decision(g, Action.WAIT, f"group {key} was handed over to Heartbeat node "
                        f"{', '.join(sorted(hb))} (standby exchange): waiting for it to take it",
                        waiting_on=hb)
    who, why = owner(view, info)
    if who == me:
        block = guards.takeover_block(view, g)
        if block is not None:
            action = Action.WAIT if block.fence is None else Action.FENCE
            return Decision(g, action, f"group {key}: {block.reason}", target=block.fence or "",
                            down=True)
        # Taken because its preferred node is away (dead, not active, failed, or shutting
        # down): only such a group fails back (Heartbeat's rsc_needs_failback), not one handed
        # over by standby.
        p_ad = view.ads.get(info.preferred)
        preferred_away = me != info.preferred and (
            not _available(view, info.preferred, g) or (p_ad is not None and p_ad.leaving))
        probe = bool(view.lost) and view.address_probe
        first = " (probing its addresses first: a lost node may still answer for them)"
        return Decision(
            g, Action.ACQUIRE,
            f"nobody alive holds group {key}; taking it: {why}{guards.takeover_note(view)}"
            f"{first if probe else ''}",
            _seen_epoch(view, g) + 1, needs_failback=preferred_away, probe=probe,
        )
    failure = view.here.start_failure.get(g)
    failed = f"; its start failed here: {failure}" if failure else ""
    if who is None and failure and "address conflict" in failure:
        # Its own probe found the address answered: the group is most likely up on a node
        # this one cannot hear (a frozen daemon, a cut heartbeat link), not down (a trial).
        return Decision(g, Action.WAIT, f"group {key}: another host answers for its address "
                        f"(most likely a node this one cannot hear, still serving it): not "
                        f"started here ({failure}); trying again when the failure ages")
    if who is None:
        # Say what comes next and what the admin can do: the same words all along (logged
        # when they change), so no countdown.
        retry = (f"; it is tried here again {START_FAILED_HOLD_S:.0f} s after it failed, or at "
                 "once by `nonstop takeover` on this node once the cause is fixed"
                 if failure else "")
        return Decision(g, Action.WAIT, f"group {key} stays down: {why}{failed}{retry}",
                        down=True)
    d = Decision(g, Action.WAIT, f"group {key} goes to {who}: {why}{failed}",
                 waiting_on=frozenset({who}))
    if who in view.heartbeat_peers and _ad(view, me, g).state is GroupState.START_FAILED:
        # A Heartbeat node takes a group from a live peer only through its standby exchange
        # (as Heartbeat itself hands a group on after a failed start: hb_standby foreign).
        return _release_to(view, info, who, d)
    return d


_NO_LEASE = LeaseState(None, known=False, mine=False)


def _lease_wait(view: ClusterView, info: GroupInfo, lease: LeaseState) -> str:
    if lease.known and lease.holder not in (None, view.local):
        return f"{lease.holder} holds the etcd lease of group {info.key}: not taking it"
    if lease.known and lease.holder == view.local:
        return (f"waiting for the etcd lease of group {info.key} (this node's key of an "
                "earlier lease has not expired yet)")
    if lease.known:
        return f"waiting for the etcd lease of group {info.key}"
    return f"waiting for the etcd lease of group {info.key} (etcd not answering)"


def _lease_gate(view: ClusterView, info: GroupInfo, d: Decision) -> Decision:
    """nonstop_etcd: the heartbeat rules proposed ``d``; the lease may veto it."""
    g, key = info.index, info.key
    lease = view.lease.get(g, _NO_LEASE) if view.lease is not None else None
    if lease is None or lease.mine:
        return d
    held = _ad(view, view.local, g).state is GroupState.HELD
    if d.action is Action.ACQUIRE and not held:
        return Decision(g, Action.CAMPAIGN, _lease_wait(view, info, lease))
    if not held or d.action not in (Action.WAIT, Action.REANNOUNCE, Action.ACQUIRE):
        return d
    if lease.known and lease.holder not in (None, view.local):
        return Decision(g, Action.RELEASE, f"lost the etcd lease of group {key}: "
                        f"{lease.holder} holds it; releasing the group, address first",
                        conflict=True)
    unheard = [n for n in view.order if n != view.local and n not in view.heard]
    if unheard:
        return Decision(g, Action.RELEASE, f"lost the etcd lease of group {key} (not renewed "
                        f"in time) and {', '.join(unheard)} not heard: releasing the group, "
                        "address first", conflict=True)
    return replace(d, reason=f"{d.reason} (without its etcd lease: kept while every peer is "
                   "heard, as nobody else can take it)")


def _decide_group(view: ClusterView, info: GroupInfo) -> Decision:
    if view.leaving:
        return Decision(info.index, Action.WAIT,
                        f"shutting down: the shutdown releases group {info.key}")
    d = _not_yet(view, info)
    if d is None:
        state = _ad(view, view.local, info.index).state
        if state is GroupState.HELD:
            d = _keep(view, info)
        elif state is GroupState.STOP_FAILED:
            d = _stop_failed(view, info)
        else:
            d = _unheld(view, info)
    if info.index not in view.here.busy:
        d = _lease_gate(view, info, d)
    return replace(d, seen_epoch=_seen_epoch(view, info.index))


def _requests_done(view: ClusterView, info: GroupInfo) -> list[Decision]:
    """``standby`` and ``takeover`` are one-shot: each is dropped once it is done."""
    g, me, key = info.index, view.local, info.key
    my_ad = view.ads.get(me)
    if view.leaving or my_ad is None:
        return []
    out: list[Decision] = []
    holder = holders(view).get(g)
    if g in my_ad.declines and holder not in (None, me):
        out.append(Decision(g, Action.END_STANDBY,
                            f"standby for group {key} is done: {holder} holds it"))
    if g in my_ad.wants and _ad(view, me, g).state is GroupState.HELD:
        out.append(Decision(g, Action.END_TAKEOVER,
                            f"takeover of group {key} is done: this node holds it"))
    return out


def decide(view: ClusterView) -> list[Decision]:
    """For each group in order: the requests that are done, then the one decision about the
    group itself (always last, with its reason; a wait says what it waits for)."""
    out: list[Decision] = []
    for info in view.groups:
        out.extend(_requests_done(view, info))
        out.append(_decide_group(view, info))
    return out


def decide_again_at(view: ClusterView, decisions: list[Decision]) -> float:
    """When time alone can change what ``decide(view)`` returned: the daemon decides again on
    every change it hears of (a status, a peer's ad, an action done, a ping node, a lease), so
    between changes only this moment needs a decision.

    ``view.now`` (decide again at the next chance, as before: once a second) while an input
    ages by itself or the cluster is not settled: an etcd lease and the peers heard recently,
    ipfail's ping counts, fencing, a Heartbeat peer, this node's own key in doubt; start-up,
    shutdown, a peer not yet announced, an action running here; a decision that acts or waits
    on a peer (the engine times that wait). Otherwise the end of a rule that reads the clock:
    a failed stop's retry, a start failure's hold; ``inf`` when none is pending.
    """
    if (view.lease is not None or view.ping_counts is not None or view.fencing is not None
            or view.heartbeat_peers or view.own_key_suspect is not None or view.leaving
            or view.own_links_down is not None  # a carrier coming back is no event
            or not view.comm_up or not view.probed or view.unannounced or view.here.busy
            or any(d.action is not Action.WAIT or d.waiting_on for d in decisions)):
        return view.now
    here, at = view.here, float("inf")
    for g, retry_at in here.stop_retry_at.items():
        if _ad(view, view.local, g).state is GroupState.STOP_FAILED:
            at = min(at, retry_at)
    for g, failed_at in here.start_failed_at.items():
        if _ad(view, view.local, g).state is GroupState.START_FAILED:
            at = min(at, failed_at + START_FAILED_HOLD_S)
    return max(at, view.now)


def lease_wants(view: ClusterView, decisions: list[Decision]) -> tuple[frozenset[int],
                                                                      frozenset[int]]:
    """nonstop_etcd: the groups whose lease this node must get (it holds them, starts them,
    or the rules chose it), and those whose lease it keeps if it has it but does not ask for
    (being released: a resource may still run until the stop is done)."""
    releasing = {d.group for d in decisions if d.action is Action.RELEASE}
    get = {d.group for d in decisions if d.action in (Action.CAMPAIGN, Action.ACQUIRE)}
    keep: set[int] = set()
    for info in view.groups:
        state = _ad(view, view.local, info.index).state
        if state.claims and info.index not in releasing:
            get.add(info.index)
        elif state.may_run:
            keep.add(info.index)
    return frozenset(get - releasing), frozenset(keep | (releasing & get))

"""Sharing the resource groups with a Heartbeat 3.0.6 peer: its resource protocol, both ways.

Pure and sans-IO, like the rest of the heartbeat core: the daemon passes in the peer's
resource messages (``receive``), what this node holds now (:class:`LocalHold`, from the
failover engine) and ``now``; each call returns the messages to send (:class:`Send`, signed
and numbered by the protocol object) and notices to log or act on. docs/HEARTBEAT-RESOURCES.md
section 5 is the specification; the numbers in comments (§5.2...) refer to it.

A nonstop node sends the same messages, marked with ``nsv=1`` (Heartbeat reads fields by name
and ignores the mark): a peer whose resource messages carry the mark is a nonstop node, whose
status heartbeats already say everything, and its resource messages are ignored.

The peer's side is folded into :class:`PeerResources` (what it holds, whether it is stable)
and the running standby exchange (:class:`Exchange`); :func:`ad_from_heartbeat` turns both
into the :class:`~nonstop.failover.state.NodeAd` that ``decide()`` reads for a node that
sends no failover fields.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.heartbeat.codec import BadPacket
from nonstop.heartbeat.events import Msg, Send
from nonstop.heartbeat.hbresource import (
    AskResources,
    HbTakeover,
    PeerResources,
    ResourceEvent,
    ResourcesHeld,
    RscSet,
    StandbyPhase,
    Starting,
    Stonith,
    TakeoverArg,
    parse,
    to_message,
)

MARK = ("nsv", "1")  # on our resource messages: "a nonstop node sent this"
ASK_TIMEOUT_S = 10.0  # Heartbeat cancels a standby request without "other" after 10 s
WORK_TIMEOUT_S = 3600.0  # and then allows each side an hour for the resource work


class Phase(enum.Enum):
    """Where a standby exchange stands (Heartbeat's ``going_standby``)."""

    ASKED = "asked"  # the requester sent "me", no "other" yet
    AGREED = "agreed"  # the other side said "other": the requester releases
    RELEASED = "released"  # the requester said "done": the other side acquires


@dataclass(frozen=True)
class Exchange:
    """One standby exchange: ``requester`` hands over ``rsc`` (in the requester's terms)."""

    requester: str
    rsc: RscSet
    phase: Phase
    deadline: float
    # Group keys the requester held when the other side agreed: they count as stopping.
    moving: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LocalHold:
    """What this node holds, from the engine, for what it tells the peer.

    ``claimed``: group keys starting or held here; ``settled``: held and idle; ``free``: not
    running here and idle; ``stable``: probed, comm up, no action running on any group;
    ``failed``: idle after a failed start here (a subset of ``free``).
    """

    claimed: frozenset[str]
    settled: frozenset[str]
    free: frozenset[str]
    stable: bool
    failed: frozenset[str] = frozenset()

    @classmethod
    def of(cls, ad: NodeAd, busy: frozenset[int], keys: tuple[str, ...], *,
           ready: bool) -> LocalHold:
        """From our own ad and the groups with an action running; ``ready``: probed and
        comm up (the start-up decision can be made)."""
        def state(i: int) -> GroupState:
            g = ad.groups.get(i)
            return g.state if g is not None else GroupState.NONE

        idle = [i for i in range(len(keys)) if i not in busy]
        in_flux = (GroupState.STARTING, GroupState.STOPPING, GroupState.STOP_FAILED)
        return cls(
            claimed=frozenset(keys[i] for i in range(len(keys)) if state(i).claims),
            settled=frozenset(keys[i] for i in idle if state(i) is GroupState.HELD),
            free=frozenset(keys[i] for i in idle if not state(i).may_run),
            stable=ready and not busy and not any(state(i) in in_flux
                                                  for i in range(len(keys))),
            failed=frozenset(keys[i] for i in idle if state(i) is GroupState.START_FAILED),
        )


@dataclass(frozen=True)
class Note:
    """A line for the log (Heartbeat's words where it has them)."""

    level: int
    text: str


@dataclass(frozen=True)
class StandbyRequested:
    """The peer ran ``hb_takeover``: go standby for ``rsc`` (in our terms), as
    ``nonstop standby`` would."""

    rsc: RscSet


@dataclass(frozen=True)
class StandbyCancelled:
    """Our standby request got no ``other`` in time: it is cancelled for ``rsc``."""

    rsc: RscSet


HbOutput = Send | Note | StandbyRequested | StandbyCancelled


def _send(event: ResourceEvent) -> Send:
    fields = tuple((n, v) for n, v in to_message(event).fields if isinstance(v, str | bytes))
    return Send((*fields, MARK))


class HeartbeatPeer:
    """This node's side of Heartbeat's resource protocol with its one peer."""

    def __init__(self, local: str, peer: str, preferred: Mapping[str, str]) -> None:
        """``preferred`` maps each haresources group key to the node its line names."""
        self.local = local
        self.peer = peer
        self.preferred = dict(preferred)
        self.res = PeerResources()
        self.is_heartbeat = False  # the peer sent an unmarked resource message
        self.exchange: Exchange | None = None
        # Groups the peer held when it said it shuts down (info=shutdown): it stops them
        # before its shutdone, so they are not free until then.
        self.leaving: frozenset[str] = frozenset()
        self._starting_sent = False
        self._answer_due = False  # the peer's "starting" came before we could answer
        self._said: tuple[RscSet, bool, str | None] | None = None
        self._settled_once = False
        # The halves without groups that we claim, kept as Heartbeat keeps i_hold_resources:
        # our own once settled (unless the peer took it over), the peer's after its death or
        # its standby to us; given away by our standby. Halves with groups follow them.
        self._empty_claim = RscSet.NONE
        self._leaving = False
        # What it said before we declared it dead, and whether it just came back from a
        # partition (same generation): then it did not restart and still holds that.
        self._before_death = PeerResources()
        self._healed = False
        # Groups it may hold without having said so: back from a partition, a Heartbeat node
        # that declared us dead too took every group (and announced the address to clients),
        # but its messages of then were lost; it tells only by restarting (info=shutdown).
        self._may_hold: frozenset[str] = frozenset()
        # ``nonstop takeover`` during an exchange: Heartbeat would ignore it ("Standby in
        # progress"), so it is sent when the exchange is over.
        self._takeover_due: TakeoverArg | None = None

    # ------------------------------------------------------------------ what we hold

    def _groups(self, rsc: RscSet, node: str) -> frozenset[str]:
        return rsc.groups(node, self.preferred)

    def held(self, hold: LocalHold) -> RscSet:
        """Our ``rsc_hold``: a half we claim any group of; our own half also when it has no
        group and we have settled once (§5.4: Heartbeat claims ``local`` with nothing)."""
        mine = self._groups(RscSet.LOCAL, self.local)
        theirs = self._groups(RscSet.FOREIGN, self.local)
        empty = self._empty_claim
        local = bool(mine & hold.claimed) or (not mine and empty.local)
        foreign = bool(theirs & hold.claimed) or (not theirs and empty.foreign)
        if self._requesting(Phase.AGREED, Phase.RELEASED):
            assert self.exchange is not None  # what we are handing over is no longer ours
            local = local and not self.exchange.rsc.local
            foreign = foreign and not self.exchange.rsc.foreign
        return RscSet.of(local=local, foreign=foreign)

    def stable(self, hold: LocalHold) -> bool:
        """Heartbeat's "stable": no resource work, no standby exchange under way (a request
        not yet agreed does not count, as Heartbeat says isstable=0 only after "other")."""
        quiet = self.exchange is None or self._requesting(Phase.ASKED)
        return hold.stable and quiet and not self._leaving

    def _resource(self, hold: LocalHold, info: str | None = None) -> Send:
        held, stable = self.held(hold), self.stable(hold)
        if info is None and self._requesting(Phase.AGREED, Phase.RELEASED):
            info = "standby"
        self._said = (held, stable, info)
        return _send(ResourcesHeld(self.local, held, full=True, stable=stable, info=info))

    def _requesting(self, *phases: Phase) -> bool:
        ex = self.exchange
        return ex is not None and ex.requester == self.local and ex.phase in phases

    # ------------------------------------------------------------------ input

    def comm_up(self) -> list[HbOutput]:
        """Our communication is up (§5.1): ``starting``, once per generation."""
        if self._starting_sent:
            return []
        self._starting_sent = True
        return [_send(Starting(self.local))]

    def receive(self, node: str, msg: Msg, now: float,
                hold: LocalHold | None) -> list[HbOutput]:
        """A message from ``node`` that membership passed on. ``hold`` is None until the
        start-up probe has seen what this box runs (nothing is claimed before)."""
        if node != self.peer or msg.get(MARK[0]) == MARK[1]:
            return []
        try:
            event = parse(msg)
        except BadPacket as e:
            return [Note(logging.WARNING, f"bad resource message from {node}: {e.detail}")]
        if event is None:
            return []
        if not self.is_heartbeat:
            self.is_heartbeat = True
            out: list[HbOutput] = [Note(logging.INFO, f"{node} speaks Heartbeat's resource "
                                                      "protocol: sharing the groups with it")]
        else:
            out = []
        was_stable = self.res.stable
        if isinstance(event, ResourcesHeld) and event.info == "shutdown":
            self.leaving = self.res.groups(self.peer, self.preferred) | self._may_hold
        if isinstance(event, ResourcesHeld) and event.full:
            self._may_hold = frozenset()  # it says what it holds now
        self.res = self.res.apply(event)
        if isinstance(event, Starting):
            self._answer_due = True
        elif isinstance(event, AskResources):
            out.extend(self._on_ask(event, was_stable, now, hold))
        elif isinstance(event, HbTakeover):
            out.append(Note(logging.INFO, f"{node} asks to take over [{event.arg.value}]"))
            out.append(StandbyRequested(event.arg.peer_standby()))
        elif isinstance(event, Stonith):
            out.append(Note(logging.INFO, f"{node} fenced {event.node}: {event.result.value}"))
        if hold is not None:
            out.extend(self.sync(hold, now))
        return out

    def _on_ask(self, ev: AskResources, was_stable: bool, now: float,
                hold: LocalHold | None) -> list[HbOutput]:
        ex = self.exchange
        if ev.phase is StandbyPhase.ME:
            busy = hold is None or not self.stable(hold) or ex is not None
            if busy or not was_stable:
                why = "local resources in flux" if busy else "Other side is in flux"
                return [Note(logging.WARNING,
                             f"standby message [me] from {self.peer} ignored.  {why}.")]
            moving = self._groups(ev.rsc, self.peer) & self.res.groups(self.peer, self.preferred)
            self.exchange = Exchange(self.peer, ev.rsc, Phase.AGREED, now + WORK_TIMEOUT_S,
                                     moving)
            return [Note(logging.INFO, f"{self.peer} wants to go standby [{ev.rsc.value}]"),
                    _send(AskResources(self.local, ev.rsc, StandbyPhase.OTHER))]
        if ex is None or ex.rsc is not ev.rsc:
            return []  # e.g. the unsolicited "done" of a node taking over after our shutdone
        if ev.phase is StandbyPhase.OTHER and ex.requester == self.local \
                and ex.phase is Phase.ASKED:
            self.exchange = replace(ex, phase=Phase.AGREED, deadline=now + WORK_TIMEOUT_S)
            self._drop(ev.rsc)
            return [Note(logging.INFO,
                         f"standby: {self.peer} can take our {ev.rsc.value} resources")]
        if ev.phase is StandbyPhase.DONE and ex.requester == self.peer \
                and ex.phase is Phase.AGREED:
            self.exchange = replace(ex, phase=Phase.RELEASED)
            return [Note(logging.INFO, f"standby: acquire [{ev.rsc.value}] resources from "
                                       f"{self.peer}")]
        if ev.phase is StandbyPhase.DONE and ex.requester == self.local \
                and ex.phase is Phase.RELEASED:
            self.exchange = None
            return [Note(logging.INFO,
                         f"Other node completed standby takeover of {ev.rsc.value} resources.")]
        return []

    def _claim(self, rsc: RscSet) -> None:
        self._empty_claim = self._empty_claim | rsc

    def _drop(self, rsc: RscSet) -> None:
        e = self._empty_claim
        self._empty_claim = RscSet.of(local=e.local and not rsc.local,
                                      foreign=e.foreign and not rsc.foreign)

    def peer_died(self) -> None:
        """Declared dead, or left with ``shutdone`` (§5.8, §5.9): it holds nothing now, and
        any exchange with it is over; we take over its half."""
        self._before_death = self.res
        self._healed = False
        self._may_hold = frozenset()
        self._claim(RscSet.ALL)
        self.res = PeerResources.gone()
        self.leaving = frozenset()
        self.exchange = None
        self._answer_due = False

    def peer_restarted(self) -> None:
        """A new generation: it will send ``starting``; what it said before is void until its
        next ``resource``."""
        self.res = PeerResources()
        self.exchange = None
        self.leaving = frozenset()
        self._healed = False
        self._may_hold = frozenset()

    def peer_returned(self) -> None:
        """Back from the dead with the generation we knew (a healed partition, or a one-way
        fault it never noticed): it did not restart, so it sends no ``starting`` and no
        ``resource`` unless its holdings change. It still holds what it said before we
        declared it dead; saying nothing would hide a double holding from decide() for good
        (if it declared us dead too, it restarts and says so with ``info=shutdown``). If it
        did, it took every group meanwhile: its shutdown then stops them all (so that the
        node that kept a group re-announces its address to clients that followed the
        Heartbeat node), unless it said what it holds in between."""
        self.res = self._before_death
        self.exchange = None
        self.leaving = frozenset()
        self._healed = True
        self._may_hold = frozenset(self.preferred)

    def peer_back(self) -> None:
        """Its status left DEAD: after :meth:`peer_returned` nothing more to do; otherwise it
        restarted or started late (:meth:`peer_restarted`)."""
        if self._healed:
            self._healed = False
            return
        self.peer_restarted()

    # ------------------------------------------------------------------ our side

    def ask_standby(self, rsc: RscSet, now: float) -> list[HbOutput]:
        """Hand ``rsc`` (our terms) over: the first step of the exchange (§5.6)."""
        if self.exchange is not None or rsc is RscSet.NONE or not self.is_heartbeat:
            return []
        if not self.res.stable:
            # It would ignore the request ("Other side is in flux"): decide() asks again
            # every second, as Heartbeat's "Auto failback delayed" retries.
            return []
        self.exchange = Exchange(self.local, rsc, Phase.ASKED, now + ASK_TIMEOUT_S)
        return [Note(logging.INFO, f"asking {self.peer} to take our {rsc.value} resources"),
                _send(AskResources(self.local, rsc, StandbyPhase.ME))]

    def takeover(self, arg: TakeoverArg) -> list[HbOutput]:
        """``nonstop takeover``: the peer becomes the requester of a standby (§5.7)."""
        if not self.is_heartbeat:
            return []
        if self.exchange is not None:
            self._takeover_due = arg
            return [Note(logging.INFO, f"takeover [{arg.value}]: asking {self.peer} once the "
                                       "standby exchange under way is over")]
        self._takeover_due = None
        return [_send(HbTakeover(self.local, arg))]

    def shutdown(self) -> list[HbOutput]:
        """The first thing we say when leaving (§5.8); ``shutdone`` comes from membership."""
        self._leaving = True
        if not self.is_heartbeat:
            return []
        return [_send(ResourcesHeld(self.local, RscSet.NONE, full=True, stable=False,
                                    info="shutdown"))]

    def sync(self, hold: LocalHold, now: float) -> list[HbOutput]:
        """After anything changed here: answer a pending ``starting``, move a standby
        exchange on, time it out, and tell the peer what we hold when that changed."""
        if self._leaving:
            return []
        out: list[HbOutput] = []
        if hold.stable and not self._settled_once and (self.res.heard or self._answer_due):
            self._settled_once = True
            # As Heartbeat's req_our_resources: not a half the peer holds (it took it over
            # from us), else it logs "Both machines own foreign resources!". So not before
            # the peer said what it holds (its answer to our "starting") or that it starts.
            if not self.res.held.foreign:
                self._claim(RscSet.LOCAL)
        ex = self.exchange
        if ex is not None and now >= ex.deadline:
            self.exchange = None
            if ex.phase is Phase.ASKED:
                out.append(Note(logging.WARNING, "No reply to standby request.  Standby "
                                                 "request cancelled."))
                out.append(StandbyCancelled(ex.rsc))
            else:
                out.append(Note(logging.WARNING, f"standby [{ex.rsc.value}] with {self.peer} "
                                                 "took over an hour: given up"))
        elif ex is not None and ex.requester == self.local and ex.phase is Phase.AGREED:
            mine = self._groups(ex.rsc, self.local)
            if mine <= hold.free:
                self.exchange = replace(ex, phase=Phase.RELEASED)
                out.append(Note(logging.INFO, f"Local standby process completed "
                                              f"[{ex.rsc.value}]."))
                out.append(_send(AskResources(self.local, ex.rsc, StandbyPhase.DONE)))
        elif ex is not None and ex.requester == self.peer and ex.phase is Phase.RELEASED:
            out.extend(self._acquired(ex, hold))
        if self._takeover_due is not None and self.exchange is None:
            out.extend(self.takeover(self._takeover_due))
        if not self.is_heartbeat and not self._answer_due:
            return out
        said = (self.held(hold), self.stable(hold))
        if self._answer_due or self._said is None or self._said[:2] != said:
            self._answer_due = False
            out.append(self._resource(hold))
        return out

    def _acquired(self, ex: Exchange, hold: LocalHold) -> list[HbOutput]:
        """Its standby to us, once our starts are over: "done", failed or not, as Heartbeat's
        takegroup child says it (else the peer stays in transition for an hour)."""
        wanted = self._groups(ex.rsc, self.peer)
        if not wanted <= hold.settled | hold.failed:
            return []
        self.exchange = None
        self._claim(ex.rsc.mirrored())
        held = self.res.held  # it gave these away (its next "resource" says so too)
        self.res = replace(self.res, held=RscSet.of(local=held.local and not ex.rsc.local,
                                                    foreign=held.foreign and not ex.rsc.foreign))
        out: list[HbOutput] = []
        failed = sorted(wanted & hold.failed)
        if failed:
            out.append(Note(logging.WARNING, f"standby [{ex.rsc.value}] from {self.peer}: "
                                             f"start failed here for {', '.join(failed)}"))
        out.append(Note(logging.INFO, f"Standby resource acquisition done [{ex.rsc.value}]."))
        out.append(_send(AskResources(self.local, ex.rsc, StandbyPhase.DONE)))
        return out

    # ------------------------------------------------------------------ for decide()

    def agreed(self) -> frozenset[str]:
        """Group keys the peer agreed to take from us (we may stop them now)."""
        if self._requesting(Phase.AGREED, Phase.RELEASED):
            assert self.exchange is not None
            return self._groups(self.exchange.rsc, self.local)
        return frozenset()

    def ad(self, keys: tuple[str, ...]) -> NodeAd | None:
        """The peer's ad for ``decide()`` (None until it said what it holds)."""
        return ad_from_heartbeat(self.peer, self.res, self.exchange, keys, self.preferred,
                                 stopping=self.leaving)


def ad_from_heartbeat(peer: str, res: PeerResources, exchange: Exchange | None,
                      keys: tuple[str, ...], preferred: Mapping[str, str], *,
                      stopping: frozenset[str] = frozenset()) -> NodeAd | None:
    """What a Heartbeat peer's messages say, as the ad of a nonstop node would.

    ``keys`` are the group keys in haresources order (their index is the group number).
    None before its first ``resource`` (holdings unknown). A group its set covers is HELD if
    it is stable, STARTING if not. While it hands groups over in a standby exchange they are
    STOPPING until its ``done``, then NONE and declined, so that the other side takes them.
    ``stopping``: groups it is stopping for its shutdown (free at its ``shutdone``).
    """
    if not res.heard:
        return None
    held = res.held.groups(peer, preferred)
    leaving = stopping
    given: frozenset[str] = frozenset()
    if exchange is not None and exchange.requester == peer:
        if exchange.phase is Phase.AGREED:
            leaving = leaving | exchange.moving
        elif exchange.phase is Phase.RELEASED:
            given = exchange.rsc.groups(peer, preferred)
    claimed = GroupState.HELD if res.stable else GroupState.STARTING
    groups: dict[int, GroupAd] = {}
    for i, key in enumerate(keys):
        if key in given:
            state = GroupState.NONE
        elif key in leaving:
            state = GroupState.STOPPING
        elif key in held:
            state = claimed
        else:
            state = GroupState.NONE
        groups[i] = GroupAd(state, 0)
    return NodeAd(groups, declines=frozenset(i for i, k in enumerate(keys) if k in given))

"""Membership: who is alive, decided from heartbeats and a clock that the caller passes in.

A sans-IO state machine, the receive side of :class:`~nonstop.heartbeat.protocol.HeartbeatProtocol`,
which feeds it every authenticated message (``receive``) and calls ``tick`` at ``next_wakeup()``;
both return events (messages to send, status changes, deaths, warnings). It never reads a clock,
a socket or a file, so deadtime, warntime and initdead are tested by advancing a number.

Behaviour follows Heartbeat v1 (spec §5): keepalive sending, ``initdead`` while comm is not yet
up, each peer timed out with the deadtime *it* advertises (``dt``), ``warntime`` "Late heartbeat"
warnings, generation numbers against replay and to tell a restart from a healed partition,
``shutdone`` for a graceful leave, ACKs and ``repnodes`` so a real Heartbeat peer is content.
Deaths are declared exactly ``deadtime`` after the last status heard, not on a 250 ms poll.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from nonstop.config.model import HaConfig
from nonstop.errors import InvalidValue
from nonstop.heartbeat.envelope import Field, is_unsequenced
from nonstop.heartbeat.events import (
    ClusterMessage,
    CommUp,
    Dropped,
    Event,
    GapFilled,
    LateHeartbeat,
    LinkChanged,
    MembershipView,
    MessageView,
    Msg,
    NodeDied,
    NodeReturned,
    NodeView,
    PeerAdChanged,
    RexmitRequested,
    RexmitWanted,
    Send,
    SilenceWarning,
    StatusChanged,
)
from nonstop.heartbeat.peertable import MAX_SEQ_GAP, Inbound, PeerState, PeerTable
from nonstop.heartbeat.routine import RoutineHead
from nonstop.heartbeat.states import (
    LOCAL_TRANSITIONS,
    REMOTE_TRANSITIONS,
    NodeStatus,
    check_transition,
)

# The events and views are defined in events.py; they stay importable from here.
__all__ = [
    "MAX_SEQ_GAP", "ClusterMessage", "CommUp", "Dropped", "Event", "GapFilled",
    "LateHeartbeat", "LinkChanged", "Membership", "MembershipView", "MessageView", "Msg",
    "NodeDied", "NodeReturned", "NodeView", "PeerAdChanged", "RexmitRequested",
    "RexmitWanted", "Send", "SilenceWarning", "StatusChanged",
]


# A peer's status that arrives when our own is due within this share of a keepalive makes us
# send ours at once, in the same wakeup, and count the next keepalive from then plus a little
# slack (so that the peer's next status, a keepalive later, again comes before our timer):
# one node of a pair then wakes only for the peer's heartbeats, not also for its own timer.
# Our interval stays within keepalive * (1 + EARLY_SLACK); an early status is never sent
# more often than every keepalive * (1 - EARLY_WINDOW + EARLY_SLACK).
EARLY_WINDOW = 0.5
EARLY_SLACK = 0.05

# Fields of a status message that are membership's own; the rest belong to higher layers.
_STATUS_CORE_FIELDS = frozenset(
    {"t", "st", "dt", "protocol", "src", "srcuuid", "seq", "hg", "ts", "ld", "ttl", "auth"}
)


class Membership(PeerTable):
    """The membership state machine of one node."""

    def __init__(
        self,
        ha: HaConfig,
        local: str,
        now: float,
        *,
        rng: random.Random | None = None,
        known: Mapping[str, tuple[int, int | None]] | None = None,
    ) -> None:
        """``known``: each peer's (generation, last sequence number) as recorded before our
        restart (:meth:`replay_state`), so its packets captured earlier stay replays."""
        if local not in ha.nodes:
            raise InvalidValue(f"Current node [{local}] not in configuration!")
        self.ha = ha
        self.local = local
        self.started = now
        self.local_status = NodeStatus.UP
        self.comm_up = False
        self.counters: dict[str, int] = {}
        self.advanced = False  # the last message was a peer's new number (not a copy, replay)
        self._status_fields: tuple[Field, ...] = ()  # a higher layer's: the failover ad
        self._rng = rng or random.Random()
        self._next_send = now  # the first status goes out at once
        self._self_heard: dict[str, float] = {}
        self.peers: dict[str, PeerState] = {
            n: PeerState(n, ref_time=now, ack_trigger=self._rng.randrange(10))
            for n in ha.nodes
            if n != local
        }
        for name, (gen, seq) in (known or {}).items():
            if name in self.peers:
                self.peers[name].generation, self.peers[name].last_seq = gen, seq
        if not self.peers:
            self.comm_up = True
            self.local_status = NodeStatus.ACTIVE

    # ------------------------------------------------------------------ timing

    def _warn_at(self, peer: PeerState) -> float:
        return peer.ref_time + self.ha.warntime_ms / 1000.0

    def next_wakeup(self) -> float:
        """The earliest time at which ``tick`` has something to do."""
        times = [self._next_send] if self.local_status is not NodeStatus.DEAD else []
        for p in self.peers.values():
            if p.status is NodeStatus.DEAD:
                continue
            times.append(self._dead_at(p))
            if p.heard_status and not p.warned:
                times.append(self._warn_at(p))
            for link, up in p.link_up.items():
                if up:
                    times.append(p.links[link] + self.deadtime_for(p) / 1000.0)
        return min(times) if times else float("inf")

    def status_message(self) -> Send:
        dt = self.ha.deadtime_ms
        fields: tuple[Field, ...] = (
            ("t", "status"),
            ("st", self.local_status.value),
            ("dt", f"{dt:x}"),
            ("protocol", "1"),
            *self._status_fields,
        )
        return Send(fields)

    def set_status_fields(self, fields: Sequence[Field]) -> bool:
        """Carry ``fields`` (a higher layer's, e.g. the failover ad) in every status from now
        on. True when they changed after the first time: a status must go at once then."""
        fields = tuple(fields)
        if fields == self._status_fields:
            return False
        first = not self._status_fields
        self._status_fields = fields
        return not first

    def tick(self, now: float) -> list[Event]:
        """Send due heartbeats, time out silent nodes and links, and bring comm up."""
        events: list[Event] = []
        if self.local_status is NodeStatus.DEAD:
            return events
        if now >= self._next_send:
            events.append(self.status_message())
            keepalive = self.ha.keepalive_ms / 1000.0
            self._next_send += keepalive
            if self._next_send <= now:  # we were not run for a while: do not send a burst
                self._next_send = now + keepalive
        for p in self.peers.values():
            if p.status is NodeStatus.DEAD:
                continue
            limit = self.deadtime_for(p)
            silence_ms = round((now - p.ref_time) * 1000)
            if now >= self._dead_at(p):
                events.extend(self._declare_dead(p, "timeout", silence_ms, limit))
                continue
            if p.heard_status and not p.warned and now >= self._warn_at(p):
                p.warned = True
                events.append(SilenceWarning(p.name, silence_ms))
            for link, up in list(p.link_up.items()):
                if up and now >= p.links[link] + limit / 1000.0:
                    p.link_up[link] = False
                    events.append(LinkChanged(p.name, link, False))
        events.extend(self._check_comm_up())
        return events

    def _send_early(self, now: float, events: list[Event]) -> None:
        """Our status now if it is due soon anyway (see EARLY_WINDOW), unless one goes now
        already (a change of our state is announced at once)."""
        if self.local_status is NodeStatus.DEAD or any(
            isinstance(e, Send) and e.fields[:1] == (("t", "status"),) for e in events
        ):
            return
        keepalive = self.ha.keepalive_ms / 1000.0
        if self._next_send - now <= keepalive * EARLY_WINDOW:
            events.append(self.status_message())
            self._next_send = now + keepalive * (1.0 + EARLY_SLACK)

    def _check_comm_up(self) -> list[Event]:
        if self.comm_up or self.local_status is NodeStatus.DEAD:  # up, or we left before
            return []
        if all(p.any_packet or p.status is NodeStatus.DEAD for p in self.peers.values()):
            self.comm_up = True
            events: list[Event] = [CommUp()]
            events.extend(self._set_local(NodeStatus.ACTIVE))
            return events
        return []

    def _set_local(self, new: NodeStatus) -> list[Event]:
        old = self.local_status
        if old is new:
            return []
        check_transition(LOCAL_TRANSITIONS, old, new)
        self.local_status = new
        events: list[Event] = [StatusChanged(self.local, old, new, local=True)]
        if new is not NodeStatus.DEAD:
            events.append(self.status_message())  # a status change is announced at once
        return events

    def _set_remote(self, p: PeerState, new: NodeStatus) -> list[Event]:
        old = p.status
        if old is new:
            return []
        check_transition(REMOTE_TRANSITIONS, old, new)
        p.status = new
        return [StatusChanged(p.name, old, new)]

    def _declare_dead(self, p: PeerState, reason: str, silence_ms: int, limit: int) -> list[Event]:
        events = self._set_remote(p, NodeStatus.DEAD)
        events.insert(0, NodeDied(p.name, reason, silence_ms, limit))
        p.left = reason == "shutdown"
        p.dead_generation = p.generation
        # Unlike Heartbeat, the last sequence number outlives the death (as the generation
        # does): a captured packet of the dead node is then still a replay (issue 9), while
        # the node itself, back from a partition, has counted on and is accepted.
        p.missing.clear()
        p.any_packet = p.seq_heard = False
        p.heard_status = False
        p.warned = False
        for link, up in list(p.link_up.items()):
            if up:
                p.link_up[link] = False
                events.append(LinkChanged(p.name, link, False))
        return events

    # ------------------------------------------------------------------ input

    def _drop(self, reason: str, src: str | None, detail: str = "") -> list[Event]:
        self.count(reason)
        return [Dropped(reason, src, detail)]

    def count(self, reason: str, n: int = 1) -> None:
        """Count a packet under ``reason`` (also those the shell dropped: codec errors)."""
        self.counters[reason] = self.counters.get(reason, 0) + n

    def receive(self, msg: Msg, medium: str, now: float) -> list[Event]:
        """Process one authenticated message that arrived on ``medium``.

        The steps, each of which may end it: who sent it (a configured peer, with a
        generation and, unless ``NS_``, a sequence number); its generation (replays, a
        restart, a node that said it left); the link it came on; its sequence number (gaps,
        late and duplicate packets, acks); then what its type asks of us.
        """
        self.advanced = False
        got = self._inbound(msg, medium, now)
        if not isinstance(got, Inbound):
            return got
        events: list[Event] = []
        p = got.peer
        if not self._admit_generation(got, events):
            return events
        self._note_link(p, medium, now, events)
        if got.seq is not None and not self._admit_seq(got, got.seq, events):
            return events
        p.uuid = msg.get_bytes("srcuuid") or p.uuid
        p.any_packet = True
        handler = self._handlers.get(got.mtype, Membership._on_other)
        if not handler(self, got, events):
            return events
        events.extend(self._check_comm_up())
        if got.mtype == "status":
            self._send_early(now, events)
        return events

    def routine_head(self, msg: Msg) -> RoutineHead | None:
        """What ``msg``'s head tells ``receive_routine`` of a status repeating it; None unless
        it is a configured peer's status whose ``st`` and ``dt`` receive() takes."""
        src = (msg.get("src") or "").lower()
        if msg.get("t") != "status" or src not in self.peers:
            return None
        got = _status_values(msg)
        if isinstance(got, str):
            return None
        return RoutineHead(src, got[0], got[1], msg.get("protocol"), msg.get_bytes("srcuuid"),
                           _ad_fields(msg))

    def receive_routine(self, head: RoutineHead, medium: str, now: float, gen: int,
                        seq: int) -> list[Event] | None:
        """A status of ``head.src`` repeating ``head``, numbered ``gen`` and ``seq``: what
        receive() does with it when that is only to note the time and the number (and maybe
        send ours early). None, with nothing changed, when any step of receive() could do
        more (a restart, a gap, an ack due, a new state, ad or link, a late heartbeat)."""
        p = self.peers.get(head.src)
        if (p is None or not self.comm_up or p.status is NodeStatus.DEAD
                or p.status is not head.st or p.left or not p.heard_status
                or p.generation != gen or p.last_seq is None or seq != p.last_seq + 1
                or p.missing or _ack_due(p, seq) or not p.link_up.get(medium, False)
                or p.extra != head.extra or self._late_ms(p, now) is not None):
            return None
        p.links[medium] = p.ref_time = p.last_status_at = now
        p.last_seq, p.seq_heard, p.any_packet, p.warned = seq, True, True, False
        p.uuid = head.uuid or p.uuid
        p.protocol = head.protocol
        if head.dt and head.dt > 0:
            p.advertised_dt_ms = head.dt
        events: list[Event] = []
        self._send_early(now, events)
        return events

    def _inbound(self, msg: Msg, medium: str, now: float) -> Inbound | list[Event]:
        """The message's sender and numbers, or why it goes no further."""
        src, mtype, ts = msg.get("src"), msg.get("t"), msg.get("ts")
        if not src or not mtype or not ts:
            return self._drop("missing_fields", src, "message lacks src, t or ts")
        src = src.lower()
        if src == self.local:
            self._self_heard[medium] = now
            return []
        p = self.peers.get(src)
        if p is None:
            return self._drop("unknown_node", src, f"node {src} is not in ha.cf")
        try:
            gen = int(msg.get("hg") or "", 16)
            seq_text = msg.get("seq")
            seq = int(seq_text, 16) if seq_text is not None else None
        except ValueError:
            return self._drop("bad_fields", src, "unparsable hg or seq")
        if seq is None and not is_unsequenced(mtype):
            return self._drop("bad_fields", src, f"{mtype} without seq")
        return Inbound(p, msg, medium, now, mtype, gen, seq, p.generation)

    def _admit_generation(self, m: Inbound, events: list[Event]) -> bool:
        """Drop a lower generation (replay) and a node that left; a higher one is a restart."""
        p, gen, known = m.peer, m.gen, m.known_gen
        if known is not None and gen < known:
            detail = f"attempted replay attack [{p.name}]? [gen = {gen}, curgen = {known}]"
            events.extend(self._drop("replay", p.name, detail))
            return False
        restarted = known is not None and gen > known
        # Newer than the generation that left: ``known`` follows any packet, and a restart's
        # first packet may be a reqnodes or an ack, so its next status has the known one.
        reborn = restarted or (p.dead_generation is not None and gen > p.dead_generation)
        if p.left and p.status is NodeStatus.DEAD and not reborn:
            # It left (Heartbeat 3.0.6 sends status ~2 s more): dead until a restart (a higher
            # generation). The notice's 3 copies are duplicates, not drops (a user trial).
            self.count("duplicate" if m.mtype == "shutdone" else "after_shutdown")
            return False
        p.generation = gen
        if restarted:
            p.last_seq = None
            p.missing.clear()
            if p.status is not NodeStatus.DEAD or not p.left:
                events.append(NodeReturned(p.name, "restart"))
        return True

    def _note_link(self, p: PeerState, medium: str, now: float, events: list[Event]) -> None:
        """Link liveness: any authentic packet, duplicates included, proves the medium works."""
        p.links[medium] = now
        if not p.link_up.get(medium, False) and p.status is not NodeStatus.DEAD:
            p.link_up[medium] = True
            events.append(LinkChanged(p.name, medium, True))

    def _admit_seq(self, m: Inbound, seq: int, events: list[Event]) -> bool:
        """Follow the peer's sequence numbers; acknowledge as Heartbeat does."""
        p = m.peer
        if p.last_seq is not None and seq <= p.last_seq:
            if not self._admit_old_seq(m, seq, events):
                return False
        else:
            self._advance_seq(p, seq, events)
            self.advanced = True
        if _ack_due(p, seq):
            events.append(self._ack(p, seq))
        return True

    def _admit_old_seq(self, m: Inbound, seq: int, events: list[Event]) -> bool:
        """A number not above the last one: a replay, a duplicate, or a packet found missing."""
        p = m.peer
        if p.status is NodeStatus.DEAD or not p.seq_heard:  # dead, or no number heard yet
            detail = f"replayed packet of [{p.name}]? [seq = {seq}, last = {p.last_seq}, " \
                     f"gen = {m.gen}]"
            events.extend(self._drop("replay", p.name, detail))
            return False
        if seq not in p.missing:
            self.count("duplicate")
            return False
        # A packet we had found missing arrives after all: Heartbeat sends from several
        # processes, so its messages can overtake each other.
        p.missing.discard(seq)
        self.count("late")
        if not p.missing:
            events.append(GapFilled(p.name))
        return True

    def _advance_seq(self, p: PeerState, seq: int, events: list[Event]) -> None:
        """A newer number: what it skipped is missing, and asked for unless too much."""
        if p.last_seq is not None and seq > p.last_seq + 1:
            gap = seq - p.last_seq - 1
            if not (apart := p.status is NodeStatus.DEAD or not p.seq_heard):
                self.count("lost", gap)  # (what it sent while we were apart is no loss)
            # Never ask a dead node (back from a partition) for what we missed while it was
            # away (Heartbeat 3.0.5: "do not request retransmission of lost messages from
            # dead members"), nor ask for what it sent while we were down: our first numbered
            # packet of it since our restart follows the number recorded before (replay
            # state). Heartbeat answered such a request with "Cannot rexmit pkt ...: seqno too
            # low" for what it no longer kept, and resent the rest, which we would then have
            # acted on as news: a standby request from before our crash made us take a group
            # Heartbeat held. An unnumbered packet first (an ack) does not count here.
            if gap > MAX_SEQ_GAP or apart:
                p.missing.clear()
            else:
                p.missing.update(range(p.last_seq + 1, seq))
                events.append(RexmitWanted(p.name, p.last_seq + 1, seq - 1))
        p.last_seq = seq
        p.seq_heard = True

    def _ack(self, p: PeerState, seq: int) -> Send:
        return Send((("t", "NS_ackmsg"), ("dest", p.name), ("ackseq", f"{seq:x}")), dest=p.name)

    def _for_us(self, msg: Msg) -> bool:
        return (msg.get("dest") or "").lower() == self.local

    # Each handler returns False when the message ends there (comm up is not checked then).

    def _on_status(self, m: Inbound, events: list[Event]) -> bool:
        p, now = m.peer, m.now
        parsed = self._parse_status(m)
        if not isinstance(parsed, tuple):
            events.extend(parsed)
            return True
        st, advertised = parsed
        p.protocol = m.msg.get("protocol")
        # A healed partition is a node we had heard, declared dead, and that comes back with
        # the generation we know; a node first heard after initdead merely started late.
        if p.status is NodeStatus.DEAD and not p.left and m.gen == p.dead_generation:
            events.append(NodeReturned(p.name, "partition"))
        late = self._late_ms(p, now)
        if late is not None:
            events.append(LateHeartbeat(p.name, late))
        p.ref_time = p.last_status_at = now
        p.heard_status, p.warned, p.left = True, False, False
        if advertised and advertised > 0:
            p.advertised_dt_ms = advertised
        self._note_ad(p, m.msg, events)
        if p.status is NodeStatus.DEAD:
            # Coming back: links were all marked down when it died.
            p.links[m.medium] = now
            if not p.link_up.get(m.medium, False):
                p.link_up[m.medium] = True
                events.append(LinkChanged(p.name, m.medium, True))
        events.extend(self._set_remote(p, st))
        return True

    def _late_ms(self, p: PeerState, now: float) -> int | None:
        """The interval since ``p``'s last status, if a status now would be late (warntime)."""
        interval = round((now - p.ref_time) * 1000)
        return interval if p.heard_status and interval > self.ha.warntime_ms else None

    def _parse_status(self, m: Inbound) -> tuple[NodeStatus, int | None] | list[Event]:
        """A status message's ``st`` and ``dt``, or why it is dropped."""
        got = _status_values(m.msg)
        return self._drop("bad_fields", m.peer.name, got) if isinstance(got, str) else got

    def _note_ad(self, p: PeerState, msg: Msg, events: list[Event]) -> None:
        """Keep the status' fields that are not membership's own (the peer's failover ad)."""
        extra = _ad_fields(msg)
        if extra != p.extra:
            p.extra = extra
            events.append(PeerAdChanged(p.name))

    def _on_shutdone(self, m: Inbound, events: list[Event]) -> bool:
        p = m.peer
        if p.status is not NodeStatus.DEAD:
            silence = round((m.now - p.ref_time) * 1000)
            events.extend(self._declare_dead(p, "shutdown", silence, self.deadtime_for(p)))
        return True

    def _on_reqnodes(self, m: Inbound, events: list[Event]) -> bool:
        if self._for_us(m.msg):
            src = m.peer.name
            nodelist = "".join(f"{n} " for n in self.ha.nodes)
            events.append(
                Send((("dest", src), ("t", "repnodes"), ("nodelist", nodelist),
                      ("delnodelist", " ")), dest=src)
            )
        return True

    def _on_rexmit_request(self, m: Inbound, events: list[Event]) -> bool:
        if not self._for_us(m.msg):
            return True
        try:
            first = int(m.msg.get("firstseq") or "", 10)
            last = int(m.msg.get("lastseq") or "", 10)
        except ValueError:
            events.extend(self._drop("bad_fields", m.peer.name, "bad NS_rexmit range"))
            return False
        events.append(RexmitRequested(m.peer.name, first, last))
        return True

    def _on_nak(self, m: Inbound, events: list[Event]) -> bool:
        p = m.peer
        if not self._for_us(m.msg):
            return True
        try:
            gone = int(m.msg.get("firstseq") or "", 16)
        except ValueError:
            events.extend(self._drop("bad_fields", p.name, "bad NS_nak_rexmit seq"))
            return False
        # The sender no longer has it: stop waiting for it.
        if gone in p.missing:
            p.missing.discard(gone)
            if not p.missing:
                events.append(GapFilled(p.name))
        return True

    def _on_other(self, m: Inbound, events: list[Event]) -> bool:
        if m.mtype.startswith("NS_") or m.mtype == "repnodes":
            return True  # acks and node lists need no action from us
        dest = m.msg.get("dest")
        if dest is None or dest.lower() == self.local:
            events.append(ClusterMessage(m.peer.name, m.msg))
        return True

    _handlers: ClassVar[dict[str, Callable[[Membership, Inbound, list[Event]], bool]]] = {
        "status": _on_status,
        "shutdone": _on_shutdone,
        "reqnodes": _on_reqnodes,
        "NS_rexmit": _on_rexmit_request,
        "NS_nak_rexmit": _on_nak,
    }

    # ------------------------------------------------------------------ leaving
    # (the views and the other queries over the peers: PeerTable, peertable.py)

    def leave(self) -> list[Event]:
        """Graceful leave: tell the peers at once so they need not wait for deadtime."""
        if self.local_status is NodeStatus.DEAD:
            return []
        events: list[Event] = [Send((("t", "shutdone"), ("st", "dead")), copies=3)]
        events.extend(self._set_local(NodeStatus.DEAD))
        return events


def _ack_due(p: PeerState, seq: int) -> bool:
    """Heartbeat acknowledges every tenth packet, and never past a hole (the sender would
    forget the packet)."""
    return seq % 10 == p.ack_trigger and p.protocol == "1" and not p.missing


def _status_values(msg: Msg) -> tuple[NodeStatus, int | None] | str:
    """A status message's ``st`` and advertised deadtime (``dt``, hex ms), or what is wrong."""
    st = NodeStatus.from_wire(msg.get("st"))
    if st is None:
        return f"status st={msg.get('st')!r}"
    try:
        dt_text = msg.get("dt")
        return st, int(dt_text, 16) if dt_text else None
    except ValueError:
        return "unparsable dt"


def _ad_fields(msg: Msg) -> dict[str, str]:
    """A status' fields that are not membership's own: a higher layer's (the failover ad)."""
    return {
        n: (v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v))
        for n, v in msg.fields
        if n not in _STATUS_CORE_FIELDS
    }

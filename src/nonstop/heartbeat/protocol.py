"""The heartbeat protocol of one node, both directions, without I/O.

The daemon feeds it datagrams (``receive``) and time (``tick`` at ``next_wakeup()``); each call
returns, in order, the datagrams to put on every medium (:class:`Transmit`) and the events to
log or act on. It reads no clock, socket or file: the monotonic ``now`` comes with every call,
the wall clock (the ``ts`` field), the load average (``ld``) and the randomness are injected.

Receive side: authenticate and decode (a bad packet is counted and reported, never raised),
then :class:`Membership` (who is alive, the peers' sequence numbers); a peer's routine status
(its last head again, nothing new but the numbers) takes a short path through both, with the
same result (routine.py). A gap in a peer's numbers
is asked for again with ``NS_rexmit`` after a random delay up to ``max_rexmit_delay`` (so that
the receivers of one broadcast do not all ask at the same instant), again every
``REXMIT_REPEAT_S`` while something is still missing, and given up after ``REXMIT_ATTEMPTS``
requests, as a NAK would end it.

Send side: every message gets Heartbeat's control fields (our sequence number unless ``NS_``),
is signed and framed; the last ``HISTORY`` sequenced ones are kept, so that a peer's
``NS_rexmit`` is answered with the very bytes sent, or with ``NS_nak_rexmit`` for what is gone,
within :class:`RexmitLimiter`'s budget.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from nonstop.config.model import AuthKeys, HaConfig
from nonstop.heartbeat import routine
from nonstop.heartbeat.codec import (
    BadPacket,
    FieldError,
    Head,
    WireFormat,
    authenticate_netstring,
    decode,
    encode_after,
)
from nonstop.heartbeat.envelope import Field, Identity, is_unsequenced, stamp_head, stamp_tail
from nonstop.heartbeat.events import (
    Dropped,
    Event,
    MembershipView,
    Msg,
    Output,
    OwnStatusHeard,
    RexmitGaveUp,
    RexmitRequested,
    RexmitWanted,
    Send,
    SendFailed,
    Transmit,
)
from nonstop.heartbeat.membership import Membership
from nonstop.heartbeat.rexmit import RexmitLimiter
from nonstop.heartbeat.states import NodeStatus

HISTORY = 500  # sequenced messages kept for retransmission, as Heartbeat's MAXMSGHIST
REXMIT_REPEAT_S = 0.25  # Heartbeat re-asks every 250 ms until the packet comes or is NAKed
REXMIT_ATTEMPTS = 4


@dataclass(order=True)
class _Ask:
    """A retransmit request to send at ``due`` for what is then still missing of a gap."""

    due: float
    order: int  # ties in ``due`` keep the order of scheduling
    node: str = field(compare=False)
    first: int = field(compare=False)
    last: int = field(compare=False)
    attempt: int = field(compare=False)


class HeartbeatProtocol:
    """One node's heartbeat protocol: membership, sequence numbers, history, retransmits."""

    def __init__(
        self,
        ha: HaConfig,
        identity: Identity,
        keys: AuthKeys,
        now: float,
        *,
        wall_clock: Callable[[], float],
        loadavg: Callable[[float], str],
        wire_format: WireFormat = "netstring",
        rng: random.Random | None = None,
        known: Mapping[str, tuple[int, int | None]] | None = None,
    ) -> None:
        """``wall_clock``: seconds since the epoch (the ``ts`` field); ``loadavg(now)``: the
        ``ld`` field; ``known``: the peers' replay state recorded before our restart."""
        self.ha = ha
        self.identity = identity
        self.keys = keys
        self.wire_format: WireFormat = wire_format
        self._wall_clock = wall_clock
        self._loadavg = loadavg
        self._rng = rng or random.Random()
        self.membership = Membership(ha, identity.node, now, rng=self._rng, known=known)
        self.seq = 0  # our last sequence number
        self.history: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.rexmit = RexmitLimiter()
        self.sent = 0  # datagrams of new messages (each copy counts; resends do not)
        self.received = 0  # datagrams fed to receive(), bad ones included
        # Who sent the last datagram, if it was a peer's new numbered message: a copy of an
        # authentic packet sent again by anyone on the LAN passes authentication too.
        self.sender: str | None = None
        self._asks: list[_Ask] = []
        self._ask_order = itertools.count()
        # The last broadcast's own fields and its checked, rendered head: a status repeats
        # them every keepalive until the failover ad or the node's state changes.
        self._head: tuple[tuple[Field, ...], Head] | None = None
        # Each peer's last status head that took the full path, and what it said (routine.py).
        self._heads: dict[bytes, routine.RoutineHead] = {}
        self._head_of: dict[str, bytes] = {}

    def reconfigure(self, ha: HaConfig, keys: AuthKeys, wire_format: WireFormat) -> None:
        """A reloaded configuration: timings, keys and format apply from the next call."""
        self.ha = self.membership.ha = ha
        self.keys = keys
        self._heads.clear()
        self._head_of.clear()
        self.wire_format = wire_format

    # ------------------------------------------------------------------ input

    def receive(self, data: bytes, link: str, now: float, source: str = "?") -> list[Output]:
        """One datagram that arrived on ``link`` from address ``source`` (for logs only)."""
        self.received += 1
        self.sender = None
        try:
            trailer = authenticate_netstring(data, self.keys)
            if trailer is not None:
                out = self._receive_routine(data, trailer, link, now)
                if out is not None:
                    return out
            decoded = decode(data, self.keys, trailer)
        except BadPacket as e:
            self.membership.count(f"bad_{e.reason}")
            return [Dropped(e.reason, source, e.detail)]
        out = self.receive_message(decoded.message, link, now)
        if self.membership.advanced:  # not a copy, a replay or an unnumbered message
            self.sender = (decoded.message.get("src") or "").lower() or None
        if trailer is not None:
            self._learn_head(data, trailer[0], decoded.message)
        return out

    def _receive_routine(self, data: bytes, trailer: tuple[int, int], link: str,
                         now: float) -> list[Output] | None:
        """An authenticated status that repeats its sender's known head with nothing to say
        but its numbers (routine.py); None: the full path takes it."""
        body_end, key_index = trailer
        start = routine.head_end(data, body_end)
        head = self._heads.get(data[:start]) if start else None
        m = routine.tail(data, start, body_end) if head is not None else None
        if head is None or m is None:
            return None
        seq, gen, inner = routine.numbers(m)
        key = self.keys.keys.get(inner)
        if key is None or key.index != key_index:
            return None  # the inner auth names another key: its digest is checked in full
        events = self.membership.receive_routine(head, link, now, gen, seq)
        if events is None:
            return None
        self.sender = head.src
        return self._process(events, now)

    def _learn_head(self, data: bytes, body_end: int, msg: Msg) -> None:
        """Keep a peer's status head, if its tail is the standard one read as routine.py
        reads it (so the two parses agree on where the head ends)."""
        start = routine.head_end(data, body_end)
        key = data[:start]
        if not start or key in self._heads:
            return
        head = self.membership.routine_head(msg)
        fields = msg.fields
        names = tuple(n for n, _ in fields)
        n = len(routine.TAIL_NAMES)
        if head is None or names[-n:] != routine.TAIL_NAMES or set(names[:-n]) & set(
                routine.TAIL_NAMES):
            return
        m = routine.tail(data, start, body_end)
        if m is None or routine.values(m) != tuple(v for _, v in fields[-n:]):
            return
        self._heads.pop(self._head_of.get(head.src, b""), None)
        self._heads[key], self._head_of[head.src] = head, key

    def receive_message(self, msg: Msg, link: str, now: float) -> list[Output]:
        """One authenticated, decoded message."""
        out: list[Output] = []
        if msg.get("t") == "status" and (msg.get("src") or "").lower() == self.identity.node:
            out.append(OwnStatusHeard(link))
        out.extend(self._process(self.membership.receive(msg, link, now), now))
        return out

    def tick(self, now: float) -> list[Output]:
        """Send due heartbeats and retransmit requests, time out silent nodes and links."""
        out = self._process(self.membership.tick(now), now)
        while self._asks and self._asks[0].due <= now:
            out.extend(self._ask(heapq.heappop(self._asks), now))
        return out

    def next_wakeup(self) -> float:
        """The earliest time at which ``tick`` has something to do."""
        when = self.membership.next_wakeup()
        return min(when, self._asks[0].due) if self._asks else when

    def leave(self, now: float) -> list[Output]:
        """Graceful leave: the shutdown notice, and the local node goes dead."""
        return self._process(self.membership.leave(), now)

    def set_status_fields(self, fields: Sequence[Field]) -> bool:
        """Carry ``fields`` (the failover ad) in every status; True when a status must go now
        (they changed, after the first time)."""
        return self.membership.set_status_fields(fields)

    def send(self, ev: Send, now: float) -> list[Output]:
        """A higher layer's message (Heartbeat's resource messages), numbered and signed."""
        if self.local_status is NodeStatus.DEAD:
            return []
        return self._send(ev, now)

    def send_status(self, now: float) -> list[Output]:
        """A status message at once, besides the keepalive ones."""
        return self._send(self.membership.status_message(), now)

    # ------------------------------------------------------------------ views

    def view(self, now: float) -> MembershipView:
        return self.membership.view(now)

    @property
    def local_status(self) -> NodeStatus:
        return self.membership.local_status

    @property
    def comm_up(self) -> bool:
        return self.membership.comm_up

    def replay_state(self) -> dict[str, tuple[int, int | None]]:
        """Each heard peer's (generation, last sequence number), to keep across a restart."""
        return self.membership.replay_state()

    def rexmit_counters(self) -> dict[str, int]:
        """Retransmit requests from peers and what they got."""
        return dict(self.rexmit.counters)

    # ------------------------------------------------------------------ output

    def _process(self, events: list[Event], now: float) -> list[Output]:
        """Carry out what membership asks (messages, retransmits); pass the rest on."""
        out: list[Output] = []
        for ev in events:
            if isinstance(ev, Send):
                out.extend(self._send(ev, now))
            elif isinstance(ev, RexmitRequested):
                out.extend(self._answer(ev, now))
            else:
                if isinstance(ev, RexmitWanted):
                    self._schedule(ev.node, ev.first, ev.last, 0, now)
                out.append(ev)
        return out

    def _send(self, ev: Send, now: float) -> list[Output]:
        """Stamp, sign and frame one message; keep it for retransmission if sequenced."""
        mtype = str(dict(ev.fields).get("t", ""))
        seq: int | None = None
        if not is_unsequenced(mtype):
            self.seq += 1
            seq = self.seq
        tail = stamp_tail(mtype, self.identity, seq=seq, wall_time=int(self._wall_clock()),
                          loadavg=self._loadavg(now) if seq is not None else "")
        try:
            if ev.dest is None and self._head is not None and self._head[0] == ev.fields:
                head = self._head[1]
            else:
                dest_uuid = self.membership.peer_uuid(ev.dest) if ev.dest else None
                head = Head(stamp_head(ev.fields, self.identity, dest_uuid=dest_uuid))
                if ev.dest is None:
                    self._head = (tuple(ev.fields), head)
            payload = encode_after(head, tail, self.keys.signing_key, self.wire_format)
        except FieldError as e:  # a field we built cannot be carried: a bug, never fatal
            return [SendFailed(mtype, str(e))]
        if seq is not None:
            self.history[seq] = payload
            while len(self.history) > HISTORY:
                self.history.popitem(last=False)
        self.sent += ev.copies
        return [Transmit(payload, mtype)] * ev.copies

    def _answer(self, ev: RexmitRequested, now: float) -> list[Output]:
        """A peer's retransmit request: the packets we still hold, a NAK for the others."""
        out: list[Output] = []
        for seq in self.rexmit.plan(ev.first, ev.last, now):
            payload = self.history.get(seq)
            if not self.rexmit.allow(seq, now, nak=payload is None):
                continue  # resent moments ago, or over the budget (Heartbeat's limits)
            if payload is not None:
                out.append(Transmit(payload, None))
                continue
            reason = "seqno too low" if seq < self.seq else "seqno not found"
            nak = (("t", "NS_nak_rexmit"), ("dest", ev.node), ("firstseq", f"{seq:x}"),
                   ("info", reason))
            out.extend(self._send(Send(nak, dest=ev.node), now))
        return out

    def _schedule(self, node: str, first: int, last: int, attempt: int, now: float) -> None:
        delay = self._rng.uniform(0, self.ha.max_rexmit_delay_ms / 1000.0)
        if attempt:
            delay += REXMIT_REPEAT_S
        ask = _Ask(now + delay, next(self._ask_order), node, first, last, attempt)
        heapq.heappush(self._asks, ask)

    def _ask(self, ask: _Ask, now: float) -> list[Output]:
        """Ask only for what is still missing: a packet that was merely overtaken by a later
        one has usually arrived by now."""
        missing = self.membership.missing(ask.node)
        still = frozenset(s for s in missing if ask.first <= s <= ask.last)
        if not still:
            return []
        if ask.attempt >= REXMIT_ATTEMPTS:
            out: list[Output] = [RexmitGaveUp(ask.node, tuple(sorted(still)))]
            out.extend(self._process(self.membership.give_up_missing(ask.node, still), now))
            return out
        fields = (("t", "NS_rexmit"), ("dest", ask.node), ("firstseq", str(min(still))),
                  ("lastseq", str(max(still))))
        out = self._send(Send(fields, dest=ask.node), now)
        self._schedule(ask.node, ask.first, ask.last, ask.attempt + 1, now)
        return out

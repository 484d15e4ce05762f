"""A routine status takes a short path (routine.py, issue 15); it must do exactly what the full
path does. Two copies of one node get the same datagrams and ticks, one with the short path and
one without, and after every step their outputs and their whole protocol and membership state
must be equal. The traffic is a real peer's (its own HeartbeatProtocol), made rough: loss,
duplicates, reordering, replays, forged and corrupted bytes, a second link, late and missing
heartbeats, deaths, restarts, leaves, changed failover ads and states, and signed statuses whose
tails are odd in the ways the short path must refuse.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from peers import TALK

from nonstop.config.model import AuthKey, AuthKeys, AuthMethod
from nonstop.heartbeat import routine
from nonstop.heartbeat.codec import Message, Value, decode, encode
from nonstop.heartbeat.envelope import Identity
from nonstop.heartbeat.events import (
    Dropped,
    Event,
    LateHeartbeat,
    LinkChanged,
    NodeDied,
    NodeReturned,
    Output,
    PeerAdChanged,
    RexmitWanted,
    Transmit,
)
from nonstop.heartbeat.membership import Membership
from nonstop.heartbeat.protocol import HeartbeatProtocol

KEY = AuthKey(1, AuthMethod.SHA1, b"ThisIsTheAuthkeyForTheCluster")
OTHER = AuthKey(2, AuthMethod.SHA1, b"another key, also configured")
KEYS = AuthKeys(1, {1: KEY, 2: OTHER})
ADS = ((("NS_ad", "g0=held:3;d=5f0c2e7a91b3"), ("NS_ep", "3")),
       (("NS_ad", "g0=free;d=5f0c2e7a91b3"), ("NS_ep", "4")), ())


class FullPathOnly(HeartbeatProtocol):
    def _receive_routine(self, data: bytes, trailer: tuple[int, int], link: str,
                         now: float) -> list[Output] | None:
        return None


def node(cls: type[HeartbeatProtocol], name: str, gen: int, seed: int) -> HeartbeatProtocol:
    uuid = bytes([int(name[-1])]) * 16
    return cls(TALK, Identity(name, uuid, gen), KEYS, 0.0, wall_clock=lambda: 0x6B062E8E,
               loadavg=lambda now: "0.04 0.03 0.00 1/112 4242", rng=random.Random(seed))


def state(p: HeartbeatProtocol) -> tuple[object, ...]:
    m = p.membership
    return (p.seq, list(p.history.items()), p.sent, p.received, sorted(p._asks),
            p.rexmit.counters, m.comm_up, m.local_status, m._next_send, m.counters,
            m._self_heard, m._status_fields, m.peers)


def odd(payload: bytes, rng: random.Random) -> bytes:
    """The same status signed properly, but with a tail the short path must not read as its
    own: each variant is still an authentic message the full path judges."""
    fields = list(decode(payload, KEYS).message.fields)
    names = [n for n, _ in fields]
    i = names.index("seq")
    kind = rng.randrange(8)
    if kind == 0:
        fields[names.index("ld")] = ("ld", "0.04,0.03")  # a comma: length-delimited, legal
    elif kind == 1:
        fields[i] = ("seq", "0x" + str(fields[i][1]).upper())  # the same number, other bytes
    elif kind == 2:
        fields.insert(len(fields) - 1, ("NS_x", "1"))  # a field between the numbers and auth
    elif kind == 3:
        fields.insert(i, ("st", "up"))  # a second st before the numbers
    elif kind == 4:
        fields[names.index("ttl")] = ("ttl", "3000")
    elif kind == 5:
        fields[i] = ("seq", "0" + str(fields[i][1]))  # a leading zero, the same number
    elif kind == 6:
        hg = names.index("hg")
        fields[hg] = ("hg", " " + str(fields[hg][1]))  # int() takes the space
    else:
        fields.append(("NS_after", "x"))  # after auth (the inner digest leaves it out)
    msg = Message.of([f for f in fields if f[0] != "auth"])
    return encode(msg, OTHER if rng.random() < 0.3 else KEY)


class Rig:
    """A peer's traffic to two copies of one node, with a hook that compares them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fast = node(HeartbeatProtocol, "vpbx1-1", 5, seed)
        self.full = node(FullPathOnly, "vpbx1-1", 5, seed)
        self.gen = 6
        self.peer = node(HeartbeatProtocol, "vpbx1-2", self.gen, seed + 1)
        self.now = 0.0
        self.queue: list[bytes] = []
        self.captured: list[bytes] = []
        self.seen: set[type] = set()
        self.short = 0
        self.steps = 0
        self.restart_at = 1 << 30  # the peer comes back this many steps after it left
        self._count_short()

    def _count_short(self) -> None:
        inner = self.fast.membership.receive_routine

        def counted(head: routine.RoutineHead, medium: str, now: float, gen: int,
                    seq: int) -> list[Event] | None:
            got = inner(head, medium, now, gen, seq)
            self.short += got is not None
            return got

        self.fast.membership.receive_routine = counted  # type: ignore[method-assign]

    def both(self, call: Callable[[HeartbeatProtocol], list[Output]]) -> list[Output]:
        a, b = call(self.fast), call(self.full)
        assert a == b, f"outputs differ at step {self.steps}"
        assert state(self.fast) == state(self.full), f"state differs at step {self.steps}"
        self.seen.update(type(o) for o in a)
        self.steps += 1
        return a

    def deliver(self, data: bytes) -> None:
        link = "eth1" if self.rng.random() < 0.05 else "eth0"
        out = self.both(lambda p: p.receive(data, link, self.now, "198.18.0.2"))
        self.to_peer(out)

    def to_peer(self, out: list[Output]) -> None:
        """Our answers, acks and requests reach the peer, and what it answers is queued."""
        for o in out:
            if isinstance(o, Transmit):
                self.peer_sends(self.peer.receive(o.payload, "eth0", self.now))

    def peer_sends(self, out: list[Output]) -> None:
        for o in out:
            if isinstance(o, Transmit):
                self.queue.append(o.payload)
                self.captured.append(o.payload)

    def step(self) -> None:
        r = self.rng.random()
        if r < 0.015:
            self.now += self.rng.choice((1.1, 1.5, 2.3, 4.0))  # a late heartbeat, or a death
        elif r < 0.02:
            self.gen += 1  # the peer restarts
            self.peer = node(HeartbeatProtocol, "vpbx1-2", self.gen, self.steps)
        elif r < 0.025:
            self.peer_sends(self.peer.leave(self.now))
            self.restart_at = self.steps + self.rng.randrange(30)
        if self.steps >= self.restart_at:
            self.restart_at = 1 << 30
            self.gen += 1
            self.peer = node(HeartbeatProtocol, "vpbx1-2", self.gen, self.steps)
        elif r < 0.045 and self.peer.set_status_fields(self.rng.choice(ADS)):
            self.peer_sends(self.peer.send_status(self.now))
        self.now = max(self.now, min(self.peer.next_wakeup(), self.fast.next_wakeup()))
        self.now += self.rng.uniform(0, 0.003)
        if self.peer.next_wakeup() <= self.now:
            self.peer_sends(self.peer.tick(self.now))
        if self.fast.next_wakeup() <= self.now:
            self.to_peer(self.both(lambda p: p.tick(self.now)))
        self._flush()

    def _flush(self) -> None:
        held: list[bytes] = []
        for data in self.queue:
            r = self.rng.random()
            if r < 0.03:
                continue  # lost
            if r < 0.05:
                held.append(data)  # overtaken by the next one
                continue
            if r < 0.07:
                self.deliver(data)  # duplicated
            elif r < 0.09 and self.captured:
                self.deliver(self.rng.choice(self.captured))  # a replay of any earlier one
            elif r < 0.11:
                bad = bytearray(data)
                bad[self.rng.randrange(len(bad))] ^= 1 << self.rng.randrange(8)
                self.deliver(bytes(bad))  # corrupted on the way, or forged
            elif r < 0.15 and b"t=status" in data:
                self.deliver(odd(data, self.rng))
            self.deliver(data)
        self.queue = held


@pytest.mark.parametrize("seed", range(12))
def test_the_short_path_does_what_the_full_path_does(seed: int) -> None:
    rig = Rig(seed)
    for _ in range(1500):
        rig.step()
    # The traffic was rough and the short path was taken: the comparison meant something.
    assert rig.short > 250
    assert {NodeDied, NodeReturned, RexmitWanted, LinkChanged, PeerAdChanged, LateHeartbeat,
            Dropped} <= rig.seen


def test_an_idle_peer_takes_the_short_path_but_for_its_acks() -> None:
    rig = Rig(99)
    rig.rng = random.Random(0)
    rig.rng.random = lambda: 0.5  # type: ignore[method-assign]  # no loss, no events
    for _ in range(300):
        rig.step()
    statuses = rig.fast.membership.counters
    assert statuses == {}
    # Every tenth status carries an ack for its sender (Heartbeat's rule): the full path.
    assert 0.85 * 300 <= rig.short <= 0.92 * 300


def _status_bytes() -> bytes:
    peer = node(HeartbeatProtocol, "vpbx1-2", 6, 1)
    peer.set_status_fields(ADS[0])
    out = peer.tick(0.0)
    return next(o.payload for o in out if isinstance(o, Transmit) and b"t=status" in o.payload)


def test_the_tail_is_read_only_when_every_length_is_right() -> None:
    data = _status_bytes()
    body_end = data.rindex(b"%%%\n") + 4
    start = routine.head_end(data, body_end)
    assert data[start:].startswith(b"8:(0)seq=1,")
    m = routine.tail(data, start, body_end)
    assert m is not None and routine.numbers(m) == (1, 6, 1)
    assert routine.values(m)[:2] == ("1", "6")
    longer = data.replace(b"8:(0)seq=1,", b"9:(0)seq=1,")
    assert routine.tail(longer, start, len(longer) - (len(data) - body_end)) is None
    assert routine.tail(data, start + 1, body_end) is None
    assert routine.head_end(b"###\n11:(0)t=status,", 19) == 0


def test_a_head_whose_value_hides_a_tail_is_not_learned() -> None:
    """A value that contains what looks like the numbers: the head would end in it, and the
    short path must then never read such a status (the full path reads it as one field)."""
    p = node(HeartbeatProtocol, "vpbx1-1", 5, 1)
    fields: list[tuple[str, Value]] = [
        ("t", "status"), ("st", "active"), ("dt", "7d0"), ("protocol", "1"),
        ("NS_ad", "8:(0)seq=1,"), ("src", "vpbx1-2"), ("srcuuid", b"\x02" * 16),
        ("seq", "1"), ("hg", "6"), ("ts", "6b062e8e"), ("ld", "0.04"), ("ttl", "3")]
    p.receive(encode(Message.of(fields), KEY), "eth0", 0.0)
    assert p._heads == {}


def test_a_reload_forgets_the_heads() -> None:
    p = node(HeartbeatProtocol, "vpbx1-1", 5, 1)
    p.receive(_status_bytes(), "eth0", 0.0)
    assert len(p._heads) == 1
    p.reconfigure(TALK, KEYS, "netstring")
    assert p._heads == {}


def test_membership_refuses_the_short_path_for_an_unknown_sender() -> None:
    m = Membership(TALK, "vpbx1-1", 0.0)
    head = routine.RoutineHead("vpbx1-9", m.local_status, 2000, "1", None, {})
    assert m.receive_routine(head, "eth0", 0.0, 1, 1) is None


def test_the_protocol_names_the_sender_of_each_authenticated_datagram() -> None:
    """The own-key check learns a peer's address from what it sends: the sender is known on
    both paths, and unknown for a datagram that failed authentication."""
    peer = node(HeartbeatProtocol, "vpbx1-2", 6, 1)
    p = node(HeartbeatProtocol, "vpbx1-1", 5, 1)
    for t in (0.0, 0.2, 0.4):  # the first takes the full path, the next the short one
        out = peer.tick(t)
        data = next(o.payload for o in out if isinstance(o, Transmit) and b"t=status" in o.payload)
        p.receive(data, "eth0", t)
        assert p.sender == "vpbx1-2"
    assert p._heads  # the short path was taken
    p.receive(data[:-8] + b"deadbeef", "eth0", 0.6)
    assert p.sender is None
    # The same authentic datagram sent again (by anyone on the LAN: no key needed) names
    # nobody: its source must not become a peer's address in the own-key check.
    p.receive(data, "eth0", 0.7)
    assert p.membership.counters.get("duplicate") == 1 and p.sender is None

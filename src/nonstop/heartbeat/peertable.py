"""The peers membership tracks, and what the protocol object reads or resets in them.

:class:`PeerState` is one configured peer as :class:`~nonstop.heartbeat.membership.Membership`
knows it (status, generation, sequence numbers, links); :class:`PeerTable` is the part of
Membership that answers from those records: deadtimes, the replay state kept across a restart,
missing packets, the view ``nonstop status`` and the failover snapshot are built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nonstop.config.model import HaConfig
from nonstop.heartbeat.envelope import Field
from nonstop.heartbeat.events import Event, GapFilled, MembershipView, Msg, NodeView
from nonstop.heartbeat.states import NodeStatus

# A larger jump in a peer's sequence numbers is not tracked packet by packet (Heartbeat 3.x:
# "lost a lot of packets!"), which also bounds the memory a peer's seq can make us spend.
MAX_SEQ_GAP = 250


@dataclass
class PeerState:
    """What membership knows of one configured peer."""

    name: str
    status: NodeStatus = NodeStatus.INIT
    ref_time: float = 0.0  # last status heard, or start time
    heard_status: bool = False
    last_status_at: float | None = None
    any_packet: bool = False
    # A sequenced packet admitted since we started or it died: until then its numbers are
    # compared with the recorded ones only to drop replays, never to ask for a gap (what it
    # sent while we were down, or while it was dead, is not ours to ask for).
    seq_heard: bool = False
    generation: int | None = None
    # The generation it had when declared dead: only a status of that very generation is a
    # node back from a partition (``generation`` follows any packet, a restart's first
    # packet may be a reqnodes or an ack).
    dead_generation: int | None = None
    last_seq: int | None = None
    missing: set[int] = field(default_factory=set)  # seqs skipped and not (yet) arrived
    advertised_dt_ms: int | None = None
    uuid: bytes | None = None
    left: bool = False  # went dead by shutdone rather than timeout
    warned: bool = False
    links: dict[str, float] = field(default_factory=dict)
    link_up: dict[str, bool] = field(default_factory=dict)
    ack_trigger: int = 0
    protocol: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Inbound:
    """One message from a configured peer, as far as ``receive`` has read it."""

    peer: PeerState
    msg: Msg
    medium: str
    now: float
    mtype: str
    gen: int
    seq: int | None
    known_gen: int | None  # the peer's generation before this message


class PeerTable:
    """Membership's peers and the queries over them (Membership sets every attribute)."""

    ha: HaConfig
    local: str
    local_status: NodeStatus
    comm_up: bool
    counters: dict[str, int]
    peers: dict[str, PeerState]
    _status_fields: tuple[Field, ...]
    _self_heard: dict[str, float]

    def deadtime_for(self, peer: PeerState) -> int:
        """The silence (ms) after which ``peer`` is dead: initdead until comm is up, then its
        advertised deadtime (Heartbeat times a node out with the deadtime *it* sends)."""
        if not self.comm_up:
            return self.ha.initdead_ms
        return peer.advertised_dt_ms or self.ha.deadtime_ms

    def _dead_at(self, peer: PeerState) -> float:
        """When ``peer`` is declared dead unless something is heard from it first."""
        return peer.ref_time + self.deadtime_for(peer) / 1000.0

    def replay_state(self) -> dict[str, tuple[int, int | None]]:
        """Each heard peer's (generation, last sequence number), to keep across a restart."""
        return {
            p.name: (p.generation, p.last_seq)
            for p in self.peers.values()
            if p.generation is not None
        }

    def self_heard(self, medium: str) -> float | None:
        """When our own packet last came back on ``medium`` (self-liveness of a medium)."""
        return self._self_heard.get(medium)

    def give_up_missing(self, node: str, seqs: frozenset[int]) -> list[Event]:
        """Stop waiting for packets that repeated retransmit requests did not bring (as a NAK
        would): acks to that peer resume, so a Heartbeat peer's history does not fill up."""
        p = self.peers.get(node)
        if p is None or not (p.missing & seqs):
            return []
        p.missing -= seqs
        self.counters["lost_for_good"] = self.counters.get("lost_for_good", 0) + len(seqs)
        return [GapFilled(node)] if not p.missing else []

    def missing(self, node: str) -> frozenset[int]:
        """Sequence numbers of ``node``'s messages that were skipped and have not arrived."""
        p = self.peers.get(node)
        return frozenset(p.missing) if p else frozenset()

    def peer_uuid(self, node: str) -> bytes | None:
        p = self.peers.get(node)
        return p.uuid if p else None

    def view(self, now: float) -> MembershipView:
        nodes: list[NodeView] = [
            NodeView(
                name=self.local,
                status=self.local_status,
                local=True,
                last_heard_ago_ms=0,
                deadtime_ms=self.ha.deadtime_ms,
                generation=None,
                links={},
                fields={n: str(v) for n, v in self._status_fields},
            )
        ]
        for p in self.peers.values():
            nodes.append(
                NodeView(
                    name=p.name,
                    status=p.status,
                    local=False,
                    last_heard_ago_ms=(
                        round((now - p.last_status_at) * 1000)
                        if p.last_status_at is not None
                        else None
                    ),
                    deadtime_ms=self.deadtime_for(p),
                    generation=p.generation,
                    links=dict(p.link_up),
                    fields=dict(p.extra),
                    left=p.left,
                    dead_in_ms=(
                        None
                        if p.status is NodeStatus.DEAD
                        else max(0, round((self._dead_at(p) - now) * 1000))
                    ),
                )
            )
        order = {n: i for i, n in enumerate(self.ha.nodes)}
        nodes.sort(key=lambda n: order.get(n.name, len(order)))
        return MembershipView(now, self.local, self.comm_up, tuple(nodes), dict(self.counters))

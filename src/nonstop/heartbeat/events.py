"""What the heartbeat core tells its caller: datagrams to send and things that happened.

Membership's events (status changes, deaths, gaps...) and the protocol's own (a datagram to
transmit, a peer's failover fields changed, our own status heard back) are plain frozen data,
so tests compare them with ``==`` and the daemon dispatches on their type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nonstop.errors import UnknownName
from nonstop.heartbeat.envelope import Field
from nonstop.heartbeat.states import NodeStatus


class Msg(Protocol):
    """What membership needs of a decoded message (the codec's ``Message`` is one)."""

    @property
    def fields(self) -> tuple[tuple[str, object], ...]: ...

    def get(self, name: str) -> str | None: ...

    def get_bytes(self, name: str) -> bytes | None: ...


class MessageView:
    """A plain list of fields as a :class:`Msg` (for messages built without the codec)."""

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields = tuple(fields)

    def get(self, name: str) -> str | None:
        for n, v in self.fields:
            if n == name:
                return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v
        return None

    def get_bytes(self, name: str) -> bytes | None:
        for n, v in self.fields:
            if n == name:
                return v if isinstance(v, bytes) else v.encode("utf-8", "surrogateescape")
        return None


# ---------------------------------------------------------------------------- membership


@dataclass(frozen=True)
class Send:
    """Broadcast a message on every medium; the protocol adds control fields and signs it."""

    fields: tuple[Field, ...]
    dest: str | None = None
    copies: int = 1  # a leave notice is sent more than once against loss


@dataclass(frozen=True)
class StatusChanged:
    node: str
    old: NodeStatus
    new: NodeStatus
    local: bool = False


@dataclass(frozen=True)
class NodeDied:
    node: str
    reason: str  # "timeout" or "shutdown"
    silence_ms: int
    limit_ms: int


@dataclass(frozen=True)
class LateHeartbeat:
    node: str
    interval_ms: int


@dataclass(frozen=True)
class SilenceWarning:
    """No status from a node for ``warntime``: said before it is late, not only after."""

    node: str
    silence_ms: int


@dataclass(frozen=True)
class LinkChanged:
    node: str
    link: str
    up: bool


@dataclass(frozen=True)
class NodeReturned:
    node: str
    kind: str  # "partition" (same generation) or "restart" (higher generation)


@dataclass(frozen=True)
class CommUp:
    """Every configured node was heard or declared dead: the local node becomes active."""


@dataclass(frozen=True)
class Dropped:
    reason: str
    src: str | None
    detail: str = ""


@dataclass(frozen=True)
class RexmitRequested:
    node: str
    first: int
    last: int


@dataclass(frozen=True)
class RexmitWanted:
    """A gap in a peer's sequence numbers: ask it (after a random delay) to resend them."""

    node: str
    first: int
    last: int


@dataclass(frozen=True)
class GapFilled:
    """Every packet missing from a node's sequence has arrived (late or retransmitted)."""

    node: str


@dataclass(frozen=True)
class ClusterMessage:
    """A sequenced message membership does not consume (resource and failover messages)."""

    node: str
    msg: Msg


@dataclass(frozen=True)
class PeerAdChanged:
    """The extra fields of a peer's status (its failover ad) differ from its last status'."""

    node: str


#: What membership reports that the protocol passes on as it is.
Notice = (
    StatusChanged
    | NodeDied
    | LateHeartbeat
    | SilenceWarning
    | LinkChanged
    | NodeReturned
    | CommUp
    | Dropped
    | RexmitWanted
    | GapFilled
    | ClusterMessage
    | PeerAdChanged
)
#: What membership returns; the protocol carries out the first two itself.
Event = Send | RexmitRequested | Notice


# ---------------------------------------------------------------------------- protocol


@dataclass(frozen=True)
class Transmit:
    """One signed datagram for every medium.

    ``mtype``: the message's ``t`` field; None for a retransmission of an earlier datagram.
    """

    payload: bytes
    mtype: str | None


@dataclass(frozen=True)
class OwnStatusHeard:
    """Our own status came back on ``link``: the heartbeat path is alive and heard."""

    link: str


@dataclass(frozen=True)
class RexmitGaveUp:
    """Packets of ``node`` that repeated retransmit requests did not bring: lost for good."""

    node: str
    seqs: tuple[int, ...]


@dataclass(frozen=True)
class SendFailed:
    """A message we built cannot be carried (a bug, never fatal): nothing was sent."""

    mtype: str
    error: str


#: What the protocol returns: datagrams, membership's notices and its own events.
Output = Transmit | OwnStatusHeard | RexmitGaveUp | SendFailed | Notice

#: Outputs that change what failover sees (statuses, links, comm, peers' ads): the daemon
#: decides again after them, not after log-only news or its own datagrams.
FAILOVER_NEWS = (
    StatusChanged,
    NodeDied,
    LinkChanged,
    NodeReturned,
    CommUp,
    PeerAdChanged,
    ClusterMessage,
)


# ---------------------------------------------------------------------------- views


@dataclass(frozen=True)
class NodeView:
    name: str
    status: NodeStatus
    local: bool
    last_heard_ago_ms: int | None
    deadtime_ms: int
    generation: int | None
    links: dict[str, bool]
    fields: dict[str, str]  # the last status message's extra fields (failover state)
    left: bool = False  # dead because it said it was leaving (shutdone), not by silence
    # In how long a silent peer is declared dead (initdead until comm is up); None for us and
    # for a peer already dead.
    dead_in_ms: int | None = None


@dataclass(frozen=True)
class MembershipView:
    """An immutable snapshot for decisions, status output and tests."""

    now: float
    local: str
    comm_up: bool
    nodes: tuple[NodeView, ...]
    counters: dict[str, int]

    def node(self, name: str) -> NodeView:
        for n in self.nodes:
            if n.name == name:
                return n
        raise UnknownName(name)

    def alive(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if n.status is not NodeStatus.DEAD)

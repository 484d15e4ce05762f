"""The control fields Heartbeat adds to every outbound message, in Heartbeat's order.

Pure: the wall clock and the load average are passed in, so the result is reproducible and a
captured Heartbeat 3.0.6 packet can be rebuilt field for field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nonstop.errors import InvalidValue

Field = tuple[str, str | bytes]


@dataclass(frozen=True)
class Identity:
    """Who we are on the wire: node name, 16-byte UUID, generation, hop count."""

    node: str
    uuid: bytes
    generation: int
    ttl: int = 3


def is_unsequenced(msg_type: str) -> bool:
    """``NS_`` messages carry no ``seq`` and no ``ld`` (retransmit, ack, ping-node status)."""
    return msg_type.startswith("NS_")


def stamp(
    fields: Sequence[Field],
    me: Identity,
    *,
    seq: int | None,
    wall_time: int,
    loadavg: str,
    dest_uuid: bytes | None = None,
) -> list[Field]:
    """Return ``fields`` followed by the control fields Heartbeat appends.

    Order as captured from Heartbeat 3.0.6: the message's own fields, ``destuuid`` when the
    message has a ``dest``, then ``src``, ``srcuuid``, ``seq`` (hex; not for ``NS_`` types),
    ``hg`` (hex), ``ts`` (hex wall-clock seconds), ``ld`` (not for ``NS_`` types), ``ttl``.
    The ``auth`` field is added by the codec when the message is encoded.
    """
    msg_type = next((str(v) for n, v in fields if n == "t"), "")
    return [*stamp_head(fields, me, dest_uuid=dest_uuid),
            *stamp_tail(msg_type, me, seq=seq, wall_time=wall_time, loadavg=loadavg)]


def stamp_head(fields: Sequence[Field], me: Identity, *,
               dest_uuid: bytes | None = None) -> tuple[Field, ...]:
    """``stamp``'s first part, the same for every copy of a message: its fields,
    ``destuuid``, ``src`` and ``srcuuid``."""
    out: list[Field] = list(fields)
    if dest_uuid is not None and any(n == "dest" for n, _ in fields):
        out.append(("destuuid", dest_uuid))
    out.append(("src", me.node))
    out.append(("srcuuid", me.uuid))
    return tuple(out)


def stamp_tail(msg_type: str, me: Identity, *, seq: int | None, wall_time: int,
               loadavg: str) -> tuple[tuple[str, str], ...]:
    """``stamp``'s last part, which changes from one message to the next: ``seq``, ``hg``,
    ``ts``, ``ld`` and ``ttl`` (all strings)."""
    unsequenced = is_unsequenced(msg_type)
    if unsequenced:
        return (("hg", f"{me.generation:x}"), ("ts", f"{wall_time:x}"), ("ttl", str(me.ttl)))
    if seq is None:
        raise InvalidValue(f"message type {msg_type!r} needs a sequence number")
    return (("seq", f"{seq:x}"), ("hg", f"{me.generation:x}"), ("ts", f"{wall_time:x}"),
            ("ld", loadavg), ("ttl", str(me.ttl)))

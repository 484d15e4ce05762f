"""A peer's routine status, read without the general parser and membership's steps (issue 15).

An idle cluster's traffic is one status per peer per keepalive that repeats the peer's last
one but for its numbers: every field up to ``seq`` (type, state, deadtime, protocol, the
failover ad, name and uuid, the *head*) is the same bytes, and only ``seq``, ``hg``, ``ts``,
``ld``, ``ttl`` and the digests change. On an idle node this is most of what runs, and it runs
cold (docs/BENCHMARKS.md, the seventh pass): its cost follows the distinct code it touches.

So the protocol keeps, per peer, the head of its last status that took the full path and what
that head told membership (:class:`RoutineHead`). A datagram whose trailer digest verifies
(``codec.authenticate_netstring``, always) and whose bytes start with a known head followed by
exactly the six standard tail fields (:func:`numbers`) is what the full parse would have read:
the netstring parse goes field by field, so the head's fields and then the tail's. Membership
then takes it in one step (``Membership.receive_routine``) when nothing could come of it but
the time and the number (no gap, no ack due, no change of state, ad or link, not late);
anything else, and anything this module does not recognise, takes the full path, which is
never skipped for a datagram that could mean more. tests/unit/heartbeat/test_routine.py drives
both paths with the same traffic and compares every output and every field of the state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nonstop.heartbeat.states import NodeStatus

#: The fields after the head, in the order both Heartbeat 3.0.6 and nonstop send them.
TAIL_NAMES = ("seq", "hg", "ts", "ld", "ttl", "auth")
_SEQ_AT = b":(0)seq="
# Each field "<len>:(0)<name>=<value>," with a length as the parser reads it (no leading zero)
# and a value of printable ASCII without ",": a strict subset of what the parser accepts, so a
# match is read the same by both; anything else (a comma, other bytes) takes the full path.
_LEN = rb"([1-9][0-9]{0,5}):\(0\)"
_TAIL = re.compile(
    _LEN + rb"seq=([0-9a-f]{1,16})," + _LEN + rb"hg=([0-9a-f]{1,16}),"
    + _LEN + rb"ts=([0-9a-f]{1,16})," + _LEN + rb"ld=([ -+\--~]{1,64}),"
    + _LEN + rb"ttl=([0-9]{1,3})," + _LEN + rb"auth=(([0-9]{1,2}) [!-+\--~]{1,200}),%%%\n"
)
_OVERHEAD = tuple(len(name) + 4 for name in TAIL_NAMES)  # "(0)" + name + "="


@dataclass(frozen=True, slots=True)
class RoutineHead:
    """What a peer's status head says, as ``Membership.receive`` would read it."""

    src: str  # the configured peer, lower case
    st: NodeStatus
    dt: int | None  # the deadtime it advertises, ms
    protocol: str | None
    uuid: bytes | None
    extra: dict[str, str]  # the fields that are not membership's own (the failover ad)


def head_end(data: bytes, body_end: int) -> int:
    """Where a status' numbers begin (the field before its first ``seq``), or 0 if nowhere."""
    at = data.find(_SEQ_AT, 0, body_end)
    return data.rfind(b",", 0, at) + 1 if at > 0 else 0


def tail(data: bytes, start: int, body_end: int) -> re.Match[bytes] | None:
    """The six tail fields as the whole of ``data[start:body_end]``, each netstring's length
    right, or None."""
    m = _TAIL.fullmatch(data, start, body_end)
    if m is None:
        return None
    for i, overhead in enumerate(_OVERHEAD):
        if int(m.group(2 * i + 1)) != overhead + m.end(2 * i + 2) - m.start(2 * i + 2):
            return None
    return m


def numbers(m: re.Match[bytes]) -> tuple[int, int, int]:
    """A tail's sequence number, generation and the key index its inner ``auth`` names."""
    return int(m.group(2), 16), int(m.group(4), 16), int(m.group(13))


def values(m: re.Match[bytes]) -> tuple[str, ...]:
    """The tail's six values as the parser returns them."""
    return tuple(m.group(2 * i + 2).decode("ascii") for i in range(len(TAIL_NAMES)))

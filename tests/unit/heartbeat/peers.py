"""Shared builders for the membership tests: the talk's timing and a peer's messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from nonstop.config.model import Bcast, HaConfig
from nonstop.heartbeat.envelope import Field
from nonstop.heartbeat.membership import Event, MessageView

#: The talk's ha.cf timing (keepalive 200ms, deadtime 2, warntime 1), initdead 120 s.
TALK = HaConfig(
    path="ha.cf",
    nodes=("vpbx1-1", "vpbx1-2"),
    media=(Bcast("eth0"),),
    keepalive_ms=200,
    deadtime_ms=2000,
    warntime_ms=1000,
    initdead_ms=120000,
)

#: The same with initdead 5 s, as the namespace tests run it.
TALK_INITDEAD_5 = replace(TALK, initdead_ms=5000)


def message(seq: int | None, *fields: Field, src: str = "vpbx1-2", gen: int = 7) -> MessageView:
    """A message from ``src`` with Heartbeat's control fields (no ``seq`` when None)."""
    out: list[Field] = [*fields, ("src", src), ("srcuuid", b"\x02" * 16)]
    if seq is not None:
        out.append(("seq", f"{seq:x}"))
    out += [("hg", f"{gen:x}"), ("ts", "6b062e8e"), ("ttl", "3")]
    return MessageView(out)


class Peer:
    """A peer that numbers its messages as Heartbeat does."""

    def __init__(self, name: str = "vpbx1-2", gen: int = 7) -> None:
        self.name, self.gen, self.seq = name, gen, 0

    def msg(self, *fields: Field, seq: bool = True) -> MessageView:
        if seq:
            self.seq += 1
        return message(self.seq if seq else None, *fields, src=self.name, gen=self.gen)

    def status(self, st: str = "active", dt: int = 2000) -> MessageView:
        return self.msg(("t", "status"), ("st", st), ("dt", f"{dt:x}"), ("protocol", "1"))

    def shutdone(self) -> MessageView:
        return self.msg(("t", "shutdone"), ("st", "dead"))


def of(events: Sequence[Event], kind: type) -> list[object]:
    """The events of one kind, in order."""
    return [e for e in events if isinstance(e, kind)]

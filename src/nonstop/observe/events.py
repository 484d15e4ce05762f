"""One history record, how it is written on disk, and how a person or a program reads it (pure).

A record is a moment the cluster lived through, as seen by one node: a sequence number that
only grows on that node (across restarts), both clocks (wall time for people, the monotonic
clock for intervals), a kind from :data:`KINDS`, the node and group it is about, a sentence,
and a few plain extra values (a resource, a duration, who asked).
"""

from __future__ import annotations

import datetime
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nonstop.errors import NonstopError

Scalar = str | int | float | bool | None

# Every kind, with the words the text timeline shows (docs/OBSERVE.md lists what each means).
KINDS: dict[str, str] = {
    "daemon_start": "daemon started",
    "daemon_stop": "daemon stopping",
    "comm_up": "comm up",
    "node_up": "node up",
    "node_status": "node status",
    "node_late": "late heartbeat",
    "node_silent": "heartbeats missing",
    "node_dead": "node dead",
    "node_back": "node back",
    "link_up": "link up",
    "link_dead": "link dead",
    "decision": "decision",
    "split_settled": "split claim settled",
    "group_holder": "group holder",
    "group_starting": "group starting",
    "group_acquired": "group acquired",
    "group_releasing": "group releasing",
    "group_released": "group released",
    "group_failed": "group failed",
    "resource_start": "resource start",
    "resource_stop": "resource stop",
    "resource_monitor": "resource monitor",
    "sync_pushed": "sync pushed",
    "sync_received": "sync received",
    "sync_conflict": "sync conflict",
    "sync_failed": "sync failed",
    "sync_recovered": "sync recovered",
    "sync_overwritten": "local changes overwritten",
    "standby_refused": "standby refused",
    "reload": "reload",
    "command": "command",
}

MAX_TEXT = 1000  # a reason or any extra string is cut here: a record stays one small line


class BadRecord(NonstopError, ValueError):
    """A line of the history file that is not an intact record (torn write, bit rot): a local
    file's problem, never a peer's."""


@dataclass(frozen=True)
class Record:
    seq: int
    time: float  # wall clock, seconds since the epoch
    mono: float  # CLOCK_MONOTONIC seconds (intervals within one boot)
    local: str  # the node that recorded it
    kind: str
    node: str = ""  # the node it is about ("" when none)
    group: str = ""  # the resource group it is about ("" when none)
    reason: str = ""
    data: Mapping[str, Scalar] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "time": self.time, "mono": self.mono, "local": self.local,
            "kind": self.kind, "node": self.node, "group": self.group, "reason": self.reason,
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, obj: object) -> Record:
        if not isinstance(obj, dict):
            raise BadRecord("a record is a JSON object")
        try:
            data = obj.get("data") or {}
            if not isinstance(data, dict):
                raise BadRecord("record data is not an object")
            rec = cls(
                seq=_typed(obj["seq"], int), time=float(_typed(obj["time"], (int, float))),
                mono=float(_typed(obj["mono"], (int, float))), local=_typed(obj["local"], str),
                kind=_typed(obj["kind"], str), node=_typed(obj.get("node", ""), str),
                group=_typed(obj.get("group", ""), str), reason=_typed(obj.get("reason", ""), str),
                data={str(k): v for k, v in data.items()
                      if v is None or isinstance(v, str | int | float | bool)},
            )
        except KeyError as e:
            raise BadRecord(f"record without {e}") from None
        return rec


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise BadRecord(f"unexpected value {value!r} in a record")
    return value


def clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


# ------------------------------------------------------------------ the file format

def encode_line(rec: Record) -> bytes:
    """``<crc32 of the JSON, 8 hex digits> <JSON>\\n``: one record per line, so a reader finds
    the next record after a damaged one, and a torn last line is recognised and ignored."""
    body = json.dumps(rec.to_json(), separators=(",", ":"), ensure_ascii=True).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_line(line: bytes) -> Record:
    """A record from one line (with or without its newline); BadRecord unless intact."""
    if not line.endswith(b"\n"):
        raise BadRecord("torn record (no end of line)")
    line = line[:-1]
    if len(line) < 10 or line[8:9] != b" ":
        raise BadRecord("not a history record")
    try:
        crc = int(line[:8], 16)
    except ValueError:
        raise BadRecord("bad checksum field") from None
    body = line[9:]
    if zlib.crc32(body) != crc:
        raise BadRecord("checksum mismatch")
    try:
        return Record.from_json(json.loads(body))
    except (ValueError, RecursionError) as e:
        raise BadRecord(f"unreadable record: {e}") from None


# ------------------------------------------------------------------ renderings

def label(kind: str) -> str:
    return KINDS.get(kind, kind)


def sentence(rec: Record) -> str:
    """What the record says, in words, with its extras that matter to a person."""
    d = rec.data
    parts = [rec.reason] if rec.reason else []
    if "duration_ms" in d and d["duration_ms"] is not None:
        parts.append(f"({d['duration_ms']} ms)")
    if d.get("who"):
        parts.append(f"[asked by {d['who']}]")
    return " ".join(parts)


def _clock(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t).astimezone()


class Timeline:
    """The text form of ``nonstop history``, one record at a time (so ``--follow`` prints the
    same lines): as the demo's timeline reads, with seconds from the first record shown (a
    new start of the daemon or another node's record restarts them) and a date line
    whenever the day changes."""

    def __init__(self) -> None:
        self._first: Record | None = None
        self._day: datetime.date | None = None

    def lines(self, rec: Record) -> list[str]:
        out = []
        first = self._first
        if first is None or rec.mono < first.mono or rec.local != first.local:
            first = self._first = rec
        when = _clock(rec.time)
        if when.date() != self._day:
            self._day = when.date()
            out.append(f"-- {self._day.isoformat()} ({when.tzname()})")
        offset = rec.mono - first.mono
        out.append(f"  {when:%H:%M:%S}.{when.microsecond // 1000:03d}  {offset:+9.3f} s  "
                   f"#{rec.seq:<6} {label(rec.kind):<20} {sentence(rec)}")
        return out


def format_timeline(records: Iterable[Record]) -> list[str]:
    timeline = Timeline()
    return [line for rec in records for line in timeline.lines(rec)]


def iso_time(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="microseconds")


def environment(rec: Record) -> dict[str, str]:
    """The variables a ``nonstop_notify`` program receives (docs/OBSERVE.md), in the spirit of
    Pacemaker's alert agents (CRM_alert_kind, _node, _rsc, _timestamp, _node_sequence ...)."""
    env = {
        "NONSTOP_EVENT_SEQUENCE": str(rec.seq),
        "NONSTOP_EVENT_KIND": rec.kind,
        "NONSTOP_EVENT_NODE": rec.node,
        "NONSTOP_EVENT_GROUP": rec.group,
        "NONSTOP_EVENT_REASON": rec.reason,
        "NONSTOP_EVENT_TEXT": sentence(rec),
        "NONSTOP_EVENT_TIMESTAMP": iso_time(rec.time),
        "NONSTOP_EVENT_TIMESTAMP_EPOCH": str(int(rec.time)),
        "NONSTOP_EVENT_TIMESTAMP_USEC": f"{int(rec.time * 1_000_000) % 1_000_000:06d}",
        "NONSTOP_EVENT_MONOTONIC": f"{rec.mono:.6f}",
        "NONSTOP_LOCAL_NODE": rec.local,
        "NONSTOP_EVENT_JSON": json.dumps(rec.to_json(), separators=(",", ":")),
    }
    for key in ("resource", "action", "result", "duration_ms", "who", "link", "epoch"):
        value = rec.data.get(key)
        if value is not None:
            env[f"NONSTOP_EVENT_{key.upper()}"] = str(value)
    return env

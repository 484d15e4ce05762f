"""From what happened to what a person reads: a round's timeline and the final table (pure).

An :class:`Event` is a moment (monotonic seconds) of a known :class:`Kind`. A round's timeline
lists its events with times relative to the fault; :func:`summarize` turns them into the
numbers of the final table (downtime, detection, replication lag), and :func:`table` prints it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


class Kind(enum.Enum):
    """What an event says, in the order a failover normally shows them."""

    FAULT = "fault"
    DEATH_DECLARED = "death declared"
    HANDOVER = "handover started"
    ADDRESS_MOVED = "address moved"
    SIP_ANSWERING = "SIP answering again"
    MAIL_RECEIVED = "takeover mail received"
    TAKEOVER_DONE = "takeover complete"
    VOICEMAIL_WRITTEN = "voicemail written"
    OLD_NODE_BACK = "old node back"
    REJOINED = "old node rejoined"
    REPLICATION_RESUMED = "replication resumed"
    STAYED_STANDBY = "old node stayed standby"
    FAILED_BACK = "group moved back"


@dataclass(frozen=True)
class Event:
    """A moment of the drill: ``at`` in monotonic seconds; ``text`` says it for a person."""

    at: float
    kind: Kind
    text: str


@dataclass(frozen=True)
class Row:
    """A timeline line: seconds since the fault (negative before it)."""

    offset_s: float
    kind: Kind
    text: str


def timeline(events: Iterable[Event], fault_at: float) -> list[Row]:
    """The events in time order, relative to the fault (ties keep :class:`Kind` order)."""
    order = {k: i for i, k in enumerate(Kind)}
    rows = [Row(e.at - fault_at, e.kind, e.text) for e in events]
    return sorted(rows, key=lambda r: (round(r.offset_s, 6), order[r.kind]))


def format_offset(seconds: float) -> str:
    """``+1.234 s`` (milliseconds, signed)."""
    return f"{seconds:+8.3f} s"


def format_timeline(rows: Sequence[Row]) -> list[str]:
    """One line per row: time since the fault, what happened."""
    return [f"  {format_offset(r.offset_s)}  {r.kind.value:<24} {r.text}" for r in rows]


@dataclass(frozen=True)
class RoundResult:
    """The numbers of one round (seconds; None = did not happen or does not apply)."""

    round: int
    fault: str
    old_active: str
    new_active: str | None
    downtime_s: float | None
    detection_s: float | None
    address_moved_s: float | None
    lost_probes: int | None
    replication_lag_s: float | None
    resumed_after_rejoin_s: float | None
    final_holder: str | None
    stayed_standby: bool | None
    mail_received: bool

    def to_json(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return asdict(self)


def _first(events: Iterable[Event], kind: Kind) -> Event | None:
    found = [e for e in events if e.kind is kind]
    return min(found, key=lambda e: e.at) if found else None


def _since(event: Event | None, start: float | None) -> float | None:
    if event is None or start is None:
        return None
    return event.at - start


def summarize(*, round_no: int, fault: str, old_active: str, new_active: str | None,
              events: Sequence[Event], downtime_s: float | None, lost_probes: int | None,
              replication_lag_s: float | None, final_holder: str | None) -> RoundResult:
    """A round's numbers from its events.

    detection: fault to death declared (or to the start of the handover for a standby);
    address moved: fault to the address on the new active; resumed after rejoin: the old node
    rejoining to the outage's voicemail arriving on it; stayed standby: the new active still
    holds the group after the old node rejoined (auto_failback off).
    """
    fault_ev = _first(events, Kind.FAULT)
    start = fault_ev.at if fault_ev else None
    detected = _first(events, Kind.DEATH_DECLARED) or _first(events, Kind.HANDOVER)
    rejoined = _first(events, Kind.REJOINED)
    stayed: bool | None = None
    if rejoined is not None and final_holder is not None and new_active is not None:
        stayed = final_holder == new_active
    return RoundResult(
        round=round_no,
        fault=fault,
        old_active=old_active,
        new_active=new_active,
        downtime_s=downtime_s,
        detection_s=_since(detected, start),
        address_moved_s=_since(_first(events, Kind.ADDRESS_MOVED), start),
        lost_probes=lost_probes,
        replication_lag_s=replication_lag_s,
        resumed_after_rejoin_s=_since(_first(events, Kind.REPLICATION_RESUMED),
                                      rejoined.at if rejoined else None),
        final_holder=final_holder,
        stayed_standby=stayed,
        mail_received=_first(events, Kind.MAIL_RECEIVED) is not None,
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


ROWS = ("active: old -> new", "detection (fault -> death declared)",
        "address moved (after the fault)", "downtime seen by the SIP client",
        "SIP probes lost", "replication lag (active -> standby)",
        "replication resumed (after rejoin)", "old node stayed standby")


def table(rounds: Sequence[RoundResult]) -> list[str]:
    """The final table: one column per round, one line per measure, plain aligned text."""
    columns = [[f"round {r.round} ({r.fault})",
                f"{r.old_active} -> {r.new_active or '?'}",
                _seconds(r.detection_s), _seconds(r.address_moved_s), _seconds(r.downtime_s),
                "-" if r.lost_probes is None else str(r.lost_probes),
                _seconds(r.replication_lag_s), _seconds(r.resumed_after_rejoin_s),
                _yes_no(r.stayed_standby)] for r in rounds]
    labels = ["", *ROWS]
    label_width = max(len(x) for x in labels)
    widths = [max(len(cell) for cell in col) for col in columns]
    lines = []
    for i, label in enumerate(labels):
        cells = [col[i].ljust(w) for col, w in zip(columns, widths, strict=True)]
        lines.append(("  " + label.ljust(label_width) + "  " + "  ".join(cells)).rstrip())
        if i == 0:
            lines.append("  " + "-" * label_width + "  " + "  ".join("-" * w for w in widths))
    return lines

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

from nonstop.lab.outage import Probe


class Kind(enum.Enum):
    """What an event says, in the order a failover normally shows them."""

    FAULT = "fault"
    DEATH_DECLARED = "death declared"
    HANDOVER = "handover started"
    RELEASED = "old node released"
    OLD_VIP_DROPPED = "old node dropped VIP"
    OLD_ANSWERED = "old node answered SIP"
    SIP_SILENT = "SIP silent"
    ADDRESS_MOVED = "address moved"
    SIP_ANSWERING = "SIP answering again"
    MAIL_RECEIVED = "takeover mail received"
    TAKEOVER_DONE = "takeover complete"
    VOICEMAIL_WRITTEN = "voicemail written"
    OLD_NODE_BACK = "old node back"
    REJOINED = "old node rejoined"
    REPLICATION_RESUMED = "replication resumed"
    OLD_NODE_CLAIMED = "VIP on the old node"
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

    detection: fault to death declared (none for a planned handover); address moved: fault to
    the address on the new active; resumed after rejoin: the old node rejoining (or, after a
    handover, the voicemail being written) to the outage's voicemail arriving on the old node;
    stayed standby: the new active still holds the group after the old node rejoined or handed
    over (auto_failback off).
    """
    fault_ev = _first(events, Kind.FAULT)
    start = fault_ev.at if fault_ev else None
    rejoined = _first(events, Kind.REJOINED)
    written = _first(events, Kind.VOICEMAIL_WRITTEN)
    # Replication can resume once the old node is back and the voicemail exists, whichever
    # is later (after a handover the old node never left).
    resume_from = max((e.at for e in (rejoined, written) if e is not None), default=None)
    if rejoined is None and _first(events, Kind.HANDOVER) is None:
        resume_from = None
    stayed: bool | None = None
    back = rejoined or _first(events, Kind.HANDOVER)
    if back is not None and final_holder is not None and new_active is not None:
        # Ending as standby is not enough: taking the address on the way is no standby.
        stayed = final_holder == new_active and _first(events, Kind.OLD_NODE_CLAIMED) is None
    return RoundResult(
        round=round_no,
        fault=fault,
        old_active=old_active,
        new_active=new_active,
        downtime_s=downtime_s,
        detection_s=_since(_first(events, Kind.DEATH_DECLARED), start),
        address_moved_s=_since(_first(events, Kind.ADDRESS_MOVED), start),
        lost_probes=lost_probes,
        replication_lag_s=replication_lag_s,
        resumed_after_rejoin_s=_since(_first(events, Kind.REPLICATION_RESUMED), resume_from),
        final_holder=final_holder,
        stayed_standby=stayed,
        mail_received=_first(events, Kind.MAIL_RECEIVED) is not None,
    )


@dataclass(frozen=True)
class Gap:
    """The client's view of a move: from the old active's last answer to the new one's first."""

    seconds: float
    lost: int
    last_old_at: float
    first_new_at: float


def service_gap(probes: Sequence[Probe], fault_at: float, old: str, new: str) -> Gap | None:
    """The gap in SIP service around a fault at ``fault_at``: from the last answer by ``old``
    (before ``new`` first answered) to ``new``'s first answer to a probe sent after the fault.

    A crash silences ``old`` at once; after a planned handover it keeps answering while its
    stop scripts run, and that time is service, not downtime. ``lost`` counts the probes in
    between that nobody answered. None when the record does not show both sides.
    """
    ordered = sorted(probes, key=lambda p: p.seq)
    first_new = next((p for p in ordered if p.sent >= fault_at and p.answered is not None
                      and p.node == new), None)
    if first_new is None or first_new.answered is None:
        return None
    before = [p for p in ordered if p.node == old and p.answered is not None
              and p.answered <= first_new.answered]
    if not before:
        return None
    last_old = max(before, key=lambda p: p.answered or 0.0)
    assert last_old.answered is not None
    lost = sum(1 for p in ordered if last_old.seq < p.seq < first_new.seq and p.answered is None)
    return Gap(first_new.answered - last_old.answered, lost, last_old.answered,
               first_new.answered)


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

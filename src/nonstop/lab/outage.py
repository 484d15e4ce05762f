"""The client-visible outage in a SIP prober record (see :mod:`nonstop.lab.sipprobe`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nonstop.errors import InvalidValue


@dataclass(frozen=True)
class Probe:
    """One probe: ``sent``/``answered`` are CLOCK_MONOTONIC seconds; ``answered`` None = lost."""

    seq: int
    sent: float
    answered: float | None
    node: str | None
    status: int | None


@dataclass(frozen=True)
class Outage:
    """From the last answer before a fault to the first answer after it."""

    last_before: Probe
    first_after: Probe
    lost: int

    @property
    def seconds(self) -> float:
        """Time between the two answers as the client received them."""
        assert self.last_before.answered is not None and self.first_after.answered is not None
        return self.first_after.answered - self.last_before.answered


def read_probes(path: Path) -> list[Probe]:
    """The probes in a prober record, by sequence number (a torn last line is skipped)."""
    probes: list[Probe] = []
    for line in path.read_text().splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        probes.append(Probe(seq=int(raw["seq"]), sent=float(raw["sent"]),
                            answered=None if raw["answered"] is None else float(raw["answered"]),
                            node=raw["node"], status=raw["status"]))
    return sorted(probes, key=lambda p: p.seq)


def client_outage(probes: Iterable[Probe], fault_at: float, *,
                  answered_by: str | None = None) -> Outage:
    """The outage a client saw around a fault injected at ``fault_at`` (monotonic seconds).

    Starts at the last answer received at or before ``fault_at``; ends at the answer to the first
    probe sent after ``fault_at`` that was answered (by ``answered_by`` if given: the node expected
    to take over). ``lost`` counts the unanswered probes in between. ValueError when the record
    has no answer before or none after.
    """
    ordered = sorted(probes, key=lambda p: p.seq)
    before = [p for p in ordered if p.answered is not None and p.answered <= fault_at]
    if not before:
        raise InvalidValue("no probe was answered before the fault")
    last_before = max(before, key=lambda p: p.answered or 0.0)
    first_after = next(
        (p for p in ordered if p.sent >= fault_at and p.answered is not None
         and (answered_by is None or p.node == answered_by)),
        None,
    )
    if first_after is None:
        who = f" by {answered_by}" if answered_by else ""
        raise InvalidValue(f"no probe sent after the fault was answered{who}")
    lost = sum(1 for p in ordered
               if last_before.seq < p.seq < first_after.seq and p.answered is None)
    return Outage(last_before=last_before, first_after=first_after, lost=lost)

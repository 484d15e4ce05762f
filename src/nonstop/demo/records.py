"""Reading what the demo's programs wrote: daemon logs and ``ip -ts monitor`` output (pure).

Both carry wall-clock times; the demo measures with ``time.monotonic()``. ``offset`` is
``time.time() - time.monotonic()`` sampled once by the caller, so ``wall - offset`` is the
monotonic instant of a line (to within the clock's slew during a demo, far below a millisecond).
"""

from __future__ import annotations

import calendar
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from nonstop.lab.outage import Probe

# nonstop[1234]: 2026/11/25_02:34:36.476 info: Link vpbx1-2:eth0 up.
_DAEMON_LINE = re.compile(
    r"^nonstop\[\d+\]: (?P<date>\d{4}/\d\d/\d\d_\d\d:\d\d:\d\d)\.(?P<ms>\d{3}) "
    r"(?P<level>\w+): (?P<message>.*)$")
# [2026-11-25T02:34:36.539713] 2: eth0    inet 198.18.0.10/24 ... / [..] Deleted 2: eth0 inet ..
_ADDR_LINE = re.compile(
    r"^\[(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\] (?P<deleted>Deleted )?"
    r"\d+: \S+\s+inet (?P<ip>[\d.]+)/\d+")


@dataclass(frozen=True)
class LogLine:
    """One daemon log line: ``at`` in monotonic seconds."""

    at: float
    level: str
    message: str


@dataclass(frozen=True)
class AddressChange:
    """The kernel added (or deleted) an IPv4 address: ``at`` in monotonic seconds."""

    at: float
    ip: str
    added: bool


def parse_daemon_log(text: str, offset: float, *, utc: bool = False) -> list[LogLine]:
    """The daemon's log lines (local time, as it writes them; ``utc`` for tests); lines of
    other shapes (warnings on stderr, tracebacks) are skipped."""
    out: list[LogLine] = []
    for line in text.splitlines():
        m = _DAEMON_LINE.match(line)
        if m is None:
            continue
        st = time.strptime(m.group("date"), "%Y/%m/%d_%H:%M:%S")
        wall = (calendar.timegm(st) if utc else time.mktime(st)) + int(m.group("ms")) / 1000
        out.append(LogLine(wall - offset, m.group("level"), m.group("message")))
    return out


def parse_addr_log(text: str, offset: float, *, utc: bool = False) -> list[AddressChange]:
    """Address additions and deletions in ``ip -ts monitor address`` output."""
    out: list[AddressChange] = []
    for line in text.splitlines():
        m = _ADDR_LINE.match(line)
        if m is None:
            continue
        whole, _, frac = m.group("stamp").partition(".")
        st = time.strptime(whole, "%Y-%m-%dT%H:%M:%S")
        wall = (calendar.timegm(st) if utc else time.mktime(st)) + float("0." + frac)
        out.append(AddressChange(wall - offset, m.group("ip"), m.group("deleted") is None))
    return out


class ProbeTail:
    """The SIP prober's record, read incrementally: each :meth:`poll` parses only the complete
    lines written since the last one (the live panel polls many times a second)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.probes: list[Probe] = []

    def poll(self) -> list[Probe]:
        """Every probe recorded so far, in the order the prober wrote them."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return self.probes
        end = data.rfind(b"\n")
        if end < 0:
            return self.probes  # only a line still being written
        self._offset += end + 1
        for line in data[:end].splitlines():
            try:
                raw = json.loads(line)
                answered = raw["answered"]
                self.probes.append(Probe(seq=int(raw["seq"]), sent=float(raw["sent"]),
                                         answered=None if answered is None else float(answered),
                                         node=raw["node"], status=raw["status"]))
            except (ValueError, KeyError, TypeError):
                continue  # not a prober line
        return self.probes

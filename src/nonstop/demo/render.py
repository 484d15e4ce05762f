"""The demo's screen: a live panel of the cluster plus lines that scroll above it.

On a terminal the panel is redrawn in place a few times a second (ANSI cursor movement only, no
curses); in a pipe or a log file nothing is redrawn: the panel is printed as plain text at the
moments the demo asks for a snapshot, so the output reads well in CI logs too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class NodeView:
    """What the panel shows of one node."""

    name: str
    powered: bool
    cable: bool
    daemon: str | None  # the daemon's own status ("active"), None when it does not answer
    peer: str | None  # how this node sees the other one ("active", "dead" ...)
    peer_heard_ms: int | None
    group_state: str | None  # "held", "standby" ...
    holder: str | None
    has_vip: bool
    master_flag: bool
    replication: str


@dataclass(frozen=True)
class ClientView:
    """What the SIP client has seen so far."""

    vip: str
    sent: int
    answered: int
    last_node: str | None
    last_ago_s: float | None


def _cell(value: str | None) -> str:
    return "-" if value is None else value


def node_line(v: NodeView) -> str:
    """One node of the panel."""
    if not v.powered:
        return f"  {v.name:<8} POWERED OFF"
    daemon = _cell(v.daemon)
    heard = "" if v.peer_heard_ms is None else f" ({v.peer_heard_ms} ms ago)"
    peer = f"{_cell(v.peer)}{heard}"
    vip = "VIP " if v.has_vip else "    "
    role = _cell(v.group_state)
    cable = "" if v.cable else "  CABLE OUT"
    flag = "yes" if v.master_flag else "no"
    return (f"  {v.name:<8} {daemon:<8} peer {peer:<22} {vip}{role:<9} .HB-master {flag:<3}"
            f" {v.replication}{cable}")


def client_line(c: ClientView) -> str:
    """The SIP client's line of the panel."""
    if c.last_node is None or c.last_ago_s is None:
        last = "no answer yet"
    else:
        last = f"last 200 OK from {c.last_node} {c.last_ago_s * 1000:.0f} ms ago"
    return (f"  client   OPTIONS to {c.vip} every 20 ms: {c.answered}/{c.sent} answered, {last}")


def panel(nodes: Sequence[NodeView], client: ClientView, clock: float) -> list[str]:
    """The whole panel; ``clock`` is seconds since the demo started."""
    holders = {v.holder for v in nodes if v.powered and v.holder}
    holder = ", ".join(sorted(holders)) if holders else "nobody"
    return [f"  [{clock:6.1f} s] cluster vpbx1: group held by {holder}",
            *(node_line(v) for v in nodes), client_line(client)]


class Screen:
    """Writes the demo's output; ``live`` redraws the panel in place (a terminal)."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self.out = out
        self.live = live
        self._drawn = 0  # panel lines currently on the terminal below the scrolled text
        self._last_panel: list[str] = []

    def _erase(self) -> None:
        if self.live and self._drawn:
            # Up to the panel's first line, then clear to the end of the screen.
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def say(self, *lines: str) -> None:
        """Lines that stay: printed above the live panel."""
        self._erase()
        for line in lines:
            self.out.write(line + "\n")
        if self.live and self._last_panel:
            self._draw(self._last_panel)
        self.out.flush()

    def _draw(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.out.write(line + "\n")
        self._drawn = len(lines)

    def update(self, lines: Sequence[str]) -> None:
        """The live panel's current content (shown at once on a terminal, else kept)."""
        self._last_panel = list(lines)
        if self.live:
            self._erase()
            self._draw(lines)
            self.out.flush()

    def snapshot(self) -> None:
        """Print the panel as it is now so that it stays (in a pipe: the only way it shows)."""
        if not self._last_panel:
            return
        lines = self._last_panel
        self._erase()
        for line in lines:
            self.out.write(line + "\n")
        self._last_panel = list(lines)
        if self.live:
            self._draw(lines)
        self.out.flush()

    def finish(self) -> None:
        """Leave the panel where it is (a terminal keeps it; a pipe needs nothing)."""
        self._drawn = 0
        self._last_panel = []
        self.out.flush()

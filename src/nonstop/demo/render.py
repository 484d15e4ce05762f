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
    interval_s: float = 0.02  # how often it sends an OPTIONS


def _cell(value: str | None) -> str:
    return "-" if value is None else value


NODE_HEADER = (f"  {'node':<8} {'daemon':<7} {'hears its peer':<19} {'holds':<14} "
               f"{'.HB-master':<10} replication")


def node_line(v: NodeView) -> str:
    """One node of the panel (under :data:`NODE_HEADER`)."""
    if not v.powered:
        return f"  {v.name:<8} POWERED OFF"
    heard = "" if v.peer_heard_ms is None else f", {v.peer_heard_ms} ms ago"
    peer = f"{_cell(v.peer)}{heard}"
    state = None if v.group_state in (None, "none") else v.group_state
    held = " ".join(x for x in ("VIP" if v.has_vip else None, state) if x) or "-"
    flag = "yes" if v.master_flag else "no"
    cable = "   CABLE OUT" if not v.cable else ""
    return (f"  {v.name:<8} {_cell(v.daemon):<7} {peer:<19} {held:<14} {flag:<10} "
            f"{v.replication}{cable}")


def client_line(c: ClientView) -> str:
    """The SIP client's line of the panel."""
    if c.last_node is None or c.last_ago_s is None:
        last = "no answer yet"
    else:
        last = f"last 200 OK from {c.last_node} {c.last_ago_s * 1000:.0f} ms ago"
    every = f"{c.interval_s * 1000:.0f} ms"
    return f"  client   OPTIONS to {c.vip} every {every}: {last} ({c.answered}/{c.sent})"


def panel(nodes: Sequence[NodeView], client: ClientView, clock: float) -> list[str]:
    """The whole panel; ``clock`` is seconds since the demo started."""
    holders = {v.holder for v in nodes if v.powered and v.holder}
    holder = ", ".join(sorted(holders)) if holders else "nobody"
    return [f"  [{clock:6.1f} s] the group is held by {holder}", NODE_HEADER,
            *(node_line(v) for v in nodes), client_line(client)]


class Screen:
    """Writes the demo's output; ``live`` redraws the panel in place (a terminal)."""

    def __init__(self, out: TextIO, *, live: bool, width: int = 0) -> None:
        self.out = out
        self.live = live
        # A wrapped line would take two rows and break the redraw: clip to the terminal.
        self.width = width
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
            self.out.write((line[:self.width - 1] if self.width > 1 else line) + "\n")
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
        """The live panel goes (its last state was kept by :meth:`snapshot`)."""
        self._erase()
        self._last_panel = []
        self.out.flush()

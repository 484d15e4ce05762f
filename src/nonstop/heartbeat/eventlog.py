"""What each heartbeat event says in the log, in Heartbeat's words where it has them (pure).

``describe`` returns the level, the format and its arguments, so the caller logs lazily and a
test can assert on the line without a logger. Bad packets are not here: their lines are
throttled per source by the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nonstop.heartbeat.events import (
    ClusterMessage,
    CommUp,
    GapFilled,
    LateHeartbeat,
    LinkChanged,
    NodeDied,
    NodeReturned,
    Output,
    RexmitGaveUp,
    RexmitWanted,
    SendFailed,
    SilenceWarning,
    StatusChanged,
)

LogLine = tuple[int, str, tuple[object, ...]]


def _node_died(ev: NodeDied, _warntime_ms: int) -> LogLine:
    if ev.reason == "shutdown":
        return logging.INFO, "Received shutdown notice from '%s'.", (ev.node,)
    return logging.WARNING, "node %s: is dead", (ev.node,)


def _status_changed(ev: StatusChanged, _warntime_ms: int) -> LogLine:
    if ev.local:
        return logging.INFO, "Local status now set to: '%s'", (ev.new.value,)
    return logging.INFO, "Status update for node %s: status %s", (ev.node, ev.new.value)


def _node_returned(ev: NodeReturned, _warntime_ms: int) -> LogLine:
    if ev.kind == "partition":
        return logging.CRITICAL, "Cluster node %s returning after partition.", (ev.node,)
    return logging.INFO, "Heartbeat restart on node %s", (ev.node,)


def _rexmit_wanted(ev: RexmitWanted, _warntime_ms: int) -> LogLine:
    return (logging.WARNING, "%d lost packet(s) for [%s] [%d:%d]",
            (ev.last - ev.first + 1, ev.node, ev.first - 1, ev.last + 1))


_LINES: dict[type, Callable[[Any, int], LogLine]] = {
    NodeDied: _node_died,
    StatusChanged: _status_changed,
    NodeReturned: _node_returned,
    RexmitWanted: _rexmit_wanted,
    LinkChanged: lambda ev, _w: (
        logging.INFO, "Link %s:%s %s.", (ev.node, ev.link, "up" if ev.up else "dead")),
    LateHeartbeat: lambda ev, _w: (
        logging.WARNING, "Late heartbeat: Node %s: interval %d ms", (ev.node, ev.interval_ms)),
    SilenceWarning: lambda ev, warntime_ms: (
        logging.WARNING, "No heartbeat from node %s for %d ms (warntime %d ms)",
        (ev.node, ev.silence_ms, warntime_ms)),
    CommUp: lambda ev, _w: (logging.INFO, "Comm_now_up(): updating status to active", ()),
    GapFilled: lambda ev, _w: (logging.INFO, "No pkts missing from %s!", (ev.node,)),
    RexmitGaveUp: lambda ev, _w: (
        logging.WARNING, "Irretrievably lost packet(s) %s from %s", (list(ev.seqs), ev.node)),
    ClusterMessage: lambda ev, _w: (
        logging.DEBUG, "cluster message %s from %s", (ev.msg.get("t"), ev.node)),
    SendFailed: lambda ev, _w: (
        logging.ERROR, "cannot send %s message: %s", (ev.mtype, ev.error)),
}


def describe(ev: Output, warntime_ms: int) -> LogLine | None:
    """The log line for ``ev``, or None if it says nothing (datagrams, bad packets...)."""
    line = _LINES.get(type(ev))
    return line(ev, warntime_ms) if line is not None else None

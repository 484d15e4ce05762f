"""The log lines of heartbeat events: Heartbeat's own words, which operators and tests grep."""

from __future__ import annotations

import logging

import pytest

from nonstop.heartbeat.eventlog import describe
from nonstop.heartbeat.events import (
    CommUp,
    Dropped,
    GapFilled,
    LateHeartbeat,
    LinkChanged,
    NodeDied,
    NodeReturned,
    Output,
    OwnStatusHeard,
    PeerAdChanged,
    RexmitGaveUp,
    RexmitWanted,
    SendFailed,
    SilenceWarning,
    StatusChanged,
    Transmit,
)
from nonstop.heartbeat.states import NodeStatus

S = NodeStatus
LINES: list[tuple[Output, int, str]] = [
    (NodeDied("n2", "timeout", 2010, 2000), logging.WARNING, "node n2: is dead"),
    (NodeDied("n2", "shutdown", 10, 2000), logging.INFO, "Received shutdown notice from 'n2'."),
    (StatusChanged("n1", S.UP, S.ACTIVE, local=True), logging.INFO,
     "Local status now set to: 'active'"),
    (StatusChanged("n2", S.INIT, S.UP), logging.INFO, "Status update for node n2: status up"),
    (LinkChanged("n2", "eth0", False), logging.INFO, "Link n2:eth0 dead."),
    (LateHeartbeat("n2", 1200), logging.WARNING, "Late heartbeat: Node n2: interval 1200 ms"),
    (SilenceWarning("n2", 1000), logging.WARNING,
     "No heartbeat from node n2 for 1000 ms (warntime 1000 ms)"),
    (CommUp(), logging.INFO, "Comm_now_up(): updating status to active"),
    (NodeReturned("n2", "partition"), logging.CRITICAL,
     "Cluster node n2 returning after partition."),
    (NodeReturned("n2", "restart"), logging.INFO, "Heartbeat restart on node n2"),
    (RexmitWanted("n2", 2, 4), logging.WARNING, "3 lost packet(s) for [n2] [1:5]"),
    (GapFilled("n2"), logging.INFO, "No pkts missing from n2!"),
    (RexmitGaveUp("n2", (2, 3)), logging.WARNING, "Irretrievably lost packet(s) [2, 3] from n2"),
    (SendFailed("status", "too big"), logging.ERROR, "cannot send status message: too big"),
]


@pytest.mark.parametrize(("event", "level", "text"), LINES, ids=lambda v: type(v).__name__)
def test_each_event_says_its_line(event: Output, level: int, text: str) -> None:
    line = describe(event, 1000)
    assert line is not None
    assert (line[0], line[1] % line[2]) == (level, text)


@pytest.mark.parametrize("event", [Transmit(b"x", "status"), OwnStatusHeard("eth0"),
                                   PeerAdChanged("n2"), Dropped("auth", "198.18.0.9")])
def test_plumbing_and_bad_packets_say_nothing_here(event: Output) -> None:
    assert describe(event, 1000) is None  # bad packets: throttled per source by the daemon

"""Retransmit requests are served within Heartbeat's limits and counted (issue 9, point 5)."""

from __future__ import annotations

from pathlib import Path

from daemon_harness import RecordingMedia, talk_daemon

from nonstop.heartbeat.membership import RexmitRequested, Send
from nonstop.heartbeat.rexmit import MAX_PER_REQUEST, MIN_RESEND_S, RexmitLimiter


def test_each_packet_at_most_once_per_240_ms() -> None:
    lim = RexmitLimiter()
    assert lim.allow(5, 0.0)
    assert not lim.allow(5, 0.1)
    assert lim.allow(6, 0.1)
    assert lim.allow(5, MIN_RESEND_S)
    assert lim.counters == {"requests": 0, "resent": 3, "nak": 0, "suppressed": 1}


def test_a_request_covers_at_most_50_packets() -> None:
    lim = RexmitLimiter()
    assert lim.plan(10, 10_000, 0.0) == range(10, 10 + MAX_PER_REQUEST)
    assert lim.plan(7, 3, 0.0) == range(0)
    assert lim.counters["requests"] == 2


def test_many_different_requests_share_one_budget() -> None:
    lim = RexmitLimiter(rate=100.0, burst=200)
    sent = sum(lim.allow(seq, 0.0) for seq in range(1000))
    assert sent == 200
    # one second later, 100 more
    assert sum(lim.allow(seq, 1.0) for seq in range(1000, 2000)) == 100


async def test_two_thousand_replayed_requests_resend_each_packet_once(tmp_path: Path) -> None:
    """The issue's probe: 2,000 copies of one captured request (within a few ms here)."""
    daemon, _ = talk_daemon(tmp_path)
    media = daemon.media
    assert isinstance(media, RecordingMedia) and daemon.identity is not None
    for _ in range(10):
        daemon._send(Send((("t", "status"), ("st", "active"))))
    media.sent.clear()
    for _ in range(2000):
        daemon._rexmit(RexmitRequested("vpbx1-2", 1, 10))
    assert len(media.sent) == 10
    assert daemon.rexmit.counters["requests"] == 2000
    assert daemon.rexmit.counters["resent"] == 10
    assert daemon.rexmit.counters["suppressed"] == 2000 * 10 - 10
    assert daemon.status()["packets"]["rexmit"]["requests"] == 2000

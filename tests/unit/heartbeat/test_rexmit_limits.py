"""Retransmit requests are served within Heartbeat's limits and counted (issue 9, point 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_harness import RecordingMedia, talk_daemon

from nonstop.heartbeat.codec import Message, encode
from nonstop.heartbeat.envelope import Identity, stamp
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


async def test_the_daemon_serves_requests_from_the_wire_and_reports_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9's probe through the daemon: 2,000 copies of one captured request, as datagrams
    within a few ms; each packet goes out again once, and ``nonstop status`` counts it all."""
    daemon, cfg = talk_daemon(tmp_path)
    assert daemon.loop is not None
    now = daemon.loop.time()
    monkeypatch.setattr(daemon, "_now", lambda: now)  # a slow machine takes longer
    media = daemon.media
    assert isinstance(media, RecordingMedia) and daemon.protocol is not None
    for _ in range(10):
        daemon._send_status()
    ours = list(media.sent)
    media.sent.clear()
    request = Message.of(stamp(
        (("t", "NS_rexmit"), ("dest", "vpbx1-1"), ("firstseq", "1"), ("lastseq", "10")),
        Identity("vpbx1-2", b"\x02" * 16, 7), seq=None, wall_time=0x6B062E8E, loadavg="",
    ))
    datagram = encode(request, cfg.authkeys.signing_key)
    for _ in range(2000):
        daemon._on_datagram(datagram, "eth0", ("198.18.0.2", 694))
    assert [d for d in media.sent if d in ours] == ours  # each once, as it was sent
    packets = daemon.status()["packets"]
    assert packets["received"] == 2000
    assert packets["rexmit"] == {"requests": 2000, "resent": 10, "nak": 0,
                                 "suppressed": 2000 * 10 - 10}

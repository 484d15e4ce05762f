"""The daemon's once-a-second work (the periodic decision, the peers' sequence numbers kept for
replay protection, guard timers, log summaries) runs on every node, also on one whose keepalive
timer never fires because it answers its peer's status in the same turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from daemon_harness import RecordingMedia, talk_daemon

from nonstop.heartbeat import replaystate
from nonstop.heartbeat.envelope import Identity
from nonstop.heartbeat.events import Transmit
from nonstop.heartbeat.protocol import HeartbeatProtocol

PEER_ADDRESS = ("198.18.0.2", 694)


async def test_a_node_that_answers_in_the_same_turn_still_does_its_once_a_second_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon, cfg = talk_daemon(tmp_path)
    assert daemon.loop is not None
    media = daemon.media
    assert isinstance(media, RecordingMedia)
    clock = [daemon.loop.time()]
    monkeypatch.setattr(daemon, "_now", lambda: clock[0])
    decided: list[float] = []
    monkeypatch.setattr(daemon, "_schedule_reconsider", lambda: decided.append(clock[0]))
    peer = HeartbeatProtocol(cfg.ha, Identity("vpbx1-2", b"\x02" * 16, 9), cfg.authkeys,
                             clock[0], wall_clock=lambda: 0x6B062E8E,
                             loadavg=lambda now: "0.00 0.00 0.00 1/100 1")
    start = clock[0]
    answered = 0
    # vpbx1-2 leads: its status every keepalive (200 ms), for 3 s; vpbx1-1 hears each one and
    # answers in the same call. Nothing else runs vpbx1-1: its own timer is never reached.
    while clock[0] < start + 3.0:
        outs = peer.tick(clock[0])
        while outs:
            for out in outs:
                if isinstance(out, Transmit):
                    before = len(media.sent)
                    daemon._on_datagram(out.payload, "eth0", PEER_ADDRESS)
                    answered += len(media.sent) > before
            outs = [o for data in media.sent
                    for o in peer.receive(data, "eth0", clock[0], source="198.18.0.1")]
            media.sent.clear()
        clock[0] += 0.2
    assert answered >= 10  # it did answer each status in the same turn (the follower)
    # Past the first second (whose decisions the peer's arrival asked for), the decision was
    # made again about once a second, not never.
    assert 2 <= len([t for t in decided if t >= start + 1.0]) <= 3, decided
    await asyncio.sleep(0.2)  # the peers' state is written by a worker thread
    saved = replaystate.load(daemon.state_dir)
    assert saved.get("vpbx1-2", (None, None))[0] == 9


async def test_an_error_while_handling_a_datagram_still_rearms_the_timer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # vpbx1-1 follows its peer: each status it hears is answered at once, which moves its
    # next keepalive. If what follows fails (a bug), the timer must still follow the core's
    # new deadline, and the error is logged as the timer's own are.
    daemon, cfg = talk_daemon(tmp_path)
    assert daemon.loop is not None and daemon.protocol is not None
    media = daemon.media
    assert isinstance(media, RecordingMedia)
    clock = [daemon.loop.time()]
    monkeypatch.setattr(daemon, "_now", lambda: clock[0])
    monkeypatch.setattr(daemon, "_schedule_reconsider", lambda: None)
    peer = HeartbeatProtocol(cfg.ha, Identity("vpbx1-2", b"\x02" * 16, 9), cfg.authkeys,
                             clock[0], wall_clock=lambda: 0x6B062E8E,
                             loadavg=lambda now: "0.00 0.00 0.00 1/100 1")

    def status() -> bytes:
        clock[0] += 0.2
        return next(o.payload for o in peer.tick(clock[0]) if isinstance(o, Transmit))

    for _ in range(5):
        daemon._on_datagram(status(), "eth0", PEER_ADDRESS)
    assert media.sent and daemon._timer is not None  # it answers: it follows
    before = daemon._timer.when()

    def broken(out: object, now: float) -> None:
        raise RuntimeError("a bug in the handling")

    monkeypatch.setattr(daemon, "_handle", broken)
    daemon._on_datagram(status(), "eth0", PEER_ADDRESS)
    assert daemon.protocol.next_wakeup() > before  # the answer moved our next keepalive
    assert daemon._timer is not None and daemon._timer.when() == daemon.protocol.next_wakeup()
    assert "error handling a datagram" in caplog.text
    daemon._timer.cancel()

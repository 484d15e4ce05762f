"""The prober with a real ICMP socket on loopback (the only address unit tests may ping)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nonstop.ping import PingChanged, PingEvent, PingStatus, PingTarget, PingTracker
from nonstop.ping.prober import PingProber, open_icmp_socket


def _can_ping() -> bool:
    try:
        sock, _raw = open_icmp_socket()
    except OSError:
        return False
    sock.close()
    return True


pytestmark = pytest.mark.skipif(not _can_ping(), reason="no ICMP socket allowed here")


async def test_loopback_answers_and_is_logged_like_heartbeat(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    tracker = PingTracker([PingTarget.node("127.0.0.1")], deadping_ms=2000, now=loop.time())
    events: list[PingEvent] = []
    prober = PingProber(tracker, interval_s=0.1, logger=logging.getLogger("test.ping"),
                        on_event=events.append, clock=loop.time)
    caplog.set_level(logging.INFO, logger="test.ping")
    task = asyncio.create_task(prober.run())
    try:
        for _ in range(100):
            if events:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [(e.target, e.new) for e in events if isinstance(e, PingChanged)] == [
        ("127.0.0.1", PingStatus.PING)]
    assert len(events) == 1
    assert "Link 127.0.0.1:127.0.0.1 up." in caplog.messages
    assert prober.replies >= 1 and prober.sent >= 1


async def test_answers_keep_a_group_up_past_deadping_and_silence_kills_it() -> None:
    loop = asyncio.get_running_loop()
    group = PingTarget.ping_group("g", ["127.0.0.1"])
    tracker = PingTracker([group], deadping_ms=300, now=loop.time())
    prober = PingProber(tracker, interval_s=0.05, logger=logging.getLogger("test.ping"),
                        clock=loop.time)
    task = asyncio.create_task(prober.run())
    try:
        await asyncio.sleep(0.8)
        assert prober.view().targets[0].status is PingStatus.PING
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Stopped: nothing answers any more, so the next ticks declare it dead.
    (event,) = tracker.tick(loop.time() + 1.0)
    assert event.new is PingStatus.DEAD


def test_bad_interval_is_refused() -> None:
    tracker = PingTracker([PingTarget.node("127.0.0.1")], deadping_ms=1000, now=0.0)
    with pytest.raises(ValueError):
        PingProber(tracker, interval_s=0, logger=logging.getLogger("x"))

"""Bad packets are logged once per burst, and spoofed sources cannot grow the table."""

from __future__ import annotations

from nonstop.heartbeat.burst import BurstLimiter


def test_first_of_a_burst_is_logged_then_quiet_then_the_count() -> None:
    b = BurstLimiter(quiet=10.0)
    assert b.should_log("auth", "198.18.0.9", 0.0) == (True, 0)
    assert b.should_log("auth", "198.18.0.9", 1.0) == (False, 0)
    assert b.should_log("auth", "198.18.0.9", 5.0) == (False, 0)
    assert b.should_log("auth", "198.18.0.9", 16.0) == (True, 2)
    assert b.should_log("framing", "198.18.0.9", 16.0) == (True, 0)


def test_many_spoofed_sources_stay_bounded() -> None:
    b = BurstLimiter(quiet=10.0, max_sources=64)
    for i in range(10_000):
        b.should_log("auth", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", i * 0.001)
    assert len(b._bursts) <= 64

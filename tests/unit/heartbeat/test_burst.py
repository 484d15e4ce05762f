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


def test_a_burst_that_ends_gets_a_summary_line_with_count_source_and_reason() -> None:
    b = BurstLimiter(quiet=10.0)
    assert b.should_log("auth", "198.18.0.9", 0.0) == (True, 0)
    for i in range(1, 300):
        assert b.should_log("auth", "198.18.0.9", i * 0.01) == (False, 0)
    assert b.should_log("framing", "198.18.0.7", 1.0) == (True, 0)  # a new kind: said at once
    assert b.ended(5.0) is None  # still going
    line = b.ended(13.0)
    assert line == ("bad packets: 1 burst(s) ended (the first packet of each was logged): "
                    "auth from 198.18.0.9: 300 in 3.0 s")  # a lone packet needs no summary
    assert b.ended(30.0) is None  # said once
    assert b.should_log("auth", "198.18.0.9", 31.0) == (True, 0)  # a new burst


def test_summaries_stay_one_bounded_line_and_count_forgotten_bursts() -> None:
    b = BurstLimiter(quiet=10.0, max_sources=16)
    for i in range(40):  # 40 sources, 3 packets each; the table holds 16
        for t in (0.0, 0.1, 0.2):
            b.should_log("auth", f"198.18.1.{i}", t)
    line = b.ended(20.0)
    assert line is not None and "\n" not in line
    assert line.startswith("bad packets: 40 burst(s) ended")
    assert line.count(" from 198.18.1.") == 10
    assert line.endswith("and 30 more burst(s) of 90 packets")

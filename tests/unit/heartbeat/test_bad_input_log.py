"""Logs an attacker cannot flood or forge (issue 9, point 4): one budget, escaped strings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from daemon_harness import talk_daemon
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.logs import BAD_INPUT, BadInputBudget, escape


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary()), st.integers(3, 200))
def test_an_escaped_value_is_one_printable_line_within_the_limit(value: str | bytes,
                                                                  limit: int) -> None:
    out = escape(value, limit)
    assert len(out) <= limit
    assert out.isascii() and out.isprintable()  # no newline, no escape character


def test_escape_keeps_plain_names_as_they_are() -> None:
    assert escape("vpbx1-2") == "vpbx1-2"
    assert escape("a\nWARN: x") == "a\\nWARN: x"


def test_the_budget_is_global_whatever_the_sources() -> None:
    b = BadInputBudget(rate=1.0, burst=20, period=60.0, max_keys=4)
    said = sum(b.admit("auth", f"198.18.{i // 250}.{i % 250}", 0.0) for i in range(20_000))
    assert said == 20
    assert sum(b.admit("auth", "x", 10.0) for _ in range(100)) == 10  # refilled 1/s
    assert b.total_suppressed == 20_000 - 20 + 90
    assert len(b.suppressed) <= 4 + 1  # bounded: the rest under "other"
    assert b.summary(30.0) is None  # once a minute
    line = b.summary(60.0)
    assert line is not None and "20070 more line(s)" in line and "auth from other" in line
    assert b.summary(61.0) is None and b.suppressed == {}


async def test_random_bytes_from_20000_spoofed_sources_write_a_few_lines(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The issue's probe: 19,860 lines for 20,000 packets from spoofed sources."""
    daemon, _ = talk_daemon(tmp_path)
    caplog.set_level(logging.WARNING, logger="nonstop")
    for i in range(20_000):
        daemon._on_datagram(b"\x8f junk %d\n" % i, "eth0", (f"198.18.{i // 200}.{i % 200}", 694))
    lines = [r for r in caplog.records if "dropped packet" in r.getMessage()]
    assert len(lines) <= BAD_INPUT.burst + 5
    assert daemon.protocol is not None
    assert daemon.protocol.view(0.0).counters["bad_framing"] == 20_000  # every one counted


async def test_a_forged_line_in_a_bad_packet_stays_on_its_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    daemon, _ = talk_daemon(tmp_path)
    caplog.set_level(logging.WARNING, logger="nonstop")
    daemon._on_datagram(b"GET /\nnonstop[1]: WARN: node vpbx1-1: is dead\x1b[2J", "eth0",
                        ("198.18.0.100", 694))
    (record,) = [r for r in caplog.records if "dropped packet" in r.getMessage()]
    assert "\n" not in record.getMessage() and "\x1b" not in record.getMessage()

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
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's probe: 19,860 lines for 20,000 packets from spoofed sources."""
    daemon, _ = talk_daemon(tmp_path)
    # One instant for the whole flood: the budget refills a line a second, and on a busy
    # machine the 20,000 packets took long enough to earn six more lines (a failed run).
    now = daemon._now()
    monkeypatch.setattr(daemon, "_now", lambda: now)
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


async def test_a_forged_status_with_a_configured_name_is_always_said(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """log_badpack off, a burst from one source: one ERROR line at once, one summary at the end."""
    import dataclasses

    from nonstop.config.model import AuthKey, AuthMethod
    from nonstop.heartbeat.codec import encode
    from nonstop.heartbeat.message import Message

    daemon, cfg = talk_daemon(tmp_path)
    daemon.cfg = dataclasses.replace(cfg, ha=dataclasses.replace(cfg.ha, log_badpack=False))
    caplog.set_level(logging.WARNING, logger="nonstop")
    wrong = AuthKey(1, AuthMethod.SHA1, b"a rogue's key")
    forged = encode(Message([("t", "status"), ("st", "active"), ("src", "vpbx1-2"),
                             ("seq", "1")]), wrong)
    noise = encode(Message([("t", "status"), ("st", "active"), ("src", "rogue"),
                            ("seq", "1")]), wrong)
    for _ in range(50):
        daemon._on_datagram(forged, "eth0", ("198.18.0.66", 694))
        daemon._on_datagram(noise, "eth0", ("198.18.0.67", 694))
    said = [r for r in caplog.records if "claims to be node" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.ERROR
    assert said[0].getMessage().startswith(
        "a status message from 198.18.0.66 claims to be node vpbx1-2 but fails authentication")
    assert not [r for r in caplog.records if "dropped packet" in r.getMessage()]  # log_badpack off
    daemon._log_summaries(daemon._now() + 11)
    (summary,) = [r.getMessage() for r in caplog.records if "burst(s) ended" in r.getMessage()]
    assert "vpbx1-2 from 198.18.0.66: 50 in" in summary

"""MailTo: rendering (pure) and delivery through a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from nonstop.config.model import ResourceSpec
from nonstop.resources.base import AgentContext, ResourceError, ResourceState
from nonstop.resources.mailto import (
    RETRY_BACKOFF_S,
    MailToAgent,
    effective_subject,
    format_date,
    parse_recipients,
    render_body,
    render_subject,
)

WHEN = datetime.datetime(2026, 11, 5, 2, 3, 4, tzinfo=datetime.UTC)


def test_subjects_follow_heartbeat() -> None:
    assert render_subject("start", "Asterisk", "vpbx1-1", WHEN) == (
        "Asterisk Takeover in progress at Thu Nov  5 02:03:04 UTC 2026 on vpbx1-1"
    )
    assert render_subject("stop", "Asterisk", "vpbx1-2", WHEN) == (
        "Asterisk Migrating resource away at Thu Nov  5 02:03:04 UTC 2026 from vpbx1-2"
    )
    with pytest.raises(ValueError):
        render_subject("status", "Asterisk", "n", WHEN)


@pytest.mark.parametrize(
    ("given", "used"),
    [(None, "Resource Group"), ("", "Resource Group"), ("X", "Resource Group"), ("AB", "AB")],
)
def test_short_or_missing_subject(given: str | None, used: str) -> None:
    assert effective_subject(given) == used


def test_date_like_date_command() -> None:
    later = WHEN.replace(day=25)
    assert format_date(later) == "Wed Nov 25 02:03:04 UTC 2026"


def test_body_layout() -> None:
    body = render_body("S Takeover in progress at D on n1", "nonstop MailTo::a@b start")
    assert body == (
        "        S Takeover in progress at D on n1\n"
        " \n"
        "        Command line was:\n"
        "        nonstop MailTo::a@b start\n"
    )


def test_recipients() -> None:
    assert parse_recipients("a@x, b@y,,") == ("a@x", "b@y")


def _ctx(tmp_path: Path, port: int, **kw: Any) -> AgentContext:
    return AgentContext(
        node="vpbx1-1",
        config_dir=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        **kw,
    )


def _spec(text: str) -> ResourceSpec:
    name, *args = text.split("::")
    return ResourceSpec(name, tuple(args), text)


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match="At least 1 Email"):
        MailToAgent("MailTo", (), _ctx(tmp_path, 25))
    with pytest.raises(ResourceError, match=r"max\. 3"):
        MailToAgent("MailTo::a::b::c", ("a", "b", "c"), _ctx(tmp_path, 25))


class _Collect:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.arrived = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        self.loop.call_soon_threadsafe(self.arrived.set)
        return "250 OK"


def _free_port() -> int:
    # aiosmtpd's Controller cannot be given port 0 (it connects to its own port to check
    # that it started), so reserve a free port first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[_Collect, int]]:
    handler = _Collect()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


async def _wait_messages(handler: _Collect, n: int, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while len(handler.messages) < n:
        handler.arrived.clear()
        remaining = end - time.monotonic()
        assert remaining > 0, f"only {len(handler.messages)} of {n} mails arrived"
        await asyncio.wait_for(handler.arrived.wait(), remaining)


async def test_start_and_stop_mails_arrive(smtp: tuple[_Collect, int], tmp_path: Path) -> None:
    handler, port = smtp
    agent = MailToAgent(
        "MailTo::tech@webinmotion.ca,ops@example.net::Asterisk",
        ("tech@webinmotion.ca,ops@example.net", "Asterisk"),
        _ctx(tmp_path, port),
    )
    assert await agent.status() is ResourceState.STOPPED
    await agent.start()
    assert await agent.status() is ResourceState.RUNNING
    await _wait_messages(handler, 1)
    await agent.stop()
    assert await agent.status() is ResourceState.STOPPED
    await _wait_messages(handler, 2)
    (rcpt1, m1), (rcpt2, m2) = handler.messages
    assert rcpt1 == rcpt2 == ["tech@webinmotion.ca", "ops@example.net"]
    s1, s2 = str(m1["Subject"]), str(m2["Subject"])
    assert s1.startswith("Asterisk Takeover in progress at ") and s1.endswith(" on vpbx1-1")
    assert s2.startswith("Asterisk Migrating resource away at ")
    assert s2.endswith(" from vpbx1-1")
    body = m1.get_payload(decode=True)
    assert isinstance(body, bytes)
    command = "nonstop MailTo::tech@webinmotion.ca,ops@example.net::Asterisk start"
    # SMTP carries CRLF line ends; the text, indent and blank-ish line survive unchanged.
    assert body.decode().replace("\r\n", "\n") == render_body(s1, command)
    assert m1["From"] == "root@vpbx1-1"
    await asyncio.wait_for(agent.drain(), 20)  # the sending processes have exited too


async def test_state_file_per_entry(smtp: tuple[_Collect, int], tmp_path: Path) -> None:
    handler, port = smtp
    ctx = _ctx(tmp_path, port, state_dir=tmp_path / "rsctmp")
    a = MailToAgent("MailTo::a@x", ("a@x",), ctx)
    b = MailToAgent("MailTo::b@x", ("b@x",), ctx)
    await a.start()
    # A fresh agent for the same entry (daemon restart) reads the state back.
    assert await MailToAgent("MailTo::a@x", ("a@x",), ctx).status() is ResourceState.RUNNING
    assert await b.status() is ResourceState.STOPPED
    await a.stop()
    assert await a.status() is ResourceState.STOPPED
    await _wait_messages(handler, 2)
    assert str(handler.messages[0][1]["Subject"]).startswith("Resource Group Takeover")
    await asyncio.wait_for(a.drain(), 20)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A server that accepts TCP connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield int(srv.getsockname()[1])
    finally:
        srv.close()


@pytest.fixture
def refused_port() -> int:
    return _free_port()  # nothing listens there: connections are refused


async def test_silent_server_does_not_delay_start(
    silent_server: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _ctx(tmp_path, silent_server, smtp_timeout=0.3, smtp_attempts=2)
    agent = MailToAgent("MailTo::a@x", ("a@x",), ctx)
    t0 = time.monotonic()
    await agent.start()
    assert time.monotonic() - t0 < 0.05
    assert await agent.status() is ResourceState.RUNNING
    with caplog.at_level(logging.WARNING, logger="nonstop.resources"):
        results = await asyncio.wait_for(asyncio.gather(*agent.pending), 15)
    assert results == [False]
    assert "gave up sending" in caplog.text


async def test_refused_port_does_not_delay_or_fail(
    refused_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _ctx(tmp_path, refused_port, smtp_attempts=1)
    agent = MailToAgent("MailTo::a@x", ("a@x",), ctx)
    t0 = time.monotonic()
    await agent.start()
    await agent.stop()
    assert time.monotonic() - t0 < 0.05
    with caplog.at_level(logging.WARNING, logger="nonstop.resources"):
        results = await asyncio.wait_for(asyncio.gather(*agent.pending), 10)
    assert results == [False, False]
    assert "refused" in caplog.text.lower()


async def test_retry_delivers_when_server_comes_up(tmp_path: Path) -> None:
    # The mail server comes up on the port only after the first attempt was refused.
    port = _free_port()
    agent = MailToAgent("MailTo::a@x", ("a@x",), _ctx(tmp_path, port, smtp_attempts=3))
    await agent.start()
    (task,) = agent.pending
    await asyncio.sleep(0)  # let the first attempt begin
    handler = _Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert await asyncio.wait_for(task, 15) is True
        assert len(handler.messages) == 1
    finally:
        controller.stop()


async def test_deferred_mails_are_composed_after_the_event_with_its_date(
    smtp: tuple[_Collect, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``mail_defer_s`` (the daemon's setting) start and stop compose nothing: a hand-off
    continues at once; the mails come later, in order, dated when start and stop ran."""
    handler, port = smtp
    agent = MailToAgent("MailTo::tech@webinmotion.ca::Asterisk",
                        ("tech@webinmotion.ca", "Asterisk"), _ctx(tmp_path, port,
                                                                  mail_defer_s=0.3))
    composed: list[tuple[str, datetime.datetime]] = []
    spec = agent.mail_spec

    def spy(action: str, when: datetime.datetime) -> Any:
        composed.append((action, when))
        return spec(action, when)

    monkeypatch.setattr(agent, "mail_spec", spy)
    before = datetime.datetime.now().astimezone()
    await agent.start()
    await agent.stop()
    after = datetime.datetime.now().astimezone()
    assert composed == [] and len(agent.pending) == 2
    await _wait_messages(handler, 2)
    assert [a for a, _ in composed] == ["start", "stop"]
    assert all(before <= when <= after for _, when in composed)
    subjects = [str(m["Subject"]) for _, m in handler.messages]
    assert "Takeover in progress" in subjects[0] and "Migrating resource away" in subjects[1]
    await asyncio.wait_for(agent.drain(), 20)


async def test_drain_waits_for_the_deferred_mails(smtp: tuple[_Collect, int],
                                                  tmp_path: Path) -> None:
    """At the daemon's exit drain() returns once the deferred mails went out: the release
    notice of a shutdown is not lost with the event loop."""
    handler, port = smtp
    agent = MailToAgent("MailTo::a@x::S", ("a@x", "S"), _ctx(tmp_path, port, mail_defer_s=0.3))
    await agent.start()
    await agent.stop()
    await asyncio.wait_for(agent.drain(), 20)
    assert [("Takeover" in str(m["Subject"])) for _, m in handler.messages] == [True, False]
    assert agent.delivered == 2


async def test_drain_makes_one_attempt_per_mail(refused_port: int, tmp_path: Path) -> None:
    """A refused mail is not retried once draining: a dead mail server cannot hold up an
    exit by its retries' back-off (two attempts would wait 2 s between them)."""
    agent = MailToAgent("MailTo::a@x", ("a@x",), _ctx(tmp_path, refused_port, smtp_attempts=3,
                                                        mail_defer_s=0.1))
    await agent.start()
    t0 = time.monotonic()
    await asyncio.wait_for(agent.drain(), 20)
    assert time.monotonic() - t0 < RETRY_BACKOFF_S
    assert agent.given_up == 1 and agent.delivered == 0

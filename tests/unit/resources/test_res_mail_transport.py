"""How MailTo's mail leaves: ha.cf's relay, else the local MTA's sendmail, else localhost:25;
a refusing MTA is logged and retried, and never delays the takeover."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nonstop.config.hacf import check_hacf
from nonstop.config.model import Bcast, HaConfig
from nonstop.resources.base import AgentContext
from nonstop.resources.mailto import RETRY_BACKOFF_S, MailToAgent, find_sendmail, mail_transport
from nonstop.talk import copy_talk


def _ha(tmp_path: Path, line: str) -> HaConfig | list[str]:
    ha_cf = copy_talk(tmp_path) / "ha.d" / "ha.cf"
    ha_cf.write_text(ha_cf.read_text() + line + "\n")
    parsed = check_hacf(str(ha_cf))
    return parsed.value if parsed.value is not None else [e.message for e in parsed.errors]


def test_the_relay_directive(tmp_path: Path) -> None:
    ha = _ha(tmp_path / "a", "nonstop_mailrelay smtp.example.com:587")
    assert isinstance(ha, HaConfig) and ha.mail_relay == ("smtp.example.com", 587)
    ha = _ha(tmp_path / "b", "nonstop_mailrelay 10.0.0.25")
    assert isinstance(ha, HaConfig) and ha.mail_relay == ("10.0.0.25", 25)
    assert _ha(tmp_path / "c", "nonstop_mailrelay host:http") == [
        "'nonstop_mailrelay': write host[:port] (e.g. 'smtp.example.com:587'), not 'host:http'"]


def test_a_named_relay_wins_else_sendmail_else_localhost(tmp_path: Path) -> None:
    base = HaConfig(path="ha.cf", nodes=("a",), media=(Bcast("eth0"),))
    relay = HaConfig(path="ha.cf", nodes=("a",), media=(Bcast("eth0"),),
                     mail_relay=("relay.example", 2525))
    assert mail_transport(relay) == {"smtp_host": "relay.example", "smtp_port": 2525,
                                     "sendmail": None}
    assert mail_transport(base) == {"sendmail": find_sendmail()}
    program = tmp_path / "sendmail"
    assert find_sendmail((program,)) is None
    program.write_text("#!/bin/sh\nexit 0\n")
    assert find_sendmail((program,)) is None  # not executable
    program.chmod(0o755)
    assert find_sendmail((tmp_path / "absent", program)) == program


async def test_a_refusing_mta_is_logged_retried_and_never_blocks(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    program = tmp_path / "sendmail"  # an MTA whose queue is unusable: exit 75, EX_TEMPFAIL
    program.write_text("#!/bin/sh\ncat > /dev/null\necho 'queue: permission denied' >&2\n"
                       "exit 75\n")
    program.chmod(0o755)
    ctx = AgentContext(node="vpbx1-1", config_dir=tmp_path, sendmail=program, smtp_attempts=2,
                       logger=logging.getLogger("test.mailto"))
    agent = MailToAgent("MailTo::ops@example.com", ("ops@example.com",), ctx)
    with caplog.at_level(logging.INFO, logger="test.mailto"):
        began = time.monotonic()
        await agent.start()
        assert time.monotonic() - began < 0.5  # the takeover goes on at once
        await asyncio.wait_for(agent.drain(), 30)
    assert (agent.delivered, agent.given_up) == (0, 1)
    text = caplog.text
    assert f"attempt 1/2 through sendmail {program} failed: {program} exited with 75: " \
           "queue: permission denied" in text
    assert "MailTo: gave up sending" in text


async def test_the_mta_gets_the_message_and_the_envelope(tmp_path: Path) -> None:
    out = tmp_path / "handed"
    program = tmp_path / "sendmail"  # records what an MTA is given, as its queue would
    program.write_text(f'#!/bin/sh\necho "$@" > {out}.args\ncat > {out}\n')
    program.chmod(0o755)
    ctx = AgentContext(node="vpbx1-1", config_dir=tmp_path, sendmail=program)
    agent = MailToAgent("MailTo::a@x,b@y::PBX", ("a@x,b@y", "PBX"), ctx)
    await agent.start()
    await asyncio.wait_for(agent.drain(), 30)
    assert agent.delivered == 1
    assert (tmp_path / "handed.args").read_text().split() == [
        "-oi", "-f", "root@vpbx1-1", "--", "a@x", "b@y"]
    text = out.read_text()
    assert "Subject: PBX Takeover in progress at " in text and "To: a@x, b@y" in text


async def test_a_mail_that_cannot_be_composed_is_given_up_at_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A header that email refuses (a line break in the subject) fails the same way at every
    attempt: logged once and given up, no retry, the MTA never called."""
    out = tmp_path / "handed"
    program = tmp_path / "sendmail"
    program.write_text(f"#!/bin/sh\ncat > {out}\n")
    program.chmod(0o755)
    ctx = AgentContext(node="vpbx1-1", config_dir=tmp_path, sendmail=program, smtp_attempts=3,
                       logger=logging.getLogger("test.mailto"))
    agent = MailToAgent("MailTo::a@x::S", ("a@x", "S\r\nBcc: intruder@example.com"), ctx)
    with caplog.at_level(logging.INFO, logger="test.mailto"):
        began = time.monotonic()
        await agent.start()
        await asyncio.wait_for(agent.drain(), 30)
    assert time.monotonic() - began < RETRY_BACKOFF_S  # no second attempt
    assert (agent.delivered, agent.given_up) == (0, 1)
    assert "cannot compose the mail" in caplog.text and "attempt" not in caplog.text
    assert not out.exists()


_NO_EMAIL_IN_DAEMON = """
import asyncio, sys
from pathlib import Path
from nonstop.resources.base import AgentContext
from nonstop.resources.mailto import MailToAgent

async def main() -> None:
    ctx = AgentContext(node="vpbx1-1", config_dir=Path(sys.argv[1]), sendmail=Path(sys.argv[2]))
    agent = MailToAgent("MailTo::a@x::PBX", ("a@x", "PBX"), ctx)
    await agent.start()
    await agent.stop()
    await agent.drain()
    print(agent.delivered, sorted(m for m in sys.modules if m == "email" or m == "smtplib"))

asyncio.run(main())
"""


def test_the_daemon_sends_mail_without_loading_email(tmp_path: Path) -> None:
    """Each mail is composed and handed on by a process of its own: the daemon never holds
    the email and smtplib packages (about 1.1 MB once loaded)."""
    out = tmp_path / "handed"
    program = tmp_path / "sendmail"
    program.write_text(f"#!/bin/sh\ncat >> {out}\n")
    program.chmod(0o755)
    done = subprocess.run([sys.executable, "-c", _NO_EMAIL_IN_DAEMON, str(tmp_path),
                           str(program)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "2 []"
    text = out.read_text()
    assert "Subject: PBX Takeover in progress at " in text
    assert "Subject: PBX Migrating resource away at " in text

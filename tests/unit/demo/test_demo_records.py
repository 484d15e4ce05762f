"""Reading the demo's records (daemon logs, ip monitor, mail) and drawing its panel."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from nonstop.demo.mailsink import MailLog, read_mail
from nonstop.demo.records import parse_addr_log, parse_daemon_log
from nonstop.demo.render import ClientView, NodeView, Screen, panel

# 2026-11-25 02:34:36 UTC, in seconds since the epoch
EPOCH = 1795574076.0


def test_daemon_log_lines_get_monotonic_times() -> None:
    text = (
        " /etc/ha.d/ha.cf:5: warning: Initial dead time [4000 ms] may be too small!\n"
        "nonstop[20055]: 2026/11/25_02:34:36.476 info: Link vpbx1-2:eth0 up.\n"
        "nonstop[20055]: 2026/11/25_02:34:38.012 WARN: node vpbx1-1: is dead\n"
        "Traceback (most recent call last):\n"
    )
    lines = parse_daemon_log(text, offset=EPOCH - 1000.0, utc=True)
    assert [(round(ln.at, 3), ln.level, ln.message) for ln in lines] == [
        (1000.476, "info", "Link vpbx1-2:eth0 up."),
        (1002.012, "WARN", "node vpbx1-1: is dead"),
    ]


def test_ip_monitor_additions_and_deletions() -> None:
    text = (
        "[2026-11-25T02:34:36.539713] 2: eth0    inet 198.18.0.10/24 brd 198.18.0.255 scope "
        "global secondary eth0:0\n"
        "       valid_lft forever preferred_lft forever\n"
        "[2026-11-25T02:34:40.000001] Deleted 2: eth0    inet 198.18.0.10/24 brd 198.18.0.255 "
        "scope global secondary eth0:0\n"
    )
    changes = parse_addr_log(text, offset=EPOCH, utc=True)
    assert [(round(c.at, 6), c.ip, c.added) for c in changes] == [
        (0.539713, "198.18.0.10", True), (4.000001, "198.18.0.10", False)]


def test_mail_log_records_each_message(tmp_path: Path) -> None:
    path = tmp_path / "mail.jsonl"
    handler = MailLog(str(path))
    envelope = SimpleNamespace(
        content=b"Subject: Asterisk Takeover in progress on vpbx1-2\r\n\r\nbody\r\n",
        mail_from="root@vpbx1-2", rcpt_tos=["tech@webinmotion.ca"])
    reply = asyncio.run(handler.handle_DATA(None, None, envelope))
    assert reply.startswith("250 ")
    path.write_text(path.read_text() + '{"torn"')  # a line still being written is skipped
    mail = read_mail(path)
    assert len(mail) == 1
    assert mail[0]["subject"] == "Asterisk Takeover in progress on vpbx1-2"
    assert mail[0]["rcpt_tos"] == ["tech@webinmotion.ca"]
    assert isinstance(mail[0]["received"], float)
    assert read_mail(tmp_path / "absent.jsonl") == []
    json.dumps(mail)


def test_mail_log_cli_takes_one_file() -> None:
    class Parser:
        def error(self, msg: str) -> None:
            raise SystemExit(msg)

    assert MailLog.from_cli(Parser(), "/x").path == Path("/x")
    with pytest.raises(SystemExit):
        MailLog.from_cli(Parser())


def views() -> tuple[list[NodeView], ClientView]:
    n1 = NodeView(name="vpbx1-1", powered=True, cable=True, daemon="active", peer="active",
                  peer_heard_ms=12, group_state="held", holder="vpbx1-1", has_vip=True,
                  master_flag=True, replication="sync: cron line")
    n2 = NodeView(name="vpbx1-2", powered=False, cable=True, daemon=None, peer=None,
                  peer_heard_ms=None, group_state=None, holder=None, has_vip=False,
                  master_flag=False, replication="-")
    client = ClientView(vip="198.18.0.10", sent=10, answered=9, last_node="vpbx1-1",
                        last_ago_s=0.015)
    return [n1, n2], client


def test_panel_says_who_holds_and_who_is_off() -> None:
    nodes, client = views()
    lines = panel(nodes, client, 12.34)
    assert lines[0] == "  [  12.3 s] the group is held by vpbx1-1"
    assert lines[1].split() == ["node", "daemon", "hears", "its", "peer", "holds", ".HB-master",
                                "replication"]
    assert lines[2].split() == ["vpbx1-1", "active", "active,", "12", "ms", "ago", "VIP", "held",
                                "yes", "sync:", "cron", "line"]
    assert lines[3] == "  vpbx1-2  POWERED OFF"
    assert lines[4].endswith("last 200 OK from vpbx1-1 15 ms ago (9/10)")


def test_screen_in_a_pipe_prints_only_lines_and_snapshots() -> None:
    out = io.StringIO()
    screen = Screen(out, live=False)
    nodes, client = views()
    screen.update(panel(nodes, client, 1.0))
    screen.say("hello")
    assert out.getvalue() == "hello\n"
    screen.snapshot()
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().count("the group is held by") == 1


def test_screen_on_a_terminal_redraws_the_panel_below_the_lines() -> None:
    out = io.StringIO()
    screen = Screen(out, live=True, width=3)
    screen.update(["a", "bcdef"])  # clipped: a wrapped line would break the redraw
    assert out.getvalue() == "a\nbc\n"
    screen.update(["a", "b"])
    screen.update(["c", "d"])
    assert out.getvalue() == "a\nbc\n\x1b[2F\x1b[Ja\nb\n\x1b[2F\x1b[Jc\nd\n"
    screen.say("event")
    assert out.getvalue().endswith("\x1b[2F\x1b[Jevent\nc\nd\n")


def test_probe_tail_reads_only_complete_new_lines(tmp_path: Path) -> None:
    from nonstop.demo.records import ProbeTail

    path = tmp_path / "probes.jsonl"
    tail = ProbeTail(path)
    assert tail.poll() == []  # no record yet
    line1 = json.dumps({"seq": 1, "sent": 1.0, "answered": 1.01, "node": "vpbx1-1",
                        "status": 200})
    line2 = json.dumps({"seq": 2, "sent": 1.02, "answered": None, "node": None,
                        "status": None})
    path.write_text(line1 + "\n" + line2[:10])
    assert [p.seq for p in tail.poll()] == [1]
    with path.open("a") as fh:
        fh.write(line2[10:] + "\n" + "garbage\n")
    probes = tail.poll()
    assert [(p.seq, p.answered, p.node) for p in probes] == [(1, 1.01, "vpbx1-1"),
                                                            (2, None, None)]
    assert tail.poll() == probes  # nothing new: nothing read twice

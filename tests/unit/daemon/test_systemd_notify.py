"""sd_notify datagrams reach a real unix socket, in the protocol's KEY=value form."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from nonstop.systemd import SystemdNotifier


def _receiver(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(2)
    return s


def test_messages_arrive_as_systemd_reads_them(tmp_path: Path) -> None:
    sock = tmp_path / "notify"
    with _receiver(sock) as rx:
        n = SystemdNotifier({"NOTIFY_SOCKET": str(sock)})
        n.ready("up: comm up")
        n.ready("again")  # once only
        n.stopping("leaving")
        assert rx.recv(4096).decode().split("\n") == [
            "READY=1", "STATUS=up: comm up", f"MAINPID={os.getpid()}"]
        assert rx.recv(4096).decode() == "STOPPING=1\nSTATUS=leaving"


def test_abstract_socket_names_work(tmp_path: Path) -> None:
    name = f"nonstop-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind("\0" + name)
        rx.settimeout(2)
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert rx.recv(4096) == b"STATUS=hello"


def test_watchdog_pings_at_most_four_times_per_period(tmp_path: Path) -> None:
    sock = tmp_path / "notify"
    with _receiver(sock) as rx:
        n = SystemdNotifier({"NOTIFY_SOCKET": str(sock), "WATCHDOG_USEC": "2000000",
                             "WATCHDOG_PID": str(os.getpid())})
        assert n.watchdog_s == 2.0
        for tenth in range(21):  # two seconds of heartbeats every 100 ms
            n.watchdog(tenth / 10)
        assert n.sent == 5  # at 0, 0.5, 1.0, 1.5, 2.0
        assert rx.recv(64) == b"WATCHDOG=1"


def test_without_systemd_nothing_is_sent() -> None:
    n = SystemdNotifier({})
    assert not n.enabled and n.send(ready=1) is False
    other = SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None  # meant for another process

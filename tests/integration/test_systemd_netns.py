"""The daemon under systemd's notify protocol, with real daemons (issue 10, point 2): READY
once comm is up, WATCHDOG pings from the heartbeat path, RELOADING then READY around a reload,
STOPPING at SIGTERM. The test plays systemd's part: it owns the NOTIFY_SOCKET."""

from __future__ import annotations

import itertools
import signal
import socket
import time
from collections.abc import Callable, Sequence

import pytest
from nodes import NonstopCluster, talk_config

from nonstop.lab import Lab

pytestmark = pytest.mark.netns

N1, N2 = "vpbx1-1", "vpbx1-2"


class Systemd:
    """The receiving end of NOTIFY_SOCKET: every datagram, with the time it came."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.got: list[tuple[float, dict[str, str]]] = []

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.got.append((time.monotonic(), fields))

    def have(self, key: str, value: str = "1") -> bool:
        self.drain()
        return any(f.get(key) == value for _, f in self.got)

    def sent_keys(self) -> list[str]:
        self.drain()
        return [k for _, f in self.got for k in f if k != "STATUS"]


def test_ready_after_comm_up_watchdog_reload_and_stopping(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab((N1, N2))
    config = talk_config(lab.workdir / "talk")
    cluster = NonstopCluster(lab, config)
    path = lab.workdir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        systemd = Systemd(sock)
        cluster.start(N1, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
        # Alone, vpbx1-1 waits initdead (5 s) for its peer: not ready, but asks for more time.
        cluster.wait_for(lambda: systemd.have("EXTEND_TIMEOUT_USEC", "35000000"), 10,
                         what="EXTEND_TIMEOUT_USEC")
        assert not systemd.have("READY")
        started = time.monotonic()
        cluster.start(N2)
        cluster.wait_for(lambda: systemd.have("READY"), 15, what="READY=1")
        ready_at = next(t for t, f in systemd.got if f.get("READY") == "1")
        assert ready_at >= started  # only once the peer was heard: comm up
        # Its log line was logged before READY went, but is written by the log thread, which
        # a loaded machine may run a moment after the test reads READY (CI, twice in a row).
        cluster.wait_for(lambda: "Comm_now_up" in cluster.log(N1), 5, what="Comm_now_up")
        # WATCHDOG=1 every half second at most (a quarter of WatchdogSec), and regularly. The
        # socket is read every 10 ms, so each ping's time is when it came, not when a sleep
        # ended (a count over a sleep depended on how late the test itself was running).
        watch_from = time.monotonic()
        while time.monotonic() < watch_from + 2.5:
            systemd.drain()
            time.sleep(0.01)
        pings = [t for t, f in systemd.got if f.get("WATCHDOG") == "1" and t > watch_from]
        assert len(pings) >= 3, pings
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert min(gaps) > 0.45, gaps  # not more often than a quarter of WatchdogSec (0.5 s)
        assert max(gaps) < 1.5, gaps
        done = cluster.cli(N1, "reload")
        assert done.returncode == 0, done.stderr
        cluster.wait_for(lambda: systemd.sent_keys().count("READY") == 2, 10, what="READY again")
        keys = systemd.sent_keys()
        assert keys.index("RELOADING") < len(keys) - 1 - keys[::-1].index("READY")
        cluster.proc(N1).signal(signal.SIGTERM)
        assert cluster.proc(N1).wait(20) == 0
        assert systemd.have("STOPPING")
        assert [k for k in systemd.sent_keys() if k not in ("WATCHDOG",)][-1] == "STOPPING"

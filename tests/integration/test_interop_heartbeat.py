"""nonstop and the real Heartbeat 3.0.6 in one cluster: each accepts the other's heartbeats,
sees the other leave (shutdown notice) and crash (deadtime).

Both sides use the talk's files with initdead 5 and an EMPTY haresources, so Heartbeat never
has a resource to start or stop. Heartbeat runs only inside its box (own PID namespace, reboot
and systemctl stubbed; see LAB.md) with ``use_logd no`` and ``logfile /var/log/ha-log`` so that
its lines can be read as they appear (its stamps have whole seconds only: times on the
Heartbeat side are when the test first saw the line, polled every 50 ms). nonstop keeps the
talk's ``use_logd yes``.

Heartbeat advertises ``dt`` = deadtime + 2 s for its first 5 s; a test that crashes it waits
until nonstop's status shows the plain 2000 ms first.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from nodes import NonstopCluster, talk_config

from nonstop.lab import BoxProcess, Lab
from nonstop.lab.box import HEARTBEAT_BINARY
from nonstop.lab.errors import LabError

pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(HEARTBEAT_BINARY).exists(), reason="needs the heartbeat package"),
]

N1, N2 = "vpbx1-1", "vpbx1-2"
HA_LOG = "/var/log/ha-log"
DEADTIME, KEEPALIVE = 2.0, 0.2
HB_POLL = 0.25  # Heartbeat checks its timers every 250 ms
SLACK = 0.8  # two shared cores; the times on Heartbeat's side include our 50 ms polling
# What Heartbeat says when it dislikes a peer's packets or pace.
HB_COMPLAINTS = ("failed authentication", "Bad/invalid auth", "Invalid authentication",
                 "netstring authentication", "lost packet", "Late heartbeat",
                 "Message hist queue", "flow control disabled", "replay attack",
                 "returning after partition", "Cannot rexmit")


class HeartbeatNode:
    """The real Heartbeat in the box of ``node``, and its log file."""

    def __init__(self, lab: Lab, node: str) -> None:
        self.lab = lab
        self.node = node
        self.config = talk_config(lab.host_dir(node) / "hb-config",
                                  directives={"use_logd": "no", "logfile": HA_LOG})
        self.box: BoxProcess | None = None

    def start(self) -> BoxProcess:
        self.box = self.lab.start_heartbeat(self.node, self.config)
        return self.box

    def log(self) -> str:
        path = self.lab.host_path(self.node, HA_LOG)
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_line(self, text: str, timeout: float, *, count: int = 1) -> float:
        """Wait until ``text`` is in the log ``count`` times; the wall-clock time it was seen.
        On a timeout the error carries the log's last lines: CI keeps no work directory, and
        a wait here failed twice in CI (never here) with nothing to read."""
        try:
            NonstopCluster.wait_for(lambda: self.log().count(text) >= count, timeout,
                                    what=f"{text!r} in Heartbeat's log on {self.node}")
        except LabError as e:
            tail = "\n".join(self.log().splitlines()[-40:])
            raise LabError(f"{e}; the log's last lines:\n{tail}") from None
        return time.time()

    def complaints(self) -> list[str]:
        return [line for line in self.log().splitlines()
                if any(c in line for c in HB_COMPLAINTS)]

    def cl_status(self, *args: str) -> str:
        return self.lab.box_run(self.node, ["cl_status", *args]).stdout.strip()

    def kill(self) -> float:
        """Crash every Heartbeat process at once (the box's PID namespace ends)."""
        assert self.box is not None
        at = time.time()
        self.box.kill()
        return at


def wait_plain_deadtime(cluster: NonstopCluster, host: str, peer: str) -> None:
    """Heartbeat's start-up bump of its advertised deadtime is over, as ``host`` sees it."""
    cluster.wait_for(lambda: cluster.peer(host, peer).get("deadtime_ms") == 2000, 15,
                     what=f"{peer} to advertise deadtime 2000 ms")


def test_heartbeat_accepts_nonstop_and_sees_it_leave_and_crash(
        make_lab: Callable[[Sequence[str]], Lab],
        record_property: Callable[[str, object], None]) -> None:
    lab = make_lab((N1, N2))
    hb = HeartbeatNode(lab, N1)
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "talk"))
    hb.start()
    cluster.start(N2)

    hb.wait_for_line(f"Status update for node {N2}: status active", 20)
    hb.wait_for_line(f"Link {N2}:eth0 up.", 5)
    cluster.wait_peer_status(N2, N1, "active", 20)
    assert hb.cl_status("nodestatus", N2) == "active"
    assert hb.cl_status("hblinkstatus", N2, "eth0") == "up"
    # A few seconds of steady state: every packet of each side authenticated and in order.
    wait_plain_deadtime(cluster, N2, N1)
    st = cluster.status(N2)
    assert [n["status"] for n in st["nodes"]] == ["active", "active"]
    assert st["nodes"][0]["links"] == {"eth0": "up"}
    assert not [k for k in st["packets"]["dropped"] if k.startswith("bad_")], st["packets"]
    assert "dropped packet" not in cluster.log(N2)
    assert hb.complaints() == []

    # nonstop leaves: Heartbeat hears the shutdown notice at once.
    stopped_at, code = cluster.stop(N2)
    assert code == 0
    notice = hb.wait_for_line(f"Received shutdown notice from '{N2}'.", 10) - stopped_at
    print(f"heartbeat: nonstop SIGTERM -> shutdown notice seen {notice:.3f} s")
    record_property("hb_notice_s", round(notice, 3))
    assert notice < DEADTIME / 2

    # nonstop comes back (new generation) and is accepted again, then crashes.
    cluster.start(N2)
    hb.wait_for_line(f"Status update for node {N2}: status active", 20, count=2)
    cluster.wait_peer_status(N2, N1, "active", 20)
    killed_at = cluster.kill(N2)
    dead = hb.wait_for_line(f"WARN: node {N2}: is dead", 15) - killed_at
    print(f"heartbeat: nonstop SIGKILL -> 'node {N2}: is dead' seen {dead:.3f} s")
    record_property("hb_detects_kill_s", round(dead, 3))
    assert DEADTIME - KEEPALIVE - 0.05 <= dead <= DEADTIME + HB_POLL + SLACK, dead
    assert hb.cl_status("nodestatus", N2) == "dead"
    assert hb.complaints() == []
    hb.kill()  # nothing to release: no resources, and a crash needs no 10 s shutdown wait


def test_nonstop_accepts_heartbeat_and_sees_it_leave_and_crash(
        make_lab: Callable[[Sequence[str]], Lab],
        record_property: Callable[[str, object], None]) -> None:
    lab = make_lab((N1, N2))
    hb = HeartbeatNode(lab, N2)
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "talk"))
    # Heartbeat first, alone until initdead: it declares vpbx1-1 dead and becomes stable, so
    # that it can shut down later (a nice_failback Heartbeat that sees its peer at start-up
    # waits for that peer's resource messages, which a node without haresources never sends).
    hb.start()
    hb.wait_for_line(f"WARN: node {N1}: is dead", 20)
    cluster.start(N1)
    cluster.wait_peer_status(N1, N2, "active", 20)
    hb.wait_for_line(f"Status update for node {N1}: status active", 20)
    assert hb.cl_status("nodestatus", N1) == "active"
    peer = cluster.peer(N1, N2)
    assert peer["links"] == {"eth0": "up"}
    assert "returning after partition" not in cluster.log(N1) + hb.log()

    # Heartbeat leaves (it first waits out its 10 s resource request delay).
    box = hb.box
    assert box is not None
    stopped_at = time.time()
    box.signal(signal.SIGTERM)
    notice = cluster.wait_for_log(N1, rf"Received shutdown notice from '{N2}'", 40,
                                  after=stopped_at)
    assert cluster.peer_status(N1, N2) == "dead"
    assert box.wait(30) == 0
    hb.wait_for_line(f"{N2} Heartbeat shutdown complete.", 5)
    # Heartbeat sends status for a while after its notice: vpbx1-2 must stay dead, with no
    # timeout either once that ends.
    cluster.wait_for(lambda: time.time() > notice.at + 2 * DEADTIME + 0.5, 3 * DEADTIME,
                     what="two deadtimes to pass")
    after_notice = cluster.log(N1).split(notice.text, 1)[1]
    assert f"Status update for node {N2}: status active" not in after_notice, after_notice
    assert f"Link {N2}:eth0 up." not in after_notice, after_notice
    assert f"node {N2}: is dead" not in after_notice, after_notice
    # Heartbeat's shutdown messages may overtake each other: a gap must be filled, not lost.
    log = cluster.log(N1)
    if f"lost packet(s) for [{N2}]" in log.split(notice.text, 1)[0]:
        assert f"No pkts missing from {N2}!" in log, log
    print(f"nonstop: Heartbeat SIGTERM -> shutdown notice {notice.at - stopped_at:.3f} s "
          f"(Heartbeat's resource request delay included), "
          f"{cluster.dropped(N1, 'after_shutdown')} status packets after it ignored, "
          f"{cluster.dropped(N1, 'late')} packet(s) arrived out of order")

    # Heartbeat restarts (higher generation): seen again; then it crashes.
    hb.start()
    cluster.wait_peer_status(N1, N2, "active", 20)
    wait_plain_deadtime(cluster, N1, N2)
    killed_at = hb.kill()
    dead = cluster.wait_for_log(N1, rf"WARN: node {re.escape(N2)}: is dead", 15,
                                after=killed_at)
    before = time.time()
    entry = cluster.peer(N1, N2)
    after = time.time()
    ago = entry["last_heard_ms_ago"] / 1000.0
    heard_min, heard_max = dead.at - (after - ago), dead.at - (before - ago)
    fault = dead.at - killed_at
    print(f"nonstop: Heartbeat SIGKILL -> dead {fault:.3f} s, heard->dead "
          f"{heard_min:.3f}..{heard_max:.3f} s")
    record_property("nonstop_detects_hb_kill_s", round(fault, 3))
    assert entry["status"] == "dead" and entry["links"] == {"eth0": "dead"}
    assert heard_max >= DEADTIME - 0.005
    assert heard_min <= DEADTIME + KEEPALIVE + SLACK
    assert DEADTIME - KEEPALIVE - 0.005 <= fault <= DEADTIME + SLACK
    assert not [k for k in cluster.status(N1)["packets"]["dropped"] if k.startswith("bad_")]

"""Membership between real nonstop daemons in namespaces, with the talk's ha.cf.

Every node runs the talk's files unchanged except ``initdead 5`` (instead of 120, so a node
alone does not wait two minutes) and an empty haresources (membership only: no scripts run):
keepalive 200ms, deadtime 2, warntime 1, bcast eth0, use_logd yes. Lab hosts carry the talk's
node names, vpbx1-1 = 198.18.0.1 and vpbx1-2 = 198.18.0.2.

Syslog: a node's ``/dev/log`` is a socket of the test, mounted over ``/dev`` in that node's
private mount namespace only (the machine's own /dev is untouched).

Detection times are measured two ways and printed (run with ``-s`` to see them):
``fault->dead`` from the fault to the survivor's ``node X: is dead`` line, and
``heard->dead`` from the last status the survivor heard (its status document's
``last_heard_ms_ago`` after the death) to that line. Margins are generous: the machine has two
cores shared with other test runs.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from nodes import NonstopCluster, talk_config

from nonstop.lab import Lab

pytestmark = pytest.mark.netns

N1, N2 = "vpbx1-1", "vpbx1-2"
STATUS_DOC = Path(__file__).resolve().parents[2] / "docs" / "STATUS.md"
DEADTIME, KEEPALIVE, WARNTIME = 2.0, 0.2, 1.0
# Scheduling noise on a loaded two-core machine; the daemon runs SCHED_RR, so this is ample.
SLACK = 0.6
STAMP_EPS = 0.005  # log stamps are truncated to ms; the status query takes a few ms


@dataclass(frozen=True)
class Detection:
    """How long a survivor took to declare a node dead (seconds)."""

    fault_to_dead: float
    heard_to_dead_min: float  # bounds: the last-heard time is known within one status query
    heard_to_dead_max: float

    def __str__(self) -> str:
        return (f"fault->dead {self.fault_to_dead:.3f} s, heard->dead "
                f"{self.heard_to_dead_min:.3f}..{self.heard_to_dead_max:.3f} s")


def two_nodes(make_lab: Callable[[Sequence[str]], Lab],
              directives: Mapping[str, str | None] | None = None,
              ) -> tuple[Lab, NonstopCluster]:
    """A lab with vpbx1-1 and vpbx1-2 running nonstop and seeing each other active."""
    lab = make_lab((N1, N2))
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "talk", directives=directives))
    cluster.start(N1)
    cluster.start(N2)
    cluster.wait_peer_status(N1, N2, "active", 20)
    cluster.wait_peer_status(N2, N1, "active", 20)
    return lab, cluster


def measure_death(cluster: NonstopCluster, survivor: str, victim: str, fault_at: float,
                  timeout: float = 15.0) -> Detection:
    """Wait for ``survivor`` to log ``victim``'s death and measure it."""
    dead = cluster.wait_for_log(survivor, rf"WARN: node {re.escape(victim)}: is dead", timeout,
                                after=fault_at)
    before = time.time()
    entry = cluster.peer(survivor, victim)
    after = time.time()
    assert entry["status"] == "dead", entry
    ago = entry["last_heard_ms_ago"] / 1000.0
    return Detection(fault_to_dead=dead.at - fault_at,
                     heard_to_dead_min=dead.at - (after - ago),
                     heard_to_dead_max=dead.at - (before - ago))


def check_detection(d: Detection, record: Callable[[str, object], None], name: str) -> None:
    """Dead no sooner than deadtime after the last heartbeat heard, and no later than deadtime
    plus one keepalive (plus slack) after it or after the fault."""
    print(f"{name}: {d}")
    record(f"{name}_fault_to_dead_s", round(d.fault_to_dead, 3))
    record(f"{name}_heard_to_dead_s", round((d.heard_to_dead_min + d.heard_to_dead_max) / 2, 3))
    assert d.heard_to_dead_max >= DEADTIME - STAMP_EPS, d
    assert d.heard_to_dead_min <= DEADTIME + KEEPALIVE + SLACK, d
    assert DEADTIME - KEEPALIVE - STAMP_EPS <= d.fault_to_dead <= DEADTIME + SLACK, d


def test_two_nodes_see_each_other(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    _lab, cluster = two_nodes(make_lab)
    for me, other in ((N1, N2), (N2, N1)):
        st = cluster.status(me)  # through `nonstop status --json`
        assert st["node"] == me and st["status"] == "active" and st["comm_up"] is True
        assert st["timing"] == {"keepalive_ms": 200, "deadtime_ms": 2000, "warntime_ms": 1000,
                                "initdead_ms": 5000}
        nodes = {n["name"]: n for n in st["nodes"]}
        assert list(nodes) == [N1, N2]  # ha.cf order
        assert nodes[me]["local"] is True
        peer = nodes[other]
        assert peer["status"] == "active" and peer["local"] is False
        assert peer["links"] == {"eth0": "up"}
        assert 0 <= peer["last_heard_ms_ago"] < 1000
        assert peer["deadtime_ms"] == 2000 and isinstance(peer["generation"], int)
        assert st["packets"]["received"] > 0 and st["packets"]["sent"] > 0
        assert st["packets"]["dropped"].get("bad_auth", 0) == 0
        text = cluster.cli(me, "status")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith(f"nonstop {me}: active")
        row = next(line for line in lines if line.split()[:1] == [other])
        assert row.split()[1] == "active" and "eth0:up" in row
        assert re.search(r"\d+ ms ago|\d+\.\d s ago", row), row
        log = cluster.log(me)
        assert f"Status update for node {other}: status active" in log
        assert f"Link {other}:eth0 up." in log
        assert "Comm_now_up(): updating status to active" in log


def documented_keys(table_after: str) -> set[str]:
    """The keys in the first column of the docs/STATUS.md table under heading ``table_after``."""
    text = STATUS_DOC.read_text().split(table_after, 1)[1]
    keys: set[str] = set()
    for line in text.splitlines()[1:]:
        if line.startswith("#"):
            break
        m = re.match(r"\| `([a-z_]+)` \|", line)
        if m:
            keys.add(m.group(1))
    return keys


def test_status_keys_are_the_documented_ones(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    _lab, cluster = two_nodes(make_lab)
    st = cluster.status(N1)
    assert set(st) == documented_keys("## The JSON document")
    assert set(st["timing"]) == {"keepalive_ms", "deadtime_ms", "warntime_ms", "initdead_ms"}
    for node in st["nodes"]:
        assert set(node) == documented_keys("### `nodes[]`")
    assert set(st["packets"]) == documented_keys("### `packets`")
    assert st["groups"] == [] and st["sync"] is None


def test_status_without_a_daemon_says_not_running(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab((N1,))
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "talk"))
    done = cluster.cli(N1, "status", "--json")
    assert done.returncode == 3  # LSB "not running"
    assert '"ok": false' in done.stdout


def test_sigkill_is_detected_deadtime_after_the_last_heartbeat(
        make_lab: Callable[[Sequence[str]], Lab],
        record_property: Callable[[str, object], None]) -> None:
    _lab, cluster = two_nodes(make_lab)
    killed_at = cluster.kill(N2)
    d = measure_death(cluster, N1, N2, killed_at)
    check_detection(d, record_property, "sigkill")
    peer = cluster.peer(N1, N2)
    assert peer["links"] == {"eth0": "dead"}
    log = cluster.log(N1)
    assert "Received shutdown notice" not in log
    assert f"Link {N2}:eth0 dead." in log
    text = cluster.cli(N1, "status").stdout
    assert re.search(rf"^\s+{N2}\s+dead\s", text, re.MULTILINE), text
    assert cluster.status(N1)["status"] == "active"  # the survivor itself stays active


def test_pulled_cable_is_detected_and_healing_brings_the_node_back(
        make_lab: Callable[[Sequence[str]], Lab],
        record_property: Callable[[str, object], None]) -> None:
    lab, cluster = two_nodes(make_lab)
    down_at = time.time()
    lab.link_down(N2)
    d = measure_death(cluster, N1, N2, down_at)
    check_detection(d, record_property, "link_down")
    # The node behind the pulled cable hears nobody either: it declares vpbx1-1 dead.
    measure_death(cluster, N2, N1, down_at)
    lab.link_up(N2)
    cluster.wait_peer_status(N1, N2, "active", 15)
    cluster.wait_peer_status(N2, N1, "active", 15)
    # Same generation as before the cut: a healed partition, not a restart.
    cluster.wait_for_log(N1, rf"CRIT: Cluster node {N2} returning after partition", 5)
    assert cluster.peer(N1, N2)["links"] == {"eth0": "up"}


def test_sigterm_tells_the_peer_at_once(make_lab: Callable[[Sequence[str]], Lab],
                                         record_property: Callable[[str, object], None]) -> None:
    _lab, cluster = two_nodes(make_lab)
    generation = cluster.peer(N1, N2)["generation"]
    stopped_at, code = cluster.stop(N2)
    assert code == 0
    notice = cluster.wait_for_log(N1, rf"Received shutdown notice from '{N2}'", 10,
                                  after=stopped_at)
    took = notice.at - stopped_at
    print(f"sigterm->shutdown notice {max(took, 0.0):.3f} s (log stamps have ms resolution)")
    record_property("sigterm_to_notice_s", round(took, 3))
    assert took < DEADTIME / 2, took
    assert cluster.peer_status(N1, N2) == "dead"
    assert f"{N2} nonstop shutdown complete." in cluster.log(N2)
    # It left: no timeout follows (wait past the deadtime the peer would otherwise use).
    cluster.wait_for(lambda: time.time() > stopped_at + DEADTIME + 0.5, DEADTIME + 1,
                     what="the deadtime to pass")
    assert f"node {N2}: is dead" not in cluster.log(N1)
    # It comes back with a higher generation and is active again.
    cluster.start(N2)
    cluster.wait_peer_status(N1, N2, "active", 15)
    assert cluster.peer(N1, N2)["generation"] > generation
    assert "returning after partition" not in cluster.log(N1)


def test_a_crash_and_quick_restart_is_a_restart_not_a_death(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    _lab, cluster = two_nodes(make_lab)
    generation = cluster.peer(N1, N2)["generation"]
    killed_at = cluster.kill(N2)
    cluster.start(N2)  # well within deadtime on an idle machine, checked below
    restart = cluster.wait_for_log(N1, rf"Heartbeat restart on node {N2}", 10, after=killed_at)
    cluster.wait_peer_status(N1, N2, "active", 10)
    assert cluster.peer(N1, N2)["generation"] > generation
    print(f"crash -> restart seen {restart.at - killed_at:.3f} s")
    if restart.at - killed_at < DEADTIME - 0.2:
        assert f"node {N2}: is dead" not in cluster.log(N1)
    assert "returning after partition" not in cluster.log(N1)


def test_logfile_and_debugfile_keep_heartbeats_key_lines(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab, cluster = two_nodes(make_lab, {"logfile": "/tmp/ha-log", "debugfile": "/tmp/ha-debug"})
    # A silence longer than warntime but shorter than deadtime: late, not dead.
    lab.blackout(N2)
    cluster.wait_for(lambda: cluster.peer(N1, N2).get("last_heard_ms_ago", 0) >= 1400, 10,
                     what=f"{N1} to miss {N2} for 1.4 s")
    lab.unblackout(N2)
    late = cluster.wait_for_log(N1, rf"WARN: Late heartbeat: Node {N2}: interval (\d+) ms", 10)
    interval = int(late.match.group(1))
    assert 1000 < interval < 2000, late.text
    assert cluster.peer_status(N1, N2) == "active"
    killed_at = cluster.kill(N2)
    cluster.wait_for_log(N1, rf"WARN: node {N2}: is dead", 10, after=killed_at)
    for name in ("/tmp/ha-log", "/tmp/ha-debug"):
        text = cluster.wait_for(partial(_read, lab, N1, name, f"Link {N2}:eth0 dead."), 10,
                                what=f"{name} of {N1} to be written")
        for key in (f"info: Link {N2}:eth0 up.",
                    f"info: Status update for node {N2}: status active",
                    "info: Comm_now_up(): updating status to active",
                    f"WARN: Late heartbeat: Node {N2}: interval {interval} ms",
                    f"WARN: node {N2}: is dead",
                    f"info: Link {N2}:eth0 dead."):
            assert key in text, f"{key!r} missing from {name}:\n{text}"
        # Heartbeat's file format: program[pid]: YYYY/MM/DD_HH:MM:SS LEVEL: message (+ ms).
        first = text.splitlines()[0]
        assert re.match(r"nonstop\[\d+\]: \d{4}/\d\d/\d\d_\d\d:\d\d:\d\d\.\d{3} \w+: ",
                        first), first
    assert " debug: " not in (_read(lab, N1, "/tmp/ha-log", "") or "")


class SyslogSink:
    """A syslog socket (``/dev/log`` of one node): a directory with a datagram socket ``log``,
    mounted over ``/dev`` in that node's private mount namespace only."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        self.dev = directory
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(directory / "log"))
        self.sock.setblocking(False)
        self.received: list[str] = []

    def lines(self) -> list[str]:
        """Every message received so far, ``<PRI>`` prefix included."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            self.received.append(data.rstrip(b"\0").decode(errors="replace"))

    def wait_for(self, text: str, timeout: float) -> str:
        return NonstopCluster.wait_for(
            lambda: next((line for line in self.lines() if text in line), None), timeout,
            what=f"{text!r} in syslog")


def test_use_logd_sends_the_key_lines_to_syslog(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab((N1, N2))
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "talk"))  # use_logd yes
    local7 = talk_config(lab.workdir / "local7", directives={"logfacility": "local7"})
    sinks = {host: SyslogSink(lab.host_dir(host) / "dev") for host in (N1, N2)}
    try:
        cluster.start(N1, binds={"/dev": sinks[N1].dev})
        cluster.start(N2, config_dir=local7, binds={"/dev": sinks[N2].dev})
        # <PRI> = facility * 8 + severity: daemon (3) by default, local7 (23) when asked.
        assert sinks[N1].wait_for(f"Status update for node {N2}: status active", 20).startswith(
            "<30>nonstop[")
        assert sinks[N2].wait_for(f"Status update for node {N1}: status active", 20).startswith(
            "<190>nonstop[")
        cluster.kill(N2)
        dead = sinks[N1].wait_for(f"node {N2}: is dead", 10)
        assert re.fullmatch(rf"<28>nonstop\[\d+\]: WARN: node {N2}: is dead", dead), dead
        assert any(f"Link {N2}:eth0 dead." in line for line in sinks[N1].lines())
    finally:
        for sink in sinks.values():
            sink.sock.close()


def _read(lab: Lab, host: str, path: str, needle: str) -> str | None:
    file = lab.host_path(host, path)
    text = file.read_text() if file.exists() else ""
    return text if needle in text else None


def test_wrong_key_node_is_ignored_and_counted(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab((N1, N2, "intruder"))
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "talk"))
    wrong = talk_config(lab.workdir / "wrong", authkey="NotTheClusterKey")
    # The intruder claims to be vpbx1-2 but signs with another key; the real vpbx1-2 is off.
    cluster.start(N1)
    cluster.start("intruder", node=N2, config_dir=wrong)
    intruder_ip = lab.ip("intruder")
    cluster.wait_for(lambda: cluster.dropped(N1, "bad_auth") >= 10, 15,
                     what=f"{N1} to reject 10 packets")
    # vpbx1-1 never sees vpbx1-2 alive: after initdead it declares the silent node dead.
    cluster.wait_peer_status(N1, N2, "dead", 15)
    assert f"Status update for node {N2}: status up" not in cluster.log(N1)
    assert f"Status update for node {N2}: status active" not in cluster.log(N1)
    # ... and the intruder never sees vpbx1-1 alive either.
    assert cluster.peer_status("intruder", N1) in ("init", "dead")
    assert cluster.dropped("intruder", "bad_auth") > 0

    # The real vpbx1-2 joins with the right key: seen at once, the intruder still dropped.
    cluster.start(N2)
    cluster.wait_peer_status(N1, N2, "active", 15)
    # Never heard before, so this is a late start, not a node returning after a partition.
    assert "returning after partition" not in cluster.log(N1)
    before = cluster.dropped(N1, "bad_auth")
    cluster.wait_for(lambda: cluster.dropped(N1, "bad_auth") >= before + 10, 15,
                     what="more rejected packets")
    # Logged once per burst, not per packet.
    rejects = [line for line in cluster.log(N1).splitlines()
               if f"dropped packet from {intruder_ip}" in line]
    dropped = cluster.dropped(N1, "bad_auth")
    print(f"wrong key: {dropped} packets dropped, {len(rejects)} log line(s)")
    assert 1 <= len(rejects) <= 2, rejects
    assert dropped >= 20
    assert "auth" in rejects[0]
    assert f"dropped packet from {lab.ip(N2)}" not in cluster.log(N1)

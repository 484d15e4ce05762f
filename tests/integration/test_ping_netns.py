"""Ping nodes on a real link: the client host is the router; cutting it off kills the ping node."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nonstop.lab import CLIENT, CLIENT_IP, Lab, LabError, wait_for
from nonstop.lab.box import HEARTBEAT_BINARY

CLIENT_IP2 = "198.18.0.101"

pytestmark = pytest.mark.netns

NOWHERE = "198.18.0.200"  # inside the lab's range, held by no host


def test_ping_node_and_group_go_dead_when_cut_off_and_come_back(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1", "n2"))
    prober = lab.spawn("n1", [sys.executable, "-m", "nonstop.ping", "--interval", "0.1",
                              "--deadping", "0.6", CLIENT_IP,
                              "--group", f"uplinks={NOWHERE},{CLIENT_IP}"])
    up = (f"info: Link {CLIENT_IP}:{CLIENT_IP} up.\n"
          f"info: Status update for node {CLIENT_IP}: status ping")
    prober.wait_for_log(re.escape(up), 15)
    prober.wait_for_log(re.escape("info: Link uplinks:uplinks up."), 15)
    # A new namespace allows no group datagram pings: root falls back to a raw socket.
    assert "through an ICMP raw socket" in prober.read_log()
    assert "is dead" not in prober.read_log()  # the group is up although one member is silent

    # Only the path between n1 and the router is cut; the heartbeat peer n2 stays reachable.
    lab.isolate("n1", CLIENT)
    dead = f"WARN: node {CLIENT_IP}: is dead\ninfo: Link {CLIENT_IP}:{CLIENT_IP} dead."
    prober.wait_for_log(re.escape(dead), 15)
    prober.wait_for_log(re.escape("WARN: node uplinks: is dead"), 15)

    lab.heal()
    back = (f"info: Link {CLIENT_IP}:{CLIENT_IP} up.\n.*Late heartbeat: Node {CLIENT_IP}: "
            f"interval \\d+ ms.*\ninfo: Status update for node {CLIENT_IP}: status ping")
    prober.wait_for_log(f"(?s){re.escape(dead)}.*{back}", 15)
    prober.wait_for_log(r"(?s)node uplinks: is dead.*Link uplinks:uplinks up\.", 15)
    assert prober.running


def test_unprivileged_prober_uses_a_datagram_socket(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    # ping_group_range is per network namespace: allow every group in n2 only, and run the
    # prober there without CAP_NET_RAW, so it cannot open a raw socket. It keeps its uid: a
    # user such as nobody may not be able to read the checkout or the interpreter (/root is 0700).
    lab = make_lab(("n1", "n2"))
    lab.run("n2", ["sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"], check=True)
    prober = lab.spawn("n2", ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw",
                              sys.executable, "-m", "nonstop.ping",
                              "--interval", "0.1", "--deadping", "0.6", lab.ip("n1")])
    prober.wait_for_log(re.escape("through an ICMP datagram socket"), 15)
    prober.wait_for_log(re.escape(f"info: Link {lab.ip('n1')}:{lab.ip('n1')} up."), 15)
    lab.link_down("n1")
    prober.wait_for_log(re.escape(f"WARN: node {lab.ip('n1')}: is dead"), 15)


HB_LINE = re.compile(
    r"(?P<level>info|WARN|CRIT): (?P<text>Link (?P<a>\S+?):\S+ (?:up|dead)\."
    r"|node (?P<b>\S+): is dead"
    r"|Status update for node (?P<c>\S+): status ping"
    r"|Late heartbeat: Node (?P<d>\S+): interval \d+ ms(?: \(> deadtime\))?)$", re.MULTILINE)


def ping_lines(log: str) -> dict[str, list[str]]:
    """Per ping node, its Heartbeat-style lines in order (the gap of a late one as N)."""
    found: dict[str, list[str]] = {}
    for m in HB_LINE.finditer(log):
        target = m["a"] or m["b"] or m["c"] or m["d"]
        text = re.sub(r"interval \d+ ms", "interval N ms", m["text"])
        found.setdefault(target, []).append(f"{m['level']}: {text}")
    return found


@pytest.mark.skipif(not Path(HEARTBEAT_BINARY).exists(), reason="heartbeat 3.0.6 not installed")
def test_same_lines_as_heartbeat_for_the_same_outage(
        make_lab: Callable[[Sequence[str]], Lab], tmp_path: Path) -> None:
    lab = make_lab(("n1", "n2"))
    # The group's reachable member is a second address of the client, not CLIENT_IP itself:
    # Heartbeat 3.0.6's ping and ping_group plugins send with the same ICMP id and sequence
    # numbers (both take the master's pid), so with one target for both, each plugin reads the
    # other's replies and, depending on which process reads first, the ping node may never come
    # up in Heartbeat (seen 3 runs in a row on a busy machine). Isolating the client's port cuts
    # both addresses at once.
    lab.add_address(CLIENT, CLIENT_IP2)
    group = f"198.18.0.200 {CLIENT_IP2}"
    config = tmp_path / "ha.d"
    config.mkdir()
    (config / "ha.cf").write_text(
        f"keepalive 200ms\ndeadtime 2\ndeadping 1\ninitdead 4\nbcast eth0\nnode n1\n"
        f"ping {CLIENT_IP}\nping_group grp {group}\nuse_logd no\nlogfile /var/log/ha-log\n"
        "crm off\nauto_failback off\n")
    (config / "authkeys").write_text("auth 1\n1 crc\n")
    (config / "haresources").write_text("")
    lab.start_heartbeat("n1", config)
    hb_log = lab.host_path("n1", "/var/log/ha-log")
    ours = lab.spawn("n2", [sys.executable, "-m", "nonstop.ping", "--interval", "0.2",
                            "--deadping", "1", "--deadtime", "2", CLIENT_IP, "--group",
                            f"grp={group.replace(' ', ',')}"])

    def both(pattern: str) -> None:
        try:
            wait_for(lambda: re.search(pattern, hb_log.read_text() if hb_log.exists() else ""),
                     20, what=f"/{pattern}/ in Heartbeat's log")
        except LabError as e:
            tail = hb_log.read_text().splitlines()[-30:] if hb_log.exists() else ["(none)"]
            raise LabError(f"{e}\n--- Heartbeat's log, last lines:\n" + "\n".join(tail)) from None
        ours.wait_for_log(pattern, 20)

    # Both ping nodes up on both sides before the cut: one never heard cannot be declared dead
    # (Heartbeat once did not log the single node's death within 20 s of the cut).
    both(r"Status update for node grp: status ping")
    both(rf"Status update for node {re.escape(CLIENT_IP)}: status ping")
    cut = time.monotonic()
    lab.isolate("n1", CLIENT)
    lab.isolate("n2", CLIENT)
    both(r"Link grp:grp dead\.")
    both(rf"Link {re.escape(CLIENT_IP)}:\S+ dead\.")
    # The outage lasts well over deadtime (2 s), so both sides judge the late answer alike.
    wait_for(lambda: time.monotonic() - cut > 3.0, 10, what="a 3 s outage")
    lab.heal()
    both(r"(?s)Link grp:grp dead\..*Status update for node grp: status ping")
    both(rf"(?s)dead\..*Status update for node {re.escape(CLIENT_IP)}: status ping")

    def outage_lines(log: str, heartbeat: bool) -> dict[str, list[str]]:
        found = ping_lines(log)
        for name, lines in found.items():
            kept: list[str] = []
            for line in lines:
                # Heartbeat 3.0.6 says a returning ping node "is dead" once more right after
                # its late heartbeat; nonstop leaves that spurious line out (PingChanged.lines).
                spurious = heartbeat and line.endswith(": is dead") and kept and \
                    "Late heartbeat" in kept[-1]
                # A late answer other than the one ending the outage (at start-up, or while
                # up) is scheduling jitter on this shared machine, on either side.
                jitter = "Late heartbeat" in line and not any("is dead" in k for k in kept)
                if not (spurious or jitter):
                    kept.append(line)
            found[name] = kept
        return {name: found.get(name, []) for name in (CLIENT_IP, "grp")}

    theirs = outage_lines(hb_log.read_text(), heartbeat=True)
    assert outage_lines(ours.read_log(), heartbeat=False) == theirs
    assert theirs[CLIENT_IP] == [
        f"info: Link {CLIENT_IP}:{CLIENT_IP} up.",
        f"info: Status update for node {CLIENT_IP}: status ping",
        f"WARN: node {CLIENT_IP}: is dead",
        f"info: Link {CLIENT_IP}:{CLIENT_IP} dead.",
        f"info: Link {CLIENT_IP}:{CLIENT_IP} up.",
        f"CRIT: Late heartbeat: Node {CLIENT_IP}: interval N ms (> deadtime)",
        f"info: Status update for node {CLIENT_IP}: status ping",
    ]

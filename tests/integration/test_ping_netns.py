"""Ping nodes on a real link: the client host is the router; cutting it off kills the ping node."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence

import pytest

from nonstop.lab import CLIENT, CLIENT_IP, Lab

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
    prober.wait_for_log(f"(?s){re.escape(dead)}.*{re.escape(up)}", 15)
    prober.wait_for_log(r"(?s)node uplinks: is dead.*Link uplinks:uplinks up\.", 15)
    assert prober.running


def test_unprivileged_prober_uses_a_datagram_socket(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    # ping_group_range is per network namespace: allow every group in n2 only, and run the
    # prober there as nobody, which cannot open a raw socket.
    lab = make_lab(("n1", "n2"))
    lab.run("n2", ["sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"], check=True)
    prober = lab.spawn("n2", ["setpriv", "--reuid", "nobody", "--regid", "nogroup",
                              "--clear-groups", sys.executable, "-m", "nonstop.ping",
                              "--interval", "0.1", "--deadping", "0.6", lab.ip("n1")])
    prober.wait_for_log(re.escape("through an ICMP datagram socket"), 15)
    prober.wait_for_log(re.escape(f"info: Link {lab.ip('n1')}:{lab.ip('n1')} up."), 15)
    lab.link_down("n1")
    prober.wait_for_log(re.escape(f"WARN: node {lab.ip('n1')}: is dead"), 15)

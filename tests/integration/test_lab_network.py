"""The lab's network: hosts reach each other through the switch; each fault does what it says."""

from __future__ import annotations

import re

import pytest

from nonstop.lab import CLIENT, Lab, wait_for

pytestmark = pytest.mark.netns


def pings(lab: Lab, src: str, dst: str, *, wait: float = 1.0) -> bool:
    """One ping from ``src`` to ``dst``'s address: answered or not."""
    done = lab.run(src, ["ping", "-n", "-q", "-c", "1", "-W", str(wait), lab.ip(dst)])
    return done.returncode == 0


def eventually_pings(lab: Lab, src: str, dst: str, timeout: float = 10.0) -> bool:
    return wait_for(lambda: pings(lab, src, dst), timeout, what=f"{src} to reach {dst}")


def test_nodes_and_client_reach_each_other(lab: Lab) -> None:
    assert lab.nodes == ("n1", "n2")
    assert [lab.ip(h) for h in lab.hosts] == ["198.18.0.1", "198.18.0.2", "198.18.0.100"]
    for src, dst in [("n1", "n2"), ("n2", "n1"), (CLIENT, "n1"), (CLIENT, "n2"), ("n1", CLIENT)]:
        assert pings(lab, src, dst), f"{src} cannot reach {dst}"
    links = lab.run("n1", ["ip", "-o", "link", "show"], check=True).stdout
    # The node's interface is eth0 (the talk's "bcast eth0"), and nothing but lo and eth0 exists.
    assert re.findall(r"^\d+: ([^:@]+)", links, re.MULTILINE) == ["lo", "eth0"]
    # Lab host names resolve everywhere in the lab.
    assert lab.run("n1", ["getent", "hosts", "n2"]).stdout.split() == ["198.18.0.2", "n2"]
    assert lab.run("n2", ["ping", "-n", "-q", "-c", "1", "-W", "1", "client"]).returncode == 0
    assert lab.has_address("n1", "198.18.0.1")
    assert not lab.has_address("n2", "198.18.0.1")


def test_link_down_is_a_pulled_cable(lab: Lab) -> None:
    lab.link_down("n1")
    assert wait_for(lambda: "NO-CARRIER" in lab.run("n1", ["ip", "link", "show", "eth0"]).stdout,
                    5.0, what="n1's eth0 to lose carrier")
    assert not pings(lab, "n2", "n1")
    assert not pings(lab, CLIENT, "n1")
    assert pings(lab, CLIENT, "n2")
    lab.link_up("n1")
    assert eventually_pings(lab, "n2", "n1")
    assert eventually_pings(lab, CLIENT, "n1")


def test_loss_drops_about_the_share_asked_for(lab: Lab) -> None:
    assert pings(lab, "n1", "n2")  # ARP settled before loss starts
    lab.set_loss("n1", 20, "out")
    out = lab.run("n1", ["ping", "-n", "-q", "-c", "500", "-i", "0.002", "-W", "1", lab.ip("n2")],
                  timeout=60).stdout
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out
    lost = int(match.group(1)) - int(match.group(2))
    # 100 expected; binomial sd is about 9, so these bounds are over five sd wide each way.
    assert 50 <= lost <= 160, out
    lab.set_loss("n1", 0, "out")
    out = lab.run("n1", ["ping", "-n", "-q", "-c", "100", "-i", "0.002", "-W", "1", lab.ip("n2")],
                  timeout=30).stdout
    assert " 0% packet loss" in out, out


def test_isolation_cuts_nodes_apart_but_not_from_the_client(lab: Lab) -> None:
    lab.isolate("n1", "n2")
    assert not pings(lab, "n1", "n2")
    assert not pings(lab, "n2", "n1")
    assert pings(lab, CLIENT, "n1")
    assert pings(lab, CLIENT, "n2")
    lab.heal()
    assert eventually_pings(lab, "n1", "n2")


def test_blackout_silences_a_node_but_keeps_its_link(lab: Lab) -> None:
    lab.blackout("n1")
    assert not pings(lab, CLIENT, "n1")
    assert not pings(lab, "n2", "n1")
    assert pings(lab, CLIENT, "n2")
    assert "NO-CARRIER" not in lab.run("n1", ["ip", "link", "show", "eth0"]).stdout
    lab.clear_faults()
    assert eventually_pings(lab, CLIENT, "n1")

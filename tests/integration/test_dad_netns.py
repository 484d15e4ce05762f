"""ARP duplicate address detection on a real link: a held address is seen, a free one is not."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from nonstop.lab import VIP, Lab

pytestmark = pytest.mark.netns

PROBE = """
import asyncio, ipaddress, json, sys
from nonstop.resources.dad import probe_address
result = asyncio.run(probe_address("eth0", ipaddress.IPv4Address(sys.argv[1])))
print(json.dumps({**result.as_dict(), "reason": result.reason}))
"""


def probe(lab: Lab, host: str, ip: str) -> dict[str, Any]:
    done = lab.run(host, [sys.executable, "-c", PROBE, ip], timeout=30, check=True)
    found = json.loads(done.stdout)
    assert isinstance(found, dict)
    return found


def mac_of(lab: Lab, host: str) -> str:
    out = lab.run(host, ["cat", "/sys/class/net/eth0/address"], check=True).stdout
    return out.strip()


def test_another_host_holding_the_address_is_detected(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1", "n2", "n3"))
    free = probe(lab, "n1", VIP)
    assert free["conflict"] is False and free["error"] is None, free
    assert free["duration_s"] < 1.0  # 100 ms by design; generous on a shared machine

    lab.add_address("n2", VIP)
    held = probe(lab, "n1", VIP)
    assert held["conflict"] is True, held
    assert held["claimants"] == [{"mac": mac_of(lab, "n2"), "how": "reply"}]
    assert f"in use by {mac_of(lab, 'n2')} (reply)" in str(held["reason"])
    # A conflict ends the probe at once, it does not wait out the listening time.
    assert held["duration_s"] < free["duration_s"] + 0.5

    # The holder leaves: the address is free again. Another node's own address is not.
    lab.del_address("n2", VIP)
    assert probe(lab, "n1", VIP)["conflict"] is False
    taken = probe(lab, "n1", lab.ip("n3"))
    assert taken["claimants"] == [{"mac": mac_of(lab, "n3"), "how": "reply"}]


def test_a_cut_off_holder_is_not_seen(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    # The probe proves what the link shows, nothing more: a holder we cannot reach is missed.
    lab = make_lab(("n1", "n2"))
    lab.add_address("n2", VIP)
    lab.isolate("n1", "n2")
    assert probe(lab, "n1", VIP)["conflict"] is False
    lab.heal()
    assert probe(lab, "n1", VIP)["conflict"] is True


START_IP = """
import asyncio, json, sys
from pathlib import Path
from nonstop.resources import AgentContext, ResourceError
from nonstop.resources.ipaddr import IPAddrAgent
ctx = AgentContext(node="n1", config_dir=Path("/nonexistent"), address_probe_s=0.1)
agent = IPAddrAgent(sys.argv[1], ctx, arp_repeat=1, arp_interval_s=0.01)
async def main():
    try:
        await agent.start()
        outcome = "started"
    except ResourceError as exc:
        outcome = "refused: " + str(exc)
    if agent.announcement is not None:
        await agent.announcement
    print(json.dumps({"outcome": outcome, "probe": agent.last_probe.as_dict()}))
asyncio.run(main())
"""


def test_ipaddr_does_not_add_an_address_another_host_answers_for(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1", "n2"))
    lab.add_address("n2", VIP)
    spec = f"{VIP}/24/eth0"
    refused = json.loads(lab.run("n1", [sys.executable, "-c", START_IP, spec], timeout=30,
                                 check=True).stdout)
    assert refused["outcome"].startswith("refused: ")
    assert f"address conflict: {VIP} on eth0 is in use by {mac_of(lab, 'n2')} (reply)" \
        in refused["outcome"]
    assert not lab.has_address("n1", VIP)

    lab.del_address("n2", VIP)
    started = json.loads(lab.run("n1", [sys.executable, "-c", START_IP, spec], timeout=30,
                                 check=True).stdout)
    assert started["outcome"] == "started" and started["probe"]["conflict"] is False
    assert lab.has_address("n1", VIP)


WATCH = """
import asyncio, ipaddress, sys
from nonstop.resources import arp, netlink
from nonstop.resources.conflict import ConflictWatch
import logging
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s: %(message)s")
mac = arp.parse_mac(netlink.link_mac("eth0"))
def reannounce():
    print("REANNOUNCE", flush=True)
watch = ConflictWatch("eth0", ipaddress.IPv4Address(sys.argv[1]), mac, on_end=reannounce,
                      logger=logging.getLogger("watch"), probe_interval_s=0.2)
print("WATCHING", flush=True)
asyncio.run(watch.run())
"""


def test_holder_sees_a_second_claimant_and_reannounces_when_it_leaves(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1", "n2"))
    lab.add_address("n1", VIP)
    watch = lab.spawn("n1", [sys.executable, "-u", "-c", WATCH, VIP])
    watch.wait_for_log("WATCHING", 15)
    # A rogue takes the address and announces it, as a takeover does.
    lab.add_address("n2", VIP)
    lab.run("n2", ["arping", "-q", "-U", "-c", "2", "-w", "2", "-I", "eth0", VIP], timeout=10)
    watch.wait_for_log(re.escape(f"ERROR: address conflict: {VIP}, which we hold, is also "
                                 f"claimed by {mac_of(lab, 'n2')}"), 15)
    assert "REANNOUNCE" not in watch.read_log()  # it still answers for the address
    lab.del_address("n2", VIP)
    watch.wait_for_log(r"(?s)address conflict on .* ended: .* no longer answers.*\nREANNOUNCE", 15)

"""nonstop.rtnetlink: the kernel's rtnetlink layouts decoded from bytes, and the live requests
checked against iproute2 (``ip -j``), address changes in a private network namespace."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from typing import Any

import pytest

from nonstop import rtnetlink as rt
from nonstop.resources import netlink


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def test_address_message_decodes_every_field() -> None:
    body = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 7)
    body += _attr(rt.IFA_ADDRESS, socket.inet_aton("198.18.0.10"))
    body += _attr(rt.IFA_LOCAL, socket.inet_aton("198.18.0.10"))
    body += _attr(rt.IFA_LABEL, b"eth0:vip\0")
    body += _attr(rt.IFA_BROADCAST, socket.inet_aton("198.18.0.255"))
    assert rt.decode_address(body) == rt.Address(7, 24, "198.18.0.10", "198.18.0.10",
                                                 "eth0:vip", "198.18.0.255")


def test_route_table_attribute_wins_over_the_header() -> None:
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 16, 0, 0, 252, 0, 0, 1, 0)
    body += _attr(rt.RTA_TABLE, struct.pack("=I", 254)) + _attr(rt.RTA_DST, bytes([10, 1, 0, 0]))
    body += _attr(rt.RTA_OIF, struct.pack("=I", 3)) + _attr(rt.RTA_PRIORITY, struct.pack("=I", 5))
    assert rt.decode_route(body) == rt.Route(254, 16, "10.1.0.0", 3, 5)


def test_messages_split_a_datagram_and_reject_bad_lengths() -> None:
    one = struct.pack("=IHHII", 16 + 3, 22, 2, 9, 0) + b"abc" + b"\0"
    two = struct.pack("=IHHII", 16, rt.NLMSG_DONE, 2, 9, 0)
    assert list(rt.messages(one + two)) == [(22, 9, b"abc"), (rt.NLMSG_DONE, 9, b"")]
    with pytest.raises(rt.RtnlError):
        list(rt.messages(struct.pack("=IHHII", 99, 22, 0, 1, 0)))
    with pytest.raises(rt.RtnlError):
        rt.attributes(struct.pack("=HH", 2, 1), 0)


def _ip(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 not installed")
def test_link_message_says_whether_the_link_has_a_carrier() -> None:
    up = struct.pack("=BxHiII", 0, 1, 3, 0x1 | rt.IFF_LOWER_UP, 0) + _attr(rt.IFLA_IFNAME,
                                                                          b"eth0\0")
    down = struct.pack("=BxHiII", 0, 1, 3, 0x1, 0) + _attr(rt.IFLA_IFNAME, b"eth0\0")
    assert rt.decode_link(up).carrier and not rt.decode_link(down).carrier


def test_live_requests_agree_with_iproute2() -> None:
    assert {(link.index, link.name, link.carrier) for link in rt.links()} == {
        (int(str(x["ifindex"])), str(x["ifname"]), "LOWER_UP" in x["flags"])  # type: ignore[operator]
        for x in _ip("link", "show")}
    ours = {(str(a.address), a.prefixlen, a.ifname) for a in netlink.list_addresses()}
    theirs = {(str(i["local"]), int(str(i["prefixlen"])), str(x["ifname"]))
              for x in _ip("-4", "addr", "show") for i in x["addr_info"]}  # type: ignore[attr-defined]
    assert ours == theirs
    for r in _ip("-4", "route", "show", "table", "main"):
        dst = str(r["dst"])
        if dst != "default" and "dev" in r:
            ip = ipaddress.ip_network(dst if "/" in dst else dst + "/32").network_address
            iface, plen = netlink.covering_route(ipaddress.IPv4Address(ip), str(r["dev"]))
            assert iface == r["dev"] and plen == int(dst.partition("/")[2] or 32)


# Run in a new network namespace: only lo exists, nothing outside is touched.
CHANGE = """
import ipaddress, json, subprocess
from nonstop.resources import netlink
ip = ipaddress.IPv4Address("198.18.0.5")
netlink.add_address("lo", ip, 24, ipaddress.IPv4Address("198.18.0.255"), "lo:vip")
netlink.add_address("lo", ip, 24, None, None)  # already there: not an error
shown = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", "lo"],
                                  capture_output=True, text=True, check=True).stdout)
ours = [(str(a.address), a.prefixlen, a.label) for a in netlink.list_addresses()]
netlink.delete_address("lo", ip, 24)
netlink.delete_address("lo", ip, 24)  # already gone: not an error
after = [str(a.address) for a in netlink.list_addresses()]
try:
    netlink.add_address("nosuch0", ip, 24, None, None)
    missing = ""
except netlink.NetlinkFailure as e:
    missing = str(e)
print(json.dumps({"shown": shown[0]["addr_info"], "ours": ours, "after": after,
                  "missing": missing}))
"""


PRIVATE_NETNS = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and iproute2")


def _in_private_netns(script: str) -> dict[str, Any]:
    """Run ``script`` in a new network namespace; what it printed as JSON."""
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got: dict[str, Any] = json.loads(done.stdout)
    return got


@PRIVATE_NETNS
def test_add_and_delete_an_address_in_a_private_namespace() -> None:
    got = _in_private_netns(CHANGE)
    vip = [a for a in got["shown"] if a["local"] == "198.18.0.5"]
    assert vip and vip[0]["prefixlen"] == 24 and vip[0]["broadcast"] == "198.18.0.255"
    assert vip[0]["label"] == "lo:vip"
    assert ["198.18.0.5", 24, "lo:vip"] in got["ours"]
    assert "198.18.0.5" not in got["after"]
    assert got["missing"] == "no interface 'nosuch0'"


# A LAN (a0, 198.18.0.0/24) and a crossover (a1) with a host route to the peer's LAN address:
# the kernel takes the longest prefix, whatever the metrics, and so must the carrier check.
EGRESS = """
import json, subprocess
from nonstop import guards, rtnetlink
def ip(*args):
    subprocess.run(["ip", *args], check=True)
for a, b in (("a0", "b0"), ("a1", "b1")):
    ip("link", "add", a, "type", "veth", "peer", "name", b)
    ip("link", "set", a, "up")
    ip("link", "set", b, "up")
ip("addr", "add", "198.18.0.1/24", "dev", "a0")
ip("addr", "add", "198.18.1.1/24", "dev", "a1")
ip("route", "add", "198.18.0.2/32", "dev", "a1", "metric", "500")
names = {link.index: link.name for link in rtnetlink.links()}
kernel = json.loads(subprocess.run(["ip", "-j", "route", "get", "198.18.0.2"],
                                   capture_output=True, text=True, check=True).stdout)[0]["dev"]
ours = names[rtnetlink.route_to("198.18.0.2").oif]
ip("link", "set", "b0", "down")  # the LAN's cable out: the crossover still reaches the peer
lan_out = guards.peers_cut_off({"vpbx1-2": ["198.18.0.2"]})
ip("link", "set", "b0", "up")
ip("link", "set", "b1", "down")  # the crossover's out
cross_out = guards.peers_cut_off({"vpbx1-2": ["198.18.0.2"]})
try:
    rtnetlink.route_to("203.0.113.9")
    nowhere = ""
except rtnetlink.RtnlError as e:
    nowhere = str(e)
print(json.dumps({"kernel": kernel, "ours": ours, "lan_out": lan_out, "cross_out": cross_out,
                  "nowhere": nowhere}))
"""


@PRIVATE_NETNS
def test_the_route_to_a_peer_is_the_kernels_longest_prefix() -> None:
    got = _in_private_netns(EGRESS)
    assert got["kernel"] == got["ours"] == "a1"
    assert got["lan_out"] is None  # a review: the lowest-metric route said "no carrier" here
    assert got["cross_out"] == ("the route to vpbx1-2 (198.18.0.2) goes over a1, which has no "
                                "carrier")
    assert got["nowhere"]

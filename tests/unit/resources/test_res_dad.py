"""ARP duplicate address detection: probe frames, what counts as a conflict, results."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nonstop.resources import arp
from nonstop.resources.dad import Claimant, ProbeResult, claimant, probe_address, probe_frame

OURS = bytes.fromhex("02aabbccddee")
THEIRS = bytes.fromhex("02111111111a")
VIP = ipaddress.IPv4Address("198.18.0.10")
OTHER = ipaddress.IPv4Address("198.18.0.2")
ZERO = ipaddress.IPv4Address(0)


def test_probe_frame_asks_from_zero_address() -> None:
    frame = probe_frame(OURS, VIP)
    assert frame[:42] == bytes.fromhex(
        "ffffffffffff" "02aabbccddee" "0806"
        "0001" "0800" "06" "04" "0001"
        "02aabbccddee" "00000000"  # sender: our MAC, IP 0.0.0.0 (no cache learns anything)
        "000000000000" "c612000a")  # target: the address we want
    assert len(frame) == arp.MIN_FRAME_LEN
    packet = arp.parse_arp_frame(frame)
    assert packet == arp.ArpPacket(1, OURS, ZERO, arp.ZERO_MAC, VIP)


def pkt(op: int, smac: bytes, sip: ipaddress.IPv4Address, tip: ipaddress.IPv4Address,
        tmac: bytes = arp.ZERO_MAC) -> arp.ArpPacket:
    return arp.ArpPacket(op, smac, sip, tmac, tip)


@pytest.mark.parametrize("packet,expected", [
    (pkt(2, THEIRS, VIP, ZERO, OURS), Claimant("02:11:11:11:11:1a", "reply")),
    (pkt(1, THEIRS, VIP, OTHER), Claimant("02:11:11:11:11:1a", "request")),
    (pkt(1, THEIRS, VIP, VIP), Claimant("02:11:11:11:11:1a", "announcement")),
    (pkt(1, THEIRS, ZERO, VIP), Claimant("02:11:11:11:11:1a", "probe")),
    (pkt(1, THEIRS, OTHER, VIP), None),  # someone asking for the address does not hold it
    (pkt(2, THEIRS, OTHER, VIP), None),
    (pkt(1, THEIRS, ZERO, OTHER), None),  # a probe for another address
    (pkt(1, OURS, ZERO, VIP), None),  # our own probe
    (pkt(2, OURS, VIP, VIP), None),
])
def test_what_counts_as_a_conflict(packet: arp.ArpPacket, expected: Claimant | None) -> None:
    assert claimant(packet, VIP, OURS) == expected


@given(st.binary(max_size=80))
def test_parse_arp_frame_never_raises(data: bytes) -> None:
    packet = arp.parse_arp_frame(data)
    assert packet is None or len(packet.sender_mac) == 6


def test_result_reasons_and_status_keys() -> None:
    free = ProbeResult(VIP, "eth0", (), 3, 0.1004)
    assert not free.conflict
    assert free.reason == "198.18.0.10 is free on eth0 (3 ARP probes, 100 ms)"
    busy = ProbeResult(VIP, "eth0", (Claimant("02:11:11:11:11:1a", "reply"),), 1, 0.001)
    assert busy.reason == ("address conflict: 198.18.0.10 on eth0 is in use by "
                           "02:11:11:11:11:1a (reply)")
    assert busy.as_dict()["claimants"] == [{"mac": "02:11:11:11:11:1a", "how": "reply"}]
    failed = ProbeResult(VIP, "nope0", (), 0, 0.0, "No such device")
    assert failed.reason == "could not probe 198.18.0.10 on nope0: No such device"


async def test_probe_on_a_missing_interface_is_a_result_not_a_crash() -> None:
    result = await probe_address("nonstop-none0", VIP, mac=OURS)
    assert result.error is not None and not result.conflict


async def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        await probe_address("lo", VIP, mac=OURS, probes=0)

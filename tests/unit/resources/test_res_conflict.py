"""Conflict detection for a held address: who claims it, and when the claim ends."""

from __future__ import annotations

import ipaddress

from nonstop.resources import arp
from nonstop.resources.conflict import (
    ConflictEnded,
    ConflictStarted,
    ConflictState,
    ConflictTracker,
)
from nonstop.resources.dad import Claimant, ProbeResult

OURS = bytes.fromhex("02aabbccddee")
ROGUE = bytes.fromhex("02111111111a")
ROGUE2 = bytes.fromhex("02222222222b")
VIP = ipaddress.IPv4Address("198.18.0.10")
CLIENT = ipaddress.IPv4Address("198.18.0.100")


def garp(mac: bytes) -> arp.ArpPacket:
    return arp.ArpPacket(1, mac, VIP, arp.ZERO_MAC, VIP)


def probe(*claimants: Claimant, error: str | None = None) -> ProbeResult:
    return ProbeResult(VIP, "eth0", claimants, 3, 0.1, error)


def test_a_gratuitous_arp_from_another_mac_starts_a_conflict() -> None:
    t = ConflictTracker(VIP, OURS)
    (event,) = t.packet(garp(ROGUE))
    assert isinstance(event, ConflictStarted)
    assert event.line == ("address conflict: 198.18.0.10, which we hold, is also claimed by "
                          "02:11:11:11:11:1a (announcement)")
    assert t.state is ConflictState.CONFLICT
    assert t.packet(garp(ROGUE)) == []  # the same claimant again: nothing new
    (second,) = t.packet(garp(ROGUE2))  # a second claimant is news
    assert isinstance(second, ConflictStarted)
    assert second.claimant.mac == "02:22:22:22:22:2b"


def test_our_own_and_unrelated_packets_are_no_conflict() -> None:
    t = ConflictTracker(VIP, OURS)
    assert t.packet(garp(OURS)) == []
    assert t.packet(arp.ArpPacket(1, ROGUE, CLIENT, arp.ZERO_MAC, VIP)) == []  # asks for it
    assert t.state is ConflictState.CLEAR


def test_the_first_unanswered_probe_ends_the_conflict() -> None:
    t = ConflictTracker(VIP, OURS)
    t.packet(garp(ROGUE))
    assert t.probed(probe(Claimant("02:11:11:11:11:1a", "reply"))) == []
    assert t.probed(probe(error="Network is down")) == []  # not knowing ends nothing
    (ended,) = t.probed(probe())
    assert isinstance(ended, ConflictEnded)
    assert ended.line == ("address conflict on 198.18.0.10 ended: 02:11:11:11:11:1a no longer "
                          "answers; announcing the address again")
    assert t.state is ConflictState.CLEAR and t.claimants == {}
    assert t.probed(probe()) == []  # no conflict, nothing to end


def test_a_peers_probe_is_a_warning_worded_as_a_probe_not_a_claim() -> None:
    """A trial: a frozen holder's peer probed the address before taking it over; the holder
    logged 'ERROR: ... is also claimed by ... (probe)', seconds later 'no longer answers',
    though a probe (sender 0.0.0.0) claims nothing and never answered."""
    t = ConflictTracker(VIP, OURS)
    (event,) = t.packet(arp.ArpPacket(1, ROGUE, ipaddress.IPv4Address("0.0.0.0"),
                                      arp.ZERO_MAC, VIP))
    assert isinstance(event, ConflictStarted)
    assert event.line == ("address 198.18.0.10, which we hold, was probed by 02:11:11:11:11:1a "
                          "(a host about to take it, e.g. a peer that cannot hear us): defending "
                          "it")
    (ended,) = t.probed(probe())
    assert ended.line == ("address 198.18.0.10: no claim followed the probe by "
                          "02:11:11:11:11:1a; announcing the address again")

"""Gratuitous ARP frame layout and Heartbeat's send_arp schedule."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import socket
import threading

import pytest

from nonstop.resources.arp import (
    ArpOp,
    announce,
    arp_schedule,
    gratuitous_arp_frame,
    packet_socket,
    parse_mac,
    release_socket,
)

MAC = bytes.fromhex("02aabbccddee")
VIP = ipaddress.IPv4Address("198.18.0.10")


def test_request_frame_bytes() -> None:
    frame = gratuitous_arp_frame(ArpOp.REQUEST, MAC, VIP)
    expected = bytes.fromhex(
        "ffffffffffff"  # Ethernet destination: broadcast
        "02aabbccddee"  # Ethernet source: our MAC
        "0806"  # EtherType ARP
        "0001" "0800" "06" "04"  # Ethernet / IPv4, address lengths
        "0001"  # REQUEST
        "02aabbccddee" "c612000a"  # sender MAC, sender IP = VIP
        "000000000000" "c612000a"  # target MAC zero, target IP = VIP
    )
    assert frame[:42] == expected
    assert len(frame) == 60
    assert frame[42:] == bytes(18)


def test_reply_frame_announces_own_mac_as_target() -> None:
    frame = gratuitous_arp_frame(ArpOp.REPLY, MAC, VIP)
    assert frame[20:22] == b"\x00\x02"
    assert frame[22:28] == MAC
    assert frame[32:38] == MAC
    assert frame[28:32] == frame[38:42] == VIP.packed
    assert frame[:6] == b"\xff" * 6


def test_frame_rejects_short_mac() -> None:
    with pytest.raises(ValueError):
        gratuitous_arp_frame(ArpOp.REQUEST, b"\x01\x02", VIP)


def test_parse_mac() -> None:
    assert parse_mac("02:aa:bb:cc:dd:ee") == MAC
    with pytest.raises(ValueError):
        parse_mac("02:aa:bb")


def test_schedule_is_ten_pairs_first_immediately() -> None:
    plan = arp_schedule()
    assert len(plan) == 20
    assert plan[0] == (0.0, ArpOp.REQUEST)
    assert [op for _, op in plan] == [ArpOp.REQUEST, ArpOp.REPLY] * 10
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(plan)]
    assert all(g == pytest.approx(0.25) for g in gaps)
    # Nothing waits after the last reply: 20 frames span 4.75 s.
    assert plan[-1][0] == pytest.approx(4.75)


def test_schedule_custom_interval() -> None:
    assert arp_schedule(2, 0.1) == [
        (0.0, ArpOp.REQUEST),
        (0.05, ArpOp.REPLY),
        (0.1, ArpOp.REQUEST),
        (0.15000000000000002, ArpOp.REPLY),
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need CAP_NET_RAW")
async def test_announce_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    # No such interface: nothing can be sent, and nothing is sent anywhere else either.
    log = logging.getLogger("test.arp")
    with caplog.at_level(logging.ERROR, logger="test.arp"):
        sent = await announce("nonstop-nosuch", MAC, VIP, log, repeat=2, interval_s=0.01)
    assert sent == 0
    assert "Could not send gratuitous arps for 198.18.0.10 on nonstop-nosuch" in caplog.text


class _RecordingSocket(socket.socket):
    closed_on: int | None = None

    def close(self) -> None:
        self.closed_on = threading.get_ident()
        super().close()


def test_packet_socket_is_registered_only_by_its_bind() -> None:
    # Opened for ETH_P_ARP and bound again, the kernel waits out an RCU grace period (11-20 ms
    # measured) in the middle of a takeover; protocol 0 registers it once, at bind.
    try:
        sock = packet_socket()
    except PermissionError:
        pytest.skip("packet sockets need CAP_NET_RAW")
    with sock:
        assert sock.proto == 0


async def test_packet_sockets_are_closed_off_the_event_loop() -> None:
    # Closing a bound packet socket waits for an RCU grace period as well (9-16 ms measured).
    sock = _RecordingSocket(socket.AF_INET, socket.SOCK_DGRAM)
    release_socket(sock)
    for _ in range(200):
        if sock.closed_on is not None:
            break
        await asyncio.sleep(0.005)
    assert sock.closed_on is not None and sock.closed_on != threading.get_ident()
    assert sock.fileno() == -1

"""Gratuitous ARP: the frame and the schedule are pure; `announce` sends them from a raw socket.

Heartbeat's send_arp pattern (spec §4.1): 10 pairs of (REQUEST, wait interval/2, REPLY,
wait interval/2), interval 500 ms, no wait after the last reply. Ethernet source is our MAC,
destination broadcast; sender IP = target IP = the virtual IP; the request's target MAC is
zero, the reply's is our own MAC.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass

from nonstop.errors import InvalidValue, MachineTimeout

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
# Shortest Ethernet frame without the FCS; a veth does not pad, real NICs would.
MIN_FRAME_LEN = 60
DEFAULT_INTERVAL_S = 0.5
DEFAULT_REPEAT = 10
PACKET_OUTGOING = 4  # sll_pkttype of a frame we sent ourselves


class ArpOp(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` to 6 bytes; ValueError otherwise."""
    parts = text.split(":")
    if len(parts) != 6:
        raise InvalidValue(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def arp_frame(op: ArpOp, src_mac: bytes, sender_ip: bytes, target_mac: bytes,
              target_ip: bytes) -> bytes:
    """One complete broadcast Ethernet frame carrying an ARP packet (IPv4 over Ethernet)."""
    if len(src_mac) != 6 or len(target_mac) != 6:
        raise InvalidValue("MAC must be 6 bytes")
    eth = BROADCAST_MAC + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = (struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, int(op)) + src_mac + sender_ip + target_mac
           + target_ip)
    frame = eth + arp
    return frame + b"\x00" * (MIN_FRAME_LEN - len(frame))


def gratuitous_arp_frame(op: ArpOp, mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    """One complete Ethernet frame announcing that ``ip`` is at ``mac``."""
    if len(mac) != 6:
        raise InvalidValue("MAC must be 6 bytes")
    target_mac = ZERO_MAC if op is ArpOp.REQUEST else mac
    return arp_frame(op, mac, ip.packed, target_mac, ip.packed)


@dataclass(frozen=True)
class ArpPacket:
    """The fields of a received IPv4-over-Ethernet ARP packet."""

    op: int
    sender_mac: bytes
    sender_ip: ipaddress.IPv4Address
    target_mac: bytes
    target_ip: ipaddress.IPv4Address


def parse_arp_frame(frame: bytes) -> ArpPacket | None:
    """The ARP packet in an Ethernet frame; None for anything else (whatever the bytes)."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
        return None
    return ArpPacket(op, frame[22:28], ipaddress.IPv4Address(frame[28:32]), frame[32:38],
                     ipaddress.IPv4Address(frame[38:42]))


def format_mac(mac: bytes) -> str:
    """6 bytes to ``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in mac)


def arp_schedule(
    repeat: int = DEFAULT_REPEAT, interval_s: float = DEFAULT_INTERVAL_S
) -> list[tuple[float, ArpOp]]:
    """When (seconds after the start) each frame goes out; the first immediately."""
    half = interval_s / 2
    plan: list[tuple[float, ArpOp]] = []
    for i in range(repeat):
        plan.append((i * interval_s, ArpOp.REQUEST))
        plan.append((i * interval_s + half, ArpOp.REPLY))
    return plan


def packet_socket() -> socket.socket:
    """A raw packet socket for ARP frames, to be bound with ``bind((iface, ETH_P_ARP))``.

    Created with protocol 0 so that only the bind registers it: a socket opened for ETH_P_ARP
    on every interface and then bound to one is registered twice, and the kernel waits for an
    RCU grace period in between (measured 11-20 ms here, against 0.03 ms), which would delay
    the first gratuitous ARP and every address probe of a takeover.
    """
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)


async def receive_arp(sock: socket.socket, timeout: float | None) -> ArpPacket | None:
    """The next frame of a bound non-blocking packet socket as an ARP packet; None for one we
    sent ourselves or one that is not ARP. TimeoutError after ``timeout`` seconds (at once for
    ``timeout <= 0``, even if a frame is waiting). A cancellation always propagates.

    Not ``asyncio.wait_for``: in Python 3.11 it returns a frame that arrived together with a
    cancellation and drops the CancelledError (gh-86296), and while another host claims the
    address frames arrive all the time: a cancelled conflict watch went on probing for ever.
    ``asyncio.timeout`` awaits the receive in the calling task, where nothing can swallow it.
    """
    if timeout is not None and timeout <= 0:
        # as before: a due deadline is never starved by waiting frames
        raise MachineTimeout("the deadline for an ARP frame has passed")
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        data, addr = await loop.sock_recvfrom(sock, 2048)
    if addr[2] == PACKET_OUTGOING:
        return None
    return parse_arp_frame(data)


def release_socket(sock: socket.socket) -> None:
    """Close a bound packet socket without blocking the event loop.

    Closing one also waits for an RCU grace period in the kernel (measured 9-16 ms here): done
    on the loop, that would stall heartbeats and the rest of a takeover. A worker thread does it.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        sock.close()
        return
    loop.run_in_executor(None, sock.close)


async def announce(
    iface: str,
    mac: bytes,
    ip: ipaddress.IPv4Address,
    logger: logging.Logger,
    *,
    repeat: int = DEFAULT_REPEAT,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> int:
    """Send the gratuitous ARPs on ``iface``; returns how many frames went out.

    Never raises for a send failure: an address takeover must not fail because the
    announcement could not be made (neighbours then learn the address by ordinary ARP).
    Cancellation stops the announcement at once.
    """
    loop = asyncio.get_running_loop()
    try:
        sock = packet_socket()
    except OSError as exc:
        logger.error("Could not send gratuitous arps for %s on %s: %s", ip, iface, exc)
        return 0
    sent = failed = 0
    try:
        sock.bind((iface, ETH_P_ARP))
        sock.setblocking(False)
        frames = {op: gratuitous_arp_frame(op, mac, ip) for op in ArpOp}
        t0 = loop.time()
        for offset, op in arp_schedule(repeat, interval_s):
            delay = t0 + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await loop.sock_sendall(sock, frames[op])
                sent += 1
            except OSError as exc:
                # One lost frame (interface briefly down) should not end the announcement;
                # say so once, not twenty times.
                if failed == 0:
                    logger.warning(
                        "gratuitous ARP %s for %s on %s failed: %s", op.name, ip, iface, exc
                    )
                failed += 1
    except OSError as exc:
        logger.error("Could not send gratuitous arps for %s on %s: %s", ip, iface, exc)
    finally:
        release_socket(sock)
    if failed:
        logger.warning("%d of the gratuitous ARPs for %s on %s failed", failed, ip, iface)
    logger.debug("sent %d gratuitous ARP frames for %s on %s", sent, ip, iface)
    return sent

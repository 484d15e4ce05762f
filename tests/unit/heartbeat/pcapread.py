"""Read the UDP payloads of a classic libpcap file (Ethernet, IPv4), for wire fixtures."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_LINKTYPE_ETHERNET = 1
_ETHERTYPE_IPV4 = 0x0800
_PROTO_UDP = 17


@dataclass(frozen=True)
class Datagram:
    """One UDP datagram: capture time, source address and port, destination port, payload."""

    time: float
    src: str
    sport: int
    dport: int
    payload: bytes


def udp_datagrams(path: Path) -> list[Datagram]:
    """Every IPv4/UDP datagram in a little- or big-endian microsecond pcap file, in order."""
    data = path.read_bytes()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian = ">"
    else:
        raise ValueError(f"{path}: not a microsecond libpcap file")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != _LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet")
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, caplen, origlen = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        if caplen != origlen:
            raise ValueError(f"{path}: truncated frame at offset {pos}")
        if struct.unpack_from("!H", frame, 12)[0] != _ETHERTYPE_IPV4:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        if ip[9] != _PROTO_UDP:
            continue
        sport, dport, ulen = struct.unpack_from("!HHH", ip, ihl)
        payload = ip[ihl + 8 : ihl + ulen]
        if ihl + ulen > total or len(payload) != ulen - 8:
            raise ValueError(f"{path}: inconsistent UDP length in frame at offset {pos}")
        src = ".".join(str(b) for b in ip[12:16])
        out.append(Datagram(sec + usec / 1e6, src, sport, dport, payload))
    return out
